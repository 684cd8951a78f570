//! Events of the `hearth.auth` topic for issued, refreshed and revoked tokens and grants.

use serde::{Deserialize, Serialize};

use super::authorization::UserType;

/// The token endpoint issued an access token, and possibly a refresh token and an id_token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Identifier of the access token, its jti claim.
    pub token_id: String,
    /// Grant the token belongs to. None for client_credentials tokens, which belong to no grant.
    pub grant_id: Option<String>,
    pub site_id: String,
    pub client_id: String,
    pub grant_type: GrantType,
    /// Space-separated scopes of the token.
    pub scope: String,
    pub user_type: UserType,
    pub user_id: Option<String>,
    /// fhirUser claim, e.g. Patient/123.
    pub fhir_user: Option<String>,
    /// Logical id of the patient in context.
    pub patient: Option<String>,
    /// Logical id of the encounter in context.
    pub encounter: Option<String>,
    /// Expiry of the access token.
    pub expires_at: i64,
    /// Hash of the refresh token issued with it, never the token itself. None when none was issued.
    pub refresh_token_hash: Option<String>,
    /// Expiry of the refresh token. None when none was issued or it lasts as long as the login
    /// session.
    pub refresh_expires_at: Option<i64>,
    /// Whether the response contained an OpenID Connect id_token.
    pub id_token_issued: bool,
    /// jti of the client's private_key_jwt assertion, kept so that a replayed assertion can be
    /// detected.
    pub assertion_jti: Option<String>,
}

/// A refresh token was exchanged for a new access token and a new refresh token. A later use of the
/// previous refresh token is recorded as GrantRevoked with reason REFRESH_REUSE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRefreshed {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub grant_id: String,
    pub site_id: String,
    pub client_id: String,
    /// Hash of the refresh token that was presented, which is no longer valid.
    pub previous_refresh_hash: String,
    /// Hash of the new refresh token.
    pub refresh_token_hash: String,
    /// Identifier (jti) of the new access token.
    pub token_id: String,
    /// Space-separated scopes of the new tokens, at most those of the grant.
    pub scope: String,
    /// Expiry of the new access token.
    pub expires_at: i64,
    /// Expiry of the new refresh token. None when it lasts as long as the login session.
    pub refresh_expires_at: Option<i64>,
    /// The jti of the client assertion a confidential asymmetric client authenticated with;
    /// single use. Added in version 2 of the schema.
    pub assertion_jti: Option<String>,
}

/// A single token was revoked, for example through the RFC 7009 revocation endpoint. Access tokens
/// are named by token_id, refresh tokens by token_hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// jti of a revoked access token.
    pub token_id: Option<String>,
    /// Hash of a revoked refresh token.
    pub token_hash: Option<String>,
    pub token_kind: TokenKind,
    pub grant_id: Option<String>,
    pub client_id: String,
    /// Free-text reason.
    pub reason: Option<String>,
    /// client_id or administrator user id that requested the revocation.
    pub actor: String,
}

/// A grant was revoked. Its access tokens stop working at once and its refresh tokens can no longer
/// be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRevoked {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub grant_id: String,
    pub client_id: String,
    pub site_id: String,
    pub reason: RevocationReason,
    /// User id, client_id or "system" for automatic revocations such as CODE_REPLAY.
    pub actor: String,
    /// Free-text detail for administrators.
    pub detail: Option<String>,
}

/// OAuth2 grant type of a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

/// Kind of a revoked token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// Reason a grant was revoked. CODE_REPLAY means an authorization code was presented a second time.
/// REFRESH_REUSE means a refresh token that rotation had replaced was presented again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevocationReason {
    User,
    Admin,
    CodeReplay,
    RefreshReuse,
    AppDisabled,
    Other,
}
