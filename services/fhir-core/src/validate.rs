//! Structural validation of resources against the R4 element definitions.
//!
//! Every property of a resource must be an element of its type, or the `_name` companion
//! of a primitive element. It must be an array exactly when the element repeats, and have
//! the JSON type of its FHIR type. The check goes down through data types, backbone
//! elements and contained resources. This rejects content of another FHIR version, such as STU3's
//! `Observation.context`, before it reaches the log. Primitive values must follow their
//! type's lexical rules ([`formats`]), and a choice element appears once at most. Empty
//! objects and arrays are invalid (an element needs a value or children).
//!
//! Beyond structure, two rules of the core definitions are checked. Every element with a
//! minimum cardinality of 1 must be present, as a value or as a primitive's `_name`
//! extension. A `code`, Coding or CodeableConcept element bound to a value set with
//! strength `required` must use a code of that value set, where the R4 package lists the
//! value set in full. Value sets drawn from external code systems (MIME types, languages,
//! currencies) are not checked, nor are invariants or profiles.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::resource_types::is_resource_type;

mod formats;

/// A validation error: where it is (a FHIRPath-like path), what is wrong, and which kind
/// of rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
    pub problem: Problem,
}

/// The kind of rule a resource breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The JSON does not have the shape of the type: unknown elements, wrong JSON types,
    /// values that break a primitive's lexical rules.
    Structure,
    /// A mandatory element (minimum cardinality 1) is absent.
    Required,
    /// A code is not in the value set its element is bound to with strength `required`.
    CodeInvalid,
}

impl Problem {
    /// Returns the OperationOutcome issue type code for this problem.
    pub fn issue_code(self) -> &'static str {
        match self {
            Problem::Structure => "structure",
            Problem::Required => "required",
            Problem::CodeInvalid => "code-invalid",
        }
    }

    /// Returns whether the resource is well-formed JSON of its type and breaks a business
    /// rule of the definitions, which FHIR rejects with 422 rather than 400.
    pub fn is_rule(self) -> bool {
        self != Problem::Structure
    }
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

/// The minimum cardinalities and required bindings of the R4 definitions, by the same
/// type, resource and backbone paths as the elements.
#[derive(Default, serde::Deserialize)]
struct Rules {
    required: HashMap<String, Vec<String>>,
    bindings: HashMap<String, HashMap<String, String>>,
    #[serde(rename = "valueSets")]
    /// The codes of each value set by code system, sorted.
    value_sets: HashMap<String, HashMap<String, Vec<String>>>,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../definitions/r4-rules.json"))
        .expect("the compiled-in R4 rules are valid JSON")
});

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

/// Checks the structure of `resource`, a JSON object with a known `resourceType`, and the
/// rules of its definition (mandatory elements, required bindings).
pub fn validate(resource: &Value) -> Result<(), Invalid> {
    validate_with(resource, Checks::All)
}

/// Checks only the structure of `resource`: what a load of existing data must pass. The
/// official R4 examples themselves leave out some mandatory elements
/// (`SearchParameter.base`, `ImplementationGuide.name`), so a load keeps such resources
/// as they are, while REST writes must follow the rules too.
pub fn validate_structure(resource: &Value) -> Result<(), Invalid> {
    validate_with(resource, Checks::Structure)
}

/// The set of checks a validation runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checks {
    Structure,
    All,
}

fn validate_with(resource: &Value, checks: Checks) -> Result<(), Invalid> {
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
    check_object(object, resource_type, resource_type, true, checks)
}

fn invalid(path: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.to_owned(),
        message: message.into(),
        problem: Problem::Structure,
    }
}

/// Checks each property of `object`, an instance of `type_name`, found at `path`.
fn check_object(
    object: &Map<String, Value>,
    type_name: &str,
    path: &str,
    is_resource: bool,
    checks: Checks,
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
            let primitive = object.get(name);
            check_primitive_companion(definition, name, value, primitive, &child, checks)?;
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
        let companion = object.get(&format!("_{key}"));
        check_cardinality(element, value, &child, |item, item_path, index| {
            if item.is_null() && is_primitive(element_type) {
                // A null keeps the place of a value whose companion carries only an
                // extension, such as `"given": [null, "Jo"]` with `"_given": [{...}, null]`.
                let placed = index
                    .and_then(|index| companion?.get(index))
                    .is_some_and(Value::is_object);
                return if placed {
                    Ok(())
                } else {
                    Err(invalid(
                        item_path,
                        format!(
                            "null is allowed in '{key}' only where '_{key}' has an object at the same index"
                        ),
                    ))
                };
            }
            check_value(item, element_type, item_path, checks)
        })?;
        if checks == Checks::All {
            check_binding(type_name, key, element_type, value, &child)?;
        }
    }
    match checks {
        Checks::All => check_required(object, type_name, path),
        Checks::Structure => Ok(()),
    }
}

/// Checks that every element of `type_name` with a minimum cardinality of 1 is present:
/// as a value, or for a primitive as its `_name` extension alone (such as a
/// data-absent-reason). A choice element is present in any of its types.
fn check_required(object: &Map<String, Value>, type_name: &str, path: &str) -> Result<(), Invalid> {
    let Some(names) = RULES.required.get(type_name) else {
        return Ok(());
    };
    for name in names {
        let present = match name.strip_suffix("[x]") {
            Some(base) => object.keys().any(|key| {
                let key = key.strip_prefix('_').unwrap_or(key);
                key.strip_prefix(base)
                    .and_then(|rest| rest.chars().next())
                    .is_some_and(|c| c.is_ascii_uppercase())
            }),
            None => object.contains_key(name.as_str()) || object.contains_key(&format!("_{name}")),
        };
        if !present {
            return Err(Invalid {
                path: format!("{path}.{name}"),
                message: format!("{type_name}.{name} is required (minimum cardinality 1)"),
                problem: Problem::Required,
            });
        }
    }
    Ok(())
}

/// Checks element `key` of `type_name`, of type `element_type`, against the value set it
/// is bound to with strength `required`, when the definitions list that value set's codes.
/// A `code` must be one of them. A Coding needs a `system` and `code` of the value set,
/// and a CodeableConcept at least one such Coding. A Coding or CodeableConcept that
/// carries only extensions (such as a data-absent-reason) is not checked.
fn check_binding(
    type_name: &str,
    key: &str,
    element_type: &str,
    value: &Value,
    path: &str,
) -> Result<(), Invalid> {
    let Some(url) = RULES.bindings.get(type_name).and_then(|b| b.get(key)) else {
        return Ok(());
    };
    let Some(systems) = RULES.value_sets.get(url) else {
        return Ok(());
    };
    let items = match value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    let listed = |system: Option<&str>, code: &str| match system {
        Some(system) => systems
            .get(system)
            .is_some_and(|codes| codes.binary_search_by(|c| c.as_str().cmp(code)).is_ok()),
        None => systems
            .values()
            .any(|codes| codes.binary_search_by(|c| c.as_str().cmp(code)).is_ok()),
    };
    let coding_listed = |coding: &Value| {
        let system = coding.get("system").and_then(Value::as_str);
        let code = coding.get("code").and_then(Value::as_str);
        matches!((system, code), (Some(system), Some(code)) if listed(Some(system), code))
    };
    let only_extensions =
        |object: &Map<String, Value>| object.keys().all(|k| k == "extension" || k == "id");
    for (index, item) in items.iter().enumerate() {
        let item_path = match value {
            Value::Array(_) => format!("{path}[{index}]"),
            _ => path.to_owned(),
        };
        let problem = match (element_type, item) {
            ("code", Value::String(code)) if !listed(None, code) => Some(format!(
                "'{}' is not a code of the required value set {url}",
                crate::id::shown(code)
            )),
            ("Coding", Value::Object(coding))
                if !only_extensions(coding) && !coding_listed(item) =>
            {
                Some(format!(
                    "the Coding's system and code are not in the required value set {url}"
                ))
            }
            ("CodeableConcept", Value::Object(concept)) if !only_extensions(concept) => {
                let codings = concept.get("coding").and_then(Value::as_array);
                let any = codings.is_some_and(|codings| codings.iter().any(coding_listed));
                (!any).then(|| {
                    format!("no Coding (system and code) is in the required value set {url}")
                })
            }
            _ => None,
        };
        if let Some(message) = problem {
            return Err(Invalid {
                path: item_path,
                message,
                problem: Problem::CodeInvalid,
            });
        }
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

/// Checks that `value` is an array exactly when `element` repeats, and not an empty one,
/// and each item with `check`, which gets the item's index in the array.
fn check_cardinality(
    element: &Element,
    value: &Value,
    path: &str,
    check: impl Fn(&Value, &str, Option<usize>) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    match (element.repeats, value) {
        (true, Value::Array(items)) if items.is_empty() => Err(invalid(
            path,
            "an array must not be empty; leave the element out instead",
        )),
        (true, Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                check(item, &format!("{path}[{index}]"), Some(index))?;
            }
            Ok(())
        }
        (true, _) => Err(invalid(path, "a repeating element must be a JSON array")),
        (false, Value::Array(_)) => Err(invalid(
            path,
            "the element does not repeat, so it cannot be a JSON array",
        )),
        (false, value) => check(value, path, None),
    }
}

/// Checks the `_name` companion of primitive element `name`: an object with `id` and
/// `extension`, or an array of such objects and nulls when the element repeats.
/// `primitive` is the element's own value, if any. Where it has no value, the companion
/// must carry an extension, because an element needs a value or children.
fn check_primitive_companion(
    definition: &TypeElements,
    name: &str,
    value: &Value,
    primitive: Option<&Value>,
    path: &str,
    checks: Checks,
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
    check_cardinality(element, value, path, |item, item_path, index| {
        let has_value = match index {
            Some(index) => primitive
                .and_then(|values| values.get(index))
                .is_some_and(|value| !value.is_null()),
            None => primitive.is_some_and(|value| !value.is_null()),
        };
        match item {
            Value::Null if element.repeats && has_value => Ok(()),
            Value::Null if element.repeats => Err(invalid(
                item_path,
                format!("'{name}' and '_{name}' are both null at this index"),
            )),
            Value::Object(object) if object.is_empty() => Err(invalid(
                item_path,
                format!("'_{name}' must not be an empty object; leave it out instead"),
            )),
            Value::Object(object) if !has_value && !object.contains_key("extension") => {
                Err(invalid(
                    item_path,
                    format!("'_{name}' needs an extension where '{name}' has no value"),
                ))
            }
            Value::Object(object) => check_object(object, "Element", item_path, false, checks),
            _ => Err(invalid(item_path, "expected a JSON object")),
        }
    })
}

/// Checks one value (not an array) of type `type_name`.
fn check_value(value: &Value, type_name: &str, path: &str, checks: Checks) -> Result<(), Invalid> {
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
    if type_name != "Resource" && object.keys().all(|key| key == "id") {
        return Err(invalid(
            path,
            format!("an element must have a value or child elements, not an empty {type_name}"),
        ));
    }
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
        return check_object(object, resource_type, path, true, checks);
    }
    check_object(object, type_name, path, false, checks)
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
            "name": [{"family": "Doe", "given": ["Jo"], "_given": [{"extension": [{"url": "http://example.org/g", "valueString": "x"}]}]}],
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
    fn mandatory_elements_must_be_present() {
        let error = error_of(json!({"resourceType": "Observation", "code": {"text": "x"}}));
        assert_eq!(error.path, "Observation.status");
        assert_eq!(error.problem, Problem::Required);
        let error = error_of(json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"}
        }));
        assert_eq!(error.path, "MedicationRequest.medication[x]");
        let error = error_of(json!({
            "resourceType": "Patient",
            "contained": [{"resourceType": "Observation", "status": "final"}]
        }));
        assert_eq!(error.path, "Patient.contained[0].code");
        let error =
            error_of(json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]}));
        assert_eq!(error.path, "Patient.extension[0].url");
    }

    #[test]
    fn mandatory_primitive_may_be_only_an_extension() {
        let observation = json!({
            "resourceType": "Observation",
            "_status": {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown"
            }]},
            "code": {"text": "x"}
        });
        assert_eq!(validate(&observation), Ok(()));
    }

    #[test]
    fn required_bindings_take_their_codes() {
        let error = error_of(json!({"resourceType": "Patient", "gender": "robot"}));
        assert_eq!(error.path, "Patient.gender");
        assert_eq!(error.problem, Problem::CodeInvalid);
        assert!(error.message.contains("administrative-gender"), "{error}");
        let error = error_of(json!({
            "resourceType": "Patient", "name": [{"use": "alias", "family": "x"}]
        }));
        assert_eq!(error.path, "Patient.name[0].use");
        let error = error_of(json!({
            "resourceType": "Observation", "status": "done", "code": {"text": "x"}
        }));
        assert_eq!(error.path, "Observation.status");
        // Codes are case-sensitive.
        let error = error_of(json!({"resourceType": "Patient", "gender": "Female"}));
        assert_eq!(error.problem, Problem::CodeInvalid);
    }

    #[test]
    fn empty_objects_and_arrays_are_rejected() {
        let cases = [
            (
                json!({"resourceType": "Observation", "status": "final", "code": {}}),
                "Observation.code",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {"id": "a"}}),
                "Observation.code",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "category": []}),
                "Observation.category",
            ),
            (
                json!({"resourceType": "Observation", "_status": {}, "code": {"text": "x"}}),
                "Observation._status",
            ),
            (
                json!({"resourceType": "Observation", "_status": {"id": "a"}, "code": {"text": "x"}}),
                "Observation._status",
            ),
            (
                json!({"resourceType": "Patient", "gender": "male", "_gender": {}}),
                "Patient._gender",
            ),
        ];
        for (resource, path) in cases {
            let error = error_of(resource.clone());
            assert_eq!(error.path, path, "{resource}: {error}");
            assert_eq!(error.problem, Problem::Structure, "{resource}");
        }
    }

    #[test]
    fn null_in_primitive_array_needs_companion() {
        let extension = json!({"extension": [{"url": "http://example.org/e", "valueString": "x"}]});
        let placed = json!({
            "resourceType": "Patient",
            "name": [{"given": [null, "Jo"], "_given": [extension, null]}]
        });
        assert_eq!(validate(&placed), Ok(()));
        let bare = json!({"resourceType": "Patient", "name": [{"given": [null, "Jo"]}]});
        assert_eq!(error_of(bare).path, "Patient.name[0].given[0]");
        let both = json!({
            "resourceType": "Patient",
            "name": [{"given": [null, "Jo"], "_given": [null, null]}]
        });
        assert_eq!(error_of(both).path, "Patient.name[0]._given[0]");
    }

    #[test]
    fn required_codeable_concepts_need_a_listed_coding() {
        let condition = |clinical: Value| {
            json!({
                "resourceType": "Condition",
                "subject": {"reference": "Patient/p"},
                "clinicalStatus": clinical,
            })
        };
        let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
        let good = condition(json!({"coding": [{"system": system, "code": "active"}]}));
        assert_eq!(validate(&good), Ok(()));
        for bad in [
            json!({"coding": [{"system": system, "code": "bogus"}]}),
            json!({"coding": [{"system": "http://example.org", "code": "active"}]}),
            json!({"text": "active"}),
        ] {
            let error = error_of(condition(bad.clone()));
            assert_eq!(error.path, "Condition.clinicalStatus", "{bad}");
            assert_eq!(error.problem, Problem::CodeInvalid, "{bad}");
        }
    }

    #[test]
    fn structure_only_skips_the_rules() {
        let observation = json!({"resourceType": "Observation", "status": "done"});
        assert_eq!(validate_structure(&observation), Ok(()));
        let error = validate_structure(&json!({"resourceType": "Observation", "statuss": 1}))
            .expect_err("structure is still checked");
        assert_eq!(error.problem, Problem::Structure);
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
