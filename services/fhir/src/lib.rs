//! Hearth's FHIR R4 HTTP API over the clinical data repository.
//!
//! Handlers read from the [`Repository`] and write by appending `ResourceTransaction`
//! events to the log, then waiting until the repository projection has applied them, so a
//! write is acknowledged only once it is durable and decided.

mod access;
pub mod audit;
mod bundle_json;
mod capability;
mod confine;
mod error;
mod everything;
mod history;
mod interactions;
mod load;
mod media;
mod operations;
mod read;
pub mod rules;
mod scopes;
mod search;
mod search_system;
mod transaction;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hearth_cdr::{Repository, TransactionOutcome};
use hearth_log::Log;
use hearth_projection::ProjectionHandle;

pub use access::{Principal, SiteContext};
pub use error::{FhirError, FhirResult, operation_outcome, outcome_for_framework_errors};
pub use media::{FHIR_JSON, check_format, require_json_body};
pub use scopes::visibility;

/// Settings of the FHIR API.
#[derive(Debug, Clone)]
pub struct FhirSettings {
    /// The absolute URL clients use to reach the server, without a trailing slash, such
    /// as `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Largest request body of a single resource or a transaction, in bytes.
    pub max_body_bytes: usize,
    /// Largest body of a `$load` request, in bytes. One body is one event, so this stays
    /// under the log's record limit (64 MiB by default) with room for the encoding.
    pub max_load_bytes: usize,
    /// How long a write waits for the repository to apply it.
    pub write_timeout: Duration,
    /// How long a `$load` waits for the repository; loads can queue behind each other.
    pub load_timeout: Duration,
    /// Search page size when `_count` is absent, and the largest `_count` honoured.
    pub default_page_size: usize,
    pub max_page_size: usize,
}

impl FhirSettings {
    pub fn new(public_url: &str) -> Self {
        FhirSettings {
            public_url: public_url.trim_end_matches('/').to_string(),
            max_body_bytes: 16 * 1024 * 1024,
            max_load_bytes: 48 * 1024 * 1024,
            write_timeout: Duration::from_secs(60),
            load_timeout: Duration::from_secs(600),
            default_page_size: 50,
            max_page_size: 1000,
        }
    }
}

/// What every handler needs.
#[derive(Clone)]
pub struct FhirState {
    pub settings: Arc<FhirSettings>,
    pub repository: Repository,
    pub log: Arc<dyn Log>,
    pub projection: ProjectionHandle<TransactionOutcome>,
}

/// The routes of a FHIR base, to be nested under `/fhir`. Each request must carry a
/// [`SiteContext`] extension naming its site.
pub fn router(state: FhirState) -> Router {
    let load_limit = state.settings.max_load_bytes;
    let body_limit = state.settings.max_body_bytes;
    let settings = state.settings.clone();
    Router::new()
        .route("/metadata", get(capability::metadata))
        .route(
            "/$load",
            post(load::load).layer(DefaultBodyLimit::max(load_limit)),
        )
        .route(
            "/",
            get(search_system::search_system).post(transaction::transaction),
        )
        .route(
            "/_search",
            get(search_system::search_system).post(search_system::search_system_post),
        )
        .route("/_history", get(history::system))
        .route(
            "/{resource_type}",
            get(search::search_type)
                .post(interactions::create)
                .put(interactions::conditional_update)
                .delete(interactions::conditional_delete),
        )
        .route("/{resource_type}/_search", post(search::search_type_post))
        .route("/{resource_type}/_history", get(history::of_type))
        .route(
            "/{resource_type}/{id}",
            get(read::read)
                .put(interactions::update)
                .patch(interactions::patch)
                .delete(interactions::delete),
        )
        .route("/{resource_type}/{id}/_history", get(history::instance))
        .route(
            "/{resource_type}/{id}/$everything",
            get(everything::everything).post(everything::everything_post),
        )
        .route(
            "/{resource_type}/{id}/{compartment_type}",
            get(search::search_compartment),
        )
        .route(
            "/{resource_type}/{id}/{compartment_type}/_search",
            post(search::search_compartment_post),
        )
        .route("/{resource_type}/{id}/_history/{version}", get(read::vread))
        .fallback(unknown_endpoint)
        .route_layer(axum::middleware::from_fn(media::negotiate))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            settings.clone(),
            reject_declared_oversize,
        ))
        .layer(axum::middleware::map_response_with_state(
            settings,
            outcome_for_framework_errors,
        ))
        .with_state(state)
}

/// Returns 413 at once when `Content-Length` already exceeds the body limit of the path,
/// instead of waiting for a body that the limit would reject anyway (or that never comes).
async fn reject_declared_oversize(
    axum::extract::State(settings): axum::extract::State<std::sync::Arc<FhirSettings>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let limit = if request.uri().path().ends_with("/$load") {
        settings.max_load_bytes
    } else {
        settings.max_body_bytes
    };
    match declared {
        Some(length) if length > limit as u64 => FhirError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            format!("the request body of {length} bytes is larger than the limit of {limit} bytes"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

async fn unknown_endpoint() -> FhirError {
    FhirError::not_found("no FHIR endpoint at this path")
}
