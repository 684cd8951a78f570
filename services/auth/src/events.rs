//! Appending `hearth.auth` events and collecting the auth store's decision.

use hearth_auth_store::AuthOutcome;
use hearth_log::topics;
use hearth_schemas::{AnyEvent, Event};

use crate::AuthState;
use crate::oauth_error::OAuthError;

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Appends an event keyed by `key` (events about one grant or app share a key, so they
/// stay in order on a partitioned log), waits until the auth store applied it, and
/// returns the store's decision.
pub async fn record<E: Event + Into<AnyEvent>>(
    state: &AuthState,
    key: &str,
    event: E,
) -> Result<AuthOutcome, OAuthError> {
    let value = hearth_schemas::encode(&event).map_err(OAuthError::server_error)?;
    let position = state
        .log
        .append(topics::AUTH, key.as_bytes(), &value)
        .await
        .map_err(OAuthError::temporarily_unavailable)?;
    let outcome = state
        .projection
        .wait_for(position, state.settings.write_timeout)
        .await
        .map_err(OAuthError::temporarily_unavailable)?;
    match outcome {
        Some(AuthOutcome::Undecodable(reason)) => Err(OAuthError::server_error(reason)),
        Some(outcome) => Ok(outcome),
        None => Err(OAuthError::server_error(format!(
            "the outcome of auth event {} was dropped before it was collected",
            position.offset
        ))),
    }
}

/// Appends an audit event without waiting for the store; failures are logged only,
/// because the request it describes was already refused.
pub async fn audit<E: Event>(state: &AuthState, key: &str, event: E) {
    let value = match hearth_schemas::encode(&event) {
        Ok(value) => value,
        Err(error) => {
            tracing::error!(%error, event = E::NAME, "encoding an audit event failed");
            return;
        }
    };
    if let Err(error) = state.log.append(topics::AUTH, key.as_bytes(), &value).await {
        tracing::error!(%error, event = E::NAME, "appending an audit event failed");
    }
}
