//! A FHIR client for the tests: requests under a site's base with a bearer token, and the
//! checks that every test repeats (OperationOutcome errors, counts of stored resources and
//! of resource events).

use std::ops::Deref;

use hearth_e2e::{Backend, Server};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

use crate::http::Reply;
use crate::support::Hearth;
use crate::target::{self, Target};

pub const FHIR_JSON: &str = "application/fhir+json";
pub const JSON_PATCH: &str = "application/json-patch+json";

/// Requests under one FHIR base with one access token.
pub struct Fhir {
    pub base: String,
    pub token: String,
    http: Client,
}

impl Fhir {
    pub fn new(base: &str, token: &str) -> Fhir {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Fhir {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    /// A client of the test's site with the admin credential, which acts as a backend
    /// service with `system/*.cruds`: the repository's default site, or the front's
    /// EHR-backed site.
    pub fn admin(server: &TestServer) -> Fhir {
        match &server.front {
            Some(front) => Fhir::new(&target::proxy_fhir_url(front), &front.admin_token()),
            None => Fhir::new(
                &server.repository.fhir_url(),
                &server.repository.admin_token(),
            ),
        }
    }

    /// A client of the fixture's site with the admin credential of the server that serves
    /// that site.
    pub fn admin_of(hearth: &Hearth) -> Fhir {
        Fhir::new(&hearth.default_site.fhir, &hearth.server.admin_token())
    }

    /// The absolute URL of `path` under the base; an absolute URL is kept as it is.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{path}", self.base)
        }
    }

    /// A request of `method` to `path` with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::send(self.request(Method::GET, path))
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.request(Method::GET, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::send(request)
    }

    /// Sends a body with a content type and extra headers.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let body: Vec<u8> = body.into();
        let mut request = self
            .request(method, path)
            .header("Content-Type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::send(request)
    }

    pub fn post(&self, path: &str, resource: &Value) -> Reply {
        self.post_with(path, resource, &[])
    }

    pub fn post_with(&self, path: &str, resource: &Value, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::POST, path, FHIR_JSON, resource.to_string(), headers)
    }

    pub fn put(&self, path: &str, resource: &Value) -> Reply {
        self.put_with(path, resource, &[])
    }

    pub fn put_with(&self, path: &str, resource: &Value, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::PUT, path, FHIR_JSON, resource.to_string(), headers)
    }

    pub fn patch(&self, path: &str, document: &Value) -> Reply {
        self.send(Method::PATCH, path, JSON_PATCH, document.to_string(), &[])
    }

    pub fn delete(&self, path: &str) -> Reply {
        Reply::send(self.request(Method::DELETE, path))
    }

    /// Creates a resource and returns it as stored; anything but 201 fails the test.
    pub fn create(&self, resource: &Value) -> Value {
        let resource_type = resource["resourceType"].as_str().expect("a resourceType");
        let reply = self.post_with(
            resource_type,
            resource,
            &[("Prefer", "return=representation")],
        );
        assert_eq!(reply.status, 201, "creating {resource}: {}", reply.body);
        reply.json()
    }

    /// Reads `Type/id`; anything but 200 fails the test.
    pub fn read(&self, path: &str) -> Value {
        let reply = self.get(path);
        assert_eq!(reply.status, 200, "reading {path}: {}", reply.body);
        reply.json()
    }

    /// Returns the `total` of `Type?query&_summary=count`.
    pub fn count(&self, query: &str) -> u64 {
        let separator = if query.contains('?') { '&' } else { '?' };
        let path = format!("{query}{separator}_summary=count");
        let bundle = self.read(&path);
        bundle["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path} returned no total: {bundle}"))
    }

    /// Posts a batch or transaction Bundle to the base.
    pub fn bundle(&self, bundle: &Value) -> Reply {
        self.post("", bundle)
    }
}

/// The servers of one test: the repository, and for the EHR-backed target the front
/// whose site proxies it. Dereferences to the repository, which stores the data.
pub struct TestServer {
    pub repository: Server,
    pub front: Option<Server>,
}

impl Deref for TestServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.repository
    }
}

/// Starts a server with an empty repository, and the front for the EHR-backed target.
pub fn start_server() -> TestServer {
    let repository = Server::start(&Backend::Embedded).expect("hearth starts");
    let front = match target::current() {
        Target::Repository => None,
        Target::EhrProxy => Some(target::start_front(&repository, &[])),
    };
    TestServer { repository, front }
}

/// The end offset of `hearth.resources`: how many resource events the log holds.
pub fn resource_events(server: &Server) -> u64 {
    let url = format!("{}/admin/events?topic=hearth.resources", server.base_url);
    let (status, body) = server.get_json(&url);
    assert_eq!(status, 200, "listing resource events: {body}");
    body["end"]
        .as_u64()
        .unwrap_or_else(|| panic!("no end offset in {body}"))
}

/// Asserts an error response: the status, a FHIR JSON content type and an OperationOutcome
/// with an error issue. Returns the diagnostics of its issues, joined.
pub fn assert_outcome(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "unexpected status: {}", reply.body);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with(FHIR_JSON),
        "an error must be {FHIR_JSON}, got {content_type:?}: {}",
        reply.body
    );
    assert_outcome_value(&reply.json(), status)
}

/// Asserts that `outcome` is an OperationOutcome with at least one issue of severity
/// error or fatal, and returns the diagnostics of its issues, joined.
pub fn assert_outcome_value(outcome: &Value, status: u16) -> String {
    assert_eq!(
        outcome["resourceType"], "OperationOutcome",
        "a {status} must carry an OperationOutcome: {outcome}"
    );
    let issues = outcome["issue"]
        .as_array()
        .unwrap_or_else(|| panic!("an OperationOutcome without issues: {outcome}"));
    assert!(
        issues
            .iter()
            .any(|issue| issue["severity"] == "error" || issue["severity"] == "fatal"),
        "a {status} must have an error issue: {outcome}"
    );
    issues
        .iter()
        .filter_map(|issue| issue["diagnostics"].as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `Location` header of a write: `{base}/{type}/{id}/_history/{version}`, split into
/// the id and the version.
pub fn location(reply: &Reply, base: &str, resource_type: &str) -> (String, String) {
    let location = reply
        .header("location")
        .unwrap_or_else(|| panic!("no Location header: {}", reply.body));
    let prefix = format!("{base}/{resource_type}/");
    let rest = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("Location {location} does not start with {prefix}"));
    let (id, version) = rest
        .split_once("/_history/")
        .unwrap_or_else(|| panic!("Location {location} names no version"));
    (id.to_string(), version.to_string())
}

/// The `link` of a Bundle with relation `relation`.
pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_string)
}

/// The resources of a Bundle's entries.
pub fn entry_resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| entry["resource"].clone())
        .collect()
}

/// A resource without `meta.versionId` and `meta.lastUpdated`, and without `meta` when
/// nothing else is left in it.
pub fn without_version(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty()
            && let Some(object) = resource.as_object_mut()
        {
            object.remove("meta");
        }
    }
    resource
}

/// A value unique to this call, for identifiers that no other test uses.
pub fn unique(prefix: &str) -> String {
    crate::http::unique(prefix)
}
