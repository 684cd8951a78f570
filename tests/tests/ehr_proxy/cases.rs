//! The cases: reads and searches through the EHR-backed site, the cache, writes, and
//! upstream faults.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::front::{Front, SLOW_TOKEN, send, site, start_answering_upstream};
use crate::http::Reply;
use crate::sample::subject_of;

const PATIENT_SCOPE: &str = "launch/patient patient/*.rs openid fhirUser";

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_string)
}

fn assert_outcome(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
}

/// Repeats a GET until the response comes from the cache, because the proxy records a
/// miss in the log in the background.
fn read_until_hit(front: &Front, token: &str, url: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = front.get_url(url, token, &[]);
        if reply.header("x-cache") == Some("HIT") || Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn patient_app_reads_through_proxy() {
    let front = Front::start();
    let sample = front.ehr.sample;
    let patient = &sample.patient.id;
    let other = &sample.other.id;
    let ehr_base = front.ehr.server.base_url.clone();

    let metadata = front.send(front.client().get(format!("{}/metadata", front.site.fhir)));
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert!(
        !metadata.body.contains(&front.ehr.default_site.fhir),
        "the CapabilityStatement names the EHR: {}",
        metadata.body
    );
    let token_uri = &metadata.json()["rest"][0]["security"]["extension"][0]["extension"][1];
    assert_eq!(token_uri["valueUri"], format!("{}/token", front.site.auth));

    let token = front.patient_token(&front.site, PATIENT_SCOPE);

    let own = front.get(&front.site, &token, &format!("Patient/{patient}"), &[]);
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["id"], patient.as_str());
    assert!(
        !own.body.contains(&ehr_base),
        "the EHR's URL leaked: {}",
        own.body
    );

    let foreign = front.get(&front.site, &token, &format!("Patient/{other}"), &[]);
    assert_outcome(&foreign, 404, "not-found");

    let path = format!("Observation?patient={patient}&_count=5");
    let page = front.get(&front.site, &token, &path, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let bundle = page.json();
    let observations = entries(&bundle);
    assert_eq!(observations.len(), 5, "{bundle}");
    for observation in &observations {
        assert_eq!(subject_of(observation), *patient);
    }
    let next = next_link(&bundle).expect("a next link");
    assert!(
        next.starts_with(&front.site.fhir),
        "next link not rewritten: {next}"
    );
    for entry in bundle["entry"].as_array().unwrap() {
        let full_url = entry["fullUrl"].as_str().unwrap_or_default();
        assert!(
            full_url.starts_with(&front.site.fhir),
            "fullUrl: {full_url}"
        );
    }
    let second = front.get_url(&next, &token, &[]);
    assert_eq!(second.status, 200, "{}", second.body);
    let second_ids: Vec<Value> = entries(&second.json())
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert!(!second_ids.is_empty());
    assert!(
        observations.iter().all(|o| !second_ids.contains(&o["id"])),
        "page 2 repeats page 1"
    );

    let foreign_search = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={other}"),
        &[],
    );
    assert_eq!(foreign_search.status, 200, "{}", foreign_search.body);
    assert!(
        entries(&foreign_search.json()).is_empty(),
        "another patient's data leaked"
    );

    let unfiltered = front.get(&front.site, &token, "Observation?_count=50", &[]);
    assert_eq!(unfiltered.status, 200, "{}", unfiltered.body);
    for observation in entries(&unfiltered.json()) {
        assert_eq!(
            subject_of(&observation),
            *patient,
            "a search without patient leaked"
        );
    }

    let included = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={patient}&_count=2&_include=Observation:subject"),
        &[],
    );
    assert_eq!(included.status, 200, "{}", included.body);
    let resources = entries(&included.json());
    let own_patient = resources
        .iter()
        .any(|r| r["resourceType"] == "Patient" && r["id"] == patient.as_str());
    assert!(
        own_patient,
        "the included Patient is missing: {}",
        included.body
    );

    let missing = front.get(&front.site, &token, "Patient/no-such-patient", &[]);
    assert_outcome(&missing, 404, "not-found");

    let denied = front.get(
        &front.site,
        &front.patient_token(&front.site, "launch/patient patient/Patient.rs"),
        "Observation",
        &[],
    );
    assert_outcome(&denied, 403, "forbidden");
}

#[test]
fn proxy_cache_hits_and_invalidates() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let admin = front.admin_token();
    let url = format!("{}/Patient/{patient}", front.site.fhir);

    let first = front.get_url(&url, &admin, &[]);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let warm = read_until_hit(&front, &admin, &url);
    assert_eq!(
        warm.header("x-cache"),
        Some("HIT"),
        "the cache never served the read"
    );
    assert_eq!(warm.json(), first.json());

    let bypass = front.get_url(&url, &admin, &[("Cache-Control", "no-cache")]);
    assert_eq!(bypass.status, 200);
    assert_eq!(bypass.header("x-cache"), Some("BYPASS"));

    let encounters = format!("{}/Encounter?patient={patient}&_count=1", front.site.fhir);
    front.get_url(&encounters, &admin, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let uncached = front.get_url(&encounters, &admin, &[]);
    assert_eq!(
        uncached.header("x-cache"),
        Some("BYPASS"),
        "Encounter freshness is 0"
    );

    let mut changed = first.json();
    changed["active"] = json!(false);
    let update = front.send(
        front
            .client()
            .put(&url)
            .bearer_auth(&admin)
            .header("Content-Type", "application/fhir+json")
            .body(changed.to_string()),
    );
    assert_eq!(update.status, 200, "{}", update.body);
    let after = front.get_url(&url, &admin, &[]);
    assert_eq!(
        after.header("x-cache"),
        Some("MISS"),
        "the write did not invalidate"
    );
    assert_eq!(after.json()["active"], false);

    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "written through the proxy"},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    let created = front.send(
        front
            .client()
            .post(format!("{}/Observation", front.site.fhir))
            .bearer_auth(&admin)
            .header("Content-Type", "application/fhir+json")
            .body(observation.to_string()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let location = created.header("location").expect("a Location header");
    assert!(
        location.starts_with(&front.site.fhir),
        "Location not rewritten: {location}"
    );
}

#[test]
fn upstream_faults_become_gateway_errors() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let token = front.patient_token(&front.site, PATIENT_SCOPE);
    let slow_token = front.patient_token(&front.slow, PATIENT_SCOPE);
    let read = format!("{}/Patient/{patient}", front.site.fhir);
    let warm = read_until_hit(&front, &token, &read);
    assert_eq!(warm.header("x-cache"), Some("HIT"));

    // The slow upstream never responds: each request times out after the configured 2 s,
    // and requests over its two slots get 503 while the other site still responds.
    let slow_url = format!("{}/Patient/{patient}", front.slow.fhir);
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let url = slow_url.clone();
            let token = slow_token.clone();
            std::thread::spawn(move || {
                send(reqwest::blocking::Client::new().get(url).bearer_auth(token))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let other_site = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={patient}&_count=1"),
        &[],
    );
    assert_eq!(other_site.status, 200, "{}", other_site.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the slow site blocked another site"
    );
    let replies: Vec<Reply> = waiting.into_iter().map(|t| t.join().unwrap()).collect();
    for reply in replies.iter().filter(|reply| reply.status == 503) {
        assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.body);
    }
    let mut statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        vec![503, 504, 504],
        "two time out, one finds no free slot"
    );
    let heads = front.slow_requests.lock().unwrap().clone();
    assert!(!heads.is_empty());
    assert!(
        heads.iter().all(|h| h
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {SLOW_TOKEN}"))),
        "the configured bearer token was not sent"
    );
    let timeout = front.get(&front.slow, &slow_token, &format!("Patient/{patient}"), &[]);
    assert_outcome(&timeout, 504, "timeout");

    // Stop the EHR process: fresh reads get 502, cached reads are still served.
    let pid = front.ehr.server.pid().to_string();
    let killed = Command::new("kill")
        .arg("-KILL")
        .arg(&pid)
        .status()
        .expect("kill runs");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    let down = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={patient}&_count=3"),
        &[("Cache-Control", "no-cache")],
    );
    assert_outcome(&down, 502, "transient");
    let cached = front.get_url(&read, &token, &[]);
    assert_eq!(cached.status, 200, "{}", cached.body);
    assert_eq!(cached.header("x-cache"), Some("HIT"));
}

/// Registers an EHR-backed site without upstream authentication at `upstream` and
/// returns it.
fn open_site(front: &Front, site_id: &str, upstream: &str) -> crate::http::Site {
    let settings = json!({
        "site_id": site_id,
        "name": site_id,
        "backing": "ehr",
        "upstream_base_url": upstream,
        "upstream_auth_method": "none",
    });
    front.admin_post("/admin/sites", &settings, 201);
    site(&front.server, site_id)
}

#[test]
fn incomplete_or_odd_upstreams_get_clear_errors() {
    let front = Front::start();
    let admin = front.admin_token();
    let port = start_answering_upstream("200 OK", "", r#"{"hello": "world"}"#);
    let upstream = format!("http://127.0.0.1:{port}/fhir");

    // A bearer site whose token is set neither in the config nor in the environment
    // returns 503, naming the missing setting.
    let unset = json!({
        "site_id": "unset",
        "name": "Bearer site without a token",
        "backing": "ehr",
        "upstream_base_url": upstream,
        "upstream_auth_method": "bearer",
    });
    front.admin_post("/admin/sites", &unset, 201);
    let reply = front.get(&site(&front.server, "unset"), &admin, "Patient/1", &[]);
    assert_outcome(&reply, 503, "exception");
    assert!(
        reply.body.contains("HEARTH_EHR_BEARER_TOKEN_UNSET"),
        "{}",
        reply.body
    );

    // An upstream that returns JSON without a resourceType gets 502, for reads,
    // searches and the CapabilityStatement alike.
    let odd = open_site(&front, "odd", &upstream);
    for path in ["Patient/1", "Patient?name=x", "metadata"] {
        let reply = front.get(&odd, &admin, path, &[("Cache-Control", "no-cache")]);
        assert_outcome(&reply, 502, "exception");
        assert!(!reply.body.contains("hello"), "{}", reply.body);
    }

    // A resource of the wrong type for the interaction gets 502 too.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [
            {"relation": "self", "url": "http://127.0.0.1:{port}/fhir/Patient?name=x"},
            {"relation": "next", "url": "http://elsewhere.test/fhir/Patient?page=2"},
        ],
        "entry": [
            {"foo": 1},
            "x",
            {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Observation", "id": "o1"}, "search": {"mode": "match"}},
        ],
    })
    .to_string();
    let port = start_answering_upstream("200 OK", "", &bundle);
    let bundles = open_site(&front, "bundles", &format!("http://127.0.0.1:{port}/fhir"));
    let read = front.get(&bundles, &admin, "Patient/p1", &[]);
    assert_outcome(&read, 502, "exception");

    // A search keeps only well-formed entries and links that lead to the site.
    let search = front.get(&bundles, &admin, "Patient?name=x", &[]);
    assert_eq!(search.status, 200, "{}", search.body);
    let body = search.json();
    let entries = body["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{body}");
    assert_eq!(entries[0]["resource"]["id"], "p1");
    let links = body["link"].as_array().expect("links");
    assert_eq!(links.len(), 1, "{body}");
    assert!(
        links[0]["url"].as_str().unwrap().starts_with(&bundles.fhir),
        "{body}"
    );

    // A redirect and an upstream 401 are the EHR's business: the app gets 502, never a
    // redirect off the site or a 401 that would make it drop a good token.
    let port = start_answering_upstream("302 Found", "Location: http://127.0.0.1:9/x\r\n", "");
    let moved = open_site(&front, "moved", &format!("http://127.0.0.1:{port}/fhir"));
    let reply = front.get(&moved, &admin, "Patient/p1", &[]);
    assert_outcome(&reply, 502, "exception");
    assert!(reply.header("location").is_none());
    let closed = open_site(&front, "closed", &front.ehr.default_site.fhir);
    let reply = front.get(&closed, &admin, "Patient/p1", &[]);
    assert_outcome(&reply, 502, "exception");

    // A read that returns another resource's id, and an upstream 403 that rejects
    // Hearth's credential, get 502 too.
    let port = start_answering_upstream(
        "200 OK",
        "",
        r#"{"resourceType": "Patient", "id": "other"}"#,
    );
    let other_id = open_site(&front, "other-id", &format!("http://127.0.0.1:{port}/fhir"));
    let reply = front.get(&other_id, &admin, "Patient/p1", &[]);
    assert_outcome(&reply, 502, "exception");
    let refusal = r#"{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}"#;
    let port = start_answering_upstream("403 Forbidden", "", refusal);
    let refused = open_site(&front, "refused", &format!("http://127.0.0.1:{port}/fhir"));
    let reply = front.get(&refused, &admin, "Patient/p1", &[]);
    assert_outcome(&reply, 502, "exception");

    // A Location off the site is left out of a create's response.
    let created = r#"{"resourceType": "Patient", "id": "p2"}"#;
    let port = start_answering_upstream(
        "201 Created",
        "Location: http://elsewhere.test/fhir/Patient/p2\r\n",
        created,
    );
    let creating = open_site(&front, "creating", &format!("http://127.0.0.1:{port}/fhir"));
    let reply = front.send(
        front
            .client()
            .post(format!("{}/Patient", creating.fhir))
            .bearer_auth(&admin)
            .header("Content-Type", "application/fhir+json")
            .body(r#"{"resourceType": "Patient"}"#),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.header("location").is_none(), "{:?}", reply.headers);

    // A Bundle whose entries are not an array cannot be filtered, and a read answered
    // with an empty body has no resource: both get 502.
    let port = start_answering_upstream(
        "200 OK",
        "",
        r#"{"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {"resourceType": "Patient", "id": "p9"}}}"#,
    );
    let shapeless = open_site(
        &front,
        "shapeless",
        &format!("http://127.0.0.1:{port}/fhir"),
    );
    let reply = front.get(&shapeless, &admin, "Patient?name=x", &[]);
    assert_outcome(&reply, 502, "exception");
    let port = start_answering_upstream("200 OK", "", "");
    let blank = open_site(&front, "blank", &format!("http://127.0.0.1:{port}/fhir"));
    let reply = front.get(&blank, &admin, "Patient/p1", &[]);
    assert_outcome(&reply, 502, "exception");

    // An error without a body becomes an OperationOutcome with the upstream's status.
    let port = start_answering_upstream("404 Not Found", "", "");
    let empty = open_site(&front, "empty", &format!("http://127.0.0.1:{port}/fhir"));
    let reply = front.get(&empty, &admin, "Patient/p1", &[]);
    assert_outcome(&reply, 404, "not-found");
}
