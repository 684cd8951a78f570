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
        Some(TransactionOutcome::Applied(entries)) => Ok((position, entries)),
        Some(TransactionOutcome::Rejected(rejection)) => Err(rejection_error(&rejection)),
        Some(TransactionOutcome::Undecodable(reason)) => Err(FhirError::internal(reason)),
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
