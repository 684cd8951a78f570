//! Console sessions, the signed-in [`Viewer`] with what its roles allow, and form parsing
//! with the CSRF check.
//!
//! The session cookie holds a random value. The auth store keeps only its SHA-256, put
//! there by a `ConsoleSignedIn` event, so a copy of the store cannot be replayed as a
//! cookie. The CSRF token of a session is the SHA-256 of the cookie value with a fixed
//! prefix: another site can neither read the cookie nor compute the token.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header;
use axum::http::request::Parts;
use hearth_smart::secret::hash_token;

use crate::ConsoleState;
use crate::error::{ConsoleError, ConsoleResult};

/// The session cookie, shared with the authorization pages so that a signed-in portal
/// user approves app launches without signing in again.
pub const SESSION_COOKIE: &str = hearth_auth::PORTAL_SESSION_COOKIE;

/// The signed-in user of a console request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user_id: String,
    pub username: String,
    display_name: Option<String>,
    roles: Vec<String>,
    site_id: Option<String>,
    vendor: Option<String>,
    fhir_user: Option<String>,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// SHA-256 of the session cookie value.
    pub session_hash: String,
}

impl Viewer {
    pub fn from_user(user: &hearth_auth_store::User, session_id: &str) -> Viewer {
        let r = &user.registration;
        Viewer {
            user_id: r.user_id.clone(),
            username: r.username.clone(),
            display_name: r.display_name.clone(),
            roles: r.roles.clone(),
            site_id: r.site_id.clone(),
            vendor: r.vendor.clone(),
            fhir_user: r.fhir_user.clone(),
            csrf: csrf_token(session_id),
            session_hash: hash_token(session_id),
        }
    }

    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.username)
    }

    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_platform_admin(&self) -> bool {
        self.has_role("platform-admin")
    }

    /// The site a site admin governs.
    pub fn admin_site(&self) -> Option<&str> {
        if self.has_role("site-admin") {
            self.site_id.as_deref()
        } else {
            None
        }
    }

    /// The vendor whose apps an app vendor sees.
    pub fn vendor(&self) -> Option<&str> {
        if self.has_role("app-vendor") {
            self.vendor.as_deref()
        } else {
            None
        }
    }

    /// The Practitioner id of a user who is a practitioner.
    pub fn practitioner(&self) -> Option<&str> {
        self.fhir_user.as_deref()?.strip_prefix("Practitioner/")
    }

    /// The Patient id of a user who is a patient.
    pub fn patient(&self) -> Option<&str> {
        self.fhir_user.as_deref()?.strip_prefix("Patient/")
    }

    /// Whether the user may use any page of the console at all.
    pub fn has_console_access(&self) -> bool {
        self.is_platform_admin()
            || self.admin_site().is_some()
            || self.vendor().is_some()
            || self.practitioner().is_some()
            || self.patient().is_some()
    }

    pub fn can_see_usage(&self) -> bool {
        self.is_platform_admin() || self.admin_site().is_some() || self.vendor().is_some()
    }

    pub fn can_use_provider_portal(&self) -> bool {
        self.is_platform_admin()
            || self.admin_site().is_some()
            || self.vendor().is_some()
            || self.practitioner().is_some()
    }

    /// Whether the user may change the apps and grants of a site.
    pub fn can_manage_site(&self, site_id: &str) -> bool {
        self.is_platform_admin() || self.admin_site() == Some(site_id)
    }

    /// Whether the user may register and change apps.
    pub fn can_manage_apps(&self) -> bool {
        self.is_platform_admin()
    }

    /// Whether the user may see an app's registration.
    pub fn can_see_app(&self, app: &hearth_auth_store::App) -> bool {
        self.is_platform_admin()
            || self.admin_site().is_some()
            || self
                .vendor()
                .is_some_and(|v| app.vendor.as_deref() == Some(v))
    }

    /// Whether the portals may launch apps at a site for this user.
    pub fn can_launch_at(&self, site_id: &str) -> bool {
        match self.admin_site() {
            Some(own) if !self.is_platform_admin() => own == site_id,
            _ => self.can_use_provider_portal() || self.patient().is_some(),
        }
    }

    pub fn role_label(&self) -> String {
        if self.is_platform_admin() {
            "platform admin".to_string()
        } else if let Some(site) = self.admin_site() {
            format!("site admin of {site}")
        } else if let Some(vendor) = self.vendor() {
            format!("app vendor {vendor}")
        } else if self.practitioner().is_some() {
            "practitioner".to_string()
        } else if self.patient().is_some() {
            "patient".to_string()
        } else {
            "no role".to_string()
        }
    }
}

/// The CSRF token of a session.
pub fn csrf_token(session_id: &str) -> String {
    hash_token(&format!("hearth console csrf {session_id}"))
}

/// Returns the value of a cookie of the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Finds the live session of a request and its user. Every value of the cookie is
/// tried, because a browser may still hold a cookie of the same name with an older path.
pub fn viewer_of(state: &ConsoleState, headers: &HeaderMap) -> ConsoleResult<Option<Viewer>> {
    let store = &state.auth.store;
    for session_id in hearth_auth::cookie_values(headers, SESSION_COOKIE) {
        let Some((user_id, expires_at)) = store.console_session(&hash_token(&session_id))? else {
            continue;
        };
        if expires_at <= hearth_auth::now_micros() {
            continue;
        }
        if let Some(user) = store.user(&user_id)?.filter(|user| !user.disabled) {
            return Ok(Some(Viewer::from_user(&user, &session_id)));
        }
    }
    Ok(None)
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        viewer_of(state, &parts.headers)?.ok_or(ConsoleError::SignInNeeded)
    }
}

/// The fields of a posted form, in order; a name may repeat.
#[derive(Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> ConsoleResult<FormData> {
        serde_urlencoded::from_bytes(body)
            .map(FormData)
            .map_err(|_| ConsoleError::BadRequest("the form is not valid".to_string()))
    }

    /// Parses a form posted by a signed-in viewer and checks its CSRF token.
    pub fn checked(viewer: &Viewer, body: &[u8]) -> ConsoleResult<FormData> {
        let form = FormData::parse(body)?;
        match form.get("csrf") {
            Some(token) if same_secret(token, &viewer.csrf) => Ok(form),
            _ => Err(ConsoleError::Csrf),
        }
    }

    /// The first value of a field, trimmed; `None` when missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The first value of a field as posted, not trimmed, for passwords.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every non-blank value of a field.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_string())
            .filter(|value| !value.is_empty())
            .collect()
    }
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_schemas::UserRegistered;

    fn viewer(
        roles: &[&str],
        site: Option<&str>,
        vendor: Option<&str>,
        fhir_user: Option<&str>,
    ) -> Viewer {
        let user = hearth_auth_store::User {
            registration: UserRegistered {
                event_id: "e".into(),
                occurred_at: 0,
                user_id: "u".into(),
                username: "name".into(),
                password_hash: String::new(),
                fhir_user: fhir_user.map(str::to_string),
                display_name: None,
                roles: roles.iter().map(|r| r.to_string()).collect(),
                site_id: site.map(str::to_string),
                vendor: vendor.map(str::to_string),
                actor: "cli".into(),
            },
            disabled: false,
        };
        Viewer::from_user(&user, "session")
    }

    #[test]
    fn site_admin_governs_only_its_site() {
        let admin = viewer(&["site-admin"], Some("north"), None, None);
        assert!(admin.can_manage_site("north"));
        assert!(!admin.can_manage_site("south"));
        assert!(!admin.can_manage_apps());
        assert!(admin.can_launch_at("north"));
        assert!(!admin.can_launch_at("south"));
    }

    #[test]
    fn vendor_sees_only_its_apps() {
        let vendor = viewer(&["app-vendor"], None, Some("Acme"), None);
        let mut app: hearth_auth_store::App = serde_json::from_value(serde_json::json!({
            "client_id": "c", "name": "n", "client_type": "PUBLIC",
            "token_endpoint_auth_method": "none", "redirect_uris": [], "launch_uri": null,
            "scope": "", "grant_types": [], "client_secret_hash": null, "jwks": null,
            "jwks_uri": null, "logo_uri": null, "client_uri": null, "contacts": [],
            "vendor": "Acme", "software_id": null, "software_version": null,
            "disabled": false, "registered_at": 0
        }))
        .unwrap();
        assert!(vendor.can_see_app(&app));
        app.vendor = Some("Other".into());
        assert!(!vendor.can_see_app(&app));
        assert!(!vendor.can_manage_site("default"));
        assert!(vendor.can_see_usage());
    }

    #[test]
    fn end_users_reach_only_their_portal() {
        let patient = viewer(&[], None, None, Some("Patient/p1"));
        assert_eq!(patient.patient(), Some("p1"));
        assert!(!patient.can_use_provider_portal());
        assert!(!patient.can_see_usage());
        assert!(patient.has_console_access());
        let nobody = viewer(&[], None, None, Some("RelatedPerson/r1"));
        assert!(!nobody.has_console_access());
    }

    #[test]
    fn csrf_is_checked() {
        let v = viewer(&["platform-admin"], None, None, None);
        let body = format!("csrf={}&name=x", v.csrf);
        assert!(FormData::checked(&v, body.as_bytes()).is_ok());
        assert!(matches!(
            FormData::checked(&v, b"csrf=wrong&name=x"),
            Err(ConsoleError::Csrf)
        ));
        assert!(matches!(
            FormData::checked(&v, b"name=x"),
            Err(ConsoleError::Csrf)
        ));
    }
}
