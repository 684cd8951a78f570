//! Scopes at the write interactions and in batch entries: a patient-scoped token writes in
//! its patient's compartment only, a read-only token writes nothing, and a system token
//! writes anything.

use serde_json::{Value, json};

use crate::client::{Fhir, assert_outcome, assert_outcome_value, location, unique};
use crate::sample::PatientData;
use crate::support::{ClientAuth, Hearth, Tokens};

/// A backend service registered with every system scope.
const WRITER_APP: &str = "svc-writer";

/// An Observation of `patient` with the identifier `urn:test|{marker}`.
fn observation(patient: &str, marker: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": "urn:test", "value": marker}],
        "status": "final",
        "code": {"text": "written by a scope test"},
        "subject": {"reference": format!("Patient/{patient}")},
    })
}

/// A client of the default site with the access token of a launch with `scope`.
fn patient_client(hearth: &Hearth, scope: &str) -> Fhir {
    let tokens: Tokens = hearth.patient_launch(scope);
    assert_eq!(
        tokens.response["patient"],
        hearth.sample.patient.id.as_str(),
        "{}",
        tokens.response
    );
    Fhir::new(&hearth.default_site.fhir, &tokens.access)
}

/// Launch scopes that read and write everything in the patient's compartment.
const PATIENT_CRUDS: &str = "launch/patient patient/*.cruds";

/// Starts a server and returns it with a client of a patient launch with `scope` and an
/// admin client.
fn start_with_patient_scope(scope: &str) -> (Hearth, Fhir, Fhir) {
    let hearth = Hearth::start();
    let fhir = patient_client(&hearth, scope);
    let admin = Fhir::admin_of(&hearth);
    (hearth, fhir, admin)
}

/// Returns the path of the first Observation of `patient` and its stored JSON.
fn first_observation(admin: &Fhir, patient: &PatientData) -> (String, Value) {
    let path = format!("Observation/{}", patient.observations[0]);
    let stored = admin.read(&path);
    (path, stored)
}

/// Counts the stored Observations with the identifier `urn:test|{marker}`.
fn count_marked(admin: &Fhir, marker: &str) -> u64 {
    admin.count(&format!("Observation?identifier=urn:test|{marker}"))
}

/// Registers [`WRITER_APP`] and returns a client with its `system/*.cruds` token.
fn system_client(hearth: &Hearth) -> Fhir {
    let app = json!({
        "client_id": WRITER_APP,
        "name": "Backend writer",
        "client_type": "confidential-symmetric",
        "scope": "system/*.cruds",
        "sites": [hearth.default_site.id],
    });
    let reply = hearth.admin_post("/admin/apps", &app);
    assert_eq!(
        reply.status, 201,
        "registering {WRITER_APP}: {}",
        reply.body
    );
    let secret = reply.json()["client_secret"]
        .as_str()
        .expect("a client secret")
        .to_string();
    let reply = hearth.token(
        &ClientAuth::Basic(WRITER_APP.to_string(), secret),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.cruds"),
        ],
    );
    let tokens = Tokens::from_response(&reply);
    assert_eq!(tokens.scope(), vec!["system/*.cruds"]);
    Fhir::new(&hearth.default_site.fhir, &tokens.access)
}

/// Asserts that the stored resource at `path` is still `expected`.
fn assert_unchanged(admin: &Fhir, path: &str, expected: &Value) {
    assert_eq!(&admin.read(path), expected, "{path} was changed");
}

#[test]
fn patient_token_creates_in_own_compartment() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let own = &hearth.sample.patient.id;
    let other = &hearth.sample.other.id;
    let other_count = admin.count(&format!("Observation?subject=Patient/{other}"));

    let allowed = fhir.post("Observation", &observation(own, "own"));
    assert_eq!(allowed.status, 201, "{}", allowed.body);
    let (id, _) = location(&allowed, &fhir.base, "Observation");
    assert_eq!(
        fhir.read(&format!("Observation/{id}"))["subject"]["reference"],
        format!("Patient/{own}")
    );

    let forbidden = fhir.post("Observation", &observation(other, "other"));
    assert_outcome(&forbidden, 403);
    let no_subject =
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "none"}});
    assert_outcome(&fhir.post("Observation", &no_subject), 403);
    assert_eq!(
        admin.count(&format!("Observation?subject=Patient/{other}")),
        other_count
    );
}

#[test]
fn patient_token_cannot_write_into_another_compartment() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let own = &hearth.sample.patient.id;
    let other = &hearth.sample.other.id;
    let other_count = admin.count(&format!("Patient/{other}/Observation"));

    // The subject is the patient in context, but the performer puts the Observation into
    // the other patient's compartment too.
    let mut shared = observation(own, "performed by another patient");
    shared["performer"] = json!([{"reference": format!("Patient/{other}")}]);
    assert_outcome(&fhir.post("Observation", &shared), 403);
    let created = fhir.post("Observation", &observation(own, "own"));
    assert_eq!(created.status, 201, "{}", created.body);
    let (id, _) = location(&created, &fhir.base, "Observation");
    let path = format!("Observation/{id}");
    let mut moved = fhir.read(&path);
    moved["performer"] = json!([{"reference": format!("Patient/{other}")}]);
    assert_outcome(&fhir.put(&path, &moved), 403);
    let patch = json!([{"op": "add", "path": "/performer", "value": [{"reference": format!("Patient/{other}")}]}]);
    assert_outcome(&fhir.patch(&path, &patch), 403);

    // A conditional reference is resolved after the check, so a confined token cannot use
    // one, whoever it would name.
    let mut conditional = observation(own, "conditional performer");
    conditional["performer"] = json!([{"reference": format!("Patient?_id={other}")}]);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": conditional,
        "request": {"method": "POST", "url": "Observation"},
    }]});
    assert_outcome(&fhir.post("", &transaction), 403);

    // The patient in context cannot link its own Patient to another patient either.
    let own_path = format!("Patient/{own}");
    let mut linked = fhir.read(&own_path);
    linked["link"] =
        json!([{"other": {"reference": format!("Patient/{other}")}, "type": "seealso"}]);
    assert_outcome(&fhir.put(&own_path, &linked), 403);

    assert_eq!(
        admin.count(&format!("Patient/{other}/Observation")),
        other_count
    );
}

#[test]
fn patient_token_cannot_change_other_patients() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let own = &hearth.sample.patient.id;
    let other = &hearth.sample.other;
    let (path, stored) = first_observation(&admin, other);

    let mut noted = stored.clone();
    noted["note"] = json!([{"text": "changed by another patient's app"}]);
    assert_outcome(&fhir.put(&path, &noted), 403);
    let mut moved = stored.clone();
    moved["subject"] = json!({"reference": format!("Patient/{own}")});
    assert_outcome(&fhir.put(&path, &moved), 403);
    let patch = json!([{"op": "add", "path": "/status", "value": "cancelled"}]);
    assert_outcome(&fhir.patch(&path, &patch), 403);
    assert_outcome(&fhir.delete(&path), 403);

    let other_patient = format!("Patient/{}", other.id);
    let mut renamed = admin.read(&other_patient);
    renamed["gender"] = json!("other");
    assert_outcome(&fhir.put(&other_patient, &renamed), 403);
    assert_outcome(&fhir.delete(&other_patient), 403);

    assert_unchanged(&admin, &path, &stored);
}

#[test]
fn patient_token_cannot_move_own_resource_out() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let other = &hearth.sample.other.id;
    let (path, stored) = first_observation(&admin, &hearth.sample.patient);

    let mut moved = stored.clone();
    moved["subject"] = json!({"reference": format!("Patient/{other}")});
    assert_outcome(&fhir.put(&path, &moved), 403);

    assert_unchanged(&admin, &path, &stored);
}

#[test]
fn patient_token_patch_stays_in_compartment() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let other = &hearth.sample.other.id;
    let (path, stored) = first_observation(&admin, &hearth.sample.patient);

    let patch = json!([{
        "op": "replace",
        "path": "/subject/reference",
        "value": format!("Patient/{other}"),
    }]);
    assert_outcome(&fhir.patch(&path, &patch), 403);

    assert_unchanged(&admin, &path, &stored);
}

#[test]
fn patient_token_conditional_writes_stay_in_compartment() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let own = &hearth.sample.patient.id;
    let other = &hearth.sample.other;
    let target = &other.observations[0];
    let (path, stored) = first_observation(&admin, other);
    let criteria = format!("Observation?_id={target}");

    // The criteria match one Observation, of the other patient; the new content is in
    // the token's compartment.
    let update = fhir.put(&criteria, &observation(own, "taken over"));
    assert!(
        update.status == 403 || update.status == 412,
        "a conditional update reached another patient's Observation: {} {}",
        update.status,
        update.body
    );
    assert_outcome(&update, update.status);
    assert_unchanged(&admin, &path, &stored);

    let delete = fhir.delete(&criteria);
    assert!(
        delete.status == 403 || delete.status == 412 || delete.status == 204,
        "{} {}",
        delete.status,
        delete.body
    );
    assert_unchanged(&admin, &path, &stored);

    let create = fhir.post_with(
        "Observation",
        &observation(own, "conditional"),
        &[("If-None-Exist", &format!("_id={target}"))],
    );
    let leaked = create.status == 200 && create.body.contains(&other.id);
    assert!(
        !leaked,
        "a conditional create returned another patient's Observation: {}",
        create.body
    );
    assert_unchanged(&admin, &path, &stored);
}

#[test]
fn patient_token_batch_entries_checked_alone() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let own = &hearth.sample.patient.id;
    let other = &hearth.sample.other.id;
    let own_marker = unique("own");
    let other_marker = unique("other");
    let entry = |patient: &str, text: &str| {
        json!({
            "resource": observation(patient, text),
            "request": {"method": "POST", "url": "Observation"},
        })
    };
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [entry(own, &own_marker), entry(other, &other_marker)],
    });

    let reply = fhir.bundle(&batch);

    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["type"], "batch-response");
    let entries = body["entry"].as_array().expect("response entries");
    assert_eq!(entries.len(), 2, "{body}");
    assert_eq!(entries[0]["response"]["status"], "201 Created", "{body}");
    assert_eq!(entries[1]["response"]["status"], "403 Forbidden", "{body}");
    assert_outcome_value(&entries[1]["response"]["outcome"], 403);
    assert_eq!(count_marked(&admin, &own_marker), 1);
    assert_eq!(count_marked(&admin, &other_marker), 0);

    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry(own, &own_marker), entry(other, &other_marker)],
    });
    let reply = fhir.bundle(&transaction);
    let diagnostics = assert_outcome(&reply, 403);
    assert!(diagnostics.contains("entry 1"), "{diagnostics}");
    assert_eq!(count_marked(&admin, &own_marker), 1);
}

#[test]
fn read_only_token_cannot_write() {
    let (hearth, fhir, admin) = start_with_patient_scope("launch/patient patient/Observation.rs");
    let own = &hearth.sample.patient.id;
    let marker = unique("read-only");
    let path = format!("Observation/{}", hearth.sample.patient.observations[0]);
    let stored = fhir.read(&path);

    assert_outcome(&fhir.post("Observation", &observation(own, &marker)), 403);
    let mut changed = stored.clone();
    changed["status"] = json!("amended");
    assert_outcome(&fhir.put(&path, &changed), 403);
    let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    assert_outcome(&fhir.patch(&path, &patch), 403);
    assert_outcome(&fhir.delete(&path), 403);

    assert_eq!(count_marked(&admin, &marker), 0);
    assert_unchanged(&admin, &path, &stored);
}

#[test]
fn system_token_writes_anything() {
    let hearth = Hearth::start();
    let fhir = system_client(&hearth);
    let admin = Fhir::admin_of(&hearth);
    let own = &hearth.sample.patient.id;
    let other = &hearth.sample.other;

    for patient in [own, &other.id] {
        let reply = fhir.post("Observation", &observation(patient, &unique("system")));
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let path = format!("Observation/{}", other.observations[0]);
    let mut changed = admin.read(&path);
    changed["status"] = json!("amended");
    let updated = fhir.put(&path, &changed);
    assert_eq!(updated.status, 200, "{}", updated.body);
    let patch = json!([{"op": "replace", "path": "/status", "value": "corrected"}]);
    let patched = fhir.patch(&path, &patch);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(admin.read(&path)["status"], "corrected");
    let created = fhir.create(&json!({"resourceType": "Organization", "name": "Writers"}));
    let organization = format!("Organization/{}", created["id"].as_str().expect("an id"));
    let deleted = fhir.delete(&path);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_outcome(&admin.get(&path), 410);
    let deleted = fhir.delete(&organization);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
}

#[test]
fn patient_token_reads_but_never_writes_reference_data() {
    let (hearth, fhir, admin) = start_with_patient_scope(PATIENT_CRUDS);
    let practitioner = format!("Practitioner/{}", hearth.sample.practitioner);
    let stored = fhir.read(&practitioner);

    let organization = json!({"resourceType": "Organization", "name": "Written by a patient"});
    assert_outcome(&fhir.post("Organization", &organization), 403);
    let mut changed = stored.clone();
    changed["active"] = json!(false);
    assert_outcome(&fhir.put(&practitioner, &changed), 403);
    assert_outcome(&fhir.delete(&practitioner), 403);
    assert_eq!(
        admin.read(&practitioner),
        stored,
        "the Practitioner changed"
    );
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    patient_token_reads_but_never_writes_reference_data,
    patient_token_cannot_write_into_another_compartment,
    patient_token_creates_in_own_compartment,
    patient_token_cannot_change_other_patients,
    patient_token_cannot_move_own_resource_out,
    patient_token_patch_stays_in_compartment,
    patient_token_conditional_writes_stay_in_compartment,
    read_only_token_cannot_write,
    system_token_writes_anything,
;
    skip patient_token_batch_entries_checked_alone: "batches at an EHR-backed site need scopes without patient or query restrictions, because the proxy cannot check their entries one by one",
);
