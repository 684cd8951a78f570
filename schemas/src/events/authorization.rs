//! Events of the `hearth.auth` topic for launches, authorization requests and code redemption.

use serde::{Deserialize, Serialize};

/// An EHR launch was prepared: the launch parameter and the context that the token response returns
/// when the app redeems it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchCreated {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Opaque value of the launch parameter handed to the app.
    pub launch_id: String,
    pub site_id: String,
    /// App the launch is for. None lets any app active at the site use it.
    pub client_id: Option<String>,
    /// Time after which the authorize endpoint rejects the launch parameter.
    pub expires_at: i64,
    /// Logical id of the patient in context.
    pub patient: Option<String>,
    /// Logical id of the encounter in context.
    pub encounter: Option<String>,
    /// SMART fhirContext array as JSON text.
    pub fhir_context: Option<String>,
    /// Whether the app must show a patient banner. None leaves it out of the token response.
    pub need_patient_banner: Option<bool>,
    /// URL of the SMART style sheet (JSON) for the app to match the EHR's look.
    pub smart_style_url: Option<String>,
    /// SMART launch intent, e.g. reconcile-medications.
    pub intent: Option<String>,
    /// SMART tenant launch parameter.
    pub tenant: Option<String>,
    /// User id of the person who started the launch, e.g. the clinician in the EHR.
    pub user: Option<String>,
    /// Additional launch context parameters as a JSON object text, returned unchanged in the token
    /// response.
    pub custom_context: Option<String>,
}

/// A user (or the launch context) approved an authorization request. The authorization code it
/// issued can be redeemed once, until code_expires_at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationGranted {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Identifier of the grant. Access tokens carry it, so revoking the grant stops them at once.
    pub grant_id: String,
    pub site_id: String,
    pub client_id: String,
    /// Id of the user who approved, as known to the identity provider.
    pub user_id: Option<String>,
    /// fhirUser claim: the FHIR URL of the user's resource, e.g. Practitioner/123.
    pub fhir_user: Option<String>,
    pub user_type: UserType,
    /// Scope parameter of the authorization request.
    pub scope_requested: String,
    /// Space-separated scopes granted, a subset of the requested and registered scopes.
    pub scope_granted: String,
    /// Launch parameter of an EHR launch. None for a standalone launch.
    pub launch_id: Option<String>,
    /// Logical id of the patient in context.
    pub patient: Option<String>,
    /// Logical id of the encounter in context.
    pub encounter: Option<String>,
    /// SMART fhirContext array as JSON text.
    pub fhir_context: Option<String>,
    /// Whether the app must show a patient banner. None leaves it out of the token response.
    pub need_patient_banner: Option<bool>,
    /// URL of the SMART style sheet (JSON) for the app to match the EHR's look.
    pub smart_style_url: Option<String>,
    /// SMART launch intent, e.g. reconcile-medications.
    pub intent: Option<String>,
    /// SMART tenant launch parameter.
    pub tenant: Option<String>,
    /// Additional launch context parameters as a JSON object text.
    pub custom_context: Option<String>,
    /// Redirect URI of the request, which the token request must repeat.
    pub redirect_uri: String,
    /// Hash of the authorization code, never the code itself.
    pub code_hash: String,
    /// Time after which the code can no longer be redeemed.
    pub code_expires_at: i64,
    /// PKCE code_challenge (RFC 7636).
    pub code_challenge: Option<String>,
    /// PKCE code_challenge_method. SMART requires S256.
    pub code_challenge_method: Option<String>,
    /// OpenID Connect nonce, repeated in the id_token.
    pub nonce: Option<String>,
    pub refresh_policy: RefreshPolicy,
    /// Login session the grant belongs to. ONLINE refresh tokens stop working when the session
    /// ends.
    pub session_id: Option<String>,
}

/// An authorization request ended in an error that was sent to the app, for example a user who
/// declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationDenied {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub site_id: String,
    /// None when the request named no known client.
    pub client_id: Option<String>,
    /// None when the request failed before the user logged in.
    pub user_id: Option<String>,
    /// RFC 6749 error code, e.g. access_denied, invalid_scope or invalid_request.
    pub error: String,
    pub error_description: Option<String>,
    pub scope_requested: Option<String>,
    /// Redirect URI that received the error. None when it was invalid, so the error was shown to
    /// the user instead.
    pub redirect_uri: Option<String>,
    pub launch_id: Option<String>,
}

/// An authorization code was exchanged for tokens. A later attempt to redeem the same code is a
/// replay, recorded as GrantRevoked with reason CODE_REPLAY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRedeemed {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub grant_id: String,
    /// Hash of the redeemed code.
    pub code_hash: String,
    pub client_id: String,
    pub site_id: String,
    /// Access token issued for the code. Its TokenIssued event carries the details.
    pub token_id: String,
}

/// Kind of user behind a grant or token, from the fhirUser resource type. SYSTEM is a backend
/// service acting for no user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserType {
    Patient,
    Practitioner,
    RelatedPerson,
    System,
    Other,
}

/// Refresh tokens a grant allows. OFFLINE comes from the offline_access scope. ONLINE comes from
/// online_access and lasts only while the user's login session does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefreshPolicy {
    None,
    Offline,
    Online,
}
