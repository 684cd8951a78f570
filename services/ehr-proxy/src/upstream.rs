//! Calls to upstream EHRs: authentication, per-site concurrency limits, timeouts and
//! retries.
//!
//! Each site gets a semaphore of `max_concurrent_per_site` slots, so a slow EHR holds at
//! most that many requests and a request over the limit waits at most `queue_timeout`
//! before it gets 503. Requests of other sites take slots from their own semaphores.
//!
//! SMART Backend Services tokens are fetched with a client assertion that Hearth signs
//! with its own RSA key (RS384), kept until 30 seconds before they expire, and dropped when
//! the upstream answers 401.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_auth_store::Site;
use hearth_schemas::UpstreamAuthMethod;
use hearth_smart::keys::KeyStore;
use parking_lot::{Mutex, RwLock};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::EhrConfig;
use crate::error::ProxyError;

/// One request to send upstream.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Absolute URL under the site's upstream base.
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

/// Response of the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Time spent waiting for the upstream, retries included.
    pub latency: Duration,
}

/// A cached upstream access token.
struct Token {
    /// [`upstream_fingerprint`] of the site settings the token was obtained with.
    fingerprint: String,
    value: String,
    expires: Instant,
}

/// The client of every upstream EHR.
pub struct Upstreams {
    http: reqwest::Client,
    config: Arc<EhrConfig>,
    keys: Arc<RwLock<KeyStore>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    tokens: Mutex<HashMap<String, Token>>,
    /// Token endpoints read from upstreams' `.well-known/smart-configuration`, by site id,
    /// with the fingerprint of the settings they were read with.
    token_urls: Mutex<HashMap<String, (String, String)>>,
}

/// Returns a stable digest of the settings that decide which upstream a site reaches and
/// as whom: base URL, FHIR version, auth method, client id, token endpoint and scope.
/// Cached tokens and responses carry it, so a change of these settings stops their use at
/// once. The digest is FNV-1a (64 bits), because it must be equal in every process and
/// release that reads the same log.
pub fn upstream_fingerprint(site: &Site) -> String {
    let fields = [
        site.upstream_base_url.as_deref().unwrap_or_default(),
        site.upstream_fhir_version.as_deref().unwrap_or_default(),
        match site.upstream_auth_method {
            UpstreamAuthMethod::None => "none",
            UpstreamAuthMethod::Bearer => "bearer",
            UpstreamAuthMethod::BackendServices => "backend-services",
        },
        site.upstream_client_id.as_deref().unwrap_or_default(),
        site.upstream_token_url.as_deref().unwrap_or_default(),
        site.upstream_scope.as_deref().unwrap_or_default(),
    ];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for byte in field.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Request headers passed on to the upstream; all others (Authorization above all) stay.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-none-exist",
    "prefer",
];

impl Upstreams {
    pub fn new(config: Arc<EhrConfig>, keys: Arc<RwLock<KeyStore>>) -> Result<Self, ProxyError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(config.connect_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(config.max_concurrent_per_site)
            .build()
            .map_err(|e| ProxyError::Upstream(e.to_string()))?;
        Ok(Upstreams {
            http,
            config,
            keys,
            limits: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_urls: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &EhrConfig {
        &self.config
    }

    /// Sends a request to a site's upstream within the site's concurrency limit.
    ///
    /// Idempotent methods (GET, HEAD, PUT, DELETE) are retried up to `retries` times after
    /// a connection failure or a 502, 503 or 504, with 100 ms, 200 ms, ... between tries:
    /// those mean the request most likely did not run, or running it again changes
    /// nothing. A timeout is not retried, because the time budget is spent. POST and
    /// PATCH are never retried, since a second try could create or change twice.
    pub async fn send(
        &self,
        site: &Site,
        request: UpstreamRequest,
    ) -> Result<UpstreamResponse, ProxyError> {
        let semaphore = self.limit(&site.site_id);
        let _permit = tokio::time::timeout(self.config.queue_timeout(), semaphore.acquire_owned())
            .await
            .map_err(|_| ProxyError::Saturated)?
            .map_err(|_| ProxyError::Saturated)?;

        let started = Instant::now();
        let idempotent = matches!(
            request.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        let mut attempt = 0;
        let mut refreshed_token = false;
        loop {
            let result = self.send_once(site, &request).await;
            let retry_status = matches!(
                &result,
                Ok(r) if matches!(r.0.as_u16(), 502..=504)
            );
            let retry = idempotent
                && attempt < self.config.retries
                && (retry_status || matches!(result, Err(ProxyError::Connect(_))));
            if matches!(&result, Ok(r) if r.0 == StatusCode::UNAUTHORIZED)
                && site.upstream_auth_method == UpstreamAuthMethod::BackendServices
                && !refreshed_token
            {
                // The token was revoked or the upstream rotated keys: one more try with a
                // new token is safe for any method, because the upstream rejected the
                // request before running it.
                self.tokens.lock().remove(&site.site_id);
                refreshed_token = true;
                continue;
            }
            if retry {
                attempt += 1;
                tracing::warn!(site = %site.site_id, attempt, "retrying an upstream request");
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
                continue;
            }
            let (status, headers, body) = result?;
            // A 401 or 403 here rejects Hearth's credential, not the app's token (its
            // scopes were checked before), so the app must not see it as its own. A redirect would send the app off the site, and
            // Hearth does not follow one with its credential.
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(ProxyError::Auth(format!(
                    "the EHR rejected Hearth's credential with {}",
                    status.as_u16()
                )));
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                return Err(ProxyError::Redirect(status.as_u16()));
            }
            return Ok(UpstreamResponse {
                status,
                headers,
                body,
                latency: started.elapsed(),
            });
        }
    }

    async fn send_once(
        &self,
        site: &Site,
        request: &UpstreamRequest,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ProxyError> {
        let mut builder = self
            .http
            .request(request.method.clone(), &request.url)
            .headers(request.headers.clone())
            .header(reqwest::header::ACCEPT, "application/fhir+json");
        if let Some(token) = self.credential(site).await? {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.map_err(|e| self.classify(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, self.config.max_response_bytes).await?;
        Ok((status, headers, body))
    }

    fn classify(&self, error: reqwest::Error) -> ProxyError {
        if error.is_timeout() {
            ProxyError::Timeout(self.config.timeout())
        } else if error.is_connect() {
            ProxyError::Connect(error.without_url().to_string())
        } else {
            // The URL can contain a patient id, so it stays out of messages and logs.
            ProxyError::Upstream(error.without_url().to_string())
        }
    }

    fn limit(&self, site_id: &str) -> Arc<Semaphore> {
        self.limits
            .lock()
            .entry(site_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_concurrent_per_site)))
            .clone()
    }

    /// Names a setting that the site's upstream needs and does not have, so `hearth serve`
    /// can log it at start rather than fail at the first request.
    pub fn missing_setting(&self, site: &Site) -> Option<String> {
        if site.upstream_base_url.is_none() {
            return Some("upstream_base_url".to_string());
        }
        match site.upstream_auth_method {
            UpstreamAuthMethod::Bearer if self.config.bearer_token(&site.site_id).is_none() => {
                Some(EhrConfig::bearer_token_settings(&site.site_id))
            }
            UpstreamAuthMethod::BackendServices if site.upstream_client_id.is_none() => {
                Some("upstream_client_id".to_string())
            }
            _ => None,
        }
    }

    /// The bearer credential for the upstream, if its auth method needs one.
    async fn credential(&self, site: &Site) -> Result<Option<String>, ProxyError> {
        match site.upstream_auth_method {
            UpstreamAuthMethod::None => Ok(None),
            UpstreamAuthMethod::Bearer => self
                .config
                .bearer_token(&site.site_id)
                .map(|secret| Some(secret.expose().to_string()))
                .ok_or_else(|| {
                    ProxyError::Config(
                        site.site_id.clone(),
                        format!(
                            "its auth method is bearer, but no bearer token is set: set {}",
                            EhrConfig::bearer_token_settings(&site.site_id)
                        ),
                    )
                }),
            UpstreamAuthMethod::BackendServices => self.backend_token(site).await.map(Some),
        }
    }

    async fn backend_token(&self, site: &Site) -> Result<String, ProxyError> {
        let fingerprint = upstream_fingerprint(site);
        if let Some(token) = self.tokens.lock().get(&site.site_id)
            && token.expires > Instant::now()
            && token.fingerprint == fingerprint
        {
            return Ok(token.value.clone());
        }
        let client_id = site.upstream_client_id.clone().ok_or_else(|| {
            ProxyError::Config(
                site.site_id.clone(),
                "backend services need upstream_client_id".to_string(),
            )
        })?;
        let token_url = self.token_url(site).await?;
        let scope = site
            .upstream_scope
            .clone()
            .unwrap_or_else(|| "system/*.rs".to_string());
        let now = now_seconds();
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + 240,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let assertion = self
            .keys
            .read()
            .sign_client_assertion(&claims)
            .map_err(|e| ProxyError::Auth(e.to_string()))?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let form_body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(&token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_body)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        let body = read_limited(response, 1024 * 1024).await?;
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = error["error"].as_str().unwrap_or("no error code");
            return Err(ProxyError::Auth(format!(
                "the token endpoint returned {status} ({code})"
            )));
        }
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ProxyError::Auth(e.to_string()))?;
        let lifetime = token.expires_in.unwrap_or(300).saturating_sub(30).max(1);
        self.tokens.lock().insert(
            site.site_id.clone(),
            Token {
                fingerprint,
                value: token.access_token.clone(),
                expires: Instant::now() + Duration::from_secs(lifetime),
            },
        );
        tracing::info!(site = %site.site_id, expires_in = lifetime, "obtained an upstream access token");
        Ok(token.access_token)
    }

    /// Returns the upstream token endpoint: from the site, else from the upstream's
    /// `.well-known/smart-configuration`, remembered per site.
    async fn token_url(&self, site: &Site) -> Result<String, ProxyError> {
        if let Some(url) = &site.upstream_token_url {
            return Ok(url.clone());
        }
        let fingerprint = upstream_fingerprint(site);
        if let Some((read_with, url)) = self.token_urls.lock().get(&site.site_id)
            && *read_with == fingerprint
        {
            return Ok(url.clone());
        }
        let base = site.upstream_base_url.as_deref().unwrap_or_default();
        let url = format!(
            "{}/.well-known/smart-configuration",
            base.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let body = read_limited(response, 1024 * 1024).await?;
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ProxyError::Auth(format!("invalid smart-configuration: {e}")))?;
        let token_url = document["token_endpoint"]
            .as_str()
            .ok_or_else(|| ProxyError::Auth("smart-configuration has no token_endpoint".into()))?
            .to_string();
        self.token_urls
            .lock()
            .insert(site.site_id.clone(), (fingerprint, token_url.clone()));
        Ok(token_url)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, ProxyError> {
    let mut body = Vec::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(Bytes::from(body)),
            Err(e) if e.is_timeout() => {
                return Err(ProxyError::Timeout(Duration::ZERO));
            }
            Err(e) => return Err(ProxyError::Upstream(e.to_string())),
        };
        if body.len() + chunk.len() > limit {
            return Err(ProxyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
}

/// Copies the request headers that the upstream may see.
pub fn forwarded_headers(headers: &axum::http::HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(*name)
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            )
        {
            forwarded.insert(name, value);
        }
    }
    forwarded
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_schemas::Backing;

    fn site() -> Site {
        Site {
            site_id: "north".to_string(),
            name: "North".to_string(),
            fhir_base_path: "/sites/north/fhir".to_string(),
            backing: Backing::Ehr,
            upstream_base_url: Some("https://ehr.example/fhir".to_string()),
            upstream_auth_method: UpstreamAuthMethod::BackendServices,
            upstream_client_id: Some("hearth".to_string()),
            upstream_token_url: None,
            upstream_scope: None,
            upstream_fhir_version: Some("4.0.1".to_string()),
            dynamic_registration: false,
            cache_freshness_s: Default::default(),
            default_cache_freshness_s: 60,
        }
    }

    #[test]
    fn fingerprint_follows_upstream_settings() {
        let before = upstream_fingerprint(&site());
        assert_eq!(before.len(), 16);
        assert_eq!(before, upstream_fingerprint(&site()), "stable");

        let mut moved = site();
        moved.upstream_base_url = Some("https://ehr2.example/fhir".to_string());
        assert_ne!(before, upstream_fingerprint(&moved), "base URL");

        let mut stu3 = site();
        stu3.upstream_fhir_version = Some("3.0.2".to_string());
        assert_ne!(before, upstream_fingerprint(&stu3), "FHIR version");

        let mut narrower = site();
        narrower.upstream_scope = Some("system/Patient.rs".to_string());
        assert_ne!(before, upstream_fingerprint(&narrower), "scope");

        let mut fresher = site();
        fresher.default_cache_freshness_s = 5;
        fresher.name = "Renamed".to_string();
        assert_eq!(
            before,
            upstream_fingerprint(&fresher),
            "cache and name settings"
        );
    }

    #[test]
    fn fingerprint_separates_fields() {
        let mut a = site();
        a.upstream_client_id = Some("ab".to_string());
        a.upstream_scope = Some("c".to_string());
        let mut b = site();
        b.upstream_client_id = Some("a".to_string());
        b.upstream_scope = Some("bc".to_string());
        assert_ne!(upstream_fingerprint(&a), upstream_fingerprint(&b));
    }
}
