//! End-to-end tests of usage analytics: `hearth serve` with a real ClickHouse server. A
//! known mix of launches, denials, token grants, refreshes and FHIR calls goes through
//! the HTTP API, the test counts what it sent and the statuses the server returned, and every
//! report of `/admin/analytics` must return exactly those counts, also after ClickHouse
//! was down for a while and after analytics is switched on for an existing deployment.
//!
//! The shared server comes from `HEARTH_TEST_CLICKHOUSE_URL` (infra/test.sh starts it);
//! the outage test starts a server of its own with infra/clickhouse/start.sh so it can
//! stop it.

// Declared first: its `through_proxy!` macro is used by the modules below. Each suite
// uses part of the module.
#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "smart_cases/target.rs"]
mod target;

// The SMART fixture's modules hold helpers this file does not use.
#[allow(dead_code)]
#[path = "smart_cases/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "smart_cases/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "smart_cases/sample.rs"]
mod sample;
#[allow(dead_code, unused_imports)]
#[path = "smart_cases/support.rs"]
mod support;

#[path = "analytics/mix.rs"]
mod mix;

use std::process::Command;
use std::time::{Duration, Instant};

use hearth_e2e::{free_port, workspace_root};
use serde_json::Value;

use crate::mix::{Expected, Mix};
use crate::support::{ClientAuth, Hearth};
use crate::target::Target;

/// Returns the shared ClickHouse URL, or `None` (with a notice) outside CI when it is
/// not set.
fn clickhouse_url(test: &str) -> Option<String> {
    match std::env::var("HEARTH_TEST_CLICKHOUSE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!(
                "HEARTH_TEST_CLICKHOUSE_URL is not set; infra/test.sh starts ClickHouse and sets it"
            )
        }
        Err(_) => {
            eprintln!("skipping {test}: HEARTH_TEST_CLICKHOUSE_URL is not set");
            None
        }
    }
}

fn database_name(test: &str) -> String {
    format!("e2e_{test}_{}", std::process::id())
}

/// Runs a statement over ClickHouse's HTTP interface and returns the body.
fn clickhouse_query(url: &str, database: &str, sql: &str) -> String {
    let response = reqwest::blocking::Client::new()
        .post(format!("{url}/?database={database}"))
        .body(sql.to_string())
        .send()
        .unwrap_or_else(|e| panic!("ClickHouse at {url} is unreachable: {e}"));
    let status = response.status();
    let body = response.text().unwrap_or_default();
    assert!(status.is_success(), "{sql} failed: {body}");
    body
}

fn drop_database(url: &str, database: &str) {
    clickhouse_query(
        url,
        "default",
        &format!("DROP DATABASE IF EXISTS {database}"),
    );
}

fn analytics_args<'a>(url: &'a str, database: &'a str) -> Vec<&'a str> {
    vec!["--clickhouse-url", url, "--clickhouse-database", database]
}

/// GETs an analytics report with the admin credential.
fn report(hearth: &Hearth, path: &str) -> (u16, Value) {
    let url = format!("{}/admin/analytics/{path}", hearth.base_url());
    hearth.server.get_json(&url)
}

/// Polls until the reports match `expected` or `timeout` passes; returns the time it took
/// or the last mismatch.
fn wait_for_reports(
    hearth: &Hearth,
    expected: &Expected,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let mismatch = match mix::compare_reports(hearth, expected) {
            Ok(()) => return Ok(started.elapsed()),
            Err(mismatch) => mismatch,
        };
        if started.elapsed() > timeout {
            return Err(mismatch);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks that no row of the raw tables is stored twice.
fn assert_no_duplicate_rows(url: &str, database: &str) {
    for table in ["launches", "authorizations", "token_grants", "api_calls"] {
        let sql = format!(
            "SELECT count() - uniqExact(log_partition, log_offset) FROM {table} FORMAT TSV"
        );
        let extra = clickhouse_query(url, database, &sql);
        assert_eq!(extra.trim(), "0", "duplicate rows in {table}");
    }
}

#[test]
fn rollups_match_requests_in_realtime() {
    let Some(url) = clickhouse_url("rollups_match_requests_in_realtime") else {
        return;
    };
    let database = database_name("rollups");
    drop_database(&url, &database);
    let hearth = Hearth::start_with(&analytics_args(&url, &database));

    let mut mix = Mix::new(&hearth);
    mix.run(&hearth);
    // A public client only names itself, so a failed grant in its name is not its call.
    let forged = hearth.token(
        &ClientAuth::public(support::PUBLIC_APP),
        &[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", support::REDIRECT_URI),
            ("code_verifier", &"v".repeat(43)),
        ],
    );
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert_eq!(mix.expected.sites.len(), 2, "the mix uses two sites");
    assert!(!mix.expected.errors.is_empty(), "the mix has failed calls");
    let elapsed = wait_for_reports(&hearth, &mix.expected, Duration::from_secs(5))
        .unwrap_or_else(|mismatch| panic!("reports did not match within 5 s: {mismatch}"));
    eprintln!("reports matched {elapsed:?} after the last request");

    // The raw tables hold what the rollups count, once each, and no secret.
    let launches = clickhouse_query(&url, &database, "SELECT count() FROM launches FORMAT TSV");
    assert_eq!(launches.trim(), mix.expected.ehr_contexts.to_string());
    assert_no_duplicate_rows(&url, &database);
    let dump = clickhouse_query(&url, &database, "SELECT * FROM api_calls FORMAT TSV");
    for secret in &mix.secrets {
        assert!(!dump.contains(secret.as_str()), "a token reached api_calls");
    }
    assert!(
        !dump.contains(&hearth.sample.patient.id),
        "a raw patient id reached api_calls"
    );
    assert_backing_and_cache(&url, &database, &hearth, &mix.expected);
    assert_routes_and_token_apps(&url, &database);

    // The overview of every site and app leaves the distinct counts out unless asked.
    let (status, overview) = report(&hearth, "usage");
    assert_eq!(status, 200, "{overview}");
    let rows = overview["rows"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "{overview}");
    for row in &rows {
        assert!(row["users"].is_null(), "users counted in {row}");
        assert!(row["patients"].is_null(), "patients counted in {row}");
    }
    let (status, with_patients) = report(&hearth, "usage?users=true&patients=true");
    assert_eq!(status, 200, "{with_patients}");
    let rows = with_patients["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let app_rows: Vec<&Value> = rows
        .iter()
        .filter(|row| row["client_id"] == support::PUBLIC_APP)
        .collect();
    assert_eq!(app_rows.len(), mix.expected.sites.len(), "{with_patients}");
    for row in app_rows {
        let site = row["site_id"].as_str().unwrap_or_default();
        let users = mix.expected.sites[site].users.len();
        assert_eq!(row["users"], users, "users in {row}");
        assert_eq!(
            row["patients"],
            mix::expected_patients(site),
            "patients in {row}"
        );
    }
    let (status, sums) = report(
        &hearth,
        &format!("usage?app={}&users=false", support::PUBLIC_APP),
    );
    assert_eq!(status, 200, "{sums}");
    for row in sums["rows"].as_array().cloned().unwrap_or_default() {
        assert!(row["users"].is_null(), "users counted in {row}");
        assert!(row["calls"].is_u64(), "no calls in {row}");
    }
    let (status, pattern) = report(&hearth, "hourly");
    assert_eq!(status, 200, "{pattern}");
    for row in pattern["rows"].as_array().cloned().unwrap_or_default() {
        assert!(
            row["users"].is_null(),
            "users counted without a filter: {row}"
        );
    }

    // An end later than ClickHouse 18.16 can convert still finds today's calls.
    let (status, open_ended) = report(&hearth, "usage?from=2026-01-01&to=2200-01-01");
    assert_eq!(status, 200, "{open_ended}");
    assert_eq!(open_ended["to"], "2106-02-06T23:59:59Z", "{open_ended}");
    let open_rows = open_ended["rows"].as_array().cloned().unwrap_or_default();
    assert!(!open_rows.is_empty(), "{open_ended}");

    // Bad report requests get the admin API's JSON errors.
    let (status, body) = report(&hearth, "usage?from=tomorrow");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    drop_database(&url, &database);
}

/// Checks that admin calls are stored with their route template and successful token
/// requests with the app that authenticated.
fn assert_routes_and_token_apps(url: &str, database: &str) {
    let count = |sql: &str| -> u64 {
        let text = clickhouse_query(url, database, &format!("{sql} FORMAT TSV"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: {text}"))
    };

    let admin = count("SELECT count() FROM api_calls WHERE surface = 'ADMIN'");
    assert!(admin > 0, "the reports are admin calls");
    let unmatched =
        count("SELECT count() FROM api_calls WHERE surface = 'ADMIN' AND route = 'unmatched'");
    assert_eq!(unmatched, 0, "admin calls without a route");
    let analytics_routes =
        count("SELECT count() FROM api_calls WHERE route = '/admin/analytics/usage'");
    assert!(analytics_routes > 0, "no call of /admin/analytics/usage");

    let granted =
        count("SELECT count() FROM api_calls WHERE route = '/auth/token' AND status = 200");
    assert!(granted > 0, "the mix requests tokens");
    let anonymous = count(
        "SELECT count() FROM api_calls \
         WHERE route = '/auth/token' AND status = 200 AND client_id = ''",
    );
    assert_eq!(anonymous, 0, "token grants stored without their app");

    let failed =
        count("SELECT count() FROM api_calls WHERE route = '/auth/token' AND status = 400");
    assert!(failed > 0, "the test sends a failed grant");
    let charged = count(
        "SELECT count() FROM api_calls \
         WHERE route = '/auth/token' AND status = 400 AND client_id != ''",
    );
    assert_eq!(
        charged, 0,
        "a failed public grant stored under the app it named"
    );
}

/// Checks that `usage_hourly` counts the FHIR calls of each site under the site's
/// backing, and that `api_calls` records the EHR-backed site's cache hits and misses,
/// which `latency_hourly` sums.
fn assert_backing_and_cache(url: &str, database: &str, hearth: &Hearth, expected: &Expected) {
    let default_site = &hearth.default_site.id;
    let default_backing = match target::current() {
        Target::Repository => "REPOSITORY",
        Target::EhrProxy => "EHR",
    };
    let mut rows = [
        (
            default_site.clone(),
            default_backing,
            &expected.sites[default_site],
        ),
        ("north".to_string(), "REPOSITORY", &expected.sites["north"]),
    ];
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let expected_rows: String = rows
        .iter()
        .map(|(site, backing, counts)| format!("{site}\t{backing}\t{}\n", counts.fhir_calls()))
        .collect();
    let sql = format!(
        "SELECT site_id, backing, sumMerge(fhir_calls) AS fhir FROM usage_hourly \
         WHERE client_id = '{}' GROUP BY site_id, backing HAVING fhir > 0 \
         ORDER BY site_id FORMAT TSV",
        support::PUBLIC_APP
    );
    assert_eq!(
        clickhouse_query(url, database, &sql),
        expected_rows,
        "FHIR calls per site and backing"
    );

    let sql = format!(
        "SELECT cache, count() FROM api_calls WHERE site_id = '{default_site}' \
         AND surface = 'FHIR' AND client_id = '{}' GROUP BY cache ORDER BY cache FORMAT TSV",
        support::PUBLIC_APP
    );
    let caches = clickhouse_query(url, database, &sql);
    let count_of = |cache: &str| -> u64 {
        caches
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| *name == cache)
            .map(|(_, count)| count.parse().expect("a count"))
            .unwrap_or(0)
    };
    match target::current() {
        Target::Repository => {
            assert_eq!(
                count_of(""),
                expected.sites[default_site].fhir_calls(),
                "a repository site records no cache outcome: {caches}"
            );
        }
        Target::EhrProxy => {
            // The mix reads the same Patient seven times, so the later reads hit the cache.
            assert!(count_of("HIT") > 0, "no cache hit recorded: {caches}");
            assert!(count_of("MISS") > 0, "no cache miss recorded: {caches}");
            assert_eq!(
                count_of("HIT") + count_of("MISS") + count_of("BYPASS"),
                expected.sites[default_site].fhir_calls(),
                "every proxied call records its cache outcome: {caches}"
            );
            let sql = format!(
                "SELECT sumMerge(cache_hits) FROM latency_hourly WHERE site_id = '{default_site}' FORMAT TSV"
            );
            let all_hits = format!(
                "SELECT count() FROM api_calls WHERE site_id = '{default_site}' AND cache = 'HIT' FORMAT TSV"
            );
            assert_eq!(
                clickhouse_query(url, database, &sql),
                clickhouse_query(url, database, &all_hits),
                "latency_hourly sums the cache hits"
            );
        }
    }
}

/// A ClickHouse server of this test alone, stopped when dropped.
struct OwnClickHouse {
    http_port: u16,
    native_port: u16,
    run_dir: tempfile::TempDir,
    url: String,
}

impl OwnClickHouse {
    fn start() -> OwnClickHouse {
        let run_dir = tempfile::tempdir().expect("a run directory");
        let (http_port, native_port) = (free_port(), free_port());
        let mut server = OwnClickHouse {
            http_port,
            native_port,
            run_dir,
            url: String::new(),
        };
        server.url = server.run("start.sh");
        server
    }

    fn run(&self, script: &str) -> String {
        let output = Command::new(workspace_root().join("infra/clickhouse").join(script))
            .arg(self.http_port.to_string())
            .arg(self.native_port.to_string())
            .env("HEARTH_CLICKHOUSE_RUN_DIR", self.run_dir.path())
            .output()
            .expect("the ClickHouse script runs");
        assert!(
            output.status.success(),
            "{script} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Stops the server with SIGTERM to the PID that start.sh recorded.
    fn kill(&self) {
        let pid_file = self.run_dir.path().join("clickhouse.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("start.sh wrote a PID file");
        let status = Command::new("kill")
            .arg(pid.trim())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{}/ping", self.url)).is_ok() {
            assert!(Instant::now() < deadline, "ClickHouse did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::remove_file(pid_file).expect("the PID file is removed");
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("infra/clickhouse/stop.sh"))
            .arg(self.http_port.to_string())
            .env("HEARTH_CLICKHOUSE_RUN_DIR", self.run_dir.path())
            .status();
    }
}

#[test]
fn clickhouse_outage_loses_nothing() {
    if clickhouse_url("clickhouse_outage_loses_nothing").is_none() {
        return;
    }
    let clickhouse = OwnClickHouse::start();
    let database = database_name("outage");
    let hearth = Hearth::start_with(&analytics_args(&clickhouse.url, &database));

    let mut mix = Mix::new(&hearth);
    mix.run(&hearth);
    wait_for_reports(&hearth, &mix.expected, Duration::from_secs(30))
        .unwrap_or_else(|mismatch| panic!("first part not in ClickHouse: {mismatch}"));

    // With ClickHouse down the API keeps serving and the events wait in the log.
    clickhouse.kill();
    mix.run(&hearth);
    let (status, body) = report(&hearth, "usage");
    assert_eq!(status, 503, "{body}");
    std::thread::sleep(Duration::from_secs(3));

    clickhouse.run("start.sh");
    wait_for_reports(&hearth, &mix.expected, Duration::from_secs(60))
        .unwrap_or_else(|mismatch| panic!("events lost in the outage: {mismatch}"));
    // Later batches must not add anything twice.
    std::thread::sleep(Duration::from_secs(3));
    if let Err(mismatch) = mix::compare_reports(&hearth, &mix.expected) {
        panic!("reports changed after catching up: {mismatch}");
    }
    assert_no_duplicate_rows(&clickhouse.url, &database);
}

#[test]
fn analytics_enabled_later_backfills() {
    let Some(url) = clickhouse_url("analytics_enabled_later_backfills") else {
        return;
    };
    let database = database_name("backfill");
    drop_database(&url, &database);
    let hearth = Hearth::start();
    let mut mix = Mix::new(&hearth);
    mix.run(&hearth);
    // The API call events reach the log through a queue: give it time before stopping.
    std::thread::sleep(Duration::from_secs(2));

    let (status, body) = report(&hearth, "usage");
    assert_eq!(status, 503, "analytics is off: {body}");

    let hearth = hearth.restart_with(&analytics_args(&url, &database));
    wait_for_reports(&hearth, &mix.expected, Duration::from_secs(60))
        .unwrap_or_else(|mismatch| panic!("the backfill is incomplete: {mismatch}"));
    assert_no_duplicate_rows(&url, &database);

    // The command line reports the same figures as the admin API. Both get the same range,
    // because a default range ends at the second of the request and labels the rows with
    // its start.
    let now = http::now_seconds();
    let (from, to) = ((now - 86_400).to_string(), (now + 3600).to_string());
    let output = Command::new(hearth_e2e::hearth_bin())
        .args(["analytics", "report", "usage", "--app", support::PUBLIC_APP])
        .args(["--from", &from, "--to", &to])
        .args(analytics_args(&url, &database))
        .output()
        .expect("hearth analytics runs");
    assert!(
        output.status.success(),
        "hearth analytics report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let path = format!("usage?app={}&from={from}&to={to}", support::PUBLIC_APP);
    let (_, served) = report(&hearth, &path);
    assert_eq!(printed["rows"], served["rows"]);

    let output = Command::new(hearth_e2e::hearth_bin())
        .args(["analytics", "migrate"])
        .args(analytics_args(&url, &database))
        .output()
        .expect("hearth analytics runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "migrate failed: {text}");
    assert!(text.contains("applied []"), "nothing left to apply: {text}");
    drop_database(&url, &database);
}

// The realtime test against an EHR-backed default site, whose calls must be counted with
// backing EHR and their cache outcome.
through_proxy!(rollups_match_requests_in_realtime);
