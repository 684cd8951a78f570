//! Conditional create under concurrency, If-Match, malformed bodies, media types and
//! size limits.

use std::sync::Barrier;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{
    FHIR_JSON, Fhir, assert_outcome, location, resource_events, start_server, unique,
};

/// The largest request body of a resource or Bundle: `FhirSettings::max_body_bytes`.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The most entries of a batch or transaction Bundle: `transaction::MAX_ENTRIES`.
const MAX_BUNDLE_ENTRIES: usize = 10_000;

fn patient_with_identifier(system: &str, value: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": value}],
    })
}

#[test]
fn concurrent_conditional_creates_store_one() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let patient = patient_with_identifier("urn:test", "123");
    let parallel = 8;
    let barrier = Barrier::new(parallel);

    let replies: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    fhir.post_with(
                        "Patient",
                        &patient,
                        &[
                            ("If-None-Exist", "identifier=urn:test|123"),
                            ("Prefer", "return=representation"),
                        ],
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread"))
            .collect()
    });

    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    let matched: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(created.len(), 1, "one create wins: {replies:?}");
    assert_eq!(
        matched.len(),
        parallel - 1,
        "the rest match it: {replies:?}"
    );
    let winner = created[0].json();
    let id = winner["id"]
        .as_str()
        .expect("the created Patient has an id");
    for reply in &matched {
        let body = reply.json();
        assert_eq!(body["resourceType"], "Patient", "{body}");
        assert_eq!(body["id"], id, "a 200 returns the created Patient: {body}");
        assert_eq!(body["meta"]["versionId"], "1", "{body}");
        let (location_id, version) = location(reply, &fhir.base, "Patient");
        assert_eq!(location_id, id);
        assert_eq!(version, "1");
    }
    assert_eq!(fhir.count("Patient?identifier=urn:test|123"), 1);
    assert_eq!(fhir.count("Patient"), 1);
}

#[test]
fn conditional_create_with_two_matches_is_412() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let value = unique("twice");
    let patient = patient_with_identifier("urn:test", &value);
    fhir.create(&patient);
    fhir.create(&patient);
    let events = resource_events(&server);

    let criteria = format!("identifier=urn:test|{value}");
    let reply = fhir.post_with("Patient", &patient, &[("If-None-Exist", &criteria)]);

    assert_outcome(&reply, 412);
    assert_eq!(fhir.count(&format!("Patient?{criteria}")), 2);
    assert_eq!(fhir.count("Patient"), 2);
    // The decision is the repository's, in log order, so the request is in the log.
    assert_eq!(resource_events(&server), events + 1);
}

/// Creates a Patient and updates it once, so it is at version 2.
fn patient_at_version_2(fhir: &Fhir) -> Value {
    let created = fhir.create(&patient_with_identifier("urn:test", &unique("etag")));
    let id = created["id"].as_str().expect("an id").to_string();
    let mut changed = created.clone();
    changed["active"] = json!(true);
    let reply = fhir.put(&format!("Patient/{id}"), &changed);
    assert_eq!(reply.status, 200, "{}", reply.body);
    fhir.read(&format!("Patient/{id}"))
}

#[test]
fn if_match_updates_only_the_current_version() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let patient = patient_at_version_2(&fhir);
    let id = patient["id"].as_str().expect("an id");
    let path = format!("Patient/{id}");

    let read = fhir.get(&path);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.header("etag"), Some("W/\"2\""));

    let mut changed = patient.clone();
    changed["gender"] = json!("female");
    let first = fhir.put_with(&path, &changed, &[("If-Match", "W/\"2\"")]);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("etag"), Some("W/\"3\""));

    let again = fhir.put_with(&path, &changed, &[("If-Match", "W/\"2\"")]);
    let diagnostics = assert_outcome(&again, 412);
    assert!(diagnostics.contains("version 3"), "{diagnostics}");

    let garbage = fhir.put_with(&path, &changed, &[("If-Match", "garbage")]);
    assert_outcome(&garbage, 400);

    let stored = fhir.get(&path);
    assert_eq!(stored.header("etag"), Some("W/\"3\""));
    assert_eq!(stored.json()["gender"], "female");
}

#[test]
fn stale_if_match_fails_whole_transaction() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let patient = patient_at_version_2(&fhir);
    let id = patient["id"].as_str().expect("an id");
    let mut changed = patient.clone();
    changed["gender"] = json!("other");
    let marker = unique("sibling");
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5e0b3a52-1a4c-4c55-9d0e-5d1f7e9a0001",
                "resource": patient_with_identifier("urn:test", &marker),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": changed,
                "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"1\""},
            },
        ],
    });

    let reply = fhir.bundle(&transaction);

    let diagnostics = assert_outcome(&reply, 412);
    assert!(diagnostics.contains("entry 1"), "{diagnostics}");
    assert_eq!(
        fhir.count(&format!("Patient?identifier=urn:test|{marker}")),
        0
    );
    let stored = fhir.get(&format!("Patient/{id}"));
    assert_eq!(stored.header("etag"), Some("W/\"2\""));
    assert!(stored.json().get("gender").is_none(), "{}", stored.body);
}

#[test]
fn malformed_bodies_store_nothing() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let events = resource_events(&server);
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
    });
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "truncated JSON",
            br#"{"resourceType": "Patient", "name": [{"family": "Tr"#.to_vec(),
            400,
        ),
        (
            "invalid UTF-8",
            b"{\"resourceType\": \"Patient\", \"name\": [{\"family\": \"\xff\xfe\"}]}".to_vec(),
            400,
        ),
        ("an Observation", observation.to_string().into_bytes(), 400),
        (
            "an empty object",
            br#"{"resourceType": "Patient", "maritalStatus": {}}"#.to_vec(),
            400,
        ),
        (
            "an empty array",
            br#"{"resourceType": "Patient", "name": []}"#.to_vec(),
            400,
        ),
        ("a JSON array", b"[]".to_vec(), 400),
        (
            "an id with a space",
            br#"{"resourceType": "Patient", "id": "bad id"}"#.to_vec(),
            422,
        ),
        (
            "meta that is not an object",
            br#"{"resourceType": "Patient", "meta": "x"}"#.to_vec(),
            422,
        ),
        (
            "a reference that is not a string",
            br#"{"resourceType": "Patient", "generalPractitioner": [{"reference": 5}]}"#.to_vec(),
            422,
        ),
    ];

    for (what, body, status) in cases {
        let reply = fhir.send(Method::POST, "Patient", FHIR_JSON, body, &[]);
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_outcome(&reply, status);
    }

    // Well-formed resources that break a rule of their definition.
    let rule_breakers = [
        (
            "Patient",
            json!({"resourceType": "Patient", "gender": "robot"}),
            "Patient.gender",
        ),
        (
            "Observation",
            json!({"resourceType": "Observation", "code": {"text": "x"}}),
            "Observation.status",
        ),
        (
            "Observation",
            json!({"resourceType": "Observation", "status": "final"}),
            "Observation.code",
        ),
        (
            "Condition",
            json!({
                "resourceType": "Condition",
                "subject": {"reference": "Patient/x"},
                "clinicalStatus": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "bogus",
                }]},
            }),
            "Condition.clinicalStatus",
        ),
    ];
    for (resource_type, resource, path) in rule_breakers {
        let reply = fhir.post(resource_type, &resource);
        let diagnostics = assert_outcome(&reply, 422);
        assert!(diagnostics.contains(path), "{resource}: {diagnostics}");
    }

    assert_eq!(fhir.count("Patient"), 0);
    assert_eq!(fhir.count("Observation"), 0);
    assert_eq!(fhir.count("Condition"), 0);
    assert_eq!(resource_events(&server), events, "no resource event");
}

#[test]
fn media_types_are_negotiated() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let patient = patient_with_identifier("urn:test", &unique("media"));

    let text = fhir.send(
        Method::POST,
        "Patient",
        "text/plain",
        patient.to_string(),
        &[],
    );
    assert_outcome(&text, 415);
    assert_eq!(fhir.count("Patient"), 0);

    let created = fhir.create(&patient);
    let path = format!("Patient/{}", created["id"].as_str().expect("an id"));
    let foobar = fhir.get_with(&path, &[("Accept", "application/foobar")]);
    assert_outcome(&foobar, 406);
    let stu3 = fhir.get_with(
        &path,
        &[("Accept", "application/fhir+json; fhirVersion=3.0")],
    );
    assert_outcome(&stu3, 406);
    let r4 = fhir.get_with(
        &path,
        &[("Accept", "application/fhir+json; fhirVersion=4.0")],
    );
    assert_eq!(r4.status, 200, "{}", r4.body);
    // `_format` overrides `Accept`.
    let overridden = fhir.get_with(
        &format!("{path}?_format=json"),
        &[("Accept", "application/fhir+xml")],
    );
    assert_eq!(overridden.status, 200, "{}", overridden.body);
    let xml = fhir.get_with(&format!("{path}?_format=xml"), &[("Accept", FHIR_JSON)]);
    assert_outcome(&xml, 406);

    let fhir_json = fhir.get_with(&path, &[("Accept", FHIR_JSON)]);
    let plain_json = fhir.get_with(&path, &[("Accept", "application/json")]);
    assert_eq!(fhir_json.status, 200, "{}", fhir_json.body);
    assert_eq!(plain_json.status, 200, "{}", plain_json.body);
    assert_eq!(plain_json.json(), fhir_json.json());
    assert_eq!(plain_json.header("etag"), fhir_json.header("etag"));
    let content_type = plain_json.header("content-type").unwrap_or_default();
    assert!(
        content_type.contains("json"),
        "Accept: application/json gets JSON, not {content_type}"
    );

    let created_as_json = fhir.send(
        Method::POST,
        "Patient",
        "application/json",
        patient_with_identifier("urn:test", &unique("json")).to_string(),
        &[],
    );
    assert_eq!(created_as_json.status, 201, "{}", created_as_json.body);
}

#[test]
fn oversized_resource_is_413() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let events = resource_events(&server);
    let padding = "a".repeat(MAX_BODY_BYTES + 1);
    let patient = json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": format!("<div>{padding}</div>")},
    });

    let reply = fhir.post("Patient", &patient);

    let diagnostics = assert_outcome(&reply, 413);
    assert!(
        diagnostics.contains(&MAX_BODY_BYTES.to_string()),
        "the outcome names the limit: {diagnostics}"
    );
    assert_eq!(fhir.count("Patient"), 0);
    assert_eq!(resource_events(&server), events, "no resource event");
}

/// Declares a body over the limit and sends one byte. The response must come at once,
/// not after the body timeout.
#[test]
fn declared_oversize_is_413_at_once() {
    use std::io::{Read, Write};
    let server = start_server();
    let address = server.base_url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connecting");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    let request = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{",
        server.admin_token(),
        MAX_BODY_BYTES + 1
    );
    stream.write_all(request.as_bytes()).expect("sending");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("OperationOutcome"), "{response}");
}

#[test]
fn transaction_over_entry_limit_is_rejected() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let events = resource_events(&server);
    let entry = json!({
        "resource": {"resourceType": "Patient", "active": true},
        "request": {"method": "POST", "url": "Patient"},
    });
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": vec![entry; MAX_BUNDLE_ENTRIES + 1],
    });

    let reply = fhir.bundle(&transaction);

    assert!(
        reply.status == 400 || reply.status == 413,
        "expected 400 or 413, got {}: {}",
        reply.status,
        reply.body
    );
    let diagnostics = assert_outcome(&reply, reply.status);
    assert!(
        diagnostics.contains(&MAX_BUNDLE_ENTRIES.to_string()),
        "the outcome names the limit: {diagnostics}"
    );
    assert_eq!(fhir.count("Patient"), 0);
    assert_eq!(resource_events(&server), events, "no resource event");
}

#[test]
fn transaction_at_entry_limit_is_accepted() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let entry = json!({
        "resource": {"resourceType": "Patient", "active": true},
        "request": {"method": "POST", "url": "Patient"},
    });
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": vec![entry; MAX_BUNDLE_ENTRIES],
    });

    let reply = fhir.bundle(&transaction);

    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["type"], "transaction-response");
    assert_eq!(
        response["entry"].as_array().map(Vec::len),
        Some(MAX_BUNDLE_ENTRIES)
    );
    assert_eq!(fhir.count("Patient") as usize, MAX_BUNDLE_ENTRIES);
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    concurrent_conditional_creates_store_one,
    conditional_create_with_two_matches_is_412,
    if_match_updates_only_the_current_version,
    stale_if_match_fails_whole_transaction,
    malformed_bodies_store_nothing,
    media_types_are_negotiated,
    oversized_resource_is_413,
    transaction_over_entry_limit_is_rejected,
    transaction_at_entry_limit_is_accepted,
);
