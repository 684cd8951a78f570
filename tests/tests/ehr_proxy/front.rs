//! The front Hearth: a second server whose site `ehr` proxies the EHR Hearth's default
//! site, and the helpers the cases use to call it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_e2e::{Backend, Server};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::browser::{AuthRequest, Browser};
use crate::http::{Reply, Site, Tokens, form};
use crate::support::{APP_SCOPE, Hearth, PASSWORD, PATIENT_USER, PUBLIC_APP, REDIRECT_URI};

/// The client id Hearth has at the EHR.
pub const PROXY_CLIENT: &str = "hearth-front";

/// A bearer token the front sends to the slow upstream, from the environment.
pub const SLOW_TOKEN: &str = "slow-upstream-token";

/// The EHR, the front server and its sites.
pub struct Front {
    pub ehr: Hearth,
    pub server: Server,
    /// The EHR-backed site.
    pub site: Site,
    /// A site whose upstream accepts connections and never responds.
    pub slow: Site,
    /// Requests the slow upstream received, as raw header text.
    pub slow_requests: Arc<Mutex<Vec<String>>>,
    http: Client,
}

impl Front {
    /// Starts both servers and registers the site, the app and the patient user.
    pub fn start() -> Front {
        let ehr = Hearth::start();
        let (slow_port, slow_requests) = start_silent_upstream();

        let config = tempfile::NamedTempFile::new().expect("a config file");
        std::fs::write(
            config.path(),
            "[ehr]\ntimeout_seconds = 2\nmax_concurrent_per_site = 2\nqueue_timeout_ms = 300\n",
        )
        .expect("writing the config file");
        let config_path = config.path().to_str().expect("a UTF-8 path").to_string();
        let server = Server::start_with(
            &Backend::Embedded,
            tempfile::tempdir().expect("a data directory"),
            &["--config", &config_path],
            &[("HEARTH_EHR_BEARER_TOKEN_SLOW", SLOW_TOKEN)],
        )
        .expect("the front hearth starts");
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let mut front = Front {
            site: site(&server, "ehr"),
            slow: site(&server, "slow"),
            ehr,
            server,
            slow_requests,
            http,
        };
        front.register(slow_port);
        front
    }

    fn register(&mut self, slow_port: u16) {
        let jwks = Reply::send(
            self.http
                .get(format!("{}/ehr-client/jwks", self.server.base_url)),
        );
        assert_eq!(jwks.status, 200, "{}", jwks.body);
        let app = json!({
            "client_id": PROXY_CLIENT,
            "name": "Hearth front",
            "client_type": "confidential-asymmetric",
            "jwks": jwks.json(),
            "scope": "system/*.cruds",
            "sites": ["default"],
        });
        let reply = self.ehr.admin_post("/admin/apps", &app);
        assert_eq!(
            reply.status, 201,
            "registering the front at the EHR: {}",
            reply.body
        );

        let site = json!({
            "site_id": "ehr",
            "name": "EHR-backed site",
            "backing": "ehr",
            "upstream_base_url": self.ehr.default_site.fhir,
            "upstream_auth_method": "backend-services",
            "upstream_client_id": PROXY_CLIENT,
            "upstream_scope": "system/*.cruds",
            "upstream_fhir_version": "4.0.1",
            "default_cache_freshness_s": 300,
            "cache_freshness_s": {"Encounter": 0},
        });
        self.admin_post("/admin/sites", &site, 201);
        let slow = json!({
            "site_id": "slow",
            "name": "Slow EHR",
            "backing": "ehr",
            "upstream_base_url": format!("http://127.0.0.1:{slow_port}/fhir"),
            "upstream_auth_method": "bearer",
        });
        self.admin_post("/admin/sites", &slow, 201);

        let app = json!({
            "client_id": PUBLIC_APP,
            "name": "Proxied app",
            "client_type": "public",
            "redirect_uris": [REDIRECT_URI],
            "scope": APP_SCOPE,
            "sites": ["ehr", "slow"],
        });
        self.admin_post("/admin/apps", &app, 201);
        let user = json!({
            "username": PATIENT_USER,
            "password": PASSWORD,
            "fhir_user": format!("Patient/{}", self.ehr.sample.patient.id),
            "display_name": PATIENT_USER,
        });
        self.admin_post("/admin/users", &user, 201);
    }

    pub fn admin_post(&self, path: &str, body: &Value, status: u16) -> Reply {
        let reply = Reply::send(
            self.http
                .post(format!("{}{path}", self.server.base_url))
                .bearer_auth(self.server.admin_token())
                .json(body),
        );
        assert_eq!(reply.status, status, "POST {path}: {}", reply.body);
        reply
    }

    /// Runs a standalone launch of the public app at `site` as the patient user.
    pub fn patient_token(&self, site: &Site, scope: &str) -> String {
        let request = AuthRequest::new(site, PUBLIC_APP, scope);
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
                .post(format!("{}/token", site.auth))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&pairs)),
        );
        let tokens = Tokens::from_response(&reply);
        assert_eq!(
            tokens.response["patient"],
            self.ehr.sample.patient.id.as_str(),
            "{}",
            tokens.response
        );
        tokens.access
    }

    /// GETs `path` under the site's FHIR base with a bearer token and extra headers.
    pub fn get(&self, site: &Site, token: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.get_url(&format!("{}/{path}", site.fhir), token, headers)
    }

    pub fn get_url(&self, url: &str, token: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(url).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request)
    }

    pub fn send(&self, request: reqwest::blocking::RequestBuilder) -> Reply {
        send(request)
    }

    pub fn client(&self) -> &Client {
        &self.http
    }

    pub fn admin_token(&self) -> String {
        self.server.admin_token()
    }
}

/// Sends a request and reads the response, whatever its status: the proxy's 5xx responses
/// are what some cases check.
pub fn send(request: reqwest::blocking::RequestBuilder) -> Reply {
    let response = request.send().expect("the request reaches hearth");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn site(server: &Server, id: &str) -> Site {
    Site {
        id: id.to_string(),
        auth: format!("{}/sites/{id}/auth", server.base_url),
        fhir: format!("{}/sites/{id}/fhir", server.base_url),
    }
}

/// Starts a TCP server on a free port that reads each request's head, records it, and
/// never responds, as an EHR that hangs. Returns the port and the recorded heads.
fn start_silent_upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the silent upstream");
    let port = listener.local_addr().expect("its address").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 8192];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            if let Ok(n) = stream.read(&mut buffer) {
                let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
                recorded.lock().expect("the request list").push(head);
            }
            let _ = stream.flush();
            // Keep the connection open without answering.
            open.push(stream);
        }
    });
    (port, requests)
}

/// Starts an HTTP server on a free port that responds to every request with `status`
/// (such as `200 OK`), the extra header lines `headers` (each ending in CRLF) and `body`,
/// as an upstream that is not a FHIR server. `{port}` in the body becomes the server's
/// port. Returns the port.
pub fn start_answering_upstream(status: &str, headers: &str, body: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the answering upstream");
    let port = listener.local_addr().expect("its address").port();
    let body = body.replace("{port}", &port.to_string());
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 8192];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(response.as_bytes());
            let _ = stream.flush();
        }
    });
    port
}
