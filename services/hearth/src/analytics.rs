//! `hearth analytics`: ClickHouse migrations, the sink as its own process, and reports;
//! and the sink that `hearth serve` runs when ClickHouse is configured.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hearth_analytics::admin::AdminState;
use hearth_analytics::pseudonym::Pseudonyms;
use hearth_analytics::reports::{self, Bucket, Distinct, Filters, LatencyFilters, TimeRange};
use hearth_analytics::{ClickHouse, ClickHouseArgs, ClickHouseConfig, SinkHandle, migrate};
use hearth_log::Log;

use crate::config::{ServeArgs, Settings};

/// Where the analytics subcommands find the log and ClickHouse.
#[derive(Args, Debug, Clone)]
pub struct AnalyticsArgs {
    /// Configuration file (TOML); its [clickhouse] table applies. Without it,
    /// `hearth.toml` in the working directory is read when present.
    #[arg(long, env = "HEARTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory of the embedded log and the pseudonym key [default: ./hearth-data]
    #[arg(long, env = "HEARTH_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (HOST:PORT,...) when the log is Kafka
    #[arg(long, env = "HEARTH_KAFKA_BROKERS", global = true)]
    kafka_brokers: Option<String>,
    /// Prefix of Hearth's topic and consumer group names in Kafka [default: none]
    #[arg(long, env = "HEARTH_KAFKA_TOPIC_PREFIX", global = true)]
    kafka_topic_prefix: Option<String>,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

#[derive(Subcommand, Debug)]
pub enum AnalyticsCommand {
    /// Create the ClickHouse database and apply the migrations not applied yet
    Migrate,
    /// Copy hearth.auth and hearth.api into ClickHouse, without the HTTP server. With
    /// the embedded log, `hearth serve` must not run on the same data directory.
    Sink {
        /// Stop once everything appended before the start is in ClickHouse, instead of
        /// following the log
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Print a report as JSON
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Calls, launches and token grants per site and app; distinct users with --site or
    /// --app, distinct patients with --app (or --users true, --patients true)
    Usage {
        #[command(flatten)]
        range: ReportArgs,
        /// Time bucket of each row
        #[arg(long, value_enum, default_value = "total")]
        bucket: Bucket,
        /// Count distinct users (true or false) [default: true with --site or --app]
        #[arg(long)]
        users: Option<bool>,
        /// Count distinct patients (true or false) [default: true with --app, else false]
        #[arg(long)]
        patients: Option<bool>,
    },
    /// Latency quantiles (p50, p95, p99) per site, surface and FHIR interaction
    Latency {
        #[command(flatten)]
        range: ReportArgs,
        #[arg(long, value_enum, default_value = "total")]
        bucket: Bucket,
        /// Only this surface: FHIR, AUTH, ADMIN, BULK or CONSOLE
        #[arg(long)]
        surface: Option<String>,
        /// Only this FHIR interaction, such as read or search-type
        #[arg(long)]
        interaction: Option<String>,
    },
    /// Calls, launches and token grants per day of week, hour of day (UTC) and user type;
    /// distinct users with --site or --app
    Hourly {
        #[command(flatten)]
        range: ReportArgs,
    },
    /// Calls answered with status 400 or above, per app, status and error code
    Errors {
        #[command(flatten)]
        range: ReportArgs,
    },
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Start of the range: RFC 3339 time, date (UTC midnight) or Unix seconds
    /// [default: 7 days before --to]
    #[arg(long)]
    from: Option<String>,
    /// End of the range, exclusive [default: now]
    #[arg(long)]
    to: Option<String>,
    /// Only this site id
    #[arg(long)]
    site: Option<String>,
    /// Only this app (client id)
    #[arg(long)]
    app: Option<String>,
}

impl AnalyticsArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        ServeArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            kafka_brokers: self.kafka_brokers.clone(),
            kafka_topic_prefix: self.kafka_topic_prefix.clone(),
            clickhouse: self.clickhouse.clone(),
            ..ServeArgs::default()
        }
        .resolve()
    }
}

fn required(settings: &Settings) -> anyhow::Result<&ClickHouseConfig> {
    match &settings.clickhouse {
        Some(config) => Ok(config),
        None => bail!(
            "analytics is not configured: pass --clickhouse-url, set HEARTH_CLICKHOUSE_URL, \
             or set url in the [clickhouse] table of hearth.toml"
        ),
    }
}

pub async fn run(args: AnalyticsArgs, command: AnalyticsCommand) -> anyhow::Result<ExitCode> {
    crate::serve::init_tracing();
    let settings = args.settings()?;
    let config = required(&settings)?;
    let client = ClickHouse::new(config);
    match command {
        AnalyticsCommand::Migrate => {
            let report = migrate::migrate(&client)
                .await
                .with_context(|| format!("migrating ClickHouse at {}", config.url))?;
            let version = report
                .server_version
                .map(|version| version.to_string())
                .unwrap_or_default();
            println!(
                "ClickHouse {version}, database {}: applied {:?}, already applied {:?}, \
                 skipped (server too old) {:?}",
                client.database(),
                report.applied,
                report.already_applied,
                report.skipped
            );
            Ok(ExitCode::SUCCESS)
        }
        AnalyticsCommand::Sink { until_caught_up } => {
            run_sink(&settings, config, client, until_caught_up).await
        }
        AnalyticsCommand::Report { report } => {
            let json = run_report(&client, report).await?;
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_sink(
    settings: &Settings,
    config: &ClickHouseConfig,
    client: ClickHouse,
    until_caught_up: bool,
) -> anyhow::Result<ExitCode> {
    let _lock = match settings.log {
        crate::config::LogBackend::Embedded => {
            Some(crate::serve::lock_data_dir(&settings.data_dir)?)
        }
        crate::config::LogBackend::Kafka { .. } => None,
    };
    let log = crate::serve::open_log(settings).await?;
    crate::serve::ensure_topics(log.as_ref()).await?;
    let pseudonyms = Pseudonyms::load_or_create(&config.key_file(&settings.data_dir))?;
    let mut options = config.sink_options();
    options.stop_at_end = until_caught_up;
    let sink = hearth_analytics::sink::spawn(log, client, pseudonyms, options);
    let summary = if until_caught_up {
        sink.join().await?
    } else {
        crate::serve::shutdown_signal().await;
        sink.stop().await?
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}

async fn run_report(client: &ClickHouse, report: ReportCommand) -> anyhow::Result<String> {
    let (range, filters) = match &report {
        ReportCommand::Usage { range, .. }
        | ReportCommand::Latency { range, .. }
        | ReportCommand::Hourly { range }
        | ReportCommand::Errors { range } => {
            let time_range = TimeRange::parse(range.from.as_deref(), range.to.as_deref())?;
            let filters = Filters {
                site: range.site.clone(),
                app: range.app.clone(),
            };
            (time_range, filters)
        }
    };
    let json = match report {
        ReportCommand::Usage {
            bucket,
            users,
            patients,
            ..
        } => {
            let default = Distinct::default_for(&filters);
            let distinct = Distinct {
                users: users.unwrap_or(default.users),
                patients: patients.unwrap_or(default.patients),
            };
            let report = reports::usage(client, &range, &filters, bucket, distinct).await?;
            serde_json::to_string_pretty(&report)?
        }
        ReportCommand::Latency {
            bucket,
            surface,
            interaction,
            ..
        } => {
            let latency_filters = LatencyFilters {
                surface,
                interaction,
            };
            let report =
                reports::latency(client, &range, &filters, &latency_filters, bucket).await?;
            serde_json::to_string_pretty(&report)?
        }
        ReportCommand::Hourly { .. } => {
            serde_json::to_string_pretty(&reports::hourly_pattern(client, &range, &filters).await?)?
        }
        ReportCommand::Errors { .. } => {
            serde_json::to_string_pretty(&reports::errors(client, &range, &filters).await?)?
        }
    };
    Ok(json)
}

/// The sink inside `hearth serve`, when ClickHouse is configured.
pub struct Analytics {
    pub admin: AdminState,
    sink: Option<SinkHandle>,
}

impl Analytics {
    /// Starts the sink when ClickHouse is configured. The sink applies the migrations and
    /// waits for ClickHouse in the background, so the server starts while it is down.
    pub fn start(
        settings: &Settings,
        log: Arc<dyn Log>,
        admin_token: &str,
    ) -> anyhow::Result<Analytics> {
        let admin_token: Arc<str> = Arc::from(admin_token);
        let Some(config) = &settings.clickhouse else {
            tracing::info!(
                "analytics is off: no ClickHouse URL is configured, events stay in the log"
            );
            return Ok(Analytics {
                admin: AdminState {
                    client: None,
                    admin_token,
                    sink: None,
                },
                sink: None,
            });
        };
        let key_file = config.key_file(&settings.data_dir);
        let pseudonyms = Pseudonyms::load_or_create(&key_file)
            .with_context(|| format!("cannot load the pseudonym key {}", key_file.display()))?;
        let client = ClickHouse::new(config);
        let sink =
            hearth_analytics::sink::spawn(log, client.clone(), pseudonyms, config.sink_options());
        Ok(Analytics {
            admin: AdminState {
                client: Some(client),
                admin_token,
                sink: Some(sink.status_source()),
            },
            sink: Some(sink),
        })
    }

    /// Stops the sink after the batch it is writing.
    pub async fn stop(self) {
        // The sink logs its own summary or error when it ends.
        if let Some(sink) = self.sink
            && let Err(error) = sink.stop().await
        {
            tracing::debug!(%error, "the analytics sink ended with an error");
        }
    }
}
