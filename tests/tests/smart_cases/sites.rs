//! Sites: each has its own endpoints and tokens, apps are active per site, and dynamic
//! registration (RFC 7591) works only where a site allows it.

use serde_json::{Value, json};

use crate::support::{
    AuthRequest, BASIC_APP, Browser, ClientAuth, DOCTOR, Hearth, PUBLIC_APP, REDIRECT_URI, Reply,
    SERVICE_APP, Site, anonymous_get, assert_error_redirect, assert_oauth_error,
    assert_oauth_error_in,
};

const SCOPE: &str = "launch/patient patient/*.rs";

fn discovery(site: &Site) -> Value {
    let url = format!("{}/.well-known/smart-configuration", site.fhir);
    let reply = anonymous_get(&url, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Runs a standalone launch of the public app at `site` and returns the access token.
fn launch_at(hearth: &Hearth, site: &Site) -> String {
    let request = AuthRequest::new(site, PUBLIC_APP, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    hearth
        .exchange(&ClientAuth::public(PUBLIC_APP), &request, &code)
        .access
}

fn assert_not_for_this_site(reply: &Reply) {
    assert_oauth_error_in(
        reply,
        &[400, 401],
        &["invalid_client", "unauthorized_client"],
    );
}

#[test]
fn app_inactive_at_site_is_rejected() {
    let hearth = Hearth::start();
    let north = hearth.create_site("north", false);
    let default_token = launch_at(&hearth, &hearth.default_site);
    let grants = hearth.all_grants();

    let request = AuthRequest::new(&north, PUBLIC_APP, SCOPE);
    let reply = Browser::new().start(&request);
    assert_error_redirect(&reply, "unauthorized_client", Some(request.state()));

    let pending = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let code = Browser::new()
        .authorize(&pending, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    let grants_with_code = hearth.all_grants();
    let exchange = hearth.token_at(
        &north,
        &ClientAuth::public(PUBLIC_APP),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &pending.pkce.verifier),
        ],
    );
    assert_not_for_this_site(&exchange);

    let service = hearth.token_at(
        &north,
        &hearth.basic(SERVICE_APP),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
        ],
    );
    assert_not_for_this_site(&service);

    let introspection = hearth.introspect_at(&north, &hearth.introspector(), &default_token);
    assert_not_for_this_site(&introspection);

    let revoke = hearth.post_form(
        &format!("{}/revoke", north.auth),
        &hearth.basic(BASIC_APP),
        &[("token", &default_token)],
    );
    assert_not_for_this_site(&revoke);

    let launch = hearth.admin_post(
        "/sites/north/auth/launch",
        &json!({"client_id": PUBLIC_APP, "patient": hearth.sample.patient.id}),
    );
    assert_oauth_error(&launch, 400, "unauthorized_client");

    assert_ne!(
        grants, grants_with_code,
        "the approval at the default site made a grant"
    );
    assert_eq!(
        hearth.all_grants(),
        grants_with_code,
        "a rejected request changed grants"
    );
    let still = hearth.fhir(
        &default_token,
        &format!("Patient/{}", hearth.sample.patient.id),
    );
    assert_eq!(still.status, 200, "{}", still.body);
}

#[test]
fn site_discovery_has_own_urls() {
    let hearth = Hearth::start();
    let north = hearth.create_site("north", false);
    assert!(
        north.auth.starts_with("http://127.0.0.1:"),
        "{}",
        north.auth
    );

    let config = discovery(&north);

    assert_eq!(config["issuer"], north.auth.as_str());
    for (field, path) in [
        ("authorization_endpoint", "authorize"),
        ("token_endpoint", "token"),
        ("introspection_endpoint", "introspect"),
        ("revocation_endpoint", "revoke"),
        ("jwks_uri", "jwks"),
    ] {
        assert_eq!(
            config[field],
            format!("{}/{path}", north.auth).as_str(),
            "{field}"
        );
    }
    assert_ne!(
        config["token_endpoint"],
        discovery(&hearth.default_site)["token_endpoint"]
    );

    let metadata = anonymous_get(&format!("{}/metadata", north.fhir), &[]);
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    let statement = metadata.json();
    let uris = &statement["rest"][0]["security"]["extension"][0]["extension"];
    let authorize = uris
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == "authorize")
        .map(|e| e["valueUri"].clone());
    assert_eq!(authorize, Some(json!(format!("{}/authorize", north.auth))));
}

#[test]
fn token_for_one_site_fails_at_other() {
    let hearth = Hearth::start();
    let north = hearth.create_site("north", false);
    let activated = hearth.admin_put(&format!("/admin/sites/north/apps/{PUBLIC_APP}"));
    assert_eq!(activated.status, 204, "{}", activated.body);
    let patient = format!("Patient/{}", hearth.sample.patient.id);

    let north_token = launch_at(&hearth, &north);
    let default_token = launch_at(&hearth, &hearth.default_site);

    let at_north = hearth.fhir_at(&north, &north_token, &patient);
    assert_eq!(at_north.status, 200, "{}", at_north.body);
    let at_default = hearth.fhir_at(&hearth.default_site, &north_token, &patient);
    assert_eq!(at_default.status, 401, "{}", at_default.body);
    let crossed = hearth.fhir_at(&north, &default_token, &patient);
    assert_eq!(crossed.status, 401, "{}", crossed.body);
    assert_eq!(hearth.introspect(&north_token), json!({"active": false}));
}

#[test]
fn unknown_site_is_not_found() {
    let hearth = Hearth::start();
    let nowhere = hearth.site("nowhere");

    let metadata = anonymous_get(&format!("{}/metadata", nowhere.fhir), &[]);
    assert_eq!(metadata.status, 404, "{}", metadata.body);
    let token = hearth.token_at(
        &nowhere,
        &hearth.basic(SERVICE_APP),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
        ],
    );
    assert_eq!(token.status, 404, "{}", token.body);
}

#[test]
fn dynamic_registration_on_open_site() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let config = discovery(&open);
    let endpoint = format!("{}/register", open.auth);
    assert_eq!(config["registration_endpoint"], endpoint.as_str());

    let metadata = json!({
        "client_name": "Registered app",
        "redirect_uris": [REDIRECT_URI],
        "scope": SCOPE,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
    });
    let reply = hearth.post_raw(&endpoint, "application/json", metadata.to_string());
    assert_eq!(reply.status, 201, "{}", reply.body);
    let registered = reply.json();
    let client_id = registered["client_id"]
        .as_str()
        .expect("client_id")
        .to_string();
    assert!(registered.get("client_secret").is_none(), "{registered}");

    let request = AuthRequest::new(&open, &client_id, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    let tokens = hearth.exchange(&ClientAuth::public(&client_id), &request, &code);
    let patient = format!("Patient/{}", hearth.sample.patient.id);
    let read = hearth.fhir_at(&open, &tokens.access, &patient);
    assert_eq!(read.status, 200, "{}", read.body);

    // The registration activated the client at its own site only.
    let elsewhere = AuthRequest::new(&hearth.default_site, &client_id, SCOPE);
    let reply = Browser::new().start(&elsewhere);
    assert_error_redirect(&reply, "unauthorized_client", Some(elsewhere.state()));
}

/// A backend service registers with the admin token as its initial access token.
#[test]
fn dynamic_confidential_client_gets_secret() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let metadata = json!({
        "client_name": "Registered service",
        "scope": "system/Patient.rs",
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["client_credentials"],
    });

    let reply = Reply::send(
        reqwest::blocking::Client::new()
            .post(format!("{}/register", open.auth))
            .bearer_auth(hearth.server.admin_token())
            .header("Content-Type", "application/json")
            .body(metadata.to_string()),
    );

    assert_eq!(reply.status, 201, "{}", reply.body);
    let registered = reply.json();
    let client_id = registered["client_id"].as_str().expect("client_id");
    let secret = registered["client_secret"].as_str().expect("client_secret");
    let client = ClientAuth::Basic(client_id.to_string(), secret.to_string());
    let token = hearth.token_at(
        &open,
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
        ],
    );
    assert_eq!(token.status, 200, "{}", token.body);
    assert_eq!(token.json()["scope"], "system/Patient.rs");
}

#[test]
fn dynamic_registration_needs_opt_in() {
    let hearth = Hearth::start();
    let closed = hearth.create_site("closed", false);
    let metadata = json!({
        "client_name": "Registered app",
        "redirect_uris": [REDIRECT_URI],
        "scope": SCOPE,
    })
    .to_string();

    for site in [&hearth.default_site, &closed] {
        let reply = hearth.post_raw(
            &format!("{}/register", site.auth),
            "application/json",
            metadata.clone(),
        );
        assert_eq!(reply.status, 403, "{}: {}", site.id, reply.body);
        assert!(reply.json()["error"].is_string(), "{}", reply.body);
        assert!(discovery(site).get("registration_endpoint").is_none());
    }
}

#[test]
fn dynamic_registration_rejects_bad_metadata() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let endpoint = format!("{}/register", open.auth);
    let (_, apps_before) = hearth
        .server
        .get_json(&format!("{}/admin/apps", hearth.base_url()));

    let cases: [(&str, &str, &str); 6] = [
        (
            "application/json",
            "{\"client_name\":",
            "invalid_client_metadata",
        ),
        ("application/json", "[]", "invalid_client_metadata"),
        (
            "application/json",
            r#"{"redirect_uris": ["http://app.example/cb"], "scope": "patient/*.rs"}"#,
            "invalid_redirect_uri",
        ),
        (
            "application/json",
            r#"{"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "tls_client_auth"}"#,
            "invalid_client_metadata",
        ),
        (
            "application/json",
            r#"{"redirect_uris": ["https://app.example/cb"], "grant_types": ["password"]}"#,
            "invalid_client_metadata",
        ),
        (
            "application/x-www-form-urlencoded",
            "client_name=x&redirect_uris=https%3A%2F%2Fapp.example%2Fcb",
            "invalid_client_metadata",
        ),
    ];
    for (content_type, body, error) in cases {
        let reply = hearth.post_raw(&endpoint, content_type, body);
        assert_oauth_error(&reply, 400, error);
    }

    let (_, apps_after) = hearth
        .server
        .get_json(&format!("{}/admin/apps", hearth.base_url()));
    assert_eq!(
        apps_after, apps_before,
        "a rejected registration stored an app"
    );
}
