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

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::{Backend, Server, synthea_dir};
use serde_json::{Value, json};

const DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

const ADMIN: (&str, &str) = ("console-admin", "admin password 1");
const PRACTITIONER: (&str, &str) = ("dr-console", "practitioner password");
const PATIENT: (&str, &str) = ("patient-console", "patient password");

fn sample_file(prefix: &str) -> PathBuf {
    std::fs::read_dir(synthea_dir())
        .expect("the Synthea sample directory is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .unwrap_or_else(|| panic!("no Synthea file starts with {prefix}"))
}

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

fn admin_post(server: &Server, path: &str, body: &Value) -> Value {
    let url = format!("{}{path}", server.base_url);
    let response = reqwest::blocking::Client::new()
        .post(&url)
        .bearer_auth(server.admin_token())
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
    let status = response.status();
    let text = response.text().unwrap_or_default();
    assert!(status.is_success(), "POST {path} returned {status}: {text}");
    serde_json::from_str(&text).unwrap()
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

fn run_driver(node_dir: &Path, config: &Value) -> Value {
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/node/console-flow.cjs"))
        .arg(config.to_string())
        .env("HEARTH_TEST_NODE_DIR", node_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DRIVER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the console driver did not finish within {DRIVER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    let report: Value = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!("the console driver printed no report ({status}):\n{stdout}\n{stderr}")
        });
    assert!(
        status.success(),
        "the console driver failed:\n{}\nstderr:\n{stderr}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    report
}

#[test]
fn console_portal_and_demo_app_in_chromium() {
    let Some(node_dir) = std::env::var_os("HEARTH_TEST_NODE_DIR").map(PathBuf::from) else {
        let _ = writeln!(
            std::io::stderr(),
            "console_portal_and_demo_app_in_chromium: not run, because HEARTH_TEST_NODE_DIR \
             is not set; infra/test.sh installs Chromium and playwright-core and sets it"
        );
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
    let app_name = "Console test chart";
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
        "expect_analytics": clickhouse.is_some(),
        "screenshots": screenshots,
    });
    let report = run_driver(&node_dir, &config);
    let pretty = serde_json::to_string_pretty(&report).unwrap();

    assert_eq!(
        report["blocked_requests"],
        json!([]),
        "Chromium left 127.0.0.1: {pretty}"
    );
    // The only failed loads are the app's call after revocation and the patient's visit
    // to the apps page.
    let errors: Vec<&str> = report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|e| !e.contains("status of 401") && !e.contains("status of 403"))
        .collect();
    assert!(errors.is_empty(), "{pretty}");
    assert_eq!(
        report["console_errors"].as_array().unwrap().len(),
        2,
        "{pretty}"
    );
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
            usage["launches_table_rows"].as_u64().unwrap() >= 1,
            "{pretty}"
        );
        assert!(
            usage["status"].as_str().unwrap().starts_with("Updated"),
            "{pretty}"
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
    } else {
        assert_eq!(usage["analytics"], "off", "{pretty}");
        assert!(
            usage["status"].as_str().unwrap().contains("not configured"),
            "{pretty}"
        );
    }
    assert_eq!(report["after_sign_out"], "/console/sign-in", "{pretty}");

    assert_eq!(
        report["patient_portal"]["path"], "/console/patient-portal",
        "{pretty}"
    );
    assert_eq!(
        report["patient_portal"]["nav"],
        json!(["Patient portal"]),
        "{pretty}"
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
    assert_eq!(count("hearth.events.ConsoleSignedIn"), 2, "{names:?}");
    assert_eq!(count("hearth.events.ConsoleSignedOut"), 1, "{names:?}");
    assert_eq!(count("hearth.events.ConsoleSignInFailed"), 1, "{names:?}");
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
