//! Proof Key for Code Exchange (RFC 7636) with the `S256` method only.
//!
//! SMART App Launch 2.x requires `S256` and forbids `plain`, so this module has no
//! `plain` comparison.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::base64url;

/// The minimum code verifier length in RFC 7636 section 4.1.
pub const MIN_VERIFIER_LEN: usize = 43;
/// The maximum code verifier length in RFC 7636 section 4.1.
pub const MAX_VERIFIER_LEN: usize = 128;
/// The length of an `S256` challenge: 32 bytes of SHA-256 in unpadded base64url.
pub const CHALLENGE_LEN: usize = 43;

/// Returns whether `verifier` is 43 to 128 characters from the unreserved set
/// `A-Z a-z 0-9 - . _ ~` (RFC 7636 section 4.1).
pub fn is_valid_verifier(verifier: &str) -> bool {
    (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&verifier.len())
        && verifier.bytes().all(is_unreserved)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Returns whether `challenge` can be an `S256` code challenge: 43 characters of
/// unpadded base64url that decode to 32 bytes.
pub fn is_valid_challenge(challenge: &str) -> bool {
    challenge.len() == CHALLENGE_LEN
        && base64url::decode(challenge).is_some_and(|bytes| bytes.len() == 32)
}

/// Computes the `S256` challenge of `verifier`: BASE64URL-NOPAD(SHA-256(verifier)).
pub fn challenge_s256(verifier: &str) -> String {
    base64url::encode(Sha256::digest(verifier.as_bytes()))
}

/// Checks a token request's `code_verifier` against the `code_challenge` stored at
/// authorize. Returns false for a verifier outside RFC 7636's length and character
/// rules, so an empty or short verifier never matches. The comparison takes the same
/// time wherever the strings differ.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    if !is_valid_verifier(verifier) {
        return false;
    }

    let computed = challenge_s256(verifier);
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(challenge_s256(RFC_VERIFIER), RFC_CHALLENGE);
        assert!(verify_s256(RFC_VERIFIER, RFC_CHALLENGE));
        assert!(is_valid_challenge(RFC_CHALLENGE));
    }

    #[test]
    fn verify_rejects_mismatch() {
        let other = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(!verify_s256(other, RFC_CHALLENGE));
        assert!(!verify_s256(
            RFC_VERIFIER,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!verify_s256(RFC_VERIFIER, ""));
        assert!(!verify_s256(RFC_VERIFIER, RFC_VERIFIER));
    }

    #[test]
    fn verify_rejects_plain_method() {
        // A `plain` client sends the verifier itself as the challenge.
        assert!(!verify_s256(RFC_VERIFIER, RFC_VERIFIER));
    }

    #[test]
    fn verifier_length_limits() {
        let shortest = "a".repeat(MIN_VERIFIER_LEN);
        let longest = "a".repeat(MAX_VERIFIER_LEN);

        assert!(is_valid_verifier(&shortest));
        assert!(is_valid_verifier(&longest));
        assert!(!is_valid_verifier(&"a".repeat(MIN_VERIFIER_LEN - 1)));
        assert!(!is_valid_verifier(&"a".repeat(MAX_VERIFIER_LEN + 1)));
        assert!(!is_valid_verifier(""));

        assert!(verify_s256(&longest, &challenge_s256(&longest)));
        let short = "a".repeat(10);
        assert!(!verify_s256(&short, &challenge_s256(&short)));
        assert!(!verify_s256("", &challenge_s256("")));
    }

    #[test]
    fn verifier_characters() {
        let base = "a".repeat(42);
        for allowed in ['-', '.', '_', '~', 'Z', '9'] {
            assert!(is_valid_verifier(&format!("{base}{allowed}")), "{allowed}");
        }
        for forbidden in ['+', '/', '=', ' ', '%', 'é'] {
            let verifier = format!("{base}{forbidden}");
            assert!(!is_valid_verifier(&verifier), "{forbidden}");
            assert!(
                !verify_s256(&verifier, &challenge_s256(&verifier)),
                "{forbidden}"
            );
        }
    }

    #[test]
    fn challenge_shape() {
        assert!(!is_valid_challenge(""));
        assert!(!is_valid_challenge(&RFC_CHALLENGE[..42]));
        assert!(!is_valid_challenge(&format!("{RFC_CHALLENGE}=")));
        assert!(!is_valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
        assert!(!is_valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }
}
