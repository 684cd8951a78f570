//! FHIR logical ids.

/// Returns whether `id` is a valid FHIR id: 1 to 64 characters from `A-Z a-z 0-9 - .`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::is_valid_id;

    #[test]
    fn id_rules() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id("slash/inside"));
        assert!(!is_valid_id("under_score"));
    }
}
