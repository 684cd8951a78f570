//! Rows of reference and uri parameters.

use serde_json::{Map, Value};

use super::{ReferenceRow, UriRow};
use crate::fhirpath::Node;
use crate::fhirpath::resolve::{Target, parse_target, strip_version};
use crate::resource_types;

/// Adds a row for a Reference, a canonical or uri string, or a resource placed inline
/// (`Bundle.entry[0].resource`). Contained (`#id`) and conditional (`Type?query`)
/// literals are not indexed; a Reference that has only those and no identifier adds
/// nothing.
pub(super) fn add_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<ReferenceRow>) {
    let row = match node.value {
        Value::String(canonical) => canonical_row(param, canonical),
        Value::Object(map) if map.contains_key("resourceType") => inline_resource_row(param, map),
        Value::Object(map) => reference_row(param, map),
        _ => None,
    };
    out.extend(row);
}

/// Adds a row for a uri, url or canonical string, stored as written.
pub(super) fn add_uri_rows(param: &'static str, node: &Node<'_>, out: &mut Vec<UriRow>) {
    if let Value::String(value) = node.value
        && !value.is_empty()
    {
        out.push(UriRow {
            param,
            value: value.clone(),
        });
    }
}

/// Builds the row of a canonical (`url|version`) or uri. The type and id are filled in when
/// the URL ends in `Type/id`, as canonical URLs of conformance resources do.
fn canonical_row(param: &'static str, canonical: &str) -> Option<ReferenceRow> {
    if canonical.is_empty() || canonical.starts_with('#') {
        return None;
    }
    let url = strip_version(canonical);
    let version = canonical.split_once('|').map(|(_, version)| version);
    let target = parse_target(url);
    Some(ReferenceRow {
        param,
        target_type: target.map(|t| t.resource_type.to_owned()),
        target_id: target.map(|t| t.id.to_owned()),
        url: Some(url.to_owned()),
        version: version.filter(|v| !v.is_empty()).map(str::to_owned),
        identifier_system: None,
        identifier_value: None,
    })
}

fn inline_resource_row(param: &'static str, resource: &Map<String, Value>) -> Option<ReferenceRow> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(resource_types::lookup)?;
    let id = resource.get("id").and_then(Value::as_str)?;
    Some(ReferenceRow {
        param,
        target_type: Some(resource_type.to_owned()),
        target_id: Some(id.to_owned()),
        url: None,
        version: None,
        identifier_system: None,
        identifier_value: None,
    })
}

fn reference_row(param: &'static str, reference: &Map<String, Value>) -> Option<ReferenceRow> {
    let mut row = ReferenceRow {
        param,
        target_type: None,
        target_id: None,
        url: None,
        version: None,
        identifier_system: None,
        identifier_value: None,
    };

    if let Some(literal) = reference.get("reference").and_then(Value::as_str) {
        add_literal(&mut row, literal);
    }
    if row.target_type.is_none() {
        row.target_type = reference
            .get("type")
            .and_then(Value::as_str)
            .and_then(resource_types::lookup)
            .map(str::to_owned);
    }
    if let Some(Value::Object(identifier)) = reference.get("identifier") {
        row.identifier_system = non_empty(identifier.get("system"));
        row.identifier_value = non_empty(identifier.get("value"));
    }

    // A row with only a type would match `:missing` and nothing else, so a Reference with
    // nothing but a contained literal, a display or a type adds none.
    let has_target = row.target_id.is_some() || row.url.is_some();
    let has_identifier = row.identifier_system.is_some() || row.identifier_value.is_some();
    (has_target || has_identifier).then_some(row)
}

/// Fills the target from a literal reference: `Type/id[/_history/v]`, an absolute URL
/// (kept in `url` without any `_history` part, and split when it ends in `Type/id`), or
/// another URI such as `urn:uuid:...` (kept in `url`).
fn add_literal(row: &mut ReferenceRow, literal: &str) {
    if literal.is_empty() || literal.starts_with('#') || is_conditional(literal) {
        return;
    }
    let target: Option<Target<'_>> = parse_target(literal);
    if let Some(target) = target {
        row.target_type = Some(target.resource_type.to_owned());
        row.target_id = Some(target.id.to_owned());
        row.version = target.version.map(str::to_owned);
    }
    // Types and ids never contain `:`, so a literal with one is a URL or URN.
    if literal.contains(':') {
        let url = match target.and_then(|t| t.version) {
            Some(_) => literal
                .rsplit_once("/_history/")
                .map_or(literal, |(url, _)| url),
            None => literal,
        };
        row.url = Some(url.to_owned());
    }
}

/// Returns whether `literal` is a conditional reference, `Type?criteria`, which a
/// transaction resolves before the resource is stored.
fn is_conditional(literal: &str) -> bool {
    literal
        .split_once('?')
        .is_some_and(|(resource_type, _)| resource_types::is_resource_type(resource_type))
}

fn non_empty(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
