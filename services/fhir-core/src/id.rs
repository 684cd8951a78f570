//! FHIR logical ids.

/// Returns whether `id` is a valid FHIR id: 1 to 64 characters from `A-Z a-z 0-9 - .`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Returns `id` for an error message: whole up to 64 characters, else its first 64
/// characters and `...`, so a huge invalid id does not fill the response.
pub fn shown(id: &str) -> String {
    if id.chars().count() <= 64 {
        id.to_string()
    } else {
        format!("{}...", id.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::{is_valid_id, shown};

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

    #[test]
    fn long_ids_are_shortened_in_messages() {
        assert_eq!(shown("abc"), "abc");
        assert_eq!(shown(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(
            shown(&"y".repeat(200_000)),
            format!("{}...", "y".repeat(64))
        );
    }
}
