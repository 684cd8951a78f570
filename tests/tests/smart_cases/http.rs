//! HTTP and OAuth helpers: responses read in full, PKCE, form encoding, client
//! credentials and JWTs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::blocking::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::JWT_APP;

/// A P-384 key made for these tests only, as base64 of its PKCS#8 DER encoding.
/// [`JWT_APP`] registers its public half: `ES384_X` and `ES384_Y`.
const ES384_PRIVATE_KEY: &str = "\
    MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDA0G06hCDkskUoamB6b\
    1Ji9jBAcQ42T476PfCE6r4Gbz+zH6c0ftVtdAn9oixDeqm+hZANiAASZveHzVVo8\
    EB1Cip9sdwEz9DZXQmlwLtWoaYT7psrBFChlThXplwp5kkf60nU9p6aNoOy7Bn2E\
    9mghvZW7HYChN26KKhkuQNyCYYCXV9oMdcTOLEkFHnjnqXOrMGx2MUY=";
pub const ES384_KID: &str = "e2e-es384";
pub const ES384_X: &str = "mb3h81VaPBAdQoqfbHcBM_Q2V0JpcC7VqGmE-6bKwRQoZU4V6ZcKeZJH-tJ1Paem";
pub const ES384_Y: &str = "jaDsuwZ9hPZoIb2Vux2AoTduiioZLkDcgmGAl1faDHXEzixJBR5456lzqzBsdjFG";

/// A response read in full: status, headers and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Sends a request and reads the response; a 5xx status fails the test.
    pub fn send(request: RequestBuilder) -> Reply {
        let response = request.send().expect("the request reaches hearth");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().unwrap_or_default();
        assert!(status < 500, "hearth failed with {status}: {body}");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} with a body that is not JSON ({e}): {}",
                self.status, self.body
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Parses the `Location` of a 302 into its query parameters; any other status fails
    /// the test.
    pub fn redirect(&self) -> Redirect {
        assert_eq!(self.status, 302, "expected a redirect, got: {}", self.body);
        let location = self
            .header("location")
            .expect("a redirect has a Location header")
            .to_string();
        let url = url::Url::parse(&location)
            .unwrap_or_else(|e| panic!("Location {location} is not a URL: {e}"));
        let mut params = BTreeMap::new();
        for (name, value) in url.query_pairs() {
            let previous = params.insert(name.to_string(), value.to_string());
            assert!(previous.is_none(), "{name} appears twice in {location}");
        }
        Redirect { location, params }
    }
}

/// GETs `url` without credentials, with extra headers.
pub fn anonymous_get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = reqwest::blocking::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::send(request)
}

/// A redirect back to the app, with its query parameters.
#[derive(Debug)]
pub struct Redirect {
    pub location: String,
    pub params: BTreeMap<String, String>,
}

impl Redirect {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn code(&self) -> String {
        self.param("code")
            .unwrap_or_else(|| panic!("no code in {}", self.location))
            .to_string()
    }
}

/// A PKCE verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = URL_SAFE_NO_PAD.encode(Sha256::digest(unique("verifier")));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// A string no other call in this process returns.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{count}", std::process::id())
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Encodes form pairs; a name may repeat.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// Decodes the claims of a JWT without checking its signature.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("{token} is not a JWT"));
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Replaces the claims of a JWT and keeps its header and signature.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token} is not a JWS");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Splits a `scope` value into its tokens, sorted.
pub fn scope_set(scope: &str) -> Vec<String> {
    let mut tokens: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
    tokens.sort();
    tokens
}

/// The base URLs of one site.
#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub auth: String,
    pub fhir: String,
}

/// How a request at the token, introspection or revocation endpoint names its client.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Nothing identifies the client.
    Anonymous,
    /// A public client: `client_id` in the form.
    Public(String),
    /// `client_secret_basic`.
    Basic(String, String),
    /// `client_secret_post`.
    Post(String, String),
    /// `private_key_jwt`: the client id and a signed assertion.
    Assertion(String, String),
}

impl ClientAuth {
    pub fn public(client_id: &str) -> ClientAuth {
        ClientAuth::Public(client_id.to_string())
    }

    /// Adds the client's credentials to a request and its form pairs.
    pub fn apply(
        &self,
        request: RequestBuilder,
        pairs: &mut Vec<(String, String)>,
    ) -> RequestBuilder {
        let mut push = |name: &str, value: &str| pairs.push((name.to_string(), value.to_string()));
        match self {
            ClientAuth::Anonymous => request,
            ClientAuth::Public(id) => {
                push("client_id", id);
                request
            }
            ClientAuth::Basic(id, secret) => {
                request.header("Authorization", basic_header(id, secret))
            }
            ClientAuth::Post(id, secret) => {
                push("client_id", id);
                push("client_secret", secret);
                request
            }
            ClientAuth::Assertion(id, assertion) => {
                push("client_id", id);
                push(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                push("client_assertion", assertion);
                request
            }
        }
    }
}

/// `Basic` credentials with both parts form-encoded, as RFC 6749 section 2.3.1 requires.
pub fn basic_header(id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// Signs a client assertion of [`JWT_APP`] for a token endpoint URL with ES384.
pub fn client_assertion(token_url: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(ES384_KID.to_string());
    sign_es384(
        &header,
        &json!({
            "iss": JWT_APP,
            "sub": JWT_APP,
            "aud": token_url,
            "exp": now_seconds() + 120,
            "jti": unique("jti"),
        }),
    )
}

/// Signs claims with the test key.
pub fn sign_es384(header: &jsonwebtoken::Header, claims: &Value) -> String {
    let der = STANDARD
        .decode(ES384_PRIVATE_KEY)
        .expect("the test key is base64");
    let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
    jsonwebtoken::encode(header, claims, &key).expect("signing with the test key")
}

/// Tokens from a successful token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub response: Value,
}

impl Tokens {
    pub fn from_response(reply: &Reply) -> Tokens {
        assert_eq!(reply.status, 200, "token request failed: {}", reply.body);
        let response = reply.json();
        let access = response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {response}"))
            .to_string();
        let refresh = response["refresh_token"].as_str().map(str::to_string);
        Tokens {
            access,
            refresh,
            response,
        }
    }

    pub fn scope(&self) -> Vec<String> {
        scope_set(self.response["scope"].as_str().unwrap_or_default())
    }

    pub fn refresh_token(&self) -> &str {
        self.refresh
            .as_deref()
            .unwrap_or_else(|| panic!("no refresh_token in {}", self.response))
    }
}
