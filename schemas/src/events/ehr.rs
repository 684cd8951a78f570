//! Events of the `hearth.ehr` topic: the cache of responses fetched from upstream EHRs.

use serde::{Deserialize, Serialize};

/// A response fetched from an upstream EHR was stored in the site's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrResponseCached {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub site_id: String,
    /// Key under which the proxy looks the response up. It is derived from the request and contains
    /// no token.
    pub cache_key: String,
    /// HTTP method of the upstream request.
    pub method: String,
    /// URL of the upstream request, without credentials.
    pub upstream_url: String,
    /// HTTP status of the upstream response.
    pub status: i32,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// meta.versionId of the resource, when the response is one resource.
    pub version_id: Option<String>,
    pub content_type: Option<String>,
    /// ETag header of the upstream response.
    pub etag: Option<String>,
    /// Last-Modified header of the upstream response.
    pub last_modified: Option<i64>,
    /// Response body as received, usually FHIR JSON.
    pub body: String,
    /// When the upstream response arrived.
    pub fetched_at: i64,
    /// Time until which the proxy serves the entry without asking the EHR again.
    pub fresh_until: i64,
    /// HTTP request that caused the upstream fetch.
    pub request_id: Option<String>,
}

/// Entries were removed from a site's EHR cache: every key in cache_keys, and every entry of the
/// resource when resource_type and resource_id are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EhrCacheInvalidated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub site_id: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub cache_keys: Vec<String>,
    /// Free-text reason, e.g. a write through the proxy.
    pub reason: Option<String>,
}
