//! The token endpoint: `authorization_code`, `refresh_token` and `client_credentials`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hearth_auth_store::{AuthOutcome, Grant, Refusal, Site};
use hearth_fhir::audit::CallRecord;
use hearth_schemas::{
    ClientType, CodeRedeemed, GrantRevoked, GrantType, RefreshPolicy, RevocationReason,
    TokenIssued, TokenRefreshed, UserType,
};
use hearth_smart::keys::{AccessClaims, IdTokenClaims};
use hearth_smart::scope::{self, Scope};
use hearth_smart::secret::{generate_token, hash_token};
use serde_json::{Map, Value, json};

use crate::AuthState;
use crate::client_auth::{Client, Form, Proof, authenticate, require_form};
use crate::events::{new_id, now_micros, now_seconds, record};
use crate::oauth_error::{OAuthError, OAuthResult};
use crate::site::{auth_base_url, fhir_base_url};

pub async fn token(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    call: Option<Extension<CallRecord>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = call.map(|Extension(call)| call);
    match handle(&state, &site, call.as_ref(), &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    state: &AuthState,
    site: &Site,
    call: Option<&CallRecord>,
    headers: &HeaderMap,
    body: &[u8],
) -> OAuthResult<Response> {
    require_form(headers)?;
    let form = Form::parse(body)?;
    let grant_type = form.require("grant_type")?;
    // A grant type name (RFC 6749, appendix A.10) or URI has no other characters.
    let well_formed = grant_type
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '/'));
    if !well_formed {
        return Err(OAuthError::invalid_request(
            "grant_type is not a grant type name or URI",
        ));
    }
    // An unknown grant type is rejected as such for any client, before client
    // authentication can fail for another reason.
    if !matches!(
        grant_type,
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {grant_type} is not supported"
        )));
    }
    let token_url = format!(
        "{}/token",
        auth_base_url(&state.settings.public_url, &site.site_id)
    );
    let client = match public_refresh_client(state, headers, &form, grant_type)? {
        Some(client) => client,
        None => authenticate(state, headers, &form, &token_url).await?,
    };
    // The call's app is a client that proved who it is: a confidential client at once, a
    // public client, which only names itself, once its grant succeeds. So no caller can
    // add failed requests to another app's figures.
    let record_app = || {
        if let Some(call) = call {
            call.0.lock().client_id = Some(client.app.client_id.clone());
        }
    };
    let public = matches!(client.proof, Proof::None);
    if !public {
        record_app();
    }
    if !state
        .store
        .is_active(&site.site_id, &client.app.client_id)?
    {
        return Err(OAuthError::invalid_client(
            "the client is not active at this site",
        ));
    }
    if !client.app.allows_grant_type(grant_type) {
        return Err(OAuthError::unauthorized_client(format!(
            "the client may not use the {grant_type} grant"
        )));
    }
    let response = match grant_type {
        "authorization_code" => authorization_code(state, site, &form, &client).await,
        "refresh_token" => refresh_token(state, site, &form, &client).await,
        _ => client_credentials(state, site, &form, &client).await,
    }?;
    if public {
        record_app();
    }
    Ok(response)
}

/// Identifies a public client by its refresh token when a refresh request names no client.
/// RFC 6749 section 6 requires client authentication on refresh only from confidential
/// clients, and the SMART JavaScript client (npm fhirclient 2.6.3) sends no `client_id`
/// when it refreshes. Returns `None` when the request names or authenticates a client,
/// or when the token does not belong to a public client, so `authenticate` decides.
fn public_refresh_client(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
    grant_type: &str,
) -> OAuthResult<Option<Client>> {
    let names_client = headers.contains_key(header::AUTHORIZATION)
        || form.get("client_id")?.is_some()
        || form.get("client_secret")?.is_some()
        || form.get("client_assertion")?.is_some();
    if grant_type != "refresh_token" || names_client {
        return Ok(None);
    }
    let Some(presented) = form.get("refresh_token")? else {
        return Ok(None);
    };
    let Some(stored) = state.store.refresh_token(&hash_token(presented))? else {
        return Ok(None);
    };
    let Some(grant) = state.store.grant(&stored.grant_id)? else {
        return Ok(None);
    };
    match state.store.app(&grant.approval.client_id)? {
        Some(app) if app.client_type == ClientType::Public && !app.disabled => Ok(Some(Client {
            app,
            proof: Proof::None,
        })),
        _ => Ok(None),
    }
}

async fn authorization_code(
    state: &AuthState,
    site: &Site,
    form: &Form,
    client: &Client,
) -> OAuthResult<Response> {
    let code = form.require("code")?;
    let grant = state
        .store
        .grant_by_code(&hash_token(code))?
        .ok_or_else(|| OAuthError::invalid_grant("the code is not valid"))?;
    let approval = &grant.approval;
    if approval.site_id != site.site_id {
        return Err(OAuthError::invalid_grant(format!(
            "the code was issued at site {}; send it to that site's token endpoint",
            approval.site_id
        )));
    }
    if approval.client_id != client.app.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    match form.get("redirect_uri")? {
        Some(uri) if uri == approval.redirect_uri => {}
        Some(_) => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        None => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is missing; it must repeat the authorization request's",
            ));
        }
    }
    let verifier = form
        .get("code_verifier")?
        .ok_or_else(|| OAuthError::invalid_grant("code_verifier is missing"))?;
    let challenge = approval.code_challenge.as_deref().unwrap_or_default();
    if !hearth_smart::pkce::verify_s256(verifier, challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }

    // A replayed assertion must fail before the code is used up. The store checks again
    // when it records the tokens, for two exchanges racing with one assertion.
    if let Proof::Assertion { jti, .. } = &client.proof
        && state.store.assertion_seen(&client.app.client_id, jti)?
    {
        return Err(OAuthError::invalid_client(
            "the client assertion's jti was used before",
        ));
    }
    let token_id = new_id();
    let outcome = record(
        state,
        &approval.grant_id,
        CodeRedeemed {
            event_id: new_id(),
            occurred_at: now_micros(),
            grant_id: approval.grant_id.clone(),
            code_hash: approval.code_hash.clone(),
            client_id: client.app.client_id.clone(),
            site_id: site.site_id.clone(),
            token_id: token_id.clone(),
        },
    )
    .await?;
    match outcome {
        AuthOutcome::Applied => {}
        AuthOutcome::Refused(Refusal::CodeReplayed) => {
            revoke_for(
                state,
                &grant,
                RevocationReason::CodeReplay,
                "the code was presented again",
            )
            .await;
            return Err(OAuthError::invalid_grant(
                "the code was already used; its tokens are revoked",
            ));
        }
        AuthOutcome::Refused(Refusal::CodeExpired) => {
            return Err(OAuthError::invalid_grant("the code has expired"));
        }
        AuthOutcome::Refused(_) | AuthOutcome::Undecodable(_) => {
            return Err(OAuthError::invalid_grant("the code is not valid"));
        }
    }

    let scopes = scope::parse(&approval.scope_granted);
    let issuance = Issuance::for_grant(state, site, &grant, &scopes, token_id);
    let refresh = issuance.refresh_token(state, approval.refresh_policy);
    let event = TokenIssued {
        event_id: new_id(),
        occurred_at: now_micros(),
        token_id: issuance.token_id.clone(),
        grant_id: Some(approval.grant_id.clone()),
        site_id: site.site_id.clone(),
        client_id: client.app.client_id.clone(),
        grant_type: GrantType::AuthorizationCode,
        scope: approval.scope_granted.clone(),
        user_type: approval.user_type,
        user_id: approval.user_id.clone(),
        fhir_user: approval.fhir_user.clone(),
        patient: approval.patient.clone(),
        encounter: approval.encounter.clone(),
        expires_at: issuance.expires_at * 1_000_000,
        refresh_token_hash: refresh.as_ref().map(|(token, _)| hash_token(token)),
        refresh_expires_at: refresh.as_ref().and_then(|(_, expires)| *expires),
        id_token_issued: issuance.wants_id_token(&scopes),
        assertion_jti: assertion_jti(client),
    };
    if record(state, &approval.grant_id, event).await?
        == AuthOutcome::Refused(Refusal::AssertionReplayed)
    {
        return Err(OAuthError::invalid_client(
            "the client assertion's jti was used before",
        ));
    }
    issuance.respond(state, &grant, &scopes, refresh.map(|(token, _)| token))
}

async fn refresh_token(
    state: &AuthState,
    site: &Site,
    form: &Form,
    client: &Client,
) -> OAuthResult<Response> {
    let presented = form.require("refresh_token")?;
    let presented_hash = hash_token(presented);
    let stored = state
        .store
        .refresh_token(&presented_hash)?
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is not valid"))?;
    let grant = state
        .store
        .grant(&stored.grant_id)?
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is not valid"))?;
    let approval = &grant.approval;
    if approval.site_id != site.site_id {
        return Err(OAuthError::invalid_grant(format!(
            "the refresh token was issued at site {}; send it to that site's token endpoint",
            approval.site_id
        )));
    }
    if approval.client_id != client.app.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let granted = scope::parse(&approval.scope_granted);
    let scopes = match form.get("scope")? {
        Some(requested) => {
            let requested = scope::parse(requested);
            if !requested.rejected().is_empty() || !requested.is_subset_of(&granted) {
                return Err(OAuthError::invalid_scope(
                    "a refresh may only keep or narrow the granted scopes",
                ));
            }
            requested
        }
        None => granted,
    };

    let issuance = Issuance::for_grant(state, site, &grant, &scopes, new_id());
    let Some((new_refresh, refresh_expires_at)) =
        issuance.refresh_token(state, approval.refresh_policy)
    else {
        return Err(OAuthError::invalid_grant(
            "the grant no longer allows refresh",
        ));
    };
    let outcome = record(
        state,
        &approval.grant_id,
        TokenRefreshed {
            event_id: new_id(),
            occurred_at: now_micros(),
            grant_id: approval.grant_id.clone(),
            site_id: site.site_id.clone(),
            client_id: client.app.client_id.clone(),
            previous_refresh_hash: presented_hash,
            refresh_token_hash: hash_token(&new_refresh),
            token_id: issuance.token_id.clone(),
            scope: scopes.to_string(),
            expires_at: issuance.expires_at * 1_000_000,
            refresh_expires_at,
            assertion_jti: assertion_jti(client),
        },
    )
    .await?;
    match outcome {
        AuthOutcome::Applied => issuance.respond(state, &grant, &scopes, Some(new_refresh)),
        AuthOutcome::Refused(Refusal::RefreshReused) => {
            revoke_for(
                state,
                &grant,
                RevocationReason::RefreshReuse,
                "a rotated refresh token was presented again",
            )
            .await;
            Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ))
        }
        AuthOutcome::Refused(Refusal::RefreshExpired) => {
            Err(OAuthError::invalid_grant("the refresh token has expired"))
        }
        AuthOutcome::Refused(Refusal::GrantRevoked) => {
            Err(OAuthError::invalid_grant("the grant was revoked"))
        }
        AuthOutcome::Refused(Refusal::AssertionReplayed) => Err(OAuthError::invalid_client(
            "the client assertion's jti was used before",
        )),
        _ => Err(OAuthError::invalid_grant("the refresh token is not valid")),
    }
}

async fn client_credentials(
    state: &AuthState,
    site: &Site,
    form: &Form,
    client: &Client,
) -> OAuthResult<Response> {
    if client.proof == Proof::None {
        return Err(OAuthError::unauthorized_client(
            "a public client cannot use client_credentials",
        ));
    }
    let requested = scope::parse(form.get("scope")?.unwrap_or(""));
    let allowed = scope::parse(&client.app.scope);
    let system_only = scope::ScopeSet::from_scopes(
        requested
            .iter()
            .filter(|s| matches!(s, Scope::Resource(r) if r.context == scope::Context::System))
            .cloned(),
    );
    let granted = system_only.grantable(&allowed);
    if granted.is_empty() {
        return Err(OAuthError::invalid_scope(
            "no requested system scope is allowed for this client",
        ));
    }

    let token_id = new_id();
    let now = now_seconds();
    let expires_at = now + state.settings.backend_token_seconds;
    let claims = AccessClaims {
        iss: auth_base_url(&state.settings.public_url, &site.site_id),
        sub: client.app.client_id.clone(),
        aud: fhir_base_url(&state.settings.public_url, &site.site_id),
        exp: expires_at,
        iat: now,
        jti: token_id.clone(),
        client_id: client.app.client_id.clone(),
        scope: granted.to_string(),
        gid: None,
        site: site.site_id.clone(),
        patient: None,
        encounter: None,
        fhir_user: None,
        user_type: Some("system".to_string()),
    };
    let access_token = state
        .keys
        .read()
        .sign_access_token(&claims)
        .map_err(OAuthError::server_error)?;
    let outcome = record(
        state,
        &client.app.client_id,
        TokenIssued {
            event_id: new_id(),
            occurred_at: now_micros(),
            token_id,
            grant_id: None,
            site_id: site.site_id.clone(),
            client_id: client.app.client_id.clone(),
            grant_type: GrantType::ClientCredentials,
            scope: granted.to_string(),
            user_type: UserType::System,
            user_id: None,
            fhir_user: None,
            patient: None,
            encounter: None,
            expires_at: expires_at * 1_000_000,
            refresh_token_hash: None,
            refresh_expires_at: None,
            id_token_issued: false,
            assertion_jti: assertion_jti(client),
        },
    )
    .await?;
    if outcome == AuthOutcome::Refused(Refusal::AssertionReplayed) {
        return Err(OAuthError::invalid_client(
            "the client assertion's jti was used before",
        ));
    }
    Ok(token_response(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": state.settings.backend_token_seconds,
        "scope": granted.to_string(),
    })))
}

fn assertion_jti(client: &Client) -> Option<String> {
    match &client.proof {
        Proof::Assertion { jti, .. } => Some(jti.clone()),
        _ => None,
    }
}

/// Records that a grant was revoked because of a replay. The store already revoked it
/// when it refused the request; this event states why, for the audit trail.
async fn revoke_for(state: &AuthState, grant: &Grant, reason: RevocationReason, detail: &str) {
    let approval = &grant.approval;
    let event = GrantRevoked {
        event_id: new_id(),
        occurred_at: now_micros(),
        grant_id: approval.grant_id.clone(),
        client_id: approval.client_id.clone(),
        site_id: approval.site_id.clone(),
        reason,
        actor: "hearth".to_string(),
        detail: Some(detail.to_string()),
    };
    if let Err(error) = record(state, &approval.grant_id, event).await {
        tracing::error!(error = %error.description, grant = %approval.grant_id, "recording a revocation failed");
    }
}

/// The tokens about to be issued for a user grant.
struct Issuance {
    token_id: String,
    issued_at: i64,
    /// Seconds since the Unix epoch.
    expires_at: i64,
    access_token: OAuthResult<String>,
}

impl Issuance {
    fn for_grant(
        state: &AuthState,
        site: &Site,
        grant: &Grant,
        scopes: &scope::ScopeSet,
        token_id: String,
    ) -> Issuance {
        let approval = &grant.approval;
        let now = now_seconds();
        let expires_at = now + state.settings.access_token_seconds;
        let claims = AccessClaims {
            iss: auth_base_url(&state.settings.public_url, &site.site_id),
            sub: approval
                .user_id
                .clone()
                .unwrap_or_else(|| approval.client_id.clone()),
            aud: fhir_base_url(&state.settings.public_url, &site.site_id),
            exp: expires_at,
            iat: now,
            jti: token_id.clone(),
            client_id: approval.client_id.clone(),
            scope: scopes.to_string(),
            gid: Some(approval.grant_id.clone()),
            site: site.site_id.clone(),
            patient: approval.patient.clone(),
            encounter: approval.encounter.clone(),
            fhir_user: approval.fhir_user.clone(),
            user_type: Some(user_type_name(approval.user_type).to_string()),
        };
        let access_token = state
            .keys
            .read()
            .sign_access_token(&claims)
            .map_err(OAuthError::server_error);
        Issuance {
            token_id,
            issued_at: now,
            expires_at,
            access_token,
        }
    }

    /// A new refresh token and its expiry (microseconds), when the grant allows refresh.
    fn refresh_token(
        &self,
        state: &AuthState,
        policy: RefreshPolicy,
    ) -> Option<(String, Option<i64>)> {
        let seconds = match policy {
            RefreshPolicy::None => return None,
            RefreshPolicy::Offline => state.settings.offline_refresh_seconds,
            RefreshPolicy::Online => state.settings.session_seconds,
        };
        Some((
            generate_token(32),
            Some((self.issued_at + seconds) * 1_000_000),
        ))
    }

    fn wants_id_token(&self, scopes: &scope::ScopeSet) -> bool {
        scopes.contains(&Scope::OpenId)
            && (scopes.contains(&Scope::FhirUser) || scopes.contains(&Scope::Profile))
    }

    /// The token response with the launch context of the grant.
    fn respond(
        self,
        state: &AuthState,
        grant: &Grant,
        scopes: &scope::ScopeSet,
        refresh: Option<String>,
    ) -> OAuthResult<Response> {
        let mut body = Map::new();
        body.insert(
            "access_token".into(),
            Value::String(self.access_token.clone()?),
        );
        body.insert("token_type".into(), json!("Bearer"));
        body.insert(
            "expires_in".into(),
            json!(state.settings.access_token_seconds),
        );
        body.insert("scope".into(), Value::String(scopes.to_string()));
        if let Some(refresh) = refresh {
            body.insert("refresh_token".into(), Value::String(refresh));
        }
        if self.wants_id_token(scopes) {
            body.insert(
                "id_token".into(),
                Value::String(self.id_token(state, grant, scopes)?),
            );
        }
        insert_context(&mut body, grant);
        Ok(token_response(Value::Object(body)))
    }

    fn id_token(
        &self,
        state: &AuthState,
        grant: &Grant,
        scopes: &scope::ScopeSet,
    ) -> OAuthResult<String> {
        let approval = &grant.approval;
        let fhir_user = approval
            .fhir_user
            .as_ref()
            .filter(|_| scopes.contains(&Scope::FhirUser))
            .map(|reference| {
                format!(
                    "{}/{reference}",
                    fhir_base_url(&state.settings.public_url, &approval.site_id)
                )
            });
        let claims = IdTokenClaims {
            iss: auth_base_url(&state.settings.public_url, &approval.site_id),
            sub: approval.user_id.clone().unwrap_or_default(),
            aud: approval.client_id.clone(),
            exp: self.expires_at,
            iat: self.issued_at,
            nonce: approval.nonce.clone(),
            fhir_user,
            auth_time: None,
            name: None,
            given_name: None,
            family_name: None,
            preferred_username: None,
            profile: None,
        };
        state
            .keys
            .read()
            .sign_id_token(&claims)
            .map_err(OAuthError::server_error)
    }
}

/// Adds the SMART launch context parameters of a grant to a token response.
fn insert_context(body: &mut Map<String, Value>, grant: &Grant) {
    let approval = &grant.approval;
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(name.to_string(), value);
        }
    };
    put("patient", approval.patient.clone().map(Value::String));
    put("encounter", approval.encounter.clone().map(Value::String));
    put(
        "fhirContext",
        approval
            .fhir_context
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
    );
    put(
        "need_patient_banner",
        approval.need_patient_banner.map(Value::Bool),
    );
    put(
        "smart_style_url",
        approval.smart_style_url.clone().map(Value::String),
    );
    put("intent", approval.intent.clone().map(Value::String));
    put("tenant", approval.tenant.clone().map(Value::String));
    if let Some(Value::Object(custom)) = approval
        .custom_context
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
    {
        for (name, value) in custom {
            body.entry(name).or_insert(value);
        }
    }
}

pub fn user_type_name(user_type: UserType) -> &'static str {
    match user_type {
        UserType::Patient => "Patient",
        UserType::Practitioner => "Practitioner",
        UserType::RelatedPerson => "RelatedPerson",
        UserType::System => "system",
        UserType::Other => "other",
    }
}

/// A token response: JSON with `Cache-Control: no-store` and `Pragma: no-cache`.
fn token_response(body: Value) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
