use super::*;
use crate::fhirpath::Expression;

#[test]
fn every_definition_compiles() {
    let mut failures = Vec::new();
    let mut compiled = 0;
    for definition in definitions() {
        let Some(text) = &definition.expression else {
            assert!(
                UNINDEXED_PARAMS.contains(&definition.code.as_str()),
                "{} has no expression and is not in UNINDEXED_PARAMS",
                definition.url
            );
            continue;
        };
        let component_texts = definition.component.iter().map(|c| &c.expression);
        for text in std::iter::once(text).chain(component_texts) {
            match Expression::parse(text) {
                Ok(_) => compiled += 1,
                Err(error) => failures.push(format!("{}: {error}", definition.url)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        compiled,
        1372 + 7 + 96,
        "R4 and US Core expressions plus composite components"
    );
}

#[test]
fn every_base_type_gets_its_params() {
    for definition in definitions() {
        if definition.expression.is_none() {
            continue;
        }
        for resource_type in base_types(&definition.base) {
            let param = get(resource_type, &definition.code)
                .unwrap_or_else(|| panic!("{resource_type} lacks {}", definition.code));
            assert_eq!(
                param.url, definition.url,
                "{resource_type}.{}",
                definition.code
            );
        }
    }
}

#[test]
fn observation_params() {
    let codes: Vec<&str> = for_type("Observation")
        .iter()
        .map(|p| p.code.as_str())
        .collect();
    for expected in [
        "_id",
        "_lastUpdated",
        "_profile",
        "_security",
        "_source",
        "_tag",
        "code",
        "code-value-quantity",
        "combo-code",
        "date",
        "patient",
        "subject",
        "value-quantity",
    ] {
        assert!(codes.contains(&expected), "missing {expected}");
    }
    for unindexed in UNINDEXED_PARAMS {
        assert!(!codes.contains(unindexed), "{unindexed} has no expression");
    }
    assert!(codes.is_sorted());
}

#[test]
fn shared_param_keeps_own_branch() {
    let condition = get("Condition", "patient").unwrap();
    assert_eq!(condition.param_type, ParamType::Reference);
    assert_eq!(
        condition.path.text(),
        "Condition.subject.where(resolve() is Patient)"
    );
    assert!(
        condition
            .expression
            .starts_with("AllergyIntolerance.patient | ")
    );
    assert_eq!(condition.targets, ["Patient", "Group"]);

    let request = get("MedicationRequest", "code").unwrap();
    assert_eq!(
        request.path.text(),
        "(MedicationRequest.medication as CodeableConcept)"
    );
}

#[test]
fn relative_expression_applies_to_its_base() {
    let name = get("InsurancePlan", "name").unwrap();
    assert_eq!(name.path.text(), "name | alias");
}

#[test]
fn resource_level_params_on_every_type() {
    for resource_type in resource_types::all() {
        for code in [
            "_id",
            "_lastUpdated",
            "_profile",
            "_security",
            "_source",
            "_tag",
        ] {
            assert!(
                get(resource_type, code).is_some(),
                "{resource_type} lacks {code}"
            );
        }
    }
    let id = get("Bundle", "_id").unwrap();
    assert_eq!(id.param_type, ParamType::Token);
    assert_eq!(
        get("Patient", "_lastUpdated").unwrap().param_type,
        ParamType::Date
    );
}

#[test]
fn composite_components_carry_types() {
    let param = get("Observation", "code-value-quantity").unwrap();
    assert_eq!(param.param_type, ParamType::Composite);
    let parts: Vec<(&str, ParamType)> = param
        .components
        .iter()
        .map(|c| (c.code.as_str(), c.param_type))
        .collect();
    assert_eq!(
        parts,
        [
            ("code", ParamType::Token),
            ("value-quantity", ParamType::Quantity)
        ]
    );
}

#[test]
fn unknown_type_has_no_params() {
    assert!(for_type("NotAType").is_empty());
    assert!(for_type("Resource").is_empty());
    assert!(get("Patient", "no-such-param").is_none());
}

#[test]
fn compartment_params_exist() {
    assert_eq!(compartment_params("Observation"), ["subject", "performer"]);
    assert!(compartment_params("CodeSystem").is_empty());
    assert!(compartment_params("NotAType").is_empty());
    for resource_type in resource_types::all() {
        for code in compartment_params(resource_type) {
            let param = get(resource_type, code)
                .unwrap_or_else(|| panic!("{resource_type} lacks compartment param {code}"));
            assert_eq!(
                param.param_type,
                ParamType::Reference,
                "{resource_type}.{code}"
            );
        }
    }
}
