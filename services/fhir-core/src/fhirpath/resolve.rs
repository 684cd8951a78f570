//! Reading the target type and id out of a literal reference, without fetching anything.

use serde_json::Value;

use crate::id::is_valid_id;
use crate::resource_types;

/// The resource a literal reference or canonical URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub resource_type: &'static str,
    pub id: &'a str,
    pub version: Option<&'a str>,
}

/// Splits `Type/id`, `Type/id/_history/version` or an absolute URL ending in one of them
/// (`https://example.org/fhir/Patient/1`). Returns `None` for contained (`#id`),
/// conditional (`Type?query`) and placeholder (`urn:uuid:`) references, for a relative
/// reference with extra segments, and when the type is not an R4 resource type or the id is
/// not a valid FHIR id.
pub(crate) fn parse_target(reference: &str) -> Option<Target<'_>> {
    if reference.starts_with('#') || reference.contains('?') || reference.starts_with("urn:") {
        return None;
    }
    let (path, version) = match reference.rsplit_once("/_history/") {
        Some((path, version)) if !version.is_empty() && !version.contains('/') => {
            (path, Some(version))
        }
        _ => (reference, None),
    };
    let (prefix, id) = path.rsplit_once('/')?;
    let (base, type_name) = match prefix.rsplit_once('/') {
        Some((base, type_name)) => (Some(base), type_name),
        None => (None, prefix),
    };
    if base.is_some() && !reference.contains("://") {
        return None;
    }

    let resource_type = resource_types::lookup(type_name)?;
    if !is_valid_id(id) {
        return None;
    }
    Some(Target {
        resource_type,
        id,
        version,
    })
}

/// Returns the resource type a Reference (or canonical string, or inline resource) points
/// at, as far as the value itself shows: the literal `reference`, a contained resource of
/// `resource` for `#id`, or else `Reference.type`.
pub(crate) fn target_type(value: &Value, resource: &Value) -> Option<&'static str> {
    match value {
        Value::String(reference) => parse_target(strip_version(reference)).map(|t| t.resource_type),
        Value::Object(map) => {
            if let Some(resource_type) = map.get("resourceType").and_then(Value::as_str) {
                return resource_types::lookup(resource_type);
            }
            let literal = map.get("reference").and_then(Value::as_str);
            let from_literal = literal.and_then(|reference| match reference.strip_prefix('#') {
                Some(id) => contained_type(resource, id),
                None => parse_target(reference).map(|t| t.resource_type),
            });
            from_literal.or_else(|| {
                map.get("type")
                    .and_then(Value::as_str)
                    .and_then(resource_types::lookup)
            })
        }
        _ => None,
    }
}

/// Removes the `|version` suffix of a canonical URL.
pub(crate) fn strip_version(canonical: &str) -> &str {
    canonical.split_once('|').map_or(canonical, |(url, _)| url)
}

fn contained_type(resource: &Value, id: &str) -> Option<&'static str> {
    resource
        .get("contained")?
        .as_array()?
        .iter()
        .find(|contained| contained.get("id").and_then(Value::as_str) == Some(id))?
        .get("resourceType")?
        .as_str()
        .and_then(resource_types::lookup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(resource_type: &'static str, id: &'static str) -> Option<Target<'static>> {
        Some(Target {
            resource_type,
            id,
            version: None,
        })
    }

    #[test]
    fn relative_and_absolute_targets() {
        assert_eq!(parse_target("Patient/1"), target("Patient", "1"));
        assert_eq!(
            parse_target("https://x.org/fhir/Patient/1"),
            target("Patient", "1")
        );
        assert_eq!(
            parse_target("Patient/1/_history/3").and_then(|t| t.version),
            Some("3")
        );
        assert_eq!(
            parse_target("http://hl7.org/fhir/StructureDefinition/Patient"),
            target("StructureDefinition", "Patient")
        );
    }

    #[test]
    fn non_targets() {
        assert_eq!(parse_target("#p1"), None);
        assert_eq!(parse_target("Patient?identifier=a|b"), None);
        assert_eq!(
            parse_target("urn:uuid:6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"),
            None
        );
        assert_eq!(parse_target("fhir/Patient/1"), None);
        assert_eq!(parse_target("Unknown/1"), None);
        assert_eq!(parse_target("Patient/bad id"), None);
        assert_eq!(parse_target("Patient"), None);
    }

    #[test]
    fn target_type_sources() {
        let resource = json!({"contained": [{"resourceType": "Medication", "id": "m1"}]});
        let contained = json!({"reference": "#m1"});
        let typed = json!({"identifier": {"value": "1"}, "type": "Practitioner"});
        assert_eq!(target_type(&contained, &resource), Some("Medication"));
        assert_eq!(target_type(&typed, &resource), Some("Practitioner"));
        assert_eq!(
            target_type(&json!("http://x.org/ValueSet/v|2.0"), &resource),
            Some("ValueSet")
        );
        assert_eq!(target_type(&json!({"display": "x"}), &resource), None);
    }
}
