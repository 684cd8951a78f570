//! Downloads of job files, for the client that started the job.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use hearth_fhir::{FhirError, Principal};

use super::{error_response, http_date, internal};
use crate::jobs::JobState;
use crate::service::BulkService;

pub async fn download(
    State(service): State<BulkService>,
    Extension(principal): Extension<Principal>,
    Path((job_id, name)): Path<(String, String)>,
) -> Response {
    match serve(&service, &principal, &job_id, &name).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

async fn serve(
    service: &BulkService,
    principal: &Principal,
    job_id: &str,
    name: &str,
) -> Result<Response, FhirError> {
    let not_found = || FhirError::not_found(format!("no file {name} in Bulk Data job {job_id}"));
    let job = service.jobs.get(job_id).map_err(internal)?;
    let Some(job) = job else {
        return Err(not_found());
    };
    // The manifest says requiresAccessToken: only the token of the client that started
    // the job opens its files; another client's token gets 401 as a missing one would.
    if job.request.client_id != principal.client_id {
        let mut response = FhirError::new(
            StatusCode::UNAUTHORIZED,
            "login",
            "the access token does not belong to the client that started this job",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hearth\", error=\"invalid_token\""),
        );
        return Ok(response);
    }
    if matches!(job.state, JobState::Cancelled | JobState::Rejected) || job.files_deleted {
        return Err(not_found());
    }
    if name.contains('/') || name.starts_with('.') {
        return Err(not_found());
    }
    let Some(result) = service.files.get(job_id, name).await.map_err(internal)? else {
        return Err(not_found());
    };
    let size = result.meta.size;
    let stream = result
        .into_stream()
        .map_err(|error| std::io::Error::other(error.to_string()));
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = response.headers_mut();
    let content_type = if name.ends_with(".parquet") {
        crate::request::PARQUET
    } else {
        crate::request::NDJSON
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Some(expires) = job.expires_at
        && let Ok(value) = HeaderValue::from_str(&http_date(expires))
    {
        headers.insert(header::EXPIRES, value);
    }
    Ok(response)
}
