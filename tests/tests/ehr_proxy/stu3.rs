//! An EHR-backed site whose upstream speaks FHIR STU3. Hearth validates R4, so the upstream
//! cannot be a second Hearth: it is tests/clients/stu3/server.cjs, node-fhir-server-core's
//! STU3 REST layer over the Synthea STU3 bundles of tests/data, started with Node.
//!
//! infra/test.sh installs its packages and sets `HEARTH_TEST_STU3_SERVER_DIR` to the
//! directory whose node_modules contains them. When it is unset, as under a plain
//! `cargo test`, the test prints a notice and returns.
//!
//! Apps must see valid R4 for the eleven converted types in reads and searches, and an R4
//! update must reach the upstream as STU3. Validity is checked by writing each resource
//! the proxy returned into the front's own repository, which rejects anything that is not
//! R4 in structure.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hearth_e2e::{Backend, Server, free_port};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::browser::{AuthRequest, Browser};
use crate::front::send;
use crate::http::{Reply, Site, Tokens, form};
use crate::support::{APP_SCOPE, PASSWORD, PATIENT_USER, PUBLIC_APP, REDIRECT_URI};

/// The patient of the STU3 sample whose record has all eleven types.
const PATIENT: &str = "58c297c4-d684-4677-8024-01131d93835e";
/// The second patient of the STU3 sample.
const OTHER: &str = "4026988c-ab06-4635-8c53-86cbad7b1c56";

const TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "AllergyIntolerance",
    "Procedure",
    "Immunization",
    "DiagnosticReport",
    "Practitioner",
    "Organization",
];

/// The repository checkout these tests were built from.
fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
}

/// The STU3 server process, killed when dropped.
struct Stu3Upstream {
    child: Child,
    /// Its FHIR base URL.
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Stu3Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stu3_server_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HEARTH_TEST_STU3_SERVER_DIR").map(PathBuf::from);
    if dir.is_none() {
        // Written to stderr directly, because the test harness hides eprintln! output of
        // passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "stu3 upstream test: not run, because HEARTH_TEST_STU3_SERVER_DIR is not set; \
             infra/test.sh installs the STU3 server's packages and sets it"
        );
    }
    dir
}

/// Unpacks the STU3 sample and starts the STU3 server on a free port.
fn start_stu3_upstream(packages: &Path) -> Stu3Upstream {
    let data = tempfile::tempdir().expect("a temporary directory");
    let archive = checkout().join("tests/data/synthea-stu3.tar.xz");
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(data.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking {} failed", archive.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.path().join("synthea-stu3"))
        .expect("the unpacked STU3 sample")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();

    let port = free_port();
    let mut child = Command::new("node")
        .arg(checkout().join("tests/clients/stu3/server.cjs"))
        .arg(port.to_string())
        .args(&files)
        .env("NODE_PATH", packages.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts the STU3 server");
    let stdout = child.stdout.take().expect("the server's standard output");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the STU3 server did not start within 60 s");
    assert!(line.starts_with("listening"), "{line}");
    Stu3Upstream {
        child,
        base: format!("http://127.0.0.1:{port}/3_0_1"),
        _data: data,
    }
}

struct Fixture {
    upstream: Stu3Upstream,
    server: Server,
    site: Site,
    http: Client,
}

impl Fixture {
    fn start(packages: &Path) -> Fixture {
        let upstream = start_stu3_upstream(packages);
        let server = Server::start_with(
            &Backend::Embedded,
            tempfile::tempdir().expect("a data directory"),
            &[],
            &[],
        )
        .expect("hearth starts");
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let site = Site {
            id: "stu3".to_string(),
            auth: format!("{}/sites/stu3/auth", server.base_url),
            fhir: format!("{}/sites/stu3/fhir", server.base_url),
        };
        let fixture = Fixture {
            upstream,
            server,
            site,
            http,
        };
        fixture.admin_post(
            "/admin/sites",
            &json!({
                "site_id": "stu3",
                "name": "STU3 EHR",
                "backing": "ehr",
                "upstream_base_url": fixture.upstream.base,
                "upstream_fhir_version": "3.0.1",
                "cache_freshness_s": {"Patient": 300},
            }),
        );
        fixture.admin_post(
            "/admin/apps",
            &json!({
                "client_id": PUBLIC_APP,
                "name": "STU3 app",
                "client_type": "public",
                "redirect_uris": [REDIRECT_URI],
                "scope": APP_SCOPE,
                "sites": ["stu3"],
            }),
        );
        fixture.admin_post(
            "/admin/users",
            &json!({
                "username": PATIENT_USER,
                "password": PASSWORD,
                "fhir_user": format!("Patient/{PATIENT}"),
            }),
        );
        fixture
    }

    fn admin_post(&self, path: &str, body: &Value) {
        let reply = send(
            self.http
                .post(format!("{}{path}", self.server.base_url))
                .bearer_auth(self.server.admin_token())
                .json(body),
        );
        assert_eq!(reply.status, 201, "POST {path}: {}", reply.body);
    }

    fn patient_token(&self) -> String {
        let request = AuthRequest::new(&self.site, PUBLIC_APP, "launch/patient patient/*.rs");
        let redirect = Browser::new().authorize(&request, PATIENT_USER, None);
        let code = redirect.code();
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", request.pkce.verifier.as_str()),
            ("client_id", PUBLIC_APP),
        ];
        let reply = Reply::send(
            self.http
                .post(format!("{}/token", self.site.auth))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&pairs)),
        );
        let tokens = Tokens::from_response(&reply);
        assert_eq!(tokens.response["patient"], PATIENT, "{}", tokens.response);
        tokens.access
    }

    fn get(&self, url: &str, token: &str) -> Value {
        let reply = send(self.http.get(url).bearer_auth(token));
        assert_eq!(reply.status, 200, "GET {url}: {}", reply.body);
        reply.json()
    }

    /// Writes a resource the proxy returned into the front's own R4 repository, which
    /// rejects content that is not R4 in structure.
    fn assert_valid_r4(&self, resource: &Value) {
        let kind = resource["resourceType"].as_str().expect("a resourceType");
        let id = resource["id"].as_str().expect("an id");
        let reply = send(
            self.http
                .put(format!("{}/{kind}/{id}", self.server.fhir_url()))
                .bearer_auth(self.server.admin_token())
                .header("Content-Type", "application/fhir+json")
                .body(resource.to_string()),
        );
        assert!(
            matches!(reply.status, 200 | 201),
            "{kind}/{id} from the STU3 site is not valid R4 ({}): {}",
            reply.status,
            reply.body
        );
    }
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|entry| entry["resource"].clone())
        .collect()
}

fn search_path(kind: &str) -> String {
    match kind {
        "Patient" => format!("Patient?_id={PATIENT}"),
        "Practitioner" | "Organization" => format!("{kind}?_count=3"),
        _ => format!("{kind}?patient={PATIENT}&_count=3"),
    }
}

fn reference_of(resource: &Value, field: &str) -> String {
    resource[field]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn stu3_upstream_is_seen_as_r4() {
    let Some(packages) = stu3_server_dir() else {
        return;
    };
    let fixture = Fixture::start(&packages);
    let admin = fixture.server.admin_token();

    // Reads and searches of every converted type are valid R4.
    for kind in TYPES {
        let url = format!("{}/{}", fixture.site.fhir, search_path(kind));
        let bundle = fixture.get(&url, &admin);
        let found = entries(&bundle);
        assert!(!found.is_empty(), "no {kind} found: {bundle}");
        for resource in &found {
            assert_eq!(resource["resourceType"], *kind, "{resource}");
            fixture.assert_valid_r4(resource);
        }
        let id = found[0]["id"].as_str().expect("an id");
        let read = fixture.get(&format!("{}/{kind}/{id}", fixture.site.fhir), &admin);
        assert_eq!(
            read, found[0],
            "the read and the search of {kind}/{id} differ"
        );
    }

    // What changed between the versions reads as R4.
    let conditions = entries(&fixture.get(
        &format!("{}/Condition?patient={PATIENT}", fixture.site.fhir),
        &admin,
    ));
    let condition = &conditions[0];
    assert_eq!(
        condition["clinicalStatus"]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "{condition}"
    );
    assert!(condition.get("context").is_none(), "{condition}");
    assert!(reference_of(condition, "encounter").starts_with("Encounter/"));
    let immunizations = entries(&fixture.get(
        &format!("{}/Immunization?patient={PATIENT}", fixture.site.fhir),
        &admin,
    ));
    for immunization in &immunizations {
        assert!(immunization.get("notGiven").is_none(), "{immunization}");
        assert!(immunization["status"].is_string(), "{immunization}");
    }

    // R4's MedicationRequest `encounter` parameter reaches STU3 as `context`.
    let requests = entries(&fixture.get(
        &format!("{}/MedicationRequest?patient={PATIENT}", fixture.site.fhir),
        &admin,
    ));
    let encounter = reference_of(&requests[0], "encounter");
    assert!(encounter.starts_with("Encounter/"), "{}", requests[0]);
    let in_encounter = entries(&fixture.get(
        &format!(
            "{}/MedicationRequest?patient={PATIENT}&encounter={encounter}",
            fixture.site.fhir
        ),
        &admin,
    ));
    assert!(!in_encounter.is_empty());
    for request in &in_encounter {
        assert_eq!(reference_of(request, "encounter"), encounter, "{request}");
    }
    let elsewhere = requests
        .iter()
        .filter(|r| reference_of(r, "encounter") != encounter)
        .count();
    assert_eq!(
        in_encounter.len(),
        requests.len() - elsewhere,
        "the encounter parameter did not filter"
    );

    // A patient app sees its own record only, with paging through Hearth.
    let token = fixture.patient_token();
    let page = fixture.get(
        &format!("{}/Observation?_count=5", fixture.site.fhir),
        &token,
    );
    let observations = entries(&page);
    assert_eq!(observations.len(), 5, "{page}");
    for observation in &observations {
        assert_eq!(
            reference_of(observation, "subject"),
            format!("Patient/{PATIENT}")
        );
        assert!(observation.get("context").is_none(), "{observation}");
    }
    let next = page["link"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_string();
    assert!(next.starts_with(&fixture.site.fhir), "{next}");
    let second = entries(&fixture.get(&next, &token));
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|o| !observations.contains(o)),
        "page 2 repeats page 1"
    );
    // `subject`, because node-fhir-server-core rejects a repeated `patient` parameter,
    // which is what the proxy's added restriction would make of `patient={OTHER}`.
    let foreign = entries(&fixture.get(
        &format!("{}/Condition?subject=Patient/{OTHER}", fixture.site.fhir),
        &token,
    ));
    assert!(foreign.is_empty(), "another patient's data leaked");
    let other_patient = send(
        fixture
            .http
            .get(format!("{}/Patient/{OTHER}", fixture.site.fhir))
            .bearer_auth(&token),
    );
    assert_eq!(other_patient.status, 404, "{}", other_patient.body);
    let own = send(
        fixture
            .http
            .get(format!("{}/Patient/{PATIENT}", fixture.site.fhir))
            .bearer_auth(&token),
    );
    assert_eq!(own.status, 200, "{}", own.body);
    fixture.assert_valid_r4(&own.json());

    // An R4 update goes upstream as STU3; the STU3 server rejects elements it does not
    // define, and the change reads back as R4.
    let mut changed = condition.clone();
    changed["note"] = json!([{"text": "updated through the proxy"}]);
    let id = changed["id"].as_str().expect("an id").to_string();
    let update = send(
        fixture
            .http
            .put(format!("{}/Condition/{id}", fixture.site.fhir))
            .bearer_auth(&admin)
            .header("Content-Type", "application/fhir+json")
            .body(changed.to_string()),
    );
    assert!(
        matches!(update.status, 200 | 201),
        "the STU3 server rejected the update: {}",
        update.body
    );
    let stored = fixture.get(&format!("{}/Condition/{id}", fixture.upstream.base), &admin);
    assert_eq!(stored["clinicalStatus"], "active", "{stored}");
    assert!(stored["context"]["reference"].is_string(), "{stored}");
    assert!(stored.get("encounter").is_none(), "{stored}");
    let read_back = fixture.get(&format!("{}/Condition/{id}", fixture.site.fhir), &admin);
    assert_eq!(read_back["note"][0]["text"], "updated through the proxy");
    fixture.assert_valid_r4(&read_back);
}
