//! The `[bulk]` section of `hearth.toml`.
//!
//! ```toml
//! [bulk]
//! store = "s3://bucket/prefix"        # default: the directory DATA_DIR/bulk
//! max_jobs_per_client = 2
//! workers = 2
//! file_lifetime_hours = 24
//! file_max_resources = 100000
//! max_resources_per_second = 0        # 0: no limit
//! import_allowed_hosts = ["data.example.org", "*.example.net:8443"]  # default: none
//!
//! [bulk.store_options]                # object_store options of the S3 backend
//! aws_endpoint = "http://127.0.0.1:9000"
//! aws_region = "us-east-1"
//! aws_access_key_id = "..."
//! aws_secret_access_key = "..."
//! aws_allow_http = "true"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::allow_list::HostAllowList;
use crate::export::ExportSettings;
use crate::service::BulkSettings;
use crate::storage::FileStore;
use crate::{Error, Result};

/// Settings of Bulk Data as `hearth.toml` writes them. Unknown keys are rejected.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// URL of the object store for job files; `None` keeps them in `DATA_DIR/bulk`.
    pub store: Option<String>,
    /// object_store options of the store, such as `aws_endpoint`; values may be secrets.
    #[serde(default)]
    pub store_options: BTreeMap<String, String>,
    pub max_jobs_per_client: Option<u32>,
    pub workers: Option<usize>,
    pub file_lifetime_hours: Option<u64>,
    pub file_max_resources: Option<i64>,
    pub max_resources_per_second: Option<u64>,
    /// Hosts `$import` may fetch from over HTTP(S); empty turns URL imports off.
    #[serde(default)]
    pub import_allowed_hosts: Vec<String>,
}

impl fmt::Debug for BulkConfig {
    /// Lists the store options by key only, because they hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.store_options.keys().map(String::as_str).collect();
        f.debug_struct("BulkConfig")
            .field("store", &self.store)
            .field("store_options", &keys)
            .field("max_jobs_per_client", &self.max_jobs_per_client)
            .field("workers", &self.workers)
            .field("file_lifetime_hours", &self.file_lifetime_hours)
            .field("file_max_resources", &self.file_max_resources)
            .field("max_resources_per_second", &self.max_resources_per_second)
            .field("import_allowed_hosts", &self.import_allowed_hosts)
            .finish()
    }
}

impl BulkConfig {
    /// The effective settings, with defaults for what the file leaves out. Call
    /// [`Self::validate`] first: an invalid import host is left out here.
    pub fn settings(&self) -> BulkSettings {
        let defaults = BulkSettings::default();
        let export_defaults = ExportSettings::default();
        BulkSettings {
            max_running_per_client: self
                .max_jobs_per_client
                .unwrap_or(defaults.max_running_per_client),
            workers: self.workers.unwrap_or(defaults.workers).max(1),
            file_lifetime: self
                .file_lifetime_hours
                .map_or(defaults.file_lifetime, |hours| {
                    Duration::from_secs(hours * 3600)
                }),
            export: ExportSettings {
                file_max_resources: self
                    .file_max_resources
                    .unwrap_or(export_defaults.file_max_resources)
                    .max(1),
                max_resources_per_second: self
                    .max_resources_per_second
                    .unwrap_or(export_defaults.max_resources_per_second),
                ..export_defaults
            },
            import_allowed_hosts: HostAllowList::parse(&self.import_allowed_hosts)
                .unwrap_or_default(),
            ..defaults
        }
    }

    /// Opens the configured store, or the `bulk` directory under `data_dir`.
    pub fn open_store(&self, data_dir: &Path) -> Result<FileStore> {
        match &self.store {
            Some(url) => FileStore::from_url(url, &self.store_options),
            None => FileStore::local(&data_dir.join("bulk")),
        }
    }

    /// Checks the settings that can be checked without connecting to the store.
    pub fn validate(&self) -> Result<()> {
        HostAllowList::parse(&self.import_allowed_hosts)
            .map_err(|e| Error::Import(format!("[bulk] import_allowed_hosts: {e}")))?;
        if let Some(url) = &self.store {
            url::Url::parse(url).map_err(|e| {
                Error::Storage(format!(
                    "invalid [bulk] store '{url}': {e}; use a URL such as s3://bucket/prefix"
                ))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_store_option_values() {
        let config: BulkConfig = toml_like(&[("aws_secret_access_key", "s3cr3t")]);
        let text = format!("{config:?}");
        assert!(text.contains("aws_secret_access_key"));
        assert!(!text.contains("s3cr3t"));
    }

    #[test]
    fn import_hosts_are_validated() {
        let mut config = BulkConfig {
            import_allowed_hosts: vec!["data.example.org".to_string()],
            ..BulkConfig::default()
        };
        assert!(config.validate().is_ok());
        assert!(!config.settings().import_allowed_hosts.is_empty());
        config.import_allowed_hosts = vec!["https://data.example.org/x".to_string()];
        assert!(config.validate().is_err());
    }

    #[test]
    fn defaults_apply() {
        let settings = BulkConfig::default().settings();
        assert_eq!(settings.max_running_per_client, 2);
        assert_eq!(settings.export.max_resources_per_second, 0);
        assert!(settings.import_allowed_hosts.is_empty());
    }

    fn toml_like(options: &[(&str, &str)]) -> BulkConfig {
        BulkConfig {
            store: Some("s3://bucket/prefix".to_string()),
            store_options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..BulkConfig::default()
        }
    }
}
