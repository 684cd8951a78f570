//! A Bulk Data client written from the Bulk Data Access IG (v2): kick-off over GET or POST
//! with `Prefer: respond-async`, status polling that honours `Retry-After`, the manifest,
//! downloads with the same token, and cancellation by DELETE.

use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

pub const FHIR_JSON: &str = "application/fhir+json";

/// One HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn send(request: RequestBuilder) -> Reply {
        let response = request.send().expect("the request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().expect("the body is readable").to_vec();
        Reply {
            status,
            headers,
            bytes,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Asserts an error reply: its status and an OperationOutcome with an error issue.
/// Returns the diagnostics, joined.
pub fn assert_outcome(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "unexpected status: {}", reply.text());
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with(FHIR_JSON),
        "an error must be {FHIR_JSON}, got {content_type:?}: {}",
        reply.text()
    );
    let outcome = reply.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    let issues = outcome["issue"].as_array().expect("issues");
    assert!(
        issues
            .iter()
            .any(|i| i["severity"] == "error" || i["severity"] == "fatal"),
        "no error issue: {outcome}"
    );
    issues
        .iter()
        .filter_map(|i| i["diagnostics"].as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Requests under one FHIR base with one access token.
#[derive(Clone)]
pub struct BulkClient {
    pub base: String,
    pub token: String,
    http: Client,
}

impl BulkClient {
    pub fn new(base: &str, token: &str) -> BulkClient {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        BulkClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    /// The same base with another token.
    pub fn with_token(&self, token: &str) -> BulkClient {
        BulkClient::new(&self.base, token)
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        if self.token.is_empty() {
            request
        } else {
            request.bearer_auth(&self.token)
        }
    }

    /// Kick-off by GET; `path` contains the operation and its query, such as
    /// `$export?_type=Patient`.
    pub fn kick_off(&self, path: &str) -> Reply {
        self.kick_off_with(path, &[])
    }

    pub fn kick_off_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .request(Method::GET, path)
            .header("accept", FHIR_JSON)
            .header("prefer", "respond-async");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::send(request)
    }

    /// Kick-off by POST with a Parameters body built from `(name, value)` pairs; values
    /// of `patient` become `valueReference`s, all others `valueString`s.
    pub fn kick_off_post(&self, path: &str, parameters: &[(&str, &str)]) -> Reply {
        let parameter: Vec<Value> = parameters
            .iter()
            .map(|(name, value)| {
                if *name == "patient" {
                    json!({"name": name, "valueReference": {"reference": value}})
                } else {
                    json!({"name": name, "valueString": value})
                }
            })
            .collect();
        let body = json!({"resourceType": "Parameters", "parameter": parameter});
        Reply::send(
            self.request(Method::POST, path)
                .header("accept", FHIR_JSON)
                .header("prefer", "respond-async")
                .header("content-type", FHIR_JSON)
                .body(body.to_string()),
        )
    }

    /// The status URL of an accepted kick-off.
    pub fn status_url(&self, reply: &Reply) -> String {
        assert_eq!(reply.status, 202, "kick-off not accepted: {}", reply.text());
        let location = reply
            .header("content-location")
            .unwrap_or_else(|| panic!("no Content-Location: {}", reply.text()))
            .to_string();
        assert!(
            location.starts_with("http://") || location.starts_with("https://"),
            "Content-Location must be absolute: {location}"
        );
        location
    }

    pub fn get(&self, url: &str) -> Reply {
        Reply::send(self.request(Method::GET, url))
    }

    pub fn delete(&self, url: &str) -> Reply {
        Reply::send(self.request(Method::DELETE, url))
    }

    /// Polls the status URL until the job is complete and returns the manifest. Each
    /// in-progress reply must carry `Retry-After`; the client waits that long, capped at
    /// half a second so the tests stay fast.
    pub fn wait(&self, status_url: &str) -> Value {
        let reply = self.wait_reply(status_url);
        assert_eq!(reply.status, 200, "the job failed: {}", reply.text());
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "a manifest is application/json, got {content_type}"
        );
        reply.json()
    }

    /// Polls until the status URL returns anything other than 202.
    pub fn wait_reply(&self, status_url: &str) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let reply = self.get(status_url);
            if reply.status != 202 {
                return reply;
            }
            let retry_after: u64 = reply
                .header("retry-after")
                .unwrap_or_else(|| panic!("an in-progress status has no Retry-After"))
                .parse()
                .expect("Retry-After in seconds");
            assert!(retry_after >= 1, "Retry-After is {retry_after}");
            assert!(
                reply.header("x-progress").is_some(),
                "an in-progress status has no X-Progress"
            );
            assert!(Instant::now() < deadline, "the job did not finish in 300 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kicks off by GET and waits for the manifest.
    pub fn export(&self, path: &str) -> Value {
        let reply = self.kick_off(path);
        let status = self.status_url(&reply);
        self.wait(&status)
    }

    /// Downloads one file and returns its reply, checking the content type of NDJSON.
    pub fn download(&self, url: &str) -> Reply {
        Reply::send(
            self.request(Method::GET, url)
                .header("accept", "application/fhir+ndjson"),
        )
    }

    /// Downloads every file of a manifest section and returns the parsed lines, with the
    /// `type` of the entry each came from.
    pub fn lines_of(&self, manifest: &Value, section: &str) -> Vec<(String, Value)> {
        let mut all = Vec::new();
        for entry in manifest[section].as_array().into_iter().flatten() {
            let url = entry["url"].as_str().expect("a file url");
            let reply = self.download(url);
            assert_eq!(reply.status, 200, "downloading {url}: {}", reply.text());
            assert_eq!(
                reply.header("content-type"),
                Some("application/fhir+ndjson"),
                "content type of {url}"
            );
            assert!(reply.header("expires").is_some(), "{url} has no Expires");
            let lines = ndjson_lines(&reply.bytes);
            assert_eq!(
                entry["count"].as_u64(),
                Some(lines.len() as u64),
                "count of {url} differs from its lines"
            );
            let resource_type = entry["type"].as_str().unwrap_or_default().to_string();
            for line in lines {
                all.push((resource_type.clone(), line));
            }
        }
        all
    }
}

/// Splits NDJSON into parsed lines. Only `\n` ends a line, so U+2028 and U+2029 inside a
/// string stay part of it; every line must be one whole JSON value.
pub fn ndjson_lines(bytes: &[u8]) -> Vec<Value> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "an NDJSON file must end with a newline"
    );
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "a line is not whole JSON ({e}), {} bytes starting {:?}",
                    line.len(),
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                )
            })
        })
        .collect()
}

/// `Type/id` of each line.
pub fn keys(lines: &[(String, Value)]) -> Vec<String> {
    let mut keys: Vec<String> = lines
        .iter()
        .map(|(_, r)| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The manifest entries of a section, as `(type, url, count)`.
pub fn entries(manifest: &Value, section: &str) -> Vec<(String, String, u64)> {
    manifest[section]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["url"].as_str().unwrap_or_default().to_string(),
                e["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}
