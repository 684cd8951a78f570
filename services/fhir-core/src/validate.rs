//! Structural validation of resources against the R4 element definitions.
//!
//! Every property of a resource must be an element of its type, or the `_name` companion
//! of a primitive element. It must be an array exactly when the element repeats, and have
//! the JSON type of its FHIR type. The check goes down through data types, backbone
//! elements and contained resources. This rejects content of another FHIR version, such as STU3's
//! `Observation.context`, before it reaches the log. Primitive values must follow their
//! type's lexical rules ([`formats`]), and a choice element appears once at most.
//! Cardinality minimums, value sets and profiles are not checked.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::resource_types::is_resource_type;

mod formats;

/// A structural error: where it is (a FHIRPath-like path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

/// One element of a type: whether it repeats, and its type names (several for a choice).
struct Element {
    repeats: bool,
    types: Vec<String>,
}

/// The elements of one type, resource or backbone element.
#[derive(Default)]
struct TypeElements {
    exact: HashMap<String, Element>,
    /// Choice elements by their name without `[x]`, such as `value`.
    choices: Vec<(String, Element)>,
}

static DEFINITIONS: LazyLock<HashMap<String, TypeElements>> = LazyLock::new(|| {
    let raw: HashMap<String, HashMap<String, Vec<Value>>> =
        serde_json::from_str(include_str!("../definitions/r4-elements.json"))
            .expect("the compiled-in R4 element definitions are valid JSON");
    raw.into_iter()
        .map(|(type_name, elements)| (type_name, type_elements(elements)))
        .collect()
});

fn type_elements(elements: HashMap<String, Vec<Value>>) -> TypeElements {
    let mut result = TypeElements::default();
    for (name, spec) in elements {
        let element = Element {
            repeats: spec.first().and_then(Value::as_bool).unwrap_or(false),
            types: spec[1..]
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        };
        match name.strip_suffix("[x]") {
            Some(base) => result.choices.push((base.to_owned(), element)),
            None => {
                result.exact.insert(name, element);
            }
        }
    }
    result
}

/// Checks the structure of `resource`, a JSON object with a known `resourceType`.
pub fn validate(resource: &Value) -> Result<(), Invalid> {
    let Some(object) = resource.as_object() else {
        return Err(invalid("Resource", "a resource must be a JSON object"));
    };
    let resource_type = object
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    if !is_resource_type(resource_type) {
        return Err(invalid(
            resource_type,
            format!("unknown resourceType '{resource_type}'"),
        ));
    }
    check_object(object, resource_type, resource_type, true)
}

fn invalid(path: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Checks each property of `object`, an instance of `type_name`, found at `path`.
fn check_object(
    object: &Map<String, Value>,
    type_name: &str,
    path: &str,
    is_resource: bool,
) -> Result<(), Invalid> {
    let Some(definition) = DEFINITIONS.get(type_name) else {
        // A type without elements of its own, such as a primitive's value, has nothing
        // more to check.
        return Ok(());
    };
    let mut choices_seen: Vec<&str> = Vec::new();
    for (key, value) in object {
        if is_resource && key == "resourceType" {
            continue;
        }
        let child = format!("{path}.{key}");
        if let Some(name) = key.strip_prefix('_') {
            check_primitive_companion(definition, name, value, &child)?;
            continue;
        }
        let Some((element, element_type)) = find(definition, key) else {
            return Err(invalid(
                &child,
                format!("unknown element '{key}' in {type_name}"),
            ));
        };
        if let Some(base) = choice_base(definition, key) {
            if choices_seen.contains(&base) {
                return Err(invalid(
                    &child,
                    format!("{base}[x] appears more than once; a choice element takes one type"),
                ));
            }
            choices_seen.push(base);
        }
        check_cardinality(element, value, &child, |item, item_path| {
            check_value(item, element_type, item_path)
        })?;
    }
    Ok(())
}

/// Finds the element a JSON property names, and its type. A choice element's type comes
/// from the suffix, so `valueQuantity` is `value[x]` of type Quantity.
fn find<'a>(definition: &'a TypeElements, key: &str) -> Option<(&'a Element, &'a str)> {
    if let Some(element) = definition.exact.get(key) {
        return element.types.first().map(|t| (element, t.as_str()));
    }
    definition.choices.iter().find_map(|(base, element)| {
        let suffix = key.strip_prefix(base.as_str())?;
        element
            .types
            .iter()
            .find(|t| capitalized(t) == suffix)
            .map(|t| (element, t.as_str()))
    })
}

/// Returns the choice element (such as `value`) that a property like `valueString`
/// belongs to, or `None` for an element that is not a choice.
fn choice_base<'a>(definition: &'a TypeElements, key: &str) -> Option<&'a str> {
    if definition.exact.contains_key(key) {
        return None;
    }
    definition.choices.iter().find_map(|(base, element)| {
        let suffix = key.strip_prefix(base.as_str())?;
        element
            .types
            .iter()
            .any(|t| capitalized(t) == suffix)
            .then_some(base.as_str())
    })
}

fn capitalized(type_name: &str) -> String {
    let mut chars = type_name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Checks that `value` is an array exactly when `element` repeats, and each item with
/// `check`.
fn check_cardinality(
    element: &Element,
    value: &Value,
    path: &str,
    check: impl Fn(&Value, &str) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    match (element.repeats, value) {
        (true, Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                check(item, &format!("{path}[{index}]"))?;
            }
            Ok(())
        }
        (true, _) => Err(invalid(path, "a repeating element must be a JSON array")),
        (false, Value::Array(_)) => Err(invalid(
            path,
            "the element does not repeat, so it cannot be a JSON array",
        )),
        (false, value) => check(value, path),
    }
}

/// Checks the `_name` companion of primitive element `name`: an object with `id` and
/// `extension`, or an array of such objects and nulls when the element repeats.
fn check_primitive_companion(
    definition: &TypeElements,
    name: &str,
    value: &Value,
    path: &str,
) -> Result<(), Invalid> {
    let Some((element, element_type)) = find(definition, name) else {
        return Err(invalid(path, format!("no element '{name}' for '_{name}'")));
    };
    if !is_primitive(element_type) {
        return Err(invalid(
            path,
            format!("'{name}' is not a primitive element, so '_{name}' is not allowed"),
        ));
    }
    check_cardinality(element, value, path, |item, item_path| match item {
        Value::Null if element.repeats => Ok(()),
        Value::Object(object) => check_object(object, "Element", item_path, false),
        _ => Err(invalid(item_path, "expected a JSON object")),
    })
}

/// Checks one value (not an array) of type `type_name`.
fn check_value(value: &Value, type_name: &str, path: &str) -> Result<(), Invalid> {
    if let Some(expected) = primitive_json(type_name) {
        return if expected.accepts(value) {
            check_format(value, type_name, path)
        } else {
            Err(invalid(
                path,
                format!(
                    "expected {} for {type_name}, found {}",
                    expected.describe(),
                    json_kind(value)
                ),
            ))
        };
    }
    let Value::Object(object) = value else {
        return Err(invalid(
            path,
            format!(
                "expected a JSON object for {type_name}, found {}",
                json_kind(value)
            ),
        ));
    };
    if type_name == "Resource" {
        let Some(resource_type) = object.get("resourceType").and_then(Value::as_str) else {
            return Err(invalid(path, "a resource here needs a resourceType"));
        };
        if !is_resource_type(resource_type) {
            return Err(invalid(
                path,
                format!("unknown resourceType '{resource_type}'"),
            ));
        }
        return check_object(object, resource_type, path, true);
    }
    check_object(object, type_name, path, false)
}

/// Checks a primitive value of the right JSON type against its type's lexical rules.
fn check_format(value: &Value, type_name: &str, path: &str) -> Result<(), Invalid> {
    let reason = match value {
        Value::String(text) => formats::string_error(type_name, text),
        Value::Number(number) => number
            .as_i64()
            .filter(|_| matches!(type_name, "integer" | "positiveInt" | "unsignedInt"))
            .and_then(|integer| formats::integer_error(type_name, integer)),
        _ => None,
    };
    match reason {
        Some(reason) => {
            let shown = crate::id::shown(&value.to_string());
            Err(invalid(
                path,
                format!("invalid {type_name} {shown}: {reason}"),
            ))
        }
        None => Ok(()),
    }
}

/// The JSON form of a primitive type.
#[derive(Clone, Copy)]
enum PrimitiveJson {
    Boolean,
    Integer,
    Number,
    String,
}

impl PrimitiveJson {
    fn accepts(self, value: &Value) -> bool {
        match self {
            PrimitiveJson::Boolean => value.is_boolean(),
            PrimitiveJson::Integer => value.is_i64() || value.is_u64(),
            PrimitiveJson::Number => value.is_number(),
            PrimitiveJson::String => value.is_string(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            PrimitiveJson::Boolean => "a JSON boolean",
            PrimitiveJson::Integer => "a JSON integer",
            PrimitiveJson::Number => "a JSON number",
            PrimitiveJson::String => "a JSON string",
        }
    }
}

fn primitive_json(type_name: &str) -> Option<PrimitiveJson> {
    let json = match type_name {
        "boolean" => PrimitiveJson::Boolean,
        "integer" | "positiveInt" | "unsignedInt" => PrimitiveJson::Integer,
        "decimal" => PrimitiveJson::Number,
        "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid" | "uuid"
        | "base64Binary" | "instant" | "date" | "dateTime" | "time" | "xhtml" => {
            PrimitiveJson::String
        }
        _ => return None,
    };
    Some(json)
}

fn is_primitive(type_name: &str) -> bool {
    primitive_json(type_name).is_some()
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(resource: Value) -> Invalid {
        validate(&resource).expect_err("the resource was accepted")
    }

    #[test]
    fn valid_patient_passes() {
        let patient = json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "1", "profile": ["http://example.org/p"]},
            "extension": [{"url": "http://example.org/e", "valueCodeableConcept": {"text": "x"}}],
            "name": [{"family": "Doe", "given": ["Jo"], "_given": [{"extension": []}]}],
            "gender": "female",
            "_birthDate": {"extension": [{"url": "http://example.org/t", "valueTime": "10:00:00"}]},
            "deceasedBoolean": false,
            "multipleBirthInteger": 2,
            "contact": [{"relationship": [{"coding": [{"code": "N"}]}]}],
            "contained": [{"resourceType": "Organization", "id": "o", "name": "Clinic"}],
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
        });
        assert_eq!(validate(&patient), Ok(()));
    }

    #[test]
    fn unknown_element_is_named() {
        let error = error_of(json!({"resourceType": "Patient", "foo": 1}));
        assert_eq!(error.path, "Patient.foo");
        assert!(error.message.contains("unknown element"), "{error}");
    }

    #[test]
    fn stu3_element_is_rejected() {
        let error = error_of(json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "context": {"reference": "Encounter/e"}
        }));
        assert_eq!(error.path, "Observation.context");
    }

    #[test]
    fn wrong_primitive_type_is_rejected() {
        let error = error_of(json!({"resourceType": "Patient", "gender": 42}));
        assert_eq!(error.path, "Patient.gender");
        assert!(error.message.contains("JSON string"), "{error}");
        let error = error_of(json!({"resourceType": "Patient", "active": "yes"}));
        assert_eq!(error.path, "Patient.active");
    }

    #[test]
    fn repetition_must_match_definition() {
        let error = error_of(json!({"resourceType": "Patient", "name": {"family": "Doe"}}));
        assert_eq!(error.path, "Patient.name");
        let error = error_of(json!({"resourceType": "Patient", "gender": ["male"]}));
        assert_eq!(error.path, "Patient.gender");
    }

    #[test]
    fn nested_errors_carry_their_path() {
        let error = error_of(json!({
            "resourceType": "Patient",
            "name": [{"family": "Doe"}, {"given": "Jo"}]
        }));
        assert_eq!(error.path, "Patient.name[1].given");
        let error = error_of(json!({
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "2", "type": "string", "bogus": true}]}]
        }));
        assert_eq!(error.path, "Questionnaire.item[0].item[0].bogus");
    }

    #[test]
    fn choice_suffix_must_be_an_allowed_type() {
        let error = error_of(json!({"resourceType": "Patient", "deceasedString": "yes"}));
        assert_eq!(error.path, "Patient.deceasedString");
    }

    #[test]
    fn contained_and_bundle_resources_are_checked() {
        let error = error_of(json!({
            "resourceType": "Patient",
            "contained": [{"resourceType": "Organization", "nome": "x"}]
        }));
        assert_eq!(error.path, "Patient.contained[0].nome");
        let error = error_of(json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Nope"}}]
        }));
        assert_eq!(error.path, "Bundle.entry[0].resource");
    }

    #[test]
    fn companion_of_complex_element_is_rejected() {
        let error = error_of(json!({"resourceType": "Patient", "_name": [{}]}));
        assert_eq!(error.path, "Patient._name");
    }

    #[test]
    fn primitive_values_follow_their_types() {
        let cases = [
            json!({"resourceType": "Patient", "birthDate": "notadate"}),
            json!({"resourceType": "Patient", "gender": ""}),
            json!({"resourceType": "Patient", "gender": " female"}),
            json!({"resourceType": "Patient", "multipleBirthInteger": 3_000_000_000_i64}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "effectiveDateTime": "2020-02-03T10:11"}),
        ];
        for case in cases {
            let error = error_of(case.clone());
            assert!(error.message.starts_with("invalid "), "{case}: {error}");
        }
    }

    #[test]
    fn choice_element_takes_one_type() {
        let error = error_of(json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueString": "a", "valueBoolean": true,
        }));
        assert!(error.message.contains("value[x]"), "{error}");
    }
}
