//! Events of the `hearth.auth` topic that configure sites and the apps active at each site.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A site was created: one FHIR base URL with its own SMART configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRegistered {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Stable identifier of the site, used in URLs and log keys.
    pub site_id: String,
    /// Display name of the site.
    pub name: String,
    /// Path of the site's FHIR base URL under the server origin, e.g. /fhir/main.
    pub fhir_base_path: String,
    pub backing: Backing,
    /// FHIR base URL of the upstream EHR. None when backing is REPOSITORY.
    pub upstream_base_url: Option<String>,
    pub upstream_auth_method: UpstreamAuthMethod,
    /// client_id that Hearth uses at the upstream EHR for BACKEND_SERVICES.
    pub upstream_client_id: Option<String>,
    /// Token endpoint of the upstream EHR. None means Hearth reads it from the EHR's .well-
    /// known/smart-configuration.
    pub upstream_token_url: Option<String>,
    /// Space-separated scopes that Hearth requests from the upstream EHR.
    pub upstream_scope: Option<String>,
    /// FHIR version that the upstream EHR reports in its CapabilityStatement, e.g. 4.0.1.
    pub upstream_fhir_version: Option<String>,
    /// Whether apps may register themselves at this site with RFC 7591 dynamic client registration.
    pub dynamic_registration: bool,
    /// Seconds that a cached upstream response stays fresh, keyed by FHIR resource type. Types not
    /// listed use default_cache_freshness_s.
    pub cache_freshness_s: BTreeMap<String, i64>,
    /// Seconds of freshness for resource types missing from cache_freshness_s. Zero turns caching
    /// off for them.
    pub default_cache_freshness_s: i64,
    /// User id of the administrator who created the site.
    pub actor: String,
}

/// A site's settings were replaced. Every field is the new value, so a consumer overwrites the
/// previous settings without merging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteUpdated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Stable identifier of the site, used in URLs and log keys.
    pub site_id: String,
    /// Display name of the site.
    pub name: String,
    /// Path of the site's FHIR base URL under the server origin, e.g. /fhir/main.
    pub fhir_base_path: String,
    pub backing: Backing,
    /// FHIR base URL of the upstream EHR. None when backing is REPOSITORY.
    pub upstream_base_url: Option<String>,
    pub upstream_auth_method: UpstreamAuthMethod,
    /// client_id that Hearth uses at the upstream EHR for BACKEND_SERVICES.
    pub upstream_client_id: Option<String>,
    /// Token endpoint of the upstream EHR. None means Hearth reads it from the EHR's .well-
    /// known/smart-configuration.
    pub upstream_token_url: Option<String>,
    /// Space-separated scopes that Hearth requests from the upstream EHR.
    pub upstream_scope: Option<String>,
    /// FHIR version that the upstream EHR reports in its CapabilityStatement, e.g. 4.0.1.
    pub upstream_fhir_version: Option<String>,
    /// Whether apps may register themselves at this site with RFC 7591 dynamic client registration.
    pub dynamic_registration: bool,
    /// Seconds that a cached upstream response stays fresh, keyed by FHIR resource type. Types not
    /// listed use default_cache_freshness_s.
    pub cache_freshness_s: BTreeMap<String, i64>,
    /// Seconds of freshness for resource types missing from cache_freshness_s. Zero turns caching
    /// off for them.
    pub default_cache_freshness_s: i64,
    /// User id of the administrator who changed the site.
    pub actor: String,
}

/// An app became available at a site, so users of that site can launch and authorize it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppActivated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub site_id: String,
    pub client_id: String,
    /// User id of the administrator who activated the app.
    pub actor: String,
}

/// An app is no longer available at a site. Existing grants at the site are revoked separately with
/// GrantRevoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDeactivated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub site_id: String,
    pub client_id: String,
    /// User id of the administrator who deactivated the app.
    pub actor: String,
}

/// Source of a site's FHIR data: Hearth's clinical data repository, or an upstream EHR that Hearth
/// proxies with a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Backing {
    Repository,
    Ehr,
}

/// Authentication method that Hearth uses at an upstream EHR. BEARER sends a static token from the
/// server configuration, which never enters the log. BACKEND_SERVICES obtains tokens with SMART
/// Backend Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpstreamAuthMethod {
    None,
    Bearer,
    BackendServices,
}
