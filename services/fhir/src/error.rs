//! The one place where FHIR API errors become HTTP responses with an OperationOutcome.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::media::FHIR_JSON;

/// An error of the FHIR API, with the OperationOutcome issue it becomes.
#[derive(Debug, Clone)]
pub struct FhirError {
    pub status: StatusCode,
    /// The OperationOutcome issue code (`invalid`, `not-found`, `conflict`, ...).
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath locations of the problem, such as `Bundle.entry[2]`.
    pub expression: Vec<String>,
    /// The `Allow` header of a 405: the methods the target takes.
    pub allow: Option<&'static str>,
}

impl FhirError {
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        FhirError {
            status,
            code,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
            allow: None,
        }
    }

    /// Sets the `Allow` header that a 405 response must carry.
    pub fn with_allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }

    pub fn gone(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "deleted", diagnostics)
    }

    pub fn not_supported(status: StatusCode, diagnostics: impl Into<String>) -> Self {
        Self::new(status, "not-supported", diagnostics)
    }

    /// An internal failure: the detail is logged here and the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the server failed to process the request; the failure is logged",
        )
    }

    pub fn with_expression(mut self, expression: Option<String>) -> Self {
        self.expression.extend(expression);
        self
    }

    /// The OperationOutcome resource for this error.
    pub fn to_outcome(&self) -> Value {
        operation_outcome("error", self.code, &self.diagnostics, &self.expression)
    }
}

/// Builds an OperationOutcome with one issue.
pub fn operation_outcome(
    severity: &str,
    code: &str,
    diagnostics: &str,
    expression: &[String],
) -> Value {
    let mut issue = json!({
        "severity": severity,
        "code": code,
        "diagnostics": diagnostics,
    });
    if !expression.is_empty() {
        issue["expression"] = json!(expression);
    }
    json!({
        "resourceType": "OperationOutcome",
        "issue": [issue],
    })
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let body = self.to_outcome().to_string();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
            .extensions_mut()
            .insert(crate::audit::ErrorCode(self.code));
        response
    }
}

impl From<hearth_cdr::Error> for FhirError {
    fn from(error: hearth_cdr::Error) -> Self {
        match error {
            hearth_cdr::Error::Criteria(hearth_cdr::CriteriaError::Invalid {
                criteria,
                reason,
            }) => FhirError::bad_request(format!("invalid search '{criteria}': {reason}")),
            other => FhirError::internal(other),
        }
    }
}

pub type FhirResult<T> = Result<T, FhirError>;

/// Response mapper of the FHIR routes: turns the plain-text or empty error responses that
/// the HTTP framework produces itself (a body over the size limit, a method a route does
/// not have, an unmatched path) into OperationOutcomes with the same status.
pub async fn outcome_for_framework_errors(
    axum::extract::State(limits): axum::extract::State<std::sync::Arc<crate::FhirSettings>>,
    response: Response,
) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => FhirError::new(
            status,
            "too-costly",
            format!(
                "the request body is larger than the limit: {} bytes for resources and bundles, {} bytes for $load",
                limits.max_body_bytes, limits.max_load_bytes
            ),
        ),
        StatusCode::METHOD_NOT_ALLOWED => FhirError::not_supported(
            status,
            "this endpoint does not support the request's HTTP method",
        ),
        StatusCode::NOT_FOUND => FhirError::not_found("no FHIR endpoint at this path"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            FhirError::not_supported(status, "the request's Content-Type is not supported")
        }
        _ => FhirError::new(status, "invalid", "the request could not be processed"),
    };
    let mut mapped = error.into_response();
    for name in [header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(value) = response.headers().get(&name) {
            mapped.headers_mut().insert(name, value.clone());
        }
    }
    mapped
}
