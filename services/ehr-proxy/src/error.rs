//! The proxy's error type and how each error becomes a FHIR response.

use axum::http::StatusCode;
use hearth_fhir::FhirError;

/// Reason a proxied request failed before the upstream sent a usable response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the EHR did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot connect to the EHR: {0}")]
    Connect(String),
    #[error("the EHR request failed: {0}")]
    Upstream(String),
    #[error("the EHR answered {0} without a FHIR body")]
    BadStatus(u16),
    #[error("the EHR answered with a redirect (HTTP {0})")]
    Redirect(u16),
    #[error("the EHR's response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the EHR's response is not FHIR JSON: {0}")]
    InvalidBody(String),
    #[error("the EHR's response is not the resource the request expects: {0}")]
    WrongResource(String),
    #[error("authentication at the EHR failed: {0}")]
    Auth(String),
    #[error("too many requests are waiting for this site's EHR")]
    Saturated,
    #[error("site {0} has no upstream configured: {1}")]
    Config(String, String),
    #[error("the EHR cache failed: {0}")]
    Cache(String),
}

impl ProxyError {
    /// Builds the app's response: the OperationOutcome of [`ProxyError::to_fhir`], with
    /// `Retry-After` when the site's queue is full.
    pub fn to_response(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut response = self.to_fhir().into_response();
        if matches!(self, ProxyError::Saturated) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }

    /// Converts the error into the response an app gets: 504 for timeouts, 503 when the
    /// site's queue is full or its settings are incomplete, 502 for every other upstream
    /// fault, 500 for Hearth's own failures. The message names the fault but never the
    /// upstream URL or a credential.
    pub fn to_fhir(&self) -> FhirError {
        match self {
            ProxyError::Timeout(_) => FhirError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the EHR behind this site did not answer in time",
            ),
            ProxyError::Saturated => FhirError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "too many requests are waiting for the EHR behind this site; retry later",
            ),
            ProxyError::Connect(_) => FhirError::new(
                StatusCode::BAD_GATEWAY,
                "transient",
                "the EHR behind this site cannot be reached",
            ),
            ProxyError::BadStatus(status) => FhirError::new(
                StatusCode::BAD_GATEWAY,
                "exception",
                format!("the EHR behind this site failed with HTTP {status}"),
            ),
            ProxyError::Redirect(status) => FhirError::new(
                StatusCode::BAD_GATEWAY,
                "exception",
                format!(
                    "the EHR behind this site answered with a redirect (HTTP {status}), which Hearth does not follow"
                ),
            ),
            ProxyError::Upstream(_)
            | ProxyError::TooLarge(_)
            | ProxyError::InvalidBody(_)
            | ProxyError::WrongResource(_)
            | ProxyError::Auth(_) => FhirError::new(
                StatusCode::BAD_GATEWAY,
                "exception",
                format!("the EHR behind this site failed: {}", self.public_reason()),
            ),
            // A site set up without what its upstream needs is not the caller's fault, nor
            // a failure of Hearth's code: the site is unavailable until an administrator
            // completes its settings, and the message names the missing setting.
            ProxyError::Config(_, reason) => FhirError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "exception",
                format!(
                    "the EHR behind this site is not reachable until its settings are complete: {reason}"
                ),
            ),
            ProxyError::Cache(_) => FhirError::internal(self),
        }
    }

    fn public_reason(&self) -> &'static str {
        match self {
            ProxyError::TooLarge(_) => "its response is too large",
            ProxyError::InvalidBody(_) => "its response is not FHIR JSON",
            ProxyError::WrongResource(_) => "its response is not the resource the request expects",
            ProxyError::Auth(_) => "Hearth could not authenticate there",
            _ => "the request did not complete",
        }
    }
}
