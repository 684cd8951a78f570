//! `$load`: storing Bundles, bare resources and NDJSON with import semantics.
//!
//! Resources keep the ids they carry, so files loaded one after another can point at each
//! other through `urn:uuid:` references whose UUID is the target's id. The whole body is
//! one event on the log and is applied all or nothing. Every check that needs no decision
//! in log order happens before the append, so a rejected body leaves nothing in the log.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use hearth_fhir_core::bundle::{self, Entry, EntryError, ErrorKind, Semantics};
use hearth_fhir_core::reference::{ReferenceKind, classify};
use hearth_schemas::{ResourceTransaction, TransactionKind};
use serde_json::json;

use crate::access::Principal;
use crate::error::{FhirError, FhirResult};
use crate::media::FhirJson;
use crate::write::submit;
use crate::{FhirState, SiteContext};
use hearth_smart::scope::{Context, Interaction};

pub async fn load(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    let ndjson = is_ndjson(&headers)?;
    let entries = tokio::task::spawn_blocking(move || {
        if ndjson {
            bundle::parse_ndjson(&body, Semantics::Load)
        } else {
            bundle::parse_document(&body, Semantics::Load)
        }
    })
    .await
    .map_err(FhirError::internal)?
    .map_err(|e| entry_error(&e))?;

    if entries.is_empty() {
        return Err(FhirError::bad_request(
            "the body holds no resources to store",
        ));
    }
    check_write_access(&principal, &entries)?;
    check_identities(&entries)?;
    check_placeholders(&state, &entries)?;
    check_conditional_references(&state, &entries)?;
    let event = build_event(&site, &principal, entries)?;
    let (position, outcomes) = submit(&state, &event, state.settings.load_timeout).await?;

    let mut stored: BTreeMap<&str, u64> = BTreeMap::new();
    for outcome in &outcomes {
        *stored.entry(outcome.resource_type.as_str()).or_default() += 1;
    }
    let parts: Vec<_> = stored
        .iter()
        .map(|(name, count)| json!({"name": name, "valueInteger": count}))
        .collect();
    let body = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "stored", "part": parts},
            {"name": "transaction", "valueString": event.event_id},
            {"name": "offset", "valueInteger": position.offset},
        ]
    });
    Ok(FhirJson::ok(body.to_string()))
}

fn is_ndjson(headers: &HeaderMap) -> FhirResult<bool> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/fhir+json");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/fhir+ndjson" | "application/ndjson" | "application/x-ndjson" => Ok(true),
        "application/fhir+json" | "application/json" | "" => Ok(false),
        other => Err(FhirError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("$load takes application/fhir+json or application/fhir+ndjson, not {other}"),
        )),
    }
}

/// `$load` writes whatever the files hold, so it needs create and update access without
/// compartment or query restrictions to every type it stores (system or user scopes).
fn check_write_access(principal: &Principal, entries: &[Entry]) -> FhirResult<()> {
    let mut checked = std::collections::HashSet::new();
    for entry in entries {
        if !checked.insert(entry.resource_type.as_str()) {
            continue;
        }
        for interaction in [Interaction::Create, Interaction::Update] {
            let access = principal.scopes.access(
                &[Context::User, Context::System],
                &entry.resource_type,
                interaction,
            );
            if !access.is_unrestricted() {
                return Err(FhirError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "$load needs unrestricted create and update access to {}, such as the scope system/*.cu",
                        entry.resource_type
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The FHIR error for a body that failed a check, naming the entry or line.
pub fn entry_error(error: &EntryError) -> FhirError {
    let (status, code) = match error.kind {
        ErrorKind::Syntax => (StatusCode::BAD_REQUEST, "structure"),
        ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
        ErrorKind::Rule => (StatusCode::UNPROCESSABLE_ENTITY, "processing"),
        ErrorKind::UnknownType => (StatusCode::BAD_REQUEST, "not-supported"),
        ErrorKind::UnresolvedReference => (StatusCode::BAD_REQUEST, "not-found"),
        ErrorKind::NotSupported => (StatusCode::BAD_REQUEST, "not-supported"),
    };
    FhirError::new(status, code, error.to_string()).with_expression(error.position.expression())
}

/// Rejects a body that writes one resource twice, which FHIR forbids in a transaction.
pub(crate) fn check_identities(entries: &[Entry]) -> FhirResult<()> {
    let mut seen = HashMap::new();
    for entry in entries {
        let Some(id) = &entry.id else {
            continue;
        };
        if entry.criteria.is_some() || entry.if_none_exist.is_some() {
            continue;
        }
        let key = (entry.resource_type.as_str(), id.as_str());
        if let Some(first) = seen.insert(key, entry.position) {
            return Err(entry_error(&EntryError {
                position: entry.position,
                full_url: entry.full_url.clone(),
                kind: ErrorKind::Invalid,
                message: format!(
                    "{}/{id} is also written by {first}; a body may write each resource once",
                    entry.resource_type
                ),
            }));
        }
    }
    Ok(())
}

/// Rejects conditional references (`Type?criteria`) that name an unknown type, use
/// criteria the repository cannot evaluate, or match no or several resources now. The
/// repository evaluates them again when it applies the event, in log order.
fn check_conditional_references(state: &FhirState, entries: &[Entry]) -> FhirResult<()> {
    for entry in entries {
        let Some(resource) = &entry.resource else {
            continue;
        };
        let mut problem = None;
        hearth_fhir_core::reference::for_each_reference(resource, &mut |reference| {
            if problem.is_some() {
                return;
            }
            if let ReferenceKind::Conditional {
                resource_type,
                query,
            } = classify(reference)
            {
                problem = conditional_problem(state, reference, resource_type, query).err();
            }
        });
        if let Some(error) = problem {
            let mut error = error;
            error.diagnostics = format!("{}: {}", entry.position, error.diagnostics);
            return Err(error.with_expression(entry.position.expression()));
        }
    }
    Ok(())
}

fn conditional_problem(
    state: &FhirState,
    reference: &str,
    resource_type: &str,
    query: &str,
) -> FhirResult<()> {
    if !hearth_fhir_core::resource_types::is_resource_type(resource_type) {
        return Err(FhirError::bad_request(format!(
            "conditional reference {reference} names the unknown resource type {resource_type}"
        )));
    }
    let matches = state.repository.criteria_matches(resource_type, query, 2)?;
    match matches.len() {
        1 => Ok(()),
        0 => Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "not-found",
            format!("conditional reference {reference} matches no resource"),
        )),
        _ => Err(FhirError::new(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!("conditional reference {reference} matches more than one resource"),
        )),
    }
}

/// Rejects the body when a `urn:uuid:` placeholder names neither an entry nor a stored
/// resource. The repository checks again when it applies the event.
fn check_placeholders(state: &FhirState, entries: &[Entry]) -> FhirResult<()> {
    let mut known: HashMap<String, bool> = HashMap::new();
    for (index, url) in bundle::unresolved_placeholders(entries) {
        let id = url.trim_start_matches("urn:uuid:").to_string();
        let found = match known.get(&id) {
            Some(found) => *found,
            None => {
                let found = state.repository.find_by_id(&id)?.is_some();
                known.insert(id, found);
                found
            }
        };
        if !found {
            let entry = &entries[index];
            return Err(entry_error(&EntryError {
                position: entry.position,
                full_url: entry.full_url.clone(),
                kind: ErrorKind::UnresolvedReference,
                message: format!(
                    "reference {url} matches no entry of the bundle and no stored resource"
                ),
            }));
        }
    }
    Ok(())
}

fn build_event(
    site: &SiteContext,
    principal: &Principal,
    entries: Vec<Entry>,
) -> FhirResult<ResourceTransaction> {
    crate::write::build_event(site, principal, TransactionKind::Load, entries)
}
