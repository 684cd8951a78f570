//! The claims of the tokens this server signs.

use serde::{Deserialize, Serialize};

/// Claims of an access token (a JWT with header `typ: at+jwt`, signed with ES256).
///
/// The grant id `gid` lets the resource server check on every request that the grant
/// behind the token has not been revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The authorization server's issuer URL.
    pub iss: String,
    /// The user the token acts for, or the client id for backend services.
    pub sub: String,
    /// The FHIR base URL the token is for.
    pub aud: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, in seconds since the Unix epoch.
    pub iat: i64,
    /// A unique id for this token.
    pub jti: String,
    pub client_id: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// The grant this token was issued under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// The site the token was issued for.
    pub site: String,
    /// The patient in context: a bare id, as in the token response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The encounter in context: a bare id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// The user's FHIR resource URL, such as `Practitioner/123`.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The kind of user, such as `Patient`, `Practitioner` or `system` for backend services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
}

/// Claims of an OpenID Connect id token (signed with RS256, as SMART requires).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client id of the app.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// The `nonce` of the authorization request, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The user's FHIR resource URL, present when `fhirUser` was granted.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The URL of the user's profile page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}
