//! The EHR behind an EHR-backed site stops in the middle of a test and starts again. While
//! it is down, requests that need it get 502 with an OperationOutcome, and cached reads
//! are still served. After the restart the same tokens read and write again. This test
//! has no repository form, so it runs only against the EHR-backed target.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::RequestBuilder;
use serde_json::json;

use crate::client::{FHIR_JSON, Fhir, assert_outcome};
use crate::http::Reply;
use crate::support::Hearth;
use crate::target;

/// Sends a request and reads the response whatever its status, because the 502 responses
/// are what this test checks.
fn send(request: RequestBuilder) -> Reply {
    let response = request.send().expect("the request reaches the front");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// Reads `path` until the front serves it from its cache. The cache records responses in
/// the background, so the first repeats may still miss.
fn read_until_hit(fhir: &Fhir, path: &str) {
    for _ in 0..50 {
        let reply = fhir.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        if reply.header("x-cache") == Some("HIT") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("GET {path} never came from the cache");
}

fn stopped_ehr_gives_502_then_recovers() {
    let mut hearth = Hearth::start();
    let patient = hearth.sample.patient.id.clone();
    let tokens = hearth.patient_launch("launch/patient patient/*.cruds");
    let fhir = Fhir::new(&hearth.default_site.fhir, &tokens.access);
    let read = format!("Patient/{patient}");
    read_until_hit(&fhir, &read);
    let search = format!("Observation?patient={patient}&_count=5");
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "written around an EHR restart"},
        "subject": {"reference": format!("Patient/{patient}")},
    });

    hearth.kill_upstream();

    let down = send(
        fhir.request(Method::GET, &search)
            .header("Cache-Control", "no-cache"),
    );
    let diagnostics = assert_outcome(&down, 502);
    assert_eq!(
        down.json()["issue"][0]["code"],
        "transient",
        "{}",
        down.body
    );
    assert!(!diagnostics.is_empty(), "the outcome says what failed");
    let write = send(
        fhir.request(Method::POST, "Observation")
            .header("Content-Type", FHIR_JSON)
            .body(observation.to_string()),
    );
    assert_outcome(&write, 502);
    let cached = fhir.get(&read);
    assert_eq!(
        cached.status, 200,
        "a cached read is served: {}",
        cached.body
    );
    assert_eq!(cached.header("x-cache"), Some("HIT"));

    hearth.restart_upstream();

    let up = fhir.get_with(&search, &[("Cache-Control", "no-cache")]);
    assert_eq!(up.status, 200, "after the restart: {}", up.body);
    assert_eq!(up.json()["resourceType"], "Bundle", "{}", up.body);
    let created = fhir.create(&observation);
    let path = format!("Observation/{}", created["id"].as_str().expect("an id"));
    assert_eq!(fhir.read(&path)["id"], created["id"]);
    let stored = Fhir::new(
        &hearth.repository().fhir_url(),
        &hearth.repository().admin_token(),
    )
    .read(&path);
    assert_eq!(
        stored["code"]["text"], "written around an EHR restart",
        "the write after the restart reached the EHR"
    );
}

#[test]
fn stopped_ehr_gives_502_and_recovers() {
    target::run_through_proxy(stopped_ehr_gives_502_then_recovers);
}
