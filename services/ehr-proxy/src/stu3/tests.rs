use serde_json::{Value, json};

use super::*;

/// Pairs of the same resource in STU3 and in R4. Each converts to the other exactly.
fn cases() -> Vec<(Value, Value)> {
    vec![
        (
            json!({"resourceType": "Patient", "id": "p1", "gender": "female",
                   "identifier": [{"type": {"coding": [{"system": "http://hl7.org/fhir/v2/0203", "code": "MR"}]}, "value": "1"}]}),
            json!({"resourceType": "Patient", "id": "p1", "gender": "female",
                   "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "1"}]}),
        ),
        (
            json!({"resourceType": "Condition", "id": "c1", "clinicalStatus": "active",
                   "verificationStatus": "confirmed", "context": {"reference": "Encounter/e1"},
                   "assertedDate": "2020-01-02", "subject": {"reference": "Patient/p1"},
                   "category": [{"coding": [{"system": "http://hl7.org/fhir/condition-category", "code": "encounter-diagnosis"}]}]}),
            json!({"resourceType": "Condition", "id": "c1",
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                   "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                   "encounter": {"reference": "Encounter/e1"}, "recordedDate": "2020-01-02",
                   "subject": {"reference": "Patient/p1"},
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}]}),
        ),
        (
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                   "context": {"reference": "Encounter/e1"}, "comment": "fasting",
                   "category": [{"coding": [{"system": "http://hl7.org/fhir/observation-category", "code": "laboratory"}]}],
                   "valueQuantity": {"value": 5.4, "unit": "mmol/L"}}),
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                   "encounter": {"reference": "Encounter/e1"}, "note": [{"text": "fasting"}],
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                   "valueQuantity": {"value": 5.4, "unit": "mmol/L"}}),
        ),
        (
            json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                   "requester": {"agent": {"reference": "Practitioner/d1"}},
                   "context": {"reference": "Encounter/e1"},
                   "category": {"text": "outpatient"},
                   "dosageInstruction": [{"text": "1 daily", "doseQuantity": {"value": 1}}],
                   "substitution": {"allowed": false}}),
            json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                   "requester": {"reference": "Practitioner/d1"},
                   "encounter": {"reference": "Encounter/e1"},
                   "category": [{"text": "outpatient"}],
                   "dosageInstruction": [{"text": "1 daily", "doseAndRate": [{"doseQuantity": {"value": 1}}]}],
                   "substitution": {"allowedBoolean": false}}),
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "id": "a1", "clinicalStatus": "active",
                   "verificationStatus": "confirmed", "assertedDate": "2019-05-01",
                   "patient": {"reference": "Patient/p1"}}),
            json!({"resourceType": "AllergyIntolerance", "id": "a1",
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                   "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
                   "recordedDate": "2019-05-01", "patient": {"reference": "Patient/p1"}}),
        ),
        (
            json!({"resourceType": "Procedure", "id": "pr1", "status": "suspended",
                   "context": {"reference": "Encounter/e1"},
                   "performer": [{"role": {"text": "surgeon"}, "actor": {"reference": "Practitioner/d1"}}]}),
            json!({"resourceType": "Procedure", "id": "pr1", "status": "on-hold",
                   "encounter": {"reference": "Encounter/e1"},
                   "performer": [{"function": {"text": "surgeon"}, "actor": {"reference": "Practitioner/d1"}}]}),
        ),
        (
            json!({"resourceType": "Procedure", "id": "pr2", "status": "unknown", "notDone": true,
                   "notDoneReason": {"text": "refused"}}),
            json!({"resourceType": "Procedure", "id": "pr2", "status": "not-done",
                   "statusReason": {"text": "refused"}}),
        ),
        (
            json!({"resourceType": "Immunization", "id": "i1", "status": "completed", "notGiven": false,
                   "date": "2018-03-01", "primarySource": true,
                   "practitioner": [{"role": {"text": "AP"}, "actor": {"reference": "Practitioner/d1"}}],
                   "explanation": {"reason": [{"text": "travel"}]},
                   "vaccinationProtocol": [{"doseSequence": 1, "seriesDoses": 2, "series": "A"}]}),
            json!({"resourceType": "Immunization", "id": "i1", "status": "completed",
                   "occurrenceDateTime": "2018-03-01", "primarySource": true,
                   "performer": [{"function": {"text": "AP"}, "actor": {"reference": "Practitioner/d1"}}],
                   "reasonCode": [{"text": "travel"}],
                   "protocolApplied": [{"doseNumberPositiveInt": 1, "seriesDosesPositiveInt": 2, "series": "A"}]}),
        ),
        (
            json!({"resourceType": "Immunization", "id": "i2", "status": "completed", "notGiven": true,
                   "explanation": {"reasonNotGiven": [{"text": "allergy"}]}}),
            json!({"resourceType": "Immunization", "id": "i2", "status": "not-done",
                   "statusReason": {"text": "allergy"}}),
        ),
        (
            json!({"resourceType": "DiagnosticReport", "id": "d1", "status": "final",
                   "category": {"coding": [{"system": "http://hl7.org/fhir/v2/0074", "code": "LAB"}]},
                   "context": {"reference": "Encounter/e1"},
                   "performer": [{"actor": {"reference": "Organization/o1"}}],
                   "codedDiagnosis": [{"text": "normal"}],
                   "image": [{"link": {"reference": "Media/m1"}}]}),
            json!({"resourceType": "DiagnosticReport", "id": "d1", "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                   "encounter": {"reference": "Encounter/e1"},
                   "performer": [{"reference": "Organization/o1"}],
                   "conclusionCode": [{"text": "normal"}],
                   "media": [{"link": {"reference": "Media/m1"}}]}),
        ),
        (
            json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                   "class": {"system": "http://hl7.org/fhir/v3/ActCode", "code": "AMB"},
                   "reason": [{"text": "checkup"}], "incomingReferral": [{"reference": "ReferralRequest/r1"}]}),
            json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "reasonCode": [{"text": "checkup"}], "basedOn": [{"reference": "ReferralRequest/r1"}]}),
        ),
        (
            json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doe"}]}),
            json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doe"}]}),
        ),
        (
            json!({"resourceType": "Organization", "id": "o1", "name": "Clinic",
                   "type": [{"coding": [{"system": "http://hl7.org/fhir/organization-type", "code": "prov"}]}]}),
            json!({"resourceType": "Organization", "id": "o1", "name": "Clinic",
                   "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}]}),
        ),
    ]
}

#[test]
fn stu3_converts_to_r4() {
    for (stu3, r4) in cases() {
        let mut converted = stu3.clone();
        convert(&mut converted, Direction::ToR4);
        // `notGiven: false` has no R4 counterpart and is dropped.
        assert_eq!(converted, r4, "STU3 {stu3} to R4");
    }
}

#[test]
fn r4_converts_to_stu3() {
    for (stu3, r4) in cases() {
        let mut converted = r4.clone();
        convert(&mut converted, Direction::ToStu3);
        let mut expected = stu3.clone();
        if expected["notGiven"] == false {
            expected.as_object_mut().unwrap().remove("notGiven");
        }
        assert_eq!(converted, expected, "R4 {r4} to STU3");
    }
}

#[test]
fn every_listed_type_has_a_case() {
    let covered: Vec<String> = cases()
        .iter()
        .map(|(stu3, _)| stu3["resourceType"].as_str().unwrap().to_string())
        .collect();
    for resource_type in CONVERTED_TYPES {
        assert!(
            covered.iter().any(|t| t == resource_type),
            "{resource_type}"
        );
    }
}

#[test]
fn r4_only_fields_are_dropped_for_stu3() {
    let mut condition = json!({"resourceType": "Condition", "id": "c",
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL_URL, "code": "relapse"}]},
        "verificationStatus": {"coding": [{"code": "unconfirmed"}]},
        "recorder": {"reference": "Practitioner/d"}});
    convert(&mut condition, Direction::ToStu3);
    assert_eq!(
        condition,
        json!({"resourceType": "Condition", "id": "c", "clinicalStatus": "recurrence",
               "verificationStatus": "provisional"})
    );
}

#[test]
fn stu3_unknown_verification_is_dropped() {
    let mut condition = json!({"resourceType": "Condition", "verificationStatus": "unknown"});
    convert(&mut condition, Direction::ToR4);
    assert_eq!(condition, json!({"resourceType": "Condition"}));
}

#[test]
fn bundle_entries_are_converted() {
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Observation", "comment": "x"}},
    ]});
    convert(&mut bundle, Direction::ToR4);
    assert_eq!(
        bundle["entry"][0]["resource"]["note"],
        json!([{"text": "x"}])
    );
}

#[test]
fn search_params_are_renamed() {
    let mut pairs = vec![
        ("recorded-date:missing".to_string(), "true".to_string()),
        ("patient".to_string(), "p1".to_string()),
    ];
    search_params_to_stu3("Condition", &mut pairs);
    assert_eq!(pairs[0].0, "asserted-date:missing");
    assert_eq!(pairs[1].0, "patient");
}

const CONDITION_CLINICAL_URL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
