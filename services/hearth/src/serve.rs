//! `hearth serve`: the log, the projections and the HTTP API in one process.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use axum::{Router, middleware};
use hearth_auth::{AuthSettings, AuthState};
use hearth_auth_store::{AuthProjection, AuthStore};
use hearth_cdr::{Repository, RepositoryProjection};
use hearth_fhir::{FhirSettings, FhirState};
use hearth_fhir_core::reference::LocalBases;
use hearth_log::{Log, topics};
use hearth_projection::{ProjectionHandle, RunnerOptions};
use hearth_smart::keys::KeyStore;
use tower::Layer;
use tower::util::MapRequestLayer;
use tower_http::cors::{Any, CorsLayer};

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
    let _lock = lock_data_dir(&settings.data_dir)?;
    let log = open_log(&settings).await?;
    ensure_topics(log.as_ref()).await?;

    let repository_path = settings.data_dir.join("repository.db");
    let repository_projection = hearth_projection::start(
        log.clone(),
        RepositoryProjection::new(LocalBases::new(&settings.public_url)),
        RunnerOptions::new(topics::RESOURCES, repository_path.clone()),
    )
    .await
    .context("cannot start the repository projection")?;
    let auth_path = settings.data_dir.join("auth.db");
    let auth_projection = hearth_projection::start(
        log.clone(),
        AuthProjection,
        RunnerOptions::new(topics::AUTH, auth_path.clone()),
    )
    .await
    .context("cannot start the auth projection")?;
    catch_up(
        log.as_ref(),
        topics::RESOURCES,
        "repository",
        &repository_projection,
    )
    .await?;
    catch_up(log.as_ref(), topics::AUTH, "auth store", &auth_projection).await?;

    let repository = Repository::open(&repository_path);
    let fhir = FhirState {
        settings: Arc::new(FhirSettings::new(&settings.public_url)),
        repository: repository.clone(),
        log: log.clone(),
        projection: repository_projection.clone(),
    };
    let keys = KeyStore::open_or_create(&settings.data_dir.join("keys"))
        .context("cannot open or create the signing keys")?;
    let ehr_cache_path = settings.data_dir.join("ehr-cache.db");
    let ehr_projection = hearth_projection::start(
        log.clone(),
        hearth_ehr_proxy::CacheProjection,
        RunnerOptions::new(topics::EHR, ehr_cache_path.clone()),
    )
    .await
    .context("cannot start the EHR cache projection")?;
    let admin_token = admin_token(&settings)?;
    let mut auth_settings = AuthSettings::new(&settings.public_url, &admin_token);
    if let Some(seconds) = settings.backend_token_seconds {
        auth_settings.backend_token_seconds = seconds;
    }
    if let Some(seconds) = settings.launch_seconds {
        auth_settings.launch_seconds = seconds;
    }
    let jwks = jwks_fetcher(&settings)?;
    let auth = AuthState::new(
        auth_settings,
        AuthStore::open(&auth_path),
        log.clone(),
        auth_projection.clone(),
        keys,
        repository,
        jwks,
    );
    let upstreams =
        hearth_ehr_proxy::Upstreams::new(Arc::new(settings.ehr.clone()), auth.keys.clone())
            .context("cannot create the EHR client")?;
    warn_of_incomplete_ehr_sites(&auth.store, &upstreams);
    let job_key_path = settings.data_dir.join("ehr-export-key");
    let job_key = hearth_analytics::pseudonym::Pseudonyms::load_or_create(&job_key_path)
        .with_context(|| format!("cannot load the key {}", job_key_path.display()))?;
    let ehr = hearth_ehr_proxy::EhrProxy::new(
        upstreams,
        hearth_ehr_proxy::EhrCache::open(&ehr_cache_path),
        job_key,
        log.clone(),
        ehr_projection.clone(),
    );
    let auth = auth.with_upstream(Arc::new(crate::ehr_context::ProxyResources(ehr.clone())));
    hearth_auth::ensure_default_site(&auth)
        .await
        .map_err(|e| anyhow::anyhow!("cannot register the default site: {}", e.description))?;
    hearth_console::ensure_demo_app(&auth, &settings.public_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot register the demo app: {}", e.description))?;
    let console = hearth_console::ConsoleState::new(
        auth.clone(),
        hearth_console::ConsoleSettings::new(&settings.public_url),
    );

    let bulk = hearth_bulk::service::start(
        log.clone(),
        &settings.data_dir,
        &settings.bulk,
        &settings.public_url,
        fhir.repository.clone(),
        repository_projection.clone(),
    )
    .await
    .context("cannot start Bulk Data")?;
    let bulk_projection = bulk.projection.clone();
    let bulk_worker = bulk.clone();

    let analytics = crate::analytics::Analytics::start(&settings, log.clone(), &admin_token)?;
    let auditor = crate::audit::Auditor::start(log.clone());
    let app = router(fhir, auth, bulk, analytics.admin.clone(), ehr, console).layer(
        middleware::from_fn_with_state(auditor, crate::audit::record_calls),
    );
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(listen = %settings.listen, fhir_base = %format!("{}/fhir", settings.public_url), "hearth ready");
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        crate::http_server::BODY_READ_TIMEOUT,
    ));
    let service = MapRequestLayer::new(hearth_auth::route_site).layer(app);
    let (stopping, stop_requested) = tokio::sync::watch::channel(false);
    let server = crate::http_server::serve(listener, service, async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
    });
    tokio::select! {
        () = server => {}
        () = shutdown_deadline(stop_requested) => {
            tracing::warn!(seconds = SHUTDOWN_GRACE.as_secs(), "requests still open after the shutdown grace period; stopping anyway");
        }
    }

    tracing::info!("stopping bulk jobs");
    bulk_worker.stop(SHUTDOWN_GRACE).await;
    tracing::info!("stopping projections");
    repository_projection.stop().await;
    auth_projection.stop().await;
    bulk_projection.stop().await;
    analytics.stop().await;
    ehr_projection.stop().await;
    tracing::info!("hearth stopped");
    Ok(ExitCode::SUCCESS)
}

/// Creates Hearth's topics unless they exist.
pub async fn ensure_topics(log: &dyn Log) -> anyhow::Result<()> {
    for (topic, partitions) in TOPICS {
        log.ensure_topic(topic, *partitions)
            .await
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    Ok(())
}

/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Resolves `SHUTDOWN_GRACE` after shutdown was requested, so a client that never finishes
/// its request cannot keep the process alive.
async fn shutdown_deadline(mut stop_requested: tokio::sync::watch::Receiver<bool>) {
    if stop_requested.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// Logs each EHR-backed site that lacks a setting its upstream needs. Such a site
/// returns 503 until the setting is added, so the operator learns of it at start.
fn warn_of_incomplete_ehr_sites(store: &AuthStore, upstreams: &hearth_ehr_proxy::Upstreams) {
    let sites = match store.sites() {
        Ok(sites) => sites,
        Err(error) => {
            tracing::warn!(%error, "cannot list the sites to check their EHR settings");
            return;
        }
    };
    for site in sites
        .iter()
        .filter(|site| site.backing == hearth_schemas::Backing::Ehr)
    {
        if let Some(missing) = upstreams.missing_setting(site) {
            tracing::warn!(site = %site.site_id, %missing, "this EHR-backed site is missing a setting and returns 503 until it is set");
        }
    }
}

/// Locks the data directory for this process, so a second server or a `hearth replay`
/// cannot change its stores while it runs. The lock ends with the process.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join("hearth.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another hearth process is using the data directory {}; stop it first",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// All routes: the FHIR API and the authorization server of every site, and the admin
/// API. Site paths (`/sites/{site}/...`) reach the same routes through
/// [`hearth_auth::route_site`].
/// Marks FHIR responses as private to the caller and to be revalidated before each reuse,
/// so a browser does not show a resource again from its cache once the token that read it
/// was revoked. Responses that set their own `Cache-Control`, such as the public SMART
/// configuration, keep it.
async fn private_fhir_response(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-cache"),
        );
    }
    headers.append(
        header::VARY,
        header::HeaderValue::from_static("Authorization"),
    );
    response
}

fn router(
    fhir: FhirState,
    auth: AuthState,
    bulk: hearth_bulk::BulkService,
    analytics: hearth_analytics::admin::AdminState,
    ehr: hearth_ehr_proxy::EhrProxy,
    console: hearth_console::ConsoleState,
) -> Router {
    // Route layers run only for matched routes, innermost first: the call record learns
    // the route before the token check, so rejected calls are recorded with it too.
    let fhir_routes = hearth_fhir::router(fhir)
        .merge(hearth_bulk::http::router(bulk))
        .merge(hearth_auth::discovery_router(auth.clone()))
        .route_layer(middleware::from_fn_with_state(
            ehr,
            hearth_ehr_proxy::serve_ehr_sites,
        ))
        .route_layer(middleware::from_fn_with_state(
            auth.clone(),
            hearth_auth::require_token,
        ))
        .route_layer(middleware::from_fn(hearth_fhir::audit::record_fhir_route))
        .layer(middleware::from_fn_with_state(
            auth.clone(),
            hearth_auth::resolve_site,
        ))
        .layer(middleware::map_response(private_fhir_response));
    let auth_routes = hearth_auth::auth_router(auth.clone())
        .layer(axum::extract::DefaultBodyLimit::max(
            hearth_auth::MAX_BODY_BYTES,
        ))
        .layer(middleware::from_fn(hearth_auth::drain_oversized_body))
        .layer(middleware::map_response(
            hearth_auth::oauth_for_framework_errors,
        ))
        .layer(middleware::from_fn_with_state(
            auth.clone(),
            hearth_auth::resolve_site,
        ));
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::CONTENT_LOCATION,
            header::LAST_MODIFIED,
            header::WWW_AUTHENTICATE,
            header::EXPIRES,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-progress"),
        ]);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(
            hearth_console::router(console).route_layer(middleware::from_fn_with_state(
                "",
                crate::audit::record_route,
            )),
        )
        .nest("/fhir", fhir_routes)
        .nest("/auth", auth_routes)
        .nest(
            "/ehr-client",
            hearth_ehr_proxy::client_jwks_router(auth.keys.clone()),
        )
        .nest(
            "/admin",
            hearth_auth::admin_router(auth)
                .merge(hearth_analytics::admin::router(analytics))
                .route_layer(middleware::from_fn_with_state(
                    "/admin",
                    crate::audit::record_route,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(
                    hearth_auth::MAX_BODY_BYTES,
                ))
                .layer(middleware::from_fn(hearth_auth::drain_oversized_body))
                .layer(middleware::map_response(
                    hearth_auth::oauth_for_framework_errors,
                )),
        )
        .fallback(unknown_path)
        .layer(cors)
        .layer(middleware::map_response(hearth_auth::protect_html_pages))
}

/// Responds to a path no route serves: with an OperationOutcome under a FHIR base, such as
/// `/fhir/` with its trailing slash, and with a plain 404 elsewhere.
async fn unknown_path(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    let under_fhir = path.starts_with("/fhir")
        || (path.starts_with("/sites/") && path.split('/').nth(3) == Some("fhir"));
    if under_fhir {
        hearth_fhir::FhirError::not_found(
            "no FHIR endpoint at this path; the FHIR base has no trailing slash",
        )
        .into_response()
    } else {
        (axum::http::StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

/// The admin credential: from the settings, else from `admin-token` in the data
/// directory, created with a random value on first start (readable by the owner only).
/// Builds the HTTP clients of jwks_uri fetches, trusting the extra CA file when one is set.
fn jwks_fetcher(settings: &Settings) -> anyhow::Result<hearth_auth::JwksFetcher> {
    let extra_ca = match &settings.extra_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read the extra CA file {}", path.display()))?,
        ),
        None => None,
    };
    hearth_auth::JwksFetcher::new(extra_ca.as_deref()).map_err(|reason| {
        let path = settings.extra_ca_file.as_deref().unwrap_or(Path::new(""));
        anyhow::anyhow!("invalid extra CA file {}: {reason}", path.display())
    })
}

fn admin_token(settings: &Settings) -> anyhow::Result<String> {
    if let Some(token) = &settings.admin_token {
        return Ok(token.clone());
    }
    let path = settings.data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    // Hex, so the token never starts with `-` and passes as a command-line value.
    let token = hearth_smart::secret::hash_token(&hearth_smart::secret::generate_token(32));
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(token)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Waits until a projection has applied everything its topic held at start, so the
/// first requests already see every acknowledged write. Logs progress every few seconds.
async fn catch_up<O>(
    log: &dyn Log,
    topic: &str,
    name: &str,
    projection: &ProjectionHandle<O>,
) -> anyhow::Result<()> {
    let ends = log
        .end_offsets(topic)
        .await
        .with_context(|| format!("cannot read the end of {topic}"))?;
    loop {
        match projection
            .wait_for_offsets(&ends, Duration::from_secs(5))
            .await
        {
            Ok(()) => return Ok(()),
            Err(hearth_projection::Error::Timeout(_)) => {
                tracing::info!(projection = name, applied = ?projection.next_offsets(), end = ?ends, "catching up with the log");
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("the {name} projection stopped while catching up"));
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
pub async fn shutdown_signal() {
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
