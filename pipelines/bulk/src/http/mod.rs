//! The Bulk Data operations, as routes under a FHIR base.
//!
//! | route | operation |
//! | --- | --- |
//! | `GET`/`POST [base]/$export`, `[base]/Patient/$export`, `[base]/Group/{id}/$export` | export kick-off |
//! | `POST [base]/$import` | import kick-off (Hearth's own operation) |
//! | `GET`/`DELETE [base]/$bulk-status/{job}` | status, manifest, cancellation |
//! | `GET [base]/$bulk-file/{job}/{file}` | download with the kick-off client's token |
//! | `POST [base]/Group/{id}/$refresh` | evaluates a cohort's member filters and stores the members |
//!
//! Every route needs the `Principal` and `SiteContext` extensions that the FHIR token
//! check inserts.

mod files;
mod import;
mod kickoff;
mod refresh;
mod status;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hearth_fhir::FhirError;

use crate::service::BulkService;

/// The routes to merge into a FHIR base's router. Their paths start with a static
/// segment (`$export`, `Patient`, `Group`), which the router prefers over the generic
/// `/{resource_type}/{id}` routes.
pub fn router(service: BulkService) -> Router {
    Router::new()
        .route("/$export", get(kickoff::system).post(kickoff::system))
        .route(
            "/Patient/$export",
            get(kickoff::patient).post(kickoff::patient),
        )
        .route(
            "/Group/{id}/$export",
            get(kickoff::group).post(kickoff::group),
        )
        .route("/Group/{id}/$refresh", post(refresh::refresh))
        .route("/$import", post(import::kickoff))
        .route(
            "/$bulk-status/{job_id}",
            get(status::status).delete(status::cancel),
        )
        .route("/$bulk-file/{job_id}/{name}", get(files::download))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(outcome_for_framework_errors))
        .with_state(service)
}

/// The largest kick-off body accepted, in bytes. A `Parameters` body of an export or an
/// import names files and patients, so 2 MiB holds tens of thousands of them.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Turns the empty or plain-text errors that the HTTP framework produces itself (a method
/// a route does not have, a body over the limit) into OperationOutcomes with the same
/// status, keeping the `Allow` header of a `405`.
async fn outcome_for_framework_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json"));
    if is_json {
        return response;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => FhirError::not_supported(
            status,
            "this Bulk Data endpoint does not support the request's HTTP method; see the Allow header",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => FhirError::new(
            status,
            "too-costly",
            format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        ),
        _ => return response,
    };
    let mut mapped = error.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        mapped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    mapped
}

/// Bulk Data responses use the FHIR API's OperationOutcome errors.
fn error_response(error: FhirError) -> Response {
    error.into_response()
}

fn internal(error: impl std::fmt::Display) -> FhirError {
    FhirError::internal(error)
}

/// `429 Too Many Requests` with `Retry-After`.
fn too_many(message: String, retry_after: u64) -> Response {
    let mut response =
        FhirError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", message).into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Formats microseconds since the epoch as an HTTP date (RFC 7231 IMF-fixdate).
fn http_date(micros: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(micros.div_euclid(1_000_000))
        .ok()
        .and_then(|when| when.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
