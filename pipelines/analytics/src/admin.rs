//! `GET /admin/analytics/...`: the reports as JSON for the console, behind the admin
//! bearer credential. Errors use the admin API's JSON form,
//! `{"error": ..., "error_description": ...}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::client::ClickHouse;
use crate::reports::{self, Bucket, Distinct, Filters, LatencyFilters, TimeRange};
use crate::sink::SinkStatus;
use crate::{Error, Result};

/// State of the analytics routes.
#[derive(Clone)]
pub struct AdminState {
    /// `None` when ClickHouse is not configured; the report routes then return 503.
    pub client: Option<ClickHouse>,
    pub admin_token: Arc<str>,
    /// The status of the sink running in this process, if any.
    pub sink: Option<Arc<Mutex<SinkStatus>>>,
}

/// Routes under `/analytics`, to be nested in the admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/analytics/usage", get(usage))
        .route("/analytics/latency", get(latency))
        .route("/analytics/hourly", get(hourly))
        .route("/analytics/errors", get(errors))
        .route("/analytics/status", get(status))
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

async fn usage(State(state): State<AdminState>, headers: HeaderMap, params: Params) -> Response {
    respond(async {
        let client = authorize(&state, &headers)?;
        let (range, filters) = common(&params)?;
        let bucket = Bucket::parse(param(&params, "bucket"))?;
        let distinct = distinct_params(&params, &filters)?;
        Ok::<_, Rejection>(reports::usage(client, &range, &filters, bucket, distinct).await?)
    })
    .await
}

async fn latency(State(state): State<AdminState>, headers: HeaderMap, params: Params) -> Response {
    respond(async {
        let client = authorize(&state, &headers)?;
        let (range, filters) = common(&params)?;
        let bucket = Bucket::parse(param(&params, "bucket"))?;
        let latency_filters = LatencyFilters {
            surface: param(&params, "surface").map(str::to_string),
            interaction: param(&params, "interaction").map(str::to_string),
        };
        Ok::<_, Rejection>(
            reports::latency(client, &range, &filters, &latency_filters, bucket).await?,
        )
    })
    .await
}

async fn hourly(State(state): State<AdminState>, headers: HeaderMap, params: Params) -> Response {
    respond(async {
        let client = authorize(&state, &headers)?;
        let (range, filters) = common(&params)?;
        Ok::<_, Rejection>(reports::hourly_pattern(client, &range, &filters).await?)
    })
    .await
}

async fn errors(State(state): State<AdminState>, headers: HeaderMap, params: Params) -> Response {
    respond(async {
        let client = authorize(&state, &headers)?;
        let (range, filters) = common(&params)?;
        Ok::<_, Rejection>(reports::errors(client, &range, &filters).await?)
    })
    .await
}

async fn status(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(rejection) = check_token(&state, &headers) {
        return rejection.into_response();
    }
    let sink = state.sink.as_ref().map(|status| status.lock().clone());
    Json(json!({
        "configured": state.client.is_some(),
        "database": state.client.as_ref().map(ClickHouse::database),
        "sink": sink,
    }))
    .into_response()
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

/// Reads the distinct counts of a usage request from the `users` and `patients`
/// parameters: by default users for one site or app and patients for one app.
fn distinct_params(params: &Params, filters: &Filters) -> Result<Distinct> {
    let default = Distinct::default_for(filters);
    Ok(Distinct {
        users: flag(params, "users")?.unwrap_or(default.users),
        patients: flag(params, "patients")?.unwrap_or(default.patients),
    })
}

fn flag(params: &Params, name: &str) -> Result<Option<bool>> {
    match param(params, name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(Error::InvalidRequest(format!(
            "invalid {name} '{other}': expected true or false"
        ))),
    }
}

fn common(params: &Params) -> Result<(TimeRange, Filters)> {
    const KNOWN: &[&str] = &[
        "from",
        "to",
        "site",
        "app",
        "bucket",
        "surface",
        "interaction",
        "users",
        "patients",
    ];
    if let Some(unknown) = params.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(Error::InvalidRequest(format!(
            "unknown parameter '{unknown}': expected from, to, site, app, bucket, surface, \
             interaction, users or patients"
        )));
    }
    let range = TimeRange::parse(param(params, "from"), param(params, "to"))?;
    let filters = Filters {
        site: param(params, "site").map(str::to_string),
        app: param(params, "app").map(str::to_string),
    };
    Ok((range, filters))
}

/// A rejected report request: the HTTP status and the admin API's error JSON.
struct Rejection {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl Rejection {
    fn new(status: StatusCode, error: &'static str, description: &str) -> Rejection {
        Rejection {
            status,
            error,
            description: description.to_string(),
        }
    }
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Self {
        if let Error::InvalidRequest(message) = error {
            return Rejection::new(StatusCode::BAD_REQUEST, "invalid_request", &message);
        }
        tracing::warn!(%error, "an analytics report failed");
        let missing_schema = match &error {
            // UNKNOWN_TABLE and UNKNOWN_DATABASE before the sink first reached ClickHouse.
            Error::ClickHouse(clickhouse::error::Error::BadResponse(message)) => {
                matches!(crate::error::clickhouse_code(message), Some(60 | 81))
            }
            _ => false,
        };
        if missing_schema {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the analytics tables do not exist yet; the sink creates them when it first \
                 reaches ClickHouse",
            )
        } else if error.is_transient() {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "ClickHouse is unavailable; try again later",
            )
        } else {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the analytics query failed; the server log has the details",
            )
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.error, "error_description": self.description}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn authorize<'a>(
    state: &'a AdminState,
    headers: &HeaderMap,
) -> std::result::Result<&'a ClickHouse, Rejection> {
    check_token(state, headers)?;
    state.client.as_ref().ok_or_else(|| {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "analytics is not configured on this server: start hearth with --clickhouse-url",
        )
    })
}

async fn respond<T: Serialize>(
    report: impl Future<Output = std::result::Result<reports::Report<T>, Rejection>>,
) -> Response {
    match report.await {
        Ok(report) => Json(report).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

fn check_token(state: &AdminState, headers: &HeaderMap) -> std::result::Result<(), Rejection> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(state.admin_token.as_bytes())) => Ok(()),
        Some(_) => Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin token is not valid",
        )),
        None => Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin API needs Authorization: Bearer <admin token>",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(client: Option<ClickHouse>) -> Router {
        router(AdminState {
            client,
            admin_token: Arc::from("secret"),
            sink: None,
        })
    }

    async fn get_json(router: Router, uri: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut request = Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Returns a client of a loopback port that this test bound and closed again, so
    /// nothing listens there.
    fn unreachable_client() -> ClickHouse {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = crate::ClickHouseConfig::new(&format!("http://127.0.0.1:{port}")).unwrap();
        ClickHouse::new(&config)
    }

    #[tokio::test]
    async fn missing_token_is_401() {
        let (status, body) = get_json(app(None), "/analytics/usage", None).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_token");
        let (status, _) = get_json(app(None), "/analytics/usage", Some("wrong")).await;
        assert_eq!(status, 401);
    }

    #[tokio::test]
    async fn unconfigured_is_503() {
        let (status, body) = get_json(app(None), "/analytics/latency", Some("secret")).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], "temporarily_unavailable");
        let (status, body) = get_json(app(None), "/analytics/status", Some("secret")).await;
        assert_eq!(status, 200);
        assert_eq!(body["configured"], false);
    }

    #[tokio::test]
    async fn bad_parameters_are_400() {
        // Parameters are checked before ClickHouse is contacted, so no server is needed.
        let client = Some(unreachable_client());
        for uri in [
            "/analytics/usage?from=soon",
            "/analytics/usage?from=2026-02-01&to=2026-01-01",
            "/analytics/usage?bucket=week",
            "/analytics/errors?limit=5",
            "/analytics/latency?surface=ftp",
            "/analytics/usage?patients=yes",
            "/analytics/usage?users=1",
        ] {
            let (status, body) = get_json(app(client.clone()), uri, Some("secret")).await;
            assert_eq!(status, 400, "{uri}: {body}");
            assert_eq!(body["error"], "invalid_request", "{uri}");
        }
    }

    #[tokio::test]
    async fn unreachable_clickhouse_is_503() {
        let client = Some(unreachable_client());
        let (status, body) = get_json(app(client), "/analytics/errors", Some("secret")).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "server_error");
    }
}
