//! FHIR type names in FHIRPath: choice-element suffixes and type matching.

use serde_json::Value;

use crate::resource_types;

/// Specializations of Quantity in R4; `as Quantity` keeps them too.
const QUANTITY_PROFILES: &[&str] = &[
    "Age",
    "Count",
    "Distance",
    "Duration",
    "MoneyQuantity",
    "SimpleQuantity",
];

/// Resource types that derive from Resource directly rather than from DomainResource.
const NON_DOMAIN_RESOURCES: &[&str] = &["Binary", "Bundle", "Parameters"];

/// Returns the FHIR type name for the suffix of a choice key (`Quantity` in
/// `valueQuantity`), or `None` when the suffix is no R4 data type.
///
/// The suffixes are the types allowed for `Extension.value[x]` in R4, which every other
/// choice element draws from.
pub(crate) fn choice_type(suffix: &str) -> Option<&'static str> {
    let type_name = match suffix {
        "Base64Binary" => "base64Binary",
        "Boolean" => "boolean",
        "Canonical" => "canonical",
        "Code" => "code",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Decimal" => "decimal",
        "Id" => "id",
        "Instant" => "instant",
        "Integer" => "integer",
        "Markdown" => "markdown",
        "Oid" => "oid",
        "PositiveInt" => "positiveInt",
        "String" => "string",
        "Time" => "time",
        "UnsignedInt" => "unsignedInt",
        "Uri" => "uri",
        "Url" => "url",
        "Uuid" => "uuid",
        "Address" => "Address",
        "Age" => "Age",
        "Annotation" => "Annotation",
        "Attachment" => "Attachment",
        "CodeableConcept" => "CodeableConcept",
        "Coding" => "Coding",
        "ContactPoint" => "ContactPoint",
        "Count" => "Count",
        "Distance" => "Distance",
        "Duration" => "Duration",
        "HumanName" => "HumanName",
        "Identifier" => "Identifier",
        "Money" => "Money",
        "Period" => "Period",
        "Quantity" => "Quantity",
        "Range" => "Range",
        "Ratio" => "Ratio",
        "Reference" => "Reference",
        "SampledData" => "SampledData",
        "Signature" => "Signature",
        "Timing" => "Timing",
        "ContactDetail" => "ContactDetail",
        "Contributor" => "Contributor",
        "DataRequirement" => "DataRequirement",
        "Expression" => "Expression",
        "ParameterDefinition" => "ParameterDefinition",
        "RelatedArtifact" => "RelatedArtifact",
        "TriggerDefinition" => "TriggerDefinition",
        "UsageContext" => "UsageContext",
        "Dosage" => "Dosage",
        "Meta" => "Meta",
        _ => return None,
    };
    Some(type_name)
}

/// Returns the FHIR type of a JSON value when its shape alone shows it: booleans,
/// numbers and resources (objects with `resourceType`).
pub(crate) fn infer_type(value: &Value) -> Option<&'static str> {
    match value {
        Value::Bool(_) => Some("boolean"),
        Value::Number(number) if number.is_f64() => Some("decimal"),
        Value::Number(_) => Some("integer"),
        Value::Object(map) => map
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(resource_types::lookup),
        _ => None,
    }
}

/// Returns whether a value of type `actual` is a `wanted`, counting specializations
/// (Age is a Quantity, Patient is a Resource and a DomainResource).
///
/// Names are compared ignoring the case of their first letter, because some R4
/// expressions capitalise primitive type names (`value.as(DateTime)`).
/// Primitive specializations are not followed: `code` is not a `string` here, so
/// `as uri` and `as canonical` select different branches of a choice.
pub fn is_type(actual: &str, wanted: &str) -> bool {
    if same_name(actual, wanted) {
        return true;
    }
    match wanted {
        "Quantity" => QUANTITY_PROFILES.contains(&actual),
        "Resource" => resource_types::is_resource_type(actual),
        "DomainResource" => {
            resource_types::is_resource_type(actual) && !NON_DOMAIN_RESOURCES.contains(&actual)
        }
        _ => false,
    }
}

fn same_name(left: &str, right: &str) -> bool {
    let (mut left_chars, mut right_chars) = (left.chars(), right.chars());
    match (left_chars.next(), right_chars.next()) {
        (Some(l), Some(r)) => {
            l.eq_ignore_ascii_case(&r) && left_chars.as_str() == right_chars.as_str()
        }
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_suffixes() {
        assert_eq!(choice_type("Quantity"), Some("Quantity"));
        assert_eq!(choice_type("DateTime"), Some("dateTime"));
        assert_eq!(choice_type("Filter"), None);
        assert_eq!(choice_type(""), None);
    }

    #[test]
    fn type_matching() {
        assert!(is_type("dateTime", "DateTime"));
        assert!(is_type("Age", "Quantity"));
        assert!(!is_type("Quantity", "Age"));
        assert!(is_type("Patient", "Resource"));
        assert!(is_type("Patient", "DomainResource"));
        assert!(!is_type("Bundle", "DomainResource"));
        assert!(!is_type("canonical", "uri"));
        assert!(!is_type("string", "String2"));
    }
}
