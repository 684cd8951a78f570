//! Events of the `hearth.api` topic: one record per HTTP request, for analytics.

use serde::{Deserialize, Serialize};

use super::authorization::UserType;
use super::sites::Backing;

/// One HTTP request served by Hearth, for usage analytics. It never contains tokens, secrets,
/// bodies or raw query strings. occurred_at is when the request arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCall {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Id of the request, also logged and returned in the X-Request-Id header.
    pub request_id: String,
    /// Site the request was for. None for requests outside any site, e.g. administration.
    pub site_id: Option<String>,
    pub surface: Surface,
    /// HTTP method.
    pub method: String,
    /// Route template that matched, e.g. /fhir/{site}/{type}/{id}, never the raw URL.
    pub route: String,
    /// FHIR interaction code, e.g. read, search-type, transaction or operation.
    pub interaction: Option<String>,
    /// Name of the FHIR operation, e.g. $export, when interaction is operation.
    pub operation: Option<String>,
    pub resource_type: Option<String>,
    /// HTTP status code of the response.
    pub status: i32,
    /// Time from receiving the request to sending the last byte of the response, in microseconds.
    pub latency_us: i64,
    /// Size of the request body in bytes.
    pub request_bytes: i64,
    /// Size of the response body in bytes.
    pub response_bytes: i64,
    /// App that made the request, from its access token.
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    pub user_type: Option<UserType>,
    pub user_id: Option<String>,
    /// Logical id of the patient in the token's context.
    pub patient: Option<String>,
    /// Backing of the site that served a FHIR request.
    pub backing: Option<Backing>,
    /// EHR cache outcome. None for sites backed by the repository.
    pub cache: Option<CacheStatus>,
    /// HTTP status from the upstream EHR, when Hearth called it.
    pub upstream_status: Option<i32>,
    /// Time spent waiting for the upstream EHR, in microseconds.
    pub upstream_latency_us: Option<i64>,
    /// Error code sent to the caller: the OperationOutcome issue code for FHIR, the RFC 6749 error
    /// code for OAuth2.
    pub error_code: Option<String>,
}

/// HTTP surface that served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Surface {
    Fhir,
    Auth,
    Admin,
    Bulk,
    Console,
}

/// Outcome of the EHR cache lookup. BYPASS means the request could not be served from the cache,
/// for example a write or a no-cache request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}
