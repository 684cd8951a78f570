//! RFC 7591 dynamic client registration, for sites that allow it. A registered client is
//! activated at the site it registered with.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_auth_store::Site;
use hearth_schemas::RegistrationSource;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AuthState;
use crate::admin::{AppRequest, activate_app, register_app};
use crate::oauth_error::{OAuthError, OAuthResult};

/// RFC 7591 client metadata that Hearth reads; others are ignored, as section 2 allows.
#[derive(Debug, Deserialize)]
struct Metadata {
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    grant_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    jwks: Option<Value>,
    jwks_uri: Option<String>,
    logo_uri: Option<String>,
    client_uri: Option<String>,
    #[serde(default)]
    contacts: Vec<String>,
    software_id: Option<String>,
    software_version: Option<String>,
}

pub async fn register(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    body: Bytes,
) -> Response {
    match handle(&state, &site, &body).await {
        Ok(body) => {
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn handle(state: &AuthState, site: &Site, body: &[u8]) -> OAuthResult<Value> {
    if !site.dynamic_registration {
        return Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "this site does not allow dynamic client registration",
        ));
    }
    let metadata: Metadata = serde_json::from_slice(body)
        .map_err(|e| metadata_error(format!("the body is not valid client metadata: {e}")))?;
    let client_type = match metadata.token_endpoint_auth_method.as_deref() {
        None | Some("none") => "public",
        Some("client_secret_basic" | "client_secret_post") => "confidential-symmetric",
        Some("private_key_jwt") => "confidential-asymmetric",
        Some(other) => {
            return Err(metadata_error(format!(
                "token_endpoint_auth_method {other} is not supported"
            )));
        }
    };
    let request = AppRequest {
        client_id: None,
        name: metadata
            .client_name
            .clone()
            .unwrap_or_else(|| "Unnamed app".to_string()),
        client_type: client_type.to_string(),
        redirect_uris: metadata.redirect_uris.clone(),
        launch_uri: None,
        scope: metadata.scope.clone().unwrap_or_default(),
        grant_types: metadata.grant_types.clone(),
        token_endpoint_auth_method: metadata.token_endpoint_auth_method.clone(),
        jwks: metadata.jwks.clone(),
        jwks_uri: metadata.jwks_uri.clone(),
        logo_uri: metadata.logo_uri.clone(),
        client_uri: metadata.client_uri.clone(),
        contacts: metadata.contacts.clone(),
        vendor: None,
        software_id: metadata.software_id.clone(),
        software_version: metadata.software_version.clone(),
        sites: Vec::new(),
    };
    let (app, secret) = register_app(state, &request, "", RegistrationSource::Dynamic)
        .await
        .map_err(|e| match e.description.contains("redirect URI") {
            true => OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_redirect_uri",
                e.description,
            ),
            false if e.status == StatusCode::BAD_REQUEST => metadata_error(e.description),
            false => e,
        })?;
    activate_app(state, &site.site_id, &app.client_id).await?;

    let mut body = json!({
        "client_id": app.client_id,
        "client_id_issued_at": app.registered_at / 1_000_000,
        "client_name": app.name,
        "redirect_uris": app.redirect_uris,
        "grant_types": app.grant_types,
        "token_endpoint_auth_method": app.token_endpoint_auth_method,
        "scope": app.scope,
    });
    if let Some(secret) = secret {
        body["client_secret"] = Value::String(secret);
        body["client_secret_expires_at"] = json!(0);
    }
    if let Some(uri) = &app.jwks_uri {
        body["jwks_uri"] = json!(uri);
    }
    Ok(body)
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        description,
    )
}
