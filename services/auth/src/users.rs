//! Users who sign in to Hearth: `POST` and `GET /admin/users` and
//! `POST /admin/users/{user_id}/disable`, and the same operations for the console.
//!
//! A user is registered once with a password hash (argon2) and is never deleted.
//! Disabling one is a `UserDisabled` event, which ends its console sessions at once and
//! stops every later sign-in.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hearth_auth_store::{AuthOutcome, Refusal, User};
use hearth_schemas::{UserDisabled, UserRegistered};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AuthState;
use crate::admin::{find_site, require_admin};
use crate::events::{new_id, now_micros, record};
use crate::limits::check_name;
use crate::oauth_error::{OAuthError, OAuthResult};

/// Shortest password a user may get, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;

/// Longest password a user may get, in bytes; longer ones would only make hashing slow.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The body of `POST /admin/users`, and the console's form for a new user.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub username: String,
    pub password: String,
    /// The user's FHIR resource, such as `Practitioner/123`; a Practitioner uses the
    /// provider portal and a Patient the patient portal.
    pub fhir_user: Option<String>,
    pub display_name: Option<String>,
    /// `platform-admin`, `site-admin` or `app-vendor`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The site a site admin governs.
    pub site_id: Option<String>,
    /// The vendor whose apps an app vendor sees.
    pub vendor: Option<String>,
}

/// The routes of this module, nested under `/admin` with the rest of the admin API.
pub(crate) fn routes() -> Router<AuthState> {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route("/users/{user_id}/disable", post(disable_user))
}

/// The user as the admin API shows it: everything but the password hash.
pub fn user_json(user: &User) -> Value {
    let r = &user.registration;
    json!({
        "user_id": r.user_id,
        "username": r.username,
        "fhir_user": r.fhir_user,
        "display_name": r.display_name,
        "roles": r.roles,
        "site_id": r.site_id,
        "vendor": r.vendor,
        "disabled": user.disabled,
    })
}

/// Checks a new user, the site of a site admin included, before anything is written.
fn check(state: &AuthState, request: &UserRequest) -> OAuthResult<()> {
    if request.username.trim().is_empty() {
        return Err(OAuthError::invalid_request("username is empty"));
    }
    if request.password.len() < MIN_PASSWORD_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "password is shorter than {MIN_PASSWORD_BYTES} characters"
        )));
    }
    check_name("username", &request.username)?;
    if request.password.len() > MAX_PASSWORD_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    for (field, value) in [
        ("display_name", &request.display_name),
        ("vendor", &request.vendor),
        ("site_id", &request.site_id),
    ] {
        if let Some(value) = value {
            check_name(field, value)?;
        }
    }
    for role in &request.roles {
        if !matches!(
            role.as_str(),
            "platform-admin" | "site-admin" | "app-vendor"
        ) {
            return Err(OAuthError::invalid_request(format!(
                "role {role} is not platform-admin, site-admin or app-vendor"
            )));
        }
    }
    let has_role = |role: &str| request.roles.iter().any(|r| r == role);
    match (has_role("site-admin"), &request.site_id) {
        (true, None) => return Err(OAuthError::invalid_request("a site-admin needs site_id")),
        (true, Some(site_id)) => {
            find_site(state, site_id)?;
        }
        (false, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "site_id applies only to a user with the role site-admin",
            ));
        }
        (false, None) => {}
    }
    if has_role("app-vendor") && request.vendor.is_none() {
        return Err(OAuthError::invalid_request("an app-vendor needs vendor"));
    }
    if let Some(fhir_user) = &request.fhir_user {
        let valid = fhir_user.split_once('/').is_some_and(|(t, id)| {
            matches!(
                t,
                "Patient" | "Practitioner" | "PractitionerRole" | "RelatedPerson" | "Person"
            ) && hearth_fhir_core::id::is_valid_id(id)
        });
        if !valid {
            return Err(OAuthError::invalid_request(
                "fhir_user must be a reference such as Practitioner/123 or Patient/456",
            ));
        }
    }
    Ok(())
}

/// Registers a user after checking the request. `actor` is the user id of the
/// administrator, or `admin` for the admin API.
pub async fn create_user_as(
    state: &AuthState,
    request: &UserRequest,
    actor: &str,
) -> OAuthResult<User> {
    check(state, request)?;
    let password = request.password.clone();
    // Argon2 takes tens of milliseconds, so it runs off the async workers.
    let password_hash =
        tokio::task::spawn_blocking(move || hearth_smart::secret::hash_password(&password))
            .await
            .map_err(OAuthError::server_error)?
            .map_err(OAuthError::server_error)?;
    let user_id = new_id();
    let event = UserRegistered {
        event_id: new_id(),
        occurred_at: now_micros(),
        user_id: user_id.clone(),
        username: request.username.clone(),
        password_hash,
        fhir_user: request.fhir_user.clone(),
        display_name: request.display_name.clone(),
        roles: request.roles.clone(),
        site_id: request.site_id.clone(),
        vendor: request.vendor.clone(),
        actor: actor.to_string(),
    };
    if record(state, &user_id, event).await? == AuthOutcome::Refused(Refusal::UsernameTaken) {
        return Err(OAuthError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            format!("username {} is taken", request.username),
        ));
    }
    state
        .store
        .user(&user_id)?
        .ok_or_else(|| OAuthError::server_error("the registered user is missing from the store"))
}

/// Disables a user, which ends its console sessions and stops its sign-ins. Disabling a
/// disabled user appends no event.
pub async fn disable_user_as(state: &AuthState, user_id: &str, actor: &str) -> OAuthResult<User> {
    let user = state.store.user(user_id)?.ok_or_else(|| {
        OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("no user {user_id}"),
        )
    })?;
    if user.disabled {
        return Ok(user);
    }
    let event = UserDisabled {
        event_id: new_id(),
        occurred_at: now_micros(),
        user_id: user_id.to_string(),
        actor: actor.to_string(),
    };
    record(state, user_id, event).await?;
    tracing::info!(user_id = %user_id, actor = %actor, "user disabled");
    state
        .store
        .user(user_id)?
        .ok_or_else(|| OAuthError::server_error("the disabled user is missing from the store"))
}

async fn create_user(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: UserRequest = serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("the request body is not valid: {e}")))?;
    let user = create_user_as(&state, &request, "admin").await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

async fn list_users(
    State(state): State<AuthState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let users: Vec<Value> = state.store.users()?.iter().map(user_json).collect();
    Ok(Json(json!({"users": users})).into_response())
}

async fn disable_user(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let user = disable_user_as(&state, &user_id, "admin").await?;
    Ok(Json(user_json(&user)).into_response())
}
