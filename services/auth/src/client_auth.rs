//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523) and public
//! clients that only name themselves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine;
use hearth_auth_store::App;
use hearth_schemas::ClientType;
use hearth_smart::client_assertion::{Jwks, verify_client_assertion};
use hearth_smart::secret::hash_token;
use parking_lot::Mutex;
use percent_encoding::percent_decode_str;

use crate::AuthState;
use crate::jwks_fetch::UriOrigin;
use crate::oauth_error::{OAuthError, OAuthResult};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A form body of an OAuth endpoint, with every parameter's values.
#[derive(Debug, Default)]
pub struct Form {
    values: HashMap<String, Vec<String>>,
}

impl Form {
    /// Parses `application/x-www-form-urlencoded` bytes.
    pub fn parse(body: &[u8]) -> OAuthResult<Form> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| OAuthError::invalid_request(format!("the form body is not valid: {e}")))?;
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in pairs {
            values.entry(name).or_default().push(value);
        }
        Ok(Form { values })
    }

    /// Returns a parameter that may appear at most once (RFC 6749 section 3.1); empty
    /// values count as absent.
    pub fn get(&self, name: &str) -> OAuthResult<Option<&str>> {
        match self.values.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([value]) if value.is_empty() => Ok(None),
            Some([value]) => Ok(Some(value.as_str())),
            Some(_) => Err(OAuthError::invalid_request(format!(
                "parameter {name} appears more than once"
            ))),
        }
    }

    pub fn require(&self, name: &str) -> OAuthResult<&str> {
        self.get(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is missing")))
    }
}

/// Checks the request's content type for a form endpoint.
pub fn require_form(headers: &HeaderMap) -> OAuthResult<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        ))
    }
}

/// How the client proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A public client, which only names itself.
    None,
    Secret,
    /// A signed assertion whose `jti` must be single use until `expires_at` (seconds).
    Assertion {
        jti: String,
        expires_at: i64,
    },
}

/// An authenticated (or, for public clients, identified) client.
pub struct Client {
    pub app: App,
    pub proof: Proof,
}

/// Authenticates the client of a token, introspection or revocation request. Confidential
/// clients must use their registered method; public clients send `client_id` only.
pub async fn authenticate(
    state: &AuthState,
    headers: &HeaderMap,
    form: &Form,
    token_url: &str,
) -> OAuthResult<Client> {
    let basic = basic_credentials(headers)?;
    let posted_secret = form.get("client_secret")?;
    let assertion = match form.get("client_assertion_type")? {
        Some(JWT_BEARER) => Some(form.require("client_assertion")?),
        Some(other) => {
            return Err(OAuthError::invalid_client(format!(
                "unsupported client_assertion_type {other}"
            )));
        }
        None if form.get("client_assertion")?.is_some() => {
            return Err(OAuthError::invalid_request(
                "client_assertion_type is missing",
            ));
        }
        None => None,
    };
    let methods = usize::from(basic.is_some())
        + usize::from(posted_secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "the client used more than one authentication method",
        ));
    }

    if let Some(assertion) = assertion {
        return authenticate_assertion(state, form, assertion, token_url).await;
    }
    let (client_id, secret, method) = match (&basic, posted_secret) {
        (Some((id, secret)), _) => (id.clone(), Some(secret.clone()), "client_secret_basic"),
        (None, Some(secret)) => (
            form.require("client_id")?.to_string(),
            Some(secret.to_string()),
            "client_secret_post",
        ),
        (None, None) => (form.require("client_id")?.to_string(), None, "none"),
    };
    if let Some(form_id) = form.get("client_id")?
        && form_id != client_id
    {
        return Err(OAuthError::invalid_client(
            "client_id does not match the authenticated client",
        ));
    }
    let app = load_app(state, &client_id)?;
    match (app.client_type, secret) {
        (ClientType::Public, None) => Ok(Client {
            app,
            proof: Proof::None,
        }),
        (ClientType::Public, Some(_)) => {
            Err(OAuthError::invalid_client("a public client has no secret"))
        }
        (ClientType::ConfidentialSymmetric, Some(secret)) => {
            if !method_allowed(&app, method) {
                return Err(OAuthError::invalid_client(format!(
                    "the client is registered for {}, not {method}",
                    app.token_endpoint_auth_method
                )));
            }
            let matches = app
                .client_secret_hash
                .as_deref()
                .is_some_and(|stored| crate::same_secret(stored, &hash_token(&secret)));
            if matches {
                Ok(Client {
                    app,
                    proof: Proof::Secret,
                })
            } else {
                Err(OAuthError::invalid_client("client authentication failed"))
            }
        }
        (ClientType::ConfidentialSymmetric, None) => Err(OAuthError::invalid_client(
            "the client must authenticate with its secret",
        )),
        (ClientType::ConfidentialAsymmetric, _) => Err(OAuthError::invalid_client(
            "the client must authenticate with a signed client assertion (private_key_jwt)",
        )),
    }
}

/// Whether a symmetric client may use this secret method: only the one it registered, so
/// a secret meant for the Authorization header is not accepted from a form body (where
/// logs and caches may keep it), nor the other way round.
fn method_allowed(app: &App, method: &str) -> bool {
    app.token_endpoint_auth_method == method
}

fn load_app(state: &AuthState, client_id: &str) -> OAuthResult<App> {
    match state.store.app(client_id)? {
        Some(app) if !app.disabled => Ok(app),
        Some(_) => Err(OAuthError::invalid_client("the client is disabled")),
        None => Err(OAuthError::invalid_client("unknown client")),
    }
}

async fn authenticate_assertion(
    state: &AuthState,
    form: &Form,
    assertion: &str,
    token_url: &str,
) -> OAuthResult<Client> {
    let client_id = match form.get("client_id")? {
        Some(id) => id.to_string(),
        None => unverified_issuer(assertion)?,
    };
    let app = load_app(state, &client_id)?;
    if app.client_type != ClientType::ConfidentialAsymmetric {
        return Err(OAuthError::invalid_client(
            "the client is not registered for private_key_jwt",
        ));
    }
    let jwks = client_jwks(state, &app).await?;
    let now = crate::events::now_seconds();
    let claims = verify_client_assertion(assertion, &jwks, &client_id, token_url, now)
        .map_err(|e| OAuthError::invalid_client(format!("client assertion rejected: {e}")))?;
    Ok(Client {
        app,
        proof: Proof::Assertion {
            jti: claims.jti,
            expires_at: claims.exp,
        },
    })
}

/// Reads `iss` of an assertion before it is verified, only to find the client's keys.
fn unverified_issuer(assertion: &str) -> OAuthResult<String> {
    let payload = assertion
        .split('.')
        .nth(1)
        .ok_or_else(|| OAuthError::invalid_client("the client assertion is not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| OAuthError::invalid_client("the client assertion is not a JWT"))?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| OAuthError::invalid_client("the client assertion is not a JWT"))?;
    claims["iss"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| OAuthError::invalid_client("the client assertion has no iss"))
}

/// Keys fetched from apps' JWKS URLs, kept for five minutes.
#[derive(Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, (Instant, Jwks)>>,
}

const JWKS_TTL: Duration = Duration::from_secs(300);

async fn client_jwks(state: &AuthState, app: &App) -> OAuthResult<Jwks> {
    if let Some(inline) = &app.jwks {
        return Jwks::from_json(inline).map_err(|e| {
            OAuthError::invalid_client(format!("the registered JWKS is invalid: {e}"))
        });
    }
    let Some(url) = &app.jwks_uri else {
        return Err(OAuthError::invalid_client(
            "the client has no registered keys",
        ));
    };
    if let Some((fetched, jwks)) = state.jwks_cache.entries.lock().get(url)
        && fetched.elapsed() < JWKS_TTL
    {
        return Ok(jwks.clone());
    }
    let origin = if app.anonymous_jwks_uri {
        UriOrigin::Anonymous
    } else {
        UriOrigin::Trusted
    };
    let text = state.jwks.fetch(&app.client_id, url, origin).await?;
    let jwks = Jwks::from_json(&text)
        .map_err(|e| OAuthError::invalid_client(format!("the client's JWKS is invalid: {e}")))?
        .with_source_url(url);
    state
        .jwks_cache
        .entries
        .lock()
        .insert(url.clone(), (Instant::now(), jwks.clone()));
    Ok(jwks)
}

/// Decodes HTTP Basic credentials; RFC 6749 section 2.3.1 form-encodes both parts.
fn basic_credentials(headers: &HeaderMap) -> OAuthResult<Option<(String, String)>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| OAuthError::invalid_client("the Authorization header is not valid"))?;
    let Some(encoded) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| OAuthError::invalid_client("the Basic credentials are not valid base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| OAuthError::invalid_client("the Basic credentials are not UTF-8"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client("the Basic credentials have no colon"))?;
    let form_decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                OAuthError::invalid_client("the Basic credentials are not valid form encoding")
            })
    };
    Ok(Some((form_decode(id)?, form_decode(secret)?)))
}
