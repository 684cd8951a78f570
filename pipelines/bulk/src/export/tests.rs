use super::*;

#[test]
fn elements_apply_by_type_prefix() {
    let elements = vec![
        "Patient.gender".to_string(),
        "status".to_string(),
        "Observation.code".to_string(),
    ];
    assert_eq!(elements_of(&elements, "Patient"), ["gender", "status"]);
}

#[test]
fn lines_never_hold_raw_breaks() {
    let pretty =
        "{\n  \"resourceType\": \"Patient\",\n  \"id\": \"a\u{2028}b\u{2029}\u{1F600}\"\n}"
            .to_string();
    let line = one_line(pretty);
    assert!(!line.contains('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["id"], "a\u{2028}b\u{2029}\u{1F600}");
}

#[test]
fn subset_keeps_mandatory_elements_and_tags() {
    let line = r#"{"resourceType":"Patient","id":"p","gender":"female","name":[{"family":"X"}]}"#;
    let subset = subset_elements(line, &["gender".to_string()]).unwrap();
    let value: serde_json::Value = serde_json::from_str(&subset).unwrap();
    assert_eq!(value["gender"], "female");
    assert!(value.get("name").is_none());
    assert_eq!(value["meta"]["tag"][0]["code"], "SUBSETTED");
}
