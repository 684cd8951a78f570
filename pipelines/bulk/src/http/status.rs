//! The status URL: progress, the manifest, errors, and cancellation by DELETE.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_fhir::{FhirError, Principal};
use hearth_schemas::{BulkFileKind, BulkFilesDeletedReason, BulkJobCancelled};
use serde_json::{Value, json};

use super::{error_response, http_date, internal};
use crate::jobs::{Job, JobOutcome, JobState};
use crate::service::{BulkService, now_micros};

/// Returns the caller's job, or 404: a job of another client is not revealed, and a job
/// that was cancelled, rejected or whose files were deleted is gone.
fn own_job(service: &BulkService, principal: &Principal, job_id: &str) -> Result<Job, FhirError> {
    let not_found = || FhirError::not_found(format!("no Bulk Data job {job_id}"));
    let job = service
        .jobs
        .get(job_id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    if job.request.client_id != principal.client_id {
        return Err(not_found());
    }
    match job.state {
        JobState::Cancelled => Err(FhirError::not_found(format!(
            "Bulk Data job {job_id} was cancelled and its files deleted"
        ))),
        JobState::Rejected => Err(not_found()),
        _ if job.files_deleted => Err(FhirError::not_found(format!(
            "the files of Bulk Data job {job_id} expired and were deleted"
        ))),
        _ => Ok(job),
    }
}

pub async fn status(
    State(service): State<BulkService>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> Response {
    let job = match own_job(&service, &principal, &job_id) {
        Ok(job) => job,
        Err(error) => return error_response(error),
    };
    match job.state {
        JobState::Running => in_progress(&service, &job),
        JobState::Completed => complete(&job),
        _ => failed(&job),
    }
}

fn in_progress(service: &BulkService, job: &Job) -> Response {
    let progress = if job.checkpoint.is_some() || job.resources_written > 0 {
        format!(
            "in progress: {} resources in {} files so far",
            job.resources_written,
            job.files.len()
        )
    } else {
        "queued".to_string()
    };
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&progress) {
        headers.insert("x-progress", value);
    }
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(service.settings.retry_after_seconds),
    );
    response
}

/// The complete manifest. Output files of an export organized by patient hold several
/// types, so their entries have no `type` and the manifest names the organizing type in
/// `outputOrganizedBy` instead.
pub fn manifest(job: &Job) -> Value {
    let organized_by = job.request.organize_output_by.as_deref();
    let section = |kind: BulkFileKind| -> Vec<Value> {
        job.files
            .iter()
            .filter(|file| file.kind == kind)
            .map(|file| {
                if kind == BulkFileKind::Output && organized_by.is_some() {
                    json!({"url": file.url, "count": file.count})
                } else {
                    json!({"type": file.resource_type, "url": file.url, "count": file.count})
                }
            })
            .collect()
    };
    let mut manifest = json!({
        "transactionTime": hearth_cdr::format_instant(job.request.transaction_time),
        "request": job.request.request_url,
        "requiresAccessToken": job.request.requires_access_token,
        "output": section(BulkFileKind::Output),
        "error": section(BulkFileKind::Error),
    });
    if let Some(organized_by) = organized_by {
        manifest["outputOrganizedBy"] = json!(organized_by);
    }
    let deleted = section(BulkFileKind::Deleted);
    if !deleted.is_empty() {
        manifest["deleted"] = Value::Array(deleted);
    }
    manifest
}

fn complete(job: &Job) -> Response {
    let mut response = (StatusCode::OK, manifest(job).to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(expires) = job.expires_at
        && let Ok(value) = HeaderValue::from_str(&http_date(expires))
    {
        headers.insert(header::EXPIRES, value);
    }
    response
}

fn failed(job: &Job) -> Response {
    let body = job.operation_outcome.clone().unwrap_or_else(|| {
        let message = job.error.as_deref().unwrap_or("the job failed");
        hearth_fhir::operation_outcome("error", "exception", message, &[]).to_string()
    });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hearth_fhir::FHIR_JSON),
    );
    response
}

/// DELETE: cancels a running job, or deletes a finished job's files. Either way the job's
/// files are gone and its status URL answers 404 from then on.
pub async fn cancel(
    State(service): State<BulkService>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> Response {
    match cancel_job(&service, &principal, &job_id).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

async fn cancel_job(
    service: &BulkService,
    principal: &Principal,
    job_id: &str,
) -> Result<Response, FhirError> {
    own_job(service, principal, job_id)?;
    let event = BulkJobCancelled {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now_micros(),
        job_id: job_id.to_string(),
        actor: principal.client_id.clone(),
        reason: Some("DELETE on the status URL".to_string()),
    };
    let outcome = service
        .append_and_wait(job_id, &event)
        .await
        .map_err(internal)?;
    let previous = match outcome {
        JobOutcome::Cancelled { previous } => previous,
        _ => return Err(FhirError::not_found(format!("no Bulk Data job {job_id}"))),
    };
    service.wake.notify_one();
    let reason = if previous == JobState::Running {
        BulkFilesDeletedReason::Cancelled
    } else {
        BulkFilesDeletedReason::ClientRequest
    };
    crate::worker::delete_files(service, job_id, reason)
        .await
        .map_err(internal)?;
    tracing::info!(job_id, ?previous, "bulk job deleted by its client");
    let message = if previous == JobState::Running {
        "the job was cancelled and its files deleted"
    } else {
        "the job's files were deleted"
    };
    let outcome = hearth_fhir::operation_outcome("information", "informational", message, &[]);
    let mut response = (StatusCode::ACCEPTED, outcome.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hearth_fhir::FHIR_JSON),
    );
    Ok(response)
}
