//! The write interactions: create, update (and create-on-update), patch and delete, plain
//! and conditional.
//!
//! Each request becomes one `ResourceTransaction` event of kind SINGLE. The repository
//! decides conditional matches and `If-Match` in log order, so concurrent conditional
//! creates with the same criteria store one resource.

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use hearth_cdr::EntryOutcome;
use hearth_fhir_core::bundle::{Action, Entry, Position};
use hearth_schemas::TransactionKind;
use hearth_smart::scope::Interaction;
use serde_json::Value;

use crate::access::Principal;
use crate::confine::confine;
use crate::error::{FhirError, FhirResult, operation_outcome};
use crate::media::{FhirJson, require_json_body};
use crate::read::{check_type, http_date};
use crate::rules::check_resource_rules;
use crate::write::{build_event, check_write, submit};
use crate::{FhirState, SiteContext};

/// How a write wants its response (the `Prefer` header, RFC 7240).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub fn prefer_return(headers: &HeaderMap) -> Return {
    let preferences = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    if preferences.iter().any(|p| p == "return=minimal") {
        Return::Minimal
    } else if preferences.iter().any(|p| p == "return=operationoutcome") {
        Return::OperationOutcome
    } else {
        Return::Representation
    }
}

/// Reads the version id out of an `If-Match` header: `W/"3"` or `"3"`. Anything else is
/// 400, as FHIR asks of a malformed ETag.
pub fn if_match(headers: &HeaderMap) -> FhirResult<Option<String>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let quoted = text.starts_with("W/\"") || text.starts_with('"');
    match hearth_fhir_core::bundle::version_of_etag(text).filter(|_| quoted) {
        Some(version) => Ok(Some(version)),
        None => Err(FhirError::bad_request(format!(
            "If-Match '{text}' is not an ETag such as W/\"3\""
        ))),
    }
}

/// Parses a request body as a resource of `resource_type`.
fn parse_body(headers: &HeaderMap, body: &[u8], resource_type: &str) -> FhirResult<Value> {
    require_json_body(headers)?;
    let resource: Value = serde_json::from_slice(body).map_err(|e| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found == resource_type => {}
        Some(found) => {
            return Err(FhirError::bad_request(format!(
                "the body is a {found}, but this endpoint takes {resource_type}"
            )));
        }
        None => return Err(FhirError::bad_request("the body has no resourceType")),
    }
    check_resource_rules(resource_type, &resource)?;
    Ok(resource)
}

fn entry(
    action: Action,
    resource_type: &str,
    id: Option<String>,
    resource: Option<Value>,
) -> Entry {
    Entry {
        position: Position::Document,
        action,
        resource_type: resource_type.to_string(),
        id,
        full_url: None,
        resource,
        if_match: None,
        if_none_exist: None,
        criteria: None,
        request_url: None,
    }
}

/// `POST [base]/[type]`, with `If-None-Exist` for a conditional create.
pub async fn create(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let resource = parse_body(&headers, &body, &resource_type)?;
    let mut create = entry(Action::Create, &resource_type, None, Some(resource));
    create.if_none_exist = headers
        .get("if-none-exist")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches('?').to_string())
        .filter(|v| !v.is_empty());
    let wanted = prefer_return(&headers);
    run_confined(
        &state,
        &site,
        &principal,
        create,
        Interaction::Create,
        wanted,
    )
    .await
}

/// `PUT [base]/[type]/[id]`: update, or create with the client's id.
pub async fn update(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    if !hearth_fhir_core::id::is_valid_id(&id) {
        return Err(FhirError::bad_request(format!(
            "'{}' is not a valid id",
            hearth_fhir_core::id::shown(&id)
        )));
    }
    let resource = parse_body(&headers, &body, &resource_type)?;
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(FhirError::bad_request(format!(
                "the body's id {body_id} differs from the id {id} in the URL"
            )));
        }
        None => {
            return Err(FhirError::bad_request(
                "an update's body must carry the id of the URL",
            ));
        }
    }
    check_write(
        &state,
        &principal,
        &resource_type,
        Some(&id),
        Some(&resource),
        Interaction::Update,
    )?;
    let mut update = entry(Action::Update, &resource_type, Some(id), Some(resource));
    update.if_match = if_match(&headers)?;
    run_single(&state, &site, &principal, update, prefer_return(&headers)).await
}

/// `PUT [base]/[type]?[criteria]`: conditional update.
pub async fn conditional_update(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let criteria = required_criteria(query, "PUT")?;
    let resource = parse_body(&headers, &body, &resource_type)?;
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut update = entry(Action::Update, &resource_type, id, Some(resource));
    update.criteria = Some(criteria);
    update.if_match = if_match(&headers)?;
    let wanted = prefer_return(&headers);
    run_confined(
        &state,
        &site,
        &principal,
        update,
        Interaction::Update,
        wanted,
    )
    .await
}

/// `PATCH [base]/[type]/[id]` with a JSON Patch (RFC 6902) body.
pub async fn patch(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json-patch+json") {
        return Err(FhirError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("PATCH takes application/json-patch+json, not '{content_type}'"),
        ));
    }
    let document: Value = serde_json::from_slice(&body).map_err(|e| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the JSON Patch is not valid JSON: {e}"),
        )
    })?;
    if !document.is_array() {
        return Err(FhirError::bad_request(
            "a JSON Patch document is an array of operations",
        ));
    }
    check_write(
        &state,
        &principal,
        &resource_type,
        Some(&id),
        None,
        Interaction::Update,
    )?;
    let mut patch = entry(Action::Patch, &resource_type, Some(id), Some(document));
    patch.if_match = if_match(&headers)?;
    confine(&state, &principal, &mut patch)?;
    run_single(&state, &site, &principal, patch, prefer_return(&headers)).await
}

/// `DELETE [base]/[type]/[id]`.
pub async fn delete(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    check_write(
        &state,
        &principal,
        &resource_type,
        Some(&id),
        None,
        Interaction::Delete,
    )?;
    let mut delete = entry(Action::Delete, &resource_type, Some(id), None);
    delete.if_match = if_match(&headers)?;
    run_single(&state, &site, &principal, delete, Return::Minimal).await
}

/// `DELETE [base]/[type]?[criteria]`: conditional delete of the one match.
pub async fn conditional_delete(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let criteria = required_criteria(query, "DELETE")?;
    let mut delete = entry(Action::Delete, &resource_type, None, None);
    delete.criteria = Some(criteria);
    let wanted = Return::Minimal;
    run_confined(
        &state,
        &site,
        &principal,
        delete,
        Interaction::Delete,
        wanted,
    )
    .await
}

/// Returns the search criteria of a conditional update or delete (`method` on a type):
/// the query string, which must not be empty.
fn required_criteria(query: Option<String>, method: &str) -> FhirResult<String> {
    query.filter(|q| !q.is_empty()).ok_or_else(|| {
        FhirError::not_supported(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} on a type needs search criteria"),
        )
        .with_allow("GET, HEAD, POST, PUT, DELETE")
    })
}

/// Runs a write whose target the repository picks by criteria (a create, or a conditional
/// update or delete). It checks the caller's scopes for `interaction` on the entry's new
/// content and confines the criteria to what the caller may see before appending it.
async fn run_confined(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    mut entry: Entry,
    interaction: Interaction,
    wanted: Return,
) -> FhirResult<FhirJson> {
    check_write(
        state,
        principal,
        &entry.resource_type,
        None,
        entry.resource.as_ref(),
        interaction,
    )?;
    confine(state, principal, &mut entry)?;
    run_single(state, site, principal, entry, wanted).await
}

/// Appends one write and answers with its outcome.
async fn run_single(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    entry: Entry,
    wanted: Return,
) -> FhirResult<FhirJson> {
    let event = build_event(site, principal, TransactionKind::Single, vec![entry])?;
    let (_, outcomes) = submit(state, &event, state.settings.write_timeout).await?;
    let outcome = outcomes
        .into_iter()
        .next()
        .ok_or_else(|| FhirError::internal("the repository returned no outcome for a write"))?;
    write_response(state, site, &outcome, wanted)
}

/// The response to a write: status, `Location`, `ETag`, `Last-Modified`, and the body the
/// `Prefer` header asked for.
pub fn write_response(
    state: &FhirState,
    site: &SiteContext,
    outcome: &EntryOutcome,
    wanted: Return,
) -> FhirResult<FhirJson> {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    if outcome.status == 204 {
        return Ok(FhirJson::ok(String::new()).status(StatusCode::NO_CONTENT));
    }
    let location = format!(
        "{}/{}/{}/_history/{}",
        site.fhir_base_url, outcome.resource_type, outcome.id, outcome.version
    );
    let body = match wanted {
        Return::Minimal => String::new(),
        Return::OperationOutcome => {
            let message = format!(
                "{}/{} version {} stored",
                outcome.resource_type, outcome.id, outcome.version
            );
            operation_outcome("information", "informational", &message, &[]).to_string()
        }
        Return::Representation => state
            .repository
            .vread(&outcome.resource_type, &outcome.id, outcome.version)?
            .and_then(|stored| stored.json)
            .unwrap_or_default(),
    };
    let response = FhirJson::ok(body)
        .status(status)
        .header(header::ETAG, &format!("W/\"{}\"", outcome.version))
        .header(header::LAST_MODIFIED, &http_date(outcome.last_updated));
    Ok(if matches!(outcome.status, 200 | 201) {
        response.header(header::LOCATION, &location)
    } else {
        response
    })
}
