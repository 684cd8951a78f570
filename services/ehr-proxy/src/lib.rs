//! Sites backed by an upstream EHR: Hearth checks the app's SMART token and scopes,
//! forwards the request to the EHR's FHIR API, and filters, converts and rewrites what
//! comes back, so an app gets the same platform whether a site is backed by Hearth's
//! repository or by an EHR.
//!
//! Read and search responses are recorded as `EhrResponseCached` events on `hearth.ehr`;
//! [`cache::CacheProjection`] turns them into the cache that repeat reads are served from
//! within each site's per-type freshness window. Writes through the proxy append
//! `EhrCacheInvalidated` and wait until the cache has applied it.

mod bulk;
pub mod cache;
mod chains;
pub mod config;
mod confine;
mod context;
mod error;
mod filter;
mod proxy;
mod rewrite;
mod route;
pub mod stu3;
mod upstream;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use hearth_smart::keys::KeyStore;
use parking_lot::RwLock;
use std::sync::Arc;

pub use cache::{CacheOutcome, CacheProjection, EhrCache};
pub use config::{EhrConfig, Secret};
pub use error::ProxyError;
pub use filter::{filter_bundle, visible};
pub use proxy::{EhrProxy, cache_key, serve_ehr_sites};
pub use rewrite::Rewriter;
pub use upstream::Upstreams;

/// Serves the public JWKS that an upstream EHR registers for Hearth as a backend-services
/// client, at `/ehr-client/jwks`.
pub fn client_jwks_router(keys: Arc<RwLock<KeyStore>>) -> Router {
    Router::new()
        .route("/jwks", get(client_jwks))
        .with_state(keys)
}

async fn client_jwks(State(keys): State<Arc<RwLock<KeyStore>>>) -> impl IntoResponse {
    axum::Json(keys.read().client_jwks())
}
