//! Which site a request is for.
//!
//! [`route_site`] runs before routing: it turns `/sites/{site}/rest` into `/rest` and
//! records the site id in the request, so one set of routes serves every site. Requests
//! outside `/sites/` are for the `default` site. [`resolve_site`] then loads the site and
//! inserts a [`SiteContext`] with the site's absolute base URLs, or answers 404.

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_auth_store::Site;
use hearth_fhir::SiteContext;

use crate::AuthState;

/// The id of the site a request is for, set by [`route_site`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteId(pub String);

pub const DEFAULT_SITE: &str = "default";

/// Rewrites a site's path onto the shared routes and records the site id.
pub fn route_site(mut request: Request) -> Request {
    let path = request.uri().path();
    let (site, rest) = match path.strip_prefix("/sites/") {
        Some(after) => {
            let (site, rest) = after.split_once('/').unwrap_or((after, ""));
            (site.to_string(), format!("/{rest}"))
        }
        None => (DEFAULT_SITE.to_string(), String::new()),
    };
    if !rest.is_empty() {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest,
        };
        if let Ok(uri) = Uri::builder().path_and_query(path_and_query).build() {
            *request.uri_mut() = uri;
        }
    }
    request.extensions_mut().insert(SiteId(site));
    request
}

/// The absolute base URLs of a site.
pub fn fhir_base_url(public_url: &str, site_id: &str) -> String {
    if site_id == DEFAULT_SITE {
        format!("{public_url}/fhir")
    } else {
        format!("{public_url}/sites/{site_id}/fhir")
    }
}

pub fn auth_base_url(public_url: &str, site_id: &str) -> String {
    if site_id == DEFAULT_SITE {
        format!("{public_url}/auth")
    } else {
        format!("{public_url}/sites/{site_id}/auth")
    }
}

/// The path of a site's FHIR base on this server.
pub fn fhir_base_path(site_id: &str) -> String {
    if site_id == DEFAULT_SITE {
        "/fhir".to_string()
    } else {
        format!("/sites/{site_id}/fhir")
    }
}

/// Middleware: loads the request's site and inserts its [`SiteContext`] and [`Site`].
pub async fn resolve_site(
    State(state): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    let site_id = request
        .extensions()
        .get::<SiteId>()
        .map(|s| s.0.clone())
        .unwrap_or_else(|| DEFAULT_SITE.to_string());
    let site = match state.store.site(&site_id) {
        Ok(Some(site)) => site,
        Ok(None) => return unknown_site(&site_id),
        Err(error) => {
            tracing::error!(%error, site = %site_id, "loading a site failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let context = SiteContext {
        site_id: site.site_id.clone(),
        fhir_base_url: fhir_base_url(&state.settings.public_url, &site.site_id),
        auth_base_url: auth_base_url(&state.settings.public_url, &site.site_id),
    };
    hearth_fhir::audit::CallRecord::update(&request, |info| {
        info.site_id = Some(site.site_id.clone())
    });
    request.extensions_mut().insert(context);
    request.extensions_mut().insert::<Site>(site);
    next.run(request).await
}

fn unknown_site(site_id: &str) -> Response {
    let outcome = hearth_fhir::operation_outcome(
        "error",
        "not-found",
        &format!("site '{site_id}' does not exist"),
        &[],
    );
    let mut response = (StatusCode::NOT_FOUND, outcome.to_string()).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(hearth_fhir::FHIR_JSON),
    );
    response
}
