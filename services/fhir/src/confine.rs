//! Writes of callers confined to a patient's compartment, where the request alone does not
//! show the target. The criteria of a conditional update or delete pick the target, a
//! conditional create returns its match, and a patch's result is only known once applied.
//!
//! For such callers the handler resolves the target itself, checks it, and pins the write
//! to that target's id and version. The repository then applies the write only while the
//! target is still that version, so a concurrent change makes it fail with 412 instead of
//! reaching a resource that was never checked.

use axum::http::StatusCode;
use hearth_cdr::Visibility;
use hearth_fhir_core::bundle::{Action, Entry};
use hearth_smart::scope::Interaction;
use serde_json::Value;

use crate::FhirState;
use crate::access::Principal;
use crate::error::{FhirError, FhirResult};
use crate::scopes::visibility;
use crate::write::{confined_patient, in_compartment};

/// Checks and pins a conditional write or a patch of a confined caller. A caller that may
/// write every resource of the type passes unchanged. Run it after
/// [`crate::write::check_write`].
pub fn confine(state: &FhirState, principal: &Principal, entry: &mut Entry) -> FhirResult<()> {
    let interaction = match entry.action {
        Action::Create => Interaction::Create,
        Action::Update | Action::Patch => Interaction::Update,
        Action::Delete => Interaction::Delete,
        Action::Read => return Ok(()),
    };
    let visibility = visibility(principal, &entry.resource_type, interaction)?;
    if visibility.is_everything() {
        return Ok(());
    }
    match entry.action {
        Action::Create => match entry.if_none_exist.clone() {
            Some(criteria) => check_matches(state, entry, &criteria, &visibility).map(|_| ()),
            None => Ok(()),
        },
        Action::Update | Action::Delete => pin_conditional(state, entry, &visibility),
        Action::Patch => check_patch(state, entry, &visibility),
        Action::Read => Ok(()),
    }
}

fn forbidden(message: String) -> FhirError {
    FhirError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Returns the matches of `criteria`, or 403 when one of them is outside what the caller
/// may see, so that neither a write nor a conditional create's response reaches it.
fn check_matches(
    state: &FhirState,
    entry: &Entry,
    criteria: &str,
    visibility: &Visibility,
) -> FhirResult<Vec<(String, i64)>> {
    let resource_type = &entry.resource_type;
    let matches = state
        .repository
        .criteria_matches(resource_type, criteria, 2)?;
    for (id, _) in &matches {
        if !state.repository.is_visible(resource_type, id, visibility)? {
            return Err(forbidden(format!(
                "the criteria match a {resource_type} outside what the access token may see"
            )));
        }
    }
    Ok(matches)
}

/// Replaces the criteria of a conditional update or delete with the id and version of the
/// one resource they match now.
// NOTE: when the criteria match nothing, an update pins the id it creates, but a delete
// keeps its criteria, so a matching resource created in the meantime could still be
// deleted by a confined caller.
fn pin_conditional(
    state: &FhirState,
    entry: &mut Entry,
    visibility: &Visibility,
) -> FhirResult<()> {
    let Some(criteria) = entry.criteria.clone() else {
        return Ok(());
    };
    let matches = check_matches(state, entry, &criteria, visibility)?;
    match (matches.as_slice(), entry.action) {
        ([(id, version)], _) => {
            entry.id = Some(id.clone());
            entry.criteria = None;
            if entry.if_match.is_none() {
                entry.if_match = Some(version.to_string());
            }
        }
        ([], Action::Update) => {
            // The update creates a resource, with the body's id when it has one. That id
            // must not name a resource of another patient.
            if let Some(id) = entry.id.clone() {
                let exists = state
                    .repository
                    .read(&entry.resource_type, &id)?
                    .is_some_and(|stored| !stored.is_deleted());
                if exists
                    && !state
                        .repository
                        .is_visible(&entry.resource_type, &id, visibility)?
                {
                    return Err(forbidden(format!(
                        "{}/{id} is outside the compartment of the patient in context",
                        entry.resource_type
                    )));
                }
            }
            entry.criteria = None;
        }
        // The repository rejects several matches with 412, and a delete of nothing is 204.
        _ => {}
    }
    Ok(())
}

/// Applies a patch to the stored resource and rejects it when the result leaves the
/// compartment of the patient in context. Otherwise pins the patch to the version checked.
fn check_patch(state: &FhirState, entry: &mut Entry, visibility: &Visibility) -> FhirResult<()> {
    let Some(id) = entry.id.clone() else {
        return Ok(());
    };
    let Some(patient) = confined_patient(visibility) else {
        return Ok(());
    };
    let stored = state.repository.read(&entry.resource_type, &id)?;
    let Some((json, version)) = stored
        .filter(|stored| !stored.is_deleted())
        .and_then(|stored| stored.json.map(|json| (json, stored.version)))
    else {
        // The repository returns 404 or 410 for a patch of nothing.
        return Ok(());
    };
    let Ok(mut resource) = serde_json::from_str::<Value>(&json) else {
        return Ok(());
    };
    let document = entry.resource.clone().unwrap_or(Value::Null);
    let Ok(patch) = serde_json::from_value::<json_patch::Patch>(document) else {
        // The repository rejects a malformed patch with its own message.
        return Ok(());
    };
    if json_patch::patch(&mut resource, &patch).is_err() {
        return Ok(());
    }
    if hearth_fhir_core::reference::has_conditional_reference(&resource)
        || !in_compartment(&state.settings, &entry.resource_type, &resource, &patient)
    {
        return Err(forbidden(format!(
            "the patch moves {}/{id} out of the compartment of the patient in context",
            entry.resource_type
        )));
    }
    if entry.if_match.is_none() {
        entry.if_match = Some(version.to_string());
    }
    Ok(())
}
