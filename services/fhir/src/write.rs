//! Appending resource transactions to the log and collecting the repository's decision.

use axum::http::StatusCode;
use hearth_cdr::{EntryOutcome, Rejection, TransactionOutcome};
use hearth_log::{Position, topics};
use hearth_schemas::ResourceTransaction;

use crate::FhirState;
use crate::error::{FhirError, FhirResult};

/// Key of every `hearth.resources` record. All resource writes share one key, so they
/// share one partition and the repository decides them in one total order, which
/// conditional creates and `If-Match` need.
const RESOURCES_KEY: &[u8] = b"repository";

/// Appends the event, waits until the repository applied it, and returns where it landed
/// in the log and its entries' outcomes, or the rejection as an error.
pub async fn submit(
    state: &FhirState,
    event: &ResourceTransaction,
    timeout: std::time::Duration,
) -> FhirResult<(Position, Vec<EntryOutcome>)> {
    let (position, outcome) = submit_outcome(state, event, timeout).await?;
    match outcome {
        TransactionOutcome::Applied(entries) => Ok((position, entries)),
        // A single write has no Bundle, so its rejection names no entry.
        TransactionOutcome::Rejected(mut rejection)
            if event.kind == hearth_schemas::TransactionKind::Single =>
        {
            rejection.entry = None;
            Err(rejection_error(&rejection))
        }
        TransactionOutcome::Rejected(rejection) => Err(rejection_error(&rejection)),
        TransactionOutcome::Undecodable(reason) => Err(FhirError::internal(reason)),
    }
}

/// Appends the event, waits until the repository applied it, and returns the outcome as
/// the repository decided it.
pub async fn submit_outcome(
    state: &FhirState,
    event: &ResourceTransaction,
    timeout: std::time::Duration,
) -> FhirResult<(Position, TransactionOutcome)> {
    let value = hearth_schemas::encode(event).map_err(FhirError::internal)?;
    let position = state
        .log
        .append(topics::RESOURCES, RESOURCES_KEY, &value)
        .await
        .map_err(|e| match e {
            hearth_log::Error::RecordTooLarge { size, max } => FhirError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-costly",
                format!(
                    "the write is {size} bytes as an event, more than the log's limit of {max} bytes; send it in smaller bundles"
                ),
            ),
            other => {
                tracing::error!(error = %other, "appending a resource event failed");
                FhirError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "the event log is unavailable; nothing was stored, try again later",
                )
            }
        })?;
    let outcome = state
        .projection
        .wait_for(position, timeout)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, offset = position.offset, "waiting for the repository failed");
            FhirError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                format!(
                    "the write is recorded in the log at offset {} but the repository has not applied it yet; it will be applied when the repository catches up",
                    position.offset
                ),
            )
        })?;
    match outcome {
        Some(outcome) => Ok((position, outcome)),
        None => Err(FhirError::internal(format!(
            "the outcome of offset {} was dropped before it was collected",
            position.offset
        ))),
    }
}

/// The FHIR error for a repository rejection.
pub fn rejection_error(rejection: &Rejection) -> FhirError {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
    let expression = rejection.entry.map(|n| format!("Bundle.entry[{n}]"));
    let diagnostics = match rejection.entry {
        Some(n) => format!("entry {n}: {}", rejection.message),
        None => rejection.message.clone(),
    };
    FhirError::new(status, rejection.code, diagnostics).with_expression(expression)
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Builds the event for checked entries. Entries without an id get a new UUID, except
/// deletions and patches, which name what they change. Read entries are not part of the
/// event: they run after it.
pub fn build_event(
    site: &crate::SiteContext,
    principal: &crate::Principal,
    kind: hearth_schemas::TransactionKind,
    entries: Vec<hearth_fhir_core::bundle::Entry>,
) -> FhirResult<ResourceTransaction> {
    use hearth_fhir_core::bundle::Action;
    use hearth_schemas::{ResourceAction, ResourceOperation};

    let mut operations = Vec::with_capacity(entries.len());
    for entry in entries {
        let action = match entry.action {
            Action::Create => ResourceAction::Create,
            Action::Update => ResourceAction::Update,
            Action::Delete => ResourceAction::Delete,
            Action::Patch => ResourceAction::Patch,
            Action::Read => continue,
        };
        let resource = match &entry.resource {
            Some(value) => Some(serde_json::to_string(value).map_err(FhirError::internal)?),
            None => None,
        };
        let id = match (entry.id, entry.action) {
            (Some(id), _) => Some(id),
            (None, Action::Delete) => None,
            (None, _) => Some(uuid::Uuid::new_v4().to_string()),
        };
        operations.push(ResourceOperation {
            action,
            resource_type: entry.resource_type,
            id,
            full_url: entry.full_url,
            resource,
            if_match: entry.if_match,
            if_none_exist: entry.if_none_exist,
            criteria: entry.criteria,
        });
    }
    let user = principal.fhir_user.clone();
    Ok(ResourceTransaction {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now_micros(),
        site_id: site.site_id.clone(),
        kind,
        entries: operations,
        client_id: Some(principal.client_id.clone()),
        user_id: user,
        request_id: None,
    })
}

/// Checks that the caller's scopes allow a write of `resource_type`: a scope that allows the
/// interaction without restriction, or a patient-compartment scope whose patient's
/// compartment holds the resource (both the new content and, for an existing resource,
/// the stored one). Scopes with search restrictions do not allow writes, because the
/// written resource cannot be checked against them before the repository applies it.
pub fn check_write(
    state: &FhirState,
    principal: &crate::Principal,
    resource_type: &str,
    id: Option<&str>,
    resource: Option<&serde_json::Value>,
    interaction: hearth_smart::scope::Interaction,
) -> FhirResult<()> {
    if resource_type == "OperationDefinition"
        && let Some(id) = id.filter(|id| crate::operations::IDS.contains(id))
    {
        return Err(FhirError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            format!("OperationDefinition/{id} is built into the server and cannot be changed"),
        )
        .with_allow("GET, HEAD"));
    }
    let visibility = crate::scopes::visibility(principal, resource_type, interaction)?;
    if visibility.is_everything() {
        return Ok(());
    }
    let forbidden = |message: String| FhirError::new(StatusCode::FORBIDDEN, "forbidden", message);
    let Some(patient) = confined_patient(&visibility) else {
        return Err(forbidden(format!(
            "the access token's scopes restrict {resource_type} by search parameters, which writes cannot be checked against"
        )));
    };
    if let Some(resource) = resource
        && hearth_fhir_core::reference::has_conditional_reference(resource)
    {
        return Err(forbidden(format!(
            "the {resource_type} has a conditional reference (Type?criteria); the repository resolves those against every resource, so a token confined to a patient cannot use them"
        )));
    }
    if let Some(resource) = resource
        && !in_compartment(&state.settings, resource_type, resource, &patient)
    {
        return Err(forbidden(format!(
            "the {resource_type} does not belong to the compartment of the patient in context"
        )));
    }
    if let Some(id) = id
        && state
            .repository
            .read(resource_type, id)?
            .is_some_and(|stored| !stored.is_deleted())
        && !state
            .repository
            .is_visible(resource_type, id, &visibility)?
    {
        return Err(forbidden(format!(
            "{resource_type}/{id} is outside the compartment of the patient in context"
        )));
    }
    Ok(())
}

/// Returns the patient whose compartment a scope without search restrictions confines
/// writes to.
pub(crate) fn confined_patient(visibility: &hearth_cdr::Visibility) -> Option<String> {
    visibility
        .alternatives
        .iter()
        .filter(|a| a.filters.is_empty())
        .find_map(|a| a.patient_compartment.clone())
}

/// Whether a resource's content places it in `patient`'s compartment and in no other
/// patient's: a confined caller must not write a resource that another patient's
/// compartment would then show, such as an Observation whose `performer` names another
/// patient, or its own Patient `link`ed to another. A reference to `Patient/{patient}` of
/// another server names neither.
pub(crate) fn in_compartment(
    settings: &crate::FhirSettings,
    resource_type: &str,
    resource: &serde_json::Value,
    patient: &str,
) -> bool {
    let params = hearth_fhir_core::search_params::compartment_params(resource_type);
    let is_patient = resource_type == "Patient";
    if params.is_empty() && !is_patient {
        // Types outside the compartment definition are reference data, visible to all.
        return true;
    }
    let bases = hearth_fhir_core::reference::LocalBases::new(&settings.public_url);
    let rows = hearth_fhir_core::index::extract_local(resource_type, resource, &bases);
    let targets: Vec<&str> = rows
        .references
        .iter()
        .filter(|row| {
            params.iter().any(|p| p == row.param) && row.target_type.as_deref() == Some("Patient")
        })
        .filter_map(|row| row.target_id.as_deref())
        .collect();
    let others = targets.iter().any(|id| *id != patient);
    let ours = if is_patient {
        resource.get("id").and_then(serde_json::Value::as_str) == Some(patient)
    } else {
        targets.contains(&patient)
    };
    ours && !others
}
