//! Discovery: the SMART configuration of each site, the OpenID configuration and the JWKS.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hearth_auth_store::Site;
use serde_json::{Value, json};

use crate::AuthState;
use crate::site::auth_base_url;

/// Capabilities Hearth implements; each has an end-to-end test. `context-standalone-
/// encounter` is absent because the standalone flow has no encounter picker.
pub const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-passthrough-banner",
    "context-passthrough-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

/// Scopes a client may request, listed for discovery; resource scopes take any resource
/// type in place of `*`.
pub const SCOPES_SUPPORTED: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "user/*.cruds",
    "user/*.rs",
    "system/*.cruds",
    "system/*.rs",
    "patient/*.read",
    "patient/*.write",
    "user/*.read",
    "user/*.write",
    "system/*.read",
    "system/*.write",
];

pub async fn smart_configuration(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
) -> Response {
    let auth = auth_base_url(&state.settings.public_url, &site.site_id);
    let mut document = json!({
        "issuer": auth,
        "jwks_uri": format!("{auth}/jwks"),
        "authorization_endpoint": format!("{auth}/authorize"),
        "token_endpoint": format!("{auth}/token"),
        "introspection_endpoint": format!("{auth}/introspect"),
        "revocation_endpoint": format!("{auth}/revoke"),
        "management_endpoint": format!("{auth}/manage"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    });
    if site.dynamic_registration {
        document["registration_endpoint"] = Value::String(format!("{auth}/register"));
    }
    json_response(document)
}

pub async fn openid_configuration(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
) -> Response {
    let auth = auth_base_url(&state.settings.public_url, &site.site_id);
    json_response(json!({
        "issuer": auth,
        "jwks_uri": format!("{auth}/jwks"),
        "authorization_endpoint": format!("{auth}/authorize"),
        "token_endpoint": format!("{auth}/token"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "name"],
    }))
}

pub async fn jwks(State(state): State<AuthState>) -> Response {
    json_response(state.keys.read().jwks())
}

/// JSON with `application/json`, whatever the request's Accept header says.
fn json_response(document: Value) -> Response {
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
