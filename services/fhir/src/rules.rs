//! Rules a resource must follow before Hearth stores it. A structural error against the
//! R4 element definitions (an unknown element, a wrong JSON type) is 400, like a parse
//! error; a breach of the rules that protect Hearth's own indexes and links is 422.
// NOTE: minimum cardinality, value sets and profiles are not validated.

use axum::http::StatusCode;
use serde_json::Value;

use crate::error::{FhirError, FhirResult};

pub fn check_resource_rules(resource_type: &str, resource: &Value) -> FhirResult<()> {
    let unprocessable =
        |message: String| FhirError::new(StatusCode::UNPROCESSABLE_ENTITY, "processing", message);
    if let Some(id) = resource.get("id") {
        match id.as_str() {
            Some(id) if hearth_fhir_core::id::is_valid_id(id) => {}
            _ => {
                return Err(unprocessable(format!(
                    "{resource_type}.id {} is not a valid id",
                    hearth_fhir_core::id::shown(&id.to_string())
                )));
            }
        }
    }
    if let Some(meta) = resource.get("meta")
        && !meta.is_object()
    {
        return Err(unprocessable(format!(
            "{resource_type}.meta must be an object"
        )));
    }
    if let Some(path) = bad_reference(resource, resource_type) {
        return Err(unprocessable(format!("{path}.reference must be a string")));
    }
    if let Some(contained) = resource.get("contained") {
        let Some(items) = contained.as_array() else {
            return Err(unprocessable(format!(
                "{resource_type}.contained must be an array"
            )));
        };
        for item in items {
            let known = item
                .get("resourceType")
                .and_then(Value::as_str)
                .is_some_and(hearth_fhir_core::resource_types::is_resource_type);
            if !known {
                return Err(FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "structure",
                    format!("{resource_type}.contained holds an entry that is not an R4 resource"),
                ));
            }
        }
    }
    hearth_fhir_core::validate::validate(resource).map_err(|e| {
        let status = if e.problem.is_rule() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        FhirError::new(status, e.problem.issue_code(), e.to_string())
    })
}

/// The path of the first `reference` member that is not a string.
fn bad_reference(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(key, child)| {
            if key == "reference" && !child.is_string() {
                return Some(path.to_string());
            }
            bad_reference(child, &format!("{path}.{key}"))
        }),
        Value::Array(items) => items.iter().find_map(|item| bad_reference(item, path)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_reject_broken_resources() {
        assert!(
            check_resource_rules("Patient", &json!({"resourceType": "Patient", "id": "a"})).is_ok()
        );
        let cases = [
            json!({"resourceType": "Patient", "id": "bad id"}),
            json!({"resourceType": "Patient", "meta": "x"}),
            json!({"resourceType": "Observation", "subject": {"reference": 5}}),
        ];
        for case in cases {
            let error =
                check_resource_rules(case["resourceType"].as_str().unwrap(), &case).unwrap_err();
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY, "{case}");
        }
    }

    #[test]
    fn structure_errors_are_bad_requests() {
        let case = json!({"resourceType": "Patient", "foo": 1, "gender": 42});
        let error = check_resource_rules("Patient", &case).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let case = json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]});
        let error = check_resource_rules("Patient", &case).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }
}
