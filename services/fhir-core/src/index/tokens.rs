//! Rows of token parameters.

use serde_json::{Map, Value};

use super::{TokenRow, normalize};
use crate::fhirpath::Node;

/// ContactPoint.system codes (R4 value set `contact-point-system`). An Identifier.system
/// is a URI, so these tell the two apart when the element type is unknown.
const CONTACT_POINT_SYSTEMS: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];

/// The complex types a token parameter indexes.
enum Shape {
    CodeableConcept,
    Coding,
    Identifier,
    ContactPoint,
}

/// Adds rows for a primitive (code, string, id, uri, boolean, number), Coding,
/// CodeableConcept, Identifier or ContactPoint. Other values add nothing.
pub(super) fn add_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<TokenRow>) {
    let map = match node.value {
        Value::Bool(value) => return push_code(param, &value.to_string(), out),
        Value::String(code) => return push_code(param, code, out),
        Value::Number(number) => return push_code(param, &number.to_string(), out),
        Value::Object(map) => map,
        Value::Null | Value::Array(_) => return,
    };
    match shape(node, map) {
        Some(Shape::CodeableConcept) => {
            for coding in array(map.get("coding")) {
                if let Value::Object(coding) = coding {
                    push_coding(param, coding, out);
                }
            }
            if let Some(text) = string(map, "text") {
                push(param, None, None, Some(text), out);
            }
        }
        Some(Shape::Coding) => push_coding(param, map, out),
        Some(Shape::Identifier) => push_identifier(param, map, out),
        Some(Shape::ContactPoint) => {
            // R4 search, "token": a ContactPoint token matches ContactPoint.value only.
            if let Some(value) = string(map, "value") {
                push(param, None, Some(value), None, out);
            }
        }
        None => {}
    }
}

/// Decides the type from the choice suffix, else from the element name and the keys
/// present, because this crate does not track the declared types of elements.
fn shape(node: &Node<'_>, map: &Map<String, Value>) -> Option<Shape> {
    match node.type_name {
        Some("CodeableConcept") => return Some(Shape::CodeableConcept),
        Some("Coding") => return Some(Shape::Coding),
        Some("Identifier") => return Some(Shape::Identifier),
        Some("ContactPoint") => return Some(Shape::ContactPoint),
        Some(_) | None => {}
    }
    if map.contains_key("coding") {
        return Some(Shape::CodeableConcept);
    }
    if node.element == Some("telecom") {
        return Some(Shape::ContactPoint);
    }
    if let Some(Value::String(_)) = map.get("value") {
        let system = string(map, "system").unwrap_or_default();
        let is_contact = CONTACT_POINT_SYSTEMS.contains(&system) || map.contains_key("rank");
        return Some(if is_contact {
            Shape::ContactPoint
        } else {
            Shape::Identifier
        });
    }
    if map.contains_key("code") || map.contains_key("system") {
        return Some(Shape::Coding);
    }
    if map.contains_key("text") {
        return Some(Shape::CodeableConcept);
    }
    None
}

fn push_coding(param: &'static str, coding: &Map<String, Value>, out: &mut Vec<TokenRow>) {
    let system = string(coding, "system");
    let code = string(coding, "code");
    let display = string(coding, "display");
    push(param, system, code, display, out);
}

/// Adds one row per Identifier.type coding (one row when there is none), each carrying
/// the identifier's system and value.
fn push_identifier(param: &'static str, identifier: &Map<String, Value>, out: &mut Vec<TokenRow>) {
    let system = string(identifier, "system");
    let value = string(identifier, "value");
    if system.is_none() && value.is_none() {
        return;
    }
    let identifier_type = identifier.get("type").and_then(Value::as_object);
    let type_text = identifier_type.and_then(|t| string(t, "text"));
    let row = |type_system: Option<&str>, type_code: Option<&str>| TokenRow {
        param,
        system: system.map(str::to_owned),
        code: value.map(str::to_owned),
        text: type_text.map(normalize).filter(|t| !t.is_empty()),
        identifier_type_system: type_system.map(str::to_owned),
        identifier_type_code: type_code.map(str::to_owned),
    };

    let type_codings = array(identifier_type.and_then(|t| t.get("coding")));
    let before = out.len();
    for coding in type_codings.iter().filter_map(Value::as_object) {
        let type_code = string(coding, "code");
        if type_code.is_some() {
            out.push(row(string(coding, "system"), type_code));
        }
    }
    if out.len() == before {
        out.push(row(None, None));
    }
}

fn push_code(param: &'static str, code: &str, out: &mut Vec<TokenRow>) {
    push(param, None, Some(code), None, out);
}

/// Adds a row unless it would carry nothing to match.
fn push(
    param: &'static str,
    system: Option<&str>,
    code: Option<&str>,
    text: Option<&str>,
    out: &mut Vec<TokenRow>,
) {
    let system = system.filter(|s| !s.is_empty());
    let code = code.filter(|c| !c.is_empty());
    let text = text.map(normalize).filter(|t| !t.is_empty());
    if system.is_none() && code.is_none() && text.is_none() {
        return;
    }
    out.push(TokenRow {
        param,
        system: system.map(str::to_owned),
        code: code.map(str::to_owned),
        text,
        identifier_type_system: None,
        identifier_type_code: None,
    });
}

/// Returns a non-empty string member.
fn string<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}
