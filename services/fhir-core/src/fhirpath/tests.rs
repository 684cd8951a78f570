use serde_json::{Value, json};

use super::*;
use crate::error::Error;

fn values<'a>(expression: &'a Expression, resource: &'a Value) -> Vec<&'a Value> {
    expression
        .evaluate(resource)
        .into_iter()
        .map(|node| node.value)
        .collect()
}

fn parse(text: &str) -> Expression {
    Expression::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn every_r4_search_expression_parses() {
    let definitions: Vec<Value> =
        serde_json::from_str(include_str!("../../definitions/r4-search-parameters.json")).unwrap();
    let mut failures = Vec::new();
    let mut parsed = 0;
    for definition in &definitions {
        let url = definition["url"].as_str().unwrap();
        let Some(text) = definition["expression"].as_str() else {
            assert!(
                ["_content", "_query", "_text"].contains(&definition["code"].as_str().unwrap()),
                "{url} has no expression and is not on the list of parameters without one"
            );
            continue;
        };
        let components = definition["component"].as_array().into_iter().flatten();
        let component_texts = components.map(|c| c["expression"].as_str().unwrap());
        for text in std::iter::once(text).chain(component_texts) {
            match Expression::parse(text) {
                Ok(_) => parsed += 1,
                Err(error) => failures.push(format!("{url}: {error}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(parsed > 1372, "parsed only {parsed} expressions");
}

#[test]
fn path_flattens_arrays_and_skips_nulls() {
    let patient = json!({
        "resourceType": "Patient",
        "name": [{"given": ["Ann", null, "Marie"]}, {"given": ["Annie"]}],
        "_name": [{"given": [{"extension": []}]}]
    });
    let expression = parse("Patient.name.given");
    assert_eq!(
        values(&expression, &patient),
        [&json!("Ann"), &json!("Marie"), &json!("Annie")]
    );
}

#[test]
fn type_root_must_match_resource() {
    let patient = json!({"resourceType": "Patient", "id": "p1"});
    assert_eq!(values(&parse("Patient.id"), &patient), [&json!("p1")]);
    assert_eq!(values(&parse("Resource.id"), &patient), [&json!("p1")]);
    assert_eq!(
        values(&parse("DomainResource.id"), &patient),
        [&json!("p1")]
    );
    assert!(values(&parse("Observation.id"), &patient).is_empty());
}

#[test]
fn choice_element_records_suffix_type() {
    let observation = json!({
        "resourceType": "Observation",
        "valueQuantity": {"value": 5},
        "component": [{"valueString": "x"}, {"valueCodeableConcept": {"text": "y"}}]
    });
    let expression = parse("Observation.value");
    let nodes = expression.evaluate(&observation);
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].type_name, Some("Quantity"));
    assert_eq!(nodes[0].element, Some("value"));

    let expression = parse("Observation.component.value");
    let types: Vec<_> = expression
        .evaluate(&observation)
        .iter()
        .map(|n| n.type_name)
        .collect();
    assert_eq!(types, [Some("string"), Some("CodeableConcept")]);
}

#[test]
fn choice_lookup_ignores_non_type_suffixes() {
    let resource = json!({"resourceType": "Basic", "codeFilter": [{"path": "x"}]});
    assert!(values(&parse("Basic.code"), &resource).is_empty());
}

#[test]
fn as_and_of_type_filter_by_type() {
    let condition = json!({
        "resourceType": "Condition",
        "onsetAge": {"value": 40, "unit": "a"},
        "abatementDateTime": "2020-01-01"
    });
    let age = json!({"value": 40, "unit": "a"});
    assert_eq!(
        values(&parse("Condition.onset.as(Age)"), &condition),
        [&age]
    );
    assert_eq!(
        values(&parse("(Condition.onset as Quantity)"), &condition),
        [&age]
    );
    assert_eq!(
        values(&parse("Condition.onset.ofType(Age)"), &condition),
        [&age]
    );
    assert!(values(&parse("Condition.onset.as(Range)"), &condition).is_empty());
    assert_eq!(
        values(&parse("Condition.abatement.as(DateTime)"), &condition),
        [&json!("2020-01-01")]
    );
    assert_eq!(
        values(&parse("Condition.abatement.as(FHIR.dateTime)"), &condition),
        [&json!("2020-01-01")]
    );
}

#[test]
fn where_resolve_is_type() {
    let resource = json!({
        "resourceType": "AuditEvent",
        "contained": [{"resourceType": "Patient", "id": "c1"}],
        "agent": [
            {"who": {"reference": "Patient/1"}},
            {"who": {"reference": "https://x.org/fhir/Patient/2/_history/4"}},
            {"who": {"reference": "Practitioner/3"}},
            {"who": {"identifier": {"value": "9"}, "type": "Patient"}},
            {"who": {"reference": "#c1"}},
            {"who": {"reference": "urn:uuid:9d0c1a8e-1111-4c1e-9a3b-3f1b0b1f2e01"}}
        ]
    });
    let expression = parse("AuditEvent.agent.who.where(resolve() is Patient)");
    assert_eq!(expression.evaluate(&resource).len(), 4);
    let practitioners = parse("AuditEvent.agent.who.where(resolve() is Practitioner)");
    assert_eq!(
        values(&practitioners, &resource),
        [&json!({"reference": "Practitioner/3"})]
    );
}

#[test]
fn where_field_equals_literal() {
    let patient = json!({
        "resourceType": "Patient",
        "telecom": [
            {"system": "phone", "value": "555"},
            {"system": "email", "value": "a@b.c"}
        ]
    });
    let expression = parse("Patient.telecom.where(system='email')");
    assert_eq!(
        values(&expression, &patient),
        [&json!({"system": "email", "value": "a@b.c"})]
    );
}

#[test]
fn deceased_expression_yields_boolean() {
    let expression = parse("Patient.deceased.exists() and Patient.deceased != false");
    let cases = [
        (
            json!({"resourceType": "Patient", "deceasedBoolean": true}),
            true,
        ),
        (
            json!({"resourceType": "Patient", "deceasedBoolean": false}),
            false,
        ),
        (
            json!({"resourceType": "Patient", "deceasedDateTime": "2020"}),
            true,
        ),
        (json!({"resourceType": "Patient"}), false),
    ];
    for (patient, expected) in cases {
        let result = values(&expression, &patient);
        assert_eq!(result, [&Value::Bool(expected)], "{patient}");
    }
}

#[test]
fn indexer_selects_one_item() {
    let bundle = json!({
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Composition", "id": "c"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}
        ]
    });
    let first = parse("Bundle.entry[0].resource");
    let nodes = first.evaluate(&bundle);
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].fhir_type(), Some("Composition"));
    assert!(
        parse("Bundle.entry[5].resource")
            .evaluate(&bundle)
            .is_empty()
    );
}

#[test]
fn union_removes_repeated_items() {
    let patient = json!({"resourceType": "Patient", "id": "p"});
    assert_eq!(
        values(&parse("Patient.id | Resource.id"), &patient),
        [&json!("p")]
    );
}

#[test]
fn relative_path_and_resource_variable() {
    let sequence = json!({
        "resourceType": "MolecularSequence",
        "referenceSeq": {"chromosome": {"text": "1"}},
        "variant": [{"start": 1, "end": 2}]
    });
    let variant = &sequence["variant"][0];
    let root = Node::resource(&sequence);
    let focus = Node {
        value: variant,
        type_name: None,
        element: Some("variant"),
    };
    let start = parse("start");
    let chromosome = parse("%resource.referenceSeq.chromosome");
    assert_eq!(start.evaluate_at(root, focus)[0].value, &json!(1));
    assert_eq!(
        chromosome.evaluate_at(root, focus)[0].value,
        &json!({"text": "1"})
    );
}

#[test]
fn extension_function_filters_by_url() {
    let patient = json!({
        "resourceType": "Patient",
        "extension": [
            {"url": "http://a", "valueString": "x"},
            {"url": "http://b", "valueString": "y"}
        ]
    });
    let expression = parse("Patient.extension('http://b').value");
    assert_eq!(values(&expression, &patient), [&json!("y")]);
}

#[test]
fn for_resource_type_keeps_own_branches() {
    let expression = parse(
        "AllergyIntolerance.patient | Condition.subject.where(resolve() is Patient) | \
         (MedicationRequest.medication as CodeableConcept)",
    );
    let condition = expression.for_resource_type("Condition").unwrap();
    assert_eq!(
        condition.text(),
        "Condition.subject.where(resolve() is Patient)"
    );
    let request = expression.for_resource_type("MedicationRequest").unwrap();
    assert_eq!(
        request.text(),
        "(MedicationRequest.medication as CodeableConcept)"
    );
    assert_eq!(expression.for_resource_type("Patient"), None);

    let relative = parse("name | alias");
    assert_eq!(
        relative.for_resource_type("InsurancePlan"),
        Some(relative.clone())
    );
    let shared = parse("Resource.meta.tag");
    assert_eq!(shared.for_resource_type("Bundle"), Some(shared.clone()));
}

#[test]
fn unsupported_syntax_is_rejected() {
    for text in [
        "Patient.name.count()",
        "Observation.value > 5",
        "Patient.name.",
        "Patient.name.where(",
        "'unterminated",
        "Patient.name + 1",
        "%unknown.name",
        "Patient #",
    ] {
        let error = Expression::parse(text).expect_err(text);
        assert!(matches!(error, Error::FhirPath { .. }), "{text}: {error}");
    }
}

#[test]
fn parse_error_names_function_and_offset() {
    let error = Expression::parse("Patient.name.count()").unwrap_err();
    let Error::FhirPath {
        offset, message, ..
    } = error
    else {
        panic!("unexpected error kind");
    };
    assert_eq!(offset, 13);
    assert!(message.contains("`count`"), "{message}");
}

#[test]
fn deep_nesting_is_rejected() {
    let nested = format!("{}Patient.id{}", "(".repeat(100), ")".repeat(100));
    let error = Expression::parse(&nested).unwrap_err();
    assert!(error.to_string().contains("nested too deeply"), "{error}");
    let shallow = format!("{}Patient.id{}", "(".repeat(20), ")".repeat(20));
    assert!(Expression::parse(&shallow).is_ok());
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,60}") {
        let _ = Expression::parse(&text);
    }

    #[test]
    fn path_like_text_never_panics(text in "[A-Za-z.()'|=!$%\\[\\]0-9 ]{0,60}") {
        if let Ok(expression) = Expression::parse(&text) {
            let resource = json!({"resourceType": "Patient", "id": "p", "name": [{"given": ["a"]}]});
            let _ = expression.evaluate(&resource);
        }
    }
}

#[test]
fn literals_and_escapes() {
    let resource = json!({"resourceType": "Basic", "id": "it's"});
    let expression = parse(r"Basic.id = 'it\'s'");
    assert_eq!(values(&expression, &resource), [&json!(true)]);
    let number = parse("Basic.id.exists() and 1 = 1.0");
    assert_eq!(values(&number, &resource), [&json!(true)]);
}
