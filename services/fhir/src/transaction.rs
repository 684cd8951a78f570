//! Batch and transaction Bundles POSTed to the base.
//!
//! The write entries of a Bundle become one `ResourceTransaction` event: all or nothing for
//! a transaction, entry by entry for a batch. Read entries (GET) run after the writes, as
//! FHIR orders them. Entries that fail a check before the append (a scope the token lacks,
//! a broken resource) fail the whole transaction, or only themselves in a batch.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use hearth_cdr::{EntryOutcome, TransactionOutcome};
use hearth_fhir_core::bundle::{self, Action, Entry, Semantics};
use hearth_schemas::TransactionKind;
use hearth_smart::scope::Interaction;
use serde_json::{Value, json};

use crate::access::Principal;
use crate::bundle_json::{BundleEntry, write_bundle};
use crate::error::{FhirError, FhirResult};
use crate::interactions::{Return, prefer_return};
use crate::load::{check_identities, entry_error};
use crate::media::{FhirJson, require_json_body};
use crate::rules::check_resource_rules;
use crate::write::{build_event, check_write, submit_outcome};
use crate::{FhirState, SiteContext};

/// Most entries in one Bundle.
pub const MAX_ENTRIES: usize = 10_000;

/// What became of one entry of the Bundle.
enum Result {
    /// Not run yet: a write waiting for the event, or a read waiting for the writes.
    Pending,
    Written(EntryOutcome),
    Read {
        status: StatusCode,
        body: String,
    },
    Failed(FhirError),
}

pub async fn transaction(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    require_json_body(&headers)?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::bad_request(
            "POST to the base takes a transaction or batch Bundle",
        ));
    }
    let kind = match value.get("type").and_then(Value::as_str) {
        Some("transaction") => TransactionKind::Transaction,
        Some("batch") => TransactionKind::Batch,
        other => {
            return Err(FhirError::bad_request(format!(
                "Bundle.type must be transaction or batch, not {}",
                other.unwrap_or("missing")
            )));
        }
    };
    let count = value
        .get("entry")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if count > MAX_ENTRIES {
        return Err(FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!("the Bundle has {count} entries, more than the limit of {MAX_ENTRIES}"),
        ));
    }
    let atomic = kind == TransactionKind::Transaction;
    let (mut entries, mut results) = if atomic {
        let entries = bundle::parse_value(value, Semantics::Rest).map_err(|e| entry_error(&e))?;
        let results = entries.iter().map(|_| Result::Pending).collect();
        (entries, results)
    } else {
        parse_batch(value)?
    };
    check_placeholders(&entries)?;
    check_identities(&entries)?;

    for (index, entry) in entries.iter_mut().enumerate() {
        if !matches!(results[index], Result::Pending) {
            continue;
        }
        let checked = check_entry(&state, &principal, entry)
            .and_then(|()| crate::confine::confine(&state, &principal, entry));
        if let Err(error) = checked {
            let error = at_entry(error, index);
            if atomic {
                return Err(error);
            }
            results[index] = Result::Failed(error);
        }
    }

    let writes: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].action != Action::Read && matches!(results[i], Result::Pending))
        .collect();
    if !writes.is_empty() {
        let to_write: Vec<Entry> = writes.iter().map(|&i| entries[i].clone()).collect();
        let event = build_event(&site, &principal, kind, to_write)?;
        let (_, outcome) = submit_outcome(&state, &event, state.settings.write_timeout).await?;
        match outcome {
            TransactionOutcome::Applied(outcomes) => {
                for (&index, outcome) in writes.iter().zip(outcomes) {
                    results[index] = match &outcome.rejection {
                        Some(rejection) => {
                            let mut rejection = rejection.clone();
                            rejection.entry = Some(index);
                            Result::Failed(crate::write::rejection_error(&rejection))
                        }
                        None => Result::Written(outcome),
                    };
                }
            }
            TransactionOutcome::Rejected(mut rejection) => {
                rejection.entry = rejection.entry.and_then(|i| writes.get(i).copied());
                return Err(crate::write::rejection_error(&rejection));
            }
            TransactionOutcome::Undecodable(reason) => return Err(FhirError::internal(reason)),
        }
    }

    for (index, entry) in entries.iter().enumerate() {
        if entry.action == Action::Read && matches!(results[index], Result::Pending) {
            let url = entry.request_url.as_deref().unwrap_or_default();
            results[index] = match run_read(&state, &site, &principal, url, &headers) {
                Ok((status, body)) => Result::Read { status, body },
                Err(error) => Result::Failed(error),
            };
        }
    }
    respond(
        &state,
        &site,
        kind,
        &entries,
        &results,
        prefer_return(&headers),
    )
}

/// Parses a batch entry by entry. An entry that does not parse is kept as a read of
/// nothing with its error as the result, so the other entries still run. A resource that
/// parses as JSON but breaks a storage rule fails with 422, as a single create would.
fn parse_batch(value: Value) -> FhirResult<(Vec<Entry>, Vec<Result>)> {
    let rule_errors: Vec<Option<FhirError>> = value
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|raw| {
            let resource = raw.get("resource")?;
            let resource_type = resource.get("resourceType")?.as_str()?;
            check_resource_rules(resource_type, resource).err()
        })
        .collect();
    let parsed = bundle::parse_batch(value).map_err(|e| entry_error(&e))?;
    let mut entries = Vec::with_capacity(parsed.len());
    let mut results = Vec::with_capacity(parsed.len());
    for (index, entry) in parsed.into_iter().enumerate() {
        match entry {
            Ok(entry) => {
                entries.push(entry);
                results.push(Result::Pending);
            }
            Err(error) => {
                let failure = rule_errors
                    .get(index)
                    .cloned()
                    .flatten()
                    .map(|rule| at_entry(rule, index))
                    .unwrap_or_else(|| entry_error(&error));
                entries.push(Entry {
                    position: error.position,
                    action: Action::Read,
                    resource_type: String::new(),
                    id: None,
                    full_url: None,
                    resource: None,
                    if_match: None,
                    if_none_exist: None,
                    criteria: None,
                    request_url: None,
                });
                results.push(Result::Failed(failure));
            }
        }
    }
    Ok((entries, results))
}

/// Scope and content checks of one entry before anything is appended.
fn check_entry(state: &FhirState, principal: &Principal, entry: &Entry) -> FhirResult<()> {
    let interaction = match entry.action {
        Action::Create => Interaction::Create,
        Action::Update | Action::Patch => Interaction::Update,
        Action::Delete => Interaction::Delete,
        Action::Read => return Ok(()),
    };
    if let Some(resource) = &entry.resource
        && entry.action != Action::Patch
    {
        check_resource_rules(&entry.resource_type, resource)?;
    }
    let resource = entry
        .resource
        .as_ref()
        .filter(|_| entry.action != Action::Patch);
    check_write(
        state,
        principal,
        &entry.resource_type,
        entry.id.as_deref(),
        resource,
        interaction,
    )
}

fn at_entry(mut error: FhirError, index: usize) -> FhirError {
    error.diagnostics = format!("entry {index}: {}", error.diagnostics);
    error.with_expression(Some(format!("Bundle.entry[{index}]")))
}

/// In a REST Bundle every `urn:uuid:` reference must name an entry of the same Bundle.
fn check_placeholders(entries: &[Entry]) -> FhirResult<()> {
    if let Some((index, url)) = bundle::unresolved_placeholders(entries).into_iter().next() {
        return Err(at_entry(
            FhirError::new(
                StatusCode::BAD_REQUEST,
                "not-found",
                format!("reference {url} matches no entry of the Bundle"),
            ),
            index,
        ));
    }
    Ok(())
}

/// Runs a read entry: `Type/id`, `Type/id/_history/v`, or a search `Type?query`.
fn run_read(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    url: &str,
    headers: &HeaderMap,
) -> FhirResult<(StatusCode, String)> {
    let url = url.trim_start_matches('/');
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        [resource_type, id] => {
            let stored = crate::read::read_resource(state, principal, resource_type, id)?;
            Ok((StatusCode::OK, stored.json.unwrap_or_default()))
        }
        [resource_type, id, "_history", version] => {
            crate::read::read_resource(state, principal, resource_type, id)?;
            let number: i64 = version.parse().map_err(|_| {
                FhirError::not_found(format!("{resource_type}/{id} has no version '{version}'"))
            })?;
            let stored = state
                .repository
                .vread(resource_type, id, number)?
                .filter(|s| !s.is_deleted())
                .ok_or_else(|| {
                    FhirError::not_found(format!("{resource_type}/{id} has no version {number}"))
                })?;
            Ok((StatusCode::OK, stored.json.unwrap_or_default()))
        }
        [resource_type] if !resource_type.is_empty() => {
            let pairs = crate::search::split_query(query);
            let found =
                crate::search::run_search(state, site, principal, resource_type, pairs, headers)?;
            Ok((StatusCode::OK, found.body))
        }
        _ => Err(FhirError::bad_request(format!(
            "the read entry's url '{url}' is not Type/id, Type/id/_history/v or Type?query"
        ))),
    }
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn respond(
    state: &FhirState,
    site: &SiteContext,
    kind: TransactionKind,
    entries: &[Entry],
    results: &[Result],
    wanted: Return,
) -> FhirResult<FhirJson> {
    let mut bodies: Vec<Option<String>> = Vec::with_capacity(results.len());
    let mut responses = Vec::with_capacity(results.len());
    for result in results {
        let (response, body) = match result {
            Result::Written(outcome) => written(state, site, outcome, wanted)?,
            Result::Read { status, body } => {
                (json!({"status": status_text(*status)}), Some(body.clone()))
            }
            Result::Failed(error) => (
                json!({"status": status_text(error.status), "outcome": error.to_outcome()}),
                None,
            ),
            Result::Pending => (json!({"status": "500 Internal Server Error"}), None),
        };
        responses.push(response);
        bodies.push(body);
    }
    let bundle_entries: Vec<BundleEntry<'_>> = entries
        .iter()
        .zip(results)
        .zip(responses)
        .zip(&bodies)
        .map(|(((entry, result), response), body)| BundleEntry {
            full_url: match result {
                Result::Written(outcome) if outcome.status != 204 => {
                    format!(
                        "{}/{}/{}",
                        site.fhir_base_url, outcome.resource_type, outcome.id
                    )
                }
                _ => entry.full_url.clone().unwrap_or_default(),
            },
            resource: body.as_deref().filter(|b| !b.is_empty()),
            search_mode: None,
            request: None,
            response: Some(response),
        })
        .collect();
    let bundle_type = match kind {
        TransactionKind::Transaction => "transaction-response",
        _ => "batch-response",
    };
    Ok(FhirJson::ok(write_bundle(
        bundle_type,
        None,
        &[],
        &bundle_entries,
    )))
}

/// The `response` of a write entry, and the resource when `Prefer: return=representation`.
fn written(
    state: &FhirState,
    site: &SiteContext,
    outcome: &EntryOutcome,
    wanted: Return,
) -> FhirResult<(Value, Option<String>)> {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    let mut response = json!({"status": status_text(status)});
    if outcome.status != 204 {
        response["location"] = json!(format!(
            "{}/{}/{}/_history/{}",
            site.fhir_base_url, outcome.resource_type, outcome.id, outcome.version
        ));
        response["etag"] = json!(format!("W/\"{}\"", outcome.version));
        response["lastModified"] = json!(hearth_cdr::format_instant(outcome.last_updated));
    }
    let body = if wanted == Return::Representation && outcome.status != 204 {
        state
            .repository
            .vread(&outcome.resource_type, &outcome.id, outcome.version)?
            .and_then(|stored| stored.json)
    } else {
        None
    };
    Ok((response, body))
}
