//! References to other servers: an absolute URL ending in `Patient/{id}` of another
//! server's base names that server's patient, never this server's `Patient/{id}`. Search,
//! compartments, chains, includes, `$everything` and patient scopes must tell the two
//! apart, while a search by the full URL still finds the reference, and an absolute URL
//! under this server's own FHIR base counts as local.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::client::{Fhir, start_server};
use crate::search::{ids_with_mode, put_all, search};
use crate::support::Hearth;

const FOREIGN_PATIENT: &str = "http://other.example/fhir/Patient/p1";

fn observation(id: &str, subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": subject},
    })
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn match_set(fhir: &Fhir, path: &str) -> BTreeSet<String> {
    ids_with_mode(&search(fhir, path), "match")
        .into_iter()
        .collect()
}

fn include_set(fhir: &Fhir, path: &str) -> BTreeSet<String> {
    ids_with_mode(&search(fhir, path), "include")
        .into_iter()
        .collect()
}

/// Stores Patient `p1` and three Observations whose subject is `Patient/p1` written
/// relative (`relative`), absolute under this server's base (`local-url`), and absolute
/// under another server's base (`foreign`).
fn fixture() -> (crate::client::TestServer, Fhir) {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let local_url = format!("{}/fhir/Patient/p1", server.base_url);
    put_all(
        &fhir,
        &[
            json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Local"}]}),
            observation("relative", "Patient/p1"),
            observation("local-url", &local_url),
            observation("foreign", FOREIGN_PATIENT),
        ],
    );
    (server, fhir)
}

#[test]
fn foreign_reference_matches_only_its_url() {
    let (server, fhir) = fixture();
    let local = set(&["relative", "local-url"]);
    assert_eq!(match_set(&fhir, "Observation?subject=Patient/p1"), local);
    assert_eq!(match_set(&fhir, "Observation?patient=p1"), local);
    let by_local_url = format!("Observation?subject={}/fhir/Patient/p1", server.base_url);
    assert_eq!(match_set(&fhir, &by_local_url), local);
    let by_foreign_url = format!("Observation?subject={FOREIGN_PATIENT}");
    assert_eq!(match_set(&fhir, &by_foreign_url), set(&["foreign"]));
    assert_eq!(
        match_set(&fhir, "Observation?subject:missing=false"),
        set(&["relative", "local-url", "foreign"])
    );
}

#[test]
fn foreign_reference_is_outside_compartments() {
    let (_server, fhir) = fixture();
    let local = set(&["relative", "local-url"]);
    assert_eq!(match_set(&fhir, "Patient/p1/Observation"), local);

    let everything = match_set(&fhir, "Patient/p1/$everything");
    assert_eq!(everything, set(&["p1", "relative", "local-url"]));
}

#[test]
fn foreign_reference_is_not_followed() {
    let (_server, fhir) = fixture();
    assert_eq!(
        match_set(&fhir, "Observation?subject:Patient.name=Local"),
        set(&["relative", "local-url"])
    );
    assert_eq!(
        match_set(&fhir, "Patient?_has:Observation:subject:_id=foreign"),
        set(&[])
    );
    assert_eq!(
        match_set(&fhir, "Patient?_has:Observation:subject:_id=local-url"),
        set(&["p1"])
    );

    let included = include_set(
        &fhir,
        "Observation?_id=foreign&_include=Observation:subject",
    );
    assert!(
        included.is_empty(),
        "the foreign subject was included: {included:?}"
    );
    let included = include_set(
        &fhir,
        "Observation?_id=local-url&_include=Observation:subject",
    );
    assert_eq!(included, set(&["p1"]));

    let revincluded = include_set(&fhir, "Patient?_id=p1&_revinclude=Observation:subject");
    assert_eq!(revincluded, set(&["relative", "local-url"]));
}

#[test]
fn patient_scope_ignores_foreign_reference() {
    let hearth = Hearth::start();
    let patient = &hearth.sample.patient.id;
    let admin = Fhir::admin_of(&hearth);
    let local_url = format!("{}/Patient/{patient}", hearth.default_site.fhir);
    put_all(
        &admin,
        &[
            observation(
                "scope-foreign",
                &format!("http://other.example/fhir/Patient/{patient}"),
            ),
            observation("scope-local-url", &local_url),
        ],
    );
    let tokens = hearth.patient_launch("launch/patient patient/*.cruds");
    let fhir = Fhir::new(&hearth.default_site.fhir, &tokens.access);

    assert_eq!(fhir.get("Observation/scope-foreign").status, 404);
    assert_eq!(fhir.get("Observation/scope-local-url").status, 200);
    let found = match_set(&fhir, "Observation?_id=scope-foreign,scope-local-url");
    assert_eq!(found, set(&["scope-local-url"]));

    let foreign_subject = format!("http://other.example/fhir/Patient/{patient}");
    let create = fhir.post("Observation", &observation("ignored", &foreign_subject));
    assert_eq!(create.status, 403, "{}", create.body);
    let create = fhir.post("Observation", &observation("ignored", &local_url));
    assert_eq!(create.status, 201, "{}", create.body);
}
