//! Kick-off, status, manifest and download at the system, Patient and Group levels.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::client::{Reply, assert_outcome, entries, keys};
use crate::fixture::{
    Hearth, OTHER_SERVICE, PATIENT_ONLY, group, observation, patient, sample_count,
};

fn types_of(manifest: &Value) -> BTreeSet<String> {
    entries(manifest, "output")
        .into_iter()
        .map(|(t, _, _)| t)
        .collect()
}

#[test]
fn system_export_manifest_is_complete() {
    let hearth = Hearth::start();
    let client = hearth.client();

    let kick_off = client.kick_off("$export");
    let status = client.status_url(&kick_off);
    assert!(status.starts_with(&client.base), "status URL {status}");
    let manifest = client.wait(&status);

    assert!(manifest["transactionTime"].as_str().is_some(), "{manifest}");
    assert_eq!(manifest["request"], format!("{}/$export", client.base));
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["error"].is_array(), "error must be an array");
    let types = types_of(&manifest);
    for expected in [
        "Patient",
        "Observation",
        "Encounter",
        "Organization",
        "Practitioner",
    ] {
        assert!(types.contains(expected), "no {expected} in {types:?}");
    }
    let lines = client.lines_of(&manifest, "output");
    for (resource_type, line) in &lines {
        assert_eq!(line["resourceType"], resource_type.as_str());
    }
    for resource_type in ["Patient", "Observation", "Claim"] {
        let exported = lines.iter().filter(|(t, _)| t == resource_type).count();
        assert_eq!(
            exported,
            sample_count(resource_type),
            "{resource_type} lines"
        );
    }
}

#[test]
fn kick_off_by_post_matches_get() {
    let hearth = Hearth::start();
    let client = hearth.client();

    let by_get = client.export("Patient/$export?_type=Patient,Condition");
    let reply = client.kick_off_post(
        "Patient/$export",
        &[("_type", "Patient"), ("_type", "Condition")],
    );
    let by_post = client.wait(&client.status_url(&reply));

    assert_eq!(
        keys(&client.lines_of(&by_get, "output")),
        keys(&client.lines_of(&by_post, "output"))
    );
    assert_eq!(
        types_of(&by_post),
        BTreeSet::from(["Patient".into(), "Condition".into()])
    );
    assert_eq!(
        by_post["request"],
        format!("{}/Patient/$export", client.base)
    );
}

#[test]
fn post_patient_parameter_limits_export() {
    let hearth = Hearth::start();
    hearth.put(&patient("pp1", "female"));
    hearth.put(&patient("pp2", "male"));
    hearth.put(&observation("ppo1", "pp1", "2345-7", 90.0));
    hearth.put(&observation("ppo2", "pp2", "2345-7", 95.0));
    let client = hearth.client();

    let reply = client.kick_off_post(
        "Patient/$export",
        &[("_type", "Patient,Observation"), ("patient", "Patient/pp1")],
    );
    let manifest = client.wait(&client.status_url(&reply));
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        ["Observation/ppo1", "Patient/pp1"]
    );

    let by_get = client.kick_off("Patient/$export?patient=Patient/pp1");
    assert_outcome(&by_get, 400);

    // At system level the parameter is not defined: 400 under strict handling.
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/pp1"}},
    ]});
    let strict = Reply::send(
        client
            .request(reqwest::Method::POST, "$export")
            .header("accept", "application/fhir+json")
            .header("prefer", "respond-async, handling=strict")
            .header("content-type", "application/fhir+json")
            .body(body.to_string()),
    );
    assert_outcome(&strict, 400);
}

#[test]
fn group_export_holds_members_only() {
    let hearth = Hearth::start();
    hearth.put(&patient("gm1", "female"));
    hearth.put(&patient("gm2", "male"));
    hearth.put(&patient("gx", "female"));
    hearth.put(&observation("gmo1", "gm1", "2345-7", 90.0));
    hearth.put(&observation("gxo", "gx", "2345-7", 91.0));
    // In the compartments of both members, so it must be written once.
    let mut shared = observation("gshared", "gm1", "2345-7", 92.0);
    shared["performer"] = json!([{"reference": "Patient/gm2"}]);
    hearth.put(&shared);
    hearth.put(&group("g-members", &["gm1", "gm2"]));
    let client = hearth.client();

    let manifest = client.export("Group/g-members/$export?_type=Patient,Observation");
    assert_eq!(
        manifest["request"],
        format!(
            "{}/Group/g-members/$export?_type=Patient,Observation",
            client.base
        )
    );
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        [
            "Observation/gmo1",
            "Observation/gshared",
            "Patient/gm1",
            "Patient/gm2"
        ]
    );

    let missing = client.kick_off("Group/no-such-group/$export");
    assert_outcome(&missing, 404);
}

#[test]
fn output_formats_are_accepted() {
    let hearth = Hearth::start();
    let client = hearth.client();
    for format in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        let encoded = format.replace('+', "%2B");
        let manifest = client.export(&format!("$export?_type=Patient&_outputFormat={encoded}"));
        assert_eq!(client.lines_of(&manifest, "output").len(), 2, "{format}");
    }
    let unknown = client.kick_off("$export?_outputFormat=text/csv");
    let message = assert_outcome(&unknown, 400);
    assert!(message.contains("_outputFormat"), "{message}");
}

#[test]
fn since_and_until_bound_the_window() {
    let hearth = Hearth::start();
    let client = hearth.client();
    hearth.put(&patient("early", "male"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t1 = now_instant();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    hearth.put(&patient("late", "female"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t2 = now_instant();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Updated after _until: the export shows the version current at _until.
    let mut changed = patient("early", "male");
    changed["gender"] = "unknown".into();
    hearth.put(&changed);

    let since = client.export(&format!("$export?_type=Patient&_since={t1}"));
    let ids = keys(&client.lines_of(&since, "output"));
    assert!(ids.contains(&"Patient/late".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"Patient/early".to_string()),
        "updated after T1: {ids:?}"
    );

    let window = client.export(&format!("$export?_type=Patient&_since={t1}&_until={t2}"));
    let lines = client.lines_of(&window, "output");
    assert_eq!(keys(&lines), ["Patient/late"]);

    let until = client.export(&format!("$export?_type=Patient&_until={t2}"));
    let lines = client.lines_of(&until, "output");
    let early: Vec<&Value> = lines
        .iter()
        .map(|(_, line)| line)
        .filter(|line| line["id"] == "early")
        .collect();
    assert_eq!(early.len(), 1);
    assert_eq!(early[0]["gender"], "male", "the version at _until");

    let bad = client.kick_off("$export?_since=yesterday");
    assert_outcome(&bad, 400);
    let reversed = client.kick_off(&format!("$export?_since={t2}&_until={t1}"));
    assert_outcome(&reversed, 400);
}

pub fn now_instant() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn elements_keep_listed_fields() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let manifest = client.export("$export?_type=Patient&_elements=gender");
    let lines = client.lines_of(&manifest, "output");
    assert_eq!(lines.len(), 2);
    for (_, line) in &lines {
        let fields: BTreeSet<&str> = line
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            fields.is_subset(&BTreeSet::from(["resourceType", "id", "meta", "gender"])),
            "{fields:?}"
        );
        assert!(line.get("name").is_none());
        let subsetted = line["meta"]["tag"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["code"] == "SUBSETTED");
        assert!(subsetted, "no SUBSETTED tag: {line}");
    }
}

#[test]
fn include_associated_data_adds_provenance() {
    let hearth = Hearth::start();
    hearth.put(&patient("prov-p", "female"));
    hearth.put(&serde_json::json!({
        "resourceType": "Provenance", "id": "prov1",
        "target": [{"reference": "Patient/prov-p"}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"display": "Import job"}}]
    }));
    let client = hearth.client();

    let plain = client.export("$export?_type=Patient");
    assert!(!types_of(&plain).contains("Provenance"));
    let manifest =
        client.export("$export?_type=Patient&includeAssociatedData=RelevantProvenanceResources");
    let types = types_of(&manifest);
    assert_eq!(
        types,
        BTreeSet::from(["Patient".into(), "Provenance".into()])
    );
    let lines = client.lines_of(&manifest, "output");
    let provenance: Vec<&Value> = lines
        .iter()
        .filter(|(t, _)| t == "Provenance")
        .map(|(_, l)| l)
        .collect();
    assert_eq!(provenance.len(), 1);
    assert_eq!(provenance[0]["id"], "prov1");

    let unknown = client.kick_off_with(
        "$export?includeAssociatedData=_nothing",
        &[("prefer", "handling=strict")],
    );
    assert_outcome(&unknown, 400);
}

#[test]
fn kick_off_needs_respond_async() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let reply = Reply::send(
        client
            .request(reqwest::Method::GET, "$export")
            .header("accept", "application/fhir+json"),
    );
    let message = assert_outcome(&reply, 400);
    assert!(message.contains("respond-async"), "{message}");
}

#[test]
fn too_many_jobs_get_429() {
    let hearth = Hearth::start_configured(
        "[bulk]\nmax_jobs_per_client = 1\nmax_resources_per_second = 100\n",
    );
    let client = hearth.client();
    // A slow job: throttled so it is still running when the next kick-off arrives.
    let first = client.kick_off("$export");
    let first_status = client.status_url(&first);
    let second = client.kick_off("$export");
    assert_outcome(&second, 429);
    assert!(
        second.header("retry-after").is_some(),
        "429 needs Retry-After"
    );
    // Another client is not limited by this one's jobs.
    let other = client.with_token(&hearth.token(OTHER_SERVICE, "system/*.rs"));
    let reply = other.kick_off("$export?_type=Patient");
    assert_eq!(reply.status, 202, "{}", reply.text());
    client.delete(&first_status);
}

#[test]
fn scopes_limit_what_is_exported() {
    let hearth = Hearth::start();
    let narrow = hearth
        .client()
        .with_token(&hearth.token(PATIENT_ONLY, "system/Patient.rs"));

    let manifest = narrow.export("$export");
    assert_eq!(types_of(&manifest), BTreeSet::from(["Patient".to_string()]));

    let denied = narrow.kick_off("$export?_type=Observation");
    assert_outcome(&denied, 403);

    let anonymous = hearth.client().with_token("");
    let reply = anonymous.kick_off("$export");
    assert_eq!(reply.status, 401, "{}", reply.text());
}

#[test]
fn status_of_another_client_is_not_found() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let status = client.status_url(&client.kick_off("$export?_type=Patient"));
    let other = client.with_token(&hearth.token(OTHER_SERVICE, "system/*.rs"));
    assert_outcome(&other.get(&status), 404);
    assert_outcome(&other.delete(&status), 404);
    client.wait(&status);
}
