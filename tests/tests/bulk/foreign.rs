//! Exports of one patient leave out resources that reference another server's patient
//! with the same id, and Group members of other servers are nobody's members here.

use hearth_e2e::{Backend, Server};
use serde_json::{Value, json};

use crate::client::{assert_outcome, keys};
use crate::fixture::{Hearth, group, patient};

const FOREIGN_PATIENT: &str = "http://other.example/fhir/Patient/fp1";

fn observation(id: &str, subject: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": subject}
    })
}

/// An empty server holding Patient `fp1`, Observations of it written relative, as an
/// absolute URL of this server and as one of another server, a Group listing `fp1` and
/// a Group listing only the other server's `fp1`.
fn start() -> Hearth {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    let hearth = Hearth::attach(server);
    let local_url = format!("{}/Patient/fp1", hearth.server.fhir_url());
    hearth.put(&patient("fp1", "female"));
    hearth.put(&observation("fo-relative", "Patient/fp1"));
    hearth.put(&observation("fo-local-url", &local_url));
    hearth.put(&observation("fo-foreign", FOREIGN_PATIENT));
    hearth.put(&group("g-local", &["fp1"]));
    hearth.put(
        &json!({"resourceType": "Group", "id": "g-foreign", "type": "person",
                       "actual": true, "member": [{"entity": {"reference": FOREIGN_PATIENT}}]}),
    );
    hearth
}

fn local_keys() -> Vec<String> {
    vec![
        "Observation/fo-local-url".to_string(),
        "Observation/fo-relative".to_string(),
    ]
}

#[test]
fn group_export_leaves_out_foreign_references() {
    let hearth = start();
    let client = hearth.client();

    let manifest = client.export("Group/g-local/$export?_type=Observation");
    assert_eq!(keys(&client.lines_of(&manifest, "output")), local_keys());

    let manifest = client.export("Group/g-foreign/$export?_type=Patient,Observation");
    let lines = client.lines_of(&manifest, "output");
    assert!(
        lines.is_empty(),
        "a foreign member was exported: {:?}",
        keys(&lines)
    );
}

#[test]
fn patient_export_leaves_out_foreign_references() {
    let hearth = start();
    let client = hearth.client();

    let reply = client.kick_off_post(
        "Patient/$export",
        &[("patient", "Patient/fp1"), ("_type", "Observation")],
    );
    let manifest = client.wait(&client.status_url(&reply));
    assert_eq!(keys(&client.lines_of(&manifest, "output")), local_keys());

    let local_url = format!("{}/Patient/fp1", hearth.server.fhir_url());
    let reply = client.kick_off_post(
        "Patient/$export",
        &[("patient", &local_url), ("_type", "Observation")],
    );
    let manifest = client.wait(&client.status_url(&reply));
    assert_eq!(keys(&client.lines_of(&manifest, "output")), local_keys());

    let reply = client.kick_off_post(
        "Patient/$export",
        &[("patient", FOREIGN_PATIENT), ("_type", "Observation")],
    );
    let message = assert_outcome(&reply, 400);
    assert!(message.contains(FOREIGN_PATIENT), "{message}");
}

#[test]
fn patient_level_export_keeps_only_compartments() {
    let hearth = start();
    let client = hearth.client();
    let mut loose = observation("fo-no-subject", "Patient/fp1");
    loose.as_object_mut().expect("an object").remove("subject");
    hearth.put(&loose);

    let manifest = client.export("Patient/$export?_type=Patient,Observation");
    let mut expected = local_keys();
    expected.push("Patient/fp1".to_string());
    assert_eq!(keys(&client.lines_of(&manifest, "output")), expected);
}
