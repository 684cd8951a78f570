//! Settings of `hearth serve`: built-in defaults, then `hearth.toml`, then `HEARTH_*`
//! environment variables, then flags. Unknown keys in the file are rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// Flags of `hearth serve` and of the subcommands that open the data directory.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without it, `hearth.toml` in the working directory is
    /// read when present.
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded log and the projection stores [default: ./hearth-data]
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address and port the HTTP server listens on [default: 127.0.0.1:8080]
    #[arg(long, env = "HEARTH_LISTEN")]
    pub listen: Option<String>,
    /// Absolute URL clients reach this server at, used in links and discovery documents
    /// [default: http://LISTEN]
    #[arg(long, env = "HEARTH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Kafka bootstrap servers (HOST:PORT,...); switches the log from the embedded one to
    /// Kafka
    #[arg(long, env = "HEARTH_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Prefix of Hearth's topic and consumer group names in Kafka, so several deployments
    /// can share a cluster [default: none]
    #[arg(long, env = "HEARTH_KAFKA_TOPIC_PREFIX")]
    pub kafka_topic_prefix: Option<String>,
    /// Bearer credential of the admin API [default: a random value kept in
    /// DATA_DIR/admin-token]
    #[arg(long, env = "HEARTH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Object store URL of Bulk Data files, such as s3://bucket/prefix; options such as
    /// the endpoint and credentials go in [bulk.store_options] of hearth.toml [default:
    /// DATA_DIR/bulk]
    #[arg(long, env = "HEARTH_BULK_STORE")]
    pub bulk_store: Option<String>,
    /// Hosts `$import` may fetch NDJSON from over HTTP(S), comma-separated, such as
    /// data.example.org,*.example.net:8443; replaces [bulk] import_allowed_hosts [default:
    /// none, so $import reads only from the bulk store]
    #[arg(long, env = "HEARTH_BULK_IMPORT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub bulk_import_allowed_hosts: Option<Vec<String>>,
    /// Lifetime of backend-services access tokens, in seconds, from 1 to 300 [default: 300]
    #[arg(long, env = "HEARTH_BACKEND_TOKEN_SECONDS", value_parser = clap::value_parser!(i64).range(1..=300))]
    pub backend_token_seconds: Option<i64>,
    /// How long an EHR launch context stays usable, in seconds, from 1 to 3600
    /// [default: 3600]
    #[arg(long, env = "HEARTH_LAUNCH_SECONDS", value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub launch_seconds: Option<i64>,
    /// PEM file of CA certificates to trust, besides the system's, when fetching apps'
    /// JWKS from their jwks_uri [default: none]
    #[arg(long, env = "HEARTH_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub clickhouse: hearth_analytics::ClickHouseArgs,
}

/// The keys `hearth.toml` may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    admin_token: Option<String>,
    listen: Option<String>,
    public_url: Option<String>,
    extra_ca_file: Option<PathBuf>,
    kafka: Option<KafkaFileConfig>,
    bulk: Option<hearth_bulk::config::BulkConfig>,
    clickhouse: Option<hearth_analytics::ClickHouseFile>,
    ehr: Option<hearth_ehr_proxy::EhrConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaFileConfig {
    brokers: Option<String>,
    topic_prefix: Option<String>,
    /// Extra librdkafka properties, such as `security.protocol`.
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

/// The effective settings.
#[derive(Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Bearer credential of the admin API; masked in `Debug`.
    pub admin_token: Option<String>,
    pub listen: String,
    pub public_url: String,
    pub log: LogBackend,
    pub bulk: hearth_bulk::config::BulkConfig,
    pub backend_token_seconds: Option<i64>,
    pub launch_seconds: Option<i64>,
    /// CA certificates trusted for jwks_uri fetches besides the system's.
    pub extra_ca_file: Option<PathBuf>,
    /// ClickHouse of the analytics sink; `None` leaves analytics off.
    pub clickhouse: Option<hearth_analytics::ClickHouseConfig>,
    /// Upstream limits and secrets of EHR-backed sites; secrets are masked in `Debug`.
    pub ehr: hearth_ehr_proxy::EhrConfig,
}

#[derive(Clone)]
pub enum LogBackend {
    Embedded,
    Kafka {
        brokers: String,
        topic_prefix: String,
        properties: BTreeMap<String, String>,
    },
}

impl fmt::Debug for Settings {
    /// Lists the settings without librdkafka property values, which can hold passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = match &self.log {
            LogBackend::Embedded => "embedded".to_string(),
            LogBackend::Kafka {
                brokers,
                topic_prefix,
                properties,
            } => {
                let keys: Vec<&str> = properties.keys().map(String::as_str).collect();
                format!("kafka brokers={brokers} topic_prefix={topic_prefix:?} properties={keys:?}")
            }
        };
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("log", &log)
            .field("bulk", &self.bulk)
            .field("backend_token_seconds", &self.backend_token_seconds)
            .field("launch_seconds", &self.launch_seconds)
            .field("extra_ca_file", &self.extra_ca_file)
            .field("clickhouse", &self.clickhouse)
            .field("ehr", &self.ehr)
            .finish()
    }
}

impl ServeArgs {
    /// Merges the file, environment and flags into the effective settings.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = self.read_file()?;
        self.resolve_with(file)
    }

    fn resolve_with(&self, file: FileConfig) -> anyhow::Result<Settings> {
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("hearth-data"));
        let listen = self
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        if listen.parse::<std::net::SocketAddr>().is_err() {
            bail!("invalid listen address '{listen}': expected IP:PORT, such as 127.0.0.1:8080");
        }
        let public_url = self
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("invalid public URL '{public_url}': it must start with http:// or https://");
        }
        let kafka = file.kafka.unwrap_or_default();
        let log = match self.kafka_brokers.clone().or(kafka.brokers) {
            Some(brokers) => LogBackend::Kafka {
                brokers,
                topic_prefix: self
                    .kafka_topic_prefix
                    .clone()
                    .or(kafka.topic_prefix)
                    .unwrap_or_default(),
                properties: kafka.properties,
            },
            None => LogBackend::Embedded,
        };
        let mut bulk = file.bulk.unwrap_or_default();
        if let Some(store) = &self.bulk_store {
            bulk.store = Some(store.clone());
        }
        if let Some(hosts) = &self.bulk_import_allowed_hosts {
            bulk.import_allowed_hosts = hosts.clone();
        }
        bulk.validate()?;
        let clickhouse = self.clickhouse.resolve(file.clickhouse)?;
        let ehr = file.ehr.unwrap_or_default().with_env(std::env::vars());
        ehr.validate().map_err(anyhow::Error::msg)?;
        Ok(Settings {
            clickhouse,
            ehr,
            bulk,
            backend_token_seconds: self.backend_token_seconds,
            launch_seconds: self.launch_seconds,
            extra_ca_file: self.extra_ca_file.clone().or(file.extra_ca_file),
            data_dir,
            admin_token: self.admin_token.clone().or(file.admin_token),
            listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            log,
        })
    }

    fn read_file(&self) -> anyhow::Result<FileConfig> {
        let path = match &self.config {
            Some(path) => path.clone(),
            None if Path::new("hearth.toml").exists() => PathBuf::from("hearth.toml"),
            None => return Ok(FileConfig::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid configuration file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file_or_flags() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            config: Some(dir.path().join("absent.toml")),
            ..Default::default()
        };
        assert!(
            args.resolve().is_err(),
            "a named file that is missing is an error"
        );

        let settings = ServeArgs::default()
            .resolve_with(FileConfig::default())
            .unwrap();
        assert_eq!(settings.data_dir, PathBuf::from("hearth-data"));
        assert_eq!(settings.listen, "127.0.0.1:8080");
        assert_eq!(settings.public_url, "http://127.0.0.1:8080");
        assert!(matches!(settings.log, LogBackend::Embedded));
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/h\"\n[kafka]\nbrokers = \"k:9092\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:7000".to_string()),
            ..Default::default()
        };
        let settings = args.resolve_with(file).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:7000");
        assert_eq!(settings.data_dir, PathBuf::from("/srv/h"));
        assert!(
            matches!(settings.log, LogBackend::Kafka { ref brokers, .. } if brokers == "k:9092")
        );
    }

    #[test]
    fn clickhouse_from_file_or_flag() {
        let file: FileConfig =
            toml::from_str("[clickhouse]\nurl = \"http://127.0.0.1:8123\"\nbatch_records = 500\n")
                .unwrap();
        let settings = ServeArgs::default().resolve_with(file).unwrap();
        let clickhouse = settings.clickhouse.unwrap();
        assert_eq!(clickhouse.url, "http://127.0.0.1:8123");
        assert_eq!(clickhouse.sink_options().max_batch_records, 500);

        let settings = ServeArgs::default()
            .resolve_with(FileConfig::default())
            .unwrap();
        assert!(settings.clickhouse.is_none(), "analytics is off by default");

        let result: Result<FileConfig, _> = toml::from_str("[clickhouse]\nurll = \"x\"\n");
        assert!(result.is_err(), "unknown [clickhouse] keys are rejected");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let result: Result<FileConfig, _> = toml::from_str("listne = \"x\"");
        assert!(result.is_err());
    }

    #[test]
    fn bad_listen_address_is_rejected() {
        let args = ServeArgs {
            listen: Some("localhost".to_string()),
            ..Default::default()
        };
        let error = args.resolve_with(FileConfig::default()).unwrap_err();
        assert!(
            error.to_string().contains("invalid listen address"),
            "{error}"
        );
    }
}
