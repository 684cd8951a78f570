//! Events of the `hearth.auth` topic that register and change apps (OAuth2 clients).

use serde::{Deserialize, Serialize};

/// A SMART app (an OAuth2 client) was registered. Apps are registered once and activated per site
/// with AppActivated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistered {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// OAuth2 client_id of the app.
    pub client_id: String,
    /// Display name of the app (RFC 7591 client_name).
    pub name: String,
    pub client_type: ClientType,
    /// RFC 7591 token_endpoint_auth_method: none, client_secret_basic, client_secret_post or
    /// private_key_jwt.
    pub token_endpoint_auth_method: String,
    /// Redirect URIs that the authorize endpoint accepts, compared exactly. Empty for backend
    /// services.
    pub redirect_uris: Vec<String>,
    /// URL that an EHR opens to start an EHR launch. None for apps that support standalone launch
    /// or backend services only.
    pub launch_uri: Option<String>,
    /// Space-separated scopes the app may request, in SMART v1 or v2 syntax. Hearth grants no scope
    /// outside this set.
    pub scope: String,
    /// RFC 7591 grant_types, e.g. authorization_code, refresh_token, client_credentials.
    pub grant_types: Vec<String>,
    /// Hash of the client secret, never the secret itself. Set only for CONFIDENTIAL_SYMMETRIC
    /// apps.
    pub client_secret_hash: Option<String>,
    /// JSON Web Key Set (JSON text) with the app's public keys, for CONFIDENTIAL_ASYMMETRIC apps
    /// that publish no jwks_uri.
    pub jwks: Option<String>,
    /// URL of the app's JSON Web Key Set, fetched to verify client assertions.
    pub jwks_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// Home page of the app (RFC 7591 client_uri).
    pub client_uri: Option<String>,
    /// Terms of service of the app (RFC 7591 tos_uri).
    pub tos_uri: Option<String>,
    /// Privacy policy of the app (RFC 7591 policy_uri).
    pub policy_uri: Option<String>,
    /// Email addresses of the people responsible for the app.
    pub contacts: Vec<String>,
    /// Organization that builds the app, as shown in the console.
    pub vendor: Option<String>,
    /// RFC 7591 software_id, which stays the same across registrations of the same software.
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// User id of the administrator who registered the app, or the subject of the initial access
    /// token for dynamic registration. Empty for open dynamic registration.
    pub registered_by: String,
    pub registration_source: RegistrationSource,
}

/// An app's registration was replaced. Every field is the new value, so a consumer overwrites the
/// previous registration without merging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUpdated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// OAuth2 client_id of the app.
    pub client_id: String,
    /// Display name of the app (RFC 7591 client_name).
    pub name: String,
    pub client_type: ClientType,
    /// RFC 7591 token_endpoint_auth_method: none, client_secret_basic, client_secret_post or
    /// private_key_jwt.
    pub token_endpoint_auth_method: String,
    /// Redirect URIs that the authorize endpoint accepts, compared exactly. Empty for backend
    /// services.
    pub redirect_uris: Vec<String>,
    /// URL that an EHR opens to start an EHR launch. None for apps that support standalone launch
    /// or backend services only.
    pub launch_uri: Option<String>,
    /// Space-separated scopes the app may request, in SMART v1 or v2 syntax. Hearth grants no scope
    /// outside this set.
    pub scope: String,
    /// RFC 7591 grant_types, e.g. authorization_code, refresh_token, client_credentials.
    pub grant_types: Vec<String>,
    /// Hash of the client secret, never the secret itself. Set only for CONFIDENTIAL_SYMMETRIC
    /// apps.
    pub client_secret_hash: Option<String>,
    /// JSON Web Key Set (JSON text) with the app's public keys, for CONFIDENTIAL_ASYMMETRIC apps
    /// that publish no jwks_uri.
    pub jwks: Option<String>,
    /// URL of the app's JSON Web Key Set, fetched to verify client assertions.
    pub jwks_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// Home page of the app (RFC 7591 client_uri).
    pub client_uri: Option<String>,
    /// Terms of service of the app (RFC 7591 tos_uri).
    pub tos_uri: Option<String>,
    /// Privacy policy of the app (RFC 7591 policy_uri).
    pub policy_uri: Option<String>,
    /// Email addresses of the people responsible for the app.
    pub contacts: Vec<String>,
    /// Organization that builds the app, as shown in the console.
    pub vendor: Option<String>,
    /// RFC 7591 software_id, which stays the same across registrations of the same software.
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// User id of the administrator who changed the app, or the subject of the RFC 7592 request.
    pub updated_by: String,
    pub update_source: RegistrationSource,
}

/// A CONFIDENTIAL_SYMMETRIC app received a new client secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSecretRotated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub client_id: String,
    /// Hash of the new client secret, never the secret itself.
    pub client_secret_hash: String,
    /// Time until which the previous secret is still accepted, so the app can roll over. None
    /// rejects it at once.
    pub previous_secret_expires_at: Option<i64>,
    /// User id of the administrator who rotated the secret.
    pub actor: String,
}

/// An app may no longer authorize or obtain tokens at any site. Its grants are revoked by
/// GrantRevoked events with reason APP_DISABLED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDisabled {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub client_id: String,
    /// Free-text reason shown to administrators.
    pub reason: Option<String>,
    /// User id of the administrator who disabled the app.
    pub actor: String,
}

/// A disabled app may authorize and obtain tokens again. Grants revoked when it was disabled stay
/// revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppEnabled {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub client_id: String,
    /// User id of the administrator who enabled the app.
    pub actor: String,
}

/// SMART client type. PUBLIC apps cannot keep a secret and rely on PKCE. CONFIDENTIAL_SYMMETRIC
/// apps authenticate with a client secret, CONFIDENTIAL_ASYMMETRIC apps with a private_key_jwt
/// assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientType {
    Public,
    ConfidentialSymmetric,
    ConfidentialAsymmetric,
}

/// Channel through which an app was registered or changed. DYNAMIC is RFC 7591 dynamic client
/// registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegistrationSource {
    Cli,
    AdminApi,
    Dynamic,
    Console,
}
