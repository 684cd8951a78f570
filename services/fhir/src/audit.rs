//! What one HTTP call did, gathered while it runs and recorded as an `ApiCall` event.
//!
//! The outermost middleware inserts a [`CallRecord`] into the request; the layers that
//! learn something fill it in (the site, the caller, the matched route, the FHIR
//! interaction), and error responses carry an [`ErrorCode`] extension.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;

/// Facts about one call, filled in as the request passes through the layers.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    pub site_id: Option<String>,
    /// The route template, such as `/fhir/{resource_type}/{id}`; never the raw path.
    pub route: Option<String>,
    /// The FHIR interaction code, such as `read` or `search-type`.
    pub interaction: Option<String>,
    /// The operation or endpoint, such as `$load` or `token`.
    pub operation: Option<String>,
    pub resource_type: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    /// `Patient`, `Practitioner`, `system` and so on.
    pub user_type: Option<String>,
    pub user_id: Option<String>,
    pub patient: Option<String>,
    /// `repository` or `ehr`, for FHIR calls.
    pub backing: Option<String>,
    /// EHR cache outcome: `HIT`, `MISS` or `BYPASS`.
    pub cache: Option<String>,
    /// HTTP status from the upstream EHR, when Hearth called it.
    pub upstream_status: Option<i32>,
    /// Time spent waiting for the upstream EHR, in microseconds.
    pub upstream_latency_us: Option<i64>,
}

/// The shared record of a call, cloned into every layer that fills it.
#[derive(Debug, Clone, Default)]
pub struct CallRecord(pub Arc<Mutex<CallInfo>>);

impl CallRecord {
    pub fn update(request: &Request, fill: impl FnOnce(&mut CallInfo)) {
        if let Some(record) = request.extensions().get::<CallRecord>() {
            fill(&mut record.0.lock());
        }
    }
}

/// The error code of a failed call (an OperationOutcome issue code or an RFC 6749
/// error), attached to the response by the error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// Route layer of the FHIR routes: records the route template, the interaction and the
/// resource type.
pub async fn record_fhir_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    CallRecord::update(&request, |info| {
        // Inside the nested router the template may or may not carry the `/fhir` prefix.
        let route = route.unwrap_or_default();
        let local = route.strip_prefix("/fhir").unwrap_or(&route).to_string();
        let (interaction, operation) = interaction(method.as_str(), &local);
        info.interaction = interaction.map(str::to_string);
        info.operation = operation.map(str::to_string);
        info.resource_type = resource_type(&local, &path);
        info.route = Some(format!("/fhir{local}"));
    });
    next.run(request).await
}

/// The FHIR interaction (or operation) of a route template.
fn interaction(method: &str, route: &str) -> (Option<&'static str>, Option<&'static str>) {
    match (method, route) {
        ("GET", "/metadata") => (Some("capabilities"), None),
        ("GET", "/.well-known/smart-configuration") => (None, Some("smart-configuration")),
        ("POST", "/$load") => (None, Some("$load")),
        ("GET", "/{resource_type}")
        | ("POST", "/{resource_type}/_search")
        | ("GET", "/{resource_type}/{id}/{compartment_type}")
        | ("POST", "/{resource_type}/{id}/{compartment_type}/_search") => {
            (Some("search-type"), None)
        }
        ("GET" | "POST", "/{resource_type}/{id}/$everything") => (None, Some("$everything")),
        ("GET", "/{resource_type}/{id}") => (Some("read"), None),
        ("GET", "/{resource_type}/{id}/_history/{version}") => (Some("vread"), None),
        ("POST", "/{resource_type}") => (Some("create"), None),
        ("PUT", "/{resource_type}/{id}") => (Some("update"), None),
        ("PATCH", "/{resource_type}/{id}") => (Some("patch"), None),
        ("DELETE", "/{resource_type}/{id}") => (Some("delete"), None),
        ("GET", "/{resource_type}/{id}/_history") => (Some("history-instance"), None),
        ("GET", "/{resource_type}/_history") => (Some("history-type"), None),
        ("GET", "/_history") => (Some("history-system"), None),
        ("POST", "/") => (Some("transaction"), None),
        ("GET", "/") | ("GET" | "POST", "/_search") => (Some("search-system"), None),
        _ => (None, None),
    }
}

/// The resource type of a route with a `{resource_type}` segment, taken from the path.
fn resource_type(route: &str, path: &str) -> Option<String> {
    if !route.starts_with("/{resource_type}") {
        return None;
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"fhir") {
        segments.next();
    }
    let mut segment = segments.next()?;
    // A compartment search (`Patient/{id}/Observation`) searches the third segment's type.
    if route.starts_with("/{resource_type}/{id}/{compartment_type}") {
        segment = segments.nth(1)?;
    }
    hearth_fhir_core::resource_types::lookup(segment).map(str::to_string)
}
