//! Real third-party SMART clients against a running `hearth serve`: the SMART JavaScript
//! client (npm fhirclient) in headless Chromium, the SMART Python client (PyPI
//! fhirclient), and backend services whose client assertions PyJWT signs. The driver
//! scripts are under tests/clients/.
//!
//! infra/test.sh installs Chromium and the client packages, then sets
//! `HEARTH_TEST_NODE_DIR` (the directory whose node_modules contains fhirclient and
//! playwright-core) and `HEARTH_TEST_PYTHON` (a Python with
//! tests/clients/python/requirements.txt). When they are unset, as under a plain
//! `cargo test`, these tests print a notice and return without running the clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::browser::{self, admin_post, clients_dir, sample_file};
use hearth_e2e::{Backend, Server, free_port};
use reqwest::Url;
use serde_json::{Value, json};

/// How long one driver script may run before the test kills it.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(180);

/// Client ids and scopes fixed in the launch pages under tests/clients/web/.
const EHR_APP: &str = "hearth-test-ehr-app";
const EHR_APP_SCOPE: &str = "launch openid fhirUser online_access patient/*.rs";
const STANDALONE_APP: &str = "hearth-test-standalone-app";
const STANDALONE_APP_SCOPE: &str =
    "launch/patient openid fhirUser offline_access patient/*.rs user/Patient.rs";

const PRACTITIONER_USER: &str = "dr-christiansen";
const PRACTITIONER_PASSWORD: &str = "practitioner password";

/// Capabilities from the discovery document that these tests exercise with real clients.
/// `authorize-post` is advertised too, but neither fhirclient sends an authorization
/// request by POST.
const EXERCISED_CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-passthrough-banner",
    "context-passthrough-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

/// Where the installed client packages are.
struct ClientTools {
    /// Directory whose node_modules contains fhirclient and playwright-core.
    node_dir: PathBuf,
    /// Python interpreter with the packages of tests/clients/python/requirements.txt.
    python: PathBuf,
}

/// Finds the installed client packages, or prints a notice and returns `None` when the
/// test command did not install them.
fn client_tools(test: &str) -> Option<ClientTools> {
    let node_dir = std::env::var_os("HEARTH_TEST_NODE_DIR").map(PathBuf::from);
    let python = std::env::var_os("HEARTH_TEST_PYTHON").map(PathBuf::from);
    match (node_dir, python) {
        (Some(node_dir), Some(python)) => Some(ClientTools { node_dir, python }),
        _ => {
            browser::skip_notice(
                test,
                "HEARTH_TEST_NODE_DIR or HEARTH_TEST_PYTHON is not set; infra/test.sh \
                 installs the SMART clients and sets both",
            );
            None
        }
    }
}

/// A patient of the Synthea sample, as its bundle file describes it.
struct SamplePatient {
    file: PathBuf,
    id: String,
    /// Given names and family name of the first name, as the test apps show it.
    name: String,
    family: String,
    birth_date: String,
    encounter_ids: Vec<String>,
    observation_count: usize,
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

fn resources_of<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .expect("a bundle with entries")
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|resource| resource["resourceType"] == resource_type)
        .collect()
}

fn given_and_family(resource: &Value) -> String {
    let name = &resource["name"][0];
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    parts.extend(name["family"].as_str());
    parts.join(" ")
}

fn sample_patient(file_prefix: &str) -> SamplePatient {
    let file = sample_file(file_prefix);
    let bundle = read_json(&file);
    let patient = resources_of(&bundle, "Patient")[0];
    let id = patient["id"].as_str().unwrap().to_string();
    let encounter_ids = resources_of(&bundle, "Encounter")
        .iter()
        .map(|encounter| encounter["id"].as_str().unwrap().to_string())
        .collect();
    let observation_count = resources_of(&bundle, "Observation")
        .iter()
        .filter(|o| o["subject"]["reference"] == format!("urn:uuid:{id}"))
        .count();
    SamplePatient {
        id,
        name: given_and_family(patient),
        family: patient["name"][0]["family"].as_str().unwrap().to_string(),
        birth_date: patient["birthDate"].as_str().unwrap().to_string(),
        encounter_ids,
        observation_count,
        file,
    }
}

/// Reads the first Practitioner of the sample's practitioner file and returns its id and
/// name.
fn sample_practitioner() -> (String, String) {
    let bundle = read_json(&sample_file("practitionerInformation"));
    let practitioner = resources_of(&bundle, "Practitioner")[0];
    (
        practitioner["id"].as_str().unwrap().to_string(),
        given_and_family(practitioner),
    )
}

/// Starts a server and loads the hospital and practitioner files plus these patients.
fn start_with_sample(patients: &[&SamplePatient]) -> Server {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    let mut files = vec![
        sample_file("hospitalInformation"),
        sample_file("practitionerInformation"),
    ];
    files.extend(patients.iter().map(|p| p.file.clone()));

    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let output = server.load(&paths).expect("hearth load runs");
    assert!(
        output.status.success(),
        "hearth load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    server
}

fn register_app(server: &Server, registration: Value) -> Value {
    admin_post(server, "/admin/apps", &registration)
}

fn register_user(server: &Server, username: &str, password: &str, fhir_user: &str) {
    admin_post(
        server,
        "/admin/users",
        &json!({"username": username, "password": password, "fhir_user": fhir_user}),
    );
}

/// A `python -m http.server` on 127.0.0.1 serving a temporary directory. Dropping it
/// kills the process.
struct StaticServer {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl StaticServer {
    fn start(python: &Path, dir: tempfile::TempDir) -> StaticServer {
        let port = free_port();
        let child = Command::new(python)
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python:?} -m http.server: {e}"));
        let server = StaticServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::blocking::get(format!("{}/", server.url)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the static server at {} did not start within 20 s",
                server.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Serves the test apps of tests/clients/web, with the npm packages at node_modules/.
    fn web_apps(tools: &ClientTools) -> StaticServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for entry in std::fs::read_dir(clients_dir().join("web")).expect("tests/clients/web") {
            let path = entry.expect("a directory entry").path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap()))
                .unwrap_or_else(|e| panic!("cannot copy {path:?}: {e}"));
        }
        let node_modules = tools.node_dir.join("node_modules");
        assert!(
            node_modules.join("fhirclient").is_dir(),
            "{node_modules:?} has no fhirclient; run npm ci in tests/clients/node"
        );
        std::os::unix::fs::symlink(&node_modules, dir.path().join("node_modules"))
            .expect("a symbolic link to node_modules");
        StaticServer::start(&tools.python, dir)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the browser driver with a config object.
fn run_browser(tools: &ClientTools, config: &Value) -> Value {
    browser::run_node_script(
        &tools.node_dir,
        "js-client-launch.cjs",
        config,
        DRIVER_TIMEOUT,
    )
}

fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    Url::parse_with_params(base, params)
        .expect("a valid URL")
        .to_string()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not an array"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{v} is not a string"))
                .to_string()
        })
        .collect()
}

/// Checks what every browser run shares: the flow's pages and no request off the machine.
fn assert_browser_basics(report: &Value, server: &Server) {
    let titles: Vec<&str> = report["pages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|page| page["title"].as_str())
        .collect();
    assert_eq!(titles.first(), Some(&"Sign in - Hearth"), "{titles:?}");
    assert!(titles.contains(&"Allow access - Hearth"), "{titles:?}");
    assert_eq!(titles.last(), Some(&"Hearth test app"), "{titles:?}");
    assert_eq!(
        report["pages"][0]["url"],
        format!("{}/auth/authorize", server.base_url)
    );
    browser::assert_stayed_on_loopback(report);
}

#[test]
fn js_client_ehr_launch() {
    let Some(tools) = client_tools("js_client_ehr_launch") else {
        return;
    };
    let fannie = sample_patient("Fannie_Waelchi");
    let dwain = sample_patient("Dwain_McGlynn");
    let server = start_with_sample(&[&fannie, &dwain]);
    let web = StaticServer::web_apps(&tools);
    let (practitioner_id, practitioner_name) = sample_practitioner();

    register_app(
        &server,
        json!({
            "client_id": EHR_APP,
            "name": "EHR-launched test app",
            "client_type": "public",
            "redirect_uris": [format!("{}/app.html", web.url)],
            "scope": EHR_APP_SCOPE,
            "sites": ["default"],
        }),
    );
    let fhir_user = format!("Practitioner/{practitioner_id}");
    register_user(
        &server,
        PRACTITIONER_USER,
        PRACTITIONER_PASSWORD,
        &fhir_user,
    );
    let encounter = &fannie.encounter_ids[0];
    let style_url = format!("{}/smart-style.json", web.url);
    let launch = admin_post(
        &server,
        "/auth/launch",
        &json!({
            "client_id": EHR_APP,
            "patient": fannie.id,
            "encounter": encounter,
            "need_patient_banner": true,
            "smart_style_url": style_url,
            "intent": "reconcile",
        }),
    );
    let launch_id = launch["launch"].as_str().expect("a launch id");

    let launch_url = url_with(
        &format!("{}/ehr-launch.html", web.url),
        &[("iss", &server.fhir_url()), ("launch", launch_id)],
    );
    let report = run_browser(
        &tools,
        &json!({
            "launch_url": launch_url,
            "username": PRACTITIONER_USER,
            "password": PRACTITIONER_PASSWORD,
            "refresh": true,
        }),
    );
    assert_browser_basics(&report, &server);
    assert_eq!(report["approval"]["patient"], fannie.name);
    assert!(
        report.get("picker").is_none(),
        "an EHR launch needs no picker"
    );

    // What the app page shows its user.
    let shown = &report["shown"];
    assert_eq!(shown["patient_name"], fannie.name);
    assert_eq!(shown["patient_id"], fannie.id);
    assert_eq!(shown["encounter"], encounter.as_str());
    assert_eq!(shown["need_patient_banner"], "yes");
    assert_eq!(
        shown["banner"],
        format!("{}, born {}, female", fannie.name, fannie.birth_date)
    );
    assert_eq!(shown["intent"], "reconcile");
    let style = read_json(&clients_dir().join("web/smart-style.json"));
    assert_eq!(shown["style_highlight"], style["color_highlight"]);
    assert_eq!(
        shown["fhir_user"],
        format!("{practitioner_name} ({fhir_user})")
    );
    assert_eq!(
        shown["observation_count"],
        fannie.observation_count.to_string()
    );

    // The launch context in the token response.
    let app = &report["app"];
    let token = &app["token_response"];
    assert_eq!(token["patient"], fannie.id);
    assert_eq!(token["encounter"], encounter.as_str());
    assert_eq!(token["need_patient_banner"], true);
    assert_eq!(token["smart_style_url"], style_url);
    assert_eq!(token["intent"], "reconcile");
    assert_eq!(token["scope"], EHR_APP_SCOPE);
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["has_refresh_token"], true);
    assert_eq!(token["has_id_token"], true);

    // What the app read with its access token.
    assert_eq!(app["encounter"]["id"], encounter.as_str());
    assert_eq!(
        app["encounter"]["subject"],
        format!("Patient/{}", fannie.id)
    );
    assert_eq!(app["observation_count"], fannie.observation_count);
    assert_eq!(
        strings(&app["observation_patients"]),
        [format!("Patient/{}", fannie.id)]
    );
    assert_eq!(app["user"]["reference"], fhir_user);
    assert_eq!(app["user"]["name"], practitioner_name);
    assert_eq!(app["id_token"]["aud"], EHR_APP);
    assert_eq!(app["id_token"]["iss"], format!("{}/auth", server.base_url));
    assert_eq!(
        app["id_token"]["fhirUser"],
        format!("{}/{fhir_user}", server.fhir_url())
    );

    // online_access: the refresh keeps the context and the new token reads.
    let refresh = &report["refresh"];
    assert_eq!(refresh["access_token_changed"], true);
    assert_eq!(refresh["token_response"]["patient"], fannie.id);
    assert_eq!(refresh["token_response"]["encounter"], encounter.as_str());
    assert_eq!(refresh["token_response"]["scope"], EHR_APP_SCOPE);
    assert_eq!(refresh["patient"]["name"], fannie.name);
    assert_eq!(refresh["observation_count"], fannie.observation_count);

    // patient/*.rs confines a Patient search to the patient in context, though the
    // server stores two.
    assert_eq!(strings(&app["visible_patients"]), [fannie.id.as_str()]);
    assert_eq!(shown["visible_patient_count"], "1");
}

#[test]
fn js_client_standalone_launch_and_refresh() {
    let Some(tools) = client_tools("js_client_standalone_launch_and_refresh") else {
        return;
    };
    let fannie = sample_patient("Fannie_Waelchi");
    let dwain = sample_patient("Dwain_McGlynn");
    let server = start_with_sample(&[&fannie, &dwain]);
    let web = StaticServer::web_apps(&tools);
    let (practitioner_id, practitioner_name) = sample_practitioner();

    register_app(
        &server,
        json!({
            "client_id": STANDALONE_APP,
            "name": "Standalone test app",
            "client_type": "public",
            "redirect_uris": [format!("{}/app.html", web.url)],
            "scope": STANDALONE_APP_SCOPE,
            "sites": ["default"],
        }),
    );
    let fhir_user = format!("Practitioner/{practitioner_id}");
    register_user(
        &server,
        PRACTITIONER_USER,
        PRACTITIONER_PASSWORD,
        &fhir_user,
    );

    let launch_url = url_with(
        &format!("{}/standalone-launch.html", web.url),
        &[("iss", &server.fhir_url())],
    );
    let report = run_browser(
        &tools,
        &json!({
            "launch_url": launch_url,
            "username": PRACTITIONER_USER,
            "password": PRACTITIONER_PASSWORD,
            "patient_search": dwain.family,
            "patient_id": dwain.id,
            "refresh": true,
        }),
    );
    assert_browser_basics(&report, &server);

    // The picker's name search found the patient, and the approval page names it.
    let picker = &report["picker"];
    assert_eq!(
        picker["choices"],
        json!([{"id": dwain.id, "name": dwain.name}])
    );
    assert_eq!(report["approval"]["patient"], dwain.name);

    let shown = &report["shown"];
    assert_eq!(shown["patient_name"], dwain.name);
    assert_eq!(shown["patient_id"], dwain.id);
    assert_eq!(shown["encounter"], "none");
    assert_eq!(shown["need_patient_banner"], "no");
    assert_eq!(shown["banner"], Value::Null);
    assert_eq!(
        shown["fhir_user"],
        format!("{practitioner_name} ({fhir_user})")
    );
    assert_eq!(
        shown["observation_count"],
        dwain.observation_count.to_string()
    );

    let app = &report["app"];
    let token = &app["token_response"];
    assert_eq!(token["patient"], dwain.id);
    assert_eq!(token["scope"], STANDALONE_APP_SCOPE);
    assert_eq!(token["has_refresh_token"], true);
    assert!(token.get("encounter").is_none(), "{token}");
    assert_eq!(app["observation_count"], dwain.observation_count);
    assert_eq!(
        strings(&app["observation_patients"]),
        [format!("Patient/{}", dwain.id)]
    );
    // user/Patient.rs reaches every patient, beyond the one in context.
    let mut every_patient = vec![fannie.id.clone(), dwain.id.clone()];
    every_patient.sort();
    assert_eq!(strings(&app["visible_patients"]), every_patient);
    assert_eq!(app["id_token"]["aud"], STANDALONE_APP);

    // client.refresh(): a new access token that keeps the patient and reads.
    let refresh = &report["refresh"];
    assert_eq!(refresh["access_token_changed"], true);
    assert_eq!(refresh["refresh_token_changed"], true);
    assert_eq!(refresh["token_response"]["patient"], dwain.id);
    assert_eq!(refresh["token_response"]["scope"], STANDALONE_APP_SCOPE);
    assert_eq!(refresh["patient"]["id"], dwain.id);
    assert_eq!(refresh["patient"]["name"], dwain.name);
    assert_eq!(refresh["observation_count"], dwain.observation_count);
    assert_eq!(
        report["shown_after_refresh"],
        format!("Refreshed; the patient is still {}", dwain.name)
    );
}

#[test]
fn python_client_standalone_launch_and_refresh() {
    let Some(tools) = client_tools("python_client_standalone_launch_and_refresh") else {
        return;
    };
    let fannie = sample_patient("Fannie_Waelchi");
    let server = start_with_sample(&[&fannie]);

    // The redirect is captured from the approval response and never followed.
    let redirect_uri = "http://127.0.0.1:9/callback";
    let scope = "openid fhirUser offline_access patient/*.read";
    let app = register_app(
        &server,
        json!({
            "client_id": "hearth-test-python-app",
            "name": "Python test app",
            "client_type": "confidential-symmetric",
            "redirect_uris": [redirect_uri],
            "scope": format!("launch/patient {scope}"),
            "sites": ["default"],
        }),
    );
    let secret = app["client_secret"].as_str().expect("a client secret");
    let fhir_user = format!("Patient/{}", fannie.id);
    register_user(&server, "fannie", "patient password", &fhir_user);

    let config = json!({
        "fhir_base": server.fhir_url(),
        "client_id": "hearth-test-python-app",
        "client_secret": secret,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "username": "fannie",
        "password": "patient password",
    });
    let mut command = Command::new(&tools.python);
    command
        .arg(clients_dir().join("python/py_client_launch.py"))
        .arg(config.to_string());
    let report = browser::run_driver(command, "the SMART Python client", DRIVER_TIMEOUT);

    // Endpoints come from the CapabilityStatement's oauth-uris extension.
    let base = &server.base_url;
    assert_eq!(
        report["endpoints"],
        json!({"authorize": format!("{base}/auth/authorize"), "token": format!("{base}/auth/token")})
    );
    let request = &report["authorize_request"];
    assert_eq!(request["code_challenge_method"], "S256");
    assert_eq!(request["aud"], server.fhir_url());
    // A Patient user gets their own record without a picker.
    assert_eq!(
        report["pages"],
        json!(["Sign in - Hearth", "Allow access - Hearth"])
    );

    // The client adds launch/patient to the scopes it was given.
    let granted = format!("launch/patient {scope}");
    let token = &report["token_response"];
    assert_eq!(token["patient"], fannie.id);
    assert_eq!(token["scope"], granted);
    assert_eq!(token["has_refresh_token"], true);

    let read = &report["read"];
    assert_eq!(read["id"], fannie.id);
    assert_eq!(read["name"], fannie.name);
    assert_eq!(read["birth_date"], fannie.birth_date);
    assert_eq!(read["observation_count"], fannie.observation_count);
    assert_eq!(
        strings(&read["observation_subjects"]),
        [format!("Patient/{}", fannie.id)]
    );

    // The id_token verified against the keys of Hearth's OpenID configuration.
    let id_token = &report["id_token"];
    assert_eq!(id_token["aud"], "hearth-test-python-app");
    assert_eq!(id_token["iss"], format!("{base}/auth"));
    assert_eq!(
        id_token["fhirUser"],
        format!("{}/{fhir_user}", server.fhir_url())
    );

    let refresh = &report["refresh"];
    assert_eq!(refresh["succeeded"], true);
    assert_eq!(refresh["access_token_changed"], true);
    assert_eq!(refresh["refresh_token_changed"], true);
    assert_eq!(refresh["patient"], fannie.id);
    assert_eq!(refresh["scope"], granted);
    assert_eq!(refresh["read"]["name"], fannie.name);
    assert_eq!(
        refresh["read"]["observation_count"],
        fannie.observation_count
    );

    // Presenting the rotated refresh token again revokes the grant and its tokens.
    let reuse = &report["rotated_refresh_token_reuse"];
    assert_eq!(reuse["status"], 400);
    assert_eq!(reuse["error"], "invalid_grant");
    assert_eq!(reuse["current_token_read_status"], 401);
}

#[test]
fn backend_services_with_signed_assertions() {
    let Some(tools) = client_tools("backend_services_with_signed_assertions") else {
        return;
    };
    let dwain = sample_patient("Dwain_McGlynn");
    let server = start_with_sample(&[&dwain]);
    let script = clients_dir().join("python/backend_services.py");

    // The keys directory is also served, so one app can register the JWKS by URL.
    let keys = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(&tools.python);
    command.arg(&script).arg("keys").arg(keys.path());
    let status = command.status().expect("the key generator runs");
    assert!(status.success(), "generating keys failed: {status}");
    let jwks = read_json(&keys.path().join("jwks.json"));
    let key_server = StaticServer::start(&tools.python, keys);

    let scope = "system/Patient.rs system/Observation.rs";
    register_app(
        &server,
        json!({
            "client_id": "hearth-test-backend-inline",
            "name": "Backend service with inline keys",
            "client_type": "confidential-asymmetric",
            "jwks": jwks,
            "scope": scope,
            "sites": ["default"],
        }),
    );
    register_app(
        &server,
        json!({
            "client_id": "hearth-test-backend-jwks-url",
            "name": "Backend service with a JWKS URL",
            "client_type": "confidential-asymmetric",
            "jwks_uri": format!("{}/jwks.json", key_server.url),
            "scope": scope,
            "sites": ["default"],
        }),
    );

    let config = json!({
        "token_url": format!("{}/auth/token", server.base_url),
        "fhir_base": server.fhir_url(),
        "keys_dir": key_server.dir.path(),
        "clients": ["hearth-test-backend-inline", "hearth-test-backend-jwks-url"],
        "scope": scope,
        "patient_id": dwain.id,
    });
    let mut command = Command::new(&tools.python);
    command.arg(&script).arg("run").arg(config.to_string());
    let report = browser::run_driver(command, "the backend services client", DRIVER_TIMEOUT);

    let accepted = report["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 4, "two clients times two algorithms");
    for token in accepted {
        let case = format!("{} with {}", token["client_id"], token["alg"]);
        assert_eq!(token["status"], 200, "{case}: {token}");
        assert_eq!(token["scope"], scope, "{case}");
        assert_eq!(token["token_type"], "Bearer", "{case}");
        assert_eq!(token["expires_in"], 300, "{case}");
        assert_eq!(token["patient_status"], 200, "{case}");
        assert_eq!(token["patient_name"], dwain.name, "{case}");
        assert_eq!(token["observation_status"], 200, "{case}");
        assert_eq!(
            token["observation_count"], dwain.observation_count,
            "{case}"
        );
    }

    let rejected = &report["rejected"];
    for case in [
        "exp_more_than_5_minutes_ahead",
        "expired",
        "wrong_aud",
        "iss_differs_from_sub",
        "alg_rs256",
        "alg_hs256",
        "unknown_kid",
        "registered_kid_other_key",
        "reused_jti",
    ] {
        assert_eq!(rejected[case]["status"], 401, "{case}: {}", rejected[case]);
        assert_eq!(rejected[case]["error"], "invalid_client", "{case}");
    }
    assert_eq!(rejected["reused_jti"]["first_status"], 200);
    assert_eq!(rejected["non_system_scope"]["status"], 400);
    assert_eq!(rejected["non_system_scope"]["error"], "invalid_scope");

    // The tokens' scopes name Patient and Observation, so an Encounter search is
    // forbidden.
    for token in accepted {
        let case = format!("{} with {}", token["client_id"], token["alg"]);
        assert_eq!(
            token["out_of_scope_status"], 403,
            "{case}: Encounter search"
        );
    }
}

#[test]
fn discovery_advertises_what_clients_use() {
    let server = Server::start(&Backend::Embedded).expect("hearth starts");
    let base = &server.base_url;
    let (status, discovery) = server.get_json(&format!(
        "{}/.well-known/smart-configuration",
        server.fhir_url()
    ));
    assert_eq!(status, 200);
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{base}/auth/authorize")
    );
    assert_eq!(discovery["token_endpoint"], format!("{base}/auth/token"));
    assert_eq!(discovery["jwks_uri"], format!("{base}/auth/jwks"));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    let auth_methods = strings(&discovery["token_endpoint_auth_methods_supported"]);
    for method in ["client_secret_basic", "private_key_jwt"] {
        assert!(auth_methods.iter().any(|m| m == method), "{auth_methods:?}");
    }
    let algorithms = strings(&discovery["token_endpoint_auth_signing_alg_values_supported"]);
    assert_eq!(algorithms, ["RS384", "ES384"]);
    let capabilities = strings(&discovery["capabilities"]);
    for capability in EXERCISED_CAPABILITIES {
        assert!(
            capabilities.iter().any(|c| c == capability),
            "{capability} is not advertised: {capabilities:?}"
        );
    }

    // The Python client reads the same endpoints from the CapabilityStatement.
    let (status, metadata) = server.get_json(&format!("{}/metadata", server.fhir_url()));
    assert_eq!(status, 200);
    let oauth_uris = metadata["rest"][0]["security"]["extension"]
        .as_array()
        .expect("security extensions")
        .iter()
        .find(|e| {
            e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        })
        .expect("the oauth-uris extension");
    let endpoint = |name: &str| {
        oauth_uris["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == name)
            .map(|e| e["valueUri"].clone())
    };
    assert_eq!(
        endpoint("authorize"),
        Some(discovery["authorization_endpoint"].clone())
    );
    assert_eq!(endpoint("token"), Some(discovery["token_endpoint"].clone()));
}
