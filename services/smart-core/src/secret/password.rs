//! argon2id password hashes in PHC string form (`$argon2id$v=19$m=...$salt$hash`).
//!
//! New hashes use the argon2 crate's defaults (argon2id, version 19, 19 MiB of memory,
//! 2 passes, 1 lane in argon2 0.6), the minimum OWASP's password storage guidance lists
//! for argon2id. Verification takes the parameters from the stored string, so hashes made
//! with other parameters keep working.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use super::SecretError;

/// Hashes `password` with argon2id and a random 16-byte salt.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| SecretError::Hashing(error.to_string()))
}

/// Checks `password` against a PHC string from [`hash_password`]. Returns `Ok(false)`
/// for a wrong password and an error when `stored` is not a valid argon2 hash.
pub fn verify_password(password: &str, stored: &str) -> Result<bool, SecretError> {
    let parsed =
        PasswordHash::new(stored).map_err(|error| SecretError::InvalidHash(error.to_string()))?;

    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(error) => Err(SecretError::InvalidHash(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let stored = hash_password("correct horse battery staple").unwrap();

        assert!(stored.starts_with("$argon2id$v=19$"));
        assert!(verify_password("correct horse battery staple", &stored).unwrap());
        assert!(!verify_password("correct horse battery stapler", &stored).unwrap());
        assert!(!verify_password("", &stored).unwrap());
    }

    #[test]
    fn hashes_are_salted() {
        let first = hash_password("secret").unwrap();
        let second = hash_password("secret").unwrap();

        assert_ne!(first, second);
    }

    #[test]
    fn malformed_hash_is_an_error() {
        for stored in ["", "plaintext", "$argon2id$v=19$", "$unknown$v=1$abc$def"] {
            assert!(verify_password("secret", stored).is_err(), "{stored}");
        }
    }
}
