//! The admin API under `/admin`: apps, sites and their activations, grants, users and
//! signing keys. Every call needs `Authorization: Bearer <admin token>`; every change is
//! an event on `hearth.auth`.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hearth_auth_store::{App, Grant, Site};
use hearth_schemas::{
    AppActivated, AppDeactivated, AppDisabled, AppEnabled, AppRegistered, AppSecretRotated,
    AppUpdated, Backing, ClientType, GrantRevoked, RegistrationSource, RevocationReason,
    SiteRegistered, UpstreamAuthMethod,
};
use hearth_smart::secret::{generate_token, hash_token};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AuthState;
use crate::events::{new_id, now_micros, record};
use crate::limits::{
    MAX_CLIENT_ID_CHARS, MAX_CONTACTS, MAX_REDIRECT_URIS, MAX_SCOPE_CHARS, MAX_URI_CHARS,
    check_length, check_name,
};
use crate::oauth_error::{OAuthError, OAuthResult};
use crate::site::{DEFAULT_SITE, fhir_base_path};
use crate::site_settings::{
    checked_site, get_site, parse_backing, patch_site, reject_secrets, replace_site,
};

/// Checks the admin bearer credential.
pub fn require_admin(state: &AuthState, headers: &HeaderMap) -> OAuthResult<()> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if crate::same_secret(token, &state.settings.admin_token) => Ok(()),
        Some(_) => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin token is not valid",
        )),
        None => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin API needs Authorization: Bearer <admin token>",
        )),
    }
}

/// The admin API, to be nested under `/admin`.
pub fn admin_router(state: AuthState) -> Router {
    Router::new()
        .route("/apps", post(create_app).get(list_apps))
        .route("/apps/{client_id}", get(get_app).put(update_app))
        .route("/apps/{client_id}/secret", post(rotate_secret))
        .route("/apps/{client_id}/disable", post(disable_app))
        .route("/apps/{client_id}/enable", post(enable_app))
        .route("/sites", post(create_site).get(list_sites))
        .route(
            "/sites/{site_id}",
            get(get_site).put(replace_site).patch(patch_site),
        )
        .route("/sites/{site_id}/apps", get(site_apps))
        .route(
            "/sites/{site_id}/apps/{client_id}",
            put(activate).delete(deactivate),
        )
        .route("/grants", get(list_grants))
        .route("/grants/{grant_id}", get(get_grant).delete(revoke_grant))
        .merge(crate::users::routes())
        .route("/keys/rotate", post(rotate_keys))
        .route("/events", get(list_events))
        .with_state(state)
}

pub(crate) type AdminResult = Result<Response, OAuthError>;

/// Marks a response that carries a client secret as not to be stored by caches.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> OAuthResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| OAuthError::invalid_request(format!("the request body is not valid: {e}")))
}

/// The app as the admin API shows it: everything but the secret hash.
fn app_json(app: &App, sites: &[String]) -> Value {
    let mut value = serde_json::to_value(app).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("client_secret_hash");
        object.insert("sites".into(), json!(sites));
    }
    value
}

/// The body of `POST /admin/apps` and `PUT /admin/apps/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRequest {
    pub client_id: Option<String>,
    pub name: String,
    /// `public`, `confidential-symmetric` or `confidential-asymmetric`.
    pub client_type: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub launch_uri: Option<String>,
    pub scope: String,
    pub grant_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    /// A JSON Web Key Set, for confidential asymmetric clients.
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    #[serde(default)]
    pub contacts: Vec<String>,
    pub vendor: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// Sites to activate the app at right away.
    #[serde(default)]
    pub sites: Vec<String>,
}

/// An app registration checked and completed with defaults.
pub struct CheckedApp {
    pub client_type: ClientType,
    pub auth_method: String,
    pub grant_types: Vec<String>,
    pub jwks: Option<String>,
}

/// Checks an app registration; shared with dynamic registration.
pub fn check_app(request: &AppRequest) -> OAuthResult<CheckedApp> {
    // App listings show the event's spelling (CONFIDENTIAL_SYMMETRIC), so that is
    // accepted too.
    let spelling = request.client_type.to_ascii_lowercase().replace('_', "-");
    let client_type = match spelling.as_str() {
        "public" => ClientType::Public,
        "confidential-symmetric" => ClientType::ConfidentialSymmetric,
        "confidential-asymmetric" => ClientType::ConfidentialAsymmetric,
        _ => {
            let other = &request.client_type;
            return Err(OAuthError::invalid_request(format!(
                "client_type {other} is not one of public, confidential-symmetric, confidential-asymmetric"
            )));
        }
    };
    if request.name.trim().is_empty() {
        return Err(OAuthError::invalid_request("name is empty"));
    }
    check_name("name", &request.name)?;
    check_uris(request)?;
    check_scope(&request.scope)?;
    for (field, value) in [
        ("vendor", &request.vendor),
        ("software_id", &request.software_id),
        ("software_version", &request.software_version),
    ] {
        if let Some(value) = value {
            check_name(field, value)?;
        }
    }
    if request.contacts.len() > MAX_CONTACTS {
        return Err(OAuthError::invalid_request(format!(
            "contacts has {} entries; the maximum is {MAX_CONTACTS}",
            request.contacts.len()
        )));
    }
    for contact in &request.contacts {
        check_length("a contact", contact, MAX_URI_CHARS)?;
    }
    let auth_method = match (client_type, request.token_endpoint_auth_method.as_deref()) {
        (ClientType::Public, None | Some("none")) => "none".to_string(),
        (ClientType::ConfidentialSymmetric, None) => "client_secret_basic".to_string(),
        (
            ClientType::ConfidentialSymmetric,
            Some(m @ ("client_secret_basic" | "client_secret_post")),
        ) => m.to_string(),
        (ClientType::ConfidentialAsymmetric, None | Some("private_key_jwt")) => {
            "private_key_jwt".to_string()
        }
        (_, Some(other)) => {
            return Err(OAuthError::invalid_request(format!(
                "token_endpoint_auth_method {other} does not fit client_type {}",
                request.client_type
            )));
        }
    };
    let jwks = match &request.jwks {
        Some(jwks) => {
            let text = jwks.to_string();
            hearth_smart::client_assertion::Jwks::from_json(&text).map_err(|e| {
                OAuthError::invalid_request(format!("jwks is not a valid JSON Web Key Set: {e}"))
            })?;
            check_public_jwks(jwks).map_err(OAuthError::invalid_client_metadata)?;
            Some(text)
        }
        None => None,
    };
    if client_type == ClientType::ConfidentialAsymmetric
        && jwks.is_none()
        && request.jwks_uri.is_none()
    {
        return Err(OAuthError::invalid_request(
            "a confidential asymmetric client needs jwks or jwks_uri",
        ));
    }
    let grant_types = match &request.grant_types {
        Some(types) => {
            for grant_type in types {
                if !matches!(
                    grant_type.as_str(),
                    "authorization_code" | "refresh_token" | "client_credentials"
                ) {
                    return Err(OAuthError::invalid_request(format!(
                        "grant type {grant_type} is not supported"
                    )));
                }
            }
            types.clone()
        }
        // A public client cannot use client_credentials, so without redirect URIs it has
        // no grant type at all; the error names what is missing instead.
        None if request.redirect_uris.is_empty() && client_type == ClientType::Public => {
            return Err(OAuthError::invalid_redirect_uri(
                "redirect_uris is empty: a public client signs users in with the \
                 authorization_code grant, which needs at least one redirect URI",
            ));
        }
        None if request.redirect_uris.is_empty() => vec!["client_credentials".to_string()],
        None => vec![
            "authorization_code".to_string(),
            "refresh_token".to_string(),
        ],
    };
    if grant_types.is_empty() {
        return Err(OAuthError::invalid_request(
            "grant_types is empty; leave it out to get the default for the client type",
        ));
    }
    if grant_types.iter().any(|g| g == "authorization_code") && request.redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris is empty, but the authorization_code grant needs at least one \
             redirect URI",
        ));
    }
    if grant_types.iter().any(|g| g == "client_credentials") && client_type == ClientType::Public {
        return Err(OAuthError::invalid_request(
            "a public client cannot use client_credentials",
        ));
    }
    Ok(CheckedApp {
        client_type,
        auth_method,
        grant_types,
        jwks,
    })
}

/// Rejects an empty or overlong scope, and one with any malformed token, so no app is
/// registered with a scope that would be dropped at every request.
fn check_scope(scope: &str) -> OAuthResult<()> {
    if scope.trim().is_empty() {
        return Err(OAuthError::invalid_request(
            "scope is empty; list the scopes the app may be granted, separated by spaces, \
             such as launch/patient patient/*.rs openid fhirUser",
        ));
    }
    check_length("scope", scope, MAX_SCOPE_CHARS)?;
    match hearth_smart::scope::parse(scope).rejected().first() {
        Some(rejected) => Err(OAuthError::invalid_request(format!(
            "scope {} is not valid: {}",
            rejected.text, rejected.reason
        ))),
        None => Ok(()),
    }
}

/// Checks every URI of a registration: the redirect URIs, the launch URI, and the JWKS,
/// logo and client URLs.
fn check_uris(request: &AppRequest) -> OAuthResult<()> {
    if request.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "redirect_uris has {} entries; the maximum is {MAX_REDIRECT_URIS}",
            request.redirect_uris.len()
        )));
    }
    for uri in &request.redirect_uris {
        check_redirect_uri(uri)?;
    }
    if let Some(uri) = &request.launch_uri {
        check_launch_uri(uri)?;
    }
    for (field, uri) in [
        ("jwks_uri", &request.jwks_uri),
        ("logo_uri", &request.logo_uri),
        ("client_uri", &request.client_uri),
    ] {
        if let Some(uri) = uri {
            check_web_url(field, uri)?;
        }
    }
    Ok(())
}

/// Members of a JWK that only a private key has (RFC 7518 sections 6.2.2, 6.3.2 and 6.4).
const PRIVATE_KEY_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks that a registered JWKS has at least one key, that every key is a public key, and
/// that an EC key's `alg` fits its curve. A JWKS with private keys is rejected rather than
/// stored, because Hearth shows an app's JWKS to its administrators and vendor.
fn check_public_jwks(jwks: &Value) -> Result<(), String> {
    let keys = jwks["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if keys.is_empty() {
        return Err("jwks has no keys: give the public keys the client signs with".into());
    }
    for (index, key) in keys.iter().enumerate() {
        let kid = key["kid"].as_str().unwrap_or("(no kid)");
        if let Some(member) = PRIVATE_KEY_MEMBERS.iter().find(|m| key.get(**m).is_some()) {
            return Err(format!(
                "jwks key {index} ({kid}) contains the private member '{member}': \
                 register only the public key"
            ));
        }
        let expected_curve = match key["alg"].as_str() {
            Some("ES256") => Some("P-256"),
            Some("ES384") => Some("P-384"),
            Some("ES512") => Some("P-521"),
            _ => None,
        };
        if let (Some(expected), Some(curve)) = (expected_curve, key["crv"].as_str())
            && expected != curve
        {
            return Err(format!(
                "jwks key {index} ({kid}) has alg {} but curve {curve}; {} needs {expected}",
                key["alg"].as_str().unwrap_or_default(),
                key["alg"].as_str().unwrap_or_default(),
            ));
        }
    }
    Ok(())
}

/// A `jwks_uri`, `logo_uri` or `client_uri` must be an absolute http or https URL;
/// dynamic registration narrows `jwks_uri` to https URLs of public hosts.
fn check_web_url(field: &str, uri: &str) -> OAuthResult<()> {
    check_uri_length(field, uri, OAuthError::invalid_client_metadata)?;
    match url::Url::parse(uri) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        _ => Err(OAuthError::invalid_client_metadata(format!(
            "{field} {uri} is not an absolute http or https URL"
        ))),
    }
}

fn check_uri_length(field: &str, uri: &str, error: fn(String) -> OAuthError) -> OAuthResult<()> {
    let count = uri.chars().count();
    if count > MAX_URI_CHARS {
        return Err(error(format!(
            "{field} has {count} characters; the maximum is {MAX_URI_CHARS}"
        )));
    }
    Ok(())
}

/// Returns whether a URL's host is the local machine, where plain http is allowed.
fn is_loopback(parsed: &url::Url) -> bool {
    matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// Redirect URIs must be absolute, without a fragment, and https unless they point at
/// the local machine.
fn check_redirect_uri(uri: &str) -> OAuthResult<()> {
    check_uri_length("a redirect URI", uri, OAuthError::invalid_redirect_uri)?;
    let parsed = url::Url::parse(uri).map_err(|_| {
        OAuthError::invalid_redirect_uri(format!("redirect URI {uri} is not an absolute URL"))
    })?;
    if parsed.fragment().is_some() {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "redirect URI {uri} has a fragment"
        )));
    }
    match parsed.scheme() {
        "https" if parsed.has_host() => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(OAuthError::invalid_redirect_uri(format!(
            "redirect URI {uri} must be an https URL (http only for localhost, 127.0.0.1 or [::1])"
        ))),
    }
}

/// Checks a launch URI, which the portals send browsers to, by the rule of redirect URIs:
/// an absolute https URL, or http at the local machine. Any other scheme, such as
/// `javascript:` or `data:`, is rejected.
pub fn check_launch_uri(uri: &str) -> OAuthResult<()> {
    check_uri_length("launch_uri", uri, OAuthError::invalid_client_metadata)?;
    let parsed = url::Url::parse(uri).map_err(|_| {
        OAuthError::invalid_client_metadata(format!("launch_uri {uri} is not an absolute URL"))
    })?;
    match parsed.scheme() {
        "https" if parsed.has_host() => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(OAuthError::invalid_client_metadata(format!(
            "launch_uri {uri} must be an https URL (http only for localhost, 127.0.0.1 or [::1])"
        ))),
    }
}

async fn create_app(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let request: AppRequest = json_body(&body)?;
    let (app, secret) =
        register_app_at_sites(&state, &request, "admin", RegistrationSource::AdminApi).await?;
    let sites = state.store.app_sites(&app.client_id)?;
    let mut body = app_json(&app, &sites);
    if let Some(secret) = secret {
        body["client_secret"] = Value::String(secret);
    }
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

/// Registers an app and activates it at `request.sites`. The whole request, the sites
/// included, is checked before the first event is written, so a rejected request leaves
/// no app behind.
pub async fn register_app_at_sites(
    state: &AuthState,
    request: &AppRequest,
    actor: &str,
    source: RegistrationSource,
) -> OAuthResult<(App, Option<String>)> {
    check_app(request)?;
    for site in &request.sites {
        find_site(state, site)?;
    }
    let (app, secret) = register_app(state, request, actor, source).await?;
    for site in &request.sites {
        activate_app_as(state, site, &app.client_id, actor).await?;
    }
    Ok((app, secret))
}

/// Registers an app and returns it with its new client secret, if it has one. It ignores
/// `request.sites`; [`register_app_at_sites`] activates the app there.
pub async fn register_app(
    state: &AuthState,
    request: &AppRequest,
    actor: &str,
    source: RegistrationSource,
) -> OAuthResult<(App, Option<String>)> {
    let checked = check_app(request)?;
    let client_id = request.client_id.clone().unwrap_or_else(new_id);
    if client_id.is_empty()
        || client_id.chars().count() > MAX_CLIENT_ID_CHARS
        || client_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OAuthError::invalid_request(format!(
            "client_id must be 1 to {MAX_CLIENT_ID_CHARS} visible characters"
        )));
    }
    if state.store.app(&client_id)?.is_some() {
        return Err(OAuthError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            format!("client {client_id} exists already"),
        ));
    }
    let secret =
        (checked.client_type == ClientType::ConfidentialSymmetric).then(|| generate_token(32));
    let event = AppRegistered {
        event_id: new_id(),
        occurred_at: now_micros(),
        client_id: client_id.clone(),
        name: request.name.clone(),
        client_type: checked.client_type,
        token_endpoint_auth_method: checked.auth_method,
        redirect_uris: request.redirect_uris.clone(),
        launch_uri: request.launch_uri.clone(),
        scope: request.scope.clone(),
        grant_types: checked.grant_types,
        client_secret_hash: secret.as_deref().map(hash_token),
        jwks: checked.jwks,
        jwks_uri: request.jwks_uri.clone(),
        logo_uri: request.logo_uri.clone(),
        client_uri: request.client_uri.clone(),
        tos_uri: None,
        policy_uri: None,
        contacts: request.contacts.clone(),
        vendor: request.vendor.clone(),
        software_id: request.software_id.clone(),
        software_version: request.software_version.clone(),
        registered_by: actor.to_string(),
        registration_source: source,
    };
    record(state, &client_id, event).await?;
    let app = state
        .store
        .app(&client_id)?
        .ok_or_else(|| OAuthError::server_error("the registered app is missing from the store"))?;
    Ok((app, secret))
}

async fn list_apps(State(state): State<AuthState>, headers: HeaderMap) -> AdminResult {
    require_admin(&state, &headers)?;
    let mut apps = Vec::new();
    for app in state.store.apps()? {
        let sites = state.store.app_sites(&app.client_id)?;
        apps.push(app_json(&app, &sites));
    }
    Ok(Json(json!({"apps": apps})).into_response())
}

fn find_app(state: &AuthState, client_id: &str) -> OAuthResult<App> {
    state.store.app(client_id)?.ok_or_else(|| {
        OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("no app with client_id {client_id}"),
        )
    })
}

async fn get_app(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let app = find_app(&state, &client_id)?;
    let sites = state.store.app_sites(&client_id)?;
    Ok(Json(app_json(&app, &sites)).into_response())
}

async fn update_app(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let request: AppRequest = json_body(&body)?;
    let app = update_app_as(
        &state,
        &client_id,
        &request,
        "admin",
        RegistrationSource::AdminApi,
    )
    .await?;
    let sites = state.store.app_sites(&client_id)?;
    Ok(Json(app_json(&app, &sites)).into_response())
}

/// Replaces an app's registration, keeping its client secret.
pub async fn update_app_as(
    state: &AuthState,
    client_id: &str,
    request: &AppRequest,
    actor: &str,
    source: RegistrationSource,
) -> OAuthResult<App> {
    let current = find_app(state, client_id)?;
    let checked = check_app(request)?;
    let event = AppUpdated {
        event_id: new_id(),
        occurred_at: now_micros(),
        client_id: client_id.to_string(),
        name: request.name.clone(),
        client_type: checked.client_type,
        token_endpoint_auth_method: checked.auth_method,
        redirect_uris: request.redirect_uris.clone(),
        launch_uri: request.launch_uri.clone(),
        scope: request.scope.clone(),
        grant_types: checked.grant_types,
        client_secret_hash: current.client_secret_hash.clone(),
        jwks: checked.jwks,
        jwks_uri: request.jwks_uri.clone(),
        logo_uri: request.logo_uri.clone(),
        client_uri: request.client_uri.clone(),
        tos_uri: None,
        policy_uri: None,
        contacts: request.contacts.clone(),
        vendor: request.vendor.clone(),
        software_id: request.software_id.clone(),
        software_version: request.software_version.clone(),
        updated_by: actor.to_string(),
        update_source: source,
    };
    record(state, client_id, event).await?;
    find_app(state, client_id)
}

async fn rotate_secret(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let secret = rotate_secret_as(&state, &client_id, "admin").await?;
    Ok(no_store(
        Json(json!({"client_id": client_id, "client_secret": secret})).into_response(),
    ))
}

/// Issues a new client secret for a confidential symmetric app and returns it; only its
/// hash is stored.
pub async fn rotate_secret_as(
    state: &AuthState,
    client_id: &str,
    actor: &str,
) -> OAuthResult<String> {
    let app = find_app(state, client_id)?;
    if app.client_type != ClientType::ConfidentialSymmetric {
        return Err(OAuthError::invalid_request(
            "only confidential symmetric clients have a secret",
        ));
    }
    let secret = generate_token(32);
    let event = AppSecretRotated {
        event_id: new_id(),
        occurred_at: now_micros(),
        client_id: client_id.to_string(),
        client_secret_hash: hash_token(&secret),
        previous_secret_expires_at: None,
        actor: actor.to_string(),
    };
    record(state, client_id, event).await?;
    Ok(secret)
}

async fn disable_app(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    disable_app_as(&state, &client_id, "admin").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Disables an app and revokes every grant it holds.
pub async fn disable_app_as(state: &AuthState, client_id: &str, actor: &str) -> OAuthResult<()> {
    find_app(state, client_id)?;
    let event = AppDisabled {
        event_id: new_id(),
        occurred_at: now_micros(),
        client_id: client_id.to_string(),
        reason: None,
        actor: actor.to_string(),
    };
    record(state, client_id, event).await?;
    for grant in state.store.grants(Some(client_id), None)? {
        if !grant.is_revoked() {
            revoke(state, &grant, RevocationReason::AppDisabled, actor).await?;
        }
    }
    Ok(())
}

async fn enable_app(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    enable_app_as(&state, &client_id, "admin").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn enable_app_as(state: &AuthState, client_id: &str, actor: &str) -> OAuthResult<()> {
    find_app(state, client_id)?;
    let event = AppEnabled {
        event_id: new_id(),
        occurred_at: now_micros(),
        client_id: client_id.to_string(),
        actor: actor.to_string(),
    };
    record(state, client_id, event).await?;
    Ok(())
}

/// The body of `POST /admin/sites` and `PUT /admin/sites/{site_id}`; the checks are in
/// `site_settings`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRequest {
    /// Required when creating a site; optional when replacing one's settings.
    #[serde(default)]
    pub site_id: String,
    pub name: String,
    /// `repository` (default) or `ehr`.
    pub backing: Option<String>,
    pub upstream_base_url: Option<String>,
    #[serde(default)]
    pub dynamic_registration: bool,
    /// `none` (default), `bearer` (token from the server configuration) or
    /// `backend-services`.
    pub upstream_auth_method: Option<String>,
    pub upstream_client_id: Option<String>,
    pub upstream_token_url: Option<String>,
    pub upstream_scope: Option<String>,
    /// Such as `4.0.1` or `3.0.2`; STU3 upstreams are converted to R4.
    pub upstream_fhir_version: Option<String>,
    #[serde(default)]
    pub cache_freshness_s: BTreeMap<String, i64>,
    #[serde(default)]
    pub default_cache_freshness_s: i64,
}

pub(crate) fn site_json(site: &Site) -> Value {
    serde_json::to_value(site).unwrap_or(Value::Null)
}

async fn create_site(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let value: Value = json_body(&body)?;
    reject_secrets(&value)?;
    let request: SiteRequest = serde_json::from_value(value)
        .map_err(|e| OAuthError::invalid_request(format!("the request body is not valid: {e}")))?;
    let site = create_site_as(&state, &request, "admin").await?;
    Ok((StatusCode::CREATED, Json(site_json(&site))).into_response())
}

/// Registers a new site.
pub async fn create_site_as(
    state: &AuthState,
    request: &SiteRequest,
    actor: &str,
) -> OAuthResult<Site> {
    let valid_id = !request.site_id.is_empty()
        && request.site_id.len() <= 64
        && request
            .site_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_id {
        return Err(OAuthError::invalid_request(
            "site_id must be 1 to 64 letters, digits, - or _",
        ));
    }
    if state.store.site(&request.site_id)?.is_some() {
        return Err(OAuthError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            format!("site {} exists already", request.site_id),
        ));
    }
    let backing = match request.backing.as_deref() {
        None => Backing::Repository,
        Some(text) => parse_backing(text)?,
    };
    let site = checked_site(&request.site_id, request, backing)?;
    let event = SiteRegistered {
        event_id: new_id(),
        occurred_at: now_micros(),
        site_id: site.site_id,
        name: site.name,
        fhir_base_path: site.fhir_base_path,
        backing: site.backing,
        upstream_base_url: site.upstream_base_url,
        upstream_auth_method: site.upstream_auth_method,
        upstream_client_id: site.upstream_client_id,
        upstream_token_url: site.upstream_token_url,
        upstream_scope: site.upstream_scope,
        upstream_fhir_version: site.upstream_fhir_version,
        dynamic_registration: site.dynamic_registration,
        cache_freshness_s: site.cache_freshness_s,
        default_cache_freshness_s: site.default_cache_freshness_s,
        actor: actor.to_string(),
    };
    record(state, &request.site_id, event).await?;
    state
        .store
        .site(&request.site_id)?
        .ok_or_else(|| OAuthError::server_error("the registered site is missing from the store"))
}

fn site_registered(
    site_id: &str,
    name: &str,
    backing: Backing,
    upstream: Option<String>,
    dynamic_registration: bool,
) -> SiteRegistered {
    SiteRegistered {
        event_id: new_id(),
        occurred_at: now_micros(),
        site_id: site_id.to_string(),
        name: name.to_string(),
        fhir_base_path: fhir_base_path(site_id),
        backing,
        upstream_base_url: upstream,
        upstream_auth_method: UpstreamAuthMethod::None,
        upstream_client_id: None,
        upstream_token_url: None,
        upstream_scope: None,
        upstream_fhir_version: None,
        dynamic_registration,
        cache_freshness_s: BTreeMap::new(),
        default_cache_freshness_s: 0,
        actor: "admin".to_string(),
    }
}

/// Registers the `default` site, backed by the repository, unless it exists.
pub async fn ensure_default_site(state: &AuthState) -> OAuthResult<()> {
    if state.store.site(DEFAULT_SITE)?.is_some() {
        return Ok(());
    }
    let event = site_registered(
        DEFAULT_SITE,
        "Default site",
        Backing::Repository,
        None,
        false,
    );
    record(state, DEFAULT_SITE, event).await?;
    Ok(())
}

async fn list_sites(State(state): State<AuthState>, headers: HeaderMap) -> AdminResult {
    require_admin(&state, &headers)?;
    let sites: Vec<Value> = state.store.sites()?.iter().map(site_json).collect();
    Ok(Json(json!({"sites": sites})).into_response())
}

async fn site_apps(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(site_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    find_site(&state, &site_id)?;
    let apps: Vec<Value> = state
        .store
        .active_apps(&site_id)?
        .iter()
        .map(|a| app_json(a, std::slice::from_ref(&site_id)))
        .collect();
    Ok(Json(json!({"apps": apps})).into_response())
}

pub(crate) fn find_site(state: &AuthState, site_id: &str) -> OAuthResult<Site> {
    state.store.site(site_id)?.ok_or_else(|| {
        OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("no site {site_id}"),
        )
    })
}

/// Activates an app at a site.
pub async fn activate_app(state: &AuthState, site_id: &str, client_id: &str) -> OAuthResult<()> {
    activate_app_as(state, site_id, client_id, "admin").await
}

pub async fn activate_app_as(
    state: &AuthState,
    site_id: &str,
    client_id: &str,
    actor: &str,
) -> OAuthResult<()> {
    find_site(state, site_id)?;
    find_app(state, client_id)?;
    let event = AppActivated {
        event_id: new_id(),
        occurred_at: now_micros(),
        site_id: site_id.to_string(),
        client_id: client_id.to_string(),
        actor: actor.to_string(),
    };
    record(state, client_id, event).await?;
    Ok(())
}

async fn activate(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path((site_id, client_id)): Path<(String, String)>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    activate_app(&state, &site_id, &client_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deactivate(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path((site_id, client_id)): Path<(String, String)>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    deactivate_app_as(&state, &site_id, &client_id, "admin").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn deactivate_app_as(
    state: &AuthState,
    site_id: &str,
    client_id: &str,
    actor: &str,
) -> OAuthResult<()> {
    find_site(state, site_id)?;
    let event = AppDeactivated {
        event_id: new_id(),
        occurred_at: now_micros(),
        site_id: site_id.to_string(),
        client_id: client_id.to_string(),
        actor: actor.to_string(),
    };
    record(state, client_id, event).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct GrantQuery {
    client_id: Option<String>,
    site_id: Option<String>,
}

fn grant_json(grant: &Grant) -> Value {
    let approval = &grant.approval;
    json!({
        "grant_id": approval.grant_id,
        "client_id": approval.client_id,
        "site_id": approval.site_id,
        "user_id": approval.user_id,
        "fhir_user": approval.fhir_user,
        "patient": approval.patient,
        "scope": approval.scope_granted,
        "granted_at": hearth_cdr::format_instant(approval.occurred_at),
        "revoked": grant.is_revoked(),
        "revoked_reason": grant.revoked_reason,
    })
}

async fn list_grants(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Query(query): Query<GrantQuery>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let grants = state
        .store
        .grants(query.client_id.as_deref(), query.site_id.as_deref())?;
    let grants: Vec<Value> = grants.iter().map(grant_json).collect();
    Ok(Json(json!({"grants": grants})).into_response())
}

async fn get_grant(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(grant_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let grant = find_grant(&state, &grant_id)?;
    Ok(Json(grant_json(&grant)).into_response())
}

fn find_grant(state: &AuthState, grant_id: &str) -> OAuthResult<Grant> {
    state.store.grant(grant_id)?.ok_or_else(|| {
        OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("no grant {grant_id}"),
        )
    })
}

async fn revoke_grant(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(grant_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    revoke_grant_as(&state, &grant_id, "admin").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revokes a grant and every token issued under it. Revoking a revoked grant changes
/// nothing.
pub async fn revoke_grant_as(state: &AuthState, grant_id: &str, actor: &str) -> OAuthResult<()> {
    let grant = state.store.grant(grant_id)?.ok_or_else(|| {
        OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("no grant {grant_id}"),
        )
    })?;
    if grant.is_revoked() {
        return Ok(());
    }
    revoke(state, &grant, RevocationReason::Admin, actor).await
}

pub(crate) async fn revoke(
    state: &AuthState,
    grant: &Grant,
    reason: RevocationReason,
    actor: &str,
) -> OAuthResult<()> {
    let approval = &grant.approval;
    let event = GrantRevoked {
        event_id: new_id(),
        occurred_at: now_micros(),
        grant_id: approval.grant_id.clone(),
        client_id: approval.client_id.clone(),
        site_id: approval.site_id.clone(),
        reason,
        actor: actor.to_string(),
        detail: None,
    };
    record(state, &approval.grant_id, event).await?;
    Ok(())
}

async fn rotate_keys(State(state): State<AuthState>, headers: HeaderMap) -> AdminResult {
    require_admin(&state, &headers)?;
    state
        .keys
        .write()
        .rotate()
        .map_err(OAuthError::server_error)?;
    Ok(Json(state.keys.read().jwks()).into_response())
}

#[derive(Debug, Deserialize)]
struct EventQuery {
    /// `hearth.auth`, `hearth.api`, `hearth.resources`, `hearth.bulk` or `hearth.ehr`.
    topic: Option<String>,
    #[serde(default)]
    partition: u32,
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

/// Reads events of a topic from an offset, decoded to JSON; for operators and tests.
/// Resource events are summarized without the resources, which carry patient data.
async fn list_events(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Query(query): Query<EventQuery>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let known = [
        hearth_log::topics::AUTH,
        hearth_log::topics::API,
        hearth_log::topics::RESOURCES,
        hearth_log::topics::BULK,
        hearth_log::topics::EHR,
    ];
    let Some(topic) = query.topic.clone() else {
        return Err(OAuthError::invalid_request(format!(
            "the topic query parameter is missing; use one of {}",
            known.join(", ")
        )));
    };
    if !known.contains(&topic.as_str()) {
        return Err(OAuthError::invalid_request(format!(
            "unknown topic {topic}; use one of {}",
            known.join(", ")
        )));
    }
    let limit = query.limit.unwrap_or(100).min(1000);
    let ends = state
        .log
        .end_offsets(&topic)
        .await
        .map_err(OAuthError::temporarily_unavailable)?;
    let end = ends.get(query.partition as usize).copied().unwrap_or(0);
    let mut events = Vec::new();
    if query.from < end {
        let mut reader = state
            .log
            .read(&topic, query.partition, query.from)
            .await
            .map_err(OAuthError::temporarily_unavailable)?;
        while events.len() < limit.min((end - query.from) as usize) {
            let batch = reader
                .next_batch(limit - events.len(), std::time::Duration::from_secs(2))
                .await
                .map_err(OAuthError::temporarily_unavailable)?;
            if batch.is_empty() {
                break;
            }
            for record in batch {
                events.push(event_json(&record));
            }
        }
    }
    Ok(Json(json!({"topic": topic, "end": end, "events": events})).into_response())
}

fn event_json(record: &hearth_log::Record) -> Value {
    let decoded = hearth_schemas::decode_any(&record.value);
    let (name, fields) = match decoded {
        Ok(hearth_schemas::AnyEvent::ResourceTransaction(event)) => {
            let entries: Vec<Value> = event
                .entries
                .iter()
                .map(|e| json!({"action": e.action, "resource_type": e.resource_type, "id": e.id}))
                .collect();
            (
                "hearth.events.ResourceTransaction".to_string(),
                json!({"event_id": event.event_id, "occurred_at": event.occurred_at, "kind": event.kind, "entries": entries}),
            )
        }
        Ok(event) => (event.name().to_string(), event.to_json()),
        Err(error) => (
            "undecodable".to_string(),
            json!({"error": error.to_string()}),
        ),
    };
    json!({"offset": record.offset, "event": name, "fields": fields})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client_type: &str) -> AppRequest {
        serde_json::from_value(serde_json::json!({
            "name": "Growth chart",
            "client_type": client_type,
            "redirect_uris": ["https://app.example/cb"],
            "scope": "launch patient/*.rs",
        }))
        .expect("a valid request body")
    }

    #[test]
    fn jwks_must_hold_public_keys_only() {
        let public = serde_json::json!({"kty": "EC", "crv": "P-384", "alg": "ES384",
            "kid": "k1", "x": "AAAA", "y": "BBBB"});
        assert_eq!(
            check_public_jwks(&serde_json::json!({"keys": [public]})),
            Ok(())
        );

        let mut private = public.clone();
        private["d"] = serde_json::json!("CCCC");
        let error = check_public_jwks(&serde_json::json!({"keys": [private]})).unwrap_err();
        assert!(error.contains("private member 'd'"), "{error}");

        let secret = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        let error = check_public_jwks(&serde_json::json!({"keys": [secret]})).unwrap_err();
        assert!(error.contains("private member 'k'"), "{error}");

        let error = check_public_jwks(&serde_json::json!({"keys": []})).unwrap_err();
        assert!(error.contains("no keys"), "{error}");

        let mut mismatched = public.clone();
        mismatched["crv"] = serde_json::json!("P-256");
        let error = check_public_jwks(&serde_json::json!({"keys": [mismatched]})).unwrap_err();
        assert!(error.contains("ES384 needs P-384"), "{error}");
    }

    #[test]
    fn client_type_is_read_in_either_spelling() {
        for (spelling, expected) in [
            ("public", ClientType::Public),
            ("PUBLIC", ClientType::Public),
            ("confidential-symmetric", ClientType::ConfidentialSymmetric),
            ("CONFIDENTIAL_SYMMETRIC", ClientType::ConfidentialSymmetric),
        ] {
            let checked = check_app(&request(spelling));
            assert_eq!(
                checked.map(|c| c.client_type).ok(),
                Some(expected),
                "{spelling}"
            );
        }
    }

    #[test]
    fn unknown_client_type_names_the_choices() {
        let Err(error) = check_app(&request("confidential")) else {
            panic!("an unknown client type was accepted");
        };
        assert!(
            error.description.contains("confidential-symmetric"),
            "{}",
            error.description
        );
    }
}
