//! Scopes at search: matches, included and revincluded resources, chains, `_has`,
//! compartment search and `$everything` all stay inside what the token may see, and a v2
//! scope query narrows them exactly as the same search would.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::client::{Fhir, assert_outcome, link};
use crate::sample::{has_category, subject_of};
use crate::support::Hearth;

/// Every entry of a search and its `next` pages, as (search mode, resource).
fn all_entries(fhir: &Fhir, path: &str) -> Vec<(String, Value)> {
    let mut entries = Vec::new();
    let mut next = Some(path.to_string());
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages < 200, "too many pages for {path}");
        let reply = fhir.get(&url);
        assert_eq!(reply.status, 200, "GET {url}: {}", reply.body);
        let bundle = reply.json();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let mode = entry["search"]["mode"].as_str().unwrap_or_default();
            entries.push((mode.to_string(), entry["resource"].clone()));
        }
        next = link(&bundle, "next");
    }
    entries
}

fn ids_of(entries: &[(String, Value)], mode: &str, resource_type: &str) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|(m, r)| m == mode && r["resourceType"] == resource_type)
        .map(|(_, r)| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

fn one(id: &str) -> BTreeSet<String> {
    BTreeSet::from([id.to_string()])
}

fn patient_client(hearth: &Hearth, scope: &str) -> Fhir {
    let tokens = hearth.patient_launch(scope);
    Fhir::new(&hearth.default_site.fhir, &tokens.access)
}

#[test]
fn patient_token_includes_stay_in_compartment() {
    let hearth = Hearth::start();
    let (mine, theirs) = (&hearth.sample.patient, &hearth.sample.other);
    let fhir = patient_client(&hearth, "launch/patient patient/*.rs");

    let entries = all_entries(&fhir, "Patient?_revinclude=Observation:subject&_count=1");
    assert_eq!(ids_of(&entries, "match", "Patient"), one(&mine.id));
    assert_eq!(
        ids_of(&entries, "include", "Observation"),
        set(&mine.observations)
    );

    let entries = all_entries(
        &fhir,
        &format!(
            "Observation?_include=Observation:subject&_count=50&_id={}",
            theirs.observations[0]
        ),
    );
    assert!(
        entries.is_empty(),
        "another patient's Observation: {entries:?}"
    );

    let entries = all_entries(&fhir, "Observation?_include=Observation:subject&_count=500");
    assert_eq!(ids_of(&entries, "include", "Patient"), one(&mine.id));
    assert!(
        entries
            .iter()
            .all(|(mode, resource)| mode != "match" || subject_of(resource) == mine.id)
    );

    // Chains and _has read other patients through the same visibility.
    let admin = Fhir::admin_of(&hearth);
    let family = admin.read(&format!("Patient/{}", theirs.id))["name"][0]["family"]
        .as_str()
        .expect("the other patient has a family name")
        .to_string();
    let chained = all_entries(
        &fhir,
        &format!("Observation?subject:Patient.family={family}"),
    );
    assert!(
        chained.is_empty(),
        "a chain reached another patient: {chained:?}"
    );
    let reverse = all_entries(
        &fhir,
        &format!(
            "Patient?_has:Observation:subject:_id={}",
            theirs.observations[0]
        ),
    );
    assert!(
        reverse.is_empty(),
        "_has reached another patient: {reverse:?}"
    );

    assert_outcome(
        &fhir.get(&format!("Patient/{}/Observation", theirs.id)),
        404,
    );
    assert_outcome(
        &fhir.get(&format!("Patient/{}/$everything", theirs.id)),
        404,
    );
    let own = all_entries(
        &fhir,
        &format!("Patient/{}/Observation?_count=100", mine.id),
    );
    assert_eq!(
        ids_of(&own, "match", "Observation"),
        set(&mine.observations)
    );
}

#[test]
fn everything_passes_scopes() {
    let hearth = Hearth::start();
    let (mine, theirs) = (&hearth.sample.patient, &hearth.sample.other);
    let fhir = patient_client(&hearth, "launch/patient patient/*.rs");
    let entries = all_entries(
        &fhir,
        &format!("Patient/{}/$everything?_count=200", mine.id),
    );
    assert_eq!(ids_of(&entries, "match", "Patient"), one(&mine.id));
    assert_eq!(
        ids_of(&entries, "match", "Observation"),
        set(&mine.observations)
    );
    let other_reference = format!("Patient/{}", theirs.id);
    for (_, resource) in &entries {
        assert!(
            !resource.to_string().contains(&other_reference),
            "$everything returned a resource of another patient: {resource}"
        );
    }

    // A v2 scope query narrows $everything as the same search would.
    let scope = "launch/patient patient/Patient.rs patient/Observation.rs?category=laboratory";
    let narrowed = patient_client(&hearth, scope);
    let entries = all_entries(
        &narrowed,
        &format!("Patient/{}/$everything?_count=200", mine.id),
    );
    assert_eq!(
        ids_of(&entries, "match", "Observation"),
        set(&mine.laboratory)
    );
    assert!(
        entries
            .iter()
            .all(|(_, r)| matches!(r["resourceType"].as_str(), Some("Patient" | "Observation"))),
        "types outside the scopes were returned"
    );
}

#[test]
fn v2_scope_query_narrows_includes() {
    let hearth = Hearth::start();
    let mine = &hearth.sample.patient;
    let scope = "launch/patient patient/Patient.rs patient/Observation.rs?category=laboratory";
    let fhir = patient_client(&hearth, scope);

    let entries = all_entries(&fhir, "Patient?_revinclude=Observation:subject");
    let included = ids_of(&entries, "include", "Observation");
    assert_eq!(included, set(&mine.laboratory));
    assert!(
        entries
            .iter()
            .filter(|(_, r)| r["resourceType"] == "Observation")
            .all(|(_, r)| has_category(r, "laboratory"))
    );

    // The same search with the admin credential gives the same Observations.
    let admin = Fhir::admin_of(&hearth);
    let same = all_entries(
        &admin,
        &format!(
            "Observation?patient={}&category=laboratory&_count=500",
            mine.id
        ),
    );
    assert_eq!(ids_of(&same, "match", "Observation"), included);

    // Without a Patient scope, _include leaves Patients out and chains find nothing.
    let observations_only = patient_client(&hearth, "launch/patient patient/Observation.rs");
    let entries = all_entries(
        &observations_only,
        "Observation?_include=Observation:subject&_count=500",
    );
    assert!(ids_of(&entries, "include", "Patient").is_empty());
    assert_eq!(
        ids_of(&entries, "match", "Observation"),
        set(&mine.observations)
    );
    let chained = all_entries(
        &observations_only,
        "Observation?subject:Patient.gender=male,female",
    );
    assert!(chained.is_empty(), "a chain read Patients without a scope");
}

#[test]
fn system_search_passes_scopes() {
    let hearth = Hearth::start();
    let (mine, theirs) = (&hearth.sample.patient, &hearth.sample.other);
    let fhir = patient_client(&hearth, "launch/patient patient/*.rs");

    let entries = all_entries(&fhir, "_search?_type=Patient,Observation&_count=100");
    assert_eq!(ids_of(&entries, "match", "Patient"), one(&mine.id));
    assert_eq!(
        ids_of(&entries, "match", "Observation"),
        set(&mine.observations)
    );
    let other = all_entries(
        &fhir,
        &format!("_search?_id={},{}", theirs.id, theirs.observations[0]),
    );
    assert!(other.is_empty(), "another patient's resources: {other:?}");
    let every = all_entries(&fhir, "_search?_count=200");
    let other_reference = format!("Patient/{}", theirs.id);
    for (_, resource) in &every {
        assert!(
            !resource.to_string().contains(&other_reference),
            "a search without _type returned another patient's resource: {resource}"
        );
    }
    assert!(ids_of(&every, "match", "Observation").len() >= mine.observations.len());

    // A v2 scope query narrows system search as it narrows a type search.
    let scope = "launch/patient patient/Patient.rs patient/Observation.rs?category=laboratory";
    let narrowed = patient_client(&hearth, scope);
    let entries = all_entries(&narrowed, "_search?_type=Observation&_count=500");
    assert_eq!(
        ids_of(&entries, "match", "Observation"),
        set(&mine.laboratory)
    );
    let entries = all_entries(&narrowed, "_search?_count=500");
    assert!(
        entries
            .iter()
            .all(|(_, r)| matches!(r["resourceType"].as_str(), Some("Patient" | "Observation"))),
        "types outside the scopes were returned"
    );
    assert_outcome(&narrowed.get("_search?_type=Condition"), 403);
}

// The same tests against an EHR-backed site whose upstream stores the data.
/// A compartment search needs search access to the searched type, not read access to
/// the Patient, but stays within the token's own patient.
#[test]
fn compartment_search_without_patient_scope() {
    let hearth = Hearth::start();
    let (mine, theirs) = (&hearth.sample.patient, &hearth.sample.other);
    let fhir = patient_client(&hearth, "launch/patient patient/Observation.rs");

    let entries = all_entries(&fhir, &format!("Patient/{}/Observation", mine.id));
    assert_eq!(
        ids_of(&entries, "match", "Observation"),
        set(&mine.observations)
    );
    assert_outcome(
        &fhir.get(&format!("Patient/{}/Observation", theirs.id)),
        404,
    );
    assert_outcome(&fhir.get("Patient/no-such-patient/Observation"), 404);
    assert_outcome(&fhir.get(&format!("Patient/{}", mine.id)), 403);
}

through_proxy!(
    patient_token_includes_stay_in_compartment,
    v2_scope_query_narrows_includes,
    system_search_passes_scopes,
    everything_passes_scopes,
);
