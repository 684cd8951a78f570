//! Sign-in and sign-out of the console.
//!
//! The sign-in form is protected against login CSRF with a double-submit value: a random
//! cookie that the form repeats in a hidden field. Five failed attempts for one username
//! within fifteen minutes lock that username out for the rest of the window.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hearth_schemas::{
    ConsoleSignInFailed, ConsoleSignInFailure, ConsoleSignedIn, ConsoleSignedOut,
};
use hearth_smart::secret::{generate_token, hash_token};
use parking_lot::Mutex;

use crate::ConsoleState;
use crate::error::{ConsoleError, ConsoleResult};
use crate::html::{self, escape};
use crate::session::{self, FormData, SESSION_COOKIE, Viewer, same_secret};

const SIGN_IN_COOKIE: &str = "hearth_console_signin";
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Recent failed sign-ins per username, in memory of this process.
#[derive(Default)]
pub struct FailedSignIns {
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
}

impl FailedSignIns {
    fn locked(&self, username: &str) -> bool {
        let mut attempts = self.attempts.lock();
        attempts.retain(|_, times| {
            times.retain(|t| t.elapsed() < FAILURE_WINDOW);
            !times.is_empty()
        });
        attempts
            .get(username)
            .is_some_and(|t| t.len() >= MAX_FAILURES)
    }

    fn add(&self, username: &str) {
        self.attempts
            .lock()
            .entry(username.to_string())
            .or_default()
            .push(Instant::now());
    }

    fn clear(&self, username: &str) {
        self.attempts.lock().remove(username);
    }
}

/// `GET /console/`: sends the viewer to the first page its roles allow.
pub async fn home(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> ConsoleResult<Response> {
    let Some(viewer) = session::viewer_of(&state, &headers)? else {
        return Ok(Redirect::to("/console/sign-in").into_response());
    };
    Ok(Redirect::to(start_page(&viewer)).into_response())
}

fn start_page(viewer: &Viewer) -> &'static str {
    if viewer.is_platform_admin() || viewer.admin_site().is_some() {
        "/console/apps"
    } else if viewer.vendor().is_some() {
        "/console/usage"
    } else if viewer.practitioner().is_some() {
        "/console/portal"
    } else {
        "/console/patient-portal"
    }
}

pub async fn sign_in_page(State(state): State<ConsoleState>) -> Response {
    form_page(&state, None, "")
}

fn form_page(state: &ConsoleState, error: Option<&str>, username: &str) -> Response {
    let token = generate_token(16);
    let error = error.map(|e| html::notice("error", e)).unwrap_or_default();
    let body = format!(
        "<div class=\"narrow\"><h1>Sign in to the Hearth console</h1>{error}\
         <form method=\"post\" action=\"/console/sign-in\">\
         <input type=\"hidden\" name=\"signin\" value=\"{token}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">Administrators are added with <code>hearth console add-admin</code>; \
         practitioners and patients with <code>hearth users add</code>.</p></div>",
        username = escape(username),
    );
    let mut response = html::no_store(Html(html::bare_page("Sign in", &body)).into_response());
    let cookie = cookie_header(state, CookieKind::SignInForm, &token, Some(600));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// Which cookie a `Set-Cookie` value is for, with its path and `SameSite` rule.
#[derive(Debug, Clone, Copy)]
enum CookieKind {
    /// The session, read by the console and by the authorization pages. `SameSite=Lax`,
    /// because an app on another origin reaches the authorize endpoint by a cross-site
    /// navigation. Every console form still carries a CSRF token.
    Session,
    /// A session cookie of the console's earlier releases, which had `Path=/console`;
    /// only ever deleted.
    OldSession,
    /// The sign-in form's double-submit value, needed only by the console.
    SignInForm,
}

/// Builds a `Set-Cookie` value: HttpOnly, Secure where the browser accepts it, with the
/// path and `SameSite` rule of its kind. `max_age` of `Some(0)` deletes the cookie.
fn cookie_header(
    state: &ConsoleState,
    kind: CookieKind,
    value: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let (name, path, same_site) = match kind {
        CookieKind::Session => (SESSION_COOKIE, "/", "Lax"),
        CookieKind::OldSession => (SESSION_COOKIE, "/console", "Strict"),
        CookieKind::SignInForm => (SIGN_IN_COOKIE, "/console", "Strict"),
    };
    let secure = if state.settings.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let text = format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}{secure}{age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn sign_in(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> ConsoleResult<Response> {
    let form = FormData::parse(&body)?;
    let expected = session::cookie(&headers, SIGN_IN_COOKIE);
    let presented = form.get("signin");
    if !matches!((expected.as_deref(), presented), (Some(a), Some(b)) if same_secret(a, b)) {
        return Ok(form_page(
            &state,
            Some("The sign-in form expired. Please sign in again."),
            "",
        ));
    }
    let username = form.get("username").unwrap_or_default().to_string();
    let password = form.raw("password").unwrap_or_default().to_string();
    if state.failures.locked(&username) {
        return Ok(form_page(
            &state,
            Some("Too many failed sign-ins for this username. Try again in 15 minutes."),
            &username,
        ));
    }

    let user = state.auth.store.user_by_username(&username)?;
    let stored = user.as_ref().map(|u| u.registration.password_hash.clone());
    // Argon2 takes tens of milliseconds, so it runs off the async workers. An unknown
    // username is checked against a dummy hash, so timing does not reveal which exist.
    let verified = tokio::task::spawn_blocking(move || {
        let hash = stored.as_deref().unwrap_or_else(|| dummy_hash());
        hearth_smart::secret::verify_password(&password, hash).unwrap_or(false)
    })
    .await
    .unwrap_or(false);

    let failure = match &user {
        None => Some(ConsoleSignInFailure::UnknownUser),
        Some(_) if !verified => Some(ConsoleSignInFailure::WrongPassword),
        Some(u) if u.disabled => Some(ConsoleSignInFailure::Disabled),
        Some(u) if !Viewer::from_user(u, "").has_console_access() => {
            Some(ConsoleSignInFailure::NoConsoleAccess)
        }
        Some(_) => None,
    };
    if let Some(reason) = failure {
        state.failures.add(&username);
        let event = ConsoleSignInFailed {
            event_id: hearth_auth::new_id(),
            occurred_at: hearth_auth::now_micros(),
            username: username.clone(),
            reason,
        };
        hearth_auth::record(&state.auth, &username, event).await?;
        tracing::info!(?reason, "console sign-in rejected");
        let message = if reason == ConsoleSignInFailure::NoConsoleAccess {
            "This user has no console role and is neither a practitioner nor a patient."
        } else {
            "The username or password is not correct."
        };
        return Ok(form_page(&state, Some(message), &username));
    }
    let Some(user) = user else {
        return Err(ConsoleError::SignInNeeded);
    };
    state.failures.clear(&username);

    let session_id = generate_token(32);
    let seconds = state.settings.session_seconds.max(60);
    let event = ConsoleSignedIn {
        event_id: hearth_auth::new_id(),
        occurred_at: hearth_auth::now_micros(),
        session_hash: hash_token(&session_id),
        user_id: user.registration.user_id.clone(),
        expires_at: hearth_auth::now_micros() + seconds * 1_000_000,
    };
    hearth_auth::record(&state.auth, &user.registration.user_id, event).await?;
    tracing::info!(user_id = %user.registration.user_id, "console sign-in");

    let viewer = Viewer::from_user(&user, &session_id);
    let mut response = Redirect::to(start_page(&viewer)).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, CookieKind::Session, &session_id, Some(seconds)),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, CookieKind::OldSession, "", Some(0)),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, CookieKind::SignInForm, "", Some(0)),
    );
    Ok(response)
}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    body: Bytes,
) -> ConsoleResult<Response> {
    FormData::checked(&viewer, &body)?;
    let event = ConsoleSignedOut {
        event_id: hearth_auth::new_id(),
        occurred_at: hearth_auth::now_micros(),
        session_hash: viewer.session_hash.clone(),
        user_id: viewer.user_id.clone(),
    };
    hearth_auth::record(&state.auth, &viewer.user_id, event).await?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    for kind in [CookieKind::Session, CookieKind::OldSession] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie_header(&state, kind, "", Some(0)));
    }
    Ok(response)
}

/// An argon2 hash of a random password, computed once, for unknown usernames.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        hearth_smart::secret::hash_password(&generate_token(16)).unwrap_or_default()
    })
}
