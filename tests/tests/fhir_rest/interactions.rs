//! create, read, vread, update, conditional update, JSON Patch, delete and conditional
//! delete.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{
    Fhir, JSON_PATCH, assert_outcome, location, start_server, unique, without_version,
};
use crate::http::Reply;

fn patient(identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": "Rest", "given": ["Ada"]}],
    })
}

/// Asserts that `Last-Modified` is an HTTP date (IMF-fixdate, such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`).
fn assert_http_date(reply: &Reply) {
    let value = reply
        .header("last-modified")
        .unwrap_or_else(|| panic!("no Last-Modified: {}", reply.body));
    let parts: Vec<&str> = value.split(' ').collect();
    assert_eq!(parts.len(), 6, "Last-Modified {value} is not an HTTP date");
    assert!(parts[0].ends_with(','), "Last-Modified {value}");
    assert_eq!(parts[5], "GMT", "Last-Modified {value}");
    assert_eq!(parts[4].len(), 8, "Last-Modified {value}");
}

#[test]
fn create_answers_per_prefer_header() {
    let server = start_server();
    let fhir = Fhir::admin(&server);

    let representation = fhir.post_with(
        "Patient",
        &patient("representation"),
        &[("Prefer", "return=representation")],
    );
    assert_eq!(representation.status, 201, "{}", representation.body);
    assert_eq!(representation.header("etag"), Some("W/\"1\""));
    assert_http_date(&representation);
    let (id, version) = location(&representation, &fhir.base, "Patient");
    assert_eq!(version, "1");
    let body = representation.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].is_string(), "{body}");
    assert_eq!(without_version(&body), {
        let mut expected = patient("representation");
        expected["id"] = json!(id);
        expected
    });

    let default = fhir.post("Patient", &patient("default"));
    assert_eq!(default.status, 201, "{}", default.body);
    assert_eq!(default.json()["resourceType"], "Patient");

    let minimal = fhir.post_with(
        "Patient",
        &patient("minimal"),
        &[("Prefer", "return=minimal")],
    );
    assert_eq!(minimal.status, 201, "{}", minimal.body);
    assert_eq!(minimal.body, "", "return=minimal has no body");
    assert_eq!(minimal.header("etag"), Some("W/\"1\""));
    assert_http_date(&minimal);
    let (minimal_id, _) = location(&minimal, &fhir.base, "Patient");
    assert_eq!(
        fhir.read(&format!("Patient/{minimal_id}"))["id"],
        minimal_id
    );

    let outcome = fhir.post_with(
        "Patient",
        &patient("outcome"),
        &[("Prefer", "return=OperationOutcome")],
    );
    assert_eq!(outcome.status, 201, "{}", outcome.body);
    let body = outcome.json();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["severity"], "information", "{body}");
    location(&outcome, &fhir.base, "Patient");

    assert_eq!(fhir.count("Patient"), 4);
}

#[test]
fn create_ignores_client_id() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let mut resource = patient("client-id");
    resource["id"] = json!("chosen-by-client");

    let reply = fhir.post("Patient", &resource);

    assert_eq!(reply.status, 201, "{}", reply.body);
    let (id, _) = location(&reply, &fhir.base, "Patient");
    assert_ne!(id, "chosen-by-client", "POST assigns the id");
    assert_outcome(&fhir.get("Patient/chosen-by-client"), 404);
}

#[test]
fn read_and_vread_return_versions() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("versions"));
    let id = created["id"].as_str().expect("an id");
    let path = format!("Patient/{id}");
    let mut changed = created.clone();
    changed["gender"] = json!("female");
    let update = fhir.put(&path, &changed);
    assert_eq!(update.status, 200, "{}", update.body);
    assert_eq!(update.header("etag"), Some("W/\"2\""));
    assert_http_date(&update);
    assert_eq!(location(&update, &fhir.base, "Patient").1, "2");

    let read = fhir.get(&path);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.header("etag"), Some("W/\"2\""));
    assert_http_date(&read);
    let current = read.json();
    assert_eq!(current["gender"], "female");
    assert_eq!(current["meta"]["versionId"], "2");
    assert_eq!(without_version(&current), without_version(&changed));

    let first = fhir.get(&format!("{path}/_history/1"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("etag"), Some("W/\"1\""));
    assert_eq!(first.json(), created);

    let second = fhir.get(&format!("{path}/_history/2"));
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.json(), current);

    assert_outcome(&fhir.get(&format!("{path}/_history/3")), 404);
    assert_outcome(&fhir.get(&format!("{path}/_history/x")), 404);
    assert_outcome(&fhir.get("Patient/no-such-patient"), 404);
    assert_outcome(&fhir.get("NoSuchType/1"), 404);
}

#[test]
fn responses_are_private_and_revalidated() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("cached"));
    let id = created["id"].as_str().expect("an id");
    for path in [
        format!("Patient/{id}"),
        "Patient?identifier=cached".to_string(),
    ] {
        let reply = fhir.get(&path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(
            reply.header("cache-control"),
            Some("private, no-cache"),
            "{path}"
        );
        let vary: Vec<&str> = reply
            .headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            vary.iter()
                .any(|v| v.to_ascii_lowercase().contains("authorization")),
            "{path}: Vary {vary:?}"
        );
    }
    let stranger = Fhir::new(&fhir.base, "not-a-token");
    let denied = stranger.get(&format!("Patient/{id}"));
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert_eq!(denied.header("cache-control"), Some("private, no-cache"));
}

#[test]
fn update_creates_with_client_id() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let id = unique("client");
    let id = id.as_str();
    let mut resource = patient("create-on-update");
    resource["id"] = json!(id);
    let path = format!("Patient/{id}");

    let created = fhir.put(&path, &resource);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert_eq!(
        location(&created, &fhir.base, "Patient"),
        (id.to_string(), "1".to_string())
    );
    assert_eq!(without_version(&fhir.read(&path)), resource);

    let updated = fhir.put(&path, &resource);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.header("etag"), Some("W/\"2\""));
}

#[test]
fn update_rejects_mismatched_ids() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let mut resource = patient("mismatch");
    resource["id"] = json!("one");

    assert_outcome(&fhir.put("Patient/two", &resource), 400);
    let without_id = patient("no-id");
    assert_outcome(&fhir.put("Patient/two", &without_id), 400);
    assert_outcome(&fhir.put("Patient/bad%20id", &resource), 400);
    assert_eq!(fhir.count("Patient"), 0);
}

#[test]
fn conditional_update_by_match_count() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let value = unique("conditional");
    let criteria = format!("Patient?identifier=urn:test|{value}");

    // No match: the update creates.
    let none = fhir.put(&criteria, &patient(&value));
    assert_eq!(none.status, 201, "{}", none.body);
    let (id, version) = location(&none, &fhir.base, "Patient");
    assert_eq!(version, "1");

    // One match: that resource is updated.
    let mut changed = patient(&value);
    changed["gender"] = json!("male");
    let one = fhir.put(&criteria, &changed);
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        location(&one, &fhir.base, "Patient"),
        (id.clone(), "2".to_string())
    );
    assert_eq!(fhir.read(&format!("Patient/{id}"))["gender"], "male");
    assert_eq!(fhir.count(&criteria), 1);

    // Two matches: 412, and nothing changes.
    fhir.create(&patient(&value));
    let two = fhir.put(&criteria, &changed);
    assert_outcome(&two, 412);
    assert_eq!(fhir.count(&criteria), 2);
    assert_eq!(
        fhir.get(&format!("Patient/{id}")).header("etag"),
        Some("W/\"2\"")
    );

    // A PUT on the type without criteria is not an update.
    assert_outcome(&fhir.put("Patient", &changed), 405);
}

#[test]
fn json_patch_operations_apply() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("patch"));
    let id = created["id"].as_str().expect("an id");
    let path = format!("Patient/{id}");

    let reply = fhir.patch(
        &path,
        &json!([
            {"op": "add", "path": "/active", "value": true},
            {"op": "replace", "path": "/name/0/family", "value": "Patched"},
            {"op": "remove", "path": "/identifier"},
            {"op": "test", "path": "/name/0/given/0", "value": "Ada"},
        ]),
    );

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    let patched = fhir.read(&path);
    assert_eq!(patched["active"], true);
    assert_eq!(patched["name"][0]["family"], "Patched");
    assert!(patched.get("identifier").is_none(), "{patched}");
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(
        reply.json(),
        patched,
        "the response is the patched resource"
    );
}

#[test]
fn json_patch_errors() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("patch-errors"));
    let id = created["id"].as_str().expect("an id");
    let path = format!("Patient/{id}");
    let cases = [
        (
            "a changed id",
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            422,
        ),
        (
            "a changed type",
            json!([{"op": "replace", "path": "/resourceType", "value": "Group"}]),
            422,
        ),
        (
            "a failing test",
            json!([
                {"op": "add", "path": "/active", "value": false},
                {"op": "test", "path": "/name/0/family", "value": "Someone else"},
            ]),
            422,
        ),
        (
            "a path that does not exist",
            json!([{"op": "remove", "path": "/deceasedBoolean"}]),
            422,
        ),
        ("an object, not an array", json!({"op": "add"}), 400),
    ];
    for (what, document, status) in cases {
        let reply = fhir.patch(&path, &document);
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_outcome(&reply, status);
    }

    let missing = fhir.patch(
        "Patient/no-such-patient",
        &json!([{"op": "add", "path": "/active", "value": true}]),
    );
    assert_outcome(&missing, 404);

    let wrong_type = fhir.send(
        Method::PATCH,
        &path,
        "application/json",
        json!([{"op": "add", "path": "/active", "value": true}]).to_string(),
        &[],
    );
    assert_outcome(&wrong_type, 415);

    let not_json = fhir.send(Method::PATCH, &path, JSON_PATCH, "[{", &[]);
    assert_outcome(&not_json, 400);

    let stored = fhir.get(&path);
    assert_eq!(
        stored.header("etag"),
        Some("W/\"1\""),
        "nothing was patched"
    );
    assert_eq!(stored.json(), created);
}

#[test]
fn patch_honours_if_match() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("patch-if-match"));
    let path = format!("Patient/{}", created["id"].as_str().expect("an id"));
    let document = json!([{"op": "add", "path": "/active", "value": true}]).to_string();

    let stale = fhir.send(
        Method::PATCH,
        &path,
        JSON_PATCH,
        document.clone(),
        &[("If-Match", "W/\"7\"")],
    );
    assert_outcome(&stale, 412);

    let current = fhir.send(
        Method::PATCH,
        &path,
        JSON_PATCH,
        document,
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(current.status, 200, "{}", current.body);
    assert_eq!(current.header("etag"), Some("W/\"2\""));
}

#[test]
fn patch_result_is_validated() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("patch-validated"));
    let path = format!("Patient/{}", created["id"].as_str().expect("an id"));
    for document in [
        json!([{"op": "add", "path": "/foo", "value": 1}]),
        json!([{"op": "add", "path": "/gender", "value": 5}]),
        json!([{"op": "add", "path": "/name", "value": {"family": "not an array"}}]),
    ] {
        let reply = fhir.send(Method::PATCH, &path, JSON_PATCH, document.to_string(), &[]);
        assert_outcome(&reply, 422);
    }
    let stored = fhir.read(&path);
    assert_eq!(stored, created, "a rejected patch changed the resource");
}

#[test]
fn delete_leaves_history() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let created = fhir.create(&patient("delete"));
    let id = created["id"].as_str().expect("an id");
    let path = format!("Patient/{id}");

    let deleted = fhir.delete(&path);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(deleted.body, "");

    let gone = fhir.get(&path);
    assert_outcome(&gone, 410);
    let old = fhir.get(&format!("{path}/_history/1"));
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(old.json(), created);
    assert_outcome(&fhir.get(&format!("{path}/_history/2")), 410);

    let history = fhir.read(&format!("{path}/_history"));
    assert_eq!(history["type"], "history");
    let entries = history["entry"].as_array().expect("history entries");
    assert_eq!(entries.len(), 2, "{history}");
    assert_eq!(entries[0]["request"]["method"], "DELETE", "{history}");
    assert_eq!(entries[0]["request"]["url"], path.as_str());
    assert!(
        entries[0].get("resource").is_none(),
        "a deletion has no resource"
    );
    assert_eq!(entries[0]["response"]["etag"], "W/\"2\"");
    assert_eq!(entries[1]["request"]["method"], "POST", "{history}");
    assert_eq!(entries[1]["resource"], created);
    assert_eq!(fhir.count("Patient"), 0);

    // Deleting again changes nothing; updating brings the resource back as version 3.
    let again = fhir.delete(&path);
    assert_eq!(again.status, 204, "{}", again.body);
    let revived = fhir.put(&path, &created);
    assert!(
        revived.status == 200 || revived.status == 201,
        "{}",
        revived.body
    );
    assert_eq!(revived.header("etag"), Some("W/\"3\""));
    assert_eq!(fhir.count("Patient"), 1);
}

#[test]
fn conditional_delete_by_match_count() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let value = unique("conditional-delete");
    let criteria = format!("Patient?identifier=urn:test|{value}");
    let first = fhir.create(&patient(&value));
    let first_id = first["id"].as_str().expect("an id");

    let none = fhir.delete(&format!(
        "Patient?identifier=urn:test|{}",
        unique("nothing")
    ));
    assert_eq!(none.status, 204, "no match deletes nothing: {}", none.body);

    let one = fhir.delete(&criteria);
    assert_eq!(one.status, 204, "{}", one.body);
    assert_outcome(&fhir.get(&format!("Patient/{first_id}")), 410);
    assert_eq!(fhir.count(&criteria), 0);

    fhir.create(&patient(&value));
    fhir.create(&patient(&value));
    let two = fhir.delete(&criteria);
    assert_outcome(&two, 412);
    assert_eq!(fhir.count(&criteria), 2);

    assert_outcome(&fhir.delete("Patient"), 405);
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    create_answers_per_prefer_header,
    create_ignores_client_id,
    read_and_vread_return_versions,
    responses_are_private_and_revalidated,
    update_creates_with_client_id,
    update_rejects_mismatched_ids,
    conditional_update_by_match_count,
    json_patch_operations_apply,
    json_patch_errors,
    patch_honours_if_match,
    delete_leaves_history,
    conditional_delete_by_match_count,
);

#[test]
fn read_returns_the_requested_subset() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let mut resource = patient(&unique("subset"));
    resource["gender"] = json!("female");
    resource["birthDate"] = json!("1970-01-02");
    resource["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"});
    let created = fhir.create(&resource);
    let path = format!("Patient/{}", created["id"].as_str().expect("an id"));

    let elements = fhir.read(&format!("{path}?_elements=gender"));
    assert_eq!(elements["gender"], "female");
    assert!(elements.get("birthDate").is_none(), "{elements}");
    assert!(elements.get("identifier").is_none(), "{elements}");
    assert!(
        elements["meta"]["tag"].to_string().contains("SUBSETTED"),
        "{elements}"
    );

    let data = fhir.read(&format!("{path}/_history/1?_summary=data"));
    assert!(data.get("text").is_none(), "{data}");
    assert_eq!(data["birthDate"], "1970-01-02");

    assert_outcome(&fhir.get(&format!("{path}?_summary=count")), 400);
    assert_eq!(fhir.read(&path), created, "a plain read is unchanged");
}
