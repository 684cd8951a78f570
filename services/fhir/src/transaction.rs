//! Batch and transaction Bundles POSTed to the base.
//!
//! The write entries of a Bundle become one `ResourceTransaction` event: all or nothing for
//! a transaction, entry by entry for a batch. Read entries (GET and HEAD) run after the
//! writes, as FHIR orders them, through the same routes as a request of their own, so any
//! read, search, history, compartment or `$everything` URL works there with the caller's
//! token. Entries that fail a check before the append (a scope the token lacks, a broken
//! resource) fail the whole transaction, or only themselves in a batch. In a transaction,
//! every read also runs once before the writes. A read that fails there (a bad search, a
//! 404 that no write of the Bundle can mend, a read of what the Bundle deletes) fails the
//! transaction before anything is stored.
// NOTE: a read that passes that check can still fail after the writes when another client
// changes the same resources in between, or when a conditional delete of the Bundle
// removes what it reads. Its entry then carries the error and the writes stay.

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
    Read(ReadReply),
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
    if atomic {
        check_reads_first(&state, &site, &principal, &entries, &writes, &headers).await?;
    }
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
            results[index] = match run_read(&state, &site, &principal, url, &headers).await {
                Ok(reply) => Result::Read(reply),
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

/// The reply to a read entry: the status, headers and body its own request would get.
struct ReadReply {
    status: StatusCode,
    body: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

impl ReadReply {
    /// The entry's `response` element: the status with the ETag and the modification time,
    /// and for an error the OperationOutcome of the body as `outcome`.
    fn response(&self) -> Value {
        let mut response = json!({"status": status_text(self.status)});
        if let Some(etag) = &self.etag {
            response["etag"] = json!(etag);
        }
        if let Some(modified) = self.last_modified.as_deref().and_then(httpdate_to_instant) {
            response["lastModified"] = json!(modified);
        }
        if !self.status.is_success()
            && let Ok(outcome) = serde_json::from_str::<Value>(&self.body)
        {
            response["outcome"] = outcome;
        }
        response
    }

    /// The error a failed read makes of a whole transaction, with the diagnostics of its
    /// OperationOutcome.
    fn to_error(&self, index: usize) -> FhirError {
        let outcome: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        let diagnostics = outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("the read failed");
        let code = match self.status {
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::GONE => "deleted",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "processing",
        };
        let message = format!("the read entry failed with {}: {diagnostics}", self.status);
        at_entry(FhirError::new(self.status, code, message), index)
    }
}

/// Converts an HTTP date of a `Last-Modified` header back into a FHIR instant.
fn httpdate_to_instant(value: &str) -> Option<String> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let when = time::PrimitiveDateTime::parse(value, &format).ok()?;
    when.assume_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// In a transaction, runs every read entry before the writes and fails the transaction on
/// the first that cannot succeed after them either: any failure of a read of a type that
/// no write stores, any failure but 404 and 410 of a read of a written type (a write may
/// create what is not found yet), and a read of `Type/id` that a DELETE entry removes.
async fn check_reads_first(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    entries: &[Entry],
    writes: &[usize],
    headers: &HeaderMap,
) -> FhirResult<()> {
    let written: Vec<&str> = writes
        .iter()
        .map(|&i| entries[i].resource_type.as_str())
        .collect();
    let deleted: Vec<(&str, &str)> = writes
        .iter()
        .map(|&i| &entries[i])
        .filter(|entry| entry.action == Action::Delete)
        .filter_map(|entry| Some((entry.resource_type.as_str(), entry.id.as_deref()?)))
        .collect();
    for (index, entry) in entries.iter().enumerate() {
        if entry.action != Action::Read {
            continue;
        }
        let url = entry.request_url.as_deref().unwrap_or_default();
        let path = url
            .strip_prefix(site.fhir_base_url.as_str())
            .unwrap_or(url)
            .trim_start_matches('/');
        let mut segments = path.split('?').next().unwrap_or_default().split('/');
        let first = segments.next().unwrap_or_default();
        if let Some(id) = segments.next()
            && deleted.contains(&(first, id))
        {
            return Err(at_entry(
                FhirError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "the read entry reads {first}/{}, which the transaction deletes, so it would fail with 410 after the writes",
                        hearth_fhir_core::id::shown(id)
                    ),
                ),
                index,
            ));
        }
        let reply = run_read(state, site, principal, url, headers)
            .await
            .map_err(|error| at_entry(error, index))?;
        let may_appear = written.contains(&first)
            && matches!(reply.status, StatusCode::NOT_FOUND | StatusCode::GONE);
        if !reply.status.is_success() && !may_appear {
            return Err(reply.to_error(index));
        }
    }
    Ok(())
}

/// Runs a read entry through the FHIR routes, as the caller's own GET of `url` (relative
/// to the base) would run, with the `Prefer` header of the Bundle's request.
async fn run_read(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    url: &str,
    headers: &HeaderMap,
) -> FhirResult<ReadReply> {
    use tower::ServiceExt;

    let url = url.strip_prefix(site.fhir_base_url.as_str()).unwrap_or(url);
    let path = format!("/{}", url.trim_start_matches('/'));
    let uri: axum::http::Uri = path.parse().map_err(|_| {
        FhirError::bad_request(format!(
            "the read entry's url '{}' is not a valid relative URL",
            hearth_fhir_core::id::shown(url)
        ))
    })?;
    let mut request = axum::http::Request::get(uri)
        .header(axum::http::header::ACCEPT, "application/fhir+json")
        .body(axum::body::Body::empty())
        .map_err(FhirError::internal)?;
    if let Some(prefer) = headers.get("prefer") {
        request.headers_mut().insert("prefer", prefer.clone());
    }
    request.extensions_mut().insert(site.clone());
    request.extensions_mut().insert(principal.clone());
    let response = crate::router(state.clone())
        .oneshot(request)
        .await
        .map_err(FhirError::internal)?;
    let status = response.status();
    // The body is not `Sync`, so nothing may borrow the response across the await below.
    let (etag, last_modified) = {
        let headers = response.headers();
        let text = |name: axum::http::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            text(axum::http::header::ETAG),
            text(axum::http::header::LAST_MODIFIED),
        )
    };
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(FhirError::internal)?;
    Ok(ReadReply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        etag,
        last_modified,
    })
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
            Result::Read(reply) => {
                let body = reply.status.is_success().then(|| reply.body.clone());
                (reply.response(), body)
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
