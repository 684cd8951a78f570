//! Who is calling and for which site: set by the authorization layer before a handler
//! runs, and read by every handler to build links and to enforce scopes.

use hearth_smart::scope::ScopeSet;

/// The site a request is for, with the absolute URL of its FHIR base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteContext {
    pub site_id: String,
    /// Such as `http://127.0.0.1:8080/fhir`, without a trailing slash.
    pub fhir_base_url: String,
    /// The site's authorization server, such as `http://127.0.0.1:8080/auth`.
    pub auth_base_url: String,
}

/// The caller of a FHIR request, from its verified access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub client_id: String,
    pub token_id: String,
    pub grant_id: Option<String>,
    pub scopes: ScopeSet,
    /// The patient in context (a bare id), for patient scopes.
    pub patient: Option<String>,
    /// The user's FHIR resource, such as `Practitioner/123`.
    pub fhir_user: Option<String>,
    /// `Patient`, `Practitioner`, `system` and so on.
    pub user_type: Option<String>,
}
