//! The fixture of the SMART tests: a server with two Synthea patients and the apps and
//! users the tests sign in with. Helpers call the admin API, the token, introspection and
//! revocation endpoints and the FHIR API, and the assertions here are shared by the tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_e2e::{Backend, Server};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

pub use crate::browser::{AuthRequest, Browser, hidden_field};
pub use crate::http::{
    ClientAuth, Pkce, Redirect, Reply, Site, Tokens, anonymous_get, basic_header, client_assertion,
    form, jwt_claims, now_seconds, scope_set, sign_es384, unique, with_claims,
};
use crate::http::{ES384_KID, ES384_X, ES384_Y};
pub use crate::sample::{Sample, has_category, subject_of};
use crate::target::{self, Target};

/// The redirect URI every test app registers.
pub const REDIRECT_URI: &str = "https://app.example/cb";
/// A public client with PKCE.
pub const PUBLIC_APP: &str = "app-pub";
/// A confidential symmetric client registered for `client_secret_basic`.
pub const BASIC_APP: &str = "app-basic";
/// A confidential symmetric client registered for `client_secret_post`.
pub const POST_APP: &str = "app-post";
/// A confidential asymmetric client registered with the public half of the test P-384 key.
pub const JWT_APP: &str = "app-jwt";
/// A backend-services client; the tests also use it to call introspection.
pub const SERVICE_APP: &str = "svc1";

/// Scopes the user-facing apps register.
pub const APP_SCOPE: &str = "launch launch/patient launch/encounter patient/*.cruds \
                             user/*.cruds openid fhirUser profile offline_access online_access";

/// A Practitioner user.
pub const DOCTOR: &str = "doctor";
/// A Patient user whose patient is [`Sample::patient`].
pub const PATIENT_USER: &str = "fannie";
pub const PASSWORD: &str = "correct-horse-battery";

/// Starts a server whose admin token `Server::load` can pass on the command line.
///
/// NOTE: the generated admin token is base64url, so one in 64 starts with `-`, and then
/// `hearth load --admin-token <token>` takes it for an option and fails. Until the harness
/// passes `--admin-token=<token>`, such a server is replaced by a new one.
fn start_server(args: &[&str]) -> Server {
    for _ in 0..8 {
        let data_dir = tempfile::tempdir().expect("a temporary data directory");
        let server =
            Server::start_with(&Backend::Embedded, data_dir, args, &[]).expect("hearth starts");
        if !server.admin_token().starts_with('-') {
            return server;
        }
    }
    panic!("every admin token started with '-'");
}

/// Loads the sample into `server` with `hearth load`.
fn load_sample(server: &Server, sample: &Sample) {
    let paths: Vec<&Path> = sample.files.iter().map(PathBuf::as_path).collect();
    let output = server.load(&paths).expect("hearth load runs");
    assert!(
        output.status.success(),
        "loading the sample failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running server with the sample loaded and the test apps and users registered.
///
/// For the EHR-backed target (see [`crate::target`]), `server` is the front and the
/// sample is loaded at `upstream`, the EHR. The apps and users are registered at the
/// front, and `default_site` is the front's EHR-backed site.
pub struct Hearth {
    pub server: Server,
    /// The EHR behind `default_site` for the EHR-backed target.
    pub upstream: Option<Server>,
    /// The port and data directory of the EHR while [`Hearth::kill_upstream`] has it
    /// stopped.
    stopped_upstream: Option<(u16, tempfile::TempDir)>,
    pub sample: &'static Sample,
    pub default_site: Site,
    /// Secrets of the confidential symmetric apps, by client id.
    pub secrets: BTreeMap<String, String>,
    http: Client,
}

impl Hearth {
    pub fn start() -> Hearth {
        Hearth::start_with(&[])
    }

    /// Starts the fixture with extra `hearth serve` arguments, which go to the front for
    /// the EHR-backed target.
    pub fn start_with(args: &[&str]) -> Hearth {
        let sample = Sample::get();
        let (server, upstream, default_site) = match target::current() {
            Target::Repository => {
                let server = start_server(args);
                load_sample(&server, sample);
                let site = Site {
                    id: "default".to_string(),
                    auth: format!("{}/auth", server.base_url),
                    fhir: format!("{}/fhir", server.base_url),
                };
                (server, None, site)
            }
            Target::EhrProxy => {
                let ehr = start_server(&[]);
                load_sample(&ehr, sample);
                let front = target::start_front(&ehr, args);
                let site = Site {
                    id: target::PROXY_SITE.to_string(),
                    auth: format!("{}/sites/{}/auth", front.base_url, target::PROXY_SITE),
                    fhir: target::proxy_fhir_url(&front),
                };
                (front, Some(ehr), site)
            }
        };
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let mut hearth = Hearth {
            server,
            upstream,
            stopped_upstream: None,
            sample,
            default_site,
            secrets: BTreeMap::new(),
            http,
        };
        hearth.register_apps();
        hearth.register_users();
        hearth
    }

    fn register_apps(&mut self) {
        let site_id = self.default_site.id.clone();
        let user_app = |client_id: &str, client_type: &str, method: Option<&str>| {
            let mut app = json!({
                "client_id": client_id,
                "name": format!("Test app {client_id}"),
                "client_type": client_type,
                "redirect_uris": [REDIRECT_URI],
                "scope": APP_SCOPE,
                "sites": [site_id],
            });
            if let Some(method) = method {
                app["token_endpoint_auth_method"] = json!(method);
            }
            app
        };
        let mut jwt_app = user_app(JWT_APP, "confidential-asymmetric", None);
        jwt_app["jwks"] = json!({"keys": [{
            "kty": "EC", "crv": "P-384", "x": ES384_X, "y": ES384_Y,
            "kid": ES384_KID, "alg": "ES384", "use": "sig",
        }]});
        let apps = [
            user_app(PUBLIC_APP, "public", None),
            user_app(
                BASIC_APP,
                "confidential-symmetric",
                Some("client_secret_basic"),
            ),
            user_app(
                POST_APP,
                "confidential-symmetric",
                Some("client_secret_post"),
            ),
            jwt_app,
            json!({
                "client_id": SERVICE_APP,
                "name": "Backend service",
                "client_type": "confidential-symmetric",
                "scope": "system/*.rs",
                "sites": [site_id],
            }),
        ];
        for app in apps {
            let reply = self.admin_post("/admin/apps", &app);
            assert_eq!(
                reply.status, 201,
                "registering {app} failed: {}",
                reply.body
            );
            let created = reply.json();
            if let Some(secret) = created["client_secret"].as_str() {
                let client_id = created["client_id"].as_str().expect("client_id");
                self.secrets
                    .insert(client_id.to_string(), secret.to_string());
            }
        }
    }

    fn register_users(&self) {
        let users = [
            (DOCTOR, format!("Practitioner/{}", self.sample.practitioner)),
            (PATIENT_USER, format!("Patient/{}", self.sample.patient.id)),
        ];
        for (username, fhir_user) in users {
            let body = json!({
                "username": username,
                "password": PASSWORD,
                "fhir_user": fhir_user,
                "display_name": username,
            });
            let reply = self.admin_post("/admin/users", &body);
            assert_eq!(reply.status, 201, "creating {username}: {}", reply.body);
        }
    }

    /// Stops the server and starts it again on the same data directory with `args`. The
    /// port changes, so tokens issued before no longer match the site's audience.
    // Only the analytics tests, which share this fixture, call it.
    #[allow(dead_code)]
    pub fn restart_with(mut self, args: &[&str]) -> Hearth {
        let data_dir = self.server.stop().expect("hearth stops");
        self.server = Server::start_with(&Backend::Embedded, data_dir, args, &[])
            .expect("hearth starts again");
        self.default_site = match &self.upstream {
            None => Site {
                id: "default".to_string(),
                auth: format!("{}/auth", self.server.base_url),
                fhir: format!("{}/fhir", self.server.base_url),
            },
            Some(_) => Site {
                id: target::PROXY_SITE.to_string(),
                auth: format!("{}/sites/{}/auth", self.server.base_url, target::PROXY_SITE),
                fhir: target::proxy_fhir_url(&self.server),
            },
        };
        self
    }

    /// Kills the EHR of the EHR-backed target with SIGKILL, as a crash would, and waits
    /// until the process is gone.
    // Only the tests of the EHR-backed target call it.
    #[allow(dead_code)]
    pub fn kill_upstream(&mut self) {
        let upstream = self
            .upstream
            .take()
            .expect("the EHR-backed target has an EHR");
        let port = upstream.port;
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(upstream.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "killing the EHR failed");
        self.stopped_upstream = Some((port, upstream.abandon()));
    }

    /// Starts the EHR killed by [`Hearth::kill_upstream`] again on its data directory and
    /// port, so the site's upstream URL reaches it again.
    #[allow(dead_code)]
    pub fn restart_upstream(&mut self) {
        let (port, data_dir) = self
            .stopped_upstream
            .take()
            .expect("the EHR was killed before");
        let upstream = Server::start_on_port(&Backend::Embedded, data_dir, port, &[], &[])
            .expect("the EHR starts again");
        self.upstream = Some(upstream);
    }

    /// The server that stores the sample: the EHR for the EHR-backed target.
    // Only the FHIR REST tests, which share this fixture, call it.
    #[allow(dead_code)]
    pub fn repository(&self) -> &Server {
        self.upstream.as_ref().unwrap_or(&self.server)
    }

    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    pub fn site(&self, site_id: &str) -> Site {
        if site_id == "default" {
            return self.default_site.clone();
        }
        Site {
            id: site_id.to_string(),
            auth: format!("{}/sites/{site_id}/auth", self.server.base_url),
            fhir: format!("{}/sites/{site_id}/fhir", self.server.base_url),
        }
    }

    /// Creates a repository-backed site and returns it.
    pub fn create_site(&self, site_id: &str, dynamic_registration: bool) -> Site {
        let body = json!({
            "site_id": site_id,
            "name": format!("Site {site_id}"),
            "dynamic_registration": dynamic_registration,
        });
        let reply = self.admin_post("/admin/sites", &body);
        assert_eq!(reply.status, 201, "creating site {site_id}: {}", reply.body);
        self.site(site_id)
    }

    pub fn secret(&self, client_id: &str) -> String {
        self.secrets
            .get(client_id)
            .unwrap_or_else(|| panic!("{client_id} has no secret"))
            .clone()
    }

    pub fn basic(&self, client_id: &str) -> ClientAuth {
        ClientAuth::Basic(client_id.to_string(), self.secret(client_id))
    }

    pub fn post_secret(&self, client_id: &str) -> ClientAuth {
        ClientAuth::Post(client_id.to_string(), self.secret(client_id))
    }

    /// Returns the backend service's Basic credentials, which the tests introspect with.
    pub fn introspector(&self) -> ClientAuth {
        self.basic(SERVICE_APP)
    }

    // Admin API.

    fn admin(&self, request: RequestBuilder) -> Reply {
        Reply::send(request.bearer_auth(self.server.admin_token()))
    }

    pub fn admin_post(&self, path: &str, body: &Value) -> Reply {
        let url = format!("{}{path}", self.server.base_url);
        self.admin(
            self.http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
    }

    /// POSTs raw bytes with the admin credential.
    pub fn admin_post_raw(&self, path: &str, content_type: &str, body: &str) -> Reply {
        let url = format!("{}{path}", self.server.base_url);
        self.admin(
            self.http
                .post(url)
                .header("Content-Type", content_type)
                .body(body.to_string()),
        )
    }

    pub fn admin_put(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.server.base_url);
        self.admin(self.http.put(url))
    }

    pub fn admin_delete(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.server.base_url);
        self.admin(self.http.delete(url))
    }

    /// `GET /admin/grants?client_id=...`: the client's grants, newest first.
    pub fn grants(&self, client_id: &str) -> Value {
        let mut url = url::Url::parse(&format!("{}/admin/grants", self.server.base_url))
            .expect("a valid URL");
        url.query_pairs_mut().append_pair("client_id", client_id);
        let reply = self.admin(self.http.get(url));
        assert_eq!(reply.status, 200, "listing grants: {}", reply.body);
        reply.json()["grants"].clone()
    }

    /// Lists the grants of every test app, to compare before and after rejected requests.
    pub fn all_grants(&self) -> Value {
        let clients = [PUBLIC_APP, BASIC_APP, POST_APP, JWT_APP, SERVICE_APP];
        Value::Array(clients.iter().map(|c| self.grants(c)).collect())
    }

    /// The path of the launch endpoint of the fixture's site, such as `/auth/launch`.
    pub fn launch_path(&self) -> String {
        format!(
            "{}/launch",
            self.default_site.auth.trim_start_matches(self.base_url())
        )
    }

    /// Creates an EHR launch at a site and returns the `launch` value.
    pub fn create_launch(&self, site: &Site, body: &Value) -> String {
        let path = format!("{}/launch", site.auth.trim_start_matches(self.base_url()));
        let reply = self.admin_post(&path, body);
        assert_eq!(reply.status, 201, "creating a launch: {}", reply.body);
        reply.json()["launch"]
            .as_str()
            .expect("launch in the response")
            .to_string()
    }

    // OAuth endpoints.

    /// POSTs a form to `url`, with the client's credentials added.
    pub fn post_form(&self, url: &str, client: &ClientAuth, pairs: &[(&str, &str)]) -> Reply {
        let mut all: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let request = client.apply(self.http.post(url), &mut all);
        let borrowed: Vec<(&str, &str)> =
            all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        Reply::send(
            request
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&borrowed)),
        )
    }

    /// POSTs raw bytes with a content type.
    pub fn post_raw(&self, url: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        let body: Vec<u8> = body.into();
        Reply::send(
            self.http
                .post(url)
                .header("Content-Type", content_type)
                .body(body),
        )
    }

    pub fn token_at(&self, site: &Site, client: &ClientAuth, pairs: &[(&str, &str)]) -> Reply {
        self.post_form(&format!("{}/token", site.auth), client, pairs)
    }

    pub fn token(&self, client: &ClientAuth, pairs: &[(&str, &str)]) -> Reply {
        self.token_at(&self.default_site, client, pairs)
    }

    /// Exchanges a code with the request's verifier and redirect URI. Anything but a
    /// token response fails the test.
    pub fn exchange(&self, client: &ClientAuth, request: &AuthRequest, code: &str) -> Tokens {
        let reply = self.token_at(
            &request.site,
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &request.pkce.verifier),
            ],
        );
        Tokens::from_response(&reply)
    }

    /// Sends a refresh request and returns the reply unchecked.
    pub fn refresh(&self, client: &ClientAuth, refresh_token: &str, scope: Option<&str>) -> Reply {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            pairs.push(("scope", scope));
        }
        self.token(client, &pairs)
    }

    /// Runs a standalone launch of the public app as `username` and returns its tokens.
    pub fn launch(&self, scope: &str, username: &str, patient: Option<&str>) -> Tokens {
        let request = AuthRequest::new(&self.default_site, PUBLIC_APP, scope);
        let redirect = Browser::new().authorize(&request, username, patient);
        self.exchange(&ClientAuth::public(PUBLIC_APP), &request, &redirect.code())
    }

    /// Runs a standalone patient launch by the doctor, who picks [`Sample::patient`].
    pub fn patient_launch(&self, scope: &str) -> Tokens {
        self.launch(scope, DOCTOR, Some(&self.sample.patient.id))
    }

    pub fn introspect_at(&self, site: &Site, caller: &ClientAuth, token: &str) -> Reply {
        self.post_form(
            &format!("{}/introspect", site.auth),
            caller,
            &[("token", token)],
        )
    }

    /// Introspects at the default site as the backend service. A status other than 200
    /// fails the test.
    pub fn introspect(&self, token: &str) -> Value {
        let reply = self.introspect_at(&self.default_site, &self.introspector(), token);
        assert_eq!(reply.status, 200, "introspection failed: {}", reply.body);
        reply.json()
    }

    pub fn revoke(&self, client: &ClientAuth, token: &str) -> Reply {
        self.post_form(
            &format!("{}/revoke", self.default_site.auth),
            client,
            &[("token", token)],
        )
    }

    // FHIR API.

    /// GETs `path` under a site's FHIR base with a bearer token.
    pub fn fhir_at(&self, site: &Site, token: &str, path: &str) -> Reply {
        let url = format!("{}/{path}", site.fhir);
        Reply::send(self.http.get(url).bearer_auth(token))
    }

    pub fn fhir(&self, token: &str, path: &str) -> Reply {
        self.fhir_at(&self.default_site, token, path)
    }

    /// Runs a search and follows `next` links; `Err` is the first reply that was not 200.
    pub fn search_all(&self, token: &str, path: &str) -> Result<Vec<Value>, Box<Reply>> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!(
            "{}/{path}{separator}_count=200",
            self.default_site.fhir
        ));
        let mut resources = Vec::new();
        while let Some(url) = next {
            let reply = Reply::send(self.http.get(&url).bearer_auth(token));
            if reply.status != 200 {
                return Err(Box::new(reply));
            }
            let page = reply.json();
            for entry in page["entry"].as_array().into_iter().flatten() {
                resources.push(entry["resource"].clone());
            }
            next = page["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_string);
        }
        Ok(resources)
    }
}

// Assertions shared by the tests.

/// Asserts an RFC 6749 error response: the status, JSON with `error`, and no token.
pub fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "unexpected status: {}", reply.body);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "an OAuth error must be JSON, got {content_type}: {}",
        reply.body
    );
    let body = reply.json();
    assert_eq!(body["error"], error, "unexpected error: {body}");
    assert!(body.get("access_token").is_none(), "a token leaked: {body}");
    assert!(
        body.get("refresh_token").is_none(),
        "a token leaked: {body}"
    );
}

/// Asserts an RFC 6749 error response with one of several acceptable statuses and codes.
pub fn assert_oauth_error_in(reply: &Reply, statuses: &[u16], errors: &[&str]) {
    assert!(
        statuses.contains(&reply.status),
        "status {} is not one of {statuses:?}: {}",
        reply.status,
        reply.body
    );
    let body = reply.json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        errors.contains(&error),
        "error {error:?} is not one of {errors:?}: {body}"
    );
    assert!(body.get("access_token").is_none(), "a token leaked: {body}");
}

/// Asserts an error page of the authorize endpoint: HTML, a 4xx status, no redirect.
pub fn assert_error_page(reply: &Reply) {
    assert!(
        (400..500).contains(&reply.status),
        "expected an error page, got {}: {}",
        reply.status,
        reply.body
    );
    assert!(
        reply.header("location").is_none(),
        "an error page must not redirect: {:?}",
        reply.header("location")
    );
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "expected an HTML error page, got {content_type}: {}",
        reply.body
    );
}

/// Asserts an error redirect to the registered URI with `error` and `state`, and returns it.
pub fn assert_error_redirect(reply: &Reply, error: &str, state: Option<&str>) -> Redirect {
    let redirect = reply.redirect();
    assert!(
        redirect.location.starts_with(&format!("{REDIRECT_URI}?")),
        "the error went to {}",
        redirect.location
    );
    assert_eq!(
        redirect.param("error"),
        Some(error),
        "{}",
        redirect.location
    );
    assert_eq!(redirect.param("state"), state, "{}", redirect.location);
    assert_eq!(redirect.param("code"), None, "{}", redirect.location);
    redirect
}

/// Asserts that the FHIR API denied access: 403, or 404, which also hides that the
/// resource exists.
pub fn assert_denied(reply: &Reply, what: &str) {
    assert!(
        reply.status == 403 || reply.status == 404,
        "{what}: expected 403 or 404, got {}: {}",
        reply.status,
        reply.body
    );
}

/// Asserts that the FHIR API rejects a token (401) and that introspection calls it
/// inactive.
pub fn assert_token_dead(hearth: &Hearth, token: &str, what: &str) {
    let patient = &hearth.sample.patient.id;
    let reply = hearth.fhir(token, &format!("Patient/{patient}"));
    assert_eq!(
        reply.status, 401,
        "{what}: FHIR accepted it: {}",
        reply.body
    );
    assert_eq!(
        hearth.introspect(token),
        json!({"active": false}),
        "{what}: introspection"
    );
}
