//! The worker inside `hearth serve`: runs the jobs the store shows as running, resuming
//! each from its last checkpoint, and deletes the files of cancelled and expired jobs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hearth_schemas::{
    BulkFile, BulkFilesDeleted, BulkFilesDeletedReason, BulkJobCompleted, BulkJobFailed,
    BulkJobKind, BulkJobProgressed,
};
use parking_lot::Mutex;
use tokio::runtime::Handle;

use crate::export::{self, Checkpoint, ExportContext};
use crate::jobs::{Job, JobState};
use crate::service::{BulkService, now_micros, principal_of, visibility_for};
use crate::{Error, Result, import};

/// How often the worker looks for work when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// Starts the worker on the current runtime. It runs until the process ends.
pub fn start(service: BulkService) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let active = service.active.clone();
        loop {
            if service.is_stopping() {
                return;
            }
            if let Err(error) = start_jobs(&service, &active) {
                tracing::error!(%error, "listing bulk jobs failed");
            }
            if let Err(error) = delete_unneeded_files(&service).await {
                tracing::error!(%error, "deleting files of finished bulk jobs failed");
            }
            tokio::select! {
                () = service.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

fn start_jobs(service: &BulkService, active: &Arc<Mutex<HashSet<String>>>) -> Result<()> {
    for job_id in service.jobs.running()? {
        if service.is_stopping() {
            return Ok(());
        }
        {
            let mut running = active.lock();
            if running.len() >= service.settings.workers {
                return Ok(());
            }
            if !running.insert(job_id.clone()) {
                continue;
            }
        }
        let service = service.clone();
        let active = active.clone();
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let _span = tracing::info_span!("bulk_job", job_id = %job_id).entered();
            run_job(&service, &handle, &job_id);
            active.lock().remove(&job_id);
            service.wake.notify_one();
        });
    }
    Ok(())
}

fn run_job(service: &BulkService, handle: &Handle, job_id: &str) {
    let job = match service.jobs.get(job_id) {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "reading the job failed");
            return;
        }
    };
    tracing::info!(resumed = job.checkpoint.is_some(), "bulk job starting");
    let result = match job.request.kind {
        BulkJobKind::Export => run_export(service, handle, &job),
        BulkJobKind::Import => import::run(service, handle, &job),
    };
    // During a shutdown the runtime cancels the tasks a job waits on, so any error is
    // most likely that. The job stays running in the store and resumes from its last
    // checkpoint at the next start, as after a crash.
    if service.is_stopping() && result.is_err() {
        if let Err(error) = &result {
            tracing::info!(%error, "bulk job stopped for the shutdown; it resumes at the next start");
        }
        return;
    }
    let finished = match result {
        Ok((files, written)) => {
            tracing::info!(
                resources = written,
                files = files.len(),
                "bulk job completed"
            );
            let expires = now_micros()
                + i64::try_from(service.settings.file_lifetime.as_micros()).unwrap_or(i64::MAX);
            let event = BulkJobCompleted {
                event_id: uuid::Uuid::new_v4().to_string(),
                occurred_at: now_micros(),
                job_id: job_id.to_string(),
                resources_written: written,
                files,
                expires_at: Some(expires),
            };
            // Waiting for the store to apply the end keeps the next pass of the worker
            // from seeing the job as running and starting it again.
            handle
                .block_on(service.append_and_wait(job_id, &event))
                .map(|_| ())
        }
        Err(Error::Cancelled) => match service.jobs.state(job_id) {
            Ok(Some(JobState::Cancelled)) => {
                tracing::info!("bulk job stopped: it was cancelled");
                // The cancelling request deleted the files already, but a file this job
                // was still finishing may have landed after that.
                handle
                    .block_on(service.files.delete_job(job_id))
                    .map(|_| ())
            }
            // The job ended another way (a second run of it finished first): its files
            // belong to that run and stay.
            Ok(state) => {
                tracing::warn!(?state, "bulk job stopped: it is no longer running");
                Ok(())
            }
            Err(error) => Err(error.into()),
        },
        Err(error) => {
            tracing::error!(%error, "bulk job failed");
            let event = BulkJobFailed {
                event_id: uuid::Uuid::new_v4().to_string(),
                occurred_at: now_micros(),
                job_id: job_id.to_string(),
                error: error.client_message(),
                operation_outcome: None,
            };
            handle
                .block_on(service.append_and_wait(job_id, &event))
                .map(|_| ())
        }
    };
    if let Err(error) = finished {
        // The job stays running in the store, so the worker starts it again from its
        // last checkpoint on its next pass.
        tracing::error!(%error, "recording the end of the bulk job failed");
    }
}

fn run_export(service: &BulkService, handle: &Handle, job: &Job) -> Result<(Vec<BulkFile>, i64)> {
    let request = &job.request;
    let checkpoint = match &job.checkpoint {
        Some(text) => Some(
            serde_json::from_str::<Checkpoint>(text)
                .map_err(|e| Error::Export(format!("the job's checkpoint is unreadable: {e}")))?,
        ),
        None => None,
    };
    let principal = principal_of(request);
    let access = |resource_type: &str| visibility_for(&principal, resource_type);
    let context = ExportContext {
        repository: &service.repository,
        files: &service.files,
        jobs: &service.jobs,
        handle: handle.clone(),
        settings: &service.settings.export,
        access: &access,
        stopping: &service.stopping,
    };
    let mut report = |checkpoint: &Checkpoint, files: Vec<BulkFile>| -> Result<()> {
        let text = serde_json::to_string(checkpoint)
            .map_err(|e| Error::Export(format!("cannot write a checkpoint: {e}")))?;
        let event = BulkJobProgressed {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: now_micros(),
            job_id: request.job_id.clone(),
            checkpoint: text,
            resources_written: checkpoint.resources_written,
            files,
        };
        handle.block_on(service.append(&request.job_id, &event))?;
        Ok(())
    };
    let result = export::run(
        &context,
        request,
        checkpoint,
        job.files.clone(),
        &mut report,
    )?;
    Ok((result.files, result.resources_written))
}

/// Deletes the files of cancelled jobs and of jobs whose files expired.
async fn delete_unneeded_files(service: &BulkService) -> Result<()> {
    for job_id in service.jobs.cancelled_with_files()? {
        delete_files(service, &job_id, BulkFilesDeletedReason::Cancelled).await?;
    }
    let lifetime = i64::try_from(service.settings.file_lifetime.as_micros()).unwrap_or(i64::MAX);
    for job_id in service.jobs.expired(now_micros(), lifetime)? {
        delete_files(service, &job_id, BulkFilesDeletedReason::Expired).await?;
    }
    Ok(())
}

/// Deletes a job's files and records it.
pub async fn delete_files(
    service: &BulkService,
    job_id: &str,
    reason: BulkFilesDeletedReason,
) -> Result<()> {
    let urls: Vec<String> = match service.jobs.get(job_id)? {
        Some(job) => job.files.into_iter().map(|file| file.url).collect(),
        None => Vec::new(),
    };
    let deleted = service.files.delete_job(job_id).await?;
    tracing::info!(job_id, deleted, ?reason, "deleted the files of a bulk job");
    let event = BulkFilesDeleted {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now_micros(),
        job_id: job_id.to_string(),
        urls,
        reason,
    };
    service.append_and_wait(job_id, &event).await?;
    Ok(())
}
