//! Token introspection (RFC 7662 with the SMART fields) and revocation (RFC 7009).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_auth_store::Site;
use hearth_schemas::{TokenKind, TokenRevoked};
use hearth_smart::keys::AccessClaims;
use hearth_smart::secret::hash_token;
use serde_json::{Map, Value, json};

use crate::AuthState;
use crate::client_auth::{Form, authenticate, require_form};
use crate::events::{new_id, now_micros, record};
use crate::oauth_error::{OAuthError, OAuthResult};
use crate::site::{auth_base_url, fhir_base_url};

pub async fn introspect(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match introspect_inner(&state, &site, &headers, &body).await {
        Ok(body) => no_store(Json(body).into_response()),
        Err(error) => error.into_response(),
    }
}

async fn introspect_inner(
    state: &AuthState,
    site: &Site,
    headers: &HeaderMap,
    body: &[u8],
) -> OAuthResult<Value> {
    require_form(headers)?;
    let form = Form::parse(body)?;
    authenticate_caller(state, site, headers, &form).await?;
    let token = form.require("token")?;
    let inactive = json!({"active": false});

    if let Ok(claims) = verify(state, site, token) {
        if claims.site != site.site_id || !state.store.token_is_live(&claims.jti)? {
            return Ok(inactive);
        }
        return Ok(access_token_info(state, &claims));
    }
    let Some(refresh) = state.store.refresh_token(&hash_token(token))? else {
        return Ok(inactive);
    };
    let Some(grant) = state.store.grant(&refresh.grant_id)? else {
        return Ok(inactive);
    };
    let expired = refresh.expires_at.is_some_and(|at| at < now_micros());
    if !refresh.current || grant.is_revoked() || expired || grant.approval.site_id != site.site_id {
        return Ok(inactive);
    }
    let approval = &grant.approval;
    let mut info = Map::new();
    info.insert("active".into(), json!(true));
    info.insert("token_type".into(), json!("refresh_token"));
    info.insert("scope".into(), json!(approval.scope_granted));
    info.insert("client_id".into(), json!(approval.client_id));
    if let Some(at) = refresh.expires_at {
        info.insert("exp".into(), json!(at / 1_000_000));
    }
    put(&mut info, "patient", approval.patient.clone());
    put(&mut info, "encounter", approval.encounter.clone());
    put(&mut info, "sub", approval.user_id.clone());
    Ok(Value::Object(info))
}

/// The RFC 7662 response for a live access token, with the SMART context fields.
fn access_token_info(state: &AuthState, claims: &AccessClaims) -> Value {
    let mut info = Map::new();
    info.insert("active".into(), json!(true));
    info.insert("token_type".into(), json!("Bearer"));
    info.insert("scope".into(), json!(claims.scope));
    info.insert("client_id".into(), json!(claims.client_id));
    info.insert("exp".into(), json!(claims.exp));
    info.insert("iat".into(), json!(claims.iat));
    info.insert("iss".into(), json!(claims.iss));
    info.insert("sub".into(), json!(claims.sub));
    info.insert("aud".into(), json!(claims.aud));
    info.insert("jti".into(), json!(claims.jti));
    put(&mut info, "patient", claims.patient.clone());
    put(&mut info, "encounter", claims.encounter.clone());
    if let Some(fhir_user) = &claims.fhir_user {
        let base = fhir_base_url(&state.settings.public_url, &claims.site);
        info.insert("fhirUser".into(), json!(format!("{base}/{fhir_user}")));
    }
    if let Some(grant_id) = &claims.gid
        && let Ok(Some(grant)) = state.store.grant(grant_id)
        && let Some(context) = grant.approval.fhir_context.as_deref()
        && let Ok(value) = serde_json::from_str::<Value>(context)
    {
        info.insert("fhirContext".into(), value);
    }
    Value::Object(info)
}

/// Verifies an access token of this site.
fn verify(
    state: &AuthState,
    site: &Site,
    token: &str,
) -> Result<AccessClaims, hearth_smart::keys::KeyError> {
    let issuer = auth_base_url(&state.settings.public_url, &site.site_id);
    let audience = fhir_base_url(&state.settings.public_url, &site.site_id);
    state
        .keys
        .read()
        .verify_access_token::<AccessClaims>(token, &issuer, &audience)
}

fn put(info: &mut Map<String, Value>, name: &str, value: Option<String>) {
    if let Some(value) = value {
        info.insert(name.to_string(), Value::String(value));
    }
}

/// Introspection callers: a client that authenticates as at the token endpoint (public
/// clients cannot), the admin credential, or a live access token of this site.
async fn authenticate_caller(
    state: &AuthState,
    site: &Site,
    headers: &HeaderMap,
    form: &Form,
) -> OAuthResult<()> {
    if let Some(bearer) = bearer(headers) {
        if crate::same_secret(bearer, &state.settings.admin_token) {
            return Ok(());
        }
        if let Ok(claims) = verify(state, site, bearer)
            && claims.site == site.site_id
            && state.store.token_is_live(&claims.jti)?
        {
            return Ok(());
        }
        return Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is not valid",
        ));
    }
    let has_credentials = headers.contains_key(header::AUTHORIZATION)
        || form.get("client_secret")?.is_some()
        || form.get("client_assertion")?.is_some();
    if !has_credentials {
        return Err(OAuthError::invalid_client(
            "introspection requires an authenticated caller",
        ));
    }
    let token_url = format!(
        "{}/token",
        auth_base_url(&state.settings.public_url, &site.site_id)
    );
    let client = authenticate(state, headers, form, &token_url).await?;
    require_active(state, site, &client.app.client_id)
}

/// Rejects a client that authenticated but is not active at the request's site.
fn require_active(state: &AuthState, site: &Site, client_id: &str) -> OAuthResult<()> {
    if state.store.is_active(&site.site_id, client_id)? {
        Ok(())
    } else {
        Err(OAuthError::invalid_client(
            "the client is not active at this site",
        ))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// Revocation: always 200 for an authenticated client, whether or not the token was
/// known (RFC 7009 section 2.2), so the response tells nothing about other clients' tokens.
pub async fn revoke(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_inner(&state, &site, &headers, &body).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(error) => error.into_response(),
    }
}

async fn revoke_inner(
    state: &AuthState,
    site: &Site,
    headers: &HeaderMap,
    body: &[u8],
) -> OAuthResult<()> {
    require_form(headers)?;
    let form = Form::parse(body)?;
    let token_url = format!(
        "{}/token",
        auth_base_url(&state.settings.public_url, &site.site_id)
    );
    let client = authenticate(state, headers, &form, &token_url).await?;
    require_active(state, site, &client.app.client_id)?;
    let token = form.require("token")?;
    if let Some(hint) = form.get("token_type_hint")?
        && !matches!(hint, "access_token" | "refresh_token")
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_token_type",
            format!("token_type_hint {hint} is not supported"),
        ));
    }
    let client_id = client.app.client_id.clone();

    // An expired access token needs no revocation, so only live ones are recorded.
    if let Ok(claims) = verify(state, site, token) {
        if claims.client_id == client_id {
            let event = TokenRevoked {
                event_id: new_id(),
                occurred_at: now_micros(),
                token_id: Some(claims.jti.clone()),
                token_hash: None,
                token_kind: TokenKind::Access,
                grant_id: claims.gid.clone(),
                client_id: client_id.clone(),
                reason: Some("revoked by the client".to_string()),
                actor: client_id.clone(),
            };
            record(state, claims.gid.as_deref().unwrap_or(&client_id), event).await?;
        }
        return Ok(());
    }
    let hash = hash_token(token);
    if let Some(refresh) = state.store.refresh_token(&hash)?
        && let Some(grant) = state.store.grant(&refresh.grant_id)?
        && grant.approval.client_id == client_id
    {
        let event = TokenRevoked {
            event_id: new_id(),
            occurred_at: now_micros(),
            token_id: None,
            token_hash: Some(hash),
            token_kind: TokenKind::Refresh,
            grant_id: Some(refresh.grant_id.clone()),
            client_id: client_id.clone(),
            reason: Some("revoked by the client".to_string()),
            actor: client_id,
        };
        record(state, &refresh.grant_id, event).await?;
    }
    Ok(())
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
