//! The request path of an EHR-backed site: scope check, cache lookup, upstream call,
//! conversion, filtering and URL rewriting, cache recording and invalidation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hearth_auth_store::Site;
use hearth_fhir::audit::CallRecord;
use hearth_fhir::{FhirError, Principal, SiteContext};
use hearth_fhir_core::elements::{self, Subset};
use hearth_log::{Log, topics};
use hearth_projection::ProjectionHandle;
use hearth_schemas::{Backing, EhrCacheInvalidated, EhrResponseCached};
use hearth_smart::scope::{Access, Context, Interaction};
use serde_json::{Value, json};

use crate::bulk::{BulkPath, JobSeals, JobUrls};
use crate::cache::{CacheOutcome, CachedResponse, EhrCache};
use crate::chains;
use crate::error::ProxyError;
use crate::filter;
use crate::rewrite::Rewriter;
use crate::route::{Kind, Route};
use crate::stu3::{self, Direction};
use crate::upstream::{
    UpstreamRequest, UpstreamResponse, Upstreams, forwarded_headers, upstream_fingerprint,
};

/// Largest request body forwarded to an upstream, in bytes.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// How long a write waits for the cache to apply its invalidation.
const INVALIDATION_WAIT: Duration = Duration::from_secs(10);

/// Everything the proxy needs, shared by all requests.
#[derive(Clone)]
pub struct EhrProxy {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Upstreams,
    cache: EhrCache,
    seals: JobSeals,
    log: Arc<dyn Log>,
    projection: ProjectionHandle<CacheOutcome>,
}

impl EhrProxy {
    /// `job_key` seals the Bulk Data job URLs handed out at EHR-backed sites (see
    /// [`crate::bulk`]). Running exports stay reachable only while it stays the same.
    pub fn new(
        upstreams: Upstreams,
        cache: EhrCache,
        job_key: hearth_analytics::pseudonym::Pseudonyms,
        log: Arc<dyn Log>,
        projection: ProjectionHandle<CacheOutcome>,
    ) -> Self {
        EhrProxy {
            inner: Arc::new(Inner {
                upstreams,
                cache,
                seals: JobSeals::new(job_key),
                log,
                projection,
            }),
        }
    }
}

impl EhrProxy {
    pub(crate) fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }
}

/// Route layer on the FHIR routes, inside the token check: serves requests of EHR-backed
/// sites from the upstream and passes every other request on.
pub async fn serve_ehr_sites(
    State(proxy): State<EhrProxy>,
    request: Request,
    next: Next,
) -> Response {
    let Some(site) = request.extensions().get::<Site>().cloned() else {
        return next.run(request).await;
    };
    if site.backing != Backing::Ehr {
        CallRecord::update(&request, |info| {
            info.backing = Some("repository".to_string())
        });
        return next.run(request).await;
    }
    let path = local_path(request.uri().path());
    if path.ends_with("/.well-known/smart-configuration") {
        return next.run(request).await;
    }
    CallRecord::update(&request, |info| info.backing = Some("ehr".to_string()));
    let record = request.extensions().get::<CallRecord>().cloned();
    let outcome = proxy.handle(&site, request, &path).await;
    if let Some(record) = record {
        let mut info = record.0.lock();
        info.cache = Some(outcome.cache.to_string());
        info.upstream_status = outcome.upstream_status;
        info.upstream_latency_us = outcome.upstream_latency_us;
    }
    let mut response = outcome.response;
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(outcome.cache));
    response
}

/// Returns the path below the FHIR base: `/fhir/Patient/1` and `/Patient/1` give `/Patient/1`.
fn local_path(path: &str) -> String {
    let local = path.strip_prefix("/fhir").unwrap_or(path);
    if local.is_empty() {
        "/".to_string()
    } else {
        local.to_string()
    }
}

/// A response and what the call record reports about it.
struct Outcome {
    response: Response,
    cache: &'static str,
    upstream_status: Option<i32>,
    upstream_latency_us: Option<i64>,
}

impl Outcome {
    fn error(error: FhirError, cache: &'static str) -> Self {
        Outcome {
            response: error.into_response(),
            cache,
            upstream_status: None,
            upstream_latency_us: None,
        }
    }
}

/// The parts of the incoming request the proxy uses.
struct Incoming {
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    principal: Option<Principal>,
    /// `_summary` or `_elements` taken off the upstream search, to apply after filtering.
    subset: Option<LocalSubset>,
    context: SiteContext,
    request_id: Option<String>,
}

impl EhrProxy {
    async fn handle(&self, site: &Site, request: Request, path: &str) -> Outcome {
        let Some(context) = request.extensions().get::<SiteContext>().cloned() else {
            return Outcome::error(
                FhirError::internal("no site context on a FHIR request"),
                "BYPASS",
            );
        };
        if let Err(error) = check_path(path) {
            return Outcome::error(error, "BYPASS");
        }
        let (parts, body) = request.into_parts();
        match BulkPath::classify(path) {
            Some(BulkPath::Status(sealed)) => {
                return self
                    .job_request(site, &context, &parts, &sealed, true)
                    .await;
            }
            Some(BulkPath::File(sealed)) => {
                return self
                    .job_request(site, &context, &parts, &sealed, false)
                    .await;
            }
            _ => {}
        }
        let mut body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
            Ok(body) => body,
            Err(_) => {
                let error = FhirError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-costly",
                    format!("the request body is larger than {MAX_REQUEST_BYTES} bytes"),
                );
                return Outcome::error(error, "BYPASS");
            }
        };
        // HEAD is GET without the body, which hyper leaves off the response, so it gets
        // the same checks and filtering. FHIR defines no other methods.
        let mut method = match parts.method {
            Method::HEAD => Method::GET,
            Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE => {
                parts.method.clone()
            }
            _ => {
                let error = FhirError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "not-supported",
                    format!(
                        "the method {} is not part of the FHIR REST API",
                        parts.method
                    ),
                );
                return Outcome::error(error, "BYPASS");
            }
        };
        let mut route = Route::classify(&method, path);
        let mut path = path.to_string();
        let mut query = parts.uri.query().map(str::to_string);
        let mut headers = parts.headers.clone();
        // A search posted as a form is the same search as a GET with the form's
        // parameters, so it goes upstream as that GET and gets the same confinement,
        // scope checks and cache.
        if route.kind == Kind::SearchPost {
            let is_form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !is_form {
                let error = FhirError::not_supported(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a POST search takes an application/x-www-form-urlencoded body",
                );
                return Outcome::error(error, "BYPASS");
            }
            let form = match std::str::from_utf8(&body) {
                Ok(form) => form.trim().to_string(),
                Err(_) => {
                    return Outcome::error(
                        FhirError::bad_request("the search form is not UTF-8"),
                        "BYPASS",
                    );
                }
            };
            query = match (query.filter(|q| !q.is_empty()), form.is_empty()) {
                (Some(query), false) => Some(format!("{query}&{form}")),
                (Some(query), true) => Some(query),
                (None, false) => Some(form),
                (None, true) => None,
            };
            let searched = path.trim_end_matches("/_search");
            path = if searched.is_empty() {
                "/".to_string()
            } else {
                searched.to_string()
            };
            method = Method::GET;
            route = Route::classify(&method, &path);
            body = Bytes::new();
            headers.remove(header::CONTENT_TYPE);
        }
        let path = path.as_str();
        let principal = parts.extensions.get::<Principal>().cloned();
        let query = confine_query(query.as_deref(), &route, principal.as_ref());
        let (query, subset) = match &principal {
            Some(principal) if route.kind == Kind::Search => take_subset(query, &route, principal),
            _ => (query, None),
        };
        if route.kind == Kind::Create
            && let Some(principal) = &principal
            && let Err(error) = confine_if_none_exist(&mut headers, &route, principal)
        {
            return Outcome::error(error, "BYPASS");
        }
        let incoming = Incoming {
            method,
            query,
            headers,
            principal,
            subset,
            context,
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let stu3 = is_stu3(site);

        let bulk = BulkPath::classify(path);
        let export = bulk == Some(BulkPath::KickOff);
        let kick_off = export || bulk == Some(BulkPath::Import);
        let allowed = if export {
            check_export(&incoming)
        } else {
            check_scopes(&incoming, &route)
        };
        if let Err(error) = allowed {
            return Outcome::error(error, "BYPASS");
        }
        if let Err(error) = hearth_fhir::check_format(incoming.query.as_deref(), &incoming.headers)
        {
            return Outcome::error(error, "BYPASS");
        }
        if let Err(error) = check_compartment(&incoming, &route) {
            return Outcome::error(error, "BYPASS");
        }
        if let Err(error) = check_count(&incoming, &route) {
            return Outcome::error(error, "BYPASS");
        }
        if let Some(response) = search_through_hidden_type(&incoming, &route, path) {
            return Outcome {
                response,
                cache: "BYPASS",
                upstream_status: None,
                upstream_latency_us: None,
            };
        }
        let body = match prepare_body(&incoming, &route, body, stu3) {
            Ok(body) => body,
            Err(error) => return Outcome::error(error, "BYPASS"),
        };
        let checked_version = match &incoming.principal {
            Some(principal) => {
                match self
                    .check_write_target(site, principal, &route, body.as_ref())
                    .await
                {
                    Ok(version) => version,
                    Err(error) => return Outcome::error(error, "BYPASS"),
                }
            }
            None => None,
        };

        let freshness = freshness_seconds(site, &route);
        // Entries recorded under other upstream settings stay in the store until they
        // expire but never match, so a changed upstream is asked at once.
        let mut cache_key = format!(
            "{} {}",
            upstream_fingerprint(site),
            cache_key(&incoming.method, path, incoming.query.as_deref())
        );
        // `Prefer` changes the response (strict handling of unknown search parameters,
        // for one), so responses to different preferences are cached apart.
        if let Some(prefer) = incoming
            .headers
            .get("prefer")
            .and_then(|value| value.to_str().ok())
        {
            cache_key.push_str(" prefer=");
            cache_key.push_str(&prefer.trim().to_ascii_lowercase());
        }
        let no_cache = has_directive(&incoming.headers, "no-cache");
        let no_store = has_directive(&incoming.headers, "no-store");
        let use_cache = route.is_cacheable() && freshness > 0;
        let mut cache_status = if use_cache && !no_cache {
            "MISS"
        } else {
            "BYPASS"
        };

        if use_cache && !no_cache {
            match self
                .inner
                .cache
                .lookup(&site.site_id, &cache_key, now_micros())
            {
                Ok(Some(entry)) => {
                    let response = respond_cached(site, &incoming, &route, entry);
                    return Outcome {
                        response,
                        cache: "HIT",
                        upstream_status: None,
                        upstream_latency_us: None,
                    };
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(site = %site.site_id, %error, "reading the EHR cache failed; asking the EHR");
                    cache_status = "BYPASS";
                }
            }
        }

        let upstream_url = upstream_url(site, &route, path, incoming.query.as_deref(), stu3);
        let mut headers = forwarded_headers(&incoming.headers);
        // A 304 carries no body to filter, so it would tell a restricted caller that a
        // resource it may not see exists, and at which version. Such callers always get
        // the whole response, filtered.
        let whole = incoming
            .principal
            .as_ref()
            .is_some_and(|principal| passes_scopes_whole(principal, &route));
        if !whole {
            headers.remove(reqwest::header::IF_NONE_MATCH);
            headers.remove(reqwest::header::IF_MODIFIED_SINCE);
        }
        // The write applies only while the target is still the version that was checked.
        if let Some(version) = checked_version
            && !headers.contains_key(reqwest::header::IF_MATCH)
            && let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("W/\"{version}\""))
        {
            headers.insert(reqwest::header::IF_MATCH, value);
        }
        let upstream_request = UpstreamRequest {
            method: incoming.method.clone(),
            url: upstream_url.clone(),
            headers,
            body,
        };
        let upstream = match self.inner.upstreams.send(site, upstream_request).await {
            Ok(upstream) => upstream,
            Err(error) => {
                tracing::warn!(site = %site.site_id, %error, "the upstream EHR request failed");
                return Outcome {
                    response: error.to_response(),
                    cache: cache_status,
                    upstream_status: None,
                    upstream_latency_us: None,
                };
            }
        };
        let upstream_status = Some(i32::from(upstream.status.as_u16()));
        let upstream_latency_us =
            Some(i64::try_from(upstream.latency.as_micros()).unwrap_or(i64::MAX));

        if upstream.status.is_server_error() {
            let error = if upstream.status == StatusCode::GATEWAY_TIMEOUT {
                ProxyError::Timeout(self.inner.upstreams.config().timeout())
            } else {
                ProxyError::BadStatus(upstream.status.as_u16())
            };
            tracing::warn!(site = %site.site_id, status = upstream.status.as_u16(), "the upstream EHR failed");
            return Outcome {
                response: error.to_fhir().into_response(),
                cache: cache_status,
                upstream_status,
                upstream_latency_us,
            };
        }

        if use_cache && !no_store && upstream.status == StatusCode::OK {
            self.record(
                site,
                &route,
                &cache_key,
                &upstream_url,
                &upstream,
                freshness,
                &incoming,
            );
        }
        let changes_data = !matches!(incoming.method, Method::GET | Method::HEAD)
            && route.kind != Kind::SearchPost;
        if changes_data
            && upstream.status.is_success()
            && let Err(error) = self.invalidate(site, &route).await
        {
            tracing::error!(site = %site.site_id, %error, "invalidating the EHR cache failed");
            return Outcome {
                response: error.to_fhir().into_response(),
                cache: cache_status,
                upstream_status,
                upstream_latency_us,
            };
        }

        let entry = CachedResponse {
            status: upstream.status.as_u16(),
            content_type: header_string(&upstream.headers, header::CONTENT_TYPE),
            etag: header_string(&upstream.headers, header::ETAG),
            last_modified: None,
            body: String::from_utf8_lossy(&upstream.body).into_owned(),
            fetched_at: now_micros(),
        };
        let mut response = respond_cached(site, &incoming, &route, entry);
        copy_upstream_headers(site, &incoming, &upstream.headers, response.headers_mut());
        if kick_off
            && upstream.status == StatusCode::ACCEPTED
            && let Some(principal) = &incoming.principal
        {
            response = self.accepted(site, &incoming, principal, &upstream);
        }
        Outcome {
            response,
            cache: cache_status,
            upstream_status,
            upstream_latency_us,
        }
    }

    /// Builds the response to an accepted export or import: 202 with the sealed status
    /// URL in `Content-Location` and in an OperationOutcome of Hearth's own, since the
    /// EHR's text names its own URL.
    fn accepted(
        &self,
        site: &Site,
        incoming: &Incoming,
        principal: &Principal,
        upstream: &UpstreamResponse,
    ) -> Response {
        let urls = self.job_urls(site, &incoming.context, principal);
        let Some(status) = header_string(&upstream.headers, header::CONTENT_LOCATION)
            .and_then(|location| urls.status(&location))
        else {
            tracing::warn!(site = %site.site_id, "the EHR accepted a job without a status URL under its base");
            return ProxyError::InvalidBody("the accepted job has no status URL".to_string())
                .to_fhir()
                .into_response();
        };
        let outcome = hearth_fhir::operation_outcome(
            "information",
            "informational",
            &format!("the job is accepted; poll {status} for its status"),
            &[],
        );
        let mut response = fhir_response(StatusCode::ACCEPTED, outcome.to_string(), None);
        if let Ok(value) = HeaderValue::from_str(&status) {
            response
                .headers_mut()
                .insert(header::CONTENT_LOCATION, value);
        }
        response
    }

    fn job_urls<'a>(
        &'a self,
        site: &'a Site,
        context: &'a SiteContext,
        principal: &'a Principal,
    ) -> JobUrls<'a> {
        JobUrls {
            seals: &self.inner.seals,
            site_id: &site.site_id,
            client_id: &principal.client_id,
            upstream_base: site.upstream_base_url.as_deref().unwrap_or_default(),
            site_base: &context.fhir_base_url,
        }
    }

    /// Forwards a request for an export's status (GET polls, DELETE cancels) or for one
    /// of its files, when the sealed URL belongs to the caller.
    async fn job_request(
        &self,
        site: &Site,
        context: &SiteContext,
        parts: &axum::http::request::Parts,
        sealed: &str,
        is_status: bool,
    ) -> Outcome {
        let Some(principal) = parts.extensions.get::<Principal>() else {
            let error = missing_token();
            return Outcome::error(error, "BYPASS");
        };
        let method_allowed =
            parts.method == Method::GET || (is_status && parts.method == Method::DELETE);
        if !method_allowed {
            let error = FhirError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                format!("{} is not allowed on this export URL", parts.method),
            );
            return Outcome::error(error, "BYPASS");
        }
        let Some(location) = self
            .inner
            .seals
            .open(&site.site_id, &principal.client_id, sealed)
        else {
            let error = FhirError::not_found("this Bulk Data job is not known");
            return Outcome::error(error, "BYPASS");
        };
        let base = site
            .upstream_base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/');
        let request = UpstreamRequest {
            method: parts.method.clone(),
            url: format!("{base}{location}"),
            headers: forwarded_headers(&parts.headers),
            body: None,
        };
        let upstream = match self.inner.upstreams.send(site, request).await {
            Ok(upstream) => upstream,
            Err(error) => {
                tracing::warn!(site = %site.site_id, %error, "the upstream export request failed");
                return Outcome {
                    response: error.to_response(),
                    cache: "BYPASS",
                    upstream_status: None,
                    upstream_latency_us: None,
                };
            }
        };
        let response = job_response(
            &upstream,
            &self.job_urls(site, context, principal),
            is_status,
        );
        Outcome {
            response,
            cache: "BYPASS",
            upstream_status: Some(i32::from(upstream.status.as_u16())),
            upstream_latency_us: Some(
                i64::try_from(upstream.latency.as_micros()).unwrap_or(i64::MAX),
            ),
        }
    }

    /// Appends the upstream response to `hearth.ehr` in the background: the response
    /// to a miss does not wait for the log, and a lost append only costs a later miss.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        site: &Site,
        route: &Route,
        cache_key: &str,
        upstream_url: &str,
        upstream: &UpstreamResponse,
        freshness: i64,
        incoming: &Incoming,
    ) {
        let fetched_at = now_micros();
        let body = String::from_utf8_lossy(&upstream.body).into_owned();
        let version_id = if route.kind == Kind::Read {
            serde_json::from_str::<Value>(&body).ok().and_then(|v| {
                v.pointer("/meta/versionId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        } else {
            None
        };
        let event = EhrResponseCached {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: fetched_at,
            site_id: site.site_id.clone(),
            cache_key: cache_key.to_string(),
            method: incoming.method.to_string(),
            upstream_url: upstream_url.to_string(),
            status: i32::from(upstream.status.as_u16()),
            resource_type: route.resource_type.clone().or_else(|| {
                (route.kind == Kind::Capabilities).then(|| "CapabilityStatement".to_string())
            }),
            resource_id: route
                .id
                .clone()
                .filter(|_| matches!(route.kind, Kind::Read | Kind::Vread)),
            version_id,
            content_type: header_string(&upstream.headers, header::CONTENT_TYPE),
            etag: header_string(&upstream.headers, header::ETAG),
            last_modified: header_string(&upstream.headers, header::LAST_MODIFIED)
                .and_then(|text| parse_http_date(&text)),
            body,
            fetched_at,
            fresh_until: fetched_at.saturating_add(freshness.saturating_mul(1_000_000)),
            request_id: incoming.request_id.clone(),
        };
        let log = self.inner.log.clone();
        tokio::spawn(async move {
            let bytes = match hearth_schemas::encode(&event) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::error!(%error, "encoding an EHR cache event failed");
                    return;
                }
            };
            if let Err(error) = log
                .append(topics::EHR, event.site_id.as_bytes(), &bytes)
                .await
            {
                tracing::warn!(site = %event.site_id, %error, "recording an EHR response failed");
            }
        });
    }

    /// Appends an invalidation for what a write touched and waits until the cache has
    /// applied it, so the writer's next read goes to the upstream.
    async fn invalidate(&self, site: &Site, route: &Route) -> Result<(), ProxyError> {
        let (resource_type, resource_id) = match route.kind {
            Kind::Create | Kind::Update | Kind::Patch | Kind::Delete => {
                (route.resource_type.clone(), route.id.clone())
            }
            _ => (None, None),
        };
        let event = EhrCacheInvalidated {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: now_micros(),
            site_id: site.site_id.clone(),
            resource_type,
            resource_id,
            cache_keys: Vec::new(),
            reason: Some(format!("{:?} through the proxy", route.kind).to_lowercase()),
        };
        let bytes = hearth_schemas::encode(&event).map_err(|e| ProxyError::Cache(e.to_string()))?;
        let position = self
            .inner
            .log
            .append(topics::EHR, site.site_id.as_bytes(), &bytes)
            .await
            .map_err(|e| ProxyError::Cache(e.to_string()))?;
        self.inner
            .projection
            .wait_for(position, INVALIDATION_WAIT)
            .await
            .map_err(|e| ProxyError::Cache(e.to_string()))?;
        Ok(())
    }
}

/// Checks the caller's scopes before anything goes upstream, with the same 401 and 403
/// responses a repository site sends.
fn check_scopes(incoming: &Incoming, route: &Route) -> Result<(), FhirError> {
    if route.kind == Kind::Capabilities {
        return Ok(());
    }
    let Some(principal) = &incoming.principal else {
        return Err(missing_token());
    };
    match (&route.resource_type, route.interaction()) {
        (Some(resource_type), Some(interaction)) => {
            hearth_fhir::visibility(principal, resource_type, interaction).map(|_| ())
        }
        // A system-wide search is filtered entry by entry, but each type its `_type`
        // names must be one the token may search, as at a repository site.
        (None, Some(Interaction::Search)) => {
            for resource_type in listed_types(incoming.query.as_deref()) {
                hearth_fhir::visibility(principal, &resource_type, Interaction::Search)?;
            }
            Ok(())
        }
        _ => {
            // Batches, transactions, system-wide history and operations carry work this
            // layer cannot inspect entry by entry, so they need unrestricted access: to
            // the route's type, or to every type when the route names none.
            let interaction = if incoming.method == Method::GET {
                Interaction::Read
            } else {
                Interaction::Update
            };
            let unrestricted = match route.resource_type.as_deref() {
                Some(resource_type) => {
                    hearth_fhir::visibility(principal, resource_type, interaction)
                        .is_ok_and(|v| v.is_everything())
                }
                None => {
                    unrestricted_everywhere(principal, interaction)
                        && (interaction == Interaction::Read
                            || unrestricted_everywhere(principal, Interaction::Read))
                }
            };
            if unrestricted {
                Ok(())
            } else {
                Err(FhirError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "at an EHR-backed site, batches, transactions, conditional writes, history without a type and operations need system or user scopes without patient or query restrictions",
                ))
            }
        }
    }
}

/// Rejects a path with a segment that is not a FHIR type, id, version, operation or
/// keyword: FHIR ids and names use letters, digits, `-`, `.`, `_` and `$` only. Above all,
/// `.` and `..` (also percent-encoded) would change the upstream path when the URL is
/// normalized, and send a request the scope check never saw.
fn check_path(path: &str) -> Result<(), FhirError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '$');
    // Some servers on the way merge an empty segment (`Observation//_history`) away, so
    // it is rejected as well. A trailing slash is allowed.
    if path.trim_end_matches('/').contains("//") {
        return Err(FhirError::bad_request(
            "the path has an empty segment ('//'), which is not a FHIR type, id or operation name",
        ));
    }
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        if segment == "." || segment == ".." || !segment.chars().all(allowed) {
            let shown: String = segment.chars().take(64).collect();
            return Err(FhirError::bad_request(format!(
                "the path segment '{shown}' is not a valid FHIR type, id or operation name"
            )));
        }
    }
    Ok(())
}

/// Checks an export kick-off. Exported files cannot be filtered by scope, so the caller
/// needs read access without patient or query restrictions to every type exported: to
/// the types a GET kick-off names in `_type`, or to every type.
fn check_export(incoming: &Incoming) -> Result<(), FhirError> {
    let Some(principal) = &incoming.principal else {
        return Err(missing_token());
    };
    let query = incoming.query.as_deref().unwrap_or_default();
    let associated = url::form_urlencoded::parse(query.as_bytes())
        .any(|(name, _)| name == "includeAssociatedData");
    let types = listed_types(Some(query));
    let listed_unrestricted = incoming.method == Method::GET
        && !associated
        && !types.is_empty()
        && types.iter().all(|resource_type| {
            hearth_fhir::visibility(principal, resource_type, Interaction::Read)
                .is_ok_and(|v| v.is_everything())
        });
    if listed_unrestricted || unrestricted_everywhere(principal, Interaction::Read) {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an export at an EHR-backed site needs read scopes without patient or query restrictions for every type it exports: for the types named in _type, or for all types",
        ))
    }
}

/// Builds the app's response to an export status or file request: a manifest with the
/// site's URLs, a file as it came, or the upstream's error, with the upstream headers
/// that Bulk Data clients read.
fn job_response(upstream: &UpstreamResponse, urls: &JobUrls<'_>, is_status: bool) -> Response {
    let status = upstream.status;
    if status.is_server_error() {
        let error = if status == StatusCode::GATEWAY_TIMEOUT {
            ProxyError::Timeout(Duration::ZERO)
        } else {
            ProxyError::BadStatus(status.as_u16())
        };
        return error.to_fhir().into_response();
    }
    let mut response = if is_status && status == StatusCode::OK {
        match serde_json::from_slice::<Value>(&upstream.body) {
            Ok(mut manifest) if manifest.is_object() => {
                urls.manifest(&mut manifest);
                let mut response = (status, manifest.to_string()).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => {
                return ProxyError::InvalidBody(
                    "the export manifest is not a JSON object".to_string(),
                )
                .to_fhir()
                .into_response();
            }
        }
    } else if status.is_success() {
        let mut response = (status, upstream.body.clone()).into_response();
        if let Some(value) = upstream.headers.get(header::CONTENT_TYPE)
            && let Ok(value) = HeaderValue::from_bytes(value.as_bytes())
        {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    } else {
        let is_outcome = serde_json::from_slice::<Value>(&upstream.body)
            .is_ok_and(|body| body["resourceType"] == "OperationOutcome");
        if is_outcome {
            fhir_response(
                status,
                String::from_utf8_lossy(&upstream.body).into_owned(),
                None,
            )
        } else {
            return upstream_error(status);
        }
    };
    for name in ["x-progress", "retry-after", "expires"] {
        if let Some(value) = upstream.headers.get(name)
            && let Ok(value) = HeaderValue::from_bytes(value.as_bytes())
            && let Ok(name) = header::HeaderName::from_bytes(name.as_bytes())
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Returns whether a wildcard scope without a patient compartment or query restriction
/// allows `interaction` on every type. `hearth_fhir::visibility` cannot tell for the
/// wildcard type `*`, which has no compartment of its own, so a patient scope would
/// pass there as unrestricted.
fn unrestricted_everywhere(principal: &Principal, interaction: Interaction) -> bool {
    let contexts: &[Context] = if principal.patient.is_some() {
        &[Context::Patient, Context::User, Context::System]
    } else {
        &[Context::User, Context::System]
    };
    let patient_user = principal
        .fhir_user
        .as_deref()
        .is_some_and(|user| user.starts_with("Patient/"));
    match principal.scopes.access(contexts, "*", interaction) {
        Access::Denied => false,
        Access::Allowed { filters } => filters.iter().any(|grant| {
            grant.query.is_empty()
                && match grant.context {
                    Context::System => true,
                    Context::User => !patient_user,
                    Context::Patient => false,
                }
        }),
    }
}

/// Returns whether the upstream's `total` for a search counts only what the caller may
/// see: the caller sees every resource of the searched types, or the search went up
/// confined to the caller's patient (see [`confine_query`]) and no scope query narrows
/// it further.
fn total_is_exact(incoming: &Incoming, route: &Route) -> bool {
    let Some(principal) = &incoming.principal else {
        return false;
    };
    let Some(resource_type) = &route.resource_type else {
        let types = listed_types(incoming.query.as_deref());
        return unrestricted_everywhere(principal, Interaction::Search)
            || (!types.is_empty()
                && types.iter().all(|t| {
                    hearth_fhir::visibility(principal, t, Interaction::Search)
                        .is_ok_and(|v| v.is_everything())
                }));
    };
    let Ok(visibility) = hearth_fhir::visibility(principal, resource_type, Interaction::Search)
    else {
        return false;
    };
    visibility.is_everything()
        || (filter::compartment_param(principal, resource_type).is_some()
            && visibility.alternatives.iter().all(|a| a.filters.is_empty()))
}

/// Returns whether the caller sees every resource of the route's type, or of every type
/// when the route names none.
fn passes_scopes_whole(principal: &Principal, route: &Route) -> bool {
    match &route.resource_type {
        Some(resource_type) => hearth_fhir::visibility(principal, resource_type, Interaction::Read)
            .is_ok_and(|v| v.is_everything()),
        None => unrestricted_everywhere(principal, Interaction::Read),
    }
}

/// Rejects `_summary=count` when the upstream's count would include resources the caller
/// may not see, because a count has no entries to filter.
fn check_count(incoming: &Incoming, route: &Route) -> Result<(), FhirError> {
    if route.kind != Kind::Search || incoming.principal.is_none() {
        return Ok(());
    }
    let counts =
        url::form_urlencoded::parse(incoming.query.as_deref().unwrap_or_default().as_bytes())
            .any(|(name, value)| name == "_summary" && value == "count");
    if !counts || total_is_exact(incoming, route) {
        return Ok(());
    }
    Err(FhirError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "_summary=count at an EHR-backed site needs scopes that the search can apply at the EHR: without query restrictions, and for one patient or none",
    ))
}

/// Applies the caller's patient compartment to the `If-None-Exist` search of a
/// conditional create, so that a match outside it neither blocks the create nor reveals
/// itself. A caller restricted in another way cannot make a conditional create.
fn confine_if_none_exist(
    headers: &mut HeaderMap,
    route: &Route,
    principal: &Principal,
) -> Result<(), FhirError> {
    let Some(condition) = headers.get("if-none-exist") else {
        return Ok(());
    };
    let Some(resource_type) = &route.resource_type else {
        return Ok(());
    };
    let visibility = hearth_fhir::visibility(principal, resource_type, Interaction::Search)?;
    if visibility.is_everything() {
        return Ok(());
    }
    let confinement = filter::compartment_param(principal, resource_type)
        .filter(|_| visibility.alternatives.iter().all(|a| a.filters.is_empty()));
    let Some((name, value)) = confinement else {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a conditional create at an EHR-backed site needs scopes without query restrictions",
        ));
    };
    let condition = condition
        .to_str()
        .map_err(|_| FhirError::bad_request("If-None-Exist is not a valid header value"))?;
    let pair: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(&name, &value)
        .finish();
    let confined = if condition.trim().is_empty() {
        pair
    } else {
        format!("{}&{pair}", condition.trim())
    };
    let value = HeaderValue::from_str(&confined)
        .map_err(|_| FhirError::bad_request("If-None-Exist is not a valid header value"))?;
    headers.insert("if-none-exist", value);
    Ok(())
}

/// Collects the resource types named by the `_type` parameters of a query.
fn listed_types(query: Option<&str>) -> Vec<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "_type")
        .flat_map(|(_, value)| {
            value
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Returns an empty searchset when a chain or `_has` of the search reaches a type the
/// caller may not search, which at a repository site matches nothing (see [`chains`]).
fn search_through_hidden_type(incoming: &Incoming, route: &Route, path: &str) -> Option<Response> {
    let (Kind::Search, Some(resource_type), Some(principal), Some(query)) = (
        &route.kind,
        &route.resource_type,
        &incoming.principal,
        &incoming.query,
    ) else {
        return None;
    };
    let hidden = chains::hidden_type(principal, resource_type, query)?;
    tracing::debug!(%hidden, "a chained search reaches a type outside the token's scopes");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 0,
        "link": [{
            "relation": "self",
            "url": format!("{}{path}?{query}", incoming.context.fhir_base_url.trim_end_matches('/')),
        }],
    });
    Some(fhir_response(StatusCode::OK, bundle.to_string(), None))
}

/// Rejects with 404 a compartment search in another patient's compartment than the one
/// the caller is confined to, as a repository site does, because that patient is not
/// visible to the caller.
fn check_compartment(incoming: &Incoming, route: &Route) -> Result<(), FhirError> {
    let (Some((compartment_type, id)), Some(principal)) = (&route.compartment, &incoming.principal)
    else {
        return Ok(());
    };
    if compartment_type != "Patient" {
        return Ok(());
    }
    match filter::compartment_param(principal, "Patient") {
        Some((_, patient)) if patient != *id => {
            Err(FhirError::not_found(format!("Patient/{id} is not known")))
        }
        _ => Ok(()),
    }
}

/// Checks a create or update body against the caller's compartment and converts it for
/// an STU3 upstream.
fn prepare_body(
    incoming: &Incoming,
    route: &Route,
    body: Bytes,
    stu3: bool,
) -> Result<Option<Bytes>, FhirError> {
    if body.is_empty() {
        return Ok(None);
    }
    if !matches!(route.kind, Kind::Create | Kind::Update | Kind::Bundle) {
        return Ok(Some(body));
    }
    hearth_fhir::require_json_body(&incoming.headers)?;
    let mut resource: Value = serde_json::from_slice(&body)
        .map_err(|e| FhirError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !resource["resourceType"].is_string() {
        return Err(FhirError::bad_request(
            "the request body is not a FHIR resource: it has no resourceType",
        ));
    }
    if let (Some(principal), Some(interaction)) = (&incoming.principal, route.interaction())
        && !filter::writable(principal, &resource, interaction)
    {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the access token's scopes do not allow writing this resource",
        ));
    }
    if !stu3 {
        return Ok(Some(body));
    }
    stu3::convert(&mut resource, Direction::ToStu3);
    Ok(Some(Bytes::from(resource.to_string())))
}

/// Builds the response to the app from an upstream (or cached) response: converted to R4,
/// filtered by the caller's scopes and with URLs on the site's base.
fn respond_cached(
    site: &Site,
    incoming: &Incoming,
    route: &Route,
    entry: CachedResponse,
) -> Response {
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if entry.body.trim().is_empty() {
        if !status.is_success() && status != StatusCode::NOT_MODIFIED {
            return upstream_error(status);
        }
        // Reads and searches return a resource. A 304 is due only to a conditional read
        // that the caller sent and may see the result of (see `handle`).
        let conditional = incoming.headers.contains_key(header::IF_NONE_MATCH)
            || incoming.headers.contains_key(header::IF_MODIFIED_SINCE);
        let resource_due = matches!(
            route.kind,
            Kind::Read
                | Kind::Vread
                | Kind::Search
                | Kind::Everything
                | Kind::History
                | Kind::Capabilities
        );
        if resource_due && !(status == StatusCode::NOT_MODIFIED && conditional) {
            return ProxyError::WrongResource(format!(
                "an empty HTTP {} response",
                status.as_u16()
            ))
            .to_fhir()
            .into_response();
        }
        let mut response = status.into_response();
        if let Some(etag) = entry
            .etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return response;
    }

    if passes_unchanged(site, incoming, route, status) {
        // Checks that the body is a resource without building a tree of it.
        return match serde_json::from_str::<ResourceShape>(&entry.body) {
            Ok(shape) => match check_type(route, &shape.resource_type, shape.id.as_deref()) {
                Ok(()) => fhir_response(status, entry.body, entry.etag.as_deref()),
                Err(error) => error.to_fhir().into_response(),
            },
            Err(error) => ProxyError::InvalidBody(error.to_string())
                .to_fhir()
                .into_response(),
        };
    }

    let parsed = serde_json::from_str::<Value>(&entry.body);
    let resource_type = parsed
        .as_ref()
        .ok()
        .and_then(|value| value.get("resourceType"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut resource: Value = match (parsed, resource_type) {
        // An error passes on only as an OperationOutcome.
        (Ok(value), Some(found)) if !status.is_success() && found == "OperationOutcome" => value,
        _ if !status.is_success() => return upstream_error(status),
        (Ok(value), Some(found)) => match check_type(route, &found, value["id"].as_str()) {
            Ok(()) => value,
            Err(error) => return error.to_fhir().into_response(),
        },
        // An operation may return JSON that is not a resource, but every other
        // interaction returns a resource.
        (Ok(value), None) if route.kind == Kind::Other => value,
        (Ok(_), None) => {
            return ProxyError::InvalidBody("the JSON has no resourceType".to_string())
                .to_fhir()
                .into_response();
        }
        (Err(error), _) => {
            return ProxyError::InvalidBody(error.to_string())
                .to_fhir()
                .into_response();
        }
    };

    if is_stu3(site) {
        stu3::convert(&mut resource, Direction::ToR4);
    }
    if resource["resourceType"] == "Bundle"
        && let Err(error) = tidy_bundle(&mut resource)
    {
        return error.to_fhir().into_response();
    }
    if let Some(principal) = &incoming.principal
        && status.is_success()
    {
        if resource["resourceType"] == "Bundle" {
            let bare_entries_visible = unrestricted_everywhere(principal, Interaction::Read);
            filter::filter_bundle(principal, &mut resource, bare_entries_visible);
            let exact = match route.kind {
                Kind::Search => total_is_exact(incoming, route),
                // History goes upstream without confinement.
                Kind::History => passes_scopes_whole(principal, route),
                _ => true,
            };
            if !exact && let Some(bundle) = resource.as_object_mut() {
                bundle.remove("total");
            }
            if let Some(local) = &incoming.subset {
                local.apply(&mut resource);
            }
        } else if !filter::visible(principal, &resource, Interaction::Read) {
            let what = format!(
                "{}/{}",
                route.resource_type.as_deref().unwrap_or("resource"),
                route.id.as_deref().unwrap_or_default()
            );
            return FhirError::not_found(format!("{what} is not known")).into_response();
        }
    }

    let rewriter = Rewriter::new(
        site.upstream_base_url.as_deref().unwrap_or_default(),
        &incoming.context.fhir_base_url,
    );
    rewriter.resource(&mut resource);
    drop_foreign_links(&mut resource, &incoming.context.fhir_base_url);
    if route.kind == Kind::Search
        && let Some(searched) = &route.resource_type
    {
        drop_other_type_matches(&mut resource, searched);
    }
    if route.kind == Kind::Capabilities {
        point_security_at_hearth(&mut resource, &incoming.context);
    }

    fhir_response(status, resource.to_string(), entry.etag.as_deref())
}

/// The elements of an R4 Bundle other than `signature`, which no longer matches a Bundle
/// that the proxy filtered.
const BUNDLE_ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "identifier",
    "type",
    "timestamp",
    "total",
    "link",
    "entry",
];

/// Checks the shape of an upstream Bundle before it is filtered: `entry` and `link` must be
/// arrays, or the filter could not see their content. Members that are not Bundle
/// elements, and a `total` that is not a number, are removed.
fn tidy_bundle(bundle: &mut Value) -> Result<(), ProxyError> {
    let Some(object) = bundle.as_object_mut() else {
        return Err(ProxyError::WrongResource(
            "a Bundle that is not an object".to_string(),
        ));
    };
    for list in ["entry", "link"] {
        if object.get(list).is_some_and(|value| !value.is_array()) {
            return Err(ProxyError::WrongResource(format!(
                "a Bundle whose {list} is not an array"
            )));
        }
    }
    object.retain(|key, _| BUNDLE_ELEMENTS.contains(&key.as_str()));
    if object.get("total").is_some_and(|total| !total.is_u64()) {
        object.remove("total");
    }
    Ok(())
}

/// Builds the 401 of a request without an access token, as a repository site sends it.
fn missing_token() -> FhirError {
    FhirError::new(
        StatusCode::UNAUTHORIZED,
        "login",
        "this request needs an access token",
    )
}

/// Builds the app's response to an upstream error that came without an OperationOutcome.
fn upstream_error(status: StatusCode) -> Response {
    let code = if status == StatusCode::NOT_FOUND {
        "not-found"
    } else {
        "processing"
    };
    let message = format!("the EHR behind this site returned HTTP {}", status.as_u16());
    FhirError::new(status, code, message).into_response()
}

/// Checks that a successful response is the resource type the interaction returns: the
/// route's type for a read, a Bundle for searches, history and batches, and so on.
fn check_type(route: &Route, found: &str, found_id: Option<&str>) -> Result<(), ProxyError> {
    let route_type = route.resource_type.as_deref().unwrap_or_default();
    let fits = match route.kind {
        Kind::Read | Kind::Vread => found == route_type && found_id == route.id.as_deref(),
        Kind::Create | Kind::Update | Kind::Patch => {
            found == route_type || found == "OperationOutcome"
        }
        Kind::Search | Kind::SearchPost | Kind::Everything | Kind::History | Kind::Bundle => {
            found == "Bundle"
        }
        Kind::Capabilities => found == "CapabilityStatement",
        Kind::Delete | Kind::Other => true,
    };
    if fits {
        Ok(())
    } else {
        Err(ProxyError::WrongResource(format!(
            "the EHR returned a {found} for a {:?} request",
            route.kind
        )))
    }
}

/// Removes the links and entry URLs of a Bundle that do not lead to the site, such as an
/// upstream link outside the EHR's base that the rewriting left as it was. Paging then
/// never leaves Hearth.
fn drop_foreign_links(resource: &mut Value, site_base: &str) {
    if resource["resourceType"] != "Bundle" {
        return;
    }
    if let Some(links) = resource.get_mut("link").and_then(Value::as_array_mut) {
        links.retain(|link| {
            link["url"]
                .as_str()
                .is_some_and(|url| url.contains(':') && !is_foreign(url, site_base))
        });
    }
    // Entry URLs of batch and transaction responses and of history: a foreign `fullUrl`
    // or `response.location` is removed rather than shown to the app.
    if let Some(entries) = resource.get_mut("entry").and_then(Value::as_array_mut) {
        for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
            if entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .is_some_and(|url| is_foreign(url, site_base))
            {
                entry.remove("fullUrl");
            }
            if let Some(response) = entry.get_mut("response").and_then(Value::as_object_mut)
                && response
                    .get("location")
                    .and_then(Value::as_str)
                    .is_some_and(|url| is_foreign(url, site_base))
            {
                response.remove("location");
            }
        }
    }
}

/// Removes the matches of a type search that are not of the searched type; includes and
/// outcomes stay.
fn drop_other_type_matches(bundle: &mut Value, searched: &str) {
    if let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) {
        entries.retain(|entry| {
            entry.pointer("/search/mode").and_then(Value::as_str) != Some("match")
                || entry
                    .pointer("/resource/resourceType")
                    .and_then(Value::as_str)
                    == Some(searched)
        });
    }
}

/// Returns whether `url` is absolute and leads elsewhere than the site: another host, an
/// EHR URL that was not rewritten, or a scheme such as `javascript:`. Relative URLs and
/// `urn:` identifiers are not foreign.
fn is_foreign(url: &str, site_base: &str) -> bool {
    let site_base = site_base.trim_end_matches('/');
    let has_scheme = url.find(':').is_some_and(|end| {
        end > 0
            && url[..end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if !has_scheme || url.starts_with("urn:") {
        return false;
    }
    let under_site = url == site_base
        || url.starts_with(&format!("{site_base}/"))
        || url.starts_with(&format!("{site_base}?"));
    !under_site || url.contains("/../") || url.contains("/./")
}

/// A JSON object with a string `resourceType`; other members are skipped unread.
#[derive(serde::Deserialize)]
struct ResourceShape {
    #[serde(rename = "resourceType")]
    resource_type: String,
    id: Option<String>,
}

/// Returns whether a response can go to the app as the upstream sent it: a successful
/// read from an R4 upstream, by a caller who may read every resource of the type. Such a
/// body has no URLs to rewrite, because only Bundles and CapabilityStatements carry them.
fn passes_unchanged(site: &Site, incoming: &Incoming, route: &Route, status: StatusCode) -> bool {
    let unrestricted = match (&incoming.principal, &route.resource_type) {
        (Some(principal), Some(resource_type)) => {
            hearth_fhir::visibility(principal, resource_type, Interaction::Read)
                .is_ok_and(|visibility| visibility.is_everything())
        }
        _ => false,
    };
    unrestricted
        && status.is_success()
        && matches!(route.kind, Kind::Read | Kind::Vread)
        && !is_stu3(site)
}

fn fhir_response(status: StatusCode, body: String, etag: Option<&str>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hearth_fhir::FHIR_JSON),
    );
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// Copies headers of an upstream response that an app needs, with URLs rewritten.
fn copy_upstream_headers(
    site: &Site,
    incoming: &Incoming,
    from: &reqwest::header::HeaderMap,
    to: &mut HeaderMap,
) {
    let rewriter = Rewriter::new(
        site.upstream_base_url.as_deref().unwrap_or_default(),
        &incoming.context.fhir_base_url,
    );
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = from.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        // Only URLs that lead to the site pass; any other is left out.
        let rewritten = rewriter.url(value);
        if is_foreign(&rewritten, &incoming.context.fhir_base_url) {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&rewritten) {
            to.insert(name, value);
        }
    }
    if let Some(value) = from.get(header::LAST_MODIFIED) {
        to.insert(header::LAST_MODIFIED, value.clone());
    }
}

/// Makes the CapabilityStatement name Hearth's authorization endpoints, since apps get
/// their tokens from Hearth, not from the EHR.
fn point_security_at_hearth(statement: &mut Value, context: &SiteContext) {
    let security = json!({
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{}/authorize", context.auth_base_url)},
                {"url": "token", "valueUri": format!("{}/token", context.auth_base_url)},
            ],
        }],
    });
    if let Some(rests) = statement.get_mut("rest").and_then(Value::as_array_mut) {
        for rest in rests {
            rest["security"] = security.clone();
        }
    }
}

/// A `_summary` or `_elements` of a search that Hearth applies itself, after filtering,
/// because the filter needs the elements (such as `subject`) that the subset may drop.
struct LocalSubset {
    subset: Subset,
    /// `_elements` applies to matches only, `_summary` to every entry.
    matches_only: bool,
    /// The query pairs as the app sent them, put back into the Bundle's links.
    pairs: Vec<String>,
}

impl LocalSubset {
    fn apply(&self, bundle: &mut Value) {
        if let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) {
            for entry in entries {
                let is_match =
                    entry.pointer("/search/mode").and_then(Value::as_str) == Some("match");
                if self.matches_only && !is_match {
                    continue;
                }
                if let Some(resource) = entry.get_mut("resource") {
                    *resource = elements::subset(resource, &self.subset);
                }
            }
        }
        if let Some(links) = bundle.get_mut("link").and_then(Value::as_array_mut) {
            for link in links {
                if let Some(url) = link["url"].as_str() {
                    let separator = if url.contains('?') { '&' } else { '?' };
                    link["url"] =
                        Value::String(format!("{url}{separator}{}", self.pairs.join("&")));
                }
            }
        }
    }
}

/// Takes `_summary` (other than `count` and `false`) and `_elements` off the search of a
/// caller who may see only part of the searched types, so that the upstream returns whole
/// resources for the filter.
fn take_subset(
    query: Option<String>,
    route: &Route,
    principal: &Principal,
) -> (Option<String>, Option<LocalSubset>) {
    let restricted = match &route.resource_type {
        Some(resource_type) => {
            !hearth_fhir::visibility(principal, resource_type, Interaction::Search)
                .is_ok_and(|v| v.is_everything())
        }
        None => !unrestricted_everywhere(principal, Interaction::Search),
    };
    let Some(text) = query.as_deref().filter(|_| restricted) else {
        return (query, None);
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let mut summary = None;
    let mut names: Vec<String> = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
        match decoded {
            Some((name, value)) if name == "_elements" => {
                names.extend(
                    value
                        .split(',')
                        .map(|n| n.trim().to_string())
                        .filter(|n| !n.is_empty()),
                );
                taken.push(pair.to_string());
            }
            Some((name, value))
                if name == "_summary" && matches!(value.as_ref(), "true" | "text" | "data") =>
            {
                summary = Some(match value.as_ref() {
                    "true" => Subset::Summary,
                    "text" => Subset::Text,
                    _ => Subset::Data,
                });
                taken.push(pair.to_string());
            }
            _ => kept.push(pair),
        }
    }
    let local = match summary {
        Some(subset) => Some(LocalSubset {
            subset,
            matches_only: false,
            pairs: taken,
        }),
        None if !names.is_empty() => Some(LocalSubset {
            subset: Subset::Elements(names),
            matches_only: true,
            pairs: taken,
        }),
        None => None,
    };
    match local {
        Some(local) => (Some(kept.join("&")), Some(local)),
        None => (query, None),
    }
}

/// Adds the caller's patient compartment to a search query (see
/// [`filter::compartment_param`]) unless the query already names that exact restriction,
/// as the rewritten paging links of an earlier page do. Pairs are compared decoded,
/// because an upstream may percent-encode the `/` of `Patient/1` in its links.
fn confine_query(
    query: Option<&str>,
    route: &Route,
    principal: Option<&Principal>,
) -> Option<String> {
    let confinement = match (&route.kind, &route.resource_type, principal) {
        (Kind::Search, Some(resource_type), Some(principal)) => {
            filter::compartment_param(principal, resource_type)
        }
        _ => None,
    };
    let Some((name, value)) = confinement else {
        return query.map(str::to_string);
    };
    let pair = format!("{name}={value}");
    let confined = |query: &str| {
        url::form_urlencoded::parse(query.as_bytes()).any(|(n, v)| n == name && v == value)
    };
    match query {
        Some(query) if confined(query) => Some(query.to_string()),
        Some(query) if !query.is_empty() => Some(format!("{query}&{pair}")),
        _ => Some(pair),
    }
}

fn upstream_url(site: &Site, route: &Route, path: &str, query: Option<&str>, stu3: bool) -> String {
    let base = site
        .upstream_base_url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    let query = match (query, stu3, &route.resource_type) {
        (Some(query), true, Some(resource_type)) => {
            let mut pairs: Vec<(String, String)> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, value)) => (name.to_string(), value.to_string()),
                    None => (pair.to_string(), String::new()),
                })
                .collect();
            stu3::search_params_to_stu3(resource_type, &mut pairs);
            let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
            Some(joined.join("&"))
        }
        (query, _, _) => query.map(str::to_string),
    };
    let path = if path == "/" { "" } else { path };
    match query {
        Some(query) if !query.is_empty() => format!("{base}{path}?{query}"),
        _ => format!("{base}{path}"),
    }
}

/// The cache key of a request: method, path and the query parameters in sorted order, so
/// the same search written in another order shares an entry.
pub fn cache_key(method: &Method, path: &str, query: Option<&str>) -> String {
    let mut pairs: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    pairs.sort_unstable();
    format!("{method} {path}?{}", pairs.join("&"))
}

/// Seconds a response of the route's type stays fresh at the site.
fn freshness_seconds(site: &Site, route: &Route) -> i64 {
    let resource_type = match route.kind {
        Kind::Capabilities => "CapabilityStatement",
        _ => match &route.resource_type {
            Some(resource_type) => resource_type.as_str(),
            None => return 0,
        },
    };
    site.cache_freshness_s
        .get(resource_type)
        .copied()
        .unwrap_or(site.default_cache_freshness_s)
        .max(0)
}

pub(crate) fn is_stu3(site: &Site) -> bool {
    site.upstream_fhir_version
        .as_deref()
        .is_some_and(|v| v.starts_with("3.") || v.eq_ignore_ascii_case("stu3"))
}

fn has_directive(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case(directive))
        || (directive == "no-cache"
            && headers
                .get(header::PRAGMA)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("no-cache")))
}

fn header_string(headers: &reqwest::header::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Parses an HTTP date (RFC 9110 IMF-fixdate) into microseconds since the Unix epoch.
fn parse_http_date(text: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let parsed = time::PrimitiveDateTime::parse(text, format).ok()?;
    i64::try_from(parsed.assume_utc().unix_timestamp_nanos() / 1000).ok()
}

fn now_micros() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_ignores_parameter_order() {
        let a = cache_key(&Method::GET, "/Observation", Some("code=1&patient=2"));
        let b = cache_key(&Method::GET, "/Observation", Some("patient=2&code=1"));
        assert_eq!(a, b);
        assert_ne!(
            a,
            cache_key(&Method::GET, "/Observation", Some("patient=3&code=1"))
        );
    }

    #[test]
    fn confinement_matches_encoded_pair() {
        let principal = Principal {
            client_id: "app".to_string(),
            token_id: "t".to_string(),
            grant_id: None,
            scopes: hearth_smart::scope::parse("launch/patient patient/*.rs"),
            patient: Some("p1".to_string()),
            fhir_user: None,
            user_type: None,
        };
        let route = Route::classify(&Method::GET, "/Observation");
        let encoded = confine_query(
            Some("_count=5&patient=Patient%2Fp1"),
            &route,
            Some(&principal),
        );
        assert_eq!(encoded.as_deref(), Some("_count=5&patient=Patient%2Fp1"));
        let added = confine_query(Some("_count=5"), &route, Some(&principal));
        assert_eq!(added.as_deref(), Some("_count=5&patient=Patient/p1"));
        let other = confine_query(Some("patient=Patient%2Fp2"), &route, Some(&principal));
        assert_eq!(
            other.as_deref(),
            Some("patient=Patient%2Fp2&patient=Patient/p1")
        );
    }

    fn principal(scopes: &str, patient: Option<&str>, fhir_user: Option<&str>) -> Principal {
        Principal {
            client_id: "app".to_string(),
            token_id: "t".to_string(),
            grant_id: None,
            scopes: hearth_smart::scope::parse(scopes),
            patient: patient.map(str::to_string),
            fhir_user: fhir_user.map(str::to_string),
            user_type: None,
        }
    }

    #[test]
    fn wildcard_access_needs_unrestricted_scope() {
        let system = principal("system/*.cruds", None, None);
        assert!(unrestricted_everywhere(&system, Interaction::Update));
        let patient = principal("launch/patient patient/*.cruds", Some("p1"), None);
        assert!(!unrestricted_everywhere(&patient, Interaction::Update));
        assert!(!unrestricted_everywhere(&patient, Interaction::Read));
        let doctor = principal("user/*.cruds", None, Some("Practitioner/d1"));
        assert!(unrestricted_everywhere(&doctor, Interaction::Update));
        let patient_user = principal("user/*.cruds", None, Some("Patient/p1"));
        assert!(!unrestricted_everywhere(&patient_user, Interaction::Update));
        let narrowed = principal("system/*.rs?category=laboratory", None, None);
        assert!(!unrestricted_everywhere(&narrowed, Interaction::Read));
        let one_type = principal("system/Observation.cruds", None, None);
        assert!(!unrestricted_everywhere(&one_type, Interaction::Read));
    }

    #[test]
    fn elements_are_taken_off_restricted_searches() {
        let patient = principal("launch/patient patient/*.rs", Some("p1"), None);
        let route = Route::classify(&Method::GET, "/Observation");
        let (query, subset) = take_subset(
            Some("_elements=id,code&_count=3&patient=Patient/p1".to_string()),
            &route,
            &patient,
        );
        assert_eq!(query.as_deref(), Some("_count=3&patient=Patient/p1"));
        let subset = subset.expect("a local subset");
        assert!(subset.matches_only);
        assert_eq!(subset.pairs, vec!["_elements=id,code".to_string()]);

        let system = principal("system/*.rs", None, None);
        let original = Some("_elements=id,code".to_string());
        let (query, subset) = take_subset(original.clone(), &route, &system);
        assert_eq!(query, original);
        assert!(subset.is_none());
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000_000)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn no_cache_directive_is_found() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, no-cache"),
        );
        assert!(has_directive(&headers, "no-cache"));
        assert!(!has_directive(&headers, "no-store"));
    }

    /// Fails to compile when the middleware's future is not `Send`, which axum requires.
    #[allow(dead_code)]
    fn middleware_future_is_send(proxy: EhrProxy, request: Request, next: Next) {
        fn is_send<T: Send>(_: &T) {}
        let future = serve_ehr_sites(State(proxy), request, next);
        is_send(&future);
    }
}
