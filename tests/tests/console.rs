//! The console, the provider and patient portals and the bundled demo app, driven in
//! headless Chromium by tests/clients/node/console-flow.cjs against a running `hearth
//! serve` loaded with a Synthea sample.
//!
//! infra/test.sh installs Chromium and playwright-core and sets `HEARTH_TEST_NODE_DIR`.
//! When it is unset, as under a plain `cargo test`, the browser test prints a notice and
//! returns. With `HEARTH_TEST_CLICKHOUSE_URL` set, the server writes analytics to that
//! ClickHouse server and the test requires the usage page to show the launch; without
//! it, the usage page must say that analytics is not configured.
//! With `HEARTH_CONSOLE_SCREENSHOTS` set to a directory, the driver saves each page there
//! at desktop and phone width (docs/console/ holds the committed ones).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hearth_e2e::browser::{self, admin_post, sample_file};
use hearth_e2e::{Backend, Server};
use serde_json::{Value, json};

const DRIVER_TIMEOUT: Duration = Duration::from_secs(420);

const ADMIN: (&str, &str) = ("console-admin", "admin password 1");
const PRACTITIONER: (&str, &str) = ("dr-console", "practitioner password");
const PATIENT: (&str, &str) = ("patient-console", "patient password");

/// Pages the browser test audits for accessibility, each at desktop and phone width.
const AUDITED_PAGES: &[&str] = &[
    "sign-in",
    "sign-in-error",
    "apps",
    "app-register",
    "app-detail",
    "sites",
    "site-ehr",
    "site-settings",
    "users",
    "users-after-disable",
    "provider-portal",
    "authorize-sign-in",
    "authorize-approve",
    "demo-app",
    "site",
    "demo-app-failed",
    "usage",
    "not-found",
    "provider-portal-practitioner",
    "patient-portal",
    "forbidden",
];

fn first_resource(path: &Path, resource_type: &str) -> Value {
    let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"].clone())
        .find(|resource| resource["resourceType"] == resource_type)
        .unwrap_or_else(|| panic!("{path:?} has no {resource_type}"))
}

/// Adds a platform admin with `hearth console add-admin`, the password on stdin.
fn add_admin(server: &Server) {
    let mut child = Command::new(hearth_e2e::hearth_bin())
        .args(["console", "add-admin", "--username", ADMIN.0])
        .arg("--url")
        .arg(&server.base_url)
        .arg("--data-dir")
        .arg(server.data_dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hearth console add-admin starts");
    writeln!(child.stdin.take().unwrap(), "{}", ADMIN.1).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "hearth console add-admin failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let user: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(user["roles"], json!(["platform-admin"]));
}

#[test]
fn console_portal_and_demo_app_in_chromium() {
    let Some(node_dir) = browser::node_dir("console_portal_and_demo_app_in_chromium") else {
        return;
    };
    let clickhouse = std::env::var("HEARTH_TEST_CLICKHOUSE_URL").ok();

    let data_dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = match &clickhouse {
        Some(url) => vec![
            "--clickhouse-url".to_string(),
            url.clone(),
            "--clickhouse-database".to_string(),
            format!("console_test_{}", std::process::id()),
        ],
        None => Vec::new(),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server =
        Server::start_with(&Backend::Embedded, data_dir, &args, &[]).expect("hearth starts");
    let patient_file = sample_file("Fannie_Waelchi");
    let files = [
        sample_file("hospitalInformation"),
        sample_file("practitionerInformation"),
        patient_file.clone(),
    ];
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let output = server.load(&paths).expect("hearth load runs");
    assert!(
        output.status.success(),
        "hearth load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let patient = first_resource(&patient_file, "Patient");
    let patient_id = patient["id"].as_str().unwrap().to_string();
    let family = patient["name"][0]["family"].as_str().unwrap().to_string();
    let practitioner = first_resource(&sample_file("practitionerInformation"), "Practitioner");
    let practitioner_id = practitioner["id"].as_str().unwrap().to_string();
    let practitioner_family = practitioner["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();

    add_admin(&server);
    admin_post(
        &server,
        "/admin/users",
        &json!({"username": PRACTITIONER.0, "password": PRACTITIONER.1,
                "fhir_user": format!("Practitioner/{practitioner_id}")}),
    );
    admin_post(
        &server,
        "/admin/users",
        &json!({"username": PATIENT.0, "password": PATIENT.1,
                "fhir_user": format!("Patient/{patient_id}")}),
    );

    let client_id = "console-test-app";
    // A name one character under the maximum, most of it one unbroken word, so every page that shows
    // it must wrap it to fit a phone's width.
    let app_name = format!("Console test chart {}", "Growthchartandvitals".repeat(9));
    assert_eq!(app_name.chars().count(), 199);
    let screenshots = std::env::var("HEARTH_CONSOLE_SCREENSHOTS").ok();
    let config = json!({
        "base_url": server.base_url,
        "admin": {"username": ADMIN.0, "password": ADMIN.1},
        "practitioner": {"username": PRACTITIONER.0, "password": PRACTITIONER.1,
                         "id": practitioner_id, "search": practitioner_family},
        "patient": {"username": PATIENT.0, "password": PATIENT.1, "id": patient_id, "search": family},
        "app": {
            "client_id": client_id,
            "name": app_name,
            "redirect_uri": format!("{}/demo-app/", server.base_url),
            "launch_uri": format!("{}/demo-app/launch.html?client_id={client_id}", server.base_url),
            "scope": "launch openid fhirUser patient/Patient.rs patient/Condition.rs patient/Observation.rs",
        },
        "ehr_site": {
            "site_id": "north-ehr",
            "create": {
                "name": "North EHR",
                "upstream_base_url": "http://127.0.0.1:9/fhir/R3",
                "upstream_fhir_version": "3.0.2",
                "upstream_auth_method": "backend-services",
                "upstream_client_id": "hearth-at-north",
                "upstream_token_url": "http://127.0.0.1:9/oauth/token",
                "upstream_scope": "system/*.rs",
                "default_cache_freshness_s": 60,
                "cache_freshness_lines": "Patient=300\nObservation=30",
                "dynamic_registration": true,
            },
            "update": {
                "name": "North EHR, renamed",
                "upstream_base_url": "http://127.0.0.1:9/fhir/R4",
                "upstream_fhir_version": "4.0.1",
                "upstream_auth_method": "bearer",
                "default_cache_freshness_s": 120,
                "cache_freshness_lines": "Patient=600",
                "dynamic_registration": false,
            },
        },
        "portal_user": {
            "username": "nurse-console",
            "display_name": "Nurse of the console test",
            "password": "nurse password",
            "fhir_user": format!("Practitioner/{practitioner_id}"),
        },
        "expect_analytics": clickhouse.is_some(),
        "screenshots": screenshots,
    });
    let report = browser::run_node_script(&node_dir, "console-flow.cjs", &config, DRIVER_TIMEOUT);
    let pretty = serde_json::to_string_pretty(&report).unwrap();

    browser::assert_stayed_on_loopback(&report);
    assert_accessible(&report, clickhouse.is_some());
    // The only failed loads are the forged approval (400), the app's call after
    // revocation (401), the patient's visit to the apps page (403) and the missing site
    // (404).
    let errors: Vec<&str> = report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for status in [400, 401, 403, 404] {
        let count = errors
            .iter()
            .filter(|e| e.contains(&format!("status of {status}")))
            .count();
        assert_eq!(count, 1, "console errors with status {status}: {pretty}");
    }
    assert_eq!(errors.len(), 4, "{pretty}");
    assert!(
        report["wrong_password"]
            .as_str()
            .unwrap()
            .contains("not correct"),
        "{pretty}"
    );
    assert_eq!(report["after_sign_in"], "/console/apps", "{pretty}");

    assert_eq!(
        report["registered"]["path"],
        format!("/console/apps/{client_id}"),
        "{pretty}"
    );
    assert_eq!(report["registered"]["client_id"], client_id, "{pretty}");
    assert_eq!(report["app_status_at_site"], "active", "{pretty}");
    assert_eq!(
        report["form_limits"],
        json!({"client_id": 128, "name": 200, "launch_uri": 2000, "scope": 4000,
               "vendor": 200, "jwks_uri": 2000}),
        "{pretty}"
    );
    assert!(
        report["bad_launch_uri"]["error"]
            .as_str()
            .unwrap()
            .contains("launch_uri javascript:"),
        "{pretty}"
    );
    assert_eq!(report["bad_launch_uri"]["kept_name"], app_name, "{pretty}");
    assert_eq!(
        report["revoke_all_label"], "Revoke 1 live grant",
        "{pretty}"
    );

    assert_ehr_site(&server, &report["ehr_site"], &pretty);
    assert_users(&server, &report, &pretty);

    let portal_apps = report["portal"]["apps"].as_array().unwrap();
    assert!(portal_apps.contains(&json!(client_id)), "{pretty}");
    assert!(
        portal_apps.contains(&json!("hearth-demo-app")),
        "the demo app is active at start: {pretty}"
    );
    assert!(
        report["portal"]["encounters"].as_u64().unwrap() > 1,
        "{pretty}"
    );
    let given_family = format!(
        "{} {family}",
        patient["name"][0]["given"][0].as_str().unwrap()
    );
    assert!(
        report["portal"]["chosen_patient"]
            .as_str()
            .unwrap()
            .contains(&family),
        "{pretty}"
    );

    let app = &report["app_page"];
    assert_eq!(app["state"], "ready", "{pretty}");
    assert_eq!(app["patient_id"], patient_id.as_str(), "{pretty}");
    assert!(
        app["patient_name"]
            .as_str()
            .unwrap()
            .starts_with(&given_family),
        "{pretty}"
    );
    assert_eq!(
        app["fhir_user"],
        format!("Practitioner/{practitioner_id}"),
        "{pretty}"
    );
    assert!(app["conditions"].as_u64().unwrap() > 0, "{pretty}");
    assert!(app["observations"].as_u64().unwrap() > 0, "{pretty}");

    let revoked = report["revoked_grant"].as_str().unwrap();
    let after: Vec<&Value> = report["grants_after"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["grant_id"] == revoked)
        .collect();
    assert_eq!(after.len(), 1, "{pretty}");
    assert_eq!(after[0]["live"], false, "{pretty}");
    assert_eq!(report["after_revoke"]["state"], "failed", "{pretty}");
    assert!(
        report["after_revoke"]["error"]
            .as_str()
            .unwrap()
            .contains("401"),
        "the app's call after revocation must be rejected as unauthorized: {pretty}"
    );

    let usage = &report["usage"];
    if clickhouse.is_some() {
        assert_eq!(usage["analytics"], "on", "{pretty}");
        assert!(
            usage["totals"]["Launches"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1,
            "{pretty}"
        );
        assert!(
            usage["status"].as_str().unwrap().starts_with("Updated"),
            "{pretty}"
        );
        let app_usage = &report["app_usage"];
        assert!(
            app_usage["status"].as_str().unwrap().starts_with("Updated"),
            "the usage page of one app must load every chart: {pretty}"
        );
        assert!(
            app_usage["charts"]["chart-latency"].as_u64().unwrap_or(0) >= 1,
            "the latency chart of one app must have rows: {pretty}"
        );
        let charts = usage["charts"].as_object().unwrap();
        assert_eq!(charts.len(), 9, "{pretty}");
        for chart in [
            "chart-launches",
            "chart-calls",
            "chart-per-app",
            "chart-per-site",
            "chart-latency",
        ] {
            assert!(
                charts[chart].as_u64().unwrap() >= 1,
                "{chart} is empty: {pretty}"
            );
        }
        assert_eq!(
            usage["csv_links"], 9,
            "every chart has a CSV download: {pretty}"
        );
        let csv = strings(&usage["launches_csv"]["lines"]);
        assert_eq!(usage["launches_csv"]["name"], "launches.csv", "{pretty}");
        assert!(csv[0].starts_with("label,"), "{pretty}");
        assert!(csv.len() >= 2, "the CSV has a data row: {pretty}");
        for (chart, shown) in usage["tables"].as_object().unwrap() {
            assert_eq!(shown["pressed"], "true", "{chart}: {pretty}");
            assert_eq!(
                shown["table_rows"], shown["rows"],
                "{chart} shows one table row per data row: {pretty}"
            );
        }
        assert_eq!(usage["tables"].as_object().unwrap().len(), 9, "{pretty}");
        assert_eq!(
            usage["live_refresh"], true,
            "the usage page updates without a reload: {pretty}"
        );
    } else {
        assert_eq!(usage["analytics"], "off", "{pretty}");
        assert!(
            usage["status"].as_str().unwrap().contains("not configured"),
            "{pretty}"
        );
    }
    assert_eq!(report["after_sign_out"], "/console/sign-in", "{pretty}");
    assert_eq!(report["missing_site_status"], 404, "{pretty}");
    assert_eq!(
        report["admin_launch_asked_sign_in"], true,
        "an administrator's session does not approve a launch made for a practitioner: {pretty}"
    );

    // The practitioner's portal session signs it in on the authorization page, the CSRF
    // value of the approval form is still checked, and signing out of the portal ends it.
    let shared = &report["practitioner_session"];
    assert_eq!(shared["start_page"], "/console/portal", "{pretty}");
    assert_eq!(shared["launch_first_page"], "approve", "{pretty}");
    assert_eq!(shared["forged_approval_status"], 400, "{pretty}");
    assert_eq!(shared["app"]["state"], "ready", "{pretty}");
    assert_eq!(shared["app"]["patient_id"], patient_id.as_str(), "{pretty}");
    assert_eq!(
        shared["app"]["fhir_user"],
        format!("Practitioner/{practitioner_id}"),
        "{pretty}"
    );
    assert_eq!(shared["standalone_first_page"], "picker", "{pretty}");
    assert_eq!(shared["after_sign_out_first_page"], "sign-in", "{pretty}");

    assert_eq!(
        report["patient_portal"]["path"], "/console/patient-portal",
        "{pretty}"
    );
    assert_eq!(
        report["patient_portal"]["nav"],
        json!(["Patient portal"]),
        "{pretty}"
    );
    assert_eq!(
        report["patient_launch_first_page"], "approve",
        "the patient portal session signs the patient in: {pretty}"
    );
    assert_eq!(report["patient_app"]["state"], "ready", "{pretty}");
    assert_eq!(
        report["patient_app"]["patient_id"],
        patient_id.as_str(),
        "{pretty}"
    );
    assert_eq!(
        report["patient_app"]["fhir_user"],
        format!("Patient/{patient_id}"),
        "{pretty}"
    );
    assert_eq!(report["patient_apps_status"], 403, "{pretty}");

    // Every console sign-in and sign-out is an event on hearth.auth.
    let (status, events) = server.get_json(&format!(
        "{}/admin/events?topic=hearth.auth&limit=1000",
        server.base_url
    ));
    assert_eq!(status, 200);
    let names: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    let count = |name: &str| names.iter().filter(|n| **n == name).count();
    assert_eq!(count("hearth.events.ConsoleSignedIn"), 3, "{names:?}");
    assert_eq!(count("hearth.events.ConsoleSignedOut"), 2, "{names:?}");
    // One wrong password, and the disabled user.
    assert_eq!(count("hearth.events.ConsoleSignInFailed"), 2, "{names:?}");
}

/// Checks the EHR-backed site that the console created and then changed, on the site
/// page and through the admin API.
fn assert_ehr_site(server: &Server, site: &Value, pretty: &str) {
    assert_eq!(site["created_path"], "/console/sites/north-ehr", "{pretty}");
    let created = &site["created"];
    assert_eq!(
        created["Upstream FHIR base URL"], "http://127.0.0.1:9/fhir/R3",
        "{pretty}"
    );
    assert_eq!(created["Upstream FHIR version"], "3.0.2", "{pretty}");
    let method = created["Authentication at the EHR"].as_str().unwrap();
    assert!(method.contains("Backend Services"), "{pretty}");
    assert!(method.contains("hearth-at-north"), "{pretty}");
    assert!(
        method.contains("http://127.0.0.1:9/oauth/token"),
        "{pretty}"
    );
    assert_eq!(created["Cache freshness"], "60 s", "{pretty}");
    assert_eq!(
        created["Cache freshness per type"], "Observation 30 s, Patient 300 s",
        "{pretty}"
    );
    assert_eq!(
        created["Dynamic client registration"], "allowed",
        "{pretty}"
    );

    // The edit form starts from the stored settings and names where the secret goes.
    let form = &site["form_values"];
    assert_eq!(form["upstream_fhir_version"], "3.0.2", "{pretty}");
    assert_eq!(form["upstream_auth_method"], "backend-services", "{pretty}");
    assert_eq!(form["upstream_client_id"], "hearth-at-north", "{pretty}");
    assert_eq!(form["default_cache_freshness_s"], "60", "{pretty}");
    assert_eq!(
        form["cache_freshness_s"], "Observation=30\nPatient=300",
        "{pretty}"
    );
    assert_eq!(form["dynamic_registration"], true, "{pretty}");
    assert!(
        site["form_bearer_hint"]
            .as_str()
            .unwrap()
            .contains("HEARTH_EHR_BEARER_TOKEN_NORTH_EHR"),
        "{pretty}"
    );

    assert_eq!(site["updated_path"], "/console/sites/north-ehr", "{pretty}");
    let updated = &site["updated"];
    assert_eq!(
        updated["Upstream FHIR base URL"], "http://127.0.0.1:9/fhir/R4",
        "{pretty}"
    );
    assert_eq!(updated["Upstream FHIR version"], "4.0.1", "{pretty}");
    assert!(
        updated["Authentication at the EHR"]
            .as_str()
            .unwrap()
            .contains("static bearer token"),
        "{pretty}"
    );
    assert_eq!(updated["Cache freshness"], "120 s", "{pretty}");
    assert_eq!(
        updated["Cache freshness per type"], "Patient 600 s",
        "{pretty}"
    );
    assert_eq!(
        updated["Dynamic client registration"], "not allowed",
        "{pretty}"
    );
    assert!(
        site["rejected_error"]
            .as_str()
            .unwrap()
            .contains("Patient=soon"),
        "{pretty}"
    );
    assert_eq!(site["rejected_value"], "Patient=soon", "{pretty}");

    let (status, stored) = server.get_json(&format!("{}/admin/sites/north-ehr", server.base_url));
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["name"], "North EHR, renamed", "{stored}");
    assert_eq!(
        stored["upstream_base_url"], "http://127.0.0.1:9/fhir/R4",
        "{stored}"
    );
    assert_eq!(stored["default_cache_freshness_s"], 120, "{stored}");
    assert_eq!(
        stored["cache_freshness_s"],
        json!({"Patient": 600}),
        "{stored}"
    );
    assert_eq!(stored["dynamic_registration"], false, "{stored}");
}

/// Checks the user that the console added and disabled.
fn assert_users(server: &Server, report: &Value, pretty: &str) {
    let users = &report["users"];
    assert_eq!(users["listed"]["status"], "active", "{pretty}");
    assert_eq!(users["listed"]["roles"], "", "{pretty}");
    assert!(
        users["listed"]["fhir_user"]
            .as_str()
            .unwrap()
            .starts_with("Practitioner/"),
        "{pretty}"
    );
    assert_eq!(users["after_disable"]["status"], "disabled", "{pretty}");
    assert_eq!(
        report["disabled_user_sign_in"]["path"], "/console/sign-in",
        "{pretty}"
    );

    let (status, listed) = server.get_json(&format!("{}/admin/users", server.base_url));
    assert_eq!(status, 200);
    let nurse = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "nurse-console")
        .unwrap_or_else(|| panic!("the added user is not listed: {listed}"));
    assert_eq!(nurse["disabled"], true, "{nurse}");
    assert_eq!(
        nurse["display_name"], "Nurse of the console test",
        "{nurse}"
    );
    assert!(nurse.get("password_hash").is_none(), "{nurse}");
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not an array"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Checks that every page was audited at both widths, that neither axe-core nor the
/// keyboard walk found a problem, and that no page scrolls sideways.
fn assert_accessible(report: &Value, analytics: bool) {
    let audits = report["accessibility"].as_array().unwrap();
    let mut expected: Vec<&str> = AUDITED_PAGES.to_vec();
    if analytics {
        expected.push("usage-table");
    }
    for page in &expected {
        for width in ["desktop", "phone"] {
            assert!(
                audits
                    .iter()
                    .any(|a| a["page"] == *page && a["width"] == width),
                "{page} was not audited at {width} width"
            );
        }
    }
    let failures: Vec<&Value> = audits
        .iter()
        .filter(|a| {
            !a["violations"].as_array().unwrap().is_empty()
                || !a["keyboard"].as_array().unwrap().is_empty()
                || !a["overflow"].is_null()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "accessibility problems:\n{}",
        serde_json::to_string_pretty(&failures).unwrap()
    );
}

#[test]
fn console_pages_need_sign_in() {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/console/apps",
        "/console/sites/default",
        "/console/usage/data?report=usage",
        "/console/portal",
        "/console/users",
        "/console/sites/default/settings",
    ] {
        let response = client
            .get(format!("{}{path}", server.base_url))
            .send()
            .unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/console/sign-in", "{path}");
    }
    // A form posted without the sign-in form's cookie is rejected before any password check.
    let response = client
        .post(format!("{}/console/sign-in", server.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=x&password=y&signin=forged")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("expired"));

    let sign_in = client
        .get(format!("{}/console/sign-in", server.base_url))
        .send()
        .unwrap();
    let cookie = sign_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }

    // The session cookie follows the rules of the authorization server's session cookie,
    // so the authorization pages receive it, also after a cross-site redirect from an app.
    admin_post(
        &server,
        "/admin/users",
        &json!({"username": ADMIN.0, "password": ADMIN.1, "roles": ["platform-admin"]}),
    );
    let form_value = cookie.split(';').next().unwrap().to_string();
    let token = form_value.split_once('=').unwrap().1.to_string();
    let signed_in = client
        .post(format!("{}/console/sign-in", server.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &form_value)
        .body(format!(
            "username={}&password={}&signin={token}",
            ADMIN.0,
            ADMIN.1.replace(' ', "+")
        ))
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("hearth_console=") && !c.starts_with("hearth_console=;"))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/;"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    for asset in [
        "/console/assets/console.css",
        "/console/assets/console.js",
        "/demo-app/",
        "/demo-app/launch.html",
        "/demo-app/fhir-client.js",
    ] {
        let response = client
            .get(format!("{}{asset}", server.base_url))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let (status, app) = server.get_json(&format!("{}/admin/apps/hearth-demo-app", server.base_url));
    assert_eq!(status, 200);
    assert_eq!(app["sites"], json!(["default"]));
    assert_eq!(
        app["launch_uri"],
        format!("{}/demo-app/launch.html", server.base_url)
    );
}

/// A console session of a signed-in user over plain HTTP, for checks that need no
/// browser. It sends the session cookie and each form's CSRF value itself.
struct Session {
    client: reqwest::blocking::Client,
    base_url: String,
    cookie: String,
    csrf: String,
}

impl Session {
    fn sign_in(server: &Server, username: &str, password: &str) -> Session {
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base_url = server.base_url.clone();
        let page = client
            .get(format!("{base_url}/console/sign-in"))
            .send()
            .unwrap();
        let form_cookie = page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let token = form_cookie.split_once('=').unwrap().1.to_string();

        let signed_in = client
            .post(format!("{base_url}/console/sign-in"))
            .header("cookie", &form_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("username", username),
                ("password", password),
                ("signin", &token),
            ]))
            .send()
            .unwrap();
        assert_eq!(signed_in.status(), 303, "the sign-in failed");
        let cookie = signed_in
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("hearth_console=") && c != "hearth_console=")
            .expect("a session cookie");

        let mut session = Session {
            client,
            base_url,
            cookie,
            csrf: String::new(),
        };
        let (_, page) = session.get("/console/users");
        let marker = "name=\"csrf\" value=\"";
        let start = page.find(marker).expect("a form with a CSRF value") + marker.len();
        session.csrf = page[start..start + page[start..].find('"').unwrap()].to_string();
        session
    }

    fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base_url))
            .header("cookie", &self.cookie)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }

    /// Posts a form with the session's CSRF value and returns the status and the page.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &self.csrf));
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }
}

/// Encodes form fields as `application/x-www-form-urlencoded`.
fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Returns the text of the page's `role="alert"` element, the error of a rejected form.
fn alert(page: &str) -> &str {
    let Some(start) = page.find("role=\"alert\"") else {
        panic!("the page shows no error: {page}");
    };
    let element = &page[start..];
    let text = &element[element.find('>').unwrap() + 1..];
    &text[..text.find('<').unwrap_or(text.len())]
}

/// Returns the fields of a valid app registration form with `changes` applied.
fn app_form<'a>(client_id: &'a str, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("client_id", client_id),
        ("name", "Checked app"),
        ("client_type", "public"),
        ("redirect_uris", "https://app.example/cb"),
        ("launch_uri", "https://app.example/launch"),
        ("scope", "launch openid fhirUser patient/*.rs"),
        ("vendor", ""),
        ("jwks_uri", ""),
        ("jwks", ""),
    ];
    for (name, value) in changes {
        match fields.iter_mut().find(|(field, _)| field == name) {
            Some(field) => field.1 = value,
            None => fields.push((name, value)),
        }
    }
    fields
}

#[test]
fn console_forms_check_before_writing() {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    admin_post(
        &server,
        "/admin/users",
        &json!({"username": ADMIN.0, "password": ADMIN.1, "roles": ["platform-admin"]}),
    );
    let session = Session::sign_in(&server, ADMIN.0, ADMIN.1);
    let app_status = |client_id: &str| {
        server
            .get_json(&format!("{}/admin/apps/{client_id}", server.base_url))
            .0
    };

    // An unknown site among the chosen ones rejects the form before the app exists.
    let fields = app_form(
        "half-app",
        &[("sites", "default"), ("sites", "no-such-site")],
    );
    let (_, page) = session.post("/console/apps", &fields);
    assert!(alert(&page).contains("no site no-such-site"), "{page}");
    assert_eq!(app_status("half-app"), 404, "the app stayed registered");

    let long_name = "n".repeat(201);
    let long_uri = format!("https://app.example/{}", "p".repeat(2000));
    let rejected: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("launch_uri", "javascript:alert(1)")], "launch_uri"),
        (vec![("launch_uri", "data:text/html,hi")], "launch_uri"),
        (vec![("launch_uri", "http://app.example/launch")], "https"),
        (vec![("launch_uri", &long_uri)], "maximum is 2000"),
        (
            vec![("redirect_uris", "javascript:alert(1)")],
            "redirect URI",
        ),
        (vec![("redirect_uris", "")], "redirect_uris is empty"),
        (vec![("scope", "  ")], "scope is empty"),
        (vec![("name", &long_name)], "maximum is 200"),
        (vec![("jwks_uri", "javascript:x")], "jwks_uri"),
    ];
    for (changes, expected) in rejected {
        let (status, page) = session.post("/console/apps", &app_form("bad-app", &changes));
        assert_eq!(status, 200, "{changes:?}: {page}");
        let error = alert(&page);
        assert!(error.contains(expected), "{changes:?}: {error}");
        assert_eq!(app_status("bad-app"), 404, "{changes:?} registered the app");
    }

    // The forms carry the limits too.
    let (_, form) = session.get("/console/apps/new");
    for attribute in [
        "id=\"name\" name=\"name\" value=\"\" required maxlength=\"200\"",
        "id=\"launch_uri\" name=\"launch_uri\" value=\"\" maxlength=\"2000\"",
        "id=\"vendor\" name=\"vendor\" value=\"\" maxlength=\"200\"",
    ] {
        assert!(form.contains(attribute), "{attribute} is missing: {form}");
    }
    let (_, users_page) = session.get("/console/users");
    assert!(
        users_page.contains("name=\"username\" value=\"\" required maxlength=\"200\""),
        "{users_page}"
    );

    // A site with an unknown backing, and a site admin of an unknown site.
    let (_, page) = session.post(
        "/console/sites",
        &[
            ("site_id", "north"),
            ("name", "North"),
            ("backing", "cache"),
        ],
    );
    let error = alert(&page);
    assert!(error.contains("repository, ehr"), "{error}");
    let (status, _) = server.get_json(&format!("{}/admin/sites/north", server.base_url));
    assert_eq!(status, 404, "a site with an unknown backing was created");

    let (status, page) = session.post(
        "/console/users",
        &[
            ("username", "keeper"),
            ("password", "a long password"),
            ("role", "site-admin"),
            ("site_id", "no-such-site"),
        ],
    );
    assert_eq!(status, 404, "{page}");
    assert!(alert(&page).contains("no site no-such-site"), "{page}");
    let (_, listed) = server.get_json(&format!("{}/admin/users", server.base_url));
    assert!(
        !listed.to_string().contains("\"keeper\""),
        "the rejected user was added: {listed}"
    );

    // A valid form still registers and activates the app.
    let (status, _) = session.post(
        "/console/apps",
        &app_form("good-app", &[("sites", "default")]),
    );
    assert_eq!(status, 303);
    let (_, app) = server.get_json(&format!("{}/admin/apps/good-app", server.base_url));
    assert_eq!(app["sites"], json!(["default"]), "{app}");
}

#[test]
fn portal_rejects_encounter_of_another_patient() {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    let own_file = sample_file("Fannie_Waelchi");
    let other_file = sample_file("Dwain_McGlynn");
    let files = [
        sample_file("hospitalInformation"),
        sample_file("practitionerInformation"),
        own_file.clone(),
        other_file.clone(),
    ];
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let output = server.load(&paths).expect("hearth load runs");
    assert!(
        output.status.success(),
        "hearth load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let patient = first_resource(&own_file, "Patient")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let own_encounter = first_resource(&own_file, "Encounter")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_encounter = first_resource(&other_file, "Encounter")["id"]
        .as_str()
        .unwrap()
        .to_string();
    admin_post(
        &server,
        "/admin/users",
        &json!({"username": ADMIN.0, "password": ADMIN.1, "roles": ["platform-admin"]}),
    );
    let session = Session::sign_in(&server, ADMIN.0, ADMIN.1);
    let launch = |encounter: &str| {
        session.post(
            "/console/portal/launch",
            &[
                ("site", "default"),
                ("client_id", "hearth-demo-app"),
                ("patient", &patient),
                ("encounter", encounter),
            ],
        )
    };

    let (status, page) = launch(&other_encounter);
    assert_eq!(status, 400, "{page}");
    let error = alert(&page);
    assert!(
        error.contains(&format!("Encounter/{other_encounter}")),
        "{error}"
    );
    assert!(
        error.contains(&format!("not of Patient/{patient}")),
        "{error}"
    );

    let (status, page) = launch(&own_encounter);
    assert_eq!(
        status, 303,
        "the patient's own encounter is rejected: {page}"
    );
}

#[test]
fn favicon_is_served() {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    let response = reqwest::blocking::get(format!("{}/favicon.ico", server.base_url)).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/x-icon");
    let body = response.bytes().unwrap();
    assert_eq!(&body[..4], &[0, 0, 1, 0], "not an ICO file");
    assert!(body.len() < 4096, "the icon has {} bytes", body.len());
}
