//! The fixture of the Bulk Data tests: a server with a few Synthea patients and
//! resources the tests create, backend-services clients registered through the admin
//! API, and tokens from the token endpoint with `client_credentials`.

use std::path::{Path, PathBuf};

use hearth_e2e::{Backend, Server, synthea_dir};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{BulkClient, Reply};

/// Name prefixes of the Synthea files the fixture loads.
const SAMPLE_FILES: &[&str] = &[
    "hospitalInformation",
    "practitionerInformation",
    "Fannie_Waelchi",
    "Dwain_McGlynn",
];

/// A backend service allowed every system read scope.
pub const SERVICE: &str = "bulk-service";
/// A second backend service, whose token must not open the first one's files.
pub const OTHER_SERVICE: &str = "bulk-other";
/// A backend service allowed to read Patient only.
pub const PATIENT_ONLY: &str = "bulk-patients";

pub struct Hearth {
    pub server: Server,
    /// Client secrets by client id.
    pub secrets: Vec<(String, String)>,
}

/// The Synthea files of the sample.
pub fn sample_files() -> Vec<PathBuf> {
    let dir = synthea_dir();
    SAMPLE_FILES
        .iter()
        .map(|prefix| {
            std::fs::read_dir(dir)
                .expect("the Synthea directory is readable")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .unwrap_or_else(|| panic!("no Synthea file starts with {prefix}"))
        })
        .collect()
}

/// The number of resources of a type in the sample files.
pub fn sample_count(resource_type: &str) -> usize {
    sample_files()
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("a sample file");
            let bundle: Value = serde_json::from_str(&text).expect("a Bundle");
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["resource"]["resourceType"] == resource_type)
                .count()
        })
        .sum()
}

impl Hearth {
    /// Starts a server with the sample loaded and the test clients registered.
    pub fn start() -> Hearth {
        Self::start_with(&[], &[])
    }

    /// Starts a server with `config` as its `hearth.toml`.
    pub fn start_configured(config: &str) -> Hearth {
        let data_dir = tempfile::tempdir().expect("a data directory");
        let path = data_dir.path().join("hearth.toml");
        std::fs::write(&path, config).expect("the configuration is written");
        let path = path.to_string_lossy().into_owned();
        Self::start_in(data_dir, &["--config", &path], &[])
    }

    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Hearth {
        let data_dir = tempfile::tempdir().expect("a data directory");
        Self::start_in(data_dir, args, envs)
    }

    pub fn start_in(data_dir: tempfile::TempDir, args: &[&str], envs: &[(&str, &str)]) -> Hearth {
        let server =
            Server::start_with(&Backend::Embedded, data_dir, args, envs).expect("hearth starts");
        let hearth = Hearth::attach(server);
        let files = sample_files();
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let output = hearth.server.load(&paths).expect("hearth load runs");
        assert!(
            output.status.success(),
            "loading the sample failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        hearth
    }

    /// Registers the test clients on a running server with an empty repository.
    pub fn attach(server: Server) -> Hearth {
        let mut hearth = Hearth {
            server,
            secrets: Vec::new(),
        };
        for (client_id, scope) in [
            (SERVICE, "system/*.rs"),
            (OTHER_SERVICE, "system/*.rs"),
            (PATIENT_ONLY, "system/Patient.rs"),
        ] {
            let app = json!({
                "client_id": client_id,
                "name": format!("Bulk test {client_id}"),
                "client_type": "confidential-symmetric",
                "scope": scope,
                "sites": ["default"],
            });
            let reply = hearth.admin(Method::POST, "/admin/apps", Some(&app));
            assert_eq!(
                reply.status,
                201,
                "registering {client_id}: {}",
                reply.text()
            );
            let secret = reply.json()["client_secret"]
                .as_str()
                .expect("a client secret")
                .to_string();
            hearth.secrets.push((client_id.to_string(), secret));
        }
        hearth
    }

    pub fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = reqwest::blocking::Client::new()
            .request(method, format!("{}{path}", self.server.base_url))
            .bearer_auth(self.server.admin_token());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        Reply::send(request)
    }

    /// A backend-services token of `client_id` for `scope`.
    pub fn token(&self, client_id: &str, scope: &str) -> String {
        let secret = &self
            .secrets
            .iter()
            .find(|(id, _)| id == client_id)
            .unwrap_or_else(|| panic!("{client_id} is not registered"))
            .1;
        let reply = Reply::send(
            reqwest::blocking::Client::new()
                .post(format!("{}/auth/token", self.server.base_url))
                .basic_auth(client_id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=client_credentials&scope={}",
                    url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>()
                )),
        );
        assert_eq!(reply.status, 200, "token for {client_id}: {}", reply.text());
        reply.json()["access_token"]
            .as_str()
            .expect("an access token")
            .to_string()
    }

    /// A Bulk Data client of the default site with a `system/*.rs` token of [`SERVICE`].
    pub fn client(&self) -> BulkClient {
        BulkClient::new(&self.server.fhir_url(), &self.token(SERVICE, "system/*.rs"))
    }

    /// A client of the default site with the admin credential, for writes.
    pub fn writer(&self) -> BulkClient {
        BulkClient::new(&self.server.fhir_url(), &self.server.admin_token())
    }

    /// Creates or replaces a resource with its id through `PUT` and returns it as stored.
    pub fn put(&self, resource: &Value) -> Value {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().expect("resourceType"),
            resource["id"].as_str().expect("id")
        );
        let reply = Reply::send(
            self.writer()
                .request(Method::PUT, &path)
                .header("content-type", "application/fhir+json")
                .body(resource.to_string()),
        );
        assert!(
            reply.status == 200 || reply.status == 201,
            "PUT {path}: {} {}",
            reply.status,
            reply.text()
        );
        reply.json()
    }

    pub fn delete(&self, path: &str) {
        let reply = self.writer().delete(path);
        assert!(
            reply.status == 200 || reply.status == 204,
            "DELETE {path}: {} {}",
            reply.status,
            reply.text()
        );
    }
}

/// Nanoseconds of the clock, to make names unique between test runs.
pub fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A Patient with an id and a gender.
pub fn patient(id: &str, gender: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "gender": gender,
           "name": [{"family": format!("Family-{id}"), "given": ["Test"]}]})
}

/// A final vital-signs Observation of a patient with a LOINC code and a value.
pub fn observation(id: &str, patient: &str, code: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    })
}

/// A Condition of a patient with a SNOMED code.
pub fn condition(id: &str, patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Condition", "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}
    })
}

/// A Group listing patients as members.
pub fn group(id: &str, members: &[&str]) -> Value {
    let member: Vec<Value> = members
        .iter()
        .map(|m| json!({"entity": {"reference": format!("Patient/{m}")}}))
        .collect();
    json!({"resourceType": "Group", "id": id, "type": "person", "actual": true, "member": member})
}
