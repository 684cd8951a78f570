//! The OperationDefinitions of Hearth's own operations, `$import` and Group `$refresh`,
//! which the CapabilityStatement names at `[base]/OperationDefinition/{id}`. A read of
//! those ids gets them from here rather than from the repository, so every site has them.
//! Writes to those ids get 405. Searches, history and vread of OperationDefinition see
//! only stored resources, so they do not list these two.
//! The operations of the Bulk Data IG and of FHIR itself keep their published URLs.

use serde_json::{Value, json};

/// The ids of the operations defined here.
pub const IDS: [&str; 2] = ["import", "group-refresh"];

/// Builds the OperationDefinition with `id`, its `url` under `base_url`, or returns
/// `None` for any other id.
pub fn definition(base_url: &str, id: &str) -> Option<Value> {
    let mut definition = match id {
        "import" => import(),
        "group-refresh" => group_refresh(),
        _ => return None,
    };
    definition["id"] = json!(id);
    definition["url"] = json!(format!("{base_url}/OperationDefinition/{id}"));
    definition["resourceType"] = json!("OperationDefinition");
    definition["status"] = json!("active");
    definition["kind"] = json!("operation");
    definition["publisher"] = json!("Hearth");
    Some(definition)
}

fn part(name: &str, type_name: &str, min: u32, documentation: &str) -> Value {
    json!({
        "name": name,
        "use": "in",
        "min": min,
        "max": "1",
        "type": type_name,
        "documentation": documentation,
    })
}

fn import() -> Value {
    json!({
        "name": "Import",
        "title": "Asynchronous NDJSON import",
        "description": "Reads NDJSON files of resources from URLs on allowed hosts or from the bulk store and stores them with their ids. Started with Prefer: respond-async; the status URL follows the Bulk Data export pattern, with an error file for lines that were skipped.",
        "code": "import",
        "system": true,
        "type": false,
        "instance": false,
        "parameter": [
            part("inputFormat", "code", 1, "application/fhir+ndjson, application/ndjson or ndjson"),
            part("inputSource", "uri", 0, "The system the files come from"),
            {
                "name": "input",
                "use": "in",
                "min": 1,
                "max": "*",
                "documentation": "One NDJSON file of one resource type",
                "part": [
                    part("type", "code", 1, "The resource type of every line"),
                    part("url", "uri", 1, "http(s) on an allowed host, s3:// in the bulk store, or file:/// under the local store directory"),
                ],
            },
        ],
    })
}

fn group_refresh() -> Value {
    json!({
        "name": "GroupRefresh",
        "title": "Evaluate a cohort",
        "description": "Evaluates the member filters of a Group (characteristics written as FHIR searches) against the repository with the caller's scopes, and stores the Group with its member list and quantity.",
        "code": "refresh",
        "resource": ["Group"],
        "system": false,
        "type": false,
        "instance": true,
        "parameter": [{
            "name": "return",
            "use": "out",
            "min": 1,
            "max": "1",
            "type": "Group",
            "documentation": "The Group as stored, with member and quantity",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_validate_and_carry_their_url() {
        for id in IDS {
            let definition = definition("http://h.example/fhir/s", id).expect("defined");
            hearth_fhir_core::validate::validate(&definition)
                .unwrap_or_else(|e| panic!("OperationDefinition/{id}: {e}"));
            assert_eq!(
                definition["url"],
                format!("http://h.example/fhir/s/OperationDefinition/{id}")
            );
        }
        assert!(definition("http://h.example/fhir/s", "other").is_none());
    }
}
