use hearth_cdr::{Alternative, Visibility};

use super::*;

#[test]
fn combine_ors_type_filters_within_caller_alternatives() {
    let caller = Visibility {
        alternatives: vec![Alternative {
            patient_compartment: None,
            filters: vec![("status".to_string(), "final".to_string())],
        }],
    };
    let filters = vec![
        vec![("code".to_string(), "a".to_string())],
        vec![("code".to_string(), "b".to_string())],
    ];
    let combined = combine(&caller, &filters, Some("p1"));
    assert_eq!(combined.alternatives.len(), 2);
    for alternative in &combined.alternatives {
        assert_eq!(alternative.patient_compartment.as_deref(), Some("p1"));
        assert_eq!(alternative.filters.len(), 2);
    }
}

#[test]
fn combine_drops_other_patients_compartments() {
    let caller = Visibility {
        alternatives: vec![Alternative {
            patient_compartment: Some("p1".to_string()),
            filters: Vec::new(),
        }],
    };
    assert!(combine(&caller, &[], Some("p2")).alternatives.is_empty());
    assert_eq!(combine(&caller, &[], Some("p1")).alternatives.len(), 1);
}

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
