//! Client authentication with signed JWT assertions (`private_key_jwt`, RFC 7523), as
//! SMART Backend Services and confidential asymmetric clients use it.
//!
//! [`verify_client_assertion`] enforces SMART App Launch 2.2's rules for the
//! `client_assertion` parameter:
//!
//! - The header `alg` is RS384 or ES384. `none`, HMAC and every other algorithm (RS256
//!   included) are rejected. A `typ` header, when present, is `JWT`.
//! - `kid` selects the one key with that `kid` and a `kty` that fits `alg`. SMART lists
//!   `kid` as required, but an assertion without it is accepted when exactly one key fits
//!   `alg`, and rejected when several do.
//! - A `jku` header must equal the client's registered JWKS URL
//!   ([`Jwks::with_source_url`]).
//! - `iss` and `sub` both equal the client id, and `aud` is (or contains) the token
//!   endpoint URL. `exp` is present, not past and at most five minutes ahead, and `jti`
//!   is present.
//!
//! The caller still has to record `jti` until `exp` and reject a repeat, because this
//! crate keeps no state. Every error maps to the RFC 6749 error code `invalid_client`.

mod jwks;

#[cfg(test)]
mod tests;

use jsonwebtoken::Validation;
use serde::Deserialize;

pub use jwks::{AssertionAlgorithm, Jwks, MAX_RSA_BITS, MIN_RSA_BITS};

use crate::base64url;

/// How far in the future `exp` may be, in seconds (SMART: no more than five minutes).
pub const MAX_LIFETIME_SECONDS: i64 = 300;

/// Clock skew allowed when checking that `exp` has not passed and `nbf` and `iat` have
/// come, in seconds.
pub const CLOCK_SKEW_SECONDS: i64 = 30;

/// The `client_assertion_type` value for JWT client assertions.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Reasons a client assertion is rejected. The `Display` text is safe to send as the
/// `error_description`; it names the failed check but never echoes key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("client_assertion is not a well-formed JWT: {0}")]
    Malformed(String),

    #[error("client_assertion algorithm `{0}` is not allowed: use RS384 or ES384")]
    UnsupportedAlgorithm(String),

    #[error("client_assertion header has a `crit` member, which this server does not support")]
    CriticalHeader,

    #[error("client_assertion jku `{jku}` is not the client's registered JWKS URL")]
    JkuMismatch { jku: String },

    #[error("client_assertion kid `{0}` matches no registered key for its algorithm")]
    UnknownKey(String),

    #[error("no registered key fits the client_assertion algorithm {0}")]
    NoKey(&'static str),

    #[error(
        "several registered keys fit the client_assertion algorithm {0}: the assertion \
         must name one with `kid`"
    )]
    AmbiguousKey(&'static str),

    #[error("several registered keys have the client_assertion kid `{0}`")]
    DuplicateKid(String),

    #[error("client_assertion signature is invalid")]
    InvalidSignature,

    #[error("client_assertion claim `{0}` is missing")]
    MissingClaim(&'static str),

    #[error("client_assertion iss does not equal the client id")]
    WrongIssuer,

    #[error("client_assertion sub does not equal iss")]
    SubjectMismatch,

    #[error("client_assertion aud does not name this token endpoint")]
    WrongAudience,

    #[error("client_assertion has expired")]
    Expired,

    #[error("client_assertion exp is more than 5 minutes in the future")]
    ExpiresTooLate,

    #[error("client_assertion is not valid yet (nbf or iat is in the future)")]
    NotYetValid,

    #[error("the client's JWKS is invalid: {0}")]
    InvalidJwks(String),
}

impl AssertionError {
    /// Returns the RFC 6749 error code for the token response.
    pub fn oauth_error(&self) -> &'static str {
        "invalid_client"
    }
}

/// The verified claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionClaims {
    /// The client id (`iss` and `sub`).
    pub client_id: String,
    /// The assertion id. The caller rejects a `jti` it has seen before `exp`.
    pub jti: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    pub iat: Option<i64>,
    /// The `kid` of the key that verified the signature, when the key has one.
    pub kid: Option<String>,
}

/// The JOSE header members this module reads.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    jku: Option<String>,
    typ: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// Claims as written, each optional so a missing one gets its own error.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

/// `aud` may be one string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, expected: &str) -> bool {
        match self {
            Audience::One(value) => value == expected,
            Audience::Many(values) => values.iter().any(|value| value == expected),
        }
    }
}

/// Verifies `assertion` for `expected_client_id` at the token endpoint `token_url`,
/// with `now` in seconds since the Unix epoch. See the module documentation for the
/// checks.
pub fn verify_client_assertion(
    assertion: &str,
    jwks: &Jwks,
    expected_client_id: &str,
    token_url: &str,
    now: i64,
) -> Result<AssertionClaims, AssertionError> {
    let header = read_header(assertion)?;
    let algorithm = check_algorithm(&header)?;
    check_jku(&header, jwks)?;
    let key = select_key(jwks, algorithm, header.kid.as_deref())?;

    let claims = verify_signature(assertion, key, algorithm)?;
    check_claims(&claims, expected_client_id, token_url, now)?;

    Ok(AssertionClaims {
        client_id: expected_client_id.to_string(),
        jti: claims.jti.unwrap_or_default(),
        exp: claims.exp.unwrap_or_default(),
        iat: claims.iat,
        kid: key.kid.clone(),
    })
}

fn read_header(assertion: &str) -> Result<RawHeader, AssertionError> {
    let malformed = |reason: &str| AssertionError::Malformed(reason.to_string());

    let mut parts = assertion.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };

    let bytes = base64url::decode(header).ok_or_else(|| malformed("header is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| malformed("header is not a JSON object"))
}

fn check_algorithm(header: &RawHeader) -> Result<AssertionAlgorithm, AssertionError> {
    if header.crit.is_some() {
        return Err(AssertionError::CriticalHeader);
    }
    if let Some(typ) = header
        .typ
        .as_deref()
        .filter(|typ| !typ.eq_ignore_ascii_case("JWT"))
    {
        return Err(AssertionError::Malformed(format!("typ `{typ}` is not JWT")));
    }

    let name = header
        .alg
        .as_deref()
        .ok_or_else(|| AssertionError::Malformed("header has no alg".to_string()))?;
    AssertionAlgorithm::from_name(name)
        .ok_or_else(|| AssertionError::UnsupportedAlgorithm(name.to_string()))
}

fn check_jku(header: &RawHeader, jwks: &Jwks) -> Result<(), AssertionError> {
    match (&header.jku, jwks.source_url()) {
        (None, _) => Ok(()),
        (Some(jku), Some(registered)) if jku == registered => Ok(()),
        (Some(jku), _) => Err(AssertionError::JkuMismatch { jku: jku.clone() }),
    }
}

fn select_key<'a>(
    jwks: &'a Jwks,
    algorithm: AssertionAlgorithm,
    kid: Option<&str>,
) -> Result<&'a jwks::ClientKey, AssertionError> {
    let mut candidates = jwks.keys_for(algorithm);

    if let Some(kid) = kid {
        let mut named = candidates.filter(|key| key.kid.as_deref() == Some(kid));
        return match (named.next(), named.next()) {
            (Some(only), None) => Ok(only),
            (None, _) => Err(AssertionError::UnknownKey(kid.to_string())),
            (Some(_), Some(_)) => Err(AssertionError::DuplicateKid(kid.to_string())),
        };
    }

    match (candidates.next(), candidates.next()) {
        (Some(only), None) => Ok(only),
        (None, _) => Err(AssertionError::NoKey(algorithm.as_str())),
        (Some(_), Some(_)) => Err(AssertionError::AmbiguousKey(algorithm.as_str())),
    }
}

/// Checks the signature and decodes the claims; time and identity checks come after.
fn verify_signature(
    assertion: &str,
    key: &jwks::ClientKey,
    algorithm: AssertionAlgorithm,
) -> Result<RawClaims, AssertionError> {
    let decoding_key = key.decoding_key().ok_or(AssertionError::InvalidSignature)?;

    let mut validation = Validation::new(algorithm.jwt_algorithm());
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;

    jsonwebtoken::decode::<RawClaims>(assertion, &decoding_key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => {
                AssertionError::Malformed("claims have the wrong types".to_string())
            }
            jsonwebtoken::errors::ErrorKind::Base64(_)
            | jsonwebtoken::errors::ErrorKind::Utf8(_)
            | jsonwebtoken::errors::ErrorKind::InvalidToken => {
                AssertionError::Malformed("payload is not base64url JSON".to_string())
            }
            _ => AssertionError::InvalidSignature,
        })
}

fn check_claims(
    claims: &RawClaims,
    client_id: &str,
    token_url: &str,
    now: i64,
) -> Result<(), AssertionError> {
    let iss = claims
        .iss
        .as_deref()
        .ok_or(AssertionError::MissingClaim("iss"))?;
    let sub = claims
        .sub
        .as_deref()
        .ok_or(AssertionError::MissingClaim("sub"))?;
    if iss != client_id {
        return Err(AssertionError::WrongIssuer);
    }
    if sub != iss {
        return Err(AssertionError::SubjectMismatch);
    }

    let aud = claims
        .aud
        .as_ref()
        .ok_or(AssertionError::MissingClaim("aud"))?;
    if !aud.contains(token_url) {
        return Err(AssertionError::WrongAudience);
    }

    check_times(claims, now)?;

    match claims.jti.as_deref() {
        Some(jti) if !jti.is_empty() => Ok(()),
        _ => Err(AssertionError::MissingClaim("jti")),
    }
}

fn check_times(claims: &RawClaims, now: i64) -> Result<(), AssertionError> {
    let exp = claims.exp.ok_or(AssertionError::MissingClaim("exp"))?;
    if exp.saturating_add(CLOCK_SKEW_SECONDS) <= now {
        return Err(AssertionError::Expired);
    }
    // The skew allowance applies here too, because clients that compute `exp` as five minutes
    // from a clock a few seconds ahead, or round it up, would otherwise fail now and then.
    if exp > now.saturating_add(MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) {
        return Err(AssertionError::ExpiresTooLate);
    }

    let latest_start = now.saturating_add(CLOCK_SKEW_SECONDS);
    let starts_later = |time: Option<i64>| time.is_some_and(|time| time > latest_start);
    if starts_later(claims.nbf) || starts_later(claims.iat) {
        return Err(AssertionError::NotYetValid);
    }
    Ok(())
}
