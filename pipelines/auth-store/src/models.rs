//! The values the store keeps, built from the events that set them.

use std::collections::BTreeMap;

use hearth_schemas::{
    AppRegistered, AppUpdated, AuthorizationGranted, Backing, ClientType, LaunchCreated,
    RegistrationSource, SiteRegistered, SiteUpdated, UpstreamAuthMethod, UserRegistered,
};
use serde::{Deserialize, Serialize};

/// A registered app (OAuth2 client) as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub client_type: ClientType,
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    pub launch_uri: Option<String>,
    /// Space-separated scopes the app may be granted.
    pub scope: String,
    pub grant_types: Vec<String>,
    pub client_secret_hash: Option<String>,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    pub contacts: Vec<String>,
    pub vendor: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    pub disabled: bool,
    /// Microseconds since the Unix epoch of the registration.
    pub registered_at: i64,
    /// Whether `jwks_uri` came from an anonymous dynamic registration, so that fetching it
    /// may only connect to public addresses. Updates come from administrators, so one that
    /// changes the URI clears this.
    #[serde(default)]
    pub anonymous_jwks_uri: bool,
}

impl App {
    pub fn from_registered(event: &AppRegistered) -> Self {
        App {
            client_id: event.client_id.clone(),
            name: event.name.clone(),
            client_type: event.client_type,
            token_endpoint_auth_method: event.token_endpoint_auth_method.clone(),
            redirect_uris: event.redirect_uris.clone(),
            launch_uri: event.launch_uri.clone(),
            scope: event.scope.clone(),
            grant_types: event.grant_types.clone(),
            client_secret_hash: event.client_secret_hash.clone(),
            jwks: event.jwks.clone(),
            jwks_uri: event.jwks_uri.clone(),
            logo_uri: event.logo_uri.clone(),
            client_uri: event.client_uri.clone(),
            contacts: event.contacts.clone(),
            vendor: event.vendor.clone(),
            software_id: event.software_id.clone(),
            software_version: event.software_version.clone(),
            disabled: false,
            registered_at: event.occurred_at,
            anonymous_jwks_uri: event.jwks_uri.is_some()
                && event.registration_source == RegistrationSource::Dynamic
                && event.registered_by.is_empty(),
        }
    }

    /// Applies a full replacement, keeping the registration time and the disabled flag.
    pub fn update(&mut self, event: &AppUpdated) {
        self.name = event.name.clone();
        self.client_type = event.client_type;
        self.token_endpoint_auth_method = event.token_endpoint_auth_method.clone();
        self.redirect_uris = event.redirect_uris.clone();
        self.launch_uri = event.launch_uri.clone();
        self.scope = event.scope.clone();
        self.grant_types = event.grant_types.clone();
        self.client_secret_hash = event.client_secret_hash.clone();
        self.jwks = event.jwks.clone();
        if self.jwks_uri != event.jwks_uri {
            self.anonymous_jwks_uri = false;
        }
        self.jwks_uri = event.jwks_uri.clone();
        self.logo_uri = event.logo_uri.clone();
        self.client_uri = event.client_uri.clone();
        self.contacts = event.contacts.clone();
        self.vendor = event.vendor.clone();
        self.software_id = event.software_id.clone();
        self.software_version = event.software_version.clone();
    }

    pub fn allows_grant_type(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// A site: one FHIR base with its own SMART configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub site_id: String,
    pub name: String,
    /// Path of the FHIR base on this server, such as `/fhir` or `/sites/north/fhir`.
    pub fhir_base_path: String,
    pub backing: Backing,
    pub upstream_base_url: Option<String>,
    pub upstream_auth_method: UpstreamAuthMethod,
    pub upstream_client_id: Option<String>,
    pub upstream_token_url: Option<String>,
    pub upstream_scope: Option<String>,
    pub upstream_fhir_version: Option<String>,
    pub dynamic_registration: bool,
    pub cache_freshness_s: BTreeMap<String, i64>,
    pub default_cache_freshness_s: i64,
}

impl Site {
    pub fn from_registered(event: &SiteRegistered) -> Self {
        Site {
            site_id: event.site_id.clone(),
            name: event.name.clone(),
            fhir_base_path: event.fhir_base_path.clone(),
            backing: event.backing,
            upstream_base_url: event.upstream_base_url.clone(),
            upstream_auth_method: event.upstream_auth_method,
            upstream_client_id: event.upstream_client_id.clone(),
            upstream_token_url: event.upstream_token_url.clone(),
            upstream_scope: event.upstream_scope.clone(),
            upstream_fhir_version: event.upstream_fhir_version.clone(),
            dynamic_registration: event.dynamic_registration,
            cache_freshness_s: event.cache_freshness_s.clone(),
            default_cache_freshness_s: event.default_cache_freshness_s,
        }
    }

    pub fn from_updated(event: &SiteUpdated) -> Self {
        Site {
            site_id: event.site_id.clone(),
            name: event.name.clone(),
            fhir_base_path: event.fhir_base_path.clone(),
            backing: event.backing,
            upstream_base_url: event.upstream_base_url.clone(),
            upstream_auth_method: event.upstream_auth_method,
            upstream_client_id: event.upstream_client_id.clone(),
            upstream_token_url: event.upstream_token_url.clone(),
            upstream_scope: event.upstream_scope.clone(),
            upstream_fhir_version: event.upstream_fhir_version.clone(),
            dynamic_registration: event.dynamic_registration,
            cache_freshness_s: event.cache_freshness_s.clone(),
            default_cache_freshness_s: event.default_cache_freshness_s,
        }
    }
}

/// A user who signs in to Hearth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub registration: UserRegistered,
    pub disabled: bool,
}

/// An authorization as approved, with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub approval: AuthorizationGranted,
    pub code_redeemed: bool,
    /// Microseconds since the Unix epoch, when revoked.
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

impl Grant {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A launch context created by an EHR or portal.
pub type Launch = LaunchCreated;

/// A refresh token's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub grant_id: String,
    /// False once rotated: presenting it again is reuse.
    pub current: bool,
    pub expires_at: Option<i64>,
}

/// An access token issued, as introspection reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub token_id: String,
    pub grant_id: Option<String>,
    pub client_id: String,
    pub site_id: String,
    pub scope: String,
    pub expires_at: i64,
    pub issued_at: i64,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub fhir_user: Option<String>,
    pub user_id: Option<String>,
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(registered_by: &str, source: RegistrationSource) -> AppRegistered {
        AppRegistered {
            event_id: "ev-1".to_string(),
            occurred_at: 1_000,
            client_id: "signer".to_string(),
            name: "Signer".to_string(),
            client_type: ClientType::ConfidentialAsymmetric,
            token_endpoint_auth_method: "private_key_jwt".to_string(),
            redirect_uris: vec!["https://app.example/cb".to_string()],
            launch_uri: None,
            scope: "patient/*.rs".to_string(),
            grant_types: vec!["authorization_code".to_string()],
            client_secret_hash: None,
            jwks: None,
            jwks_uri: Some("https://keys.app.example/jwks.json".to_string()),
            logo_uri: None,
            client_uri: None,
            tos_uri: None,
            policy_uri: None,
            contacts: Vec::new(),
            vendor: None,
            software_id: None,
            software_version: None,
            registered_by: registered_by.to_string(),
            registration_source: source,
        }
    }

    fn updated(event: &AppRegistered, jwks_uri: &str) -> AppUpdated {
        AppUpdated {
            event_id: "ev-2".to_string(),
            occurred_at: 2_000,
            client_id: event.client_id.clone(),
            name: event.name.clone(),
            client_type: event.client_type,
            token_endpoint_auth_method: event.token_endpoint_auth_method.clone(),
            redirect_uris: event.redirect_uris.clone(),
            launch_uri: None,
            scope: event.scope.clone(),
            grant_types: event.grant_types.clone(),
            client_secret_hash: None,
            jwks: None,
            jwks_uri: Some(jwks_uri.to_string()),
            logo_uri: None,
            client_uri: None,
            tos_uri: None,
            policy_uri: None,
            contacts: Vec::new(),
            vendor: None,
            software_id: None,
            software_version: None,
            updated_by: "admin".to_string(),
            update_source: RegistrationSource::AdminApi,
        }
    }

    #[test]
    fn anonymous_jwks_uri_until_admin_changes_it() {
        let anonymous = registered("", RegistrationSource::Dynamic);
        let mut app = App::from_registered(&anonymous);
        assert!(app.anonymous_jwks_uri, "anonymous dynamic registration");

        app.update(&updated(&anonymous, "https://keys.app.example/jwks.json"));
        assert!(app.anonymous_jwks_uri, "an update that keeps the URI");

        app.update(&updated(&anonymous, "https://keys.internal.example/jwks"));
        assert!(!app.anonymous_jwks_uri, "an update that changes the URI");
    }

    #[test]
    fn trusted_registrations_have_trusted_jwks_uri() {
        let cases = [
            ("initial-access-token", RegistrationSource::Dynamic),
            ("admin", RegistrationSource::AdminApi),
            ("", RegistrationSource::Cli),
        ];
        for (registered_by, source) in cases {
            let app = App::from_registered(&registered(registered_by, source));
            assert!(
                !app.anonymous_jwks_uri,
                "{registered_by} through {source:?}"
            );
        }
    }
}
