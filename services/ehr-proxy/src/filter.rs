//! Scope and patient-compartment filtering of upstream responses.
//!
//! The upstream responds to Hearth, not to the app, so every resource it returns passes the
//! test that a repository site applies in SQL. A resource is visible when it matches one
//! [`Alternative`] of the caller's visibility for its type. It matches when it lies in the
//! alternative's patient compartment (if any) and meets each of its SMART v2 scope query
//! restrictions. Matching uses the search index rows Hearth extracts for the repository.

use hearth_cdr::{Alternative, Visibility};
use hearth_fhir::Principal;
use hearth_fhir_core::index::{self, IndexRows};
use hearth_fhir_core::search_params::{self, ParamType};
use hearth_smart::scope::Interaction;
use serde_json::Value;

/// Returns whether `principal` may see `resource` through `interaction` (read, or search
/// for a search's matches). A resource without a `resourceType`, or of a type the
/// caller's scopes do not cover, is not visible.
pub fn visible(principal: &Principal, resource: &Value, interaction: Interaction) -> bool {
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return false;
    };
    if resource_type == "OperationOutcome" {
        return true;
    }
    match hearth_fhir::visibility(principal, resource_type, interaction) {
        Ok(visibility) => matches(&visibility, resource_type, resource),
        Err(_) => false,
    }
}

/// Returns whether `principal` may write `resource` through `interaction`. The resource
/// must be visible to the caller. For a caller confined to patients, no compartment
/// parameter may name another patient, because the write would then show in that
/// patient's compartment (an Observation `performer`, a Patient `link`).
pub fn writable(principal: &Principal, resource: &Value, interaction: Interaction) -> bool {
    if !visible(principal, resource, interaction) {
        return false;
    }
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return false;
    };
    let Ok(visibility) = hearth_fhir::visibility(principal, resource_type, interaction) else {
        return false;
    };
    let patients: Vec<&str> = visibility
        .alternatives
        .iter()
        .filter_map(|alternative| alternative.patient_compartment.as_deref())
        .collect();
    if visibility.is_everything() || patients.is_empty() {
        return true;
    }
    // A conditional reference is resolved after this check, against every resource.
    if hearth_fhir_core::reference::has_conditional_reference(resource) {
        return false;
    }
    let params = search_params::compartment_params(resource_type);
    let rows = index::extract(resource_type, resource);
    !rows.references.iter().any(|row| {
        params.iter().any(|p| p == row.param)
            && row.target_type.as_deref() == Some("Patient")
            && row
                .target_id
                .as_deref()
                .is_some_and(|id| !patients.contains(&id))
    })
}

/// Returns whether `resource` of `resource_type` matches any alternative of `visibility`.
pub fn matches(visibility: &Visibility, resource_type: &str, resource: &Value) -> bool {
    if visibility.is_everything() {
        return true;
    }
    let rows = index::extract(resource_type, resource);
    visibility
        .alternatives
        .iter()
        .any(|alternative| matches_alternative(alternative, resource_type, resource, &rows))
}

fn matches_alternative(
    alternative: &Alternative,
    resource_type: &str,
    resource: &Value,
    rows: &IndexRows,
) -> bool {
    if let Some(patient) = &alternative.patient_compartment
        && !in_compartment(resource_type, resource, rows, patient)
    {
        return false;
    }
    alternative
        .filters
        .iter()
        .all(|(name, value)| matches_filter(resource_type, rows, name, value))
}

/// Returns whether the resource belongs to the compartment of Patient `patient`: the Patient
/// itself, or a resource whose compartment parameters reference it.
pub fn in_compartment(
    resource_type: &str,
    resource: &Value,
    rows: &IndexRows,
    patient: &str,
) -> bool {
    if resource_type == "Patient" && resource["id"].as_str() == Some(patient) {
        return true;
    }
    let params = search_params::compartment_params(resource_type);
    // NOTE: an absolute reference to `Patient/{patient}` of any server counts here, because
    // the upstream's own absolute URLs must count and this check does not know its base.
    // Repository sites count only their own bases.
    rows.references.iter().any(|row| {
        params.iter().any(|p| p == row.param)
            && row.target_type.as_deref() == Some("Patient")
            && row.target_id.as_deref() == Some(patient)
    })
}

/// Matches one scope query restriction, such as `category=laboratory`. Values separated
/// by commas are alternatives. Token, reference, string and uri parameters are matched.
/// A restriction on any other parameter type or with a modifier matches nothing, so an
/// unsupported restriction hides resources rather than showing too many.
fn matches_filter(resource_type: &str, rows: &IndexRows, name: &str, value: &str) -> bool {
    if name.contains(':') {
        return false;
    }
    let Some(param) = search_params::get(resource_type, name) else {
        return false;
    };
    value.split(',').any(|one| match param.param_type {
        ParamType::Token => matches_token(rows, name, one),
        ParamType::Reference => rows.references.iter().any(|row| {
            row.param == name && {
                let typed = format!(
                    "{}/{}",
                    row.target_type.as_deref().unwrap_or_default(),
                    row.target_id.as_deref().unwrap_or_default()
                );
                typed == one
                    || row.target_id.as_deref() == Some(one)
                    || row.url.as_deref() == Some(one)
            }
        }),
        ParamType::String => {
            let expected = index::normalize(one);
            rows.strings
                .iter()
                .any(|row| row.param == name && row.value.starts_with(&expected))
        }
        ParamType::Uri => rows
            .uris
            .iter()
            .any(|row| row.param == name && row.value == one),
        _ => false,
    })
}

/// `code`, `system|code`, `|code` (no system) or `system|` (any code in the system).
fn matches_token(rows: &IndexRows, name: &str, value: &str) -> bool {
    let (system, code) = match value.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, value),
    };
    rows.tokens
        .iter()
        .filter(|row| row.param == name)
        .any(|row| {
            let system_ok = match system {
                None => true,
                Some("") => row.system.is_none(),
                Some(system) => row.system.as_deref() == Some(system),
            };
            let code_ok = code.is_empty() || row.code.as_deref() == Some(code);
            system_ok && code_ok
        })
}

/// Returns the search parameter that confines a search of `resource_type` to the caller's
/// patient compartment, when every scope that allows the search confines it to the same
/// patient: `_id` for Patient, else `patient` or the type's first compartment parameter.
/// Sending it upstream keeps result pages full and totals right; the response is filtered
/// anyway.
pub fn compartment_param(principal: &Principal, resource_type: &str) -> Option<(String, String)> {
    let visibility = hearth_fhir::visibility(principal, resource_type, Interaction::Search).ok()?;
    let mut patients = visibility
        .alternatives
        .iter()
        .map(|alternative| alternative.patient_compartment.as_deref());
    let patient = patients.next()??;
    if !patients.all(|other| other == Some(patient)) {
        return None;
    }
    if resource_type == "Patient" {
        return Some(("_id".to_string(), patient.to_string()));
    }
    let name = if search_params::get(resource_type, "patient").is_some() {
        "patient"
    } else {
        search_params::compartment_params(resource_type)
            .first()?
            .as_str()
    };
    Some((name.to_string(), format!("Patient/{patient}")))
}

/// Removes the entries of a Bundle the caller may not see: matches need search access,
/// other entries (includes, outcomes, history) read access. An entry without a resource,
/// such as a deletion in a history Bundle, can belong to anyone's record. It stays only
/// when `bare_entries_visible` (the caller may read everything), or when the caller may
/// read every resource of the type its URL names. Returns how many were removed;
/// when any were, `total` is removed too, because it counted them.
pub fn filter_bundle(
    principal: &Principal,
    bundle: &mut Value,
    bare_entries_visible: bool,
) -> usize {
    // Every entry of a searchset carries a resource.
    let searchset = bundle["type"] == "searchset";
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return 0;
    };
    let before = entries.len();
    entries.retain(|entry| {
        let interaction = if entry.pointer("/search/mode").and_then(Value::as_str) == Some("match")
        {
            Interaction::Search
        } else {
            Interaction::Read
        };
        match entry.get("resource") {
            Some(resource) => visible(principal, resource, interaction),
            None if searchset || !entry.is_object() => false,
            None => bare_entries_visible || type_wholly_visible(principal, entry),
        }
    });
    let removed = before - entries.len();
    if removed > 0
        && let Some(object) = bundle.as_object_mut()
    {
        object.remove("total");
    }
    removed
}

/// Returns whether the caller may read every resource of the type that an entry's
/// `request.url` or `fullUrl` names, such as `Condition/1` or `[base]/Condition/1`.
fn type_wholly_visible(principal: &Principal, entry: &Value) -> bool {
    let url = entry
        .pointer("/request/url")
        .or_else(|| entry.get("fullUrl"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let mut segments = path.rsplit('/');
    let resource_type = match (segments.next(), segments.next()) {
        (Some(last), _) if hearth_fhir_core::resource_types::lookup(last).is_some() => last,
        (_, Some(before_id)) => before_id,
        _ => return false,
    };
    hearth_fhir_core::resource_types::lookup(resource_type).is_some()
        && hearth_fhir::visibility(principal, resource_type, Interaction::Read)
            .is_ok_and(|visibility| visibility.is_everything())
}

#[cfg(test)]
mod tests {
    use hearth_smart::scope;
    use serde_json::json;

    use super::*;

    fn principal(scopes: &str, patient: Option<&str>) -> Principal {
        Principal {
            client_id: "app".to_string(),
            token_id: "t".to_string(),
            grant_id: None,
            scopes: scope::parse(scopes),
            patient: patient.map(str::to_string),
            fhir_user: None,
            user_type: None,
        }
    }

    fn observation(patient: &str, category: &str) -> Value {
        json!({
            "resourceType": "Observation",
            "id": format!("obs-{patient}-{category}"),
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": category,
            }]}],
            "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{patient}")},
        })
    }

    #[test]
    fn patient_scope_limits_to_compartment() {
        let caller = principal("patient/*.rs", Some("p1"));
        assert!(visible(
            &caller,
            &observation("p1", "vital-signs"),
            Interaction::Read
        ));
        assert!(!visible(
            &caller,
            &observation("p2", "vital-signs"),
            Interaction::Read
        ));
        assert!(visible(
            &caller,
            &json!({"resourceType": "Patient", "id": "p1"}),
            Interaction::Read
        ));
        assert!(!visible(
            &caller,
            &json!({"resourceType": "Patient", "id": "p2"}),
            Interaction::Read
        ));
    }

    #[test]
    fn reference_data_stays_visible() {
        let caller = principal("patient/*.rs", Some("p1"));
        let practitioner = json!({"resourceType": "Practitioner", "id": "d1"});
        assert!(visible(&caller, &practitioner, Interaction::Read));
    }

    #[test]
    fn type_outside_scopes_is_hidden() {
        let caller = principal("patient/Observation.rs", Some("p1"));
        let condition = json!({
            "resourceType": "Condition", "id": "c1",
            "subject": {"reference": "Patient/p1"},
        });
        assert!(!visible(&caller, &condition, Interaction::Read));
        assert!(visible(
            &caller,
            &observation("p1", "laboratory"),
            Interaction::Read
        ));
    }

    #[test]
    fn scope_query_restricts_category() {
        let caller = principal(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            Some("p1"),
        );
        assert!(visible(
            &caller,
            &observation("p1", "laboratory"),
            Interaction::Read
        ));
        assert!(!visible(
            &caller,
            &observation("p1", "vital-signs"),
            Interaction::Read
        ));
    }

    #[test]
    fn system_scope_sees_everything() {
        let caller = principal("system/*.rs", None);
        assert!(visible(
            &caller,
            &observation("p2", "laboratory"),
            Interaction::Read
        ));
    }

    #[test]
    fn patient_scope_search_gets_compartment_param() {
        let caller = principal("patient/*.rs", Some("p1"));
        assert_eq!(
            compartment_param(&caller, "Observation"),
            Some(("patient".to_string(), "Patient/p1".to_string()))
        );
        assert_eq!(
            compartment_param(&caller, "Patient"),
            Some(("_id".to_string(), "p1".to_string()))
        );
        assert_eq!(compartment_param(&caller, "Practitioner"), None);
        let system = principal("system/*.rs", None);
        assert_eq!(compartment_param(&system, "Observation"), None);
    }

    #[test]
    fn bundle_loses_hidden_entries_and_total() {
        let caller = principal("patient/*.rs", Some("p1"));
        let mut bundle = json!({
            "resourceType": "Bundle", "type": "searchset", "total": 3,
            "entry": [
                {"resource": observation("p1", "a"), "search": {"mode": "match"}},
                {"resource": observation("p2", "a"), "search": {"mode": "match"}},
                {"resource": {"resourceType": "Patient", "id": "p2"}, "search": {"mode": "include"}},
            ],
        });
        assert_eq!(filter_bundle(&caller, &mut bundle, false), 2);
        assert_eq!(bundle["entry"].as_array().unwrap().len(), 1);
        assert!(bundle.get("total").is_none());
    }

    #[test]
    fn deletions_stay_only_for_whole_type_readers() {
        let history = json!({
            "resourceType": "Bundle", "type": "history",
            "entry": [
                {"fullUrl": "http://ehr/fhir/Condition/c1", "request": {"method": "DELETE", "url": "Condition/c1"}},
                {"request": {"method": "DELETE", "url": "Practitioner/d1"}},
                {"foo": 1},
                "x",
            ],
        });
        let patient = principal("patient/*.rs user/Practitioner.rs", Some("p1"));
        let mut seen = history.clone();
        assert_eq!(filter_bundle(&patient, &mut seen, false), 3);
        assert_eq!(seen["entry"][0]["request"]["url"], "Practitioner/d1");

        let system = principal("system/Condition.rs", None);
        let mut seen = history.clone();
        assert_eq!(filter_bundle(&system, &mut seen, false), 3);
        assert_eq!(seen["entry"][0]["request"]["url"], "Condition/c1");

        let mut seen = history;
        assert_eq!(
            filter_bundle(&system, &mut seen, true),
            1,
            "only the non-object entry goes"
        );
    }
}
