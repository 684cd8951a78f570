//! ClickHouse settings: flags and `HEARTH_CLICKHOUSE_*` variables, then the
//! `[clickhouse]` table of `hearth.toml`. Without a URL, analytics is off and events
//! stay in the log until it is configured.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Database of the analytics tables when none is configured.
pub const DEFAULT_DATABASE: &str = "hearth";

/// File in the data directory that holds the pseudonym key when none is configured.
pub const DEFAULT_KEY_FILE: &str = "analytics-pseudonym-key";

/// ClickHouse flags of `hearth serve` and `hearth analytics`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClickHouseArgs {
    /// HTTP URL of the ClickHouse server for usage analytics, such as
    /// http://127.0.0.1:8123. With it, `hearth serve` runs the analytics sink
    /// [default: none, so events stay in the log]
    #[arg(long, env = "HEARTH_CLICKHOUSE_URL", global = true)]
    pub clickhouse_url: Option<String>,
    /// ClickHouse database of the analytics tables [default: hearth]
    #[arg(long, env = "HEARTH_CLICKHOUSE_DATABASE", global = true)]
    pub clickhouse_database: Option<String>,
    /// ClickHouse user [default: the server's default user]
    #[arg(long, env = "HEARTH_CLICKHOUSE_USER", global = true)]
    pub clickhouse_user: Option<String>,
    /// ClickHouse password; prefer the environment variable or hearth.toml to the command
    /// line, where other users can read it
    #[arg(
        long,
        env = "HEARTH_CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub clickhouse_password: Option<String>,
}

/// The `[clickhouse]` table of `hearth.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseFile {
    pub url: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// File with the hex key of the pseudonym HMAC [default: DATA_DIR/analytics-pseudonym-key].
    /// Every process that writes to one database must use the same key.
    pub pseudonym_key_file: Option<PathBuf>,
    /// Log records per ClickHouse insert at most [default: 100000].
    pub batch_records: Option<usize>,
    /// Milliseconds from a batch's first record until it is written, at most
    /// [default: 1000].
    pub batch_delay_ms: Option<u64>,
}

/// The effective ClickHouse settings. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// HTTP URL without a trailing slash.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub pseudonym_key_file: Option<PathBuf>,
    pub batch_records: Option<usize>,
    pub batch_delay_ms: Option<u64>,
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("pseudonym_key_file", &self.pseudonym_key_file)
            .field("batch_records", &self.batch_records)
            .field("batch_delay_ms", &self.batch_delay_ms)
            .finish()
    }
}

impl ClickHouseConfig {
    /// Settings for `url` with the default database and no credentials.
    pub fn new(url: &str) -> Result<ClickHouseConfig> {
        ClickHouseArgs {
            clickhouse_url: Some(url.to_string()),
            ..ClickHouseArgs::default()
        }
        .resolve(None)
        .map(|config| config.unwrap_or_else(|| unreachable!("a URL was given")))
    }

    /// Returns the pseudonym key file: the configured one, else the default file in
    /// `data_dir`.
    pub fn key_file(&self, data_dir: &Path) -> PathBuf {
        self.pseudonym_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_KEY_FILE))
    }

    /// The sink's batching and retry options, with the configured batch bounds.
    pub fn sink_options(&self) -> crate::SinkOptions {
        let mut options = crate::SinkOptions::default();
        if let Some(records) = self.batch_records {
            options.max_batch_records = records;
        }
        if let Some(millis) = self.batch_delay_ms {
            options.max_batch_delay = std::time::Duration::from_millis(millis);
        }
        options
    }
}

impl ClickHouseArgs {
    /// Merges the flags with the file's `[clickhouse]` table. Returns `None` when neither
    /// sets a URL, which leaves analytics off.
    pub fn resolve(&self, file: Option<ClickHouseFile>) -> Result<Option<ClickHouseConfig>> {
        let file = file.unwrap_or_default();
        let Some(url) = self.clickhouse_url.clone().or(file.url) else {
            return Ok(None);
        };
        let url = url.trim_end_matches('/').to_string();
        if !url.starts_with("http://") {
            return Err(Error::Config(format!(
                "invalid ClickHouse URL '{url}': it must start with http:// (for TLS, \
                 put a TLS-terminating proxy on the ClickHouse host)"
            )));
        }
        let database = self
            .clickhouse_database
            .clone()
            .or(file.database)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        check_identifier(&database)?;
        if file.batch_records == Some(0) || file.batch_delay_ms == Some(0) {
            return Err(Error::Config(
                "invalid [clickhouse] batch_records or batch_delay_ms: both must be at least 1"
                    .to_string(),
            ));
        }
        Ok(Some(ClickHouseConfig {
            url,
            database,
            user: self.clickhouse_user.clone().or(file.user),
            password: self.clickhouse_password.clone().or(file.password),
            pseudonym_key_file: file.pseudonym_key_file,
            batch_records: file.batch_records,
            batch_delay_ms: file.batch_delay_ms,
        }))
    }
}

/// Checks that a database name needs no quoting: ASCII letters, digits and `_`, not
/// starting with a digit.
fn check_identifier(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid ClickHouse database name '{name}': use ASCII letters, digits and _, \
             not starting with a digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_url_leaves_analytics_off() {
        let config = ClickHouseArgs::default().resolve(None).unwrap();
        assert!(config.is_none());
    }

    #[test]
    fn flags_override_file() {
        let file: ClickHouseFile =
            toml_like("http://file:8123/", Some("from_file"), Some("secret"));
        let args = ClickHouseArgs {
            clickhouse_url: Some("http://flag:8123".to_string()),
            ..ClickHouseArgs::default()
        };
        let config = args.resolve(Some(file)).unwrap().unwrap();
        assert_eq!(config.url, "http://flag:8123");
        assert_eq!(config.database, "from_file");
        assert_eq!(config.password.as_deref(), Some("secret"));
    }

    #[test]
    fn file_alone_enables_analytics() {
        let file = toml_like("http://file:8123/", None, None);
        let config = ClickHouseArgs::default()
            .resolve(Some(file))
            .unwrap()
            .unwrap();
        assert_eq!(config.url, "http://file:8123");
        assert_eq!(config.database, DEFAULT_DATABASE);
    }

    #[test]
    fn https_and_bad_database_rejected() {
        assert!(ClickHouseConfig::new("https://ch:8443").is_err());
        let args = ClickHouseArgs {
            clickhouse_url: Some("http://ch:8123".to_string()),
            clickhouse_database: Some("hearth; DROP".to_string()),
            ..ClickHouseArgs::default()
        };
        let error = args.resolve(None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("invalid ClickHouse database name")
        );
    }

    #[test]
    fn debug_masks_password() {
        let mut config = ClickHouseConfig::new("http://ch:8123").unwrap();
        config.password = Some("hunter2".to_string());
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    fn toml_like(url: &str, database: Option<&str>, password: Option<&str>) -> ClickHouseFile {
        ClickHouseFile {
            url: Some(url.to_string()),
            database: database.map(str::to_string),
            password: password.map(str::to_string),
            ..ClickHouseFile::default()
        }
    }
}
