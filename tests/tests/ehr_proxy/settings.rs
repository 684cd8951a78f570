//! Changing an EHR-backed site after it was created: `GET`, `PUT` and `PATCH
//! /admin/sites/{site_id}`, `hearth sites update`, the checks on bad input, and the effect
//! of a change on the next proxied request and on a rebuilt auth store.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_e2e::{Backend, Server, hearth_bin};
use serde_json::{Value, json};

use crate::front::{Front, send};
use crate::http::Reply;

/// The family name of every Patient the stub upstream returns.
const STUB_NAME: &str = "Stub-Upstream";

impl Front {
    fn admin_send(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Reply {
        let mut request = self
            .client()
            .request(method, format!("{}{path}", self.server.base_url))
            .bearer_auth(self.admin_token());
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        send(request)
    }

    fn patch_site(&self, site_id: &str, patch: &Value) -> Reply {
        self.admin_send(
            reqwest::Method::PATCH,
            &format!("/admin/sites/{site_id}"),
            Some(patch.to_string()),
        )
    }

    fn site_settings(&self, site_id: &str) -> Value {
        let reply = self.admin_send(
            reqwest::Method::GET,
            &format!("/admin/sites/{site_id}"),
            None,
        );
        assert_eq!(reply.status, 200, "GET site {site_id}: {}", reply.body);
        reply.json()
    }
}

fn assert_invalid(reply: &Reply, status: u16, expected: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(expected),
        "expected {expected:?} in {description:?}"
    );
}

/// Starts an HTTP server on a free port that responds to every request with one Patient named
/// [`STUB_NAME`] and records each request's head. It stands in for a second EHR.
fn start_stub_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the stub upstream");
    let port = listener.local_addr().expect("its address").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buffer = [0u8; 8192];
            let Ok(n) = stream.read(&mut buffer) else {
                continue;
            };
            let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let id = head
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.rsplit('/').next())
                .unwrap_or("x")
                .to_string();
            recorded.lock().expect("the request list").push(head);
            let body = json!({
                "resourceType": "Patient",
                "id": id,
                "name": [{"family": STUB_NAME}],
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (format!("http://127.0.0.1:{port}/fhir"), requests)
}

#[test]
fn site_settings_read_and_change() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let admin = front.admin_token();
    let read = format!("{}/Patient/{patient}", front.site.fhir);

    let settings = front.site_settings("ehr");
    assert_eq!(settings["site_id"], "ehr");
    assert_eq!(settings["backing"], "EHR");
    assert_eq!(settings["upstream_auth_method"], "BACKEND_SERVICES");
    assert_eq!(settings["default_cache_freshness_s"], 300);

    let missing = front.admin_send(reqwest::Method::GET, "/admin/sites/nowhere", None);
    assert_invalid(&missing, 404, "no site nowhere");

    // Warm the cache, then point the site at another upstream: the next read goes there.
    let first = front.get_url(&read, &admin, &[]);
    assert_eq!(first.status, 200, "{}", first.body);
    let mut warm = first;
    for _ in 0..200 {
        warm = front.get_url(&read, &admin, &[]);
        if warm.header("x-cache") == Some("HIT") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        warm.header("x-cache"),
        Some("HIT"),
        "the cache never served"
    );

    let (stub_url, stub_requests) = start_stub_upstream();
    let changed = front.patch_site(
        "ehr",
        &json!({
            "upstream_base_url": stub_url,
            "upstream_auth_method": "none",
            "upstream_client_id": null,
            "upstream_scope": null,
        }),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    let changed = changed.json();
    assert_eq!(changed["upstream_base_url"], stub_url.as_str());
    assert_eq!(changed["upstream_auth_method"], "NONE");
    assert_eq!(changed["upstream_client_id"], Value::Null);
    assert_eq!(changed["name"], "EHR-backed site", "PATCH kept the name");
    assert_eq!(changed["default_cache_freshness_s"], 300, "and the cache");

    let moved = front.get_url(&read, &admin, &[]);
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(
        moved.header("x-cache"),
        Some("MISS"),
        "an old entry was served"
    );
    assert_eq!(moved.json()["name"][0]["family"], STUB_NAME);
    let heads = stub_requests.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with(&format!("GET /fhir/Patient/{patient} ")),
        "{}",
        heads[0]
    );
    assert!(
        !heads[0].to_ascii_lowercase().contains("authorization:"),
        "auth method none sent a credential: {}",
        heads[0]
    );

    // Back to the EHR with backend services, and no caching of Patient reads.
    let restored = front.patch_site(
        "ehr",
        &json!({
            "upstream_base_url": front.ehr.default_site.fhir,
            "upstream_auth_method": "backend-services",
            "upstream_client_id": crate::front::PROXY_CLIENT,
            "upstream_scope": "system/*.cruds",
            "cache_freshness_s": {"Patient": 0},
        }),
    );
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.json()["cache_freshness_s"]["Patient"], 0);
    assert_eq!(restored.json()["cache_freshness_s"]["Encounter"], 0);
    for _ in 0..2 {
        let again = front.get_url(&read, &admin, &[]);
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(
            again.header("x-cache"),
            Some("BYPASS"),
            "Patient freshness is 0"
        );
        assert_eq!(again.json()["id"], patient.as_str());
        assert_ne!(again.json()["name"][0]["family"], STUB_NAME);
    }
    assert_eq!(
        stub_requests.lock().unwrap().len(),
        1,
        "the stub was asked again"
    );

    // The change is a SiteUpdated event on hearth.auth with every setting.
    let events = front.admin_send(
        reqwest::Method::GET,
        "/admin/events?topic=hearth.auth&limit=1000",
        None,
    );
    assert_eq!(events.status, 200, "{}", events.body);
    let updates: Vec<Value> = events.json()["events"]
        .as_array()
        .expect("an event list")
        .iter()
        .filter(|e| e["event"] == "hearth.events.SiteUpdated")
        .map(|e| e["fields"].clone())
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[1]["site_id"], "ehr");
    assert_eq!(updates[1]["actor"], "admin");
    assert_eq!(updates[1]["upstream_client_id"], crate::front::PROXY_CLIENT);

    // Setting what is already set appends nothing.
    let same = front.patch_site("ehr", &json!({"name": "EHR-backed site"}));
    assert_eq!(same.status, 200, "{}", same.body);
    let events = front.admin_send(
        reqwest::Method::GET,
        "/admin/events?topic=hearth.auth&limit=1000",
        None,
    );
    let count = events.json()["events"]
        .as_array()
        .expect("an event list")
        .iter()
        .filter(|e| e["event"] == "hearth.events.SiteUpdated")
        .count();
    assert_eq!(count, 2, "an unchanged PATCH appended an event");
}

#[test]
fn invalid_site_changes_are_rejected() {
    let front = Front::start();
    let before = front.site_settings("ehr");
    let secret = "s3cr3t-bearer-value";

    let cases = [
        (
            json!({"upstream_base_url": "ftp://ehr.example/fhir"}),
            "http:// or https://",
        ),
        (
            json!({"upstream_base_url": "ehr.example/fhir"}),
            "not an absolute URL",
        ),
        (
            json!({"upstream_base_url": "https://user:pw@ehr.example/fhir"}),
            "user name or password",
        ),
        (
            json!({"upstream_base_url": null}),
            "needs upstream_base_url",
        ),
        (json!({"upstream_auth_method": "basic"}), "basic"),
        (
            json!({"upstream_client_id": null}),
            "needs upstream_client_id",
        ),
        (
            json!({"upstream_token_url": "/token"}),
            "upstream_token_url",
        ),
        (json!({"upstream_scope": ""}), "upstream_scope is empty"),
        (json!({"upstream_fhir_version": "5.0.0"}), "5.0.0"),
        (
            json!({"default_cache_freshness_s": -1}),
            "default_cache_freshness_s",
        ),
        (json!({"default_cache_freshness_s": "soon"}), "not valid"),
        (json!({"cache_freshness_s": {"Patients": 10}}), "Patients"),
        (json!({"backing": "repository"}), "backing cannot change"),
        (json!({"backing": "cloud"}), "cloud"),
        (json!({"site_id": "other"}), "cannot be renamed"),
        (json!({"name": " "}), "name is empty"),
        (json!({"colour": "blue"}), "colour"),
        (json!({"bearer_token": secret}), "HEARTH_EHR_BEARER_TOKEN_"),
    ];
    for (patch, expected) in cases {
        let reply = front.patch_site("ehr", &patch);
        assert_invalid(&reply, 400, expected);
        assert!(!reply.body.contains(secret), "the secret was echoed");
    }

    let not_json = front.admin_send(
        reqwest::Method::PATCH,
        "/admin/sites/ehr",
        Some("{not json".to_string()),
    );
    assert_invalid(&not_json, 400, "not valid JSON");
    let array = front.admin_send(
        reqwest::Method::PATCH,
        "/admin/sites/ehr",
        Some("[]".to_string()),
    );
    assert_invalid(&array, 400, "JSON object");
    let unknown = front.patch_site("nowhere", &json!({"name": "x"}));
    assert_invalid(&unknown, 404, "no site nowhere");
    let repository = front.patch_site(
        "default",
        &json!({"upstream_base_url": "https://ehr.example/fhir"}),
    );
    assert_invalid(&repository, 400, "backing ehr");
    let no_token = send(
        front
            .client()
            .patch(format!("{}/admin/sites/ehr", front.server.base_url))
            .json(&json!({"name": "x"})),
    );
    assert_eq!(no_token.status, 401, "{}", no_token.body);

    // PUT without name is incomplete; nothing changed through all of the above.
    let incomplete = front.admin_send(
        reqwest::Method::PUT,
        "/admin/sites/ehr",
        Some(json!({"backing": "ehr"}).to_string()),
    );
    assert_invalid(&incomplete, 400, "name");
    assert_eq!(front.site_settings("ehr"), before);
}

#[test]
fn site_put_replaces_and_survives_replay() {
    let front = Front::start();
    let upstream = front.ehr.default_site.fhir.clone();

    // PUT replaces every setting: what it leaves out gets the defaults of a new site.
    let replaced = front.admin_send(
        reqwest::Method::PUT,
        "/admin/sites/ehr",
        Some(
            json!({
                "name": "North EHR",
                "upstream_base_url": upstream,
                "upstream_auth_method": "backend-services",
                "upstream_client_id": crate::front::PROXY_CLIENT,
                "upstream_fhir_version": "4.0.1",
                "dynamic_registration": true,
            })
            .to_string(),
        ),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let replaced = replaced.json();
    assert_eq!(replaced["name"], "North EHR");
    assert_eq!(replaced["dynamic_registration"], true);
    assert_eq!(replaced["default_cache_freshness_s"], 0);
    assert_eq!(replaced["cache_freshness_s"], json!({}));
    assert_eq!(replaced["upstream_scope"], Value::Null);

    // The command line changes the same settings through PATCH.
    let cli = Command::new(hearth_bin())
        .args([
            "sites",
            "update",
            "ehr",
            "--name",
            "North",
            "--cache-seconds",
            "60",
        ])
        .args([
            "--cache-type",
            "Observation=30",
            "--upstream-fhir-version",
            "4.0.1",
        ])
        .arg("--url")
        .arg(&front.server.base_url)
        .arg(format!("--admin-token={}", front.admin_token()))
        .output()
        .expect("hearth sites update runs");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: Value = serde_json::from_slice(&cli.stdout).expect("JSON output");
    assert_eq!(printed["name"], "North");
    assert_eq!(printed["default_cache_freshness_s"], 60);
    assert_eq!(printed["cache_freshness_s"]["Observation"], 30);
    assert_eq!(printed["dynamic_registration"], true, "kept");

    let rejected = Command::new(hearth_bin())
        .args(["sites", "update", "ehr", "--upstream", "not-a-url"])
        .arg("--url")
        .arg(&front.server.base_url)
        .arg(format!("--admin-token={}", front.admin_token()))
        .output()
        .expect("hearth sites update runs");
    assert!(!rejected.status.success());
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("400"), "{stderr}");
    assert!(stderr.contains("upstream_base_url"), "{stderr}");

    let shown = Command::new(hearth_bin())
        .args(["sites", "get", "ehr", "--url"])
        .arg(&front.server.base_url)
        .arg(format!("--admin-token={}", front.admin_token()))
        .output()
        .expect("hearth sites get runs");
    assert!(shown.status.success());
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON output");
    assert_eq!(shown, front.site_settings("ehr"));

    // Rebuild the auth store from the log: the site keeps its changed settings.
    let Front { server, .. } = front;
    let port = server.port;
    let admin = server.admin_token();
    let data_dir = server.stop().expect("the front stops");
    let replay = Command::new(hearth_bin())
        .args(["replay", "auth", "--data-dir"])
        .arg(data_dir.path())
        .env_remove("HEARTH_CONFIG")
        .output()
        .expect("hearth replay runs");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let restarted = Server::start_on_port(&Backend::Embedded, data_dir, port, &[], &[])
        .expect("the front restarts");
    let (status, site) = restarted.get_json(&format!("{}/admin/sites/ehr", restarted.base_url));
    assert_eq!(status, 200, "{site}");
    assert_eq!(restarted.admin_token(), admin);
    assert_eq!(site, shown);
}
