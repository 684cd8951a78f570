//! Cohorts: the patients of a Group, from its member list or from search criteria.
//!
//! A Group whose members come from criteria carries one or more `member-filter` modifier
//! extensions of the Bulk Data IG (v3), each a FHIR search in `valueExpression`:
//!
//! ```json
//! "modifierExtension": [{
//!   "url": "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter",
//!   "valueExpression": {"language": "application/x-fhir-query",
//!                       "expression": "Condition?code=http://snomed.info/sct|44054006"}
//! }]
//! ```
//!
//! A patient is a member when every filter matches: a `Patient?...` filter matches the
//! patient itself, a filter on another type matches when a resource it finds belongs to
//! the patient's compartment. Such a Group's `member` list is what the last refresh
//! found; exports evaluate the filters again. A Group without filters has exactly its
//! active `member` entries that reference a Patient.

use std::collections::BTreeSet;

use hearth_cdr::search::{ParseOptions, SearchAccess, SearchQuery, ValueContext};
use hearth_cdr::{Repository, Visibility};
use hearth_fhir_core::reference::{LocalBases, ReferenceKind, classify};
use hearth_fhir_core::{resource_types, search_params};
use serde_json::{Value, json};

use crate::request::query_pairs;

pub const MEMBER_FILTER_URL: &str =
    "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter";

/// Matches read per query while evaluating a filter.
const PAGE: usize = 1000;

/// Why a Group's members cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    /// The Group or one of its filters is malformed or unsupported: 400.
    #[error("{0}")]
    Invalid(String),
    /// The caller's scopes do not allow reading what a filter searches: 403.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Repository(#[from] hearth_cdr::Error),
}

/// Returns the member-filter queries of a Group.
pub fn member_filters(group: &Value) -> Result<Vec<String>, CohortError> {
    let mut filters = Vec::new();
    for extension in group
        .get("modifierExtension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if extension.get("url").and_then(Value::as_str) != Some(MEMBER_FILTER_URL) {
            continue;
        }
        let expression = extension.get("valueExpression");
        let language = expression
            .and_then(|e| e.get("language"))
            .and_then(Value::as_str);
        if language != Some("application/x-fhir-query") {
            return Err(CohortError::Invalid(
                "a member-filter valueExpression must have the language application/x-fhir-query"
                    .to_string(),
            ));
        }
        let query = expression
            .and_then(|e| e.get("expression"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CohortError::Invalid(
                    "a member-filter valueExpression has no expression".to_string(),
                )
            })?;
        filters.push(query.to_string());
    }
    Ok(filters)
}

/// Returns the ids of a Group's patients, sorted. Filters are evaluated with what
/// `visibility` lets the caller see of each type. A listed member is a patient of this
/// server when its reference is relative or lies under one of `bases`.
pub fn members(
    repository: &Repository,
    group: &Value,
    visibility: &dyn Fn(&str) -> Option<Visibility>,
    bases: &LocalBases,
) -> Result<Vec<String>, CohortError> {
    if group
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "person")
    {
        return Err(CohortError::Invalid(
            "only Groups of type person can be exported".to_string(),
        ));
    }
    let filters = member_filters(group)?;
    if filters.is_empty() {
        return Ok(listed_members(group, bases));
    }
    let mut result: Option<BTreeSet<String>> = None;
    for filter in &filters {
        let matched = patients_matching(repository, filter, visibility, bases)?;
        result = Some(match result {
            None => matched,
            Some(previous) => previous.intersection(&matched).cloned().collect(),
        });
    }
    Ok(result.unwrap_or_default().into_iter().collect())
}

/// Returns the ids of the active `member` entries that reference a Patient of this server.
fn listed_members(group: &Value, bases: &LocalBases) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for member in group
        .get("member")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if member.get("inactive").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let reference = member
            .pointer("/entity/reference")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(id) = local_patient(reference, bases) {
            ids.insert(id.to_string());
        }
    }
    ids.into_iter().collect()
}

/// Returns the id of the local Patient that `reference` names: `Patient/id`, optionally with
/// `/_history/n`, alone or after one of `bases`.
fn local_patient<'a>(reference: &'a str, bases: &LocalBases) -> Option<&'a str> {
    let relative = bases.strip(reference).unwrap_or(reference);
    match classify(relative) {
        ReferenceKind::Relative {
            resource_type: "Patient",
            id,
        } => Some(id),
        _ => None,
    }
}

/// Ids of the patients one filter matches.
fn patients_matching(
    repository: &Repository,
    filter: &str,
    visibility: &dyn Fn(&str) -> Option<Visibility>,
    bases: &LocalBases,
) -> Result<BTreeSet<String>, CohortError> {
    let (resource_type, query) = filter.split_once('?').unwrap_or((filter, ""));
    if !resource_types::is_resource_type(resource_type) {
        return Err(CohortError::Invalid(format!(
            "the member filter '{filter}' does not start with a resource type and ?"
        )));
    }
    if resource_type != "Patient" && search_params::compartment_params(resource_type).is_empty() {
        return Err(CohortError::Invalid(format!(
            "the member filter '{filter}' searches {resource_type}, which is outside the Patient compartment"
        )));
    }
    if visibility(resource_type).is_none() {
        return Err(CohortError::Forbidden(format!(
            "the access token's scopes do not allow searching {resource_type}, which the member filter '{filter}' needs"
        )));
    }
    let mut search = parse_filter(filter, resource_type, query)?;
    let access = SearchAccess {
        search: visibility,
        read: visibility,
        compartment: None,
    };
    let compartment: Vec<_> = search_params::compartment_params(resource_type)
        .iter()
        .filter_map(|code| search_params::get(resource_type, code))
        .collect();

    let mut patients = BTreeSet::new();
    loop {
        let page = repository.search_page(&search, &access, PAGE)?;
        for stored in &page.matches {
            if resource_type == "Patient" {
                patients.insert(stored.id.clone());
                continue;
            }
            let Some(resource) = stored
                .json
                .as_deref()
                .and_then(|json| serde_json::from_str::<Value>(json).ok())
            else {
                continue;
            };
            for param in &compartment {
                for node in param.path.evaluate(&resource) {
                    let reference = node.value.get("reference").and_then(Value::as_str);
                    if let Some(id) = reference.and_then(|r| local_patient(r, bases)) {
                        patients.insert(id.to_string());
                    }
                }
            }
        }
        match page.next {
            Some(next) => search.cursor = Some(next),
            None => break,
        }
    }
    Ok(patients)
}

/// Parses a member filter with the search engine under strict handling: an unknown
/// parameter, an unsupported modifier, a malformed value or a parameter that only shapes
/// results (such as `_sort` or `_include`) makes the cohort invalid.
fn parse_filter(
    filter: &str,
    resource_type: &str,
    query: &str,
) -> Result<SearchQuery, CohortError> {
    let invalid =
        |reason: String| CohortError::Invalid(format!("the member filter '{filter}': {reason}"));
    let options = ParseOptions {
        strict: true,
        context: ValueContext {
            base_url: "",
            now: hearth_cdr::search::now_micros(),
        },
    };
    let parsed = hearth_cdr::search::parse(resource_type, &query_pairs(query), &options)
        .map_err(|error| invalid(error.to_string()))?;
    if crate::request::shapes_results(&parsed) {
        return Err(invalid(
            "parameters that shape search results, such as _sort, _include or _count, cannot select members".to_string(),
        ));
    }
    if parsed.filters.is_empty() {
        return Err(invalid("it has no search parameters".to_string()));
    }
    Ok(parsed)
}

/// The Group with its `member` list and `quantity` set to `members`, as `$refresh` stores it.
pub fn with_members(group: &Value, members: &[String]) -> Value {
    let mut refreshed = group.clone();
    let entries: Vec<Value> = members
        .iter()
        .map(|id| json!({"entity": {"reference": format!("Patient/{id}")}}))
        .collect();
    refreshed["quantity"] = json!(members.len());
    if entries.is_empty() {
        if let Some(object) = refreshed.as_object_mut() {
            object.remove("member");
        }
    } else {
        refreshed["member"] = Value::Array(entries);
    }
    if let Some(meta) = refreshed.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    refreshed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_members_skip_inactive_and_non_patients() {
        let group = json!({"resourceType": "Group", "type": "person", "actual": true, "member": [
            {"entity": {"reference": "Patient/b"}},
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Patient/c"}, "inactive": true},
            {"entity": {"reference": "Practitioner/x"}}
        ]});
        assert_eq!(listed_members(&group, &LocalBases::none()), ["a", "b"]);
    }

    #[test]
    fn listed_members_of_other_servers_are_left_out() {
        let group = json!({"resourceType": "Group", "type": "person", "actual": true, "member": [
            {"entity": {"reference": "http://other.example/fhir/Patient/a"}},
            {"entity": {"reference": "http://hearth.example/fhir/Patient/b"}},
            {"entity": {"reference": "http://hearth.example/sites/north/fhir/Patient/c/_history/1"}},
            {"entity": {"reference": "http://hearth.example/fhir/Practitioner/d"}},
            {"entity": {"reference": "Patient/e"}}
        ]});
        let bases = LocalBases::new("http://hearth.example");
        assert_eq!(listed_members(&group, &bases), ["b", "c", "e"]);
    }

    #[test]
    fn member_filters_need_fhir_query_language() {
        let group = json!({"resourceType": "Group", "modifierExtension": [{
            "url": MEMBER_FILTER_URL,
            "valueExpression": {"language": "text/cql", "expression": "x"}
        }]});
        assert!(member_filters(&group).is_err());
        let group = json!({"resourceType": "Group", "modifierExtension": [{
            "url": MEMBER_FILTER_URL,
            "valueExpression": {"language": "application/x-fhir-query", "expression": "Condition?code=1"}
        }]});
        assert_eq!(member_filters(&group).unwrap(), ["Condition?code=1"]);
    }

    #[test]
    fn refresh_sets_members_and_quantity() {
        let group = json!({"resourceType": "Group", "id": "g", "meta": {"versionId": "3"}});
        let refreshed = with_members(&group, &["a".to_string()]);
        assert_eq!(refreshed["quantity"], 1);
        assert_eq!(refreshed["member"][0]["entity"]["reference"], "Patient/a");
        assert!(refreshed["meta"].get("versionId").is_none());
    }
}
