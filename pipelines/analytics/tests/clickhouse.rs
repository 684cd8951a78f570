//! The migrations, the row structs, every materialized view and the sink against a real
//! ClickHouse server, named by `HEARTH_TEST_CLICKHOUSE_URL` (infra/test.sh starts one).
//! Each test uses its own database and drops it at the end.

use std::sync::Arc;
use std::time::Duration;

use hearth_analytics::pseudonym::Pseudonyms;
use hearth_analytics::reports::{self, Bucket, Distinct, Filters, LatencyFilters, TimeRange};
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

/// Both distinct counts of the usage report.
const USERS_AND_PATIENTS: Distinct = Distinct {
    users: true,
    patients: true,
};

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

/// Opens an empty embedded log with the sink's two topics, in a directory that is removed
/// when the returned guard drops.
async fn empty_log() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
    log.ensure_topic(topics::AUTH, 1).await.unwrap();
    log.ensure_topic(topics::API, 1).await.unwrap();
    (dir, log)
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
    let (_dir, log) = empty_log().await;

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
    let usage = reports::usage(
        client,
        range,
        &Filters::default(),
        Bucket::Total,
        USERS_AND_PATIENTS,
    )
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
    assert_eq!(north.users, Some(3), "user-0, user-1 and user-2");
    assert_eq!(north.patients, Some(1), "patient-1");
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
    let hourly_usage = reports::usage(
        client,
        &from_ten,
        &Filters::default(),
        Bucket::Total,
        USERS_AND_PATIENTS,
    )
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

    // One app's latency comes from its raw calls, which hold the repeated event once.
    let app_b = Filters {
        site: None,
        app: Some("app-b".to_string()),
    };
    let app_latency = reports::latency(
        client,
        range,
        &app_b,
        &LatencyFilters::default(),
        Bucket::Total,
    )
    .await
    .unwrap();
    assert_eq!(app_latency.rows.len(), 1, "{:?}", app_latency.rows);
    let south = &app_latency.rows[0];
    assert_eq!(south.site_id, "south");
    assert_eq!(south.calls, 10);
    assert_eq!(south.errors, 0);
    assert_eq!(south.max_us, 30_000);
    assert_eq!(south.mean_us, 25_500.0);
    assert!(
        (25_000.0..=26_000.0).contains(&south.p50_us),
        "{}",
        south.p50_us
    );
    let app_a = Filters {
        site: None,
        app: Some("app-a".to_string()),
    };
    let app_a_latency = reports::latency(
        client,
        range,
        &app_a,
        &LatencyFilters::default(),
        Bucket::Hour,
    )
    .await
    .unwrap();
    let calls: u64 = app_a_latency.rows.iter().map(|r| r.calls).sum();
    let errors: u64 = app_a_latency.rows.iter().map(|r| r.errors).sum();
    assert_eq!(calls, 20, "{:?}", app_a_latency.rows);
    assert_eq!(errors, 4, "{:?}", app_a_latency.rows);

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
        hourly.rows.iter().all(|r| r.users.is_none()),
        "no distinct users without a site or app: {:?}",
        hourly.rows
    );
    assert!(
        hourly
            .rows
            .iter()
            .all(|r| r.day_of_week == 1 && r.hour_of_day == 10),
        "{:?}",
        hourly.rows
    );
}

/// Calls of app-a at north on three days, with users that recur across the days:
/// (hours after `BASE_MICROS`, user index, latency in microseconds).
const SPREAD_CALLS: &[(i64, u32, i64)] = &[
    // Monday 2026-03-02, 10:00.
    (0, 0, 1_000),
    (0, 1, 2_000),
    (0, 2, 3_000),
    // Tuesday, 05:00.
    (19, 2, 4_000),
    (19, 3, 5_000),
    // Wednesday, 01:00.
    (39, 4, 6_000),
    (39, 0, 7_000),
];

#[tokio::test]
async fn split_ranges_merge_days_and_hours() {
    let Some(client) = database("split").await else {
        return;
    };
    let (_dir, log) = empty_log().await;
    for (index, &(hours, user, latency_us)) in SPREAD_CALLS.iter().enumerate() {
        let mut call = api_call(index as u32, "north", "app-a", 200, latency_us);
        call.occurred_at = BASE_MICROS + hours * 3_600_000_000;
        call.user_id = Some(format!("user-{user}"));
        append(&log, topics::API, AnyEvent::ApiCall(call)).await;
    }
    let log: Arc<dyn Log> = Arc::new(log);
    let summary = run_sink(log, &client, "split").await;
    assert_eq!(
        summary.rows_written,
        SPREAD_CALLS.len() as u64,
        "{summary:?}"
    );

    // Rebuild latency_digest_hourly as a deployment that had calls before its migration
    // gets it: filled from api_calls by the migration's INSERT ... SELECT.
    for statement in [
        "DROP TABLE latency_digest_hourly_from_api_calls",
        "DROP TABLE latency_digest_hourly",
    ] {
        client.execute(statement).await.unwrap();
    }
    let migration = migrate::migrations()
        .into_iter()
        .find(|m| m.name == "0007_latency_digest_hourly.sql")
        .expect("the migration of latency_digest_hourly");
    for statement in migration.statements() {
        client.execute(&statement).await.unwrap();
    }

    // From Monday 09:30 to Wednesday 02:00: Monday's hours from usage_hourly, Tuesday from
    // usage_daily and Wednesday's first two hours from usage_hourly again.
    let range =
        TimeRange::parse(Some("2026-03-02T09:30:00Z"), Some("2026-03-04T02:00:00Z")).unwrap();
    let app_a = Filters {
        site: None,
        app: Some("app-a".to_string()),
    };
    let usage = reports::usage(&client, &range, &app_a, Bucket::Total, USERS_AND_PATIENTS)
        .await
        .unwrap();
    assert_eq!(usage.rows.len(), 1, "{:?}", usage.rows);
    assert_eq!(usage.rows[0].calls, 7);
    assert_eq!(usage.rows[0].users, Some(5), "user-0 to user-4, each once");
    assert_eq!(usage.rows[0].patients, Some(1));
    assert_eq!(usage.rows[0].bucket, "2026-03-02T09:30:00Z");

    let users_only = Distinct {
        users: true,
        patients: false,
    };
    let per_day = reports::usage(&client, &range, &app_a, Bucket::Day, users_only)
        .await
        .unwrap();
    let days: Vec<(&str, u64, Option<u64>, Option<u64>)> = per_day
        .rows
        .iter()
        .map(|r| (r.bucket.as_str(), r.calls, r.users, r.patients))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-02T00:00:00Z", 3, Some(3), None),
            ("2026-03-03T00:00:00Z", 2, Some(2), None),
            ("2026-03-04T00:00:00Z", 2, Some(2), None),
        ]
    );

    // From 11:00, Monday's calls are outside the range; user-2 still counts on Tuesday.
    let later =
        TimeRange::parse(Some("2026-03-02T11:00:00Z"), Some("2026-03-04T02:00:00Z")).unwrap();
    let usage = reports::usage(&client, &later, &app_a, Bucket::Total, USERS_AND_PATIENTS)
        .await
        .unwrap();
    assert_eq!(usage.rows[0].calls, 4);
    assert_eq!(
        usage.rows[0].users,
        Some(4),
        "user-2, user-3, user-4 and user-0"
    );

    let latency = reports::latency(
        &client,
        &range,
        &Filters::default(),
        &LatencyFilters::default(),
        Bucket::Total,
    )
    .await
    .unwrap();
    assert_eq!(latency.rows.len(), 1, "{:?}", latency.rows);
    let north = &latency.rows[0];
    assert_eq!(north.calls, 7);
    assert_eq!(north.max_us, 7_000);
    assert_eq!(north.mean_us, 4_000.0);
    assert!(
        (3_000.0..=5_000.0).contains(&north.p50_us),
        "t-digest p50 {}",
        north.p50_us
    );
    assert!(
        north.p50_us <= north.p95_us && north.p95_us <= north.p99_us,
        "{north:?}"
    );
    let later_latency = reports::latency(
        &client,
        &later,
        &Filters::default(),
        &LatencyFilters::default(),
        Bucket::Total,
    )
    .await
    .unwrap();
    assert_eq!(later_latency.rows[0].calls, 4);
    assert_eq!(later_latency.rows[0].mean_us, 5_500.0);

    let pattern = reports::hourly_pattern(&client, &range, &app_a)
        .await
        .unwrap();
    let slots: Vec<(u8, u8, u64, Option<u64>)> = pattern
        .rows
        .iter()
        .map(|r| (r.day_of_week, r.hour_of_day, r.calls, r.users))
        .collect();
    assert_eq!(
        slots,
        [(1, 10, 3, Some(3)), (2, 5, 2, Some(2)), (3, 1, 2, Some(2))]
    );
    client.drop_database().await.unwrap();
}

/// Calls of app-a at north from Sunday 2026-03-01 to Thursday 2026-03-12, with users that
/// recur across the days: (hours after `BASE_MICROS`, user index). The first call is
/// before the range of the refill test and must not count.
fn spread_calls() -> Vec<(i64, u32)> {
    let mut calls = vec![
        // Sunday 09:00 and 12:00.
        (-25, 8),
        (-22, 9),
    ];
    for day in 0..10 {
        calls.push((day * 24, (day % 5) as u32));
        calls.push((day * 24 + 1, ((day + 2) % 5) as u32));
    }
    // Thursday 2026-03-12, 01:00.
    calls.push((9 * 24 + 15, 7));
    calls
}

async fn usage_total(client: &ClickHouse, range: &TimeRange) -> reports::UsageRow {
    let app_a = Filters {
        site: None,
        app: Some("app-a".to_string()),
    };
    let usage = reports::usage(client, range, &app_a, Bucket::Total, USERS_AND_PATIENTS)
        .await
        .unwrap();
    assert_eq!(usage.rows.len(), 1, "{:?}", usage.rows);
    usage.rows[0].clone()
}

#[tokio::test]
async fn hourly_usage_refill_matches_calls() {
    let Some(client) = database("refill").await else {
        return;
    };
    // Batches of 7 records, so api_calls and the rollups get several parts.
    let calls = sink_spread_calls(&client, "refill", 0).await;

    // From Sunday 10:00 to Thursday 02:00: Sunday's hours and Thursday's first two hours
    // from usage_hourly, and March 2 to 11 from usage_daily.
    let range =
        TimeRange::parse(Some("2026-03-01T10:00:00Z"), Some("2026-03-12T02:00:00Z")).unwrap();
    let in_range: Vec<u32> = calls
        .iter()
        .filter(|(hours, _)| {
            let seconds = BASE_MICROS / 1_000_000 + hours * 3600;
            seconds >= range.from && seconds < range.to
        })
        .map(|&(_, user)| user)
        .collect();
    let distinct: std::collections::HashSet<u32> = in_range.iter().copied().collect();
    assert_eq!(in_range.len(), 22, "the calls of the list in the range");
    assert_eq!(distinct.len(), 7, "users 0 to 4, 7 and 9");

    let total = usage_total(&client, &range).await;
    assert_eq!(total.calls, in_range.len() as u64);
    assert_eq!(total.users, Some(distinct.len() as u64));
    assert_eq!(total.patients, Some(distinct.len() as u64));

    // Day buckets must add up to the same calls.
    let app_a = Filters {
        site: None,
        app: Some("app-a".to_string()),
    };
    let per_day = reports::usage(&client, &range, &app_a, Bucket::Day, USERS_AND_PATIENTS)
        .await
        .unwrap();
    let day_calls: u64 = per_day.rows.iter().map(|r| r.calls).sum();
    assert_eq!(day_calls, in_range.len() as u64, "{:?}", per_day.rows);
    assert_eq!(per_day.rows.len(), 12, "March 1 to 12: {:?}", per_day.rows);

    // The fill of 0009 rebuilds usage_hourly from api_calls, which now has several parts,
    // and a repeated run gives the same figures.
    let migration = migrate::migrations()
        .into_iter()
        .find(|m| m.name == "0009_usage_hourly_by_app.sql")
        .expect("the migration of usage_hourly");
    for statement in migration.statements() {
        client.execute(&statement).await.unwrap();
    }
    let refilled = usage_total(&client, &range).await;
    assert_eq!(refilled, total, "after the migration's fill");

    // Hours only: the fill must also give the hourly pattern of every call.
    let pattern = reports::hourly_pattern(&client, &range, &Filters::default())
        .await
        .unwrap();
    let pattern_calls: u64 = pattern.rows.iter().map(|r| r.calls).sum();
    assert_eq!(pattern_calls, in_range.len() as u64, "{:?}", pattern.rows);
    client.drop_database().await.unwrap();
}

/// Sinks the calls of `spread_calls` and `grants` token grants (one a day from
/// `BASE_MICROS`, by users 20 and up) in batches of 7, so the raw tables have several
/// parts. Returns the calls.
async fn sink_spread_calls(client: &ClickHouse, group: &str, grants: u32) -> Vec<(i64, u32)> {
    let (_dir, log) = empty_log().await;
    let calls = spread_calls();
    for (index, &(hours, user)) in calls.iter().enumerate() {
        let mut call = api_call(index as u32, "north", "app-a", 200, 1000 + index as i64);
        call.occurred_at = BASE_MICROS + hours * 3_600_000_000;
        call.user_id = Some(format!("user-{user}"));
        call.patient = Some(format!("patient-{user}"));
        append(&log, topics::API, AnyEvent::ApiCall(call)).await;
    }
    for index in 0..grants {
        let mut grant = token(100 + index, "app-a");
        grant.occurred_at = BASE_MICROS + i64::from(index) * 24 * 3_600_000_000;
        grant.user_id = Some(format!("user-{}", 20 + index));
        append(&log, topics::AUTH, AnyEvent::TokenIssued(grant)).await;
    }
    let log: Arc<dyn Log> = Arc::new(log);
    let summary = run_sink(log, client, group).await;
    let rows = calls.len() as u64 + u64::from(grants);
    assert_eq!(summary.rows_written, rows, "{summary:?}");
    calls
}

/// Runs every report whose tables a migration after 0006 fills from the raw tables.
async fn upgraded_figures(
    client: &ClickHouse,
    range: &TimeRange,
) -> (
    Vec<reports::UsageRow>,
    Vec<reports::UsageRow>,
    Vec<reports::UsageRow>,
    Vec<reports::LatencyRow>,
) {
    let everything = Filters::default();
    let no_latency_filters = LatencyFilters::default();
    let usage = |bucket| reports::usage(client, range, &everything, bucket, USERS_AND_PATIENTS);
    let latency = reports::latency(
        client,
        range,
        &everything,
        &no_latency_filters,
        Bucket::Total,
    );
    (
        usage(Bucket::Total).await.unwrap().rows,
        usage(Bucket::Month).await.unwrap().rows,
        usage(Bucket::Day).await.unwrap().rows,
        latency.await.unwrap().rows,
    )
}

/// A deployment that ran migrations 0001 to 0006 and stored calls in several parts
/// upgrades: every later migration fills its tables from the raw tables, and the reports
/// give the figures of a deployment that had every migration from the start.
#[tokio::test]
async fn upgrade_from_0006_fills_later_rollups() {
    let Some(client) = database("upgrade").await else {
        return;
    };
    let calls = sink_spread_calls(&client, "upgrade", 3).await;
    let range =
        TimeRange::parse(Some("2026-03-01T10:00:00Z"), Some("2026-03-12T02:00:00Z")).unwrap();
    let before = upgraded_figures(&client, &range).await;
    let in_range = calls
        .iter()
        .filter(|(hours, _)| {
            let seconds = BASE_MICROS / 1_000_000 + hours * 3600;
            seconds >= range.from && seconds < range.to
        })
        .count();
    assert_eq!(before.0.len(), 1, "{:?}", before.0);
    assert_eq!(before.0[0].calls, in_range as u64);
    assert_eq!(before.0[0].token_grants, 3);
    assert_eq!(
        before.0[0].users,
        Some(10),
        "users 0 to 4, 7 and 9 of the calls, 20 to 22 of the grants"
    );

    // Back to the schema of 0006: drop what the later migrations made, and their records.
    for statement in [
        "DROP TABLE IF EXISTS latency_digest_hourly_from_api_calls",
        "DROP TABLE IF EXISTS latency_digest_hourly",
        "DROP TABLE IF EXISTS usage_presence_users_from_api_calls",
        "DROP TABLE IF EXISTS usage_presence_patients_from_api_calls",
        "DROP TABLE IF EXISTS usage_presence_from_authorizations",
        "DROP TABLE IF EXISTS usage_presence_from_token_grants",
        "DROP TABLE IF EXISTS usage_presence",
        "CREATE TABLE kept_migrations AS schema_migrations",
        "INSERT INTO kept_migrations SELECT * FROM schema_migrations WHERE version <= 6",
        "DROP TABLE schema_migrations",
        "RENAME TABLE kept_migrations TO schema_migrations",
    ] {
        client.execute(statement).await.unwrap();
    }
    let parts: Vec<u64> = client
        .fetch_all(
            "SELECT count() FROM system.parts \
             WHERE database = currentDatabase() AND table = 'api_calls' AND active",
        )
        .await
        .unwrap();
    assert!(parts[0] > 1, "api_calls has several parts: {parts:?}");

    let report = migrate::migrate(&client).await.unwrap();
    let later: Vec<String> = migrate::migrations()
        .iter()
        .filter(|m| m.version > 6)
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(report.applied, later, "{report:?}");
    let after = upgraded_figures(&client, &range).await;
    assert_eq!(after.0, before.0, "total");
    assert_eq!(after.1, before.1, "months");
    assert_eq!(after.2, before.2, "days");
    assert_eq!(after.3, before.3, "latency");
    client.drop_database().await.unwrap();
}

/// Distinct users in `range` among calls at (Unix seconds, user index).
fn distinct_users_in(calls: &[(i64, u32)], range: &TimeRange) -> u64 {
    let users: std::collections::HashSet<u32> = calls
        .iter()
        .filter(|(seconds, _)| {
            // A range covers the hours whose start is in it.
            let hour = seconds - seconds.rem_euclid(3600);
            hour >= range.from && hour < range.to
        })
        .map(|&(_, user)| user)
        .collect();
    users.len() as u64
}

/// Exact distinct counts across a 64-day window of `usage_presence` (2026-04-01 starts
/// day 20544 = 321 * 64) and across months, with edge hours on both sides.
#[tokio::test]
async fn distinct_counts_cross_windows_and_months() {
    let Some(client) = database("windows").await else {
        return;
    };
    let (_dir, log) = empty_log().await;
    let march_30 = 1_774_828_800; // 2026-03-30T00:00:00Z
    let calls: Vec<(i64, u32)> = [
        (-30, 1), // March 28, before the range
        (3, 2),   // March 30 03:00, before the range's first hour
        (6, 3),   // 06:00, the range's first hour
        (30, 4),  // March 31, the last day of window 320
        (50, 3),  // April 1 02:00, the first day of window 321
        (60, 5),
        (80, 6), // April 2
        (97, 7), // April 3 01:00, the range's last hour
        (98, 8), // April 3 02:00, after the range
    ]
    .iter()
    .map(|&(hours, user)| (march_30 + hours * 3600 + 1800, user))
    .collect();
    for (index, &(seconds, user)) in calls.iter().enumerate() {
        let mut call = api_call(index as u32, "north", "app-a", 200, 1000);
        call.occurred_at = seconds * 1_000_000;
        call.user_id = Some(format!("user-{user}"));
        call.patient = Some(format!("patient-{user}"));
        append(&log, topics::API, AnyEvent::ApiCall(call)).await;
    }
    let log: Arc<dyn Log> = Arc::new(log);
    run_sink(log, &client, "windows").await;

    let range =
        TimeRange::parse(Some("2026-03-30T06:00:00Z"), Some("2026-04-03T02:00:00Z")).unwrap();
    let app_a = Filters {
        site: None,
        app: Some("app-a".to_string()),
    };
    let total = reports::usage(&client, &range, &app_a, Bucket::Total, USERS_AND_PATIENTS)
        .await
        .unwrap();
    assert_eq!(distinct_users_in(&calls, &range), 5, "users 3 to 7");
    assert_eq!(total.rows.len(), 1, "{:?}", total.rows);
    assert_eq!(total.rows[0].calls, 6);
    assert_eq!(total.rows[0].users, Some(5));
    assert_eq!(total.rows[0].patients, Some(5));

    let months = reports::usage(&client, &range, &app_a, Bucket::Month, USERS_AND_PATIENTS)
        .await
        .unwrap();
    let april = TimeRange::parse(Some("2026-04-01"), Some("2026-04-03T02:00:00Z")).unwrap();
    let march = TimeRange {
        from: range.from,
        to: april.from,
    };
    let found: Vec<(&str, u64, Option<u64>, Option<u64>)> = months
        .rows
        .iter()
        .map(|r| (r.bucket.as_str(), r.calls, r.users, r.patients))
        .collect();
    let (in_march, in_april) = (
        distinct_users_in(&calls, &march),
        distinct_users_in(&calls, &april),
    );
    assert_eq!((in_march, in_april), (2, 4), "users 3 and 4; 3, 5, 6 and 7");
    assert_eq!(
        found,
        [
            ("2026-03-01T00:00:00Z", 2, Some(in_march), Some(in_march)),
            ("2026-04-01T00:00:00Z", 4, Some(in_april), Some(in_april)),
        ]
    );

    // Whole days only, across the window: March 31 to April 2.
    let days = TimeRange::parse(Some("2026-03-31"), Some("2026-04-03")).unwrap();
    let users_only = Distinct {
        users: true,
        patients: false,
    };
    let whole = reports::usage(&client, &days, &app_a, Bucket::Total, users_only)
        .await
        .unwrap();
    assert_eq!(whole.rows[0].users, Some(distinct_users_in(&calls, &days)));
    assert_eq!(whole.rows[0].users, Some(4), "users 4, 3, 5 and 6");
    assert_eq!(whole.rows[0].patients, None);

    // An end after what ClickHouse 18.16 can store means the same as no later end.
    let open_ended = TimeRange::parse(Some("2026-03-30T06:00:00Z"), Some("2200-01-01")).unwrap();
    let rest = reports::usage(
        &client,
        &open_ended,
        &app_a,
        Bucket::Total,
        USERS_AND_PATIENTS,
    )
    .await
    .unwrap();
    assert_eq!(rest.rows.len(), 1, "{:?}", rest.rows);
    assert_eq!(rest.rows[0].calls, 7, "every call from 06:00 on March 30");
    assert_eq!(
        rest.rows[0].users,
        Some(distinct_users_in(&calls, &open_ended))
    );
    assert_eq!(rest.rows[0].users, Some(6), "users 3 to 8");

    // Another site has no rows: no counts, not an error.
    let south = Filters {
        site: Some("south".to_string()),
        app: None,
    };
    let none = reports::usage(&client, &range, &south, Bucket::Total, USERS_AND_PATIENTS)
        .await
        .unwrap();
    assert!(none.rows.is_empty(), "{:?}", none.rows);
    client.drop_database().await.unwrap();
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
    let (_dir, log) = empty_log().await;
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
