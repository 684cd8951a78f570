//! Usage pages: charts of the analytics reports, drawn in the browser as SVG from
//! `GET /console/usage/data`, which calls the analytics admin API
//! (`/admin/analytics/{usage,hourly,errors,latency}`) with the admin token.
//!
//! The data endpoint narrows every request to what the viewer may see: a site admin's
//! requests always carry its site, and an app vendor's always one of its own apps. When
//! the analytics API is absent or answers that ClickHouse is not configured, the data
//! endpoint returns `{"configured": false}` and the page says so.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ConsoleState;
use crate::error::{ConsoleError, ConsoleResult};
use crate::html::{self, escape};
use crate::session::Viewer;

/// Reports of the analytics API that the console reads.
const REPORTS: &[&str] = &["usage", "hourly", "errors", "latency"];

/// The charts of the usage page: id, title, report, extra parameters, and how the
/// browser turns rows into series (see `console.js`).
const CHARTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "launches",
        "Launches and token grants over time",
        "usage",
        "",
        "time:launches,token_grants",
    ),
    (
        "calls",
        "API calls and errors over time",
        "usage",
        "",
        "time:calls,errors",
    ),
    (
        "per-app",
        "Calls and launches per app and site",
        "usage",
        "bucket=total",
        "group:site_id+client_id:calls,launches,token_grants",
    ),
    (
        "per-site",
        "FHIR transactions per site and EHR",
        "usage",
        "bucket=total",
        "group:site_id:fhir_calls,errors",
    ),
    (
        "hour-of-day",
        "Calls by hour of day (UTC)",
        "hourly",
        "",
        "group:hour_of_day:calls,launches",
    ),
    (
        "day-of-week",
        "Calls by day of week (1 is Monday)",
        "hourly",
        "",
        "group:day_of_week:calls,launches",
    ),
    (
        "user-types",
        "Calls and launches by user type",
        "hourly",
        "",
        "group:user_type:calls,launches,token_grants",
    ),
    (
        "errors",
        "Errors by app, status and code",
        "errors",
        "",
        "group:client_id+status+error_code:calls",
    ),
    (
        "latency",
        "Latency quantiles by surface and interaction (ms)",
        "latency",
        "bucket=total",
        "latency:surface+interaction",
    ),
];

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    range: Option<String>,
    site: Option<String>,
    app: Option<String>,
}

pub async fn page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<UsageQuery>,
) -> ConsoleResult<Response> {
    if !viewer.can_see_usage() {
        return Err(ConsoleError::Forbidden(
            "usage is for administrators and app vendors".into(),
        ));
    }
    let sites: Vec<(String, String)> = state
        .auth
        .store
        .sites()?
        .into_iter()
        .filter(|s| {
            viewer.is_platform_admin()
                || viewer.vendor().is_some()
                || viewer.can_manage_site(&s.site_id)
        })
        .map(|s| (s.site_id, s.name))
        .collect();
    let apps: Vec<(String, String)> = state
        .auth
        .store
        .apps()?
        .into_iter()
        .filter(|a| viewer.can_see_app(a))
        .map(|a| (a.client_id, a.name))
        .collect();

    let range = query
        .range
        .as_deref()
        .filter(|r| ["1d", "7d", "30d"].contains(r))
        .unwrap_or("1d");
    let mut range_options = String::new();
    for (value, label) in [
        ("1d", "Last 24 hours"),
        ("7d", "Last 7 days"),
        ("30d", "Last 30 days"),
    ] {
        let selected = if value == range { " selected" } else { "" };
        range_options.push_str(&format!(
            "<option value=\"{value}\"{selected}>{label}</option>"
        ));
    }
    let site_options = options(
        &sites,
        query
            .site
            .as_deref()
            .or(viewer.admin_site().filter(|_| !viewer.is_platform_admin())),
        (viewer.is_platform_admin() || viewer.vendor().is_some()).then_some("All sites"),
    );
    let app_options = options(
        &apps,
        query.app.as_deref(),
        viewer.vendor().is_none().then_some("All apps"),
    );
    let mut figures = String::new();
    for (id, title, report, params, series) in CHARTS {
        figures.push_str(&format!(
            "<figure class=\"chart\" id=\"chart-{id}\" data-report=\"{report}\" data-params=\"{params}\" data-series=\"{series}\" aria-labelledby=\"title-{id}\">\
             <figcaption id=\"title-{id}\">{title}</figcaption>\
             <div class=\"chart-tools\"><button type=\"button\" class=\"secondary small\" data-toggle=\"table\" aria-pressed=\"false\">Show table</button> \
             <a class=\"csv\" href=\"#\" download=\"{id}.csv\" hidden>Download CSV</a></div>\
             <div class=\"chart-body\" aria-live=\"polite\"><p class=\"loading\">Loading…</p></div></figure>",
            title = escape(title),
        ));
    }
    let body = format!(
        "<h1>Usage</h1>\
         <form method=\"get\" action=\"/console/usage\" class=\"filters\" id=\"usage-filters\">\
         <div><label for=\"range\">Time range</label><select id=\"range\" name=\"range\">{range_options}</select></div>\
         <div><label for=\"site\">Site</label><select id=\"site\" name=\"site\">{site_options}</select></div>\
         <div><label for=\"app\">App</label><select id=\"app\" name=\"app\">{app_options}</select></div>\
         <div><button type=\"submit\" class=\"secondary\">Apply</button></div>\
         <div><label class=\"check\"><input type=\"checkbox\" id=\"live\" checked> Live refresh every 15 s</label></div></form>\
         <p id=\"usage-status\" role=\"status\" class=\"notice\">Loading usage…</p>\
         <div id=\"usage-totals\" class=\"totals\" aria-live=\"polite\"></div>\
         <div class=\"charts\" id=\"usage-charts\">{figures}</div>"
    );
    Ok(html::page(&viewer, "/console/usage", "Usage", &body))
}

fn options(items: &[(String, String)], selected: Option<&str>, all: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(label) = all {
        out.push_str(&format!("<option value=\"\">{label}</option>"));
    }
    for (id, name) in items {
        let mark = if selected == Some(id.as_str()) {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{id}\"{mark}>{name} ({id})</option>",
            id = escape(id),
            name = escape(name),
        ));
    }
    out
}

#[derive(Debug, Default, Deserialize)]
pub struct DataQuery {
    report: String,
    range: Option<String>,
    site: Option<String>,
    app: Option<String>,
    bucket: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// `GET /console/usage/data`: one analytics report for the viewer, as JSON or CSV.
pub async fn data(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<DataQuery>,
) -> ConsoleResult<Response> {
    if !viewer.can_see_usage() {
        return Err(ConsoleError::Forbidden(
            "usage is for administrators and app vendors".into(),
        ));
    }
    if !REPORTS.contains(&query.report.as_str()) {
        return Err(ConsoleError::BadRequest(format!(
            "report {} is not one of {}",
            query.report,
            REPORTS.join(", ")
        )));
    }
    let params = narrowed_params(&state, &viewer, &query)?;
    let Some(base) = state.settings.analytics_url.as_deref() else {
        return Ok(not_configured("analytics is not configured on this server"));
    };
    let mut url = url::Url::parse(&format!("{base}/{}", query.report))
        .map_err(|_| ConsoleError::BadRequest(format!("the analytics URL {base} is not valid")))?;
    url.query_pairs_mut().extend_pairs(&params);
    let response = state
        .http
        .get(url)
        .bearer_auth(&state.auth.settings.admin_token)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, report = %query.report, "the analytics API cannot be reached");
            return Ok(not_configured("the analytics API cannot be reached"));
        }
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status == reqwest::StatusCode::NOT_FOUND
        || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
    {
        let reason = body["error_description"]
            .as_str()
            .unwrap_or("analytics is not configured (this server has no analytics API)");
        return Ok(not_configured(reason));
    }
    if !status.is_success() {
        let reason = body["error_description"]
            .as_str()
            .unwrap_or("the analytics API failed");
        tracing::warn!(status = status.as_u16(), report = %query.report, "the analytics API rejected a console request");
        return Ok((
            StatusCode::BAD_GATEWAY,
            Json(json!({"configured": true, "error": reason})),
        )
            .into_response());
    }
    if query.format.as_deref() == Some("csv") {
        let csv = rows_to_csv(body["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]));
        let mut response = csv.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(value) =
            header::HeaderValue::from_str(&format!("attachment; filename=\"{}.csv\"", query.report))
        {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        return Ok(html::no_store(response));
    }
    let mut body = body;
    if let Some(object) = body.as_object_mut() {
        object.insert("configured".into(), Value::Bool(true));
    }
    Ok(html::no_store(Json(body).into_response()))
}

fn not_configured(reason: &str) -> Response {
    html::no_store(Json(json!({"configured": false, "reason": reason})).into_response())
}

/// The analytics API parameters of a request, narrowed to the viewer's sites and apps.
fn narrowed_params(
    state: &ConsoleState,
    viewer: &Viewer,
    query: &DataQuery,
) -> ConsoleResult<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let seconds = match query.range.as_deref() {
        Some("7d") => 7 * 86_400,
        Some("30d") => 30 * 86_400,
        _ => 86_400,
    };
    let now = hearth_auth::now_micros() / 1_000_000;
    params.push(("from", (now - seconds).to_string()));
    // One second ahead, so calls of the current second are inside the range.
    params.push(("to", (now + 1).to_string()));
    let bucket = match query.bucket.as_deref() {
        Some(b @ ("total" | "hour" | "day")) => b,
        _ if seconds > 86_400 => "day",
        _ => "hour",
    };
    if query.report == "usage" || query.report == "latency" {
        params.push(("bucket", bucket.to_string()));
    }
    if query.report == "usage" {
        // The charts show no distinct counts, and leaving them out keeps the report to
        // sums, which is several times faster over weeks of rollups.
        params.push(("users", "false".to_string()));
        params.push(("patients", "false".to_string()));
    }

    let site = query.site.as_deref().filter(|s| !s.is_empty());
    let site = match viewer.admin_site() {
        Some(own) if !viewer.is_platform_admin() => {
            if site.is_some_and(|s| s != own) {
                return Err(ConsoleError::Forbidden(format!(
                    "you see usage of site {own} only"
                )));
            }
            Some(own)
        }
        _ => site,
    };
    if let Some(site) = site {
        params.push(("site", site.to_string()));
    }
    let app = query.app.as_deref().filter(|a| !a.is_empty());
    if let Some(vendor) = viewer
        .vendor()
        .filter(|_| !viewer.is_platform_admin() && viewer.admin_site().is_none())
    {
        let app = app.ok_or_else(|| ConsoleError::BadRequest("choose one of your apps".into()))?;
        let owned = state
            .auth
            .store
            .app(app)?
            .is_some_and(|a| a.vendor.as_deref() == Some(vendor));
        if !owned {
            return Err(ConsoleError::Forbidden(format!(
                "app {app} is not one of yours"
            )));
        }
    }
    if let Some(app) = app {
        params.push(("app", app.to_string()));
    }
    Ok(params)
}

/// Writes report rows (JSON objects) as CSV with a header of the first row's keys.
pub fn rows_to_csv(rows: &[Value]) -> String {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        return String::new();
    };
    let columns: Vec<&String> = first.keys().collect();
    let mut out = columns
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for row in rows {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| match &row[c.as_str()] {
                Value::String(text) => csv_field(text),
                Value::Null => String::new(),
                other => csv_field(&other.to_string()),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Quotes a CSV field when it needs it (RFC 4180), and neutralizes a leading formula
/// character so spreadsheets do not evaluate it.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_neutralizes() {
        let rows = vec![
            json!({"client_id": "a,b", "calls": 3, "code": "=cmd"}),
            json!({"client_id": "say \"hi\"", "calls": -1, "code": null}),
        ];
        let csv = rows_to_csv(&rows);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], "calls,client_id,code");
        assert_eq!(lines[1], "3,\"a,b\",'=cmd");
        assert_eq!(lines[2], "-1,\"say \"\"hi\"\"\",");
    }

    #[test]
    fn csv_of_no_rows_is_empty() {
        assert_eq!(rows_to_csv(&[]), "");
    }
}
