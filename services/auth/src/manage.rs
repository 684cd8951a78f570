//! The grant management page, advertised as `management_endpoint` in the SMART
//! configuration: a signed-in user sees the apps they allowed at the site, with the scopes
//! and the time of each grant, and revokes a grant.
//!
//! The page shares the sign-in session of the authorization flow. Its sign-in form is
//! protected against cross-site posts by a random value that is both a cookie and a form
//! field, and each revoke form carries a value derived from the session id, which another
//! site cannot read.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hearth_auth_store::{Site, User};
use hearth_schemas::RevocationReason;
use hearth_smart::scope;
use hearth_smart::secret::{generate_token, hash_token};

use crate::AuthState;
use crate::authorize::{append_cookie, no_store, session_cookie, with_session_cookie};
use crate::client_auth::{Form, require_form};
use crate::oauth_error::error_page;
use crate::pages::{self, GrantSummary};
use crate::portal_session::cookie_values;
use crate::session::Login;
use crate::site::auth_base_url;

const LOGIN_CSRF_COOKIE: &str = "hearth_manage_csrf";

pub async fn show(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
) -> Response {
    match signed_in_user(&state, &headers) {
        Some((login, user)) => grants_page(&state, &site, &login, &user),
        None => login_page(&state, &site, None),
    }
}

/// POST from the sign-in form.
pub async fn login(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(form) = form_of(&headers, body) else {
        return bad_form();
    };
    let cookie = cookie_values(&headers, LOGIN_CSRF_COOKIE)
        .into_iter()
        .next();
    let posted = form.get("csrf").ok().flatten();
    let csrf_ok =
        matches!((cookie.as_deref(), posted), (Some(c), Some(p)) if crate::same_secret(c, p));
    if !csrf_ok {
        return login_page(
            &state,
            &site,
            Some("The sign-in form expired. Sign in again."),
        );
    }
    let username = form.get("username").ok().flatten().unwrap_or_default();
    let password = form.get("password").ok().flatten().unwrap_or_default();
    let user = match crate::sign_in::verify(&state, username, password) {
        Ok(user) => user,
        Err(error) => return login_page(&state, &site, Some(&error.message())),
    };
    let lifetime = std::time::Duration::from_secs(state.settings.session_seconds.max(60) as u64);
    let login = state
        .sessions
        .start_login(&user.registration.user_id, lifetime);
    let response = see_other(&manage_url(&state, &site));
    with_session_cookie(&state, response, &login.session_id)
}

/// POST from a grant's revoke button.
pub async fn revoke(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(form) = form_of(&headers, body) else {
        return bad_form();
    };
    let Some((login, user)) = signed_in_user(&state, &headers) else {
        return login_page(&state, &site, Some("Sign in again to revoke access."));
    };
    let csrf_ok = form
        .get("csrf")
        .ok()
        .flatten()
        .is_some_and(|posted| crate::same_secret(posted, &revoke_csrf(&login)));
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "access_denied",
            "the revoke form is not from this page; open the page again and retry",
        );
    }
    let grant_id = form.get("grant_id").ok().flatten().unwrap_or_default();
    let user_id = &user.registration.user_id;
    let grant = match state.store.grant(grant_id) {
        Ok(Some(grant))
            if grant.approval.user_id.as_deref() == Some(user_id.as_str())
                && grant.approval.site_id == site.site_id =>
        {
            grant
        }
        Ok(_) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "invalid_request",
                "you have no such grant at this site",
            );
        }
        Err(error) => {
            tracing::error!(%error, "loading a grant failed");
            return unavailable();
        }
    };
    if !grant.is_revoked()
        && let Err(error) =
            crate::admin::revoke(&state, &grant, RevocationReason::User, user_id).await
    {
        tracing::error!(error = %error.description, grant_id, "revoking a grant failed");
        return unavailable();
    }
    see_other(&manage_url(&state, &site))
}

fn grants_page(state: &AuthState, site: &Site, login: &Login, user: &User) -> Response {
    let grants = match state
        .store
        .user_grants(&user.registration.user_id, &site.site_id)
    {
        Ok(grants) => grants,
        Err(error) => {
            tracing::error!(%error, "loading a user's grants failed");
            return unavailable();
        }
    };
    let summaries: Vec<GrantSummary> = grants
        .iter()
        .map(|grant| {
            let approval = &grant.approval;
            let app_name = match state.store.app(&approval.client_id) {
                Ok(Some(app)) => app.name,
                _ => approval.client_id.clone(),
            };
            let revoked = grant.revoked_at.map(|at| {
                let reason = grant.revoked_reason.as_deref().unwrap_or("revoked");
                format!(
                    "{} ({})",
                    hearth_cdr::format_instant(at),
                    reason.to_lowercase().replace('_', " ")
                )
            });
            GrantSummary {
                grant_id: approval.grant_id.clone(),
                app_name,
                granted_at: hearth_cdr::format_instant(approval.occurred_at),
                scopes: scope::parse(&approval.scope_granted)
                    .iter()
                    .map(|s| format!("{} ({s})", s.describe()))
                    .collect(),
                revoked,
            }
        })
        .collect();
    let name = user
        .registration
        .display_name
        .as_deref()
        .unwrap_or(&user.registration.username);
    let html = pages::grants_page(
        &format!("{}/revoke", manage_url(state, site)),
        &revoke_csrf(login),
        name,
        &summaries,
    );
    no_store(Html(html).into_response())
}

fn login_page(state: &AuthState, site: &Site, error: Option<&str>) -> Response {
    let csrf = generate_token(24);
    let html =
        pages::manage_login_page(&format!("{}/login", manage_url(state, site)), &csrf, error);
    let mut response = no_store(Html(html).into_response());
    append_cookie(state, &mut response, LOGIN_CSRF_COOKIE, &csrf, "Strict");
    response
}

fn signed_in_user(state: &AuthState, headers: &HeaderMap) -> Option<(Login, User)> {
    let login = session_cookie(headers).and_then(|id| state.sessions.login(&id))?;
    let user = state
        .store
        .user(&login.user_id)
        .ok()
        .flatten()
        .filter(|u| !u.disabled)?;
    Some((login, user))
}

/// The revoke forms' CSRF value: a hash of the secret session id, so only a page served
/// to that session has it.
fn revoke_csrf(login: &Login) -> String {
    hash_token(&format!("manage-grants:{}", login.session_id))
}

fn manage_url(state: &AuthState, site: &Site) -> String {
    format!(
        "{}/manage",
        auth_base_url(&state.settings.public_url, &site.site_id)
    )
}

fn form_of(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Option<Form> {
    require_form(headers).ok()?;
    Form::parse(&body.ok()?).ok()
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(response)
}

fn bad_form() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "the form must be sent as application/x-www-form-urlencoded",
    )
}

fn unavailable() -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "try again later",
    )
}
