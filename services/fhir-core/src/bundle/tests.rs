use super::*;

fn load(body: &str) -> Result<Vec<Entry>, EntryError> {
    parse_document(body.as_bytes(), Semantics::Load)
}

#[test]
fn transaction_keeps_ids_from_full_urls() {
    let entries = load(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:0e6e9c0a-1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
        {"fullUrl":"urn:uuid:0e6e9c0a-2","resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"urn:uuid:0e6e9c0a-1"}},"request":{"method":"POST","url":"Observation"}}
    ]}"#,
    )
    .unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].id.as_deref(), Some("0e6e9c0a-1"));
    assert_eq!(entries[0].action, Action::Update);
    assert_eq!(entries[1].id.as_deref(), Some("o1"));
    assert!(unresolved_placeholders(&entries).is_empty());
}

#[test]
fn bare_resource_is_one_update() {
    let entries = load(
        r#"{"resourceType":"Group","id":"g1","member":[{"entity":{"reference":"urn:uuid:p1"}}]}"#,
    )
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].position, Position::Document);
    assert_eq!(
        unresolved_placeholders(&entries),
        vec![(0, "urn:uuid:p1".to_string())]
    );
}

#[test]
fn rejects_searchset_bundle() {
    let err = load(r#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotSupported);
    assert!(err.message.contains("searchset"), "{err}");
}

#[test]
fn rejects_unknown_type_naming_entry() {
    let err = load(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
        {"fullUrl":"urn:uuid:b","resource":{"resourceType":"Patientt"},"request":{"method":"POST","url":"Patientt"}}
    ]}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownType);
    assert_eq!(err.position, Position::Entry(1));
    assert_eq!(err.full_url.as_deref(), Some("urn:uuid:b"));
    assert!(
        err.to_string()
            .starts_with("entry 1 (urn:uuid:b): unknown resourceType 'Patientt'"),
        "{err}"
    );
}

#[test]
fn rejects_mismatched_request_url() {
    let err = load(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Observation"}}
    ]}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(err.position, Position::Entry(0));
    assert!(err.message.contains("Observation"), "{err}");
}

#[test]
fn rejects_truncated_json_and_bad_utf8() {
    let err =
        load(r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Syntax);
    let mut bytes = br#"{"resourceType":"Patient","name":[{"family":"Bad"#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(br#""}]}"#);
    let err = parse_document(&bytes, Semantics::Load).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Syntax);
}

#[test]
fn rejects_json_that_is_not_fhir() {
    let err = load(r#"{"patients":[{"name":"x"}]}"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.message.contains("resourceType"), "{err}");
    let err = load(r#"[1,2]"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
}

#[test]
fn rejects_placeholder_that_is_no_uuid() {
    let err = load(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:not a uuid"}},"request":{"method":"POST","url":"Observation"}}
    ]}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnresolvedReference);
}

#[test]
fn rejects_duplicate_full_urls() {
    let err = load(
        r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}
    ]}"#,
    )
    .unwrap_err();
    assert_eq!(err.position, Position::Entry(1));
}

#[test]
fn conditional_forms_are_kept() {
    let entries = load(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=s|1"}},
        {"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?identifier=s|2"}},
        {"request":{"method":"DELETE","url":"Patient/p9"}}
    ]}"#,
    )
    .unwrap();
    assert_eq!(entries[0].action, Action::Create);
    assert_eq!(entries[0].if_none_exist.as_deref(), Some("identifier=s|1"));
    assert_eq!(entries[1].criteria.as_deref(), Some("identifier=s|2"));
    assert_eq!(entries[2].action, Action::Delete);
    assert_eq!(entries[2].id.as_deref(), Some("p9"));
}

#[test]
fn ndjson_names_bad_line() {
    let body = "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\n\n";
    let err = parse_ndjson(body.as_bytes(), Semantics::Load).unwrap_err();
    assert_eq!(err.position, Position::Line(2));
    assert!(err.to_string().starts_with("line 2: invalid JSON"), "{err}");

    let ok = parse_ndjson(b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n\n{\"resourceType\":\"Patient\",\"id\":\"b\"}", Semantics::Load).unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[1].position, Position::Line(3));
}

#[test]
fn rejects_invalid_ids() {
    let err = load(r#"{"resourceType":"Patient","id":"bad id"}"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    let err = load(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/b"}}
    ]}"#,
    )
    .unwrap_err();
    assert!(err.message.contains("another id"), "{err}");
}

fn rest(body: &str) -> Result<Vec<Entry>, EntryError> {
    parse_document(body.as_bytes(), Semantics::Rest)
}

#[test]
fn rest_post_ignores_resource_id_and_full_url() {
    let entries = rest(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:0e6e9c0a-1","resource":{"resourceType":"Patient","id":"mine"},"request":{"method":"POST","url":"Patient"}}
    ]}"#,
    )
    .unwrap();
    assert_eq!(entries[0].action, Action::Create);
    assert_eq!(entries[0].id, None);
    assert_eq!(entries[0].full_url.as_deref(), Some("urn:uuid:0e6e9c0a-1"));
}

#[test]
fn rest_rejects_collection() {
    let err = rest(r#"{"resourceType":"Bundle","type":"collection","entry":[]}"#).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotSupported);
}

#[test]
fn rest_get_entries_are_reads() {
    let entries = rest(
        r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient?name=x&_count=2"}}
    ]}"#,
    )
    .unwrap();
    assert_eq!(entries[0].action, Action::Read);
    assert_eq!(
        entries[0].request_url.as_deref(),
        Some("Patient?name=x&_count=2")
    );
}

#[test]
fn rest_patch_entry_decodes_binary() {
    let patch = r#"[{"op":"replace","path":"/gender","value":"male"}]"#;
    let data = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(patch)
    };
    let body = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[
        {{"resource":{{"resourceType":"Binary","contentType":"application/json-patch+json","data":"{data}"}},"request":{{"method":"PATCH","url":"Patient/p1"}}}}
    ]}}"#
    );
    let entries = rest(&body).unwrap();
    assert_eq!(entries[0].action, Action::Patch);
    assert_eq!(entries[0].id.as_deref(), Some("p1"));
    assert_eq!(entries[0].resource.as_ref().unwrap()[0]["op"], "replace");

    let not_binary = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Parameters"},"request":{"method":"PATCH","url":"Patient/p1"}}]}"#;
    assert_eq!(rest(not_binary).unwrap_err().kind, ErrorKind::NotSupported);
}

#[test]
fn if_match_is_normalized() {
    let entries = rest(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"4\""}}
    ]}"#,
    )
    .unwrap();
    assert_eq!(entries[0].if_match.as_deref(), Some("4"));
    let err = rest(
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"garbage"}}
    ]}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(version_of_etag("W/\"12\"").as_deref(), Some("12"));
    assert_eq!(version_of_etag("\"3\"").as_deref(), Some("3"));
    assert_eq!(version_of_etag("W/\"\""), None);
}
