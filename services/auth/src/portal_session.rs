//! Console and portal sessions, accepted by the authorization pages as a sign-in, so a
//! user signed in to the provider or patient portal approves an app launch without
//! signing in again.
//!
//! The console stores its sessions durably: a `ConsoleSignedIn` event puts the SHA-256
//! of the cookie value into the auth store, and `ConsoleSignedOut` or disabling the user
//! ends it. The authorization pages read the same cookie and the same store row, so
//! signing out of the console ends the session here too. The cookie has the rules of the
//! authorization server's own session cookie (`Path=/`, `HttpOnly`, `SameSite=Lax`),
//! because an app on another origin sends the browser to the authorize endpoint by a
//! cross-site navigation, which carries no `SameSite=Strict` cookie.

use axum::http::{HeaderMap, header};
use hearth_smart::secret::hash_token;

use crate::AuthState;
use crate::events::now_micros;

/// Name of the console and portal session cookie.
pub const PORTAL_SESSION_COOKIE: &str = "hearth_console";

/// Prefix of the session key that a grant records for a portal session, followed by the
/// SHA-256 of the cookie value (never the value itself).
const KEY_PREFIX: &str = "portal:";

/// A live portal session of the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortalLogin {
    /// `portal:` and the SHA-256 of the cookie value.
    pub key: String,
    pub user_id: String,
}

/// Returns every value of a cookie in the request. A browser sends several values of one
/// name when cookies with different paths match, the most specific path first.
pub fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .collect()
}

/// Finds the browser's live portal session whose user is not disabled. With
/// `launch_user` (the FHIR user an EHR launch was created for, such as
/// `Practitioner/123`), only a session of the user with that `fhirUser` counts, so an
/// administrator who launched an app as a chosen practitioner still signs in as that
/// practitioner.
pub(crate) fn portal_login(
    state: &AuthState,
    headers: &HeaderMap,
    launch_user: Option<&str>,
) -> Option<PortalLogin> {
    for value in cookie_values(headers, PORTAL_SESSION_COOKIE) {
        let session_hash = hash_token(&value);
        let (user_id, expires_at) = match state.store.console_session(&session_hash) {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(error) => {
                tracing::error!(%error, "loading a portal session failed");
                return None;
            }
        };
        if expires_at <= now_micros() {
            continue;
        }
        let user = match state.store.user(&user_id) {
            Ok(Some(user)) if !user.disabled => user,
            Ok(_) => continue,
            Err(error) => {
                tracing::error!(%error, "loading the user of a portal session failed");
                return None;
            }
        };
        if launch_user.is_some_and(|wanted| user.registration.fhir_user.as_deref() != Some(wanted))
        {
            continue;
        }
        return Some(PortalLogin {
            key: format!("{KEY_PREFIX}{session_hash}"),
            user_id,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookie_values_lists_each_match() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("hearth_console=new; other=x; hearth_console=old"),
        );
        assert_eq!(
            cookie_values(&headers, PORTAL_SESSION_COOKIE),
            vec!["new".to_string(), "old".to_string()]
        );
        assert!(cookie_values(&headers, "missing").is_empty());
    }
}
