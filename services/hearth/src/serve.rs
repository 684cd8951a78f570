//! `hearth serve`: the log, the projections and the HTTP API in one process.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use std::time::Duration;

use hearth_cdr::{Repository, RepositoryProjection, TransactionOutcome};
use hearth_fhir::{FhirSettings, FhirState};
use hearth_log::{Log, topics};
use hearth_projection::{ProjectionHandle, RunnerOptions};

use crate::config::{LogBackend, ServeArgs, Settings};

/// Partitions of each topic when Hearth creates it. Resource writes need one total order,
/// so `hearth.resources` has one partition; the others are keyed by grant, site or job.
const TOPICS: &[(&str, u32)] = &[
    (topics::RESOURCES, 1),
    (topics::AUTH, 1),
    (topics::API, 1),
    (topics::BULK, 1),
    (topics::EHR, 1),
];

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let settings = args.resolve()?;
    tracing::info!(settings = ?settings, version = env!("CARGO_PKG_VERSION"), "hearth starting");

    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let log = open_log(&settings).await?;
    for (topic, partitions) in TOPICS {
        log.ensure_topic(topic, *partitions)
            .await
            .with_context(|| format!("cannot create topic {topic}"))?;
    }

    let repository_path = settings.data_dir.join("repository.db");
    let projection = hearth_projection::start(
        log.clone(),
        RepositoryProjection,
        RunnerOptions::new(topics::RESOURCES, repository_path.clone()),
    )
    .await
    .context("cannot start the repository projection")?;

    catch_up(log.as_ref(), &projection).await?;

    let fhir = FhirState {
        settings: Arc::new(FhirSettings::new(&settings.public_url)),
        repository: Repository::open(&repository_path),
        log: log.clone(),
        projection: projection.clone(),
        site_id: "default".to_string(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/fhir", hearth_fhir::router(fhir));

    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(listen = %settings.listen, fhir_base = %format!("{}/fhir", settings.public_url), "hearth ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;

    tracing::info!("stopping projections");
    projection.stop().await;
    tracing::info!("hearth stopped");
    Ok(ExitCode::SUCCESS)
}

/// Waits until the repository has applied everything the log held at start, so the first
/// reads already see every acknowledged write. Logs progress every few seconds.
async fn catch_up(
    log: &dyn Log,
    projection: &ProjectionHandle<TransactionOutcome>,
) -> anyhow::Result<()> {
    let ends = log
        .end_offsets(topics::RESOURCES)
        .await
        .context("cannot read the end of the resource log")?;
    loop {
        match projection
            .wait_for_offsets(&ends, Duration::from_secs(5))
            .await
        {
            Ok(()) => return Ok(()),
            Err(hearth_projection::Error::Timeout(_)) => {
                tracing::info!(applied = ?projection.next_offsets(), end = ?ends, "repository catching up with the log");
            }
            Err(error) => {
                return Err(error).context("the repository projection stopped while catching up");
            }
        }
    }
}

pub async fn open_log(settings: &Settings) -> anyhow::Result<Arc<dyn Log>> {
    match &settings.log {
        LogBackend::Embedded => {
            let dir = settings.data_dir.join("log");
            let log = open_embedded(&dir)?;
            Ok(Arc::new(log))
        }
        LogBackend::Kafka {
            brokers,
            topic_prefix,
            properties,
        } => {
            let mut config = hearth_log::kafka::KafkaConfig::new(brokers);
            config.topic_prefix = topic_prefix.clone();
            config.properties.extend(properties.clone());
            let log = hearth_log::kafka::KafkaLog::connect(config)
                .with_context(|| format!("cannot connect to Kafka at {brokers}"))?;
            Ok(Arc::new(log))
        }
    }
}

fn open_embedded(dir: &Path) -> anyhow::Result<hearth_log::embedded::EmbeddedLog> {
    hearth_log::embedded::EmbeddedLog::open(dir, hearth_log::embedded::EmbeddedOptions::default())
        .with_context(|| format!("cannot open the embedded log in {}", dir.display()))
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupt received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
