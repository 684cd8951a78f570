//! The migrations, the row structs, every materialized view and the sink against a real
//! ClickHouse server, named by `HEARTH_TEST_CLICKHOUSE_URL` (infra/test.sh starts one).
//! Each test uses its own database and drops it at the end.

use std::sync::Arc;
use std::time::Duration;

use hearth_analytics::pseudonym::Pseudonyms;
use hearth_analytics::reports::{self, Bucket, Filters, LatencyFilters, TimeRange};
use hearth_analytics::rows::{
    AnalyticsRow, ApiCallRow, AppRow, AuthorizationRow, LaunchRow, SiteRow, Table, TokenGrantRow,
};
use hearth_analytics::{ClickHouse, ClickHouseConfig, SinkOptions, SinkSummary, migrate, sink};
use hearth_log::embedded::{EmbeddedLog, EmbeddedOptions};
use hearth_log::{Log, topics};
use hearth_schemas::{
    AnyEvent, ApiCall, AuthorizationDenied, GrantType, Surface, TokenIssued, UserType,
};

/// A client of a fresh database, or `None` (with a notice) when no server is configured
/// outside CI. Under CI a missing server fails the test.
async fn database(test: &str) -> Option<ClickHouse> {
    let url = match std::env::var("HEARTH_TEST_CLICKHOUSE_URL") {
        Ok(url) => url,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!(
                "HEARTH_TEST_CLICKHOUSE_URL is not set; infra/test.sh starts ClickHouse and sets it"
            )
        }
        Err(_) => {
            eprintln!("skipping {test}: HEARTH_TEST_CLICKHOUSE_URL is not set");
            return None;
        }
    };
    let mut config = ClickHouseConfig::new(&url).unwrap();
    config.database = format!("test_{test}_{}", std::process::id());
    let client = ClickHouse::new(&config);
    client.drop_database().await.unwrap();
    Some(client)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct ColumnRow {
    name: String,
    #[serde(rename = "type")]
    column_type: String,
}

async fn assert_columns<T: AnalyticsRow>(client: &ClickHouse) {
    // system.columns lists a table's columns in their order; 18.16 has no `position`.
    let sql = format!(
        "SELECT name, type FROM system.columns WHERE database = '{}' AND table = '{}'",
        client.database(),
        T::TABLE.name()
    );
    let rows: Vec<ColumnRow> = client.fetch_all(&sql).await.unwrap();
    let found: Vec<(String, String)> = rows.into_iter().map(|r| (r.name, r.column_type)).collect();
    let expected: Vec<(String, String)> = T::COLUMNS
        .iter()
        .map(|(name, column_type)| (name.to_string(), column_type.to_string()))
        .collect();
    assert_eq!(found, expected, "columns of {}", T::TABLE.name());
}

#[tokio::test]
async fn migrations_idempotent_and_rows_match_tables() {
    let Some(client) = database("migrations").await else {
        return;
    };
    let first = migrate::migrate(&client).await.unwrap();
    let all: Vec<String> = migrate::migrations()
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(first.applied, all);
    let second = migrate::migrate(&client).await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.already_applied, all);

    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Count {
        count: u64,
    }
    let recorded: Vec<Count> = client
        .fetch_all("SELECT count() AS count FROM schema_migrations")
        .await
        .unwrap();
    assert_eq!(recorded[0].count, all.len() as u64);

    assert_columns::<LaunchRow>(&client).await;
    assert_columns::<AuthorizationRow>(&client).await;
    assert_columns::<TokenGrantRow>(&client).await;
    assert_columns::<ApiCallRow>(&client).await;
    assert_columns::<SiteRow>(&client).await;
    assert_columns::<AppRow>(&client).await;
    assert_eq!(Table::ALL.len(), 6, "every raw table is checked above");
    client.drop_database().await.unwrap();
}

/// 2026-03-02 10:00:00 UTC, a Monday, in microseconds.
const BASE_MICROS: i64 = 1_772_445_600_000_000;

fn api_call(index: u32, site: &str, client: &str, status: i32, latency_us: i64) -> ApiCall {
    ApiCall {
        event_id: format!("call-{index}"),
        occurred_at: BASE_MICROS + i64::from(index) * 1000,
        request_id: format!("req-{index}"),
        site_id: Some(site.to_string()),
        surface: Surface::Fhir,
        method: "GET".to_string(),
        route: "/fhir/{type}/{id}".to_string(),
        interaction: Some("read".to_string()),
        operation: None,
        resource_type: Some("Observation".to_string()),
        status,
        latency_us,
        request_bytes: 0,
        response_bytes: 100,
        client_id: Some(client.to_string()),
        grant_id: Some(format!("grant-{client}")),
        user_type: Some(UserType::Practitioner),
        user_id: Some(format!("user-{}", index % 3)),
        patient: Some("patient-1".to_string()),
        backing: None,
        cache: None,
        upstream_status: None,
        upstream_latency_us: None,
        error_code: (status >= 400).then(|| "not-found".to_string()),
    }
}

fn token(index: u32, client: &str) -> TokenIssued {
    TokenIssued {
        event_id: format!("token-{index}"),
        occurred_at: BASE_MICROS,
        token_id: format!("tok-{index}"),
        grant_id: Some(format!("grant-{client}")),
        site_id: "north".to_string(),
        client_id: client.to_string(),
        grant_type: GrantType::AuthorizationCode,
        scope: "user/*.rs".to_string(),
        user_type: UserType::Practitioner,
        user_id: Some("user-0".to_string()),
        fhir_user: None,
        patient: None,
        encounter: None,
        expires_at: BASE_MICROS + 3_600_000_000,
        refresh_token_hash: None,
        refresh_expires_at: None,
        id_token_issued: false,
        assertion_jti: None,
    }
}

fn denial(index: u32) -> AuthorizationDenied {
    AuthorizationDenied {
        event_id: format!("denial-{index}"),
        occurred_at: BASE_MICROS,
        site_id: "north".to_string(),
        client_id: Some("app-a".to_string()),
        user_id: Some("user-1".to_string()),
        error: "access_denied".to_string(),
        error_description: Some("the user denied access".to_string()),
        scope_requested: Some("user/*.rs".to_string()),
        redirect_uri: None,
        launch_id: None,
    }
}

async fn append(log: &EmbeddedLog, topic: &str, event: AnyEvent) {
    let value = event.encode().unwrap();
    log.append(topic, b"key", &value).await.unwrap();
}

async fn run_sink(log: Arc<dyn Log>, client: &ClickHouse, group: &str) -> SinkSummary {
    let options = SinkOptions {
        group: group.to_string(),
        max_batch_records: 7,
        max_batch_delay: Duration::from_millis(200),
        stop_at_end: true,
        ..SinkOptions::default()
    };
    let pseudonyms = Pseudonyms::from_key(b"a key of the test, 32 bytes long");
    let handle = sink::spawn(log, client.clone(), pseudonyms, options);
    tokio::time::timeout(Duration::from_secs(60), handle.join())
        .await
        .expect("the sink catches up within 60 s")
        .unwrap()
}

#[tokio::test]
async fn sink_fills_every_rollup_once() {
    let Some(client) = database("sink").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
    log.ensure_topic(topics::AUTH, 1).await.unwrap();
    log.ensure_topic(topics::API, 1).await.unwrap();

    // 30 calls: app-a at north (20, of which 4 are 404), app-b at south (10).
    for index in 0..30u32 {
        let (site, app) = if index < 20 {
            ("north", "app-a")
        } else {
            ("south", "app-b")
        };
        let status = if index < 4 { 404 } else { 200 };
        let call = api_call(index, site, app, status, 1000 * i64::from(index + 1));
        append(&log, topics::API, AnyEvent::ApiCall(call)).await;
    }
    // The same event appended twice, as after a producer's retry.
    let repeated = api_call(5, "north", "app-a", 200, 6000);
    append(&log, topics::API, AnyEvent::ApiCall(repeated)).await;
    for index in 0..3 {
        append(
            &log,
            topics::AUTH,
            AnyEvent::TokenIssued(token(index, "app-a")),
        )
        .await;
    }
    append(&log, topics::AUTH, AnyEvent::AuthorizationDenied(denial(0))).await;

    let log: Arc<dyn Log> = Arc::new(log);
    let summary = run_sink(log.clone(), &client, "first").await;
    assert_eq!(summary.rows_written, 34, "{summary:?}");
    assert_eq!(summary.duplicate_events, 1, "{summary:?}");

    let range = TimeRange::parse(Some("2026-03-02"), Some("2026-03-03")).unwrap();
    check_reports(&client, &range).await;

    // A second consumer group reads everything again: ClickHouse holds every row, so
    // nothing is written twice and the rollups do not change.
    let replay = run_sink(log, &client, "replay").await;
    assert_eq!(replay.rows_written, 0, "{replay:?}");
    assert_eq!(replay.rows_already_stored, 34, "{replay:?}");
    check_reports(&client, &range).await;
    client.drop_database().await.unwrap();
}

async fn check_reports(client: &ClickHouse, range: &TimeRange) {
    let usage = reports::usage(client, range, &Filters::default(), Bucket::Total)
        .await
        .unwrap();
    let north = usage
        .rows
        .iter()
        .find(|r| r.site_id == "north" && r.client_id == "app-a")
        .expect("a usage row for app-a at north");
    assert_eq!(north.calls, 20);
    assert_eq!(north.errors, 4);
    assert_eq!(north.token_grants, 3);
    assert_eq!(north.denials, 1);
    assert_eq!(north.users, 3, "user-0, user-1 and user-2");
    let south = usage
        .rows
        .iter()
        .find(|r| r.site_id == "south")
        .expect("a usage row for south");
    assert_eq!(south.calls, 10);
    assert_eq!(south.errors, 0);

    // A whole-day range reads usage_daily; one that starts at 10:00 reads usage_hourly.
    // Every call is at 10:00, so both must return the same figures.
    let from_ten = TimeRange {
        from: range.from + 10 * 3600,
        to: range.to,
    };
    let hourly_usage = reports::usage(client, &from_ten, &Filters::default(), Bucket::Total)
        .await
        .unwrap();
    let without_bucket = |rows: &[reports::UsageRow]| -> Vec<reports::UsageRow> {
        rows.iter()
            .map(|row| reports::UsageRow {
                bucket: String::new(),
                ..row.clone()
            })
            .collect()
    };
    assert_eq!(
        without_bucket(&hourly_usage.rows),
        without_bucket(&usage.rows),
        "usage from the hourly and the daily rollup"
    );

    let daily_latency = reports::latency(
        client,
        range,
        &Filters::default(),
        &LatencyFilters::default(),
        Bucket::Total,
    )
    .await
    .unwrap();
    let north = daily_latency
        .rows
        .iter()
        .find(|r| r.site_id == "north")
        .expect("a daily latency row for north");
    assert_eq!(north.calls, 20);
    assert_eq!(north.errors, 4);
    assert_eq!(north.max_us, 20_000);
    assert_eq!(north.mean_us, 10_500.0);
    assert!(
        (9_000.0..=12_000.0).contains(&north.p50_us),
        "t-digest p50 {}",
        north.p50_us
    );
    assert!(north.p99_us >= 19_000.0, "t-digest p99 {}", north.p99_us);

    let latency = reports::latency(
        client,
        range,
        &Filters::default(),
        &LatencyFilters::default(),
        Bucket::Hour,
    )
    .await
    .unwrap();
    let north = latency
        .rows
        .iter()
        .find(|r| r.site_id == "north")
        .expect("a latency row for north");
    assert_eq!(north.calls, 20);
    assert_eq!(north.max_us, 20_000);
    assert_eq!(north.mean_us, 10_500.0);
    assert!(
        (10_000.0..=11_000.0).contains(&north.p50_us),
        "{}",
        north.p50_us
    );
    assert!(north.p99_us >= 19_000.0, "{}", north.p99_us);

    let errors = reports::errors(client, range, &Filters::default())
        .await
        .unwrap();
    assert_eq!(errors.rows.len(), 1, "{:?}", errors.rows);
    assert_eq!(errors.rows[0].client_id, "app-a");
    assert_eq!(errors.rows[0].status, 404);
    assert_eq!(errors.rows[0].error_code, "not-found");
    assert_eq!(errors.rows[0].calls, 4);

    let hourly = reports::hourly_pattern(client, range, &Filters::default())
        .await
        .unwrap();
    let calls: u64 = hourly.rows.iter().map(|r| r.calls).sum();
    assert_eq!(calls, 30);
    assert!(
        hourly
            .rows
            .iter()
            .all(|r| r.day_of_week == 1 && r.hour_of_day == 10),
        "{:?}",
        hourly.rows
    );
}

#[tokio::test]
async fn schema_error_stops_without_commit() {
    let Some(client) = database("schema").await else {
        return;
    };
    migrate::migrate(&client).await.unwrap();
    client
        .execute("ALTER TABLE api_calls DROP COLUMN patient_hash")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
    log.ensure_topic(topics::AUTH, 1).await.unwrap();
    log.ensure_topic(topics::API, 1).await.unwrap();
    for index in 0..5 {
        let call = api_call(index, "north", "app-a", 200, 1000);
        append(&log, topics::API, AnyEvent::ApiCall(call)).await;
    }
    let log: Arc<dyn Log> = Arc::new(log);

    let options = SinkOptions {
        group: "schema".to_string(),
        max_batch_delay: Duration::from_millis(200),
        stop_at_end: true,
        ..SinkOptions::default()
    };
    let pseudonyms = Pseudonyms::from_key(b"a key of the test, 32 bytes long");
    let handle = sink::spawn(log.clone(), client.clone(), pseudonyms, options);
    let status = handle.status_source();
    let error = tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("the sink stops at once on a schema error")
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("patient_hash"), "{error}");
    assert_eq!(status.lock().state, "failed");

    // With the column back, the same group reads the batch again: nothing was committed.
    client
        .execute("ALTER TABLE api_calls ADD COLUMN patient_hash UInt64")
        .await
        .unwrap();
    let summary = run_sink(log, &client, "schema").await;
    assert_eq!(summary.rows_written, 5, "{summary:?}");
    client.drop_database().await.unwrap();
}

#[tokio::test]
async fn report_before_migrations_is_503() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let Some(client) = database("unmigrated").await else {
        return;
    };
    let router = hearth_analytics::admin::router(hearth_analytics::admin::AdminState {
        client: Some(client),
        admin_token: Arc::from("secret"),
        sink: None,
    });
    let request = Request::get("/analytics/usage")
        .header("authorization", "Bearer secret")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
}
