use serde_json::json;

use super::*;

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[test]
fn relevant_wins_over_latest() {
    let both = strings(&["LatestProvenanceResources", "RelevantProvenanceResources"]);
    assert_eq!(
        AssociatedProvenance::of(&both),
        Some(AssociatedProvenance::Relevant)
    );
    let latest = strings(&["LatestProvenanceResources"]);
    assert_eq!(
        AssociatedProvenance::of(&latest),
        Some(AssociatedProvenance::Latest)
    );
    assert_eq!(AssociatedProvenance::of(&[]), None);
}

#[test]
fn provenance_in_type_is_plain() {
    let include = strings(&["LatestProvenanceResources"]);
    let with_provenance = strings(&["Patient", "Provenance"]);
    assert!(!exports_associated_provenance(&with_provenance, &include));
    // No `_type` exports every type, Provenance among them.
    assert!(!exports_associated_provenance(&[], &include));
    let patients = strings(&["Patient"]);
    assert!(exports_associated_provenance(&patients, &include));
    assert!(!exports_associated_provenance(&patients, &[]));
}

#[test]
fn local_targets_accept_relative_and_own_base() {
    let base = "https://hearth.example/fhir";
    let cases = [
        ("Observation/o1", Some(("Observation", "o1"))),
        ("Observation/o1/_history/3", Some(("Observation", "o1"))),
        (
            "https://hearth.example/fhir/Patient/p1",
            Some(("Patient", "p1")),
        ),
        ("https://other.example/fhir/Patient/p1", None),
        ("#contained", None),
        ("urn:uuid:3c8b4a3e-5b1f-4d0e-9c3a-1f2e3d4c5b6a", None),
        ("Observation?code=1234", None),
        ("NotAType/x", None),
        ("Observation/bad id", None),
    ];
    for (reference, expected) in cases {
        assert_eq!(local_target(reference, base), expected, "{reference}");
    }
    assert_eq!(
        local_target("Patient/p1", ""),
        Some(("Patient", "p1")),
        "no base URL"
    );
}

#[test]
fn target_references_read_target_only() {
    let provenance = json!({
        "resourceType": "Provenance",
        "target": [{"reference": "Observation/o1"}, {"display": "no reference"}],
        "entity": [{"what": {"reference": "Observation/o2"}}]
    });
    let references: Vec<&str> = target_references(&provenance).collect();
    assert_eq!(references, ["Observation/o1"]);
}

#[test]
fn patient_ids_follow_compartment_forms() {
    assert_eq!(patient_id("Patient/p1"), Some("p1"));
    assert_eq!(patient_id("Patient/p1/_history/2"), Some("p1"));
    assert_eq!(patient_id("https://x.example/fhir/Patient/p1"), Some("p1"));
    assert_eq!(patient_id("Practitioner/p1"), None);
    assert_eq!(patient_id("Patient/"), None);
}

#[test]
fn referenced_patients_are_listed_ones() {
    let patients = strings(&["p1", "p2", "p3"]);
    let observation = json!({
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p2"},
        "performer": [{"reference": "Patient/p9"}]
    })
    .to_string();
    assert_eq!(
        referenced_patients("Observation", "o1", &observation, &patients),
        ["p2"]
    );
    assert_eq!(
        referenced_patients("Patient", "p3", "{}", &patients),
        ["p3"]
    );
    assert!(referenced_patients("Patient", "p9", "{}", &patients).is_empty());
}
