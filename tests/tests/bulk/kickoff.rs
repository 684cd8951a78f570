//! Kick-off requests that must be rejected with an OperationOutcome, or must not widen
//! the export: unknown `_type` names, `_elements` that cannot be applied, malformed
//! `Parameters` bodies, wrong methods and oversized bodies.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Reply, assert_outcome, entries};
use crate::fixture::{Hearth, group, patient};

const FHIR_JSON: &str = "application/fhir+json";

/// The types of a manifest's output entries.
fn output_types(manifest: &Value) -> Vec<String> {
    let mut types: Vec<String> = entries(manifest, "output")
        .into_iter()
        .map(|(resource_type, _, _)| resource_type)
        .collect();
    types.sort();
    types.dedup();
    types
}

#[test]
fn unknown_type_never_widens_export() {
    let hearth = Hearth::start();
    let client = hearth.client();

    // Lenient handling (the default) drops the unknown name; nothing valid remains.
    let diagnostics = assert_outcome(&client.kick_off("$export?_type=Foo"), 400);
    assert!(diagnostics.contains("Foo"), "{diagnostics}");
    let diagnostics = assert_outcome(&client.kick_off("Patient/$export?_type=Organization"), 400);
    assert!(diagnostics.contains("Organization"), "{diagnostics}");

    // A valid name next to an unknown one exports that type only, and reports the other.
    let manifest = client.export("$export?_type=Patient,Foo");
    assert_eq!(output_types(&manifest), ["Patient"]);
    let errors = client.lines_of(&manifest, "error");
    assert!(
        errors
            .iter()
            .any(|(_, outcome)| outcome.to_string().contains("Foo")),
        "{errors:?}"
    );
    let manifest = client.export("Patient/$export?_type=Patient,Organization");
    assert_eq!(output_types(&manifest), ["Patient"]);
}

#[test]
fn elements_not_applied_are_reported() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let strict = [("prefer", "handling=strict")];
    for path in [
        "$export?_type=Patient&_elements=gender&_outputFormat=parquet",
        "$export?_type=Patient&_elements=name.family",
        "$export?_type=Patient&_elements=Foo.bar",
    ] {
        let diagnostics = assert_outcome(&client.kick_off_with(path, &strict), 400);
        assert!(diagnostics.contains("_elements"), "{path}: {diagnostics}");
    }

    // Lenient handling exports full resources and says why in the error file.
    let manifest = client.export("$export?_type=Patient&_elements=name.family");
    let errors = client.lines_of(&manifest, "error");
    assert!(
        errors
            .iter()
            .any(|(_, outcome)| outcome.to_string().contains("name.family")),
        "{errors:?}"
    );
    let manifest = client.export("$export?_type=Patient&_elements=gender&_outputFormat=parquet");
    let errors = client.lines_of(&manifest, "error");
    assert!(
        errors
            .iter()
            .any(|(_, outcome)| outcome.to_string().contains("_elements")),
        "{errors:?}"
    );
}

/// Sends a POST kick-off with a raw body.
fn post_body(hearth: &Hearth, path: &str, body: String) -> Reply {
    let client = hearth.client();
    Reply::send(
        client
            .request(Method::POST, path)
            .header("accept", FHIR_JSON)
            .header("prefer", "respond-async")
            .header("content-type", FHIR_JSON)
            .body(body),
    )
}

#[test]
fn malformed_parameters_body_gets_400() {
    let hearth = Hearth::start();
    let bodies = [
        json!({"resourceType": "Parameters", "parameter": {"name": "_type"}}),
        json!({"resourceType": "Parameters", "parameter": [{"valueString": "Patient"}]}),
        json!({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}),
    ];
    for body in bodies {
        let reply = post_body(&hearth, "$export", body.to_string());
        assert_outcome(&reply, 400);
    }
}

#[test]
fn framework_errors_are_outcomes() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let cases = [
        (Method::GET, "$import", "POST"),
        (Method::PUT, "$export", "GET"),
        (Method::GET, "Group/x/$refresh", "POST"),
        (Method::POST, "$bulk-status/x", "GET"),
    ];
    for (method, path, allowed) in cases {
        let reply = Reply::send(client.request(method.clone(), path));
        assert_outcome(&reply, 405);
        let allow = reply.header("allow").unwrap_or_default();
        assert!(
            allow.contains(allowed),
            "{method} {path}: Allow is {allow:?}"
        );
    }

    let large = "x".repeat(3 * 1024 * 1024);
    for path in ["$export", "$import"] {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": large}]});
        let reply = post_body(&hearth, path, body.to_string());
        assert_outcome(&reply, 413);
    }
}

#[test]
fn shared_resource_is_written_once() {
    let hearth = Hearth::start();
    hearth.put(&patient("shared-a", "female"));
    hearth.put(&patient("shared-b", "male"));
    hearth.put(&group("shared-group", &["shared-a", "shared-b"]));
    let client = hearth.client();

    let manifest = client.export("Group/shared-group/$export?_type=Group");
    let lines = client.lines_of(&manifest, "output");
    let groups: Vec<&Value> = lines.iter().map(|(_, resource)| resource).collect();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(entries(&manifest, "output")[0].2, 1);

    let reply = client.kick_off_post(
        "Patient/$export",
        &[
            ("patient", "Patient/shared-a"),
            ("patient", "Patient/shared-b"),
            ("_type", "Patient,Group"),
        ],
    );
    let manifest = client.wait(&client.status_url(&reply));
    let keys = crate::client::keys(&client.lines_of(&manifest, "output"));
    assert_eq!(
        keys,
        ["Group/shared-group", "Patient/shared-a", "Patient/shared-b"]
    );
}
