//! Measures the analytics sink and the report queries against a real ClickHouse.
//!
//! ```text
//! cargo run --release -p hearth-analytics --example sink_throughput -- URL [EVENTS] [BATCH] [REPORTS] [ORDER]
//! ```
//!
//! 1. Appends `EVENTS` ApiCall events (default 1,000,000; over 30 days, 20 sites, 50 apps,
//!    4 interactions, 50,000 users and 200,000 patients) to a fresh embedded log in a
//!    temporary directory. With `ORDER` `spread` (the default), event `i` happens at
//!    `7 * i` seconds modulo 30 days, so a batch of 100,000 events covers about 8 days
//!    and the month repeats every 370,000 events. With `time`, the events are in time
//!    order over the month, as a live log is, so a batch covers a few hours. Then it
//!    runs the sink until it has written all of them into the
//!    database `bench_analytics` at `URL`, with batches of `BATCH` records (default
//!    100,000). Prints events/s from the log into ClickHouse, and the CPU time per event
//!    of the sink and, when `HEARTH_BENCH_CLICKHOUSE_PID` names the server's process, of
//!    ClickHouse.
//! 2. Unless `REPORTS` is 0, prints the median time of each report query over the 30 days
//!    of calls the sink wrote, before and after merging the rollups' parts.
//!
//! The database is dropped first and left in place at the end for inspection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_analytics::pseudonym::Pseudonyms;
use hearth_analytics::reports::{self, Bucket, Distinct, Filters, LatencyFilters, TimeRange};
use hearth_analytics::{ClickHouse, ClickHouseConfig, SinkOptions, migrate, sink};
use hearth_log::embedded::{EmbeddedLog, EmbeddedOptions};
use hearth_log::{Log, topics};
use hearth_schemas::{ApiCall, Backing, Surface, UserType};

/// Concurrent appends, so the embedded log commits them in groups.
const APPEND_TASKS: usize = 256;

/// 2026-03-01 00:00:00 UTC, the start of the synthetic month.
const START_SECONDS: i64 = 1_772_323_200;
const DAYS: i64 = 30;

const INTERACTIONS: [&str; 4] = ["read", "search-type", "create", "history"];

fn argument(args: &[String], index: usize, default: usize) -> usize {
    args.get(index).map_or(default, |arg| {
        arg.parse()
            .unwrap_or_else(|_| panic!("argument {index} must be a number, not {arg:?}"))
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: sink_throughput URL [EVENTS] [BATCH] [REPORTS] [ORDER]");
    let events = argument(&args, 2, 1_000_000);
    let batch = argument(&args, 3, 100_000);
    let reports = argument(&args, 4, 1);
    let order = match args.get(5).map(String::as_str) {
        None | Some("spread") => Order::Spread,
        Some("time") => Order::Time,
        Some(other) => panic!("ORDER must be spread or time, not {other:?}"),
    };

    let mut config = ClickHouseConfig::new(url).expect("a valid ClickHouse URL");
    config.database = "bench_analytics".to_string();
    let client = ClickHouse::new(&config);
    client.drop_database().await.expect("drop the database");
    migrate::migrate(&client)
        .await
        .expect("apply the migrations");

    if events > 0 {
        measure_sink(&client, events, batch, order).await;
    }
    if events > 0 && reports != 0 {
        measure_queries(&client).await;
    }
}

/// Order of the events' times in the log.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Event `i` at `7 * i` seconds modulo the month.
    Spread,
    /// Times rise with the index, spread evenly over the month.
    Time,
}

fn event(index: usize, events: usize, order: Order) -> ApiCall {
    let seconds = match order {
        Order::Spread => START_SECONDS + (index as i64 * 7) % (DAYS * 86_400),
        Order::Time => {
            START_SECONDS + (index as i128 * i128::from(DAYS * 86_400) / events as i128) as i64
        }
    };
    ApiCall {
        event_id: format!("bench-{index}"),
        occurred_at: seconds * 1_000_000,
        request_id: format!("request-{index}"),
        site_id: Some(format!("site-{}", index % 20)),
        surface: Surface::Fhir,
        method: "GET".to_string(),
        route: "/fhir/{type}/{id}".to_string(),
        interaction: Some(INTERACTIONS[index % INTERACTIONS.len()].to_string()),
        operation: None,
        resource_type: Some("Observation".to_string()),
        status: if index.is_multiple_of(50) { 404 } else { 200 },
        latency_us: 500 + (index as i64 * 7919) % 50_000,
        request_bytes: 0,
        response_bytes: 1500,
        client_id: Some(format!("app-{}", index % 50)),
        grant_id: Some(format!("grant-{}", index % 50_000)),
        user_type: Some(if index.is_multiple_of(3) {
            UserType::Patient
        } else {
            UserType::Practitioner
        }),
        user_id: Some(format!("user-{}", index % 50_000)),
        patient: Some(format!("patient-{}", index % 200_000)),
        backing: Some(if index.is_multiple_of(5) {
            Backing::Ehr
        } else {
            Backing::Repository
        }),
        cache: None,
        upstream_status: None,
        upstream_latency_us: None,
        error_code: None,
    }
}

async fn measure_sink(client: &ClickHouse, events: usize, batch: usize, order: Order) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Arc::new(EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("open"));
    log.ensure_topic(topics::AUTH, 1).await.expect("topic");
    log.ensure_topic(topics::API, 1).await.expect("topic");

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..APPEND_TASKS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for index in (task..events).step_by(APPEND_TASKS) {
                let value = hearth_schemas::encode(&event(index, events, order)).expect("encode");
                let key = format!("site-{}", index % 20);
                log.append(topics::API, key.as_bytes(), &value)
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("append task");
    }
    let append = started.elapsed();
    println!(
        "appended {events} ApiCall events ({order:?} order) in {:.1} s ({:.0} events/s)",
        append.as_secs_f64(),
        events as f64 / append.as_secs_f64()
    );

    let options = SinkOptions {
        group: "bench".to_string(),
        max_batch_records: batch,
        max_batch_delay: Duration::from_secs(1),
        stop_at_end: true,
        ..SinkOptions::default()
    };
    let pseudonyms = Pseudonyms::from_key(b"the benchmark's pseudonym key...");
    let server_pid = std::env::var("HEARTH_BENCH_CLICKHOUSE_PID").ok();
    let server_cpu = server_pid.as_deref().and_then(cpu_seconds);
    let sink_cpu = cpu_seconds("self");
    let started = Instant::now();
    let log: Arc<dyn Log> = log;
    let summary = sink::spawn(log, client.clone(), pseudonyms, options)
        .join()
        .await
        .expect("the sink catches up");
    let elapsed = started.elapsed();
    assert_eq!(summary.rows_written, events as u64, "{summary:?}");
    println!(
        "sink: {events} events from the log into ClickHouse in {:.1} s ({:.0} events/s, \
         {} batches of up to {batch}); this includes about 1 s of idle polling at the end",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        summary.batches
    );
    let per_event = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map(|(before, after)| format!("{:.1}", (after - before) * 1e6 / events as f64))
            .unwrap_or_else(|| "unknown".to_string())
    };
    println!(
        "CPU time per event: sink {} us, ClickHouse {} us",
        per_event(sink_cpu, cpu_seconds("self")),
        per_event(server_cpu, server_pid.as_deref().and_then(cpu_seconds)),
    );
}

/// User plus system CPU time of process `pid` (or `self`) in seconds, read from
/// `/proc/PID/stat`, whose clock tick is 1/100 s on Linux.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name start with the third, the state; utime and stime
    // are the 14th and 15th.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split(' ').collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

async fn measure_queries(client: &ClickHouse) {
    time_reports(client, "before merges").await;
    let started = Instant::now();
    for table in [
        "usage_hourly",
        "usage_daily",
        "latency_hourly",
        "latency_daily",
        "latency_digest_hourly",
        "status_hourly",
        "usage_presence",
    ] {
        client
            .execute(&format!("OPTIMIZE TABLE {table} FINAL"))
            .await
            .expect("merge the rollup");
    }
    println!(
        "merged the rollups' parts (OPTIMIZE FINAL, which background merges do over time) \
         in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    time_reports(client, "after merges").await;
}

/// Distinct counts of the usage reports: none (the console's charts), users (the default
/// for every app), and users and patients (the default for one app).
const SUMS: Distinct = Distinct {
    users: false,
    patients: false,
};
const USERS: Distinct = Distinct {
    users: true,
    patients: false,
};
const ALL: Distinct = Distinct {
    users: true,
    patients: true,
};

/// Times every report over the synthetic month.
async fn time_reports(client: &ClickHouse, when: &str) {
    println!("report queries {when}:");
    let range = TimeRange {
        from: START_SECONDS,
        to: START_SECONDS + DAYS * 86_400,
    };
    let all = Filters::default();
    let one_app = Filters {
        site: None,
        app: Some("app-7".to_string()),
    };
    let one_site = Filters {
        site: Some("site-7".to_string()),
        app: None,
    };
    let no_latency_filters = LatencyFilters::default();
    // Starts an hour after midnight, so the reports read 29 days from the daily rollups
    // and 23 hours from the hourly ones.
    let hours = TimeRange {
        from: START_SECONDS + 3600,
        to: START_SECONDS + DAYS * 86_400,
    };
    // Like the console's "Last 30 days": neither end on an hour.
    let console = TimeRange {
        from: START_SECONDS + 3600 + 1234,
        to: START_SECONDS + DAYS * 86_400 - 3600 + 567,
    };
    time(
        "usage per site and app with distinct users, 30 days less 1 hour (days plus hours)",
        || async {
            reports::usage(client, &hours, &all, Bucket::Total, USERS)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "latency per site and interaction, 30 days less 1 hour (days plus hours)",
        || async {
            reports::latency(client, &hours, &all, &no_latency_filters, Bucket::Total)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "usage per day, site and app, no distinct counts, 30 days not on hours (console)",
        || async {
            reports::usage(client, &console, &all, Bucket::Day, SUMS)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "usage per site and app with distinct users, 30 days",
        || async {
            reports::usage(client, &range, &all, Bucket::Total, USERS)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "usage per site and app with distinct users and patients, 30 days",
        || async {
            reports::usage(client, &range, &all, Bucket::Total, ALL)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "usage per site and app with distinct users and patients, 30 days not on hours \
         (console)",
        || async {
            reports::usage(client, &console, &all, Bucket::Total, ALL)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "usage per month, site and app with distinct users and patients, 30 days",
        || async {
            reports::usage(client, &range, &all, Bucket::Month, ALL)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "usage of one app per site and day, with distinct users and patients",
        || async {
            reports::usage(client, &range, &one_app, Bucket::Day, ALL)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time("latency p50/p95/p99 per site and interaction", || async {
        reports::latency(client, &range, &all, &no_latency_filters, Bucket::Total)
            .await
            .map(|r| r.rows.len())
    })
    .await;
    time("hour of day and day of week pattern", || async {
        reports::hourly_pattern(client, &range, &all)
            .await
            .map(|r| r.rows.len())
    })
    .await;
    time(
        "hour of day and day of week pattern of one app, with users",
        || async {
            reports::hourly_pattern(client, &range, &one_app)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time(
        "hour of day and day of week pattern of one site, with users",
        || async {
            reports::hourly_pattern(client, &range, &one_site)
                .await
                .map(|r| r.rows.len())
        },
    )
    .await;
    time("errors per app and status", || async {
        reports::errors(client, &range, &all)
            .await
            .map(|r| r.rows.len())
    })
    .await;
}

/// Runs a report five times and prints the median time.
async fn time<F, Fut>(name: &str, run: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = hearth_analytics::Result<usize>>,
{
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..5 {
        let started = Instant::now();
        rows = run().await.expect("the report runs");
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "  {name}: median {:.1} ms over 5 runs ({rows} rows)",
        times[2].as_secs_f64() * 1000.0
    );
}
