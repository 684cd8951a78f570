//! Proxy settings: limits that apply to every upstream, and per-site secrets.
//!
//! They are read from the `[ehr]` table of `hearth.toml`. A site's static bearer token can also
//! come from `HEARTH_EHR_BEARER_TOKEN_<SITE>`, the site id in upper case with `-` as `_`,
//! which wins over the file. Secrets never enter the log and print as `***`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A secret value; `Debug` prints `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The `[ehr]` table of `hearth.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EhrConfig {
    /// Time allowed for one upstream request, from connecting to the last body byte, in
    /// seconds.
    pub timeout_seconds: u64,
    /// Time allowed for the TCP (and TLS) connection to an upstream, in seconds.
    pub connect_timeout_seconds: u64,
    /// Upstream requests in flight per site, at most. Requests over the limit wait.
    pub max_concurrent_per_site: usize,
    /// How long a request waits for a free slot of its site before it gets 503, in
    /// milliseconds.
    pub queue_timeout_ms: u64,
    /// Extra attempts of an idempotent request after a connection failure or a 502, 503
    /// or 504 from the upstream.
    pub retries: u32,
    /// Largest upstream response body, in bytes.
    pub max_response_bytes: usize,
    /// Secrets by site id.
    pub sites: BTreeMap<String, SiteSecrets>,
}

impl Default for EhrConfig {
    fn default() -> Self {
        EhrConfig {
            timeout_seconds: 30,
            connect_timeout_seconds: 5,
            max_concurrent_per_site: 32,
            queue_timeout_ms: 2000,
            retries: 1,
            max_response_bytes: 64 * 1024 * 1024,
            sites: BTreeMap::new(),
        }
    }
}

/// Secrets of one EHR-backed site.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SiteSecrets {
    /// Static bearer token sent to the upstream when the site's auth method is BEARER.
    pub bearer_token: Option<Secret>,
}

impl EhrConfig {
    /// Overrides secrets from environment variables (`HEARTH_EHR_BEARER_TOKEN_<SITE>`).
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        for (name, value) in vars {
            let Some(site) = name.strip_prefix("HEARTH_EHR_BEARER_TOKEN_") else {
                continue;
            };
            let site_id = site.to_ascii_lowercase().replace('_', "-");
            self.sites.entry(site_id).or_default().bearer_token = Some(Secret::new(value));
        }
        self
    }

    /// Names the places a site's bearer token can be set, for messages about a missing one.
    pub fn bearer_token_settings(site_id: &str) -> String {
        let variable = site_id.to_ascii_uppercase().replace('-', "_");
        format!(
            "[ehr.sites.{site_id}] bearer_token in hearth.toml or HEARTH_EHR_BEARER_TOKEN_{variable}"
        )
    }

    /// Checks the limits; an error names the setting and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_seconds == 0 || self.timeout_seconds > 600 {
            return Err("ehr.timeout_seconds must be from 1 to 600".to_string());
        }
        if self.connect_timeout_seconds == 0 || self.connect_timeout_seconds > 60 {
            return Err("ehr.connect_timeout_seconds must be from 1 to 60".to_string());
        }
        if self.max_concurrent_per_site == 0 || self.max_concurrent_per_site > 10_000 {
            return Err("ehr.max_concurrent_per_site must be from 1 to 10000".to_string());
        }
        if self.retries > 5 {
            return Err("ehr.retries must be from 0 to 5".to_string());
        }
        Ok(())
    }

    /// Returns the bearer token of a site. Site ids match without regard to case and with
    /// `_` equal to `-`, because environment variable names cannot contain `-`.
    pub fn bearer_token(&self, site_id: &str) -> Option<&Secret> {
        let expected = site_id.to_ascii_lowercase().replace('_', "-");
        self.sites
            .iter()
            .find(|(id, _)| id.to_ascii_lowercase().replace('_', "-") == expected)
            .and_then(|(_, secrets)| secrets.bearer_token.as_ref())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_debug() {
        let config: EhrConfig =
            toml_like("north", "s3cr3t-token").with_env([("UNRELATED".into(), "x".into())]);
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t-token"), "{printed}");
        assert!(printed.contains("***"), "{printed}");
    }

    #[test]
    fn environment_overrides_file_token() {
        let config = toml_like("north-1", "from-file").with_env([(
            "HEARTH_EHR_BEARER_TOKEN_NORTH_1".to_string(),
            "from-env".to_string(),
        )]);
        assert_eq!(config.bearer_token("north-1").unwrap().expose(), "from-env");
        assert!(config.bearer_token("south").is_none());
    }

    #[test]
    fn limits_are_checked() {
        let config = EhrConfig {
            max_concurrent_per_site: 0,
            ..EhrConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains("max_concurrent_per_site"), "{error}");
        assert!(EhrConfig::default().validate().is_ok());
    }

    fn toml_like(site: &str, token: &str) -> EhrConfig {
        let mut config = EhrConfig::default();
        config.sites.insert(
            site.to_string(),
            SiteSecrets {
                bearer_token: Some(Secret::new(token)),
            },
        );
        config
    }
}
