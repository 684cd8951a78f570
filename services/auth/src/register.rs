//! RFC 7591 dynamic client registration, for sites that allow it. A registered client is
//! activated at the site it registered with.
//!
//! Anyone can reach this endpoint, so an anonymous registration gets only what a patient
//! or a user still has to approve on the approval page: the authorization code grant,
//! `patient/` and `user/` scopes that read and search, and the launch, OpenID and refresh
//! scopes. The `client_credentials` grant, `system/` scopes and scopes that create, update
//! or delete need an initial access token (RFC 7591 section 3), which is the admin token
//! sent as `Authorization: Bearer`. An anonymous registration's `jwks_uri` must be an https
//! URL that does not name this machine or a private network address.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_auth_store::Site;
use hearth_schemas::RegistrationSource;
use hearth_smart::scope::{self, Permissions, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AuthState;
use crate::admin::{AppRequest, activate_app, register_app, require_admin};
use crate::jwks_fetch::is_public_ip;
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

/// Scopes an anonymous registration gets when its metadata has no `scope`.
pub const DEFAULT_DYNAMIC_SCOPE: &str =
    "launch launch/patient patient/*.rs openid fhirUser offline_access";

/// Who registers: anyone, or a holder of the initial access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registrant {
    Anonymous,
    Trusted,
}

pub async fn register(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, &site, &headers, &body).await {
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

async fn handle(
    state: &AuthState,
    site: &Site,
    headers: &HeaderMap,
    body: &[u8],
) -> OAuthResult<Value> {
    if !site.dynamic_registration {
        return Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "this site does not allow dynamic client registration",
        ));
    }
    let registrant = if headers.contains_key(header::AUTHORIZATION) {
        require_admin(state, headers)?;
        Registrant::Trusted
    } else {
        Registrant::Anonymous
    };
    let metadata: Metadata = serde_json::from_slice(body)
        .map_err(|e| metadata_error(format!("the body is not valid client metadata: {e}")))?;
    let scope = match (&metadata.scope, registrant) {
        (Some(scope), _) => scope.clone(),
        (None, Registrant::Anonymous) => DEFAULT_DYNAMIC_SCOPE.to_string(),
        (None, Registrant::Trusted) => String::new(),
    };
    if registrant == Registrant::Anonymous {
        check_anonymous(&metadata, &scope)?;
    }
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
        scope,
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
    let actor = match registrant {
        Registrant::Anonymous => "",
        Registrant::Trusted => "initial-access-token",
    };
    let (app, secret) = register_app(state, &request, actor, RegistrationSource::Dynamic)
        .await
        .map_err(|e| match e.error {
            "invalid_redirect_uri" | "invalid_client_metadata" => e,
            _ if e.status == StatusCode::BAD_REQUEST => metadata_error(e.description),
            _ => e,
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

/// Applies the anonymous registration policy of the module documentation.
fn check_anonymous(metadata: &Metadata, scope: &str) -> OAuthResult<()> {
    let grant_types = metadata.grant_types.as_deref().unwrap_or_default();
    if let Some(grant_type) = grant_types
        .iter()
        .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(metadata_error(format!(
            "grant type {grant_type} needs an initial access token; anonymous registration \
             allows authorization_code and refresh_token"
        )));
    }
    if metadata.grant_types.is_some() && !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(metadata_error(
            "anonymous registration needs the authorization_code grant",
        ));
    }
    if metadata.redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris is missing; anonymous registration is for apps that users launch",
        ));
    }
    if let Some(denied) = scope::parse(scope)
        .iter()
        .find(|s| !anonymous_may_register(s))
    {
        return Err(metadata_error(format!(
            "scope {denied} needs an initial access token; anonymous registration allows \
             patient/ and user/ scopes that read and search, launch, launch/patient, \
             launch/encounter, openid, fhirUser, profile, offline_access and online_access"
        )));
    }
    if let Some(uri) = &metadata.jwks_uri {
        check_public_https(uri)?;
    }
    Ok(())
}

/// Scopes an anonymous registration may hold: ones a user approves and that only read.
fn anonymous_may_register(scope: &Scope) -> bool {
    match scope {
        Scope::Resource(resource) => {
            resource.context != scope::Context::System
                && Permissions::V1_READ.contains(resource.permissions)
        }
        Scope::Launch
        | Scope::LaunchPatient
        | Scope::LaunchEncounter
        | Scope::LaunchResource { .. }
        | Scope::OpenId
        | Scope::FhirUser
        | Scope::Profile
        | Scope::OfflineAccess
        | Scope::OnlineAccess => true,
        Scope::Other(_) => false,
    }
}

/// Checks an anonymous registrant's `jwks_uri`: Hearth fetches it at the token endpoint,
/// so it must not lead to this machine or a private network. A host name passes here
/// whatever it resolves to now; the fetch itself connects only to public addresses.
fn check_public_https(uri: &str) -> OAuthResult<()> {
    let invalid = || {
        metadata_error(format!(
            "jwks_uri {uri} must be an https URL of a public host"
        ))
    };
    let parsed = url::Url::parse(uri).map_err(|_| invalid())?;
    if parsed.scheme() != "https" {
        return Err(invalid());
    }
    let public = match parsed.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost") && name.contains('.')
        }
        Some(url::Host::Ipv4(ip)) => is_public_ip(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_public_ip(ip.into()),
        None => false,
    };
    if public { Ok(()) } else { Err(invalid()) }
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::invalid_client_metadata(description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_scopes_only_read() {
        let allowed = "launch launch/patient patient/*.rs user/Observation.read openid \
                       fhirUser profile offline_access online_access patient/Patient.r";
        for scope in scope::parse(allowed).iter() {
            assert!(anonymous_may_register(scope), "{scope} is rejected");
        }
        let denied = "system/*.cruds system/Patient.rs patient/*.cruds user/*.write \
                      patient/Observation.c custom_scope";
        for scope in scope::parse(denied).iter() {
            assert!(!anonymous_may_register(scope), "{scope} is allowed");
        }
    }

    #[test]
    fn jwks_uri_must_be_public_https() {
        assert!(check_public_https("https://keys.app.example/jwks.json").is_ok());
        for uri in [
            "http://keys.app.example/jwks.json",
            "https://127.0.0.1:8080/jwks",
            "https://localhost/jwks",
            "https://10.0.0.5/jwks",
            "https://192.168.1.1/jwks",
            "https://169.254.169.254/latest",
            "https://[::1]/jwks",
            "https://[::ffff:127.0.0.1]/jwks",
            "https://intranet/jwks",
            "file:///etc/passwd",
            "not a url",
        ] {
            let error = check_public_https(uri).expect_err(uri);
            assert_eq!(error.error, "invalid_client_metadata", "{uri}");
        }
    }
}
