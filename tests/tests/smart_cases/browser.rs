//! A browser that walks the authorize endpoint's pages: sign-in, patient picker and
//! approval.

use reqwest::blocking::Client;

use crate::http::{Pkce, Redirect, Reply, Site, form, unique};
use crate::support::{PASSWORD, REDIRECT_URI};

/// An authorization request, as the query of `GET /authorize` or the form of `POST`.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub site: Site,
    pub params: Vec<(String, String)>,
    pub pkce: Pkce,
}

impl AuthRequest {
    /// Builds a valid request of `client_id` at `site` with PKCE, `state` and `aud`.
    pub fn new(site: &Site, client_id: &str, scope: &str) -> AuthRequest {
        let pkce = Pkce::new();
        let params = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", scope),
            ("state", &unique("state")),
            ("aud", &site.fhir),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        AuthRequest {
            site: site.clone(),
            params,
            pkce,
        }
    }

    /// Replaces every value of `name` with one `value`.
    pub fn set(self, name: &str, value: &str) -> AuthRequest {
        self.without(name).add(name, value)
    }

    /// Adds a value of `name`, so a name may repeat.
    pub fn add(mut self, name: &str, value: &str) -> AuthRequest {
        self.params.push((name.to_string(), value.to_string()));
        self
    }

    pub fn without(mut self, name: &str) -> AuthRequest {
        self.params.retain(|(n, _)| n != name);
        self
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn state(&self) -> &str {
        self.param("state").unwrap_or_default()
    }

    pub fn query(&self) -> String {
        let pairs: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        form(&pairs)
    }

    pub fn url(&self) -> String {
        format!("{}/authorize?{}", self.site.auth, self.query())
    }
}

/// A browser: keeps the sign-in cookie and never follows redirects, so each step is seen.
pub struct Browser {
    client: Client,
}

impl Browser {
    pub fn new() -> Browser {
        let client = Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Browser { client }
    }

    pub fn get(&self, url: &str) -> Reply {
        Reply::send(self.client.get(url))
    }

    pub fn post(&self, url: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        let body: Vec<u8> = body.into();
        Reply::send(
            self.client
                .post(url)
                .header("Content-Type", content_type)
                .body(body),
        )
    }

    pub fn post_form(&self, url: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post(url, "application/x-www-form-urlencoded", form(pairs))
    }

    /// Sends the request by GET and returns the first page or the error.
    pub fn start(&self, request: &AuthRequest) -> Reply {
        self.get(&request.url())
    }

    /// Sends the request by POST with a form body.
    pub fn start_post(&self, request: &AuthRequest) -> Reply {
        let url = format!("{}/authorize", request.site.auth);
        self.post(&url, "application/x-www-form-urlencoded", request.query())
    }

    pub fn sign_in(&self, page: &Reply, username: &str) -> Reply {
        self.submit(
            page,
            &[("username", username), ("password", PASSWORD)],
            "name=\"username\"",
        )
    }

    pub fn choose_patient(&self, page: &Reply, patient: &str) -> Reply {
        self.submit(page, &[("patient", patient)], "name=\"patient\"")
    }

    pub fn decide(&self, page: &Reply, decision: &str) -> Reply {
        self.submit(page, &[("decision", decision)], "name=\"decision\"")
    }

    /// Posts a flow page's form with its hidden fields and `fields`.
    fn submit(&self, page: &Reply, fields: &[(&str, &str)], marker: &str) -> Reply {
        assert_eq!(page.status, 200, "expected a page, got: {}", page.body);
        assert!(
            page.body.contains(marker),
            "expected a page with {marker}, got: {}",
            page.body
        );
        let action = attribute(&page.body, "action=\"");
        let request = hidden_field(&page.body, "request");
        let csrf = hidden_field(&page.body, "csrf");
        let mut pairs = vec![("request", request.as_str()), ("csrf", csrf.as_str())];
        pairs.extend_from_slice(fields);
        self.post_form(&action, &pairs)
    }

    /// Walks the pages after an authorization request: signs in as `username` when asked,
    /// picks `patient` when the picker shows, approves, and returns the redirect.
    pub fn complete(&self, first: Reply, username: &str, patient: Option<&str>) -> Redirect {
        let mut page = first;
        for _ in 0..6 {
            if page.status == 302 {
                return page.redirect();
            }
            page = if page.body.contains("name=\"username\"") {
                self.sign_in(&page, username)
            } else if page.body.contains("name=\"decision\"") {
                self.decide(&page, "approve")
            } else if page.body.contains("name=\"patient\"") {
                let patient = patient.expect("the patient picker showed, but no patient given");
                self.choose_patient(&page, patient)
            } else {
                panic!("unexpected page ({}): {}", page.status, page.body);
            };
        }
        panic!("the authorization flow did not end in a redirect");
    }

    /// Runs a whole authorization and returns the redirect to the app.
    pub fn authorize(
        &self,
        request: &AuthRequest,
        username: &str,
        patient: Option<&str>,
    ) -> Redirect {
        let first = self.start(request);
        self.complete(first, username, patient)
    }
}

/// Returns the value of the first attribute in a page that starts with `prefix`.
fn attribute(html: &str, prefix: &str) -> String {
    let start = html
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in page: {html}"))
        + prefix.len();
    let end = html[start..].find('"').expect("a closing quote") + start;
    html[start..end].replace("&amp;", "&")
}

/// Returns the value of the hidden form field `name` in a page.
pub fn hidden_field(html: &str, name: &str) -> String {
    attribute(html, &format!("name=\"{name}\" value=\""))
}
