//! A client's JSON Web Key Set (RFC 7517), reduced to keys that can verify RS384 or
//! ES384 signatures.

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use super::AssertionError;
use crate::base64url;

/// The minimum RSA modulus size accepted from a client, in bits. Smaller keys are skipped.
pub const MIN_RSA_BITS: usize = 2048;
/// The maximum RSA modulus size accepted from a client, in bits: the default limit of the
/// `rsa` crate (0.10) that verifies the signatures. Larger keys are skipped.
pub const MAX_RSA_BITS: usize = rsa::PublicKey::MAX_SIZE;

/// The signature algorithms SMART allows for client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssertionAlgorithm {
    Rs384,
    Es384,
}

impl AssertionAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlgorithm::Rs384 => "RS384",
            AssertionAlgorithm::Es384 => "ES384",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<AssertionAlgorithm> {
        match name {
            "RS384" => Some(AssertionAlgorithm::Rs384),
            "ES384" => Some(AssertionAlgorithm::Es384),
            _ => None,
        }
    }

    pub(super) fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            AssertionAlgorithm::Rs384 => jsonwebtoken::Algorithm::RS384,
            AssertionAlgorithm::Es384 => jsonwebtoken::Algorithm::ES384,
        }
    }
}

/// A client's public keys, parsed from its JWKS, and the URL they came from when the
/// client registered a JWKS URL.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<ClientKey>,
    source_url: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct ClientKey {
    pub kid: Option<String>,
    pub algorithm: AssertionAlgorithm,
    material: PublicMaterial,
}

#[derive(Debug, Clone)]
enum PublicMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P384 { x: String, y: String },
}

/// One JWK as written; members this module does not use are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    public_key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl Jwks {
    /// Parses a JWK Set document. Fails when the text is not a JSON object with a `keys`
    /// array.
    ///
    /// Keys this server cannot use are skipped rather than failing the set, as RFC 7517
    /// section 5 recommends. Skipped are: an unknown `kty` or curve, missing or malformed
    /// members, an `alg` other than RS384 or ES384, a `use` other than `sig`, `key_ops`
    /// without `verify`, and RSA keys outside [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`]. Keys
    /// that include the private member `d` are skipped too, because a published private
    /// key is compromised.
    pub fn from_json(text: &str) -> Result<Jwks, AssertionError> {
        let raw: RawJwks = serde_json::from_str(text)
            .map_err(|error| AssertionError::InvalidJwks(error.to_string()))?;

        let keys = raw.keys.into_iter().filter_map(parse_key).collect();
        Ok(Jwks {
            keys,
            source_url: None,
        })
    }

    /// Records the registered JWKS URL these keys were fetched from. An assertion whose
    /// `jku` header names this URL is accepted; any other `jku` is rejected.
    pub fn with_source_url(mut self, url: impl Into<String>) -> Jwks {
        self.source_url = Some(url.into());
        self
    }

    /// Returns the registered JWKS URL, if any.
    pub fn source_url(&self) -> Option<&str> {
        self.source_url.as_deref()
    }

    /// Returns the number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn keys_for(
        &self,
        algorithm: AssertionAlgorithm,
    ) -> impl Iterator<Item = &ClientKey> {
        self.keys
            .iter()
            .filter(move |key| key.algorithm == algorithm)
    }
}

fn parse_key(value: serde_json::Value) -> Option<ClientKey> {
    let raw: RawJwk = serde_json::from_value(value).ok()?;

    if raw.d.is_some() || !allows_verification(&raw) {
        return None;
    }

    let (algorithm, material) = match raw.kty.as_deref()? {
        "RSA" => (AssertionAlgorithm::Rs384, rsa_material(&raw)?),
        "EC" if raw.crv.as_deref() == Some("P-384") => {
            (AssertionAlgorithm::Es384, p384_material(&raw)?)
        }
        _ => return None,
    };

    if raw
        .alg
        .as_deref()
        .is_some_and(|alg| alg != algorithm.as_str())
    {
        return None;
    }

    Some(ClientKey {
        kid: raw.kid,
        algorithm,
        material,
    })
}

fn allows_verification(raw: &RawJwk) -> bool {
    let use_allows = raw
        .public_key_use
        .as_deref()
        .is_none_or(|usage| usage == "sig");
    let ops_allow = raw
        .key_ops
        .as_ref()
        .is_none_or(|ops| ops.iter().any(|op| op == "verify"));
    use_allows && ops_allow
}

/// Decodes an RSA key and checks it the way the verifier will (odd modulus of
/// [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits, odd exponent from 3 to 2^33 - 1).
fn rsa_material(raw: &RawJwk) -> Option<PublicMaterial> {
    let n = base64url::decode(raw.n.as_deref()?)?;
    let e = base64url::decode(raw.e.as_deref()?)?;

    rsa::PublicKey::new_with_size_limits(
        rsa::BoxedUint::from_be_slice_vartime(&n),
        rsa::BoxedUint::from_be_slice_vartime(&e),
        MIN_RSA_BITS..=MAX_RSA_BITS,
    )
    .ok()?;
    Some(PublicMaterial::Rsa { n, e })
}

fn p384_material(raw: &RawJwk) -> Option<PublicMaterial> {
    let x = raw.x.as_deref()?;
    let y = raw.y.as_deref()?;

    let mut point = vec![0x04];
    point.extend(base64url::decode(x)?);
    point.extend(base64url::decode(y)?);
    p384::PublicKey::from_sec1_bytes(&point).ok()?;

    Some(PublicMaterial::P384 {
        x: x.to_string(),
        y: y.to_string(),
    })
}

impl ClientKey {
    pub(super) fn decoding_key(&self) -> Option<DecodingKey> {
        match &self.material {
            PublicMaterial::Rsa { n, e } => Some(DecodingKey::from_rsa_raw_components(n, e)),
            PublicMaterial::P384 { x, y } => DecodingKey::from_ec_components(x, y).ok(),
        }
    }
}
