//! One `ApiCall` event on `hearth.api` for every HTTP call, rejected or not.
//!
//! Events go through a bounded queue to a background task that appends them in groups,
//! so a request never waits for the log. The cost is that a crash can lose the events of
//! the last moments, and that a full queue (a log unavailable for long) drops events; both
//! are logged. Events carry no tokens, secrets, bodies or query strings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::future::join_all;
use hearth_fhir::audit::{CallInfo, CallRecord, ErrorCode};
use hearth_log::{Log, topics};
use hearth_schemas::{ApiCall, Backing, CacheStatus, Surface, UserType};
use tokio::sync::mpsc;

/// Events waiting for the log, at most.
const QUEUE: usize = 100_000;
/// Events appended concurrently, so the log commits them together.
const GROUP: usize = 512;

/// The sending side of the audit queue.
#[derive(Clone)]
pub struct Auditor {
    sender: mpsc::Sender<ApiCall>,
    dropped: Arc<AtomicU64>,
}

impl Auditor {
    /// Starts the background task that appends queued events to `hearth.api`.
    pub fn start(log: Arc<dyn Log>) -> Auditor {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(append_events(log, receiver));
        Auditor {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn submit(&self, event: ApiCall) {
        if self.sender.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the API call queue is full; dropping audit events");
            }
        }
    }
}

async fn append_events(log: Arc<dyn Log>, mut receiver: mpsc::Receiver<ApiCall>) {
    let mut batch = Vec::with_capacity(GROUP);
    while receiver.recv_many(&mut batch, GROUP).await > 0 {
        let appends = batch.drain(..).map(|event| {
            let log = log.clone();
            async move {
                let value = match hearth_schemas::encode(&event) {
                    Ok(value) => value,
                    Err(error) => {
                        tracing::error!(%error, "encoding an API call event failed");
                        return;
                    }
                };
                let key = event.site_id.clone().unwrap_or_default();
                let mut backoff = Duration::from_millis(100);
                loop {
                    match log.append(topics::API, key.as_bytes(), &value).await {
                        Ok(_) => return,
                        Err(error) => {
                            tracing::warn!(%error, ?backoff, "appending an API call event failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });
        join_all(appends).await;
    }
}

/// Route layer of the admin API and the console: records the route template, such as
/// `/admin/apps/{client_id}`, adding `prefix` when the nested router's template lacks it.
pub async fn record_route(
    State(prefix): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(matched) = request.extensions().get::<MatchedPath>() {
        let path = matched.as_str();
        let route = if path.starts_with(prefix) {
            path.to_string()
        } else {
            format!("{prefix}{path}")
        };
        CallRecord::update(&request, |info| {
            info.route.get_or_insert(route);
        });
    }
    next.run(request).await
}

/// Outermost middleware: times the call, lets the inner layers fill its record, and
/// queues the `ApiCall` event. Also sets `X-Request-Id`.
pub async fn record_calls(
    State(auditor): State<Auditor>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let occurred_at = hearth_fhir_now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let record = CallRecord::default();
    request.extensions_mut().insert(record.clone());
    let method = request.method().to_string();
    let surface = surface(request.uri().path());
    let request_bytes = content_length(request.headers());

    let mut response = next.run(request).await;

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let info = record.0.lock().clone();
    let error_code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0.to_string());
    let response_bytes = content_length(response.headers()).max(
        axum::body::HttpBody::size_hint(response.body())
            .exact()
            .map_or(0, |n| n as i64),
    );
    auditor.submit(event(EventParts {
        info,
        request_id,
        occurred_at,
        surface,
        method,
        status: i32::from(response.status().as_u16()),
        latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
        request_bytes,
        response_bytes,
        error_code,
    }));
    response
}

struct EventParts {
    info: CallInfo,
    request_id: String,
    occurred_at: i64,
    surface: Surface,
    method: String,
    status: i32,
    latency_us: i64,
    request_bytes: i64,
    response_bytes: i64,
    error_code: Option<String>,
}

fn event(parts: EventParts) -> ApiCall {
    let info = parts.info;
    ApiCall {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: parts.occurred_at,
        request_id: parts.request_id,
        site_id: info.site_id,
        surface: parts.surface,
        method: parts.method,
        route: info.route.unwrap_or_else(|| "unmatched".to_string()),
        interaction: info.interaction,
        operation: info.operation,
        resource_type: info.resource_type,
        status: parts.status,
        latency_us: parts.latency_us,
        request_bytes: parts.request_bytes,
        response_bytes: parts.response_bytes,
        client_id: info.client_id,
        grant_id: info.grant_id,
        user_type: info.user_type.as_deref().map(user_type),
        user_id: info.user_id,
        patient: info.patient,
        backing: info.backing.as_deref().map(backing),
        cache: info.cache.as_deref().map(cache_status),
        upstream_status: info.upstream_status,
        upstream_latency_us: info.upstream_latency_us,
        error_code: parts.error_code,
    }
}

fn backing(name: &str) -> Backing {
    match name {
        "ehr" => Backing::Ehr,
        _ => Backing::Repository,
    }
}

fn cache_status(name: &str) -> CacheStatus {
    match name {
        "HIT" => CacheStatus::Hit,
        "MISS" => CacheStatus::Miss,
        _ => CacheStatus::Bypass,
    }
}

fn user_type(name: &str) -> UserType {
    match name {
        "Patient" => UserType::Patient,
        "Practitioner" => UserType::Practitioner,
        "RelatedPerson" => UserType::RelatedPerson,
        "system" => UserType::System,
        _ => UserType::Other,
    }
}

/// The part of Hearth a path belongs to, after site paths were rewritten.
fn surface(path: &str) -> Surface {
    if path.starts_with("/fhir") {
        Surface::Fhir
    } else if path.starts_with("/auth") {
        Surface::Auth
    } else if path.starts_with("/admin") {
        Surface::Admin
    } else {
        Surface::Console
    }
}

fn content_length(headers: &axum::http::HeaderMap) -> i64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn hearth_fhir_now() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(info: CallInfo) -> EventParts {
        EventParts {
            info,
            request_id: "r1".to_string(),
            occurred_at: 1,
            surface: Surface::Fhir,
            method: "GET".to_string(),
            status: 200,
            latency_us: 10,
            request_bytes: 0,
            response_bytes: 5,
            error_code: None,
        }
    }

    #[test]
    fn ehr_call_reports_cache_and_upstream() {
        let info = CallInfo {
            backing: Some("ehr".to_string()),
            cache: Some("MISS".to_string()),
            upstream_status: Some(200),
            upstream_latency_us: Some(1500),
            ..CallInfo::default()
        };
        let call = event(parts(info));
        assert_eq!(call.backing, Some(Backing::Ehr));
        assert_eq!(call.cache, Some(CacheStatus::Miss));
        assert_eq!(call.upstream_status, Some(200));
        assert_eq!(call.upstream_latency_us, Some(1500));
    }

    #[test]
    fn repository_call_has_no_cache_status() {
        let info = CallInfo {
            backing: Some("repository".to_string()),
            ..CallInfo::default()
        };
        let call = event(parts(info));
        assert_eq!(call.backing, Some(Backing::Repository));
        assert_eq!(call.cache, None);
        assert_eq!(call.upstream_status, None);
    }
}
