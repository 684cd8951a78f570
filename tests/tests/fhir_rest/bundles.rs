//! Transaction and batch Bundles posted to the base.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{
    FHIR_JSON, Fhir, assert_outcome, assert_outcome_value, entry_resources, resource_events,
    start_server, unique,
};

const PATIENT_URL: &str = "urn:uuid:0f4d8a52-3c1e-4b0a-9a4e-2b7c1d9e0a01";
const ENCOUNTER_URL: &str = "urn:uuid:0f4d8a52-3c1e-4b0a-9a4e-2b7c1d9e0a02";

fn patient(identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
    })
}

fn bundle(bundle_type: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": bundle_type, "entry": entries})
}

fn post_entry(full_url: Option<&str>, resource: Value) -> Value {
    let resource_type = resource["resourceType"].clone();
    let mut entry = json!({
        "resource": resource,
        "request": {"method": "POST", "url": resource_type},
    });
    if let Some(url) = full_url {
        entry["fullUrl"] = json!(url);
    }
    entry
}

fn get_entry(url: &str) -> Value {
    json!({"request": {"method": "GET", "url": url}})
}

/// The entries of a transaction or batch response; the type and count are checked.
fn response_entries(reply: &crate::http::Reply, bundle_type: &str, count: usize) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["resourceType"], "Bundle", "{body}");
    assert_eq!(body["type"], bundle_type, "{body}");
    let entries = body["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), count, "one response entry per entry: {body}");
    entries
}

/// The id in a response's `location`, `{base}/{type}/{id}/_history/{version}`.
fn location_id(entry: &Value, resource_type: &str) -> String {
    let location = entry["response"]["location"]
        .as_str()
        .unwrap_or_else(|| panic!("no location in {entry}"));
    let marker = format!("/{resource_type}/");
    let start = location
        .find(&marker)
        .unwrap_or_else(|| panic!("location {location} is not a {resource_type}"))
        + marker.len();
    let rest = &location[start..];
    rest.split('/').next().unwrap_or_default().to_string()
}

/// The status code at the start of `response.status`, such as 201 in `201 Created`.
fn entry_status(entry: &Value) -> u16 {
    let status = entry["response"]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no response.status in {entry}"));
    status
        .split(' ')
        .next()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("response.status {status} does not start with a code"))
}

/// Asserts a failed entry: its status and an OperationOutcome in `response.outcome`.
fn assert_entry_failed(entry: &Value, status: u16) -> String {
    assert_eq!(entry_status(entry), status, "{entry}");
    assert_outcome_value(&entry["response"]["outcome"], status)
}

#[test]
fn transaction_resolves_placeholders() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let marker = unique("placeholders");
    let encounter = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": PATIENT_URL},
    });
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "placeholders"},
        "subject": {"reference": PATIENT_URL, "display": "the new patient"},
        "encounter": {"reference": ENCOUNTER_URL},
    });
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(None, observation),
            post_entry(Some(ENCOUNTER_URL), encounter),
            post_entry(Some(PATIENT_URL), patient(&marker)),
        ],
    );

    let reply = fhir.bundle(&transaction);

    let entries = response_entries(&reply, "transaction-response", 3);
    for entry in &entries {
        assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
        assert_eq!(entry["response"]["etag"], "W/\"1\"", "{entry}");
        assert!(entry["response"]["lastModified"].is_string(), "{entry}");
    }
    let observation_id = location_id(&entries[0], "Observation");
    let encounter_id = location_id(&entries[1], "Encounter");
    let patient_id = location_id(&entries[2], "Patient");
    assert_eq!(
        entries[2]["fullUrl"],
        format!("{}/Patient/{patient_id}", fhir.base),
        "the response's fullUrl is the new resource's URL"
    );
    assert_eq!(entries[2]["resource"]["id"], patient_id.as_str());

    let stored = fhir.read(&format!("Observation/{observation_id}"));
    assert_eq!(
        stored["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(stored["subject"]["display"], "the new patient");
    assert_eq!(
        stored["encounter"]["reference"],
        format!("Encounter/{encounter_id}")
    );
    let stored = fhir.read(&format!("Encounter/{encounter_id}"));
    assert_eq!(
        stored["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(
        fhir.count(&format!("Observation?subject=Patient/{patient_id}")),
        1
    );
}

#[test]
fn transaction_with_unknown_placeholder_is_400() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let events = resource_events(&server);
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "dangling"},
        "subject": {"reference": "urn:uuid:7d1e1f0c-0000-4000-8000-000000000000"},
    });
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(Some(PATIENT_URL), patient(&unique("dangling"))),
            post_entry(None, observation),
        ],
    );

    let reply = fhir.bundle(&transaction);

    let diagnostics = assert_outcome(&reply, 400);
    assert!(diagnostics.contains("entry 1"), "{diagnostics}");
    assert_eq!(fhir.count("Patient"), 0);
    assert_eq!(fhir.count("Observation"), 0);
    assert_eq!(resource_events(&server), events, "no resource event");
}

#[test]
fn transaction_is_all_or_nothing() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let twice = unique("twice");
    fhir.create(&patient(&twice));
    fhir.create(&patient(&twice));
    let survivor = fhir.create(&patient(&unique("survivor")));
    let survivor_id = survivor["id"].as_str().expect("an id");
    let marker = unique("all-or-nothing");
    let mut conditional = post_entry(None, patient(&twice));
    conditional["request"]["ifNoneExist"] = json!(format!("identifier=urn:test|{twice}"));
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(Some(PATIENT_URL), patient(&marker)),
            json!({"request": {"method": "DELETE", "url": format!("Patient/{survivor_id}")}}),
            conditional,
        ],
    );

    let reply = fhir.bundle(&transaction);

    let diagnostics = assert_outcome(&reply, 412);
    assert!(diagnostics.contains("entry 2"), "{diagnostics}");
    assert_eq!(
        fhir.count(&format!("Patient?identifier=urn:test|{marker}")),
        0
    );
    assert_eq!(fhir.read(&format!("Patient/{survivor_id}")), survivor);
    assert_eq!(fhir.count("Patient"), 3);
}

#[test]
fn transaction_conditional_entries() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let existing_value = unique("existing");
    let existing = fhir.create(&patient(&existing_value));
    let existing_id = existing["id"].as_str().expect("an id");
    let doomed_value = unique("doomed");
    let doomed = fhir.create(&patient(&doomed_value));
    let updated_value = unique("updated");
    let to_update = fhir.create(&patient(&updated_value));
    let mut conditional_create = post_entry(Some(PATIENT_URL), patient(&existing_value));
    conditional_create["request"]["ifNoneExist"] =
        json!(format!("identifier=urn:test|{existing_value}"));
    let mut changed = patient(&updated_value);
    changed["gender"] = json!("unknown");
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "conditional"},
        "subject": {"reference": PATIENT_URL},
    });
    let patch = json!([{"op": "add", "path": "/active", "value": true}]);
    let transaction = bundle(
        "transaction",
        vec![
            conditional_create,
            post_entry(None, observation),
            json!({
                "resource": changed,
                "request": {
                    "method": "PUT",
                    "url": format!("Patient?identifier=urn:test|{updated_value}"),
                },
            }),
            json!({"request": {
                "method": "DELETE",
                "url": format!("Patient?identifier=urn:test|{doomed_value}"),
            }}),
            json!({
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": STANDARD.encode(patch.to_string()),
                },
                "request": {"method": "PATCH", "url": format!("Patient/{existing_id}")},
            }),
        ],
    );

    let reply = fhir.bundle(&transaction);

    let entries = response_entries(&reply, "transaction-response", 5);
    assert_eq!(entry_status(&entries[0]), 200, "the match is kept");
    assert_eq!(location_id(&entries[0], "Patient"), existing_id);
    assert_eq!(entry_status(&entries[1]), 201);
    let observation_id = location_id(&entries[1], "Observation");
    let stored = fhir.read(&format!("Observation/{observation_id}"));
    assert_eq!(
        stored["subject"]["reference"],
        format!("Patient/{existing_id}"),
        "a placeholder of a matched conditional create names the match"
    );
    assert_eq!(entry_status(&entries[2]), 200);
    assert_eq!(
        location_id(&entries[2], "Patient"),
        to_update["id"].as_str().expect("an id")
    );
    assert_eq!(entry_status(&entries[3]), 204);
    assert_eq!(entry_status(&entries[4]), 200);

    assert_eq!(fhir.read(&format!("Patient/{existing_id}"))["active"], true);
    let updated = fhir.read(&format!(
        "Patient/{}",
        to_update["id"].as_str().expect("an id")
    ));
    assert_eq!(updated["gender"], "unknown");
    assert_outcome(
        &fhir.get(&format!(
            "Patient/{}",
            doomed["id"].as_str().expect("an id")
        )),
        410,
    );
    assert_eq!(fhir.count("Patient"), 2);
}

#[test]
fn transaction_reads_return_resources_and_searchsets() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let existing = fhir.create(&patient(&unique("read")));
    let existing_id = existing["id"].as_str().expect("an id");
    let marker = unique("searched");
    let transaction = bundle(
        "transaction",
        vec![
            get_entry(&format!("Patient/{existing_id}")),
            get_entry(&format!("Patient?identifier=urn:test|{marker}")),
            post_entry(Some(PATIENT_URL), patient(&marker)),
            get_entry(&format!("Patient/{existing_id}/_history/1")),
        ],
    );

    let reply = fhir.bundle(&transaction);

    let entries = response_entries(&reply, "transaction-response", 4);
    assert_eq!(entry_status(&entries[0]), 200);
    assert_eq!(entries[0]["resource"], existing);
    assert_eq!(entry_status(&entries[1]), 200);
    let searchset = &entries[1]["resource"];
    assert_eq!(searchset["resourceType"], "Bundle", "{searchset}");
    assert_eq!(searchset["type"], "searchset", "{searchset}");
    let found = entry_resources(searchset);
    assert_eq!(found.len(), 1, "reads run after the writes: {searchset}");
    assert_eq!(found[0]["id"], location_id(&entries[2], "Patient").as_str());
    assert_eq!(entry_status(&entries[2]), 201);
    assert_eq!(entry_status(&entries[3]), 200);
    assert_eq!(entries[3]["resource"], existing);
}

#[test]
fn transaction_prefer_minimal_omits_resources() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let transaction = bundle(
        "transaction",
        vec![post_entry(Some(PATIENT_URL), patient(&unique("minimal")))],
    );

    let reply = fhir.post_with("", &transaction, &[("Prefer", "return=minimal")]);

    let entries = response_entries(&reply, "transaction-response", 1);
    assert_eq!(entry_status(&entries[0]), 201);
    assert!(entries[0].get("resource").is_none(), "{}", entries[0]);
    assert!(entries[0]["response"]["location"].is_string());
}

#[test]
fn transaction_writing_one_resource_twice_is_400() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let mut resource = patient(&unique("twice"));
    resource["id"] = json!("written-twice");
    let put = json!({
        "resource": resource,
        "request": {"method": "PUT", "url": "Patient/written-twice"},
    });
    let transaction = bundle("transaction", vec![put.clone(), put]);

    let reply = fhir.bundle(&transaction);

    assert_outcome(&reply, 400);
    assert_outcome(&fhir.get("Patient/written-twice"), 404);
}

#[test]
fn batch_entries_succeed_or_fail_alone() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let existing = fhir.create(&patient(&unique("batch")));
    let existing_id = existing["id"].as_str().expect("an id");
    let doomed = fhir.create(&patient(&unique("doomed")));
    let doomed_id = doomed["id"].as_str().expect("an id");
    let marker = unique("batch-created");
    let mut stale = existing.clone();
    stale["gender"] = json!("female");
    let batch = bundle(
        "batch",
        vec![
            post_entry(None, patient(&marker)),
            json!({
                "resource": stale,
                "request": {
                    "method": "PUT",
                    "url": format!("Patient/{existing_id}"),
                    "ifMatch": "W/\"9\"",
                },
            }),
            post_entry(None, json!({"resourceType": "Patient", "id": "bad id!"})),
            get_entry("Patient/no-such-patient"),
            json!({"request": {"method": "DELETE", "url": format!("Patient/{doomed_id}")}}),
            get_entry(&format!("Patient?identifier=urn:test|{marker}")),
            json!({
                "resource": patient(&unique("patch")),
                "request": {"method": "PATCH", "url": format!("Patient/{existing_id}")},
            }),
        ],
    );

    let reply = fhir.bundle(&batch);

    let entries = response_entries(&reply, "batch-response", 7);
    assert_eq!(entry_status(&entries[0]), 201, "{}", entries[0]);
    assert!(entries[0]["response"]["location"].is_string());
    let diagnostics = assert_entry_failed(&entries[1], 412);
    assert!(diagnostics.contains("version 1"), "{diagnostics}");
    assert_entry_failed(&entries[2], 422);
    assert_entry_failed(&entries[3], 404);
    assert_eq!(entry_status(&entries[4]), 204, "{}", entries[4]);
    assert_eq!(entry_status(&entries[5]), 200, "{}", entries[5]);
    assert_eq!(entry_resources(&entries[5]["resource"]).len(), 1);
    assert_eq!(entry_status(&entries[6]), 400, "{}", entries[6]);

    assert_eq!(
        fhir.count(&format!("Patient?identifier=urn:test|{marker}")),
        1
    );
    assert_eq!(fhir.read(&format!("Patient/{existing_id}")), existing);
    assert_outcome(&fhir.get(&format!("Patient/{doomed_id}")), 410);
}

#[test]
fn bundle_endpoint_rejects_other_bodies() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let events = resource_events(&server);
    let collection = bundle(
        "collection",
        vec![json!({"resource": patient(&unique("collection"))})],
    );
    let searchset = bundle("searchset", vec![]);
    let cases = [
        ("a Patient", patient(&unique("bare")), 400),
        ("a collection", collection, 400),
        ("a searchset", searchset, 400),
        (
            "a Bundle without type",
            json!({"resourceType": "Bundle"}),
            400,
        ),
    ];
    for (what, body, status) in cases {
        let reply = fhir.bundle(&body);
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_outcome(&reply, status);
    }

    let text = fhir.send(
        Method::POST,
        "",
        "text/plain",
        bundle("batch", vec![]).to_string(),
        &[],
    );
    assert_outcome(&text, 415);
    let truncated = fhir.send(Method::POST, "", FHIR_JSON, "{\"resourceType\": \"Bun", &[]);
    assert_outcome(&truncated, 400);

    assert_eq!(fhir.count("Patient"), 0);
    assert_eq!(resource_events(&server), events, "no resource event");
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    transaction_resolves_placeholders,
    transaction_with_unknown_placeholder_is_400,
    transaction_is_all_or_nothing,
    transaction_conditional_entries,
    transaction_reads_return_resources_and_searchsets,
    transaction_prefer_minimal_omits_resources,
    transaction_writing_one_resource_twice_is_400,
    batch_entries_succeed_or_fail_alone,
    bundle_endpoint_rejects_other_bodies,
);

#[test]
fn batch_reads_take_any_get_url() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let patient = fhir.create(&patient(&unique("batch-reads")));
    let id = patient["id"].as_str().expect("an id");
    let observation = fhir.create(&json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": format!("Patient/{id}")},
    }));
    let batch = bundle(
        "batch",
        vec![
            get_entry(&format!("Patient/{id}/_history")),
            get_entry(&format!("Patient/{id}/Observation")),
            get_entry(&format!("Patient/{id}/$everything")),
            get_entry("Patient/_history?_count=1"),
            get_entry(&format!("?_type=Observation&subject=Patient/{id}")),
            get_entry("OperationDefinition/import"),
            get_entry("Patient/unknown-id-for-batch"),
        ],
    );

    let reply = fhir.bundle(&batch);

    let entries = response_entries(&reply, "batch-response", 7);
    for entry in &entries[..6] {
        assert_eq!(entry_status(entry), 200, "{entry}");
    }
    let history = &entries[0]["resource"];
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(entry_resources(history)[0]["id"], id);
    for (index, expected) in [(1, "searchset"), (2, "searchset"), (4, "searchset")] {
        let found = &entries[index]["resource"];
        assert_eq!(found["type"], expected, "{found}");
        let ids: Vec<&str> = found["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str())
            .collect();
        assert!(
            ids.contains(&observation["id"].as_str().unwrap()),
            "{found}"
        );
    }
    assert_eq!(entries[3]["resource"]["type"], "history");
    assert_eq!(
        entries[5]["resource"]["resourceType"],
        "OperationDefinition"
    );
    assert_entry_failed(&entries[6], 404);
}

#[test]
fn failing_read_fails_the_transaction_before_any_write() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let marker = unique("read-first");
    let before = resource_events(&server);
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(Some(PATIENT_URL), patient(&marker)),
            get_entry("Observation/no-such-observation"),
        ],
    );

    let reply = fhir.bundle(&transaction);

    let diagnostics = assert_outcome(&reply, 404);
    assert!(diagnostics.contains("entry 1"), "{diagnostics}");
    assert_eq!(
        fhir.count(&format!("Patient?identifier=urn:test|{marker}")),
        0
    );
    assert_eq!(resource_events(&server), before, "nothing was written");

    // A read of what the transaction deletes would fail after the writes, so the whole
    // transaction fails first.
    let doomed = fhir.create(&patient(&unique("doomed")));
    let doomed_id = doomed["id"].as_str().expect("an id");
    let transaction = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": format!("Patient/{doomed_id}")}}),
            get_entry(&format!("Patient/{doomed_id}")),
        ],
    );
    assert_outcome(&fhir.bundle(&transaction), 409);
    assert_eq!(fhir.read(&format!("Patient/{doomed_id}")), doomed);

    // A bad search of a written type fails before the writes too.
    let transaction = bundle(
        "transaction",
        vec![
            post_entry(None, patient(&unique("bad-search"))),
            get_entry("Patient?birthdate=notadate"),
        ],
    );
    assert_outcome(&fhir.bundle(&transaction), 400);
    assert_eq!(
        resource_events(&server),
        before + 1,
        "only the setup create"
    );

    // A read of a resource the transaction creates runs after the writes.
    let id = unique("put-then-read");
    let mut put = post_entry(None, json!({"resourceType": "Patient", "id": id}));
    put["request"] = json!({"method": "PUT", "url": format!("Patient/{id}")});
    let transaction = bundle(
        "transaction",
        vec![put, get_entry(&format!("Patient/{id}"))],
    );
    let entries = response_entries(&fhir.bundle(&transaction), "transaction-response", 2);
    assert_eq!(entry_status(&entries[1]), 200, "{}", entries[1]);
    assert_eq!(entries[1]["resource"]["id"], id.as_str());
}

#[test]
fn entries_breaking_definition_rules_are_422() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let transaction = bundle(
        "transaction",
        vec![post_entry(
            None,
            json!({"resourceType": "Observation", "code": {"text": "no status"}}),
        )],
    );
    let diagnostics = assert_outcome(&fhir.bundle(&transaction), 422);
    assert!(diagnostics.contains("Observation.status"), "{diagnostics}");

    let batch = bundle(
        "batch",
        vec![
            post_entry(None, json!({"resourceType": "Patient", "gender": "robot"})),
            post_entry(None, patient(&unique("fine"))),
        ],
    );
    let entries = response_entries(&fhir.bundle(&batch), "batch-response", 2);
    let diagnostics = assert_entry_failed(&entries[0], 422);
    assert!(
        diagnostics.contains("administrative-gender"),
        "{diagnostics}"
    );
    assert_eq!(entry_status(&entries[1]), 201);
}
