use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::datetime;

fn strings<'a>(rows: &'a IndexRows, param: &str) -> Vec<&'a str> {
    rows.strings
        .iter()
        .filter(|row| row.param == param)
        .map(|row| row.value.as_str())
        .collect()
}

fn tokens<'a>(rows: &'a IndexRows, param: &str) -> Vec<(Option<&'a str>, Option<&'a str>)> {
    rows.tokens
        .iter()
        .filter(|row| row.param == param)
        .map(|row| (row.system.as_deref(), row.code.as_deref()))
        .collect()
}

fn references<'a>(rows: &'a IndexRows, param: &str) -> Vec<&'a ReferenceRow> {
    rows.references
        .iter()
        .filter(|row| row.param == param)
        .collect()
}

fn dates(rows: &IndexRows, param: &str) -> Vec<(i64, i64)> {
    rows.dates
        .iter()
        .filter(|row| row.param == param)
        .map(|row| (row.low, row.high))
        .collect()
}

fn quantities<'a>(rows: &'a IndexRows, param: &str) -> Vec<&'a QuantityRow> {
    rows.quantities
        .iter()
        .filter(|row| row.param == param)
        .collect()
}

fn composites<'a>(rows: &'a IndexRows, param: &str) -> Vec<&'a CompositeRow> {
    rows.composites
        .iter()
        .filter(|row| row.param == param)
        .collect()
}

fn range(value: &str) -> (i64, i64) {
    let range = datetime::parse(value).unwrap();
    (range.low, range.high)
}

const LOINC: Option<&str> = Some("http://loinc.org");

fn blood_pressure() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"},
                {"system": "http://snomed.info/sct", "code": "75367002"}
            ],
            "text": "Blood pressure"
        },
        "subject": {"reference": "Patient/p1", "display": "Amy"},
        "performer": [{"reference": "https://other.example/fhir/Practitioner/dr1"}],
        "effectiveDateTime": "2021-03-04T10:15:00+01:00",
        "valueQuantity": {"value": 1, "unit": "panel"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {
                    "value": 120, "unit": "mmHg",
                    "system": "http://unitsofmeasure.org", "code": "mm[Hg]"
                }
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {
                    "value": 80.5, "unit": "mmHg",
                    "system": "http://unitsofmeasure.org", "code": "mm[Hg]"
                }
            }
        ]
    })
}

#[test]
fn observation_code_and_subject() {
    let rows = extract("Observation", &blood_pressure());
    assert_eq!(
        tokens(&rows, "code"),
        [
            (LOINC, Some("85354-9")),
            (Some("http://snomed.info/sct"), Some("75367002")),
            (None, None)
        ]
    );
    let texts: Vec<_> = rows
        .tokens
        .iter()
        .filter(|row| row.param == "code")
        .map(|row| row.text.as_deref())
        .collect();
    assert_eq!(
        texts,
        [Some("blood pressure panel"), None, Some("blood pressure")]
    );

    for param in ["subject", "patient"] {
        let rows = references(&rows, param);
        assert_eq!(rows.len(), 1, "{param}");
        assert_eq!(rows[0].target_type.as_deref(), Some("Patient"));
        assert_eq!(rows[0].target_id.as_deref(), Some("p1"));
        assert_eq!(rows[0].url, None);
    }
    assert_eq!(dates(&rows, "date"), [range("2021-03-04T10:15:00+01:00")]);
    assert_eq!(tokens(&rows, "status"), [(None, Some("final"))]);
    assert_eq!(tokens(&rows, "_id"), [(None, Some("bp"))]);
}

#[test]
fn observation_value_and_components() {
    let rows = extract("Observation", &blood_pressure());
    let value = quantities(&rows, "value-quantity");
    assert_eq!(value.len(), 1);
    assert_eq!(
        (value[0].value, value[0].low, value[0].high),
        (1.0, 0.5, 1.5)
    );
    assert_eq!(value[0].unit.as_deref(), Some("panel"));
    assert_eq!(value[0].code, None);

    let component_values = quantities(&rows, "component-value-quantity");
    let values: Vec<f64> = component_values.iter().map(|row| row.value).collect();
    assert_eq!(values, [120.0, 80.5]);
    assert_eq!(component_values[1].low, 80.45);
    assert_eq!(component_values[1].code.as_deref(), Some("mm[Hg]"));
    assert_eq!(
        tokens(&rows, "component-code"),
        [(LOINC, Some("8480-6")), (LOINC, Some("8462-4"))]
    );
    assert_eq!(quantities(&rows, "combo-value-quantity").len(), 3);
}

/// Returns the token codes and quantity values of each composite row.
fn composite_pairs(rows: &[&CompositeRow]) -> Vec<(Vec<String>, Vec<f64>)> {
    rows.iter()
        .map(|row| {
            let [CompositePart::Token(codes), CompositePart::Quantity(values)] =
                row.components.as_slice()
            else {
                panic!("unexpected parts {:?}", row.components);
            };
            let codes = codes.iter().filter_map(|t| t.code.clone()).collect();
            let values = values.iter().map(|q| q.value).collect();
            (codes, values)
        })
        .collect()
}

#[test]
fn composite_rows_stay_per_element() {
    let rows = extract("Observation", &blood_pressure());
    let code_value = composite_pairs(&composites(&rows, "code-value-quantity"));
    assert_eq!(
        code_value,
        [(vec!["85354-9".to_owned(), "75367002".to_owned()], vec![1.0])]
    );

    let component = composite_pairs(&composites(&rows, "component-code-value-quantity"));
    assert_eq!(
        component,
        [
            (vec!["8480-6".to_owned()], vec![120.0]),
            (vec!["8462-4".to_owned()], vec![80.5])
        ]
    );

    let combo = composite_pairs(&composites(&rows, "combo-code-value-quantity"));
    assert_eq!(combo.len(), 3);
    assert_eq!(combo[2], (vec!["8462-4".to_owned()], vec![80.5]));

    let part = &composites(&rows, "component-code-value-quantity")[0].components[1];
    let CompositePart::Quantity(values) = part else {
        panic!("expected a quantity part");
    };
    assert_eq!(values[0].param, "component-value-quantity");
}

#[test]
fn composite_needs_every_component() {
    let mut observation = blood_pressure();
    observation["component"][1]
        .as_object_mut()
        .unwrap()
        .remove("valueQuantity");
    let rows = extract("Observation", &observation);
    let component = composite_pairs(&composites(&rows, "component-code-value-quantity"));
    assert_eq!(component, [(vec!["8480-6".to_owned()], vec![120.0])]);
}

#[test]
fn composite_with_resource_variable() {
    let sequence = json!({
        "resourceType": "MolecularSequence",
        "referenceSeq": {
            "chromosome": {"coding": [{"system": "http://x.org/chr", "code": "1"}]},
            "windowStart": 10, "windowEnd": 20
        },
        "variant": [{"start": 12, "end": 13}, {"start": 15, "end": 16}]
    });
    let rows = extract("MolecularSequence", &sequence);
    let variants = composites(&rows, "chromosome-variant-coordinate");
    assert_eq!(variants.len(), 2);
    let CompositePart::Number(starts) = &variants[1].components[1] else {
        panic!("expected a number part");
    };
    assert_eq!(starts[0].value, 15.0);
    assert_eq!(composites(&rows, "chromosome-window-coordinate").len(), 1);
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {
            "lastUpdated": "2024-05-06T07:08:09.123Z",
            "source": "http://ehr.example/source",
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            "tag": [{"system": "http://x.org/tags", "code": "test"}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]
        },
        "active": true,
        "identifier": [
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                    "text": "Medical Record Number"
                },
                "system": "http://hospital.example/mrn",
                "value": "12345"
            },
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-11-2222"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-11-2222"}
        ],
        "name": [
            {"use": "official", "family": "Müller", "given": ["Zoë", "Anne"], "prefix": ["Dr."]},
            {"text": "Zoe  Mueller"}
        ],
        "telecom": [
            {"system": "phone", "value": "+1 555 0100", "use": "home"},
            {"system": "email", "value": "zoe@example.org"}
        ],
        "gender": "female",
        "birthDate": "1980-02-29",
        "deceasedBoolean": false,
        "address": [{
            "line": ["1 Main St", "Apt 2"],
            "city": "São Paulo",
            "state": "SP",
            "postalCode": "01000-000",
            "country": "BR"
        }],
        "generalPractitioner": [{"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "123"}}],
        "managingOrganization": {"reference": "#org1"}
    })
}

#[test]
fn patient_names() {
    let rows = extract("Patient", &patient());
    assert_eq!(
        strings(&rows, "name"),
        ["muller", "zoe", "anne", "dr.", "zoe mueller"]
    );
    assert_eq!(strings(&rows, "family"), ["muller"]);
    assert_eq!(strings(&rows, "given"), ["zoe", "anne"]);
    let exact: Vec<_> = rows
        .strings
        .iter()
        .filter(|row| row.param == "family")
        .map(|row| row.exact.as_str())
        .collect();
    assert_eq!(exact, ["Müller"]);
}

#[test]
fn patient_addresses() {
    let rows = extract("Patient", &patient());
    assert_eq!(
        strings(&rows, "address"),
        ["1 main st", "apt 2", "sao paulo", "sp", "01000-000", "br"]
    );
    assert_eq!(strings(&rows, "address-city"), ["sao paulo"]);
    assert_eq!(strings(&rows, "address-postalcode"), ["01000-000"]);
}

#[test]
fn patient_telecom_tokens() {
    let rows = extract("Patient", &patient());
    assert_eq!(
        tokens(&rows, "telecom"),
        [(None, Some("+1 555 0100")), (None, Some("zoe@example.org"))]
    );
    assert_eq!(tokens(&rows, "phone"), [(None, Some("+1 555 0100"))]);
    assert_eq!(tokens(&rows, "email"), [(None, Some("zoe@example.org"))]);
}

#[test]
fn patient_identifiers_with_types() {
    let rows = extract("Patient", &patient());
    let identifiers: Vec<_> = rows
        .tokens
        .iter()
        .filter(|row| row.param == "identifier")
        .collect();
    assert_eq!(identifiers.len(), 2, "the repeated SSN is stored once");
    assert_eq!(
        identifiers[0].system.as_deref(),
        Some("http://hospital.example/mrn")
    );
    assert_eq!(identifiers[0].code.as_deref(), Some("12345"));
    assert_eq!(identifiers[0].identifier_type_code.as_deref(), Some("MR"));
    assert_eq!(
        identifiers[0].identifier_type_system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v2-0203")
    );
    assert_eq!(
        identifiers[0].text.as_deref(),
        Some("medical record number")
    );
    assert_eq!(identifiers[1].identifier_type_code, None);
}

#[test]
fn patient_simple_tokens_and_dates() {
    let rows = extract("Patient", &patient());
    assert_eq!(tokens(&rows, "gender"), [(None, Some("female"))]);
    assert_eq!(tokens(&rows, "active"), [(None, Some("true"))]);
    assert_eq!(tokens(&rows, "deceased"), [(None, Some("false"))]);
    assert_eq!(dates(&rows, "birthdate"), [range("1980-02-29")]);

    let mut deceased = patient();
    deceased["deceasedDateTime"] = json!("2020-01-01");
    deceased.as_object_mut().unwrap().remove("deceasedBoolean");
    let rows = extract("Patient", &deceased);
    assert_eq!(tokens(&rows, "deceased"), [(None, Some("true"))]);
    assert_eq!(dates(&rows, "death-date"), [range("2020-01-01")]);
}

#[test]
fn resource_level_params() {
    let rows = extract("Patient", &patient());
    assert_eq!(tokens(&rows, "_id"), [(None, Some("p1"))]);
    assert_eq!(
        dates(&rows, "_lastUpdated"),
        [range("2024-05-06T07:08:09.123Z")]
    );
    assert_eq!(
        tokens(&rows, "_tag"),
        [(Some("http://x.org/tags"), Some("test"))]
    );
    assert_eq!(
        tokens(&rows, "_security"),
        [(
            Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"),
            Some("R")
        )]
    );
    let uris: Vec<_> = rows
        .uris
        .iter()
        .map(|row| (row.param, row.value.as_str()))
        .collect();
    assert!(uris.contains(&(
        "_profile",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
    )));
    assert!(uris.contains(&("_source", "http://ehr.example/source")));
}

#[test]
fn logical_and_contained_references() {
    let rows = extract("Patient", &patient());
    let practitioners = references(&rows, "general-practitioner");
    assert_eq!(practitioners.len(), 1);
    assert_eq!(
        practitioners[0].identifier_system.as_deref(),
        Some("http://hl7.org/fhir/sid/us-npi")
    );
    assert_eq!(practitioners[0].identifier_value.as_deref(), Some("123"));
    assert_eq!(practitioners[0].target_id, None);
    assert!(references(&rows, "organization").is_empty());
}

#[test]
fn absolute_history_and_urn_references() {
    let observation = json!({
        "resourceType": "Observation",
        "subject": {"reference": "http://other.example/fhir/Patient/p9/_history/3"},
        "performer": [
            {"reference": "urn:uuid:0d8f1f6b-5b1a-4c2e-9d1f-1a2b3c4d5e6f", "type": "Practitioner"},
            {"reference": "Organization?identifier=x|1"},
            {"reference": "Practitioner/d1/_history/2"}
        ]
    });
    let rows = extract("Observation", &observation);
    let subject = references(&rows, "subject");
    assert_eq!(
        subject[0].url.as_deref(),
        Some("http://other.example/fhir/Patient/p9")
    );
    assert_eq!(subject[0].target_type.as_deref(), Some("Patient"));
    assert_eq!(subject[0].target_id.as_deref(), Some("p9"));
    assert_eq!(subject[0].version.as_deref(), Some("3"));
    assert_eq!(references(&rows, "patient").len(), 1);

    let performers = references(&rows, "performer");
    assert_eq!(performers.len(), 2, "the conditional reference adds no row");
    assert_eq!(
        performers[0].url.as_deref(),
        Some("urn:uuid:0d8f1f6b-5b1a-4c2e-9d1f-1a2b3c4d5e6f")
    );
    assert_eq!(performers[0].target_type.as_deref(), Some("Practitioner"));
    assert_eq!(performers[0].target_id, None);
    assert_eq!(performers[1].target_id.as_deref(), Some("d1"));
    assert_eq!(performers[1].version.as_deref(), Some("2"));
    assert_eq!(performers[1].url, None);
}

#[test]
fn canonical_references() {
    let response = json!({
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://forms.example/Questionnaire/phq9|1.2"
    });
    let rows = extract("QuestionnaireResponse", &response);
    let questionnaire = references(&rows, "questionnaire");
    assert_eq!(questionnaire.len(), 1);
    assert_eq!(
        questionnaire[0].url.as_deref(),
        Some("http://forms.example/Questionnaire/phq9")
    );
    assert_eq!(questionnaire[0].version.as_deref(), Some("1.2"));
    assert_eq!(
        questionnaire[0].target_type.as_deref(),
        Some("Questionnaire")
    );
    assert_eq!(questionnaire[0].target_id.as_deref(), Some("phq9"));
}

#[test]
fn foreign_absolute_references_name_no_local_target() {
    let bases = LocalBases::new("http://hearth.example");
    let observation = json!({
        "resourceType": "Observation",
        "subject": {"reference": "http://other.example/fhir/Patient/p1"},
        "performer": [
            {"reference": "http://hearth.example/fhir/Practitioner/d1"},
            {"reference": "http://hearth.example/sites/north/fhir/Organization/o1/_history/2"},
            {"reference": "Practitioner/d2"}
        ]
    });
    let rows = extract_local("Observation", &observation, &bases);

    let subject = references(&rows, "subject");
    assert_eq!(subject.len(), 1);
    assert_eq!(subject[0].target_id, None);
    assert_eq!(subject[0].target_type.as_deref(), Some("Patient"));
    assert_eq!(
        subject[0].url.as_deref(),
        Some("http://other.example/fhir/Patient/p1")
    );

    let performers = references(&rows, "performer");
    let targets: Vec<_> = performers
        .iter()
        .map(|row| (row.target_type.as_deref(), row.target_id.as_deref()))
        .collect();
    assert_eq!(
        targets,
        [
            (Some("Practitioner"), Some("d1")),
            (Some("Organization"), Some("o1")),
            (Some("Practitioner"), Some("d2")),
        ]
    );
}

#[test]
fn foreign_canonical_names_no_local_target() {
    let response = json!({
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://forms.example/Questionnaire/phq9|1.2"
    });
    let rows = extract_local("QuestionnaireResponse", &response, &LocalBases::none());
    let questionnaire = references(&rows, "questionnaire");
    assert_eq!(questionnaire[0].target_id, None);
    assert_eq!(questionnaire[0].version.as_deref(), Some("1.2"));
}

#[test]
fn inline_resource_reference() {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}]
    });
    let rows = extract("Bundle", &bundle);
    let composition = references(&rows, "composition");
    assert_eq!(composition[0].target_type.as_deref(), Some("Composition"));
    assert_eq!(composition[0].target_id.as_deref(), Some("c1"));
}

#[test]
fn condition_onset_and_abatement() {
    let condition = json!({
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2019-06",
        "abatementAge": {
            "value": 42, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"
        }
    });
    let rows = extract("Condition", &condition);
    assert_eq!(dates(&rows, "onset-date"), [range("2019-06")]);
    assert!(dates(&rows, "abatement-date").is_empty());
    assert!(quantities(&rows, "onset-age").is_empty());
    let age = quantities(&rows, "abatement-age");
    assert_eq!(age.len(), 1);
    assert_eq!((age[0].value, age[0].low, age[0].high), (42.0, 41.5, 42.5));
    assert_eq!(age[0].code.as_deref(), Some("a"));
    assert_eq!(age[0].system.as_deref(), Some("http://unitsofmeasure.org"));
}

#[test]
fn condition_onset_range() {
    let condition = json!({
        "resourceType": "Condition",
        "onsetRange": {"low": {"value": 20, "unit": "a"}, "high": {"value": 30, "unit": "a"}},
        "abatementPeriod": {"start": "2020-01-01"}
    });
    let rows = extract("Condition", &condition);
    let onset = quantities(&rows, "onset-age");
    assert_eq!(
        (onset[0].value, onset[0].low, onset[0].high),
        (25.0, 20.0, 30.0)
    );
    assert_eq!(onset[0].unit.as_deref(), Some("a"));
    assert_eq!(
        dates(&rows, "abatement-date"),
        [(range("2020-01-01").0, i64::MAX)]
    );
}

#[test]
fn medication_request_choice() {
    let coded = json!({
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313782"}]
        },
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2022-02-02"
    });
    let rows = extract("MedicationRequest", &coded);
    assert_eq!(
        tokens(&rows, "code"),
        [(
            Some("http://www.nlm.nih.gov/research/umls/rxnorm"),
            Some("313782")
        )]
    );
    assert!(references(&rows, "medication").is_empty());
    assert_eq!(references(&rows, "patient").len(), 1);

    let referenced = json!({
        "resourceType": "MedicationRequest",
        "medicationReference": {"reference": "Medication/m1"}
    });
    let rows = extract("MedicationRequest", &referenced);
    assert!(tokens(&rows, "code").is_empty());
    assert_eq!(
        references(&rows, "medication")[0].target_id.as_deref(),
        Some("m1")
    );
}

#[test]
fn encounter_period() {
    let encounter = json!({
        "resourceType": "Encounter",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2020-01-01T09:00:00Z", "end": "2020-01-01T10:00:00Z"}
    });
    let rows = extract("Encounter", &encounter);
    let (low, _) = range("2020-01-01T09:00:00Z");
    let (_, high) = range("2020-01-01T10:00:00Z");
    assert_eq!(dates(&rows, "date"), [(low, high)]);
    assert_eq!(
        tokens(&rows, "class"),
        [(
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
            Some("AMB")
        )]
    );

    let open = json!({"resourceType": "Encounter", "period": {"start": "2020"}});
    let rows = extract("Encounter", &open);
    assert_eq!(dates(&rows, "date"), [(range("2020").0, i64::MAX)]);

    let empty = json!({"resourceType": "Encounter", "period": {}});
    assert!(dates(&extract("Encounter", &empty), "date").is_empty());
}

#[test]
fn timing_events() {
    let plan = json!({
        "resourceType": "CarePlan",
        "activity": [{"detail": {"scheduledTiming": {
            "event": ["2020-05-01T08:00:00Z", "2020-04-01T08:00:00Z"]
        }}}]
    });
    let rows = extract("CarePlan", &plan);
    let (low, _) = range("2020-04-01T08:00:00Z");
    let (_, high) = range("2020-05-01T08:00:00Z");
    assert_eq!(dates(&rows, "activity-date"), [(low, high)]);
}

#[test]
fn numbers_and_money() {
    let assessment = json!({
        "resourceType": "RiskAssessment",
        "prediction": [
            {"probabilityDecimal": 0.25},
            {"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.3}}}
        ]
    });
    let rows = extract("RiskAssessment", &assessment);
    let numbers: Vec<_> = rows
        .numbers
        .iter()
        .map(|row| (row.value, row.low, row.high))
        .collect();
    assert_eq!(numbers, [(0.25, 0.245, 0.255), (0.2, 0.1, 0.3)]);

    let item = json!({
        "resourceType": "ChargeItem",
        "priceOverride": {"value": 12.5, "currency": "EUR"},
        "factorOverride": 0.8
    });
    let rows = extract("ChargeItem", &item);
    let price = quantities(&rows, "price-override");
    assert_eq!(price[0].code.as_deref(), Some("EUR"));
    assert_eq!(price[0].system.as_deref(), Some("urn:iso:std:iso:4217"));
    assert_eq!(rows.numbers[0].param, "factor-override");
}

#[test]
fn quantity_comparator_opens_range() {
    let observation = json!({
        "resourceType": "Observation",
        "valueQuantity": {"value": 5, "comparator": "<", "unit": "mg"}
    });
    let rows = extract("Observation", &observation);
    let value = quantities(&rows, "value-quantity");
    assert_eq!((value[0].low, value[0].high), (f64::NEG_INFINITY, 5.5));
}

#[test]
fn location_position() {
    let location = json!({
        "resourceType": "Location",
        "position": {"latitude": 52.37, "longitude": 4.89}
    });
    let rows = extract("Location", &location);
    assert_eq!(rows.positions.len(), 1);
    assert_eq!(rows.positions[0].param, "near");
    assert_eq!(rows.positions[0].latitude, 52.37);
}

#[test]
fn unknown_type_yields_nothing() {
    let resource = json!({"resourceType": "NotAType", "id": "x"});
    assert!(extract("NotAType", &resource).is_empty());
}

#[test]
fn requested_type_decides_params() {
    let resource = json!({"resourceType": "Observation", "id": "x", "gender": "male"});
    let rows = extract("Patient", &resource);
    assert_eq!(tokens(&rows, "gender"), [(None, Some("male"))]);
    assert_eq!(tokens(&rows, "_id"), [(None, Some("x"))]);
}

#[test]
fn wrong_json_types_are_skipped() {
    let observation = json!({
        "resourceType": "Observation",
        "id": 7,
        "code": "not-a-concept",
        "subject": ["Patient/1"],
        "effectiveDateTime": "yesterday",
        "valueQuantity": {"value": "5"},
        "component": {"code": {"coding": {"code": 1}}},
        "meta": {"lastUpdated": 20200101, "tag": [null, 1, "x"]}
    });
    let rows = extract("Observation", &observation);
    assert_eq!(tokens(&rows, "_id"), [(None, Some("7"))]);
    assert!(dates(&rows, "date").is_empty());
    assert!(quantities(&rows, "value-quantity").is_empty());
    assert!(dates(&rows, "_lastUpdated").is_empty());
}

fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("id"),
        Just("meta"),
        Just("lastUpdated"),
        Just("tag"),
        Just("code"),
        Just("coding"),
        Just("system"),
        Just("value"),
        Just("valueQuantity"),
        Just("valueCodeableConcept"),
        Just("valuePeriod"),
        Just("subject"),
        Just("reference"),
        Just("identifier"),
        Just("type"),
        Just("name"),
        Just("given"),
        Just("telecom"),
        Just("effectiveDateTime"),
        Just("period"),
        Just("start"),
        Just("end"),
        Just("component"),
        Just("low"),
        Just("high"),
        Just("text"),
        Just("event"),
        Just("repeat"),
        Just("boundsPeriod"),
        Just("deceasedBoolean"),
        Just("onsetAge"),
        Just("comparator"),
        Just("currency"),
        Just("latitude"),
        Just("longitude"),
        Just("resourceType"),
        Just("contained"),
        Just("entry"),
        Just("resource"),
        Just("referenceSeq"),
        Just("variant"),
        Just("chromosome"),
        Just("birthDate"),
    ]
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
            .prop_map(Value::from),
        "(Patient|Observation|#|urn:uuid:|https://x/Patient/)[a-z0-9/_|]{0,12}"
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn resource_type() -> impl Strategy<Value = String> {
    let listed = prop::sample::select(crate::resource_types::all().to_vec());
    prop_oneof![
        Just("Observation".to_owned()),
        Just("Patient".to_owned()),
        Just("MolecularSequence".to_owned()),
        listed,
    ]
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(
        resource_type in resource_type(),
        body in prop::collection::btree_map("[a-zA-Z]{1,20}", json_value(), 0..8),
        shaped in json_value(),
    ) {
        let mut resource: serde_json::Map<String, Value> = body.into_iter().collect();
        if let Value::Object(more) = shaped {
            resource.extend(more);
        }
        resource.insert("resourceType".into(), Value::from(resource_type.clone()));
        let rows = extract(&resource_type, &Value::Object(resource));
        for row in &rows.dates {
            prop_assert!(row.low <= row.high);
        }
        for row in &rows.numbers {
            prop_assert!(row.low <= row.high);
        }
        for row in &rows.quantities {
            prop_assert!(row.low <= row.high);
        }
        for row in &rows.strings {
            prop_assert!(!row.value.is_empty());
        }
    }

    #[test]
    fn any_json_root_never_panics(resource_type in resource_type(), value in json_value()) {
        let _ = extract(&resource_type, &value);
    }
}
