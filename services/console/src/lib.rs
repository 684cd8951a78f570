//! Hearth's web console and portals, served by `hearth serve` under `/console`, and the
//! bundled demo SMART app under `/demo-app`.
//!
//! Pages are rendered on the server as HTML. One small hand-written script draws the usage
//! charts. Every asset is embedded in the binary, so the pages need no network beyond
//! Hearth itself. Users sign in with the credentials that
//! the auth store holds (argon2 hashes). Sessions are events on `hearth.auth` like every
//! other state change, and the cookie carries a random value whose SHA-256 the store keys
//! the session by. Every form carries a CSRF token derived from the session.
//!
//! What a user sees depends on its roles: a platform admin governs everything, a site
//! admin one site, an app vendor sees the usage of its own apps, and users whose FHIR
//! user is a Practitioner or Patient use the provider or patient portal.

mod apps;
mod assets;
mod demo;
mod error;
mod html;
mod portal;
mod session;
mod signin;
mod site_form;
mod sites;
mod usage;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use hearth_auth::AuthState;

pub use demo::{DEMO_CLIENT_ID, ensure_demo_app};
pub use error::{ConsoleError, ConsoleResult};

/// Settings of the console.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The absolute URL browsers reach Hearth at, without a trailing slash.
    pub public_url: String,
    /// Lifetime of a console session, in seconds.
    pub session_seconds: i64,
    /// Base URL of the analytics admin API (`.../admin/analytics`), called with the admin
    /// token. `None` shows the usage pages as not configured.
    pub analytics_url: Option<String>,
}

impl ConsoleSettings {
    pub fn new(public_url: &str) -> Self {
        let public_url = public_url.trim_end_matches('/').to_string();
        ConsoleSettings {
            analytics_url: Some(format!("{public_url}/admin/analytics")),
            public_url,
            session_seconds: 8 * 3600,
        }
    }

    /// Whether cookies get the `Secure` attribute: always for https, and for plain http
    /// only on the loopback address, where browsers accept secure cookies too.
    pub fn secure_cookies(&self) -> bool {
        let Ok(url) = url::Url::parse(&self.public_url) else {
            return true;
        };
        url.scheme() == "https"
            || matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    }
}

/// State shared by every console handler.
#[derive(Clone)]
pub struct ConsoleState {
    pub auth: AuthState,
    pub settings: Arc<ConsoleSettings>,
    http: reqwest::Client,
    failures: Arc<signin::FailedSignIns>,
}

impl ConsoleState {
    pub fn new(auth: AuthState, settings: ConsoleSettings) -> Self {
        if !settings.secure_cookies() {
            tracing::warn!(
                public_url = %settings.public_url,
                "the console is served over plain http on a non-loopback address, so its session cookie cannot be marked Secure"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        ConsoleState {
            auth,
            settings: Arc::new(settings),
            http,
            failures: Arc::new(signin::FailedSignIns::default()),
        }
    }
}

/// Builds the routes of the console under `/console` and of the demo app under `/demo-app`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(signin::home))
        .route("/console/", get(signin::home))
        .route(
            "/console/sign-in",
            get(signin::sign_in_page).post(signin::sign_in),
        )
        .route("/console/sign-out", post(signin::sign_out))
        .route("/console/apps", get(apps::list).post(apps::create))
        .route("/console/apps/new", get(apps::new_form))
        .route(
            "/console/apps/{client_id}",
            get(apps::show).post(apps::update),
        )
        .route(
            "/console/apps/{client_id}/secret",
            post(apps::rotate_secret),
        )
        .route("/console/apps/{client_id}/status", post(apps::set_status))
        .route("/console/sites", get(sites::list).post(sites::create))
        .route("/console/sites/{site_id}", get(sites::show))
        .route(
            "/console/sites/{site_id}/settings",
            get(sites::settings_page).post(sites::update_settings),
        )
        .route("/console/sites/{site_id}/apps", post(sites::set_activation))
        .route(
            "/console/sites/{site_id}/grants/revoke",
            post(sites::revoke),
        )
        .route("/console/users", get(users::list).post(users::create))
        .route("/console/users/{user_id}/disable", post(users::disable))
        .route("/console/usage", get(usage::page))
        .route("/console/usage/data", get(usage::data))
        .route("/console/portal", get(portal::provider_page))
        .route("/console/portal/launch", post(portal::launch))
        .route("/console/patient-portal", get(portal::patient_page))
        .route("/console/assets/{name}", get(assets::console_asset))
        .route("/favicon.ico", get(assets::favicon))
        .route("/demo-app", get(|| async { Redirect::to("/demo-app/") }))
        .route("/demo-app/", get(assets::demo_index))
        .route("/demo-app/{name}", get(assets::demo_asset))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}

/// Largest form body the console accepts; a JSON Web Key Set is the largest field.
const MAX_FORM_BYTES: usize = 256 * 1024;
