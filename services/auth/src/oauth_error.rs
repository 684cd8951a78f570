//! Errors of the authorization server in the formats RFC 6749 defines: error JSON from
//! the token, introspection, revocation and registration endpoints, error redirects from
//! the authorize endpoint, and an error page where redirecting would be unsafe.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

/// An RFC 6749 error for the JSON endpoints.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    /// The RFC 6749 (or RFC 7591, RFC 7009) error code, such as `invalid_grant`.
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Client authentication failed: 401, as RFC 6749 section 5.2 asks.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// Returns the error for a registration whose redirect URI is missing or invalid (RFC 7591
    /// section 3.2.2).
    pub fn invalid_redirect_uri(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
    }

    /// Returns the error for a registration with another invalid field (RFC 7591 section
    /// 3.2.2).
    pub fn invalid_client_metadata(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    /// A failure of the server itself: the detail is logged, the client gets RFC 6749's
    /// `server_error` with a generic description.
    pub fn server_error(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "authorization request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server failed to process the request; the failure is logged",
        )
    }

    /// The log or a store is unavailable for now.
    pub fn temporarily_unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "authorization request could not be recorded");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server cannot record the request right now; try again later",
        )
    }
}

impl From<rusqlite::Error> for OAuthError {
    fn from(error: rusqlite::Error) -> Self {
        OAuthError::server_error(error)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, axum::Json(body)).into_response();
        response
            .extensions_mut()
            .insert(hearth_fhir::audit::ErrorCode(self.error));
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.error == "invalid_client" && self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hearth\""),
            );
        }
        response
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;

/// Builds the redirect of an authorization error to a verified redirect URI, with
/// `error`, `error_description` and `state` (RFC 6749 section 4.1.2.1).
pub fn error_redirect(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Response {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    redirect_with(redirect_uri, &pairs)
}

/// A 302 to `uri` with the pairs added to its query.
pub fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let separator = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{separator}{query}");
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error page for requests that cannot be redirected: an unknown client or a
/// redirect URI that is not registered (RFC 6749 section 4.1.2.1 forbids redirecting).
pub fn error_page(status: StatusCode, error: &'static str, description: &str) -> Response {
    let body = crate::pages::error_page(error, description);
    let mut response = (status, Html(body)).into_response();
    response
        .extensions_mut()
        .insert(hearth_fhir::audit::ErrorCode(error));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Largest request body of the authorization server and admin API, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Maximum bytes of an oversized request body that [`drain_oversized_body`] reads and drops.
const MAX_DRAINED_BYTES: usize = 8 * MAX_BODY_BYTES;

/// Middleware of the authorization server and admin API: reads the request body before
/// the handler, and when it is over [`MAX_BODY_BYTES`], reads on and drops the rest (up
/// to [`MAX_DRAINED_BYTES`]) before the handler rejects it. Without this, the server
/// sends 413 while the client is still sending and then closes the connection, so the
/// client gets a broken pipe instead of the error response.
pub async fn drain_oversized_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::{Body, HttpBody};

    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_DRAINED_BYTES) {
        // Too much to drain: the handler rejects it at once and the connection closes.
        return next.run(request).await;
    }
    let (parts, mut body) = request.into_parts();
    let mut head: Vec<u8> = Vec::new();
    let mut read = 0usize;
    while read <= MAX_DRAINED_BYTES {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Some(Err(error)) => {
                tracing::debug!(%error, "reading a request body failed");
                return OAuthError::invalid_request("the request body could not be read")
                    .into_response();
            }
        };
        read += data.len();
        // One byte over the limit is enough for the handler to reject the body.
        let room = (MAX_BODY_BYTES + 1).saturating_sub(head.len());
        head.extend_from_slice(&data[..data.len().min(room)]);
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(head)))
        .await
}

/// Response mapper of the authorization server and admin API: turns the plain-text or
/// empty error responses that the HTTP framework produces itself (a body over
/// [`MAX_BODY_BYTES`], a method a route does not have, an unmatched path) into RFC 6749
/// error JSON with the same status.
pub async fn oauth_for_framework_errors(response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let own = content_type.contains("json") || content_type.contains("html");
    if !(status.is_client_error() || status.is_server_error()) || own {
        return response;
    }
    let description = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            "this endpoint does not support the request's HTTP method".to_string()
        }
        StatusCode::NOT_FOUND => "no endpoint at this path".to_string(),
        _ => "the request could not be processed".to_string(),
    };
    OAuthError::new(status, "invalid_request", description).into_response()
}
