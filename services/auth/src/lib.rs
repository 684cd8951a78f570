//! Hearth's authorization server for SMART App Launch 2.2 (with v1 scopes accepted).
//!
//! Every decision is an event on `hearth.auth`, appended before the response is sent;
//! the auth store is the projection of that topic. Each site has its own endpoints: the
//! default site's are under `/auth` beside its FHIR base `/fhir`, and site `x` has
//! `/sites/x/auth` beside `/sites/x/fhir`. [`route_site`] maps a site's paths onto the
//! shared routes and records which site a request is for.

mod admin;
mod authorize;
mod client_auth;
mod discovery;
mod events;
mod guard;
mod introspect;
mod jwks_fetch;
mod launch;
mod limits;
mod manage;
mod oauth_error;
mod pages;
mod patients;
mod portal_session;
mod register;
mod session;
mod sign_in;
mod site;
mod site_settings;
mod token;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hearth_auth_store::{AuthOutcome, AuthStore};
use hearth_cdr::Repository;
use hearth_log::Log;
use hearth_projection::ProjectionHandle;
use hearth_smart::keys::KeyStore;
use parking_lot::RwLock;

pub use admin::{
    AppRequest, SiteRequest, activate_app_as, admin_router, check_app, check_launch_uri,
    create_site_as, deactivate_app_as, disable_app_as, enable_app_as, ensure_default_site,
    register_app, register_app_at_sites, revoke_grant_as, rotate_secret_as, update_app_as,
};
pub use events::{new_id, now_micros, record};
pub use guard::require_token;
pub use jwks_fetch::JwksFetcher;
pub use launch::{LaunchRequest, create_launch_as};
pub use limits::{
    MAX_CLIENT_ID_CHARS, MAX_CONTACTS, MAX_NAME_CHARS, MAX_REDIRECT_URIS, MAX_SCOPE_CHARS,
    MAX_URI_CHARS,
};
pub use oauth_error::{
    MAX_BODY_BYTES, OAuthError, OAuthResult, drain_oversized_body, oauth_for_framework_errors,
};
pub use pages::protect_html_pages;
pub use patients::{UpstreamError, UpstreamResources, read_at, search_at};
pub use portal_session::{PORTAL_SESSION_COOKIE, cookie_values};
pub use site::{DEFAULT_SITE, SiteId, auth_base_url, fhir_base_url, resolve_site, route_site};
pub use site_settings::{
    BACKINGS, MAX_FRESHNESS_SECONDS, parse_backing, site_request, update_site_as,
};
pub use users::{
    MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES, UserRequest, create_user_as, disable_user_as, user_json,
};

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Lifetimes and limits of the authorization server.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The absolute URL clients reach the server at, without a trailing slash.
    pub public_url: String,
    /// Bearer credential of the admin API and of EHR launch creation.
    pub admin_token: String,
    /// Lifetime of access tokens from user grants, in seconds (at most one hour).
    pub access_token_seconds: i64,
    /// Lifetime of backend-services access tokens, in seconds (at most five minutes).
    pub backend_token_seconds: i64,
    /// Lifetime of authorization codes, in seconds.
    pub code_seconds: i64,
    /// Lifetime of offline refresh tokens, in seconds.
    pub offline_refresh_seconds: i64,
    /// Lifetime of a sign-in session, and so of online refresh tokens, in seconds.
    pub session_seconds: i64,
    /// How long an EHR launch context stays usable, in seconds.
    pub launch_seconds: i64,
    /// How long a request waits for the auth store to apply its event.
    pub write_timeout: Duration,
}

impl AuthSettings {
    pub fn new(public_url: &str, admin_token: &str) -> Self {
        AuthSettings {
            public_url: public_url.trim_end_matches('/').to_string(),
            admin_token: admin_token.to_string(),
            access_token_seconds: 3600,
            backend_token_seconds: 300,
            code_seconds: 60,
            offline_refresh_seconds: 90 * 24 * 3600,
            session_seconds: 8 * 3600,
            launch_seconds: 3600,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler of the authorization server needs.
#[derive(Clone)]
pub struct AuthState {
    pub settings: Arc<AuthSettings>,
    pub store: AuthStore,
    pub log: Arc<dyn Log>,
    pub projection: ProjectionHandle<AuthOutcome>,
    /// Signing keys; written only when an administrator rotates them.
    pub keys: Arc<RwLock<KeyStore>>,
    /// Access tokens whose signatures were verified already.
    pub verified: Arc<guard::VerifiedTokens>,
    /// The clinical data repository, for the patient picker and users' FHIR resources.
    pub repository: Repository,
    pub sessions: Arc<session::Sessions>,
    /// Fetches apps' JSON Web Key Sets from their `jwks_uri`.
    pub jwks: JwksFetcher,
    pub jwks_cache: Arc<client_auth::JwksCache>,
    /// Failed sign-ins per username, for the lock after repeated failures.
    pub failed_sign_ins: Arc<sign_in::FailedSignIns>,
    /// Reads of EHR-backed sites' upstreams, for their patient pickers and launch context.
    /// Without it, those steps fail at EHR-backed sites.
    pub upstream: Option<Arc<dyn UpstreamResources>>,
}

impl AuthState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: AuthSettings,
        store: AuthStore,
        log: Arc<dyn Log>,
        projection: ProjectionHandle<AuthOutcome>,
        keys: KeyStore,
        repository: Repository,
        jwks: JwksFetcher,
    ) -> Self {
        AuthState {
            settings: Arc::new(settings),
            store,
            log,
            projection,
            keys: Arc::new(RwLock::new(keys)),
            verified: Arc::new(guard::VerifiedTokens::default()),
            repository,
            sessions: Arc::new(session::Sessions::default()),
            jwks,
            jwks_cache: Arc::new(client_auth::JwksCache::default()),
            failed_sign_ins: Arc::new(sign_in::FailedSignIns::default()),
            upstream: None,
        }
    }

    /// Sets the client that reads EHR-backed sites' upstreams.
    pub fn with_upstream(mut self, upstream: Arc<dyn UpstreamResources>) -> Self {
        self.upstream = Some(upstream);
        self
    }
}

/// The endpoints of a site's authorization server, to be nested under `/auth`.
pub fn auth_router(state: AuthState) -> Router {
    Router::new()
        .route(
            "/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/authorize/login", post(authorize::login))
        .route("/authorize/patient", post(authorize::pick_patient))
        .route("/authorize/decision", post(authorize::decide))
        .route("/token", post(token::token))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(introspect::revoke))
        .route("/jwks", get(discovery::jwks))
        .route("/register", post(register::register))
        .route("/launch", post(launch::create_launch))
        .route("/manage", get(manage::show))
        .route("/manage/login", post(manage::login))
        .route("/manage/revoke", post(manage::revoke))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route_layer(axum::middleware::from_fn(record_auth_route))
        .with_state(state)
}

/// Route layer of the authorization server: records the route and endpoint name.
async fn record_auth_route(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let local = route.strip_prefix("/auth").unwrap_or(&route).to_string();
    hearth_fhir::audit::CallRecord::update(&request, |info| {
        info.operation = Some(local.trim_start_matches('/').to_string());
        info.route = Some(format!("/auth{local}"));
    });
    next.run(request).await
}

/// The discovery document, to be routed at `{fhir base}/.well-known/smart-configuration`.
pub fn discovery_router(state: AuthState) -> Router {
    Router::new()
        .route(
            "/.well-known/smart-configuration",
            get(discovery::smart_configuration),
        )
        .with_state(state)
}
