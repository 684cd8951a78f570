//! The FHIR API's token check: every request but `metadata` and the discovery document
//! needs a live access token issued for this site.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_fhir::{FhirError, Principal, SiteContext};
use hearth_smart::keys::AccessClaims;
use parking_lot::Mutex;

use crate::AuthState;

/// Verified token signatures, so each token is verified once. Liveness (revocation) is
/// still checked on every request.
#[derive(Default)]
pub struct VerifiedTokens {
    claims: Mutex<HashMap<String, AccessClaims>>,
}

/// Entries kept before the cache is emptied; tokens verify again after that.
const MAX_CACHED: usize = 50_000;

/// Paths under the FHIR base that need no token.
fn is_public(path: &str) -> bool {
    path.ends_with("/metadata") || path.ends_with("/.well-known/smart-configuration")
}

/// Middleware on the FHIR routes: checks the bearer token and inserts the [`Principal`].
pub async fn require_token(
    State(state): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path()) || request.method() == axum::http::Method::OPTIONS {
        return next.run(request).await;
    }
    let Some(site) = request.extensions().get::<SiteContext>().cloned() else {
        return unauthorized("the request names no site", false);
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let Some(token) = token else {
        return unauthorized(
            "this request needs an access token: Authorization: Bearer <token>",
            false,
        );
    };
    if crate::same_secret(&token, &state.settings.admin_token) {
        hearth_fhir::audit::CallRecord::update(&request, |info| {
            info.client_id = Some("admin".to_string());
            info.user_type = Some("system".to_string());
        });
        request.extensions_mut().insert(admin_principal());
        return next.run(request).await;
    }
    let issuer = crate::site::auth_base_url(&state.settings.public_url, &site.site_id);
    let claims = match verified(&state, &token, &issuer, &site.fhir_base_url) {
        Some(claims) => claims,
        None => return unauthorized("the access token is not valid or has expired", true),
    };
    if claims.exp <= crate::events::now_seconds() {
        return unauthorized("the access token has expired", true);
    }
    if claims.aud != site.fhir_base_url || claims.site != site.site_id {
        return unauthorized("the access token was issued for another site", true);
    }
    match state.store.token_is_live(&claims.jti) {
        Ok(true) => {}
        Ok(false) => return unauthorized("the access token was revoked", true),
        Err(error) => return FhirError::internal(error).into_response(),
    }
    hearth_fhir::audit::CallRecord::update(&request, |info| {
        info.client_id = Some(claims.client_id.clone());
        info.grant_id = claims.gid.clone();
        info.user_type = claims.user_type.clone();
        info.user_id = Some(claims.sub.clone()).filter(|_| claims.gid.is_some());
        info.patient = claims.patient.clone();
    });
    request.extensions_mut().insert(Principal {
        client_id: claims.client_id.clone(),
        token_id: claims.jti.clone(),
        grant_id: claims.gid.clone(),
        scopes: hearth_smart::scope::parse(&claims.scope),
        patient: claims.patient.clone(),
        fhir_user: claims.fhir_user.clone(),
        user_type: claims.user_type.clone(),
    });
    next.run(request).await
}

/// The admin credential acts as a backend service with every system scope, for tools
/// such as `hearth load`.
fn admin_principal() -> Principal {
    Principal {
        client_id: "admin".to_string(),
        token_id: "admin".to_string(),
        grant_id: None,
        scopes: hearth_smart::scope::parse("system/*.cruds"),
        patient: None,
        fhir_user: None,
        user_type: Some("system".to_string()),
    }
}

fn verified(state: &AuthState, token: &str, issuer: &str, audience: &str) -> Option<AccessClaims> {
    if let Some(claims) = state.verified.claims.lock().get(token) {
        return Some(claims.clone());
    }
    let claims = state
        .keys
        .read()
        .verify_access_token::<AccessClaims>(token, issuer, audience)
        .ok()?;
    let mut cache = state.verified.claims.lock();
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(token.to_string(), claims.clone());
    Some(claims)
}

/// 401 with an OperationOutcome and the RFC 6750 challenge.
fn unauthorized(message: &str, invalid_token: bool) -> Response {
    let mut response = FhirError::new(StatusCode::UNAUTHORIZED, "login", message).into_response();
    let challenge = if invalid_token {
        format!("Bearer realm=\"hearth\", error=\"invalid_token\", error_description=\"{message}\"")
    } else {
        "Bearer realm=\"hearth\"".to_string()
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
