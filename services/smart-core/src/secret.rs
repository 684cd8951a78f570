//! Random tokens, token hashes and password hashes.
//!
//! Authorization codes, refresh tokens and generated client secrets come from
//! [`generate_token`] and are stored only as [`hash_token`]. Those tokens carry 256 bits
//! of entropy, so a single fast SHA-256 suffices and lets the server look a token up by
//! its hash. Passwords chosen by people get the slow, salted argon2id of [`password`].

pub mod password;

use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

pub use password::{hash_password, verify_password};

use crate::base64url;

/// The number of random bytes for codes, refresh tokens and client secrets.
pub const TOKEN_BYTES: usize = 32;

/// Errors from password hashing.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The stored value is not an argon2 PHC string.
    #[error("invalid password hash: {0}")]
    InvalidHash(String),

    /// Hashing failed, for example because the operating system returned no random salt.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Returns `bytes` random bytes from the operating system, as unpadded base64url.
///
/// # Panics
///
/// Panics if the operating system's random number generator fails, because no
/// token can be issued safely without it.
pub fn generate_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    if let Err(error) = SysRng.try_fill_bytes(&mut buffer) {
        panic!("the operating system's random number generator failed: {error}");
    }
    base64url::encode(buffer)
}

/// Returns the SHA-256 of `token` as 64 lower-case hex digits.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_differ() {
        let first = generate_token(TOKEN_BYTES);
        let second = generate_token(TOKEN_BYTES);

        assert_eq!(first.len(), 43);
        assert_ne!(first, second);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn generated_token_lengths() {
        assert_eq!(generate_token(0), "");
        assert_eq!(generate_token(16).len(), 22);
        assert_eq!(generate_token(64).len(), 86);
    }

    #[test]
    fn hash_token_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_ne!(hash_token("abc"), hash_token("abd"));
    }
}
