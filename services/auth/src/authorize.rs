//! The authorize endpoint (GET and POST) and the pages that follow it: sign-in, patient
//! picker for standalone launches, and approval.
//!
//! Validation follows RFC 6749 section 4.1.2.1: a missing or unknown client, or a
//! redirect URI that is not registered for it (compared exactly), gets an error page and
//! never a redirect. Every later error redirects to the verified URI with `error` and
//! `state`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hearth_auth_store::{Site, User};
use hearth_schemas::{AuthorizationDenied, AuthorizationGranted, RefreshPolicy, UserType};
use hearth_smart::scope::{self, Scope};
use hearth_smart::secret::{generate_token, hash_token};

use crate::AuthState;
use crate::client_auth::Form;
use crate::events::{audit, new_id, now_micros, record};
use crate::oauth_error::{error_page, error_redirect, redirect_with};
use crate::pages::{self, PatientChoice};
use crate::patients;
use crate::portal_session::{cookie_values, portal_login};
use crate::session::Pending;
use crate::site::{auth_base_url, fhir_base_url};

const SESSION_COOKIE: &str = "hearth_session";

pub async fn authorize_get(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let form = match Form::parse(query.unwrap_or_default().as_bytes()) {
        Ok(form) => form,
        Err(error) => return error_page(StatusCode::BAD_REQUEST, error.error, &error.description),
    };
    start(&state, &site, &form, &headers).await
}

pub async fn authorize_post(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(rejection),
    };
    if crate::client_auth::require_form(&headers).is_err() {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "an authorization request sent by POST must be application/x-www-form-urlencoded",
        );
    }
    let form = match Form::parse(&body) {
        Ok(form) => form,
        Err(error) => return error_page(StatusCode::BAD_REQUEST, error.error, &error.description),
    };
    start(&state, &site, &form, &headers).await
}

/// Validates an authorization request and shows the first page the user needs.
async fn start(state: &AuthState, site: &Site, form: &Form, headers: &HeaderMap) -> Response {
    let pending = match validate(state, site, form).await {
        Ok(pending) => pending,
        Err(response) => return response,
    };
    let mut pending = pending;
    // A portal session of the launch's user comes first: it is the user the portal
    // launched the app for, while an own session may be left from an earlier sign-in.
    if let Some(portal) = portal_login(state, headers, launch_user(&pending)) {
        pending.session_id = Some(portal.key);
        pending.user_id = Some(portal.user_id);
    } else if let Some(login) = session_cookie(headers).and_then(|id| state.sessions.login(&id)) {
        pending.session_id = Some(login.session_id.clone());
        pending.user_id = Some(login.user_id.clone());
    }
    state.sessions.put_pending(pending.clone());
    if pending.user_id.is_some() {
        next_page(state, pending).await
    } else {
        login_page(state, &pending, None)
    }
}

/// Checks the request. `Err` holds the response: an error page or an error redirect.
async fn validate(state: &AuthState, site: &Site, form: &Form) -> Result<Pending, Response> {
    let page =
        |status: StatusCode, description: &str| error_page(status, "invalid_request", description);
    let client_id = match form.get("client_id") {
        Ok(Some(id)) => id.to_string(),
        Ok(None) => return Err(page(StatusCode::BAD_REQUEST, "client_id is missing")),
        Err(e) => return Err(page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let app = match state.store.app(&client_id) {
        Ok(Some(app)) if !app.disabled => app,
        Ok(_) => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the client is unknown or disabled",
            ));
        }
        Err(error) => {
            tracing::error!(%error, "loading an app failed");
            return Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later",
            ));
        }
    };
    let redirect_uri = match form.get("redirect_uri") {
        Ok(Some(uri)) if app.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
        Ok(Some(_)) => {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not registered for this client",
            ));
        }
        Ok(None) if app.redirect_uris.len() == 1 => app.redirect_uris[0].clone(),
        Ok(None) => return Err(page(StatusCode::BAD_REQUEST, "redirect_uri is missing")),
        Err(e) => return Err(page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let state_param = match form.get("state") {
        Ok(value) => value.map(str::to_string),
        Err(e) => {
            return Err(error_redirect(
                &redirect_uri,
                "invalid_request",
                &e.description,
                None,
            ));
        }
    };

    let fail = |error: &'static str, description: &str| {
        let denied = AuthorizationDenied {
            event_id: new_id(),
            occurred_at: now_micros(),
            site_id: site.site_id.clone(),
            client_id: Some(client_id.clone()),
            user_id: None,
            error: error.to_string(),
            error_description: Some(description.to_string()),
            scope_requested: form.get("scope").ok().flatten().map(str::to_string),
            redirect_uri: Some(redirect_uri.clone()),
            launch_id: form.get("launch").ok().flatten().map(str::to_string),
        };
        (
            denied,
            error_redirect(&redirect_uri, error, description, state_param.as_deref()),
        )
    };
    let checked = check_request(state, site, form, &app);
    let (scopes, launch, code_challenge) = match checked {
        Ok(values) => values,
        Err((error, description)) => {
            let (denied, response) = fail(error, &description);
            audit(state, &client_id, denied).await;
            return Err(response);
        }
    };
    let nonce = form.get("nonce").ok().flatten().map(str::to_string);
    Ok(Pending {
        id: generate_token(24),
        csrf: generate_token(24),
        created: std::time::Instant::now(),
        site_id: site.site_id.clone(),
        scope_requested: form
            .get("scope")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_string(),
        app,
        redirect_uri,
        state: state_param,
        scopes,
        code_challenge,
        nonce,
        launch,
        session_id: None,
        user_id: None,
        patient: None,
    })
}

type Checked = (scope::ScopeSet, Option<hearth_auth_store::Launch>, String);

/// The checks whose failures redirect, in RFC 6749 order.
fn check_request(
    state: &AuthState,
    site: &Site,
    form: &Form,
    app: &hearth_auth_store::App,
) -> Result<Checked, (&'static str, String)> {
    let invalid = |d: &str| ("invalid_request", d.to_string());
    let get = |name: &str| {
        form.get(name)
            .map_err(|e| ("invalid_request", e.description))
    };

    match get("response_type")? {
        Some("code") => {}
        Some(other) => {
            return Err((
                "unsupported_response_type",
                format!("response_type {other} is not supported"),
            ));
        }
        None => return Err(invalid("response_type is missing")),
    }
    match state.store.is_active(&site.site_id, &app.client_id) {
        Ok(true) => {}
        Ok(false) => {
            return Err((
                "unauthorized_client",
                "the client is not active at this site".to_string(),
            ));
        }
        Err(_) => return Err(("temporarily_unavailable", "try again later".to_string())),
    }
    if !app.allows_grant_type("authorization_code") {
        return Err((
            "unauthorized_client",
            "the client may not use the authorization code grant".to_string(),
        ));
    }
    let expected_aud = fhir_base_url(&state.settings.public_url, &site.site_id);
    match get("aud")? {
        // One trailing slash names the same FHIR base.
        Some(aud) if aud.strip_suffix('/').unwrap_or(aud) == expected_aud => {}
        Some(_) => return Err(invalid("aud does not name this site's FHIR base URL")),
        None => return Err(invalid("aud is missing")),
    }
    let code_challenge = match (get("code_challenge")?, get("code_challenge_method")?) {
        (None, _) => {
            return Err(invalid(
                "code_challenge is missing: PKCE with S256 is required",
            ));
        }
        (Some(_), Some(method)) if method != "S256" => {
            return Err(invalid("code_challenge_method must be S256"));
        }
        (Some(_), None) => {
            return Err(invalid("code_challenge_method is missing; it must be S256"));
        }
        (Some(challenge), Some(_)) if !hearth_smart::pkce::is_valid_challenge(challenge) => {
            return Err(invalid("code_challenge is not a base64url S256 challenge"));
        }
        (Some(challenge), Some(_)) => challenge.to_string(),
    };

    let launch = match get("launch")? {
        Some(launch_id) => {
            let launch = state
                .store
                .launch(launch_id)
                .map_err(|_| ("temporarily_unavailable", "try again later".to_string()))?
                .filter(|l| l.site_id == site.site_id && l.expires_at > now_micros())
                .ok_or_else(|| invalid("the launch parameter is unknown or expired"))?;
            if launch
                .client_id
                .as_deref()
                .is_some_and(|c| c != app.client_id)
            {
                return Err(invalid("the launch was created for another client"));
            }
            Some(launch)
        }
        None => None,
    };

    let requested = scope::parse(get("scope")?.unwrap_or(""));
    let allowed = scope::parse(&app.scope);
    let grantable = |s: &&Scope| match s {
        Scope::Launch => launch.is_some(),
        Scope::LaunchEncounter => launch.as_ref().is_some_and(|l| l.encounter.is_some()),
        Scope::Resource(r) => r.context != scope::Context::System,
        _ => true,
    };
    let scopes = scope::ScopeSet::from_scopes(
        requested
            .grantable(&allowed)
            .iter()
            .filter(grantable)
            .cloned(),
    );
    if scopes.is_empty() {
        return Err((
            "invalid_scope",
            "none of the requested scopes can be granted to this client".to_string(),
        ));
    }
    Ok((scopes, launch, code_challenge))
}

/// Shows the picker when a standalone launch needs a patient, else the approval page.
async fn next_page(state: &AuthState, pending: Pending) -> Response {
    let user = match pending.user_id.as_deref().map(|id| state.store.user(id)) {
        Some(Ok(Some(user))) if !user.disabled => user,
        _ => return login_page(state, &pending, None),
    };
    if let Err(message) = may_use_launch(&pending, &user) {
        return login_page(state, &pending, Some(message));
    }
    let mut pending = pending;
    if needs_patient(&pending) && pending.patient.is_none() {
        match patient_of(&user) {
            Some(patient) => {
                pending.patient = Some(patient);
                state.sessions.put_pending(pending.clone());
            }
            None => return picker(state, &pending, "").await,
        }
    }
    approval_page(state, &pending).await
}

/// Checks that the signed-in user may take an EHR launch's context: the user the launch
/// was created for, and for a Patient user only a launch about that patient.
fn may_use_launch(pending: &Pending, user: &User) -> Result<(), &'static str> {
    let Some(launch) = pending.launch.as_ref() else {
        return Ok(());
    };
    let fhir_user = user
        .registration
        .fhir_user
        .as_deref()
        .map(relative_reference);
    if let Some(expected) = launch.user.as_deref()
        && fhir_user != Some(relative_reference(expected))
    {
        return Err("This launch was created for another user. Sign in as that user.");
    }
    if let (Some(own), Some(patient)) = (patient_of(user), launch.patient.as_deref())
        && own != patient
    {
        return Err("This launch is about another patient. Sign in as a user who may see it.");
    }
    Ok(())
}

/// Returns the last two segments of a reference, so `https://h/fhir/Practitioner/1` and
/// `Practitioner/1` compare equal.
fn relative_reference(reference: &str) -> &str {
    let reference = reference.trim_end_matches('/');
    match reference.rmatch_indices('/').nth(1) {
        Some((index, _)) => &reference[index + 1..],
        None => reference,
    }
}

fn needs_patient(pending: &Pending) -> bool {
    let from_launch = pending
        .launch
        .as_ref()
        .and_then(|l| l.patient.as_ref())
        .is_some();
    pending.scopes.contains(&Scope::LaunchPatient) && !from_launch
}

/// The patient id of a Patient user.
fn patient_of(user: &User) -> Option<String> {
    user.registration
        .fhir_user
        .as_deref()
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
}

fn user_type(user: &User) -> UserType {
    match user
        .registration
        .fhir_user
        .as_deref()
        .and_then(|r| r.split('/').next())
    {
        Some("Patient") => UserType::Patient,
        Some("Practitioner") | Some("PractitionerRole") => UserType::Practitioner,
        Some("RelatedPerson") => UserType::RelatedPerson,
        _ => UserType::Other,
    }
}

fn action(state: &AuthState, pending: &Pending, step: &str) -> String {
    format!(
        "{}/authorize/{step}",
        auth_base_url(&state.settings.public_url, &pending.site_id)
    )
}

fn login_page(state: &AuthState, pending: &Pending, error: Option<&str>) -> Response {
    let html = pages::login_page(
        &action(state, pending, "login"),
        &pending.id,
        &pending.csrf,
        &pending.app.name,
        error,
    );
    no_store(Html(html).into_response())
}

async fn approval_page(state: &AuthState, pending: &Pending) -> Response {
    let descriptions: Vec<String> = pending.scopes.iter().map(Scope::describe).collect();
    let patient_id = pending
        .patient
        .as_ref()
        .or_else(|| pending.launch.as_ref().and_then(|l| l.patient.as_ref()));
    let patient = match patient_id {
        Some(id) => Some(patient_label(state, &pending.site_id, id).await),
        None => None,
    };
    let html = pages::approve_page(
        &action(state, pending, "decision"),
        &pending.id,
        &pending.csrf,
        &pending.app.name,
        patient.as_deref(),
        &descriptions,
    );
    no_store(Html(html).into_response())
}

async fn picker(state: &AuthState, pending: &Pending, query: &str) -> Response {
    let (choices, notice) = match patients::search_patients(state, &pending.site_id, query).await {
        Ok(found) => {
            let choices = found
                .iter()
                .map(|patient| PatientChoice {
                    id: patient["id"].as_str().unwrap_or_default().to_string(),
                    name: display_name(patient),
                    detail: format!(
                        "born {}, {}",
                        patient["birthDate"].as_str().unwrap_or("unknown"),
                        patient["gender"].as_str().unwrap_or("gender unknown")
                    ),
                })
                .collect();
            (choices, None)
        }
        Err(error) => {
            tracing::error!(site = %pending.site_id, %error, "patient search for the picker failed");
            (
                Vec::new(),
                Some(
                    "The patient search failed. Try again, or ask an administrator to check the logs.",
                ),
            )
        }
    };
    let html = pages::picker_page(
        &action(state, pending, "patient"),
        &pending.id,
        &pending.csrf,
        &pending.app.name,
        query,
        &choices,
        notice,
    );
    no_store(Html(html).into_response())
}

fn display_name(patient: &serde_json::Value) -> String {
    let name = &patient["name"][0];
    let given: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str())
        .collect();
    let family = name["family"].as_str().unwrap_or_default();
    let text = format!("{} {family}", given.join(" "));
    if text.trim().is_empty() {
        patient["id"].as_str().unwrap_or("unnamed").to_string()
    } else {
        text.trim().to_string()
    }
}

/// Returns the display name of a site's patient, or its id when it cannot be read.
async fn patient_label(state: &AuthState, site_id: &str, id: &str) -> String {
    match patients::read(state, site_id, "Patient", id).await {
        Ok(Some(patient)) => display_name(&patient),
        Ok(None) => id.to_string(),
        Err(error) => {
            tracing::warn!(site = %site_id, %error, "reading the patient's name failed");
            id.to_string()
        }
    }
}

/// POST from the sign-in page.
pub async fn login(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return expired();
    };
    let Some((form, pending)) = pending_from(&state, &headers, &body) else {
        return expired();
    };
    let username = form.get("username").ok().flatten().unwrap_or_default();
    let password = form.get("password").ok().flatten().unwrap_or_default();
    let user = match crate::sign_in::verify(&state, username, password) {
        Ok(user) => user,
        Err(error) => return login_page(&state, &pending, Some(&error.message())),
    };

    let lifetime = std::time::Duration::from_secs(state.settings.session_seconds.max(60) as u64);
    let login = state
        .sessions
        .start_login(&user.registration.user_id, lifetime);
    let mut pending = pending;
    pending.session_id = Some(login.session_id.clone());
    pending.user_id = Some(login.user_id.clone());
    pending.patient = None;
    state.sessions.put_pending(pending.clone());

    let response = next_page(&state, pending).await;
    with_session_cookie(&state, response, &login.session_id)
}

/// Adds the sign-in session cookie to a response.
pub(crate) fn with_session_cookie(
    state: &AuthState,
    mut response: Response,
    session_id: &str,
) -> Response {
    append_cookie(state, &mut response, SESSION_COOKIE, session_id, "Lax");
    response
}

/// Appends an `HttpOnly` cookie for every path, marked `Secure` when the public URL is
/// https. `same_site` is the `SameSite` rule, `Lax` or `Strict`.
pub(crate) fn append_cookie(
    state: &AuthState,
    response: &mut Response,
    name: &str,
    value: &str,
    same_site: &str,
) {
    let secure = if state.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// POST from the patient picker: a search, or the chosen patient.
pub async fn pick_patient(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return expired();
    };
    let Some((form, mut pending)) = pending_from(&state, &headers, &body) else {
        return expired();
    };
    if !signed_in(&state, &headers, &pending) {
        return login_page(&state, &pending, None);
    }
    if let Ok(Some(patient)) = form.get("patient") {
        match patients::read(&state, &pending.site_id, "Patient", patient).await {
            Ok(Some(_)) => {
                pending.patient = Some(patient.to_string());
                state.sessions.put_pending(pending.clone());
                return approval_page(&state, &pending).await;
            }
            Ok(None) => return picker(&state, &pending, "").await,
            Err(error) => {
                tracing::error!(site = %pending.site_id, %error, "reading the chosen patient failed");
                return picker(&state, &pending, "").await;
            }
        }
    }
    let query = form
        .get("name")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    picker(&state, &pending, &query).await
}

/// POST from the approval page.
pub async fn decide(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return expired();
    };
    let Some((form, pending)) = pending_from(&state, &headers, &body) else {
        return expired();
    };
    if !signed_in(&state, &headers, &pending) {
        return login_page(&state, &pending, None);
    }
    let Some(pending) = state.sessions.take_pending(&pending.id) else {
        return expired();
    };
    let user = match pending.user_id.as_deref().map(|id| state.store.user(id)) {
        Some(Ok(Some(user))) => user,
        _ => return expired(),
    };
    if may_use_launch(&pending, &user).is_err() {
        return error_redirect(
            &pending.redirect_uri,
            "access_denied",
            "the signed-in user may not use this launch",
            pending.state.as_deref(),
        );
    }
    if form.get("decision").ok().flatten() != Some("approve") {
        let denied = AuthorizationDenied {
            event_id: new_id(),
            occurred_at: now_micros(),
            site_id: pending.site_id.clone(),
            client_id: Some(pending.app.client_id.clone()),
            user_id: Some(user.registration.user_id.clone()),
            error: "access_denied".to_string(),
            error_description: Some("the user denied the request".to_string()),
            scope_requested: Some(pending.scope_requested.clone()),
            redirect_uri: Some(pending.redirect_uri.clone()),
            launch_id: pending.launch.as_ref().map(|l| l.launch_id.clone()),
        };
        audit(&state, &pending.app.client_id, denied).await;
        return error_redirect(
            &pending.redirect_uri,
            "access_denied",
            "the user denied the request",
            pending.state.as_deref(),
        );
    }
    if needs_patient(&pending) && pending.patient.is_none() {
        return error_redirect(
            &pending.redirect_uri,
            "invalid_request",
            "no patient was chosen",
            pending.state.as_deref(),
        );
    }

    let code = generate_token(32);
    let grant = granted(&state, &pending, &user, &code);
    let grant_id = grant.grant_id.clone();
    match record(&state, &grant_id, grant).await {
        Ok(_) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = pending.state.as_deref() {
                pairs.push(("state", s));
            }
            redirect_with(&pending.redirect_uri, &pairs)
        }
        Err(error) => error_redirect(
            &pending.redirect_uri,
            error.error,
            &error.description,
            pending.state.as_deref(),
        ),
    }
}

fn granted(state: &AuthState, pending: &Pending, user: &User, code: &str) -> AuthorizationGranted {
    let launch = pending.launch.as_ref();
    let refresh_policy = if !pending.app.allows_grant_type("refresh_token") {
        RefreshPolicy::None
    } else if pending.scopes.contains(&Scope::OfflineAccess) {
        RefreshPolicy::Offline
    } else if pending.scopes.contains(&Scope::OnlineAccess) {
        RefreshPolicy::Online
    } else {
        RefreshPolicy::None
    };
    AuthorizationGranted {
        event_id: new_id(),
        occurred_at: now_micros(),
        grant_id: new_id(),
        site_id: pending.site_id.clone(),
        client_id: pending.app.client_id.clone(),
        user_id: Some(user.registration.user_id.clone()),
        fhir_user: user.registration.fhir_user.clone(),
        user_type: user_type(user),
        scope_requested: pending.scope_requested.clone(),
        scope_granted: pending.scopes.to_string(),
        launch_id: launch.map(|l| l.launch_id.clone()),
        patient: launch
            .and_then(|l| l.patient.clone())
            .or_else(|| pending.patient.clone()),
        encounter: launch.and_then(|l| l.encounter.clone()),
        fhir_context: launch.and_then(|l| l.fhir_context.clone()),
        need_patient_banner: launch.and_then(|l| l.need_patient_banner),
        smart_style_url: launch.and_then(|l| l.smart_style_url.clone()),
        intent: launch.and_then(|l| l.intent.clone()),
        tenant: launch.and_then(|l| l.tenant.clone()),
        custom_context: launch.and_then(|l| l.custom_context.clone()),
        redirect_uri: pending.redirect_uri.clone(),
        code_hash: hash_token(code),
        code_expires_at: now_micros() + state.settings.code_seconds * 1_000_000,
        code_challenge: Some(pending.code_challenge.clone()),
        code_challenge_method: Some("S256".to_string()),
        nonce: pending.nonce.clone(),
        refresh_policy,
        session_id: pending.session_id.clone(),
    }
}

/// Reads the form of a flow page and the request it continues.
fn pending_from(state: &AuthState, headers: &HeaderMap, body: &[u8]) -> Option<(Form, Pending)> {
    crate::client_auth::require_form(headers).ok()?;
    let form = Form::parse(body).ok()?;
    let id = form.get("request").ok()??;
    let csrf = form.get("csrf").ok()??;
    let pending = state.sessions.pending(id, csrf)?;
    Some((form, pending))
}

/// Whether the browser's session, its own or a portal session, is the one that signed in
/// for this request.
fn signed_in(state: &AuthState, headers: &HeaderMap, pending: &Pending) -> bool {
    let Some(session_id) = pending.session_id.as_deref() else {
        return false;
    };
    let own = session_cookie(headers)
        .is_some_and(|cookie| state.sessions.login(&cookie).is_some() && session_id == cookie);
    own || portal_login(state, headers, launch_user(pending))
        .is_some_and(|portal| portal.key == session_id)
}

/// The FHIR user an EHR launch was created for, such as `Practitioner/123`.
fn launch_user(pending: &Pending) -> Option<&str> {
    pending.launch.as_ref().and_then(|l| l.user.as_deref())
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_values(headers, SESSION_COOKIE).into_iter().next()
}

/// An error page for a request body the framework could not read, such as one over the
/// size limit.
fn body_error(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let description = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the request body is larger than the limit of {} bytes",
            crate::MAX_BODY_BYTES
        )
    } else {
        "the request body could not be read".to_string()
    };
    error_page(status, "invalid_request", &description)
}

fn expired() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "this sign-in page has expired or was already used; start again from the app",
    )
}

pub(crate) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
