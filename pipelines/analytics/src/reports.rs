//! The queries behind `hearth analytics report` and `GET /admin/analytics/...`.
//!
//! The reports read the rollups, so their cost depends on the number of hours or days,
//! sites and apps in the range more than on the number of calls. Unless the buckets are
//! hours, the usage and latency reports split the range: the whole UTC days inside it come
//! from the daily rollups and the hours before the first and after the last midnight from
//! the hourly ones. Both parts hold the same aggregate states, and the query merges them
//! in one `GROUP BY`, so distinct counts over the whole range stay distinct. Two reports
//! also read raw tables, over at most 23 hours on each side of the range or for one app:
//! the exact distinct counts of total and month buckets, and the latency of one app.
//! The rollups are AggregatingMergeTree and SummingMergeTree tables, and every query
//! aggregates with `GROUP BY`, so the figures are right before ClickHouse merges parts.
//! Times are UTC; a range covers the hours whose start is in `[from, to)`.

use std::collections::HashMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::client::ClickHouse;
use crate::sql::quote;
use crate::{Error, Result};

/// Range of a report when the request names no start: the 7 days before its end.
const DEFAULT_RANGE_SECONDS: i64 = 7 * 24 * 3600;

const DAY_SECONDS: i64 = 24 * 3600;

/// 2106-02-06T23:59:59Z. ClickHouse 18.16's date functions return 0000-00-00 for later
/// `DateTime` values, so a report with a later end would find nothing.
const LAST_TIME: i64 = 4_294_943_999;

/// Rows a report returns at most, so a wide range with hourly buckets cannot exhaust the
/// server's memory; the response says when rows were left out.
pub const MAX_ROWS: usize = 10_000;

/// A time range `[from, to)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    /// Parses optional `from` and `to` values: RFC 3339 timestamps, dates (`2026-01-31`,
    /// meaning midnight UTC) or Unix seconds. `to` defaults to now and `from` to 7 days
    /// before `to`. The range is cut to the times ClickHouse 18.16 stores, 1970-01-01 to
    /// [`LAST_TIME`], and a `from` after them is invalid.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<TimeRange> {
        let to = match to {
            Some(text) => parse_time("to", text)?,
            None => OffsetDateTime::now_utc().unix_timestamp(),
        };
        let from = match from {
            Some(text) => parse_time("from", text)?,
            None => to - DEFAULT_RANGE_SECONDS,
        };
        if from >= LAST_TIME {
            return Err(Error::InvalidRequest(format!(
                "invalid from '{}': a report must start before {}, the last second that \
                 ClickHouse 18.16 converts to a date",
                format_time(from),
                format_time(LAST_TIME)
            )));
        }
        // Nothing can be stored before 1970 or later than LAST_TIME, so the range means
        // the same without those parts.
        let from = from.max(0);
        let to = to.min(LAST_TIME);
        if from >= to {
            return Err(Error::InvalidRequest(format!(
                "invalid time range: from ({}) must be before to ({})",
                format_time(from),
                format_time(to)
            )));
        }
        Ok(TimeRange { from, to })
    }

    fn condition(&self, column: &str) -> String {
        format!(
            "{column} >= toDateTime({}, 'UTC') AND {column} < toDateTime({}, 'UTC')",
            self.from.clamp(0, i64::from(u32::MAX)),
            self.to.clamp(0, i64::from(u32::MAX))
        )
    }

    /// The condition on the `day` column of a daily rollup, for a range of whole days.
    fn day_condition(&self) -> String {
        format!(
            "day >= toDate(toDateTime({}, 'UTC')) AND day < toDate(toDateTime({}, 'UTC'))",
            self.from.clamp(0, i64::from(u32::MAX)),
            self.to.clamp(0, i64::from(u32::MAX))
        )
    }
}

/// The parts of a range that a report reads: whole UTC days from a daily rollup, and the
/// hours before the first and after the last midnight from an hourly rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    /// Whole days, from the first to the last midnight in the range.
    days: Option<TimeRange>,
    /// The hours from the range's start to the first midnight.
    head: Option<TimeRange>,
    /// The hours from the last midnight to the range's end.
    tail: Option<TimeRange>,
}

impl Parts {
    /// Splits `range` at its first and last midnight. Hourly buckets, and ranges without a
    /// whole day inside, read only hourly rows.
    fn of(range: &TimeRange, bucket: Bucket) -> Parts {
        let first_midnight = range.from.div_euclid(DAY_SECONDS) * DAY_SECONDS
            + if range.from.rem_euclid(DAY_SECONDS) == 0 {
                0
            } else {
                DAY_SECONDS
            };
        let last_midnight = range.to.div_euclid(DAY_SECONDS) * DAY_SECONDS;
        if bucket == Bucket::Hour || first_midnight >= last_midnight {
            return Parts {
                days: None,
                head: Some(*range),
                tail: None,
            };
        }
        let part = |from: i64, to: i64| (from < to).then_some(TimeRange { from, to });
        Parts {
            days: part(first_midnight, last_midnight),
            head: part(range.from, first_midnight),
            tail: part(last_midnight, range.to),
        }
    }

    /// Returns the condition on the `hour` column of an hourly rollup, or `None` when the
    /// range has no hours outside whole days.
    fn hour_condition(&self) -> Option<String> {
        let conditions: Vec<String> = [self.head, self.tail]
            .iter()
            .flatten()
            .map(|part| format!("({})", part.condition("hour")))
            .collect();
        (!conditions.is_empty()).then(|| conditions.join(" OR "))
    }

    /// Builds a subquery over the daily and the hourly rollup that returns `columns` of the
    /// rows in the range, plus `time`, the start of each row's day or hour. `conditions` are
    /// appended to both parts' `WHERE`.
    fn source(&self, daily: &str, hourly: &str, columns: &str, conditions: &str) -> String {
        let mut parts = Vec::new();
        if let Some(days) = self.days {
            parts.push(format!(
                "SELECT toDateTime(day, 'UTC') AS time, {columns} FROM {daily} \
                 WHERE {days}{conditions}",
                days = days.day_condition(),
            ));
        }
        if let Some(hours) = self.hour_condition() {
            parts.push(format!(
                "SELECT hour AS time, {columns} FROM {hourly} WHERE ({hours}){conditions}"
            ));
        }
        format!("({})", parts.join(" UNION ALL "))
    }
}

fn parse_time(name: &str, text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(text, &date_format) {
        return Ok(PrimitiveDateTime::new(date, Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp());
    }
    Err(Error::InvalidRequest(format!(
        "invalid {name} '{text}': expected an RFC 3339 time such as 2026-01-31T08:00:00Z, \
         a date such as 2026-01-31, or Unix seconds"
    )))
}

/// Formats Unix seconds as an RFC 3339 UTC time.
pub fn format_time(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

/// Size of the time buckets of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One bucket for the whole range, labelled with its start.
    Total,
    Hour,
    Day,
    Month,
}

impl Bucket {
    pub fn parse(text: Option<&str>) -> Result<Bucket> {
        match text.unwrap_or("total") {
            "total" => Ok(Bucket::Total),
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            "month" => Ok(Bucket::Month),
            other => Err(Error::InvalidRequest(format!(
                "invalid bucket '{other}': expected total, hour, day or month"
            ))),
        }
    }

    /// Returns the SQL for the start of a row's bucket, from the `time` column of
    /// [`Parts::source`].
    fn expression(self, range: &TimeRange) -> String {
        match self {
            Bucket::Total => format!("toDateTime({}, 'UTC')", range.from.max(0)),
            Bucket::Hour => "time".to_string(),
            Bucket::Day => "toStartOfDay(time)".to_string(),
            Bucket::Month => "toDateTime(toStartOfMonth(time), 'UTC')".to_string(),
        }
    }
}

/// Filters every report accepts. Empty values are treated as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub site: Option<String>,
    pub app: Option<String>,
}

impl Filters {
    /// Returns whether the filters select one app.
    pub fn one_app(&self) -> bool {
        self.app.as_deref().is_some_and(|app| !app.is_empty())
    }

    /// Returns whether the filters select one site.
    pub fn one_site(&self) -> bool {
        self.site.as_deref().is_some_and(|site| !site.is_empty())
    }

    fn conditions(&self, app_column: &str) -> String {
        let mut sql = String::new();
        if let Some(site) = self.site.as_deref().filter(|s| !s.is_empty()) {
            sql.push_str(&format!(" AND site_id = {}", quote(site)));
        }
        if let Some(app) = self.app.as_deref().filter(|s| !s.is_empty()) {
            sql.push_str(&format!(" AND {app_column} = {}", quote(app)));
        }
        sql
    }
}

/// A report's rows with the range they cover.
#[derive(Debug, Clone, Serialize)]
pub struct Report<T> {
    pub from: String,
    pub to: String,
    /// True when the report had more than [`MAX_ROWS`] rows and the rest were left out.
    pub truncated: bool,
    pub rows: Vec<T>,
}

impl<T> Report<T> {
    fn new(range: &TimeRange, mut rows: Vec<T>) -> Report<T> {
        let truncated = rows.len() > MAX_ROWS;
        rows.truncate(MAX_ROWS);
        Report {
            from: format_time(range.from),
            to: format_time(range.to),
            truncated,
            rows,
        }
    }
}

/// Usage of one app at one site in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// Start of the bucket.
    pub bucket: String,
    pub site_id: String,
    pub client_id: String,
    /// HTTP calls of every surface (FHIR, auth, bulk, admin).
    pub calls: u64,
    pub fhir_calls: u64,
    /// Calls answered with status 400 or above.
    pub errors: u64,
    /// Authorizations granted: EHR launches plus standalone launches.
    pub launches: u64,
    pub ehr_launches: u64,
    /// Authorizations denied.
    pub denials: u64,
    /// Access tokens issued, refreshes included.
    pub token_grants: u64,
    /// Distinct users seen in calls, authorizations and token grants: exact with total
    /// and month buckets, an estimate with day and hour buckets (ClickHouse `uniq`, exact
    /// up to 65,536 per row). `None` (JSON `null`) when not counted.
    pub users: Option<u64>,
    /// Distinct patients in context, counted like `users`. `None` (JSON `null`) when not
    /// counted.
    pub patients: Option<u64>,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct UsageRecord {
    bucket: u32,
    site_id: String,
    client_id: String,
    calls: u64,
    fhir_calls: u64,
    errors: u64,
    launches: u64,
    ehr_launches: u64,
    denials: u64,
    token_grants: u64,
    users: u64,
    patients: u64,
}

/// The distinct counts a usage report computes. They cost more than the sums: exact
/// counts read a row per user or patient and app, and merging `uniq` states reads every
/// hash of every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distinct {
    pub users: bool,
    pub patients: bool,
}

impl Distinct {
    /// No distinct counts: the sums alone.
    pub const NONE: Distinct = Distinct {
        users: false,
        patients: false,
    };

    /// Returns the counts of a request that does not choose: distinct users for one site
    /// or one app, and distinct patients for one app.
    pub fn default_for(filters: &Filters) -> Distinct {
        Distinct {
            users: filters.one_site() || filters.one_app(),
            patients: filters.one_app(),
        }
    }
}

/// Computes calls, launches, grants and the `distinct` counts per bucket, site and app.
/// The sums come from `usage_daily` for the whole days of the range and `usage_hourly`
/// for the hours around them. Distinct counts of day and hour buckets merge the `uniq`
/// states of the same rows. Those of total and month buckets are exact: a second query,
/// from [`distinct_sql`], runs next to the sums.
pub async fn usage(
    client: &ClickHouse,
    range: &TimeRange,
    filters: &Filters,
    bucket: Bucket,
    distinct: Distinct,
) -> Result<Report<UsageRow>> {
    let exact = (distinct.users || distinct.patients)
        .then(|| distinct_sql(range, filters, bucket, distinct))
        .flatten();
    let merged = if exact.is_some() {
        Distinct::NONE
    } else {
        distinct
    };
    let sums_sql = usage_sql(range, filters, bucket, merged);
    let sums = client.fetch_all::<UsageRecord>(&sums_sql);
    let (records, counts) = match exact {
        Some(sql) => {
            let (records, counts) =
                tokio::try_join!(sums, client.fetch_all::<DistinctRecord>(&sql))?;
            (records, Some(counts))
        }
        None => (sums.await?, None),
    };
    let counts: Option<HashMap<BucketKey, (u64, u64)>> = counts.map(|records| {
        records
            .into_iter()
            .map(|r| ((r.bucket, r.site_id, r.client_id), (r.users, r.patients)))
            .collect()
    });
    let rows = records
        .into_iter()
        .map(|r| {
            // A bucket, site and app without a user or patient has no exact counts row.
            let (users, patients) = match &counts {
                Some(counts) => counts
                    .get(&(r.bucket, r.site_id.clone(), r.client_id.clone()))
                    .copied()
                    .unwrap_or((0, 0)),
                None => (r.users, r.patients),
            };
            UsageRow {
                bucket: format_time(i64::from(r.bucket)),
                users: distinct.users.then_some(users),
                patients: distinct.patients.then_some(patients),
                site_id: r.site_id,
                client_id: r.client_id,
                calls: r.calls,
                fhir_calls: r.fhir_calls,
                errors: r.errors,
                launches: r.launches,
                ehr_launches: r.ehr_launches,
                denials: r.denials,
                token_grants: r.token_grants,
            }
        })
        .collect();
    Ok(Report::new(range, rows))
}

/// Builds the query of the sums, and of the `distinct` counts it merges from `uniq`
/// states.
fn usage_sql(range: &TimeRange, filters: &Filters, bucket: Bucket, distinct: Distinct) -> String {
    let parts = Parts::of(range, bucket);
    let mut columns = "site_id, client_id, calls, fhir_calls, errors, launches, ehr_launches, \
                       denials, token_grants"
        .to_string();
    let mut merge = |counted: bool, column: &str| {
        if counted {
            columns.push_str(&format!(", {column}"));
            format!("uniqIfMerge({column})")
        } else {
            "toUInt64(0)".to_string()
        }
    };
    let users_total = merge(distinct.users, "users");
    let patients_total = merge(distinct.patients, "patients");
    format!(
        "SELECT {bucket} AS bucket, site_id, client_id, \
         sumMerge(calls) AS calls, sumMerge(fhir_calls) AS fhir_calls, \
         sumMerge(errors) AS errors, sumMerge(launches) AS launches, \
         sumMerge(ehr_launches) AS ehr_launches, sumMerge(denials) AS denials, \
         sumMerge(token_grants) AS token_grants, \
         {users_total} AS users, {patients_total} AS patients \
         FROM {source} \
         GROUP BY bucket, site_id, client_id \
         ORDER BY bucket, site_id, client_id LIMIT {limit}",
        bucket = bucket.expression(range),
        source = parts.source(
            "usage_daily",
            "usage_hourly",
            &columns,
            &filters.conditions("client_id")
        ),
        limit = MAX_ROWS + 1,
    )
}

/// A bucket's start, site and app.
type BucketKey = (u32, String, String);

#[derive(clickhouse::Row, serde::Deserialize)]
struct DistinctRecord {
    bucket: u32,
    site_id: String,
    client_id: String,
    users: u64,
    patients: u64,
}

/// Maximum month buckets of a report with exact distinct counts. Longer reports merge
/// `uniq` states.
const MAX_EXACT_MONTHS: usize = 120;

/// Days per row of `usage_presence`, one bit of its mask each.
const PRESENCE_WINDOW_DAYS: i64 = 64;

/// Builds the query of exact distinct users and patients per bucket, site and app, for
/// total and month buckets, or returns `None` for other buckets. Each bucket's whole days come from
/// `usage_presence`, whose rows count when their day mask has a bit inside the days. The
/// hours before the first and after the last midnight come from the hashes of the raw
/// tables, at most 23 hours on each side. Counting the hashes with `uniqExact` makes rows
/// stored twice harmless, so the raw tables are read without `FINAL`.
fn distinct_sql(
    range: &TimeRange,
    filters: &Filters,
    bucket: Bucket,
    distinct: Distinct,
) -> Option<String> {
    let buckets = match bucket {
        Bucket::Total => vec![(range.from, *range)],
        Bucket::Month => {
            let months = month_ranges(range);
            if months.len() > MAX_EXACT_MONTHS {
                return None;
            }
            months
        }
        Bucket::Hour | Bucket::Day => return None,
    };
    let conditions = filters.conditions("client_id");
    let kind = match (distinct.users, distinct.patients) {
        (true, false) => " AND kind = 'USER'",
        (false, true) => " AND kind = 'PATIENT'",
        _ => "",
    };
    // The raw rows of the hours around the days read only the hashes that are counted.
    let counted = |wanted: bool, column: &'static str| if wanted { column } else { "toUInt64(0)" };
    let user = counted(distinct.users, "user_hash");
    let patient = counted(distinct.patients, "patient_hash");
    let mut pieces = Vec::new();
    for (label, part) in buckets {
        let label = label.clamp(0, i64::from(u32::MAX));
        let parts = Parts::of(&part, Bucket::Total);
        if let Some(days) = parts.days {
            let first = days.from.div_euclid(DAY_SECONDS).max(0);
            let end = days.to.div_euclid(DAY_SECONDS).max(0);
            if first < end {
                let (first_window, last_window) = presence_windows(first, end);
                pieces.push(format!(
                    "SELECT toUInt32({label}) AS bucket, site_id, client_id, \
                     if(kind = 'USER', hash, toUInt64(0)) AS user, \
                     if(kind = 'PATIENT', hash, toUInt64(0)) AS patient \
                     FROM usage_presence \
                     WHERE window >= {first_window} AND window <= {last_window}{conditions}{kind} \
                     AND bitAnd(finalizeAggregation(days), {mask}) != 0",
                    mask = day_mask_sql(first, end),
                ));
            }
        }
        for hours in [parts.head, parts.tail].into_iter().flatten() {
            // The hours whose start is in the part: calls from the first such hour on.
            let from = hour_ceiling(hours.from).clamp(0, i64::from(u32::MAX));
            let to = hour_ceiling(hours.to).clamp(0, i64::from(u32::MAX));
            if from >= to {
                continue;
            }
            for table in ["api_calls", "authorizations", "token_grants"] {
                pieces.push(format!(
                    "SELECT toUInt32({label}) AS bucket, site_id, client_id, \
                     {user} AS user, {patient} AS patient FROM {table} \
                     WHERE occurred_at >= toDateTime({from}, 'UTC') \
                     AND occurred_at < toDateTime({to}, 'UTC'){conditions}"
                ));
            }
        }
    }
    if pieces.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT bucket, site_id, client_id, \
         uniqExactIf(user, user != 0) AS users, uniqExactIf(patient, patient != 0) AS patients \
         FROM ({pieces}) \
         GROUP BY bucket, site_id, client_id \
         ORDER BY bucket, site_id, client_id LIMIT {limit}",
        pieces = pieces.join(" UNION ALL "),
        limit = MAX_ROWS + 1,
    ))
}

/// Rounds `seconds` up to the start of an hour.
fn hour_ceiling(seconds: i64) -> i64 {
    (seconds + 3599).div_euclid(3600) * 3600
}

/// Returns the first and the last `usage_presence` window of the days numbered `first` to
/// `end` (exclusive).
fn presence_windows(first: i64, end: i64) -> (i64, i64) {
    (
        first / PRESENCE_WINDOW_DAYS,
        (end - 1) / PRESENCE_WINDOW_DAYS,
    )
}

/// Builds the mask of `usage_presence` rows for the days numbered `first` to `end`
/// (exclusive): a SQL expression of the row's `window` that keeps the bits of those days.
fn day_mask_sql(first: i64, end: i64) -> String {
    let mask = |window: i64| {
        let start = window * PRESENCE_WINDOW_DAYS;
        let low = (first - start).clamp(0, PRESENCE_WINDOW_DAYS);
        let high = (end - start).clamp(0, PRESENCE_WINDOW_DAYS);
        let width = high - low;
        if width <= 0 {
            return 0;
        }
        let bits = if width >= 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        bits << low
    };
    let (first_window, last_window) = presence_windows(first, end);
    if first_window == last_window {
        return format!("toUInt64({})", mask(first_window));
    }
    format!(
        "multiIf(window = {first_window}, toUInt64({}), window = {last_window}, toUInt64({}), \
         toUInt64({}))",
        mask(first_window),
        mask(last_window),
        u64::MAX
    )
}

/// Splits a range at the starts of the UTC months inside it: the start of each month with
/// the part of the range in that month.
fn month_ranges(range: &TimeRange) -> Vec<(i64, TimeRange)> {
    let mut months = Vec::new();
    let Ok(start) = OffsetDateTime::from_unix_timestamp(range.from) else {
        return months;
    };
    let mut month = start.date().replace_day(1).unwrap_or(start.date());
    loop {
        let month_start = PrimitiveDateTime::new(month, Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp();
        if month_start >= range.to || months.len() > MAX_EXACT_MONTHS {
            return months;
        }
        let Some(next) = month
            .replace_day(28)
            .ok()
            .and_then(|day| day.checked_add(time::Duration::days(4)))
            .and_then(|day| day.replace_day(1).ok())
        else {
            return months;
        };
        let next_start = PrimitiveDateTime::new(next, Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp();
        months.push((
            month_start,
            TimeRange {
                from: range.from.max(month_start),
                to: range.to.min(next_start),
            },
        ));
        month = next;
    }
}

/// Response times of one kind of call at one site in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyRow {
    pub bucket: String,
    pub site_id: String,
    /// `FHIR`, `AUTH`, `ADMIN`, `BULK` or `CONSOLE`.
    pub surface: String,
    /// FHIR interaction such as `read` or `search-type`; empty outside the FHIR API.
    pub interaction: String,
    pub calls: u64,
    pub errors: u64,
    /// Quantiles in microseconds. With hourly buckets, ClickHouse's `quantiles` samples
    /// 8192 values per state, so these are exact up to 8192 calls per row and estimates
    /// above that. With other buckets they are t-digest estimates.
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: u64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct LatencyRecord {
    bucket: u32,
    site_id: String,
    surface: String,
    interaction: String,
    calls: u64,
    errors: u64,
    quantiles: Vec<f64>,
    latency_sum: u64,
    latency_max: u64,
}

/// Latency filters beyond site: the surface and FHIR interaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyFilters {
    pub surface: Option<String>,
    pub interaction: Option<String>,
}

/// Latency quantiles per bucket, site, surface and interaction. Hourly buckets read
/// `latency_hourly`; other buckets read `latency_daily` for the whole days of the range
/// and `latency_digest_hourly` for the hours around them. The rollups keep no app, so
/// the latency of one app is computed from its rows in `api_calls` over the exact range.
pub async fn latency(
    client: &ClickHouse,
    range: &TimeRange,
    filters: &Filters,
    latency_filters: &LatencyFilters,
    bucket: Bucket,
) -> Result<Report<LatencyRow>> {
    let mut conditions = filters.conditions("client_id");
    if let Some(surface) = latency_filters.surface.as_deref().filter(|s| !s.is_empty()) {
        let surface = surface.to_ascii_uppercase();
        if !["FHIR", "AUTH", "ADMIN", "BULK", "CONSOLE"].contains(&surface.as_str()) {
            return Err(Error::InvalidRequest(format!(
                "invalid surface '{surface}': expected FHIR, AUTH, ADMIN, BULK or CONSOLE"
            )));
        }
        conditions.push_str(&format!(" AND surface = {}", quote(&surface)));
    }
    if let Some(interaction) = latency_filters.interaction.as_deref() {
        conditions.push_str(&format!(" AND interaction = {}", quote(interaction)));
    }
    let sql = if filters.one_app() {
        app_latency_sql(range, bucket, &conditions)
    } else {
        rollup_latency_sql(range, bucket, &conditions)
    };
    let records: Vec<LatencyRecord> = client.fetch_all(&sql).await?;
    let rows = records
        .into_iter()
        .map(|r| {
            let quantile = |i: usize| r.quantiles.get(i).copied().unwrap_or(0.0);
            LatencyRow {
                bucket: format_time(i64::from(r.bucket)),
                p50_us: quantile(0),
                p95_us: quantile(1),
                p99_us: quantile(2),
                mean_us: if r.calls == 0 {
                    0.0
                } else {
                    r.latency_sum as f64 / r.calls as f64
                },
                max_us: r.latency_max,
                site_id: r.site_id,
                surface: r.surface,
                interaction: r.interaction,
                calls: r.calls,
                errors: r.errors,
            }
        })
        .collect();
    Ok(Report::new(range, rows))
}

/// Builds the latency query over the rollups, for all apps.
fn rollup_latency_sql(range: &TimeRange, bucket: Bucket, conditions: &str) -> String {
    let parts = Parts::of(range, bucket);
    // Hourly buckets read the reservoir states of latency_hourly. Other buckets read
    // t-digest states, which latency_daily and latency_digest_hourly both hold, so the
    // days and the hours around them merge into one estimate. quantilesTDigest returns
    // Float32 values; the row reads Float64.
    let (hourly, quantiles) = if bucket == Bucket::Hour {
        (
            "latency_hourly",
            "quantilesMerge(0.5, 0.95, 0.99)(latency_quantiles_us)",
        )
    } else {
        (
            "latency_digest_hourly",
            "arrayMap(x -> toFloat64(x), \
             quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_quantiles_us))",
        )
    };
    let columns = "site_id, surface, interaction, calls, errors, latency_quantiles_us, \
                   latency_sum_us, latency_max_us";
    format!(
        "SELECT {bucket} AS bucket, site_id, toString(surface) AS surface, interaction, \
         sumMerge(calls) AS calls, sumMerge(errors) AS errors, {quantiles} AS quantiles, \
         sumMerge(latency_sum_us) AS latency_sum, maxMerge(latency_max_us) AS latency_max \
         FROM {source} \
         GROUP BY bucket, site_id, surface, interaction \
         ORDER BY bucket, site_id, surface, interaction LIMIT {limit}",
        bucket = bucket.expression(range),
        source = parts.source("latency_daily", hourly, columns, conditions),
        limit = MAX_ROWS + 1,
    )
}

/// Builds the latency query over the raw calls of one app. `FINAL` leaves out rows that a replay
/// of the log stored twice before ClickHouse merged them.
fn app_latency_sql(range: &TimeRange, bucket: Bucket, conditions: &str) -> String {
    format!(
        "SELECT {bucket} AS bucket, site_id, toString(surface) AS surface, interaction, \
         count() AS calls, toUInt64(countIf(status >= 400)) AS errors, \
         quantiles(0.5, 0.95, 0.99)(latency_us) AS quantiles, \
         sum(latency_us) AS latency_sum, max(latency_us) AS latency_max \
         FROM (SELECT toStartOfHour(occurred_at) AS time, site_id, surface, interaction, \
         status, latency_us FROM api_calls FINAL \
         WHERE occurred_at >= toDateTime({from}, 'UTC') \
         AND occurred_at < toDateTime({to}, 'UTC'){conditions}) \
         GROUP BY bucket, site_id, surface, interaction \
         ORDER BY bucket, site_id, surface, interaction LIMIT {limit}",
        bucket = bucket.expression(range),
        from = range.from.max(0),
        to = range.to.max(0),
        limit = MAX_ROWS + 1,
    )
}

/// Activity in one hour of the week, for "when do which users use which apps".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourlyPatternRow {
    /// ISO day of the week: 1 is Monday, 7 is Sunday (UTC).
    pub day_of_week: u8,
    /// Hour of the day, 0 to 23 (UTC).
    pub hour_of_day: u8,
    /// `PATIENT`, `PRACTITIONER`, `RELATED_PERSON`, `SYSTEM`, `OTHER`, or empty when
    /// unknown (calls without a token).
    pub user_type: String,
    pub calls: u64,
    pub launches: u64,
    pub token_grants: u64,
    /// Distinct users in that hour of the week over the whole range (estimate); `None`
    /// (JSON `null`) unless the request selects a site or an app.
    pub users: Option<u64>,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct HourlyPatternRecord {
    day_of_week: u8,
    hour_of_day: u8,
    user_type: String,
    calls: u64,
    launches: u64,
    token_grants: u64,
    users: u64,
}

/// Calls, launches and token grants per day of week, hour of day and user type, from
/// `usage_hourly`. Distinct users are counted only for one site or one app. Each
/// hourly row keeps a `uniq` state per site, app and user type, so merging those of every
/// site and app over a month reads about one hash per call. The sums alone read 8 bytes
/// per row and column.
pub async fn hourly_pattern(
    client: &ClickHouse,
    range: &TimeRange,
    filters: &Filters,
) -> Result<Report<HourlyPatternRow>> {
    let with_users = filters.one_site() || filters.one_app();
    let users = if with_users {
        "uniqIfMerge(users)"
    } else {
        "toUInt64(0)"
    };
    let sql = format!(
        "SELECT toDayOfWeek(hour) AS day_of_week, toHour(hour) AS hour_of_day, \
         toString(user_type) AS user_type, \
         sumMerge(calls) AS calls, sumMerge(launches) AS launches, \
         sumMerge(token_grants) AS token_grants, {users} AS users \
         FROM usage_hourly WHERE {range}{filters} \
         GROUP BY day_of_week, hour_of_day, user_type \
         ORDER BY day_of_week, hour_of_day, user_type",
        range = range.condition("hour"),
        filters = filters.conditions("client_id"),
    );
    let records: Vec<HourlyPatternRecord> = client.fetch_all(&sql).await?;
    let rows = records
        .into_iter()
        .map(|r| HourlyPatternRow {
            day_of_week: r.day_of_week,
            hour_of_day: r.hour_of_day,
            user_type: r.user_type,
            calls: r.calls,
            launches: r.launches,
            token_grants: r.token_grants,
            users: with_users.then_some(r.users),
        })
        .collect();
    Ok(Report::new(range, rows))
}

/// Calls of one app answered with one status and error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clickhouse::Row, serde::Deserialize)]
pub struct ErrorRow {
    /// Empty for calls without a client, such as requests with no token.
    pub client_id: String,
    pub status: u16,
    /// Hearth's error code of the response, e.g. `invalid_grant` or `not-found`.
    pub error_code: String,
    pub calls: u64,
}

/// Calls with status 400 and above per client, status and error code, most frequent
/// first.
pub async fn errors(
    client: &ClickHouse,
    range: &TimeRange,
    filters: &Filters,
) -> Result<Report<ErrorRow>> {
    let sql = format!(
        "SELECT client_id, status, error_code, sum(calls) AS calls \
         FROM status_hourly WHERE status >= 400 AND {range}{filters} \
         GROUP BY client_id, status, error_code \
         ORDER BY calls DESC, client_id, status, error_code LIMIT {limit}",
        range = range.condition("hour"),
        filters = filters.conditions("client_id"),
        limit = MAX_ROWS + 1,
    );
    let rows: Vec<ErrorRow> = client.fetch_all(&sql).await?;
    Ok(Report::new(range, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms() {
        let range = TimeRange::parse(Some("2026-01-31"), Some("2026-01-31T08:00:00Z")).unwrap();
        assert_eq!(range.from, 1_769_817_600);
        assert_eq!(range.to, 1_769_817_600 + 8 * 3600);
        let range = TimeRange::parse(Some("100"), Some("200")).unwrap();
        assert_eq!((range.from, range.to), (100, 200));
    }

    #[test]
    fn ends_clamped_to_storable_times() {
        let range = TimeRange::parse(Some("2026-01-01"), Some("2200-01-01")).unwrap();
        assert_eq!(range.to, LAST_TIME);
        assert_eq!(format_time(range.to), "2106-02-06T23:59:59Z");
        let early = TimeRange::parse(Some("-5"), Some("100")).unwrap();
        assert_eq!((early.from, early.to), (0, 100));
        let error = TimeRange::parse(None, Some("0")).unwrap_err();
        assert!(error.to_string().contains("must be before"), "{error}");
        let error = TimeRange::parse(Some("2200-01-01"), Some("2300-01-01")).unwrap_err();
        assert!(error.to_string().contains("invalid from"), "{error}");
        assert!(
            error.to_string().contains("2106-02-06T23:59:59Z"),
            "{error}"
        );
    }

    #[test]
    fn range_defaults_to_seven_days() {
        let range = TimeRange::parse(None, Some("2026-01-31")).unwrap();
        assert_eq!(range.to - range.from, 7 * 24 * 3600);
    }

    #[test]
    fn bad_ranges_rejected() {
        let error = TimeRange::parse(Some("yesterday"), None).unwrap_err();
        assert!(
            error.to_string().contains("invalid from 'yesterday'"),
            "{error}"
        );
        let error = TimeRange::parse(Some("2026-02-01"), Some("2026-01-01")).unwrap_err();
        assert!(error.to_string().contains("must be before"), "{error}");
    }

    #[test]
    fn filters_are_quoted() {
        let filters = Filters {
            site: Some("a'b".to_string()),
            app: Some(String::new()),
        };
        assert_eq!(filters.conditions("client_id"), " AND site_id = 'a\\'b'");
    }

    #[test]
    fn whole_day_ranges_read_only_daily_rollups() {
        let days = TimeRange::parse(Some("2026-03-01"), Some("2026-03-31")).unwrap();
        for bucket in [Bucket::Total, Bucket::Day, Bucket::Month] {
            let parts = Parts::of(&days, bucket);
            assert_eq!(parts.days, Some(days), "{bucket:?}");
            assert_eq!(parts.head, None, "{bucket:?}");
            assert_eq!(parts.tail, None, "{bucket:?}");
            assert_eq!(parts.hour_condition(), None, "{bucket:?}");
        }
        assert_eq!(
            days.day_condition(),
            "day >= toDate(toDateTime(1772323200, 'UTC')) \
             AND day < toDate(toDateTime(1774915200, 'UTC'))"
        );
    }

    #[test]
    fn partial_days_split_at_midnights() {
        let range =
            TimeRange::parse(Some("2026-03-01T06:30:00Z"), Some("2026-03-04T02:00:00Z")).unwrap();
        let parts = Parts::of(&range, Bucket::Total);
        let midnight = |date: &str| parse_time("test", date).unwrap();
        assert_eq!(
            parts.days,
            Some(TimeRange {
                from: midnight("2026-03-02"),
                to: midnight("2026-03-04"),
            })
        );
        assert_eq!(
            parts.head,
            Some(TimeRange {
                from: range.from,
                to: midnight("2026-03-02"),
            })
        );
        assert_eq!(
            parts.tail,
            Some(TimeRange {
                from: midnight("2026-03-04"),
                to: range.to,
            })
        );
        let source = parts.source("daily", "hourly", "calls", " AND site_id = 'x'");
        assert!(source.contains(" UNION ALL "), "{source}");
        assert!(
            source.contains(&format!(
                "(hour >= toDateTime({}, 'UTC') AND hour < toDateTime({}, 'UTC')) OR (hour >= \
                 toDateTime({}, 'UTC') AND hour < toDateTime({}, 'UTC'))",
                range.from,
                midnight("2026-03-02"),
                midnight("2026-03-04"),
                range.to
            )),
            "{source}"
        );
    }

    #[test]
    fn short_and_hourly_ranges_read_only_hourly_rollups() {
        // No whole day inside: from 06:00 to 06:00 the next day.
        let short =
            TimeRange::parse(Some("2026-03-01T06:00:00Z"), Some("2026-03-02T06:00:00Z")).unwrap();
        let days = TimeRange::parse(Some("2026-03-01"), Some("2026-03-31")).unwrap();
        for (range, bucket) in [(short, Bucket::Total), (days, Bucket::Hour)] {
            let parts = Parts::of(&range, bucket);
            assert_eq!(parts.days, None, "{range:?} {bucket:?}");
            assert_eq!(parts.head, Some(range), "{range:?} {bucket:?}");
            assert_eq!(parts.tail, None, "{range:?} {bucket:?}");
            let source = parts.source("daily", "hourly", "calls", "");
            assert!(!source.contains("daily"), "{source}");
        }
    }

    #[test]
    fn range_ending_at_midnight_has_no_tail() {
        let range = TimeRange::parse(Some("2026-03-01T23:00:00Z"), Some("2026-03-03")).unwrap();
        let parts = Parts::of(&range, Bucket::Day);
        assert_eq!(
            parts.days.map(|days| days.to - days.from),
            Some(DAY_SECONDS)
        );
        assert_eq!(parts.head.map(|head| head.to - head.from), Some(3600));
        assert_eq!(parts.tail, None);
    }

    #[test]
    fn distinct_counts_default_to_selections() {
        let mut filters = Filters::default();
        let none = Distinct {
            users: false,
            patients: false,
        };
        assert_eq!(Distinct::default_for(&filters), none);
        filters.site = Some("north".to_string());
        assert!(Distinct::default_for(&filters).users);
        assert!(!Distinct::default_for(&filters).patients);
        filters.app = Some("app-a".to_string());
        assert!(Distinct::default_for(&filters).users);
        assert!(Distinct::default_for(&filters).patients);
        filters.site = Some(String::new());
        assert!(Distinct::default_for(&filters).users, "app alone");
    }

    #[test]
    fn day_masks_keep_the_days_of_the_range() {
        // Days 64 to 127 are window 1, so days 74 to 83 are its bits 10 to 19.
        assert_eq!(
            day_mask_sql(74, 84),
            format!("toUInt64({})", 0x000f_fc00u64)
        );
        assert_eq!(day_mask_sql(64, 128), format!("toUInt64({})", u64::MAX));
        assert_eq!(day_mask_sql(127, 128), format!("toUInt64({})", 1u64 << 63));
        // Days 120 to 129 span windows 1 (bits 56 to 63) and 2 (bits 0 and 1).
        assert_eq!(
            day_mask_sql(120, 130),
            format!(
                "multiIf(window = 1, toUInt64({}), window = 2, toUInt64(3), toUInt64({}))",
                0xff00_0000_0000_0000u64,
                u64::MAX
            )
        );
    }

    #[test]
    fn hours_round_up_to_their_start() {
        assert_eq!(hour_ceiling(7200), 7200);
        assert_eq!(hour_ceiling(7201), 10_800);
        assert_eq!(hour_ceiling(10_799), 10_800);
    }

    #[test]
    fn months_split_at_their_first_day() {
        let range =
            TimeRange::parse(Some("2026-01-31T06:00:00Z"), Some("2026-03-02T00:00:00Z")).unwrap();
        let midnight = |date: &str| parse_time("test", date).unwrap();
        assert_eq!(
            month_ranges(&range),
            vec![
                (
                    midnight("2026-01-01"),
                    TimeRange {
                        from: range.from,
                        to: midnight("2026-02-01")
                    }
                ),
                (
                    midnight("2026-02-01"),
                    TimeRange {
                        from: midnight("2026-02-01"),
                        to: midnight("2026-03-01")
                    }
                ),
                (
                    midnight("2026-03-01"),
                    TimeRange {
                        from: midnight("2026-03-01"),
                        to: range.to
                    }
                ),
            ]
        );
        let december = TimeRange::parse(Some("2026-12-15"), Some("2027-01-02")).unwrap();
        let starts: Vec<i64> = month_ranges(&december).iter().map(|m| m.0).collect();
        assert_eq!(starts, [midnight("2026-12-01"), midnight("2027-01-01")]);
    }

    #[test]
    fn exact_distinct_counts_read_days_and_raw_hours() {
        let both = Distinct {
            users: true,
            patients: true,
        };
        let range =
            TimeRange::parse(Some("2026-03-01T06:30:00Z"), Some("2026-03-04T02:00:00Z")).unwrap();
        let sql = distinct_sql(&range, &Filters::default(), Bucket::Total, both).unwrap();
        assert_eq!(sql.matches("FROM usage_presence").count(), 1, "{sql}");
        // The head (07:00 to midnight) and the tail (two hours) from each raw table.
        for table in ["api_calls", "authorizations", "token_grants"] {
            assert_eq!(sql.matches(&format!("FROM {table} ")).count(), 2, "{sql}");
        }
        let head = parse_time("test", "2026-03-01T07:00:00Z").unwrap();
        assert!(
            sql.contains(&format!("occurred_at >= toDateTime({head}, 'UTC')")),
            "{sql}"
        );
        assert!(!sql.contains("FINAL"), "{sql}");

        let days = TimeRange::parse(Some("2026-03-01"), Some("2026-03-31")).unwrap();
        let users = Distinct {
            users: true,
            patients: false,
        };
        let sql = distinct_sql(&days, &Filters::default(), Bucket::Total, users).unwrap();
        assert!(!sql.contains("api_calls"), "whole days only: {sql}");
        assert!(sql.contains("AND kind = 'USER'"), "{sql}");
        let months = distinct_sql(&days, &Filters::default(), Bucket::Month, users).unwrap();
        assert!(
            months.contains("toUInt32(1772323200) AS bucket"),
            "{months}"
        );
        for bucket in [Bucket::Day, Bucket::Hour] {
            assert_eq!(distinct_sql(&days, &Filters::default(), bucket, both), None);
        }
    }

    #[test]
    fn bucket_names() {
        assert_eq!(Bucket::parse(None).unwrap(), Bucket::Total);
        assert_eq!(Bucket::parse(Some("day")).unwrap(), Bucket::Day);
        assert!(Bucket::parse(Some("week")).is_err());
    }
}
