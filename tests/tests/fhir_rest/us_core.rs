//! The US Core 6.1.0 search parameters that R4 itself lacks: Patient `race`, `ethnicity`
//! and `gender-identity`, CareTeam `role`, Condition `asserted-date`, Encounter
//! `discharge-disposition` and Goal `description`. Each search must filter, not be
//! ignored as an unknown parameter, and `metadata` must list each one.

use serde_json::{Value, json};

use crate::client::{Fhir, start_server};
use crate::search::{ids_with_mode, put_all, sorted};

const US_CORE: &str = "http://hl7.org/fhir/us/core/StructureDefinition";
const OMB: &str = "urn:oid:2.16.840.1.113883.6.238";
const SNOMED: &str = "http://snomed.info/sct";
const DISCHARGE: &str = "http://www.nubc.org/patient-discharge";

fn patient(id: &str, race: &str, ethnicity: &str, gender_identity: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "extension": [
            {"url": format!("{US_CORE}/us-core-race"), "extension": [
                {"url": "ombCategory", "valueCoding": {"system": OMB, "code": race}},
                {"url": "text", "valueString": "race"}]},
            {"url": format!("{US_CORE}/us-core-ethnicity"), "extension": [
                {"url": "ombCategory", "valueCoding": {"system": OMB, "code": ethnicity}},
                {"url": "text", "valueString": "ethnicity"}]},
            {"url": format!("{US_CORE}/us-core-genderIdentity"), "valueCodeableConcept": {
                "coding": [{"system": SNOMED, "code": gender_identity}]}},
        ],
    })
}

fn fixture() -> (crate::client::TestServer, Fhir) {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let resources = [
        patient("p1", "2106-3", "2186-5", "446151000124109"),
        patient("p2", "2054-5", "2135-2", "446141000124107"),
        json!({"resourceType": "CareTeam", "id": "t1", "subject": {"reference": "Patient/p1"},
               "participant": [{"role": [{"coding": [{"system": SNOMED, "code": "116154003"}]}],
                                "member": {"reference": "Patient/p1"}}]}),
        json!({"resourceType": "CareTeam", "id": "t2", "subject": {"reference": "Patient/p1"},
               "participant": [{"role": [{"coding": [{"system": SNOMED, "code": "223366009"}]}]}]}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
               "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/condition-assertedDate",
                              "valueDateTime": "2019-04-01"}]}),
        json!({"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"},
               "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/condition-assertedDate",
                              "valueDateTime": "2023-08-15"}]}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
               "class": {"code": "IMP"}, "subject": {"reference": "Patient/p1"},
               "hospitalization": {"dischargeDisposition": {"coding": [{"system": DISCHARGE, "code": "01"}]}}}),
        json!({"resourceType": "Encounter", "id": "e2", "status": "finished",
               "class": {"code": "IMP"}, "subject": {"reference": "Patient/p1"},
               "hospitalization": {"dischargeDisposition": {"coding": [{"system": DISCHARGE, "code": "20"}]}}}),
        json!({"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
               "subject": {"reference": "Patient/p1"},
               "description": {"coding": [{"system": SNOMED, "code": "289169006"}]}}),
        json!({"resourceType": "Goal", "id": "g2", "lifecycleStatus": "active",
               "subject": {"reference": "Patient/p1"},
               "description": {"text": "Walk every day"}}),
    ];
    put_all(&fhir, &resources);
    (server, fhir)
}

/// Match ids of `path`, which strict handling must accept.
fn strict_matches(fhir: &Fhir, path: &str) -> Vec<String> {
    let reply = fhir.get_with(path, &[("Prefer", "handling=strict")]);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    sorted(&ids_with_mode(&reply.json(), "match"))
}

#[test]
fn us_core_parameters_filter() {
    let (_server, fhir) = fixture();
    let cases: &[(&str, &[&str])] = &[
        ("Patient?race=2106-3", &["p1"]),
        // US Core indexes the race and ethnicity codes without their system.
        ("Patient?race=2054-5", &["p2"]),
        ("Patient?race=2186-5", &[]),
        ("Patient?ethnicity=2135-2", &["p2"]),
        ("Patient?gender-identity=446151000124109", &["p1"]),
        ("CareTeam?patient=p1&role=223366009", &["t2"]),
        ("CareTeam?role=http://snomed.info/sct|116154003", &["t1"]),
        ("CareTeam?role=does-not-exist", &[]),
        ("Condition?patient=p1&asserted-date=ge2020", &["c2"]),
        ("Condition?asserted-date=2019-04", &["c1"]),
        (
            "Encounter?patient=p1&discharge-disposition=http://www.nubc.org/patient-discharge|01",
            &["e1"],
        ),
        ("Encounter?discharge-disposition=20", &["e2"]),
        ("Goal?patient=p1&description=289169006", &["g1"]),
        ("Goal?description:text=walk", &["g2"]),
    ];
    for (path, expected) in cases {
        assert_eq!(
            strict_matches(&fhir, path),
            sorted(&expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "{path}"
        );
    }
}

#[test]
fn metadata_lists_us_core_parameters() {
    let (_server, fhir) = fixture();
    let statement = fhir.get("metadata").json();
    let resources = statement["rest"][0]["resource"]
        .as_array()
        .expect("rest.resource");
    for (resource_type, code) in [
        ("Patient", "race"),
        ("Patient", "ethnicity"),
        ("Patient", "gender-identity"),
        ("CareTeam", "role"),
        ("Condition", "asserted-date"),
        ("Encounter", "discharge-disposition"),
        ("Goal", "description"),
    ] {
        let resource = resources
            .iter()
            .find(|r| r["type"] == resource_type)
            .unwrap_or_else(|| panic!("metadata lacks {resource_type}"));
        let listed = resource["searchParam"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|param| param["name"] == code);
        assert!(listed, "metadata lacks {resource_type}.{code}");
    }
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(us_core_parameters_filter, metadata_lists_us_core_parameters);
