//! Maximum lengths of what apps, sites and users are registered with, so that one
//! registration cannot fill the log or break the layout of every page that lists it. The
//! console's forms carry the same numbers as `maxlength` attributes.

use crate::oauth_error::{OAuthError, OAuthResult};

/// Maximum characters of a name: of an app, a site, a vendor, a user or its display name.
pub const MAX_NAME_CHARS: usize = 200;
/// Maximum characters of one URI: redirect, launch, JWKS, logo, client and upstream URLs.
pub const MAX_URI_CHARS: usize = 2000;
/// Maximum characters of the scopes an app may be granted, separators included.
pub const MAX_SCOPE_CHARS: usize = 4000;
/// Maximum number of redirect URIs of one app.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Maximum characters of a client id.
pub const MAX_CLIENT_ID_CHARS: usize = 128;
/// Maximum number of contacts of one app.
pub const MAX_CONTACTS: usize = 20;

/// Rejects `value` of `field` when it has more than `max` characters.
pub(crate) fn check_length(field: &str, value: &str, max: usize) -> OAuthResult<()> {
    let count = value.chars().count();
    if count > max {
        return Err(OAuthError::invalid_request(format!(
            "{field} has {count} characters; the maximum is {max}"
        )));
    }
    Ok(())
}

/// Rejects a name that is longer than [`MAX_NAME_CHARS`] or contains a control character
/// such as a line break.
pub(crate) fn check_name(field: &str, value: &str) -> OAuthResult<()> {
    check_length(field, value, MAX_NAME_CHARS)?;
    if value.chars().any(char::is_control) {
        return Err(OAuthError::invalid_request(format!(
            "{field} contains a control character such as a line break"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_characters_not_bytes() {
        let accented = "é".repeat(MAX_NAME_CHARS);
        assert!(check_name("name", &accented).is_ok());
        let error = check_name("name", &format!("{accented}x")).unwrap_err();
        assert!(
            error.description.contains("201 characters"),
            "{}",
            error.description
        );
        assert!(
            error.description.contains("maximum is 200"),
            "{}",
            error.description
        );
    }

    #[test]
    fn name_rejects_line_breaks() {
        let error = check_name("vendor", "Acme\nInc").unwrap_err();
        assert!(
            error.description.starts_with("vendor"),
            "{}",
            error.description
        );
    }
}
