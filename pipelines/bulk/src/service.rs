//! What the HTTP operations and the worker share: the log, the stores and the settings.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hearth_cdr::{Repository, TransactionOutcome, Visibility};
use hearth_fhir::Principal;
use hearth_fhir_core::reference::LocalBases;
use hearth_log::{Log, Position, topics};
use hearth_projection::ProjectionHandle;
use hearth_schemas::{BulkJobRequested, Event};
use hearth_smart::scope::Interaction;
use tokio::sync::Notify;

use crate::allow_list::HostAllowList;
use crate::export::ExportSettings;
use crate::jobs::{JobOutcome, JobStore};
use crate::storage::FileStore;
use crate::{Error, Result};

/// Settings of Bulk Data jobs.
#[derive(Debug, Clone)]
pub struct BulkSettings {
    /// Running jobs (queued or in progress) one client may have; a kick-off past it gets 429.
    pub max_running_per_client: u32,
    /// Jobs the worker runs at the same time.
    pub workers: usize,
    /// How long finished files stay downloadable.
    pub file_lifetime: Duration,
    /// Seconds a client should wait between status requests (`Retry-After`).
    pub retry_after_seconds: u64,
    /// How long a request waits for a projection to apply its event.
    pub write_timeout: Duration,
    pub export: ExportSettings,
    /// Hosts `$import` may fetch from over HTTP(S).
    pub import_allowed_hosts: HostAllowList,
    /// The server's FHIR bases, which decide whether a Group member's absolute reference
    /// names a patient of this server.
    pub local_bases: LocalBases,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            max_running_per_client: 2,
            workers: 2,
            file_lifetime: Duration::from_secs(24 * 3600),
            retry_after_seconds: 2,
            write_timeout: Duration::from_secs(60),
            export: ExportSettings::default(),
            import_allowed_hosts: HostAllowList::default(),
            local_bases: LocalBases::none(),
        }
    }
}

/// Shared state of the Bulk Data operations and the worker.
#[derive(Clone)]
pub struct BulkService {
    pub settings: Arc<BulkSettings>,
    pub log: Arc<dyn Log>,
    pub jobs: JobStore,
    pub projection: ProjectionHandle<JobOutcome>,
    pub repository: Repository,
    /// The repository projection, which `$import` and `$refresh` writes wait for.
    pub repository_projection: ProjectionHandle<TransactionOutcome>,
    pub files: FileStore,
    /// Wakes the worker when a job is requested or cancelled.
    pub wake: Arc<Notify>,
    /// Set when the server shuts down: running jobs stop at their next page and the
    /// worker starts no new one.
    pub stopping: Arc<AtomicBool>,
    /// Ids of the jobs the worker is running now.
    pub active: Arc<parking_lot::Mutex<HashSet<String>>>,
}

impl BulkService {
    /// Appends a `hearth.bulk` event keyed by its job, so a job's events stay in order.
    pub async fn append<E: Event>(&self, job_id: &str, event: &E) -> Result<Position> {
        let value = hearth_schemas::encode(event).map_err(|e| Error::Log(e.to_string()))?;
        self.log
            .append(topics::BULK, job_id.as_bytes(), &value)
            .await
            .map_err(|e| Error::Log(e.to_string()))
    }

    /// Stops the worker for a shutdown: running jobs stop at their next page without
    /// recording an end, so they stay running in the job store and resume from their last
    /// checkpoint at the next start. Waits up to `grace` for them to stop.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self.active.lock().len();
            if running == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    running,
                    "bulk jobs still running at shutdown; they resume from their last checkpoint at the next start"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Appends an event and waits until the job store has applied it.
    pub async fn append_and_wait<E: Event>(&self, job_id: &str, event: &E) -> Result<JobOutcome> {
        let position = self.append(job_id, event).await?;
        let outcome = self
            .projection
            .wait_for(position, self.settings.write_timeout)
            .await
            .map_err(|e| Error::Log(e.to_string()))?;
        Ok(outcome.unwrap_or(JobOutcome::Applied))
    }
}

/// The caller a job acts for, rebuilt from its request.
pub fn principal_of(request: &BulkJobRequested) -> Principal {
    Principal {
        client_id: request.client_id.clone(),
        token_id: String::new(),
        grant_id: None,
        scopes: hearth_smart::scope::parse(&request.scope),
        patient: request.patient_context.clone(),
        fhir_user: request.fhir_user.clone(),
        user_type: None,
    }
}

/// What `principal` may read of a resource type in a bulk job, or `None` when its scopes
/// do not allow searching the type.
pub fn visibility_for(principal: &Principal, resource_type: &str) -> Option<Visibility> {
    hearth_fhir::visibility(principal, resource_type, Interaction::Search).ok()
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Starts the job store projection of `hearth.bulk` (`DATA_DIR/bulk.db`), waits until it
/// has applied the whole topic, opens the file store and starts the worker. `public_url`
/// is the server's, from which the FHIR bases of its sites derive.
pub async fn start(
    log: Arc<dyn Log>,
    data_dir: &std::path::Path,
    config: &crate::config::BulkConfig,
    public_url: &str,
    repository: Repository,
    repository_projection: ProjectionHandle<TransactionOutcome>,
) -> Result<BulkService> {
    let mut settings = config.settings();
    settings.local_bases = LocalBases::new(public_url);
    let path = data_dir.join("bulk.db");
    let projection = hearth_projection::start(
        log.clone(),
        crate::jobs::JobProjection {
            max_running_per_client: settings.max_running_per_client,
        },
        hearth_projection::RunnerOptions::new(topics::BULK, path.clone()),
    )
    .await
    .map_err(|e| Error::Log(format!("cannot start the bulk job projection: {e}")))?;
    let ends = log
        .end_offsets(topics::BULK)
        .await
        .map_err(|e| Error::Log(e.to_string()))?;
    projection
        .wait_for_offsets(&ends, Duration::from_secs(3600))
        .await
        .map_err(|e| Error::Log(format!("the bulk job projection did not catch up: {e}")))?;
    let files = config.open_store(data_dir)?;
    tracing::info!(store = files.location(), "bulk data files");
    let service = BulkService {
        settings: Arc::new(settings),
        log,
        jobs: JobStore::open(&path),
        projection,
        repository,
        repository_projection,
        files,
        wake: Arc::new(Notify::new()),
        stopping: Arc::default(),
        active: Arc::default(),
    };
    crate::worker::start(service.clone());
    Ok(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scope: &str, patient: Option<&str>) -> Principal {
        Principal {
            client_id: "app".to_string(),
            token_id: "t".to_string(),
            grant_id: None,
            scopes: hearth_smart::scope::parse(scope),
            patient: patient.map(str::to_string),
            fhir_user: None,
            user_type: None,
        }
    }

    #[test]
    fn patient_scopes_confine_export_to_compartment() {
        let caller = principal("patient/*.rs", Some("p1"));
        for resource_type in ["Patient", "Observation"] {
            let visibility = visibility_for(&caller, resource_type).expect("readable");
            assert!(!visibility.alternatives.is_empty(), "{resource_type}");
            for alternative in &visibility.alternatives {
                assert_eq!(
                    alternative.patient_compartment.as_deref(),
                    Some("p1"),
                    "{resource_type}"
                );
            }
        }
    }

    #[test]
    fn user_scopes_limit_export_types() {
        let caller = principal("user/Patient.rs", None);
        assert!(visibility_for(&caller, "Patient").is_some());
        assert!(visibility_for(&caller, "Observation").is_none());

        let system = principal("system/Observation.rs?category=laboratory", None);
        let visibility = visibility_for(&system, "Observation").expect("readable");
        assert!(
            visibility
                .alternatives
                .iter()
                .all(|a| a.filters.iter().any(|(name, _)| name == "category")),
            "the scope's query narrows the export: {visibility:?}"
        );
    }

    #[test]
    fn job_principal_keeps_scopes() {
        let caller = principal("patient/Observation.rs", Some("p9"));
        let request = BulkJobRequested {
            scope: caller.scopes.to_string(),
            patient_context: caller.patient.clone(),
            client_id: caller.client_id.clone(),
            ..sample_request()
        };
        let rebuilt = principal_of(&request);
        assert_eq!(rebuilt.scopes.to_string(), caller.scopes.to_string());
        assert_eq!(rebuilt.patient.as_deref(), Some("p9"));
        assert!(visibility_for(&rebuilt, "Condition").is_none());
    }

    fn sample_request() -> BulkJobRequested {
        BulkJobRequested {
            event_id: "e".to_string(),
            occurred_at: 0,
            job_id: "j".to_string(),
            kind: hearth_schemas::BulkJobKind::Export,
            level: hearth_schemas::ExportLevel::System,
            group_id: None,
            site_id: "default".to_string(),
            client_id: String::new(),
            request_url: String::new(),
            output_format: crate::request::NDJSON.to_string(),
            since: None,
            until: None,
            types: Vec::new(),
            type_filters: Vec::new(),
            elements: Vec::new(),
            patients: Vec::new(),
            include_associated_data: Vec::new(),
            organize_output_by: None,
            allow_partial_manifests: false,
            input_format: None,
            input_source: None,
            inputs: Vec::new(),
            transaction_time: 0,
            requires_access_token: true,
            scope: String::new(),
            patient_context: None,
            fhir_user: None,
            base_url: String::new(),
            warnings: Vec::new(),
        }
    }
}
