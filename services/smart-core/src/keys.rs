//! The server's signing keys, kept in a directory.
//!
//! [`KeyStore::open_or_create`] loads the directory, or on first use creates one RSA 2048
//! key for RS256 id tokens and one P-256 key for ES256 access tokens. Each key lives in a
//! PKCS#8 PEM file with mode 0600 named after its `kid`, the RFC 7638 thumbprint of its
//! public key. `keys.json` lists every key with its algorithm and whether it is active
//! (signs new tokens) or retired (published in the JWKS so tokens it signed still
//! verify). [`KeyStore::rotate`] retires the active keys and creates new ones;
//! [`KeyStore::prune_retired`] removes retired keys once no token they signed can still
//! be valid.
//!
//! NOTE: one process should own a key directory. Two processes opening an empty
//! directory at the same moment can each create keys, and the last index written wins.

mod claims;
mod material;
mod store;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use claims::{AccessClaims, IdTokenClaims};
use material::{KeyMaterial, PublicJwk};
use store::{Index, IndexEntry};

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Clock skew allowed when checking `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECONDS: u64 = 30;

/// Errors from the key store and from token signing and verification.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid key index {path}: {reason}")]
    InvalidIndex { path: PathBuf, reason: String },

    #[error("invalid key file {path}: {reason}")]
    InvalidKeyFile { path: PathBuf, reason: String },

    #[error("key generation failed: {0}")]
    Generate(String),

    #[error("token signing failed: {0}")]
    Sign(String),

    /// The token is malformed, has a bad signature, an unknown key, or wrong claims.
    #[error("invalid token: {0}")]
    InvalidToken(String),

    /// The token verified but its `exp` has passed.
    #[error("token has expired")]
    Expired,
}

/// The two algorithms this server signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, for id tokens (SMART requires RS256 support).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256, for access tokens (smaller and faster than RSA).
    #[serde(rename = "ES256")]
    Es256,
}

impl SigningAlgorithm {
    const ALL: [SigningAlgorithm; 2] = [SigningAlgorithm::Rs256, SigningAlgorithm::Es256];

    /// Returns the JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
        }
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlgorithm::Rs256 => Algorithm::RS256,
            SigningAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Whether a key signs new tokens or only verifies old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Retired,
}

/// A published key: its index entry and the forms the JWT library needs.
struct LoadedKey {
    entry: IndexEntry,
    public: PublicJwk,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The signing keys of one server, backed by a directory.
pub struct KeyStore {
    dir: PathBuf,
    keys: Vec<LoadedKey>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: Vec<&IndexEntry> = self.keys.iter().map(|key| &key.entry).collect();
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("keys", &entries)
            .finish()
    }
}

/// Information about one published key, for administration and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub status: KeyStatus,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

impl KeyStore {
    /// Opens the key directory `dir`, creating it and any missing active key. Every key
    /// file is checked against the `kid` the index gives it.
    pub fn open_or_create(dir: &Path) -> Result<KeyStore, KeyError> {
        store::ensure_dir(dir)?;
        let index = store::read_index(dir)?.unwrap_or_default();

        let mut key_store = KeyStore {
            dir: dir.to_path_buf(),
            keys: Vec::with_capacity(index.keys.len()),
        };
        for entry in index.keys {
            let key = key_store.load(entry)?;
            key_store.keys.push(key);
        }

        let missing: Vec<SigningAlgorithm> = SigningAlgorithm::ALL
            .into_iter()
            .filter(|algorithm| key_store.active(*algorithm).is_none())
            .collect();
        if !missing.is_empty() {
            key_store.add_active_keys(&missing)?;
        }

        Ok(key_store)
    }

    fn load(&self, entry: IndexEntry) -> Result<LoadedKey, KeyError> {
        let pem = store::read_key_file(&self.dir, &entry.file)?;
        let path = store::key_path(&self.dir, &entry.file)?;
        let invalid = |reason: String| KeyError::InvalidKeyFile {
            path: path.clone(),
            reason,
        };

        let material = KeyMaterial::from_pem(entry.alg, &pem).map_err(invalid)?;
        let public = material.public_jwk();
        let thumbprint = public.thumbprint();
        if thumbprint != entry.kid {
            return Err(invalid(format!(
                "its public key has thumbprint {thumbprint}, but the index lists kid {}",
                entry.kid
            )));
        }

        Ok(LoadedKey {
            encoding: material.encoding_key()?,
            decoding: public.decoding_key()?,
            public,
            entry,
        })
    }

    /// Generates a key, writes its PEM file and returns it, without touching the index.
    fn generate(&self, algorithm: SigningAlgorithm, now: i64) -> Result<LoadedKey, KeyError> {
        let material = KeyMaterial::generate(algorithm)?;
        let public = material.public_jwk();
        let kid = public.thumbprint();
        let file = format!("{kid}.pem");

        store::write_private_file(&self.dir, &file, material.to_pem()?.as_bytes())?;

        Ok(LoadedKey {
            encoding: material.encoding_key()?,
            decoding: public.decoding_key()?,
            public,
            entry: IndexEntry {
                kid,
                alg: algorithm,
                file,
                status: KeyStatus::Active,
                created_at: now,
                retired_at: None,
            },
        })
    }

    /// Creates an active key for each of `algorithms`, retiring the current active key of
    /// that algorithm, then writes the index. Memory changes only once the index is
    /// written.
    fn add_active_keys(&mut self, algorithms: &[SigningAlgorithm]) -> Result<(), KeyError> {
        let now = now_seconds();
        let new_keys = algorithms
            .iter()
            .map(|algorithm| self.generate(*algorithm, now))
            .collect::<Result<Vec<_>, _>>()?;

        let mut entries: Vec<IndexEntry> = self.keys.iter().map(|key| key.entry.clone()).collect();
        for entry in &mut entries {
            if entry.status == KeyStatus::Active && algorithms.contains(&entry.alg) {
                entry.status = KeyStatus::Retired;
                entry.retired_at = Some(now);
            }
        }
        entries.extend(new_keys.iter().map(|key| key.entry.clone()));
        store::write_index(
            &self.dir,
            &Index {
                keys: entries.clone(),
            },
        )?;

        for (key, entry) in self.keys.iter_mut().zip(entries) {
            key.entry = entry;
        }
        self.keys.extend(new_keys);
        Ok(())
    }

    /// Creates new active keys for both algorithms. The previous keys stay published as
    /// retired, so tokens they signed still verify until [`KeyStore::prune_retired`].
    pub fn rotate(&mut self) -> Result<(), KeyError> {
        self.add_active_keys(&SigningAlgorithm::ALL)
    }

    /// Removes retired keys retired before `retired_before` (seconds since the Unix
    /// epoch) from the index and deletes their files. Pass the current time minus the
    /// longest token lifetime. Returns how many keys were removed.
    pub fn prune_retired(&mut self, retired_before: i64) -> Result<usize, KeyError> {
        let is_expired = |entry: &IndexEntry| {
            entry.status == KeyStatus::Retired
                && entry
                    .retired_at
                    .is_some_and(|retired| retired < retired_before)
        };

        let remaining: Vec<IndexEntry> = self
            .keys
            .iter()
            .map(|key| key.entry.clone())
            .filter(|entry| !is_expired(entry))
            .collect();
        let removed = self.keys.len() - remaining.len();
        if removed == 0 {
            return Ok(0);
        }
        store::write_index(&self.dir, &Index { keys: remaining })?;

        let (expired, live): (Vec<LoadedKey>, Vec<LoadedKey>) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|key| is_expired(&key.entry));
        self.keys = live;
        for key in expired {
            store::remove_key_file(&self.dir, &key.entry.file)?;
        }
        Ok(removed)
    }

    /// Lists the published keys in index order.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .map(|key| KeyInfo {
                kid: key.entry.kid.clone(),
                algorithm: key.entry.alg,
                status: key.entry.status,
                created_at: key.entry.created_at,
                retired_at: key.entry.retired_at,
            })
            .collect()
    }

    fn active(&self, algorithm: SigningAlgorithm) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .rev()
            .find(|key| key.entry.alg == algorithm && key.entry.status == KeyStatus::Active)
    }

    /// Returns the JWKS document: `{"keys": [...]}` with the public half of every active
    /// and retired key (`kty`, `kid`, `use`, `alg`, and `n`/`e` or `crv`/`x`/`y`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|key| key.public.to_json(&key.entry.kid, key.entry.alg))
            .collect();
        json!({ "keys": keys })
    }

    /// Signs an access token with the active ES256 key; the header carries `kid` and
    /// `typ: at+jwt`.
    pub fn sign_access_token(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        self.sign(SigningAlgorithm::Es256, ACCESS_TOKEN_TYPE, claims)
    }

    /// Signs an id token with the active RS256 key; the header carries `kid` and
    /// `typ: JWT`.
    pub fn sign_id_token(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        self.sign(SigningAlgorithm::Rs256, "JWT", claims)
    }

    /// Signs a client assertion (RFC 7523, as SMART Backend Services uses it) with the
    /// active RSA key and RS384, which SMART requires servers to accept. The header carries
    /// `kid` and `typ: JWT`. Hearth uses it to authenticate at an upstream EHR.
    pub fn sign_client_assertion(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        let key = self
            .active(SigningAlgorithm::Rs256)
            .ok_or_else(|| KeyError::Sign("no active RSA key".to_string()))?;
        let mut header = Header::new(Algorithm::RS384);
        header.typ = Some("JWT".to_string());
        header.kid = Some(key.entry.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|error| KeyError::Sign(error.to_string()))
    }

    /// Returns the JWKS an upstream EHR registers for Hearth as a client: the public half
    /// of every RSA key, with `alg: RS384`, so assertions from
    /// [`KeyStore::sign_client_assertion`] verify there, also across a key rotation.
    pub fn client_jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .filter(|key| key.entry.alg == SigningAlgorithm::Rs256)
            .map(|key| {
                let mut jwk = key.public.to_json(&key.entry.kid, key.entry.alg);
                jwk["alg"] = json!("RS384");
                jwk
            })
            .collect();
        json!({ "keys": keys })
    }

    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        token_type: &str,
        claims: &impl Serialize,
    ) -> Result<String, KeyError> {
        let key = self
            .active(algorithm)
            .ok_or_else(|| KeyError::Sign(format!("no active {} key", algorithm.as_str())))?;

        let mut header = Header::new(algorithm.jwt_algorithm());
        header.typ = Some(token_type.to_string());
        header.kid = Some(key.entry.kid.clone());

        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|error| KeyError::Sign(error.to_string()))
    }

    /// Verifies an access token from this server and returns its claims.
    ///
    /// The header must have `alg: ES256`, `typ: at+jwt` and the `kid` of a published
    /// ES256 key, and the signature must verify. `iss` must equal `issuer` and `aud` must
    /// contain `audience`. `exp` must not have passed and `nbf`, when present, must have
    /// come, both with [`CLOCK_SKEW_SECONDS`] of leeway.
    pub fn verify_access_token<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T, KeyError> {
        self.verify(
            token,
            SigningAlgorithm::Es256,
            ACCESS_TOKEN_TYPE,
            issuer,
            audience,
        )
    }

    /// Verifies an id token from this server, as [`KeyStore::verify_access_token`] does
    /// with RS256 and `typ: JWT`. `audience` is the client id. The caller checks `nonce`.
    pub fn verify_id_token<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T, KeyError> {
        self.verify(token, SigningAlgorithm::Rs256, "JWT", issuer, audience)
    }

    fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        algorithm: SigningAlgorithm,
        token_type: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T, KeyError> {
        let key = self.verification_key(token, algorithm, token_type)?;

        let mut validation = Validation::new(algorithm.jwt_algorithm());
        validation.leeway = CLOCK_SKEW_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);

        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(token_error)
    }

    /// Checks the header and returns the published key its `kid` names.
    fn verification_key(
        &self,
        token: &str,
        algorithm: SigningAlgorithm,
        token_type: &str,
    ) -> Result<&LoadedKey, KeyError> {
        let invalid = |reason: &str| KeyError::InvalidToken(reason.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed header"))?;

        if header.alg != algorithm.jwt_algorithm() {
            return Err(invalid("unexpected signing algorithm"));
        }
        if header.typ.as_deref() != Some(token_type) {
            return Err(invalid("unexpected token type"));
        }
        let kid = header.kid.ok_or_else(|| invalid("missing kid"))?;

        self.keys
            .iter()
            .find(|key| key.entry.alg == algorithm && key.entry.kid == kid)
            .ok_or_else(|| invalid("unknown kid"))
    }
}

fn token_error(error: jsonwebtoken::errors::Error) -> KeyError {
    use jsonwebtoken::errors::ErrorKind;

    let reason = match error.kind() {
        ErrorKind::ExpiredSignature => return KeyError::Expired,
        ErrorKind::InvalidSignature => "invalid signature".to_string(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".to_string(),
        ErrorKind::InvalidIssuer => "wrong issuer".to_string(),
        ErrorKind::InvalidAudience => "wrong audience".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim {claim}"),
        ErrorKind::Json(_) => "claims do not match the expected structure".to_string(),
        _ => "malformed token".to_string(),
    };
    KeyError::InvalidToken(reason)
}
