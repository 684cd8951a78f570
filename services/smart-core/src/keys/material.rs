//! Key generation, PKCS#8 PEM encoding and public JWKs for the two signing algorithms.

use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::Generate;
use rand::rngs::SysRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{KeyError, SigningAlgorithm};
use crate::base64url;

/// RSA modulus size for RS256 id-token keys.
const RSA_BITS: usize = 2048;

/// A private signing key.
pub(super) enum KeyMaterial {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::SecretKey),
}

/// The public half of a signing key, as JWK members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublicJwk {
    Rsa { n: String, e: String },
    P256 { x: String, y: String },
}

impl KeyMaterial {
    /// Generates a new key from the operating system's random number generator.
    pub(super) fn generate(algorithm: SigningAlgorithm) -> Result<KeyMaterial, KeyError> {
        let failed = |error: &dyn std::fmt::Display| KeyError::Generate(error.to_string());

        match algorithm {
            SigningAlgorithm::Rs256 => rsa::PrivateKey::new(&mut SysRng, RSA_BITS)
                .map(|key| KeyMaterial::Rsa(Box::new(key)))
                .map_err(|error| failed(&error)),
            SigningAlgorithm::Es256 => p256::SecretKey::try_generate_from_rng(&mut SysRng)
                .map(KeyMaterial::P256)
                .map_err(|error| failed(&error)),
        }
    }

    /// Parses a PKCS#8 PEM private key of the given algorithm.
    pub(super) fn from_pem(algorithm: SigningAlgorithm, pem: &str) -> Result<KeyMaterial, String> {
        match algorithm {
            SigningAlgorithm::Rs256 => rsa::PrivateKey::from_pkcs8_pem(pem)
                .map(|key| KeyMaterial::Rsa(Box::new(key)))
                .map_err(|error| error.to_string()),
            SigningAlgorithm::Es256 => p256::SecretKey::from_pkcs8_pem(pem)
                .map(KeyMaterial::P256)
                .map_err(|error| error.to_string()),
        }
    }

    /// Encodes the key as PKCS#8 PEM. The returned string is zeroed when dropped.
    pub(super) fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let encoded = match self {
            KeyMaterial::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
            KeyMaterial::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
        };
        encoded.map_err(|error| KeyError::Generate(format!("PKCS#8 encoding failed: {error}")))
    }

    pub(super) fn public_jwk(&self) -> PublicJwk {
        match self {
            KeyMaterial::Rsa(key) => PublicJwk::Rsa {
                n: base64url::encode(key.n_bytes()),
                e: base64url::encode(key.e_bytes()),
            },
            KeyMaterial::P256(key) => {
                // Uncompressed SEC1 point: 0x04, then x and y of 32 bytes each.
                let point = key.public_key().to_sec1_bytes();
                PublicJwk::P256 {
                    x: base64url::encode(&point[1..33]),
                    y: base64url::encode(&point[33..65]),
                }
            }
        }
    }

    /// Returns the key in the form the JWT library signs with: PKCS#1 DER for RSA and
    /// PKCS#8 DER for P-256.
    pub(super) fn encoding_key(&self) -> Result<EncodingKey, KeyError> {
        let failed = |error: &dyn std::fmt::Display| {
            KeyError::Generate(format!("DER encoding failed: {error}"))
        };

        match self {
            KeyMaterial::Rsa(key) => key
                .to_pkcs1_der()
                .map(|der| EncodingKey::from_rsa_der(der.as_bytes()))
                .map_err(|error| failed(&error)),
            KeyMaterial::P256(key) => key
                .to_pkcs8_der()
                .map(|der| EncodingKey::from_ec_der(der.as_bytes()))
                .map_err(|error| failed(&error)),
        }
    }
}

impl PublicJwk {
    /// Computes the RFC 7638 JWK thumbprint: SHA-256 over the required members in
    /// lexicographic order with no whitespace, in unpadded base64url.
    pub(super) fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            PublicJwk::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
        };
        base64url::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Returns the JWK published in the JWKS document.
    pub(super) fn to_json(&self, kid: &str, algorithm: SigningAlgorithm) -> serde_json::Value {
        match self {
            PublicJwk::Rsa { n, e } => json!({
                "kty": "RSA",
                "kid": kid,
                "use": "sig",
                "alg": algorithm.as_str(),
                "n": n,
                "e": e,
            }),
            PublicJwk::P256 { x, y } => json!({
                "kty": "EC",
                "kid": kid,
                "use": "sig",
                "alg": algorithm.as_str(),
                "crv": "P-256",
                "x": x,
                "y": y,
            }),
        }
    }

    pub(super) fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        let decoded = match self {
            PublicJwk::Rsa { n, e } => DecodingKey::from_rsa_components(n, e),
            PublicJwk::P256 { x, y } => DecodingKey::from_ec_components(x, y),
        };
        decoded.map_err(|error| KeyError::Generate(format!("public key encoding failed: {error}")))
    }
}
