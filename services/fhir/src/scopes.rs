//! Turning a caller's scopes into what it may see of one resource type.
//!
//! Each scope that allows the interaction gives one alternative; a resource is visible when
//! it matches any alternative. An alternative may confine results to a patient's
//! compartment (patient scopes, and user scopes of a Patient user) and may add the search
//! restrictions of a SMART v2 scope query, applied exactly as the same search would.

use axum::http::StatusCode;
use hearth_cdr::{Alternative, Visibility};
use hearth_fhir_core::search_params;
use hearth_smart::scope::{Access, Context, Interaction};

use crate::access::Principal;
use crate::error::{FhirError, FhirResult};

/// Returns what `principal` may see of `resource_type` for `interaction`, or 403 when no
/// scope allows it.
pub fn visibility(
    principal: &Principal,
    resource_type: &str,
    interaction: Interaction,
) -> FhirResult<Visibility> {
    let contexts: &[Context] = if principal.patient.is_some() {
        &[Context::Patient, Context::User, Context::System]
    } else {
        &[Context::User, Context::System]
    };
    let access = principal
        .scopes
        .access(contexts, resource_type, interaction);
    let grants = match &access {
        Access::Denied => {
            return Err(FhirError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the access token's scopes do not allow {} of {resource_type}",
                    interaction_name(interaction)
                ),
            ));
        }
        Access::Allowed { filters } => filters,
    };

    let patient_user = principal
        .fhir_user
        .as_deref()
        .and_then(|user| user.strip_prefix("Patient/"))
        .map(str::to_string);
    let writes = matches!(
        interaction,
        Interaction::Create | Interaction::Update | Interaction::Delete
    );
    let alternatives: Vec<Alternative> = grants
        .iter()
        .filter_map(|grant| {
            let compartment = match grant.context {
                Context::Patient => principal.patient.clone(),
                Context::User => patient_user.clone(),
                Context::System => None,
            };
            // A scope confined to one patient reads reference data outside the Patient
            // compartment, but writing it would change what every patient reads.
            if compartment.is_some() && !has_compartment(resource_type) && writes {
                return None;
            }
            Some(Alternative {
                patient_compartment: compartment.filter(|_| has_compartment(resource_type)),
                filters: grant.query.clone(),
            })
        })
        .collect();
    if alternatives.is_empty() {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{resource_type} is outside the Patient compartment, so scopes confined to one patient do not allow {} of it",
                interaction_name(interaction)
            ),
        ));
    }
    Ok(Visibility { alternatives })
}

/// Whether resources of this type can belong to a patient's compartment. Types outside the
/// Patient compartment definition (Practitioner, Organization, Medication and the like)
/// stay visible under patient scopes, as reference data.
fn has_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || !search_params::compartment_params(resource_type).is_empty()
}

fn interaction_name(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}
