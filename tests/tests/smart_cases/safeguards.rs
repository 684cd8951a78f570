//! Protections around the user-facing pages and the admin API: framing and CORS headers
//! of HTML pages, the lock after repeated failed sign-ins, `no-store` on client secrets,
//! and error messages that name the actual problem.

use serde_json::json;

use crate::support::{
    AuthRequest, Browser, ClientAuth, DOCTOR, Hearth, PASSWORD, PUBLIC_APP, REDIRECT_URI,
    assert_oauth_error,
};

const SCOPE: &str = "launch/patient patient/*.rs";

#[test]
fn html_pages_deny_framing_and_cors() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let error_url = format!("{}/authorize?client_id=nobody", hearth.default_site.auth);

    for (what, url) in [("sign-in page", request.url()), ("error page", error_url)] {
        let reply =
            crate::support::Reply::send(client.get(&url).header("Origin", "https://evil.example"));
        assert!(
            reply
                .header("content-type")
                .unwrap_or_default()
                .starts_with("text/html"),
            "{what}: {}",
            reply.body
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            reply.header("content-security-policy"),
            Some("frame-ancestors 'none'"),
            "{what}"
        );
        assert_eq!(reply.header("access-control-allow-origin"), None, "{what}");
    }

    let discovery = crate::support::Reply::send(
        client
            .get(format!(
                "{}/.well-known/smart-configuration",
                hearth.default_site.fhir
            ))
            .header("Origin", "https://app.example"),
    );
    assert_eq!(discovery.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn repeated_failed_sign_ins_lock_username() {
    let hearth = Hearth::start();
    let browser = Browser::new();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let mut page = browser.start(&request);

    for attempt in 1..=5 {
        page = sign_in(&browser, &page, DOCTOR, "wrong-password");
        assert!(
            page.body
                .contains("The username or password is not correct."),
            "attempt {attempt}: {}",
            page.body
        );
    }
    page = sign_in(&browser, &page, DOCTOR, PASSWORD);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Too many failed sign-ins"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("try again in 15 minutes"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("name=\"decision\""),
        "signed in while locked"
    );

    // Another user is not affected.
    let other = sign_in(&browser, &page, crate::support::PATIENT_USER, PASSWORD);
    assert!(other.body.contains("name=\"decision\""), "{}", other.body);
}

fn sign_in(
    browser: &Browser,
    page: &crate::support::Reply,
    username: &str,
    password: &str,
) -> crate::support::Reply {
    let action = format!(
        "{}/authorize/login",
        page.body
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split("/authorize/login").next())
            .expect("a sign-in form")
    );
    let request = crate::support::hidden_field(&page.body, "request");
    let csrf = crate::support::hidden_field(&page.body, "csrf");
    browser.post_form(
        &action,
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("username", username),
            ("password", password),
        ],
    )
}

#[test]
fn admin_client_secret_is_not_cached() {
    let hearth = Hearth::start();
    let reply = hearth.admin_post(
        "/admin/apps",
        &json!({
            "name": "Confidential",
            "client_type": "confidential-symmetric",
            "redirect_uris": [REDIRECT_URI],
            "scope": SCOPE,
        }),
    );

    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.json()["client_secret"].is_string(), "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[test]
fn events_without_topic_says_so() {
    let hearth = Hearth::start();
    let (status, body) = hearth
        .server
        .get_json(&format!("{}/admin/events", hearth.base_url()));

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("topic query parameter is missing"),
        "{description}"
    );
}

#[test]
fn code_from_other_site_names_site() {
    let hearth = Hearth::start();
    let north = hearth.create_site("north", false);
    assert_eq!(
        hearth
            .admin_put(&format!("/admin/sites/north/apps/{PUBLIC_APP}"))
            .status,
        204
    );
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();

    let reply = hearth.token_at(
        &north,
        &ClientAuth::public(PUBLIC_APP),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &request.pkce.verifier),
        ],
    );

    assert_oauth_error(&reply, 400, "invalid_grant");
    let description = reply.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(description.contains("site default"), "{description}");
    assert!(!description.contains("another client"), "{description}");
}

#[test]
fn cli_grant_revoke_prints_grant() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);
    let grant = &hearth.grants(PUBLIC_APP)[0];
    let grant_id = grant["grant_id"].as_str().expect("grant_id");

    let output = std::process::Command::new(hearth_e2e::hearth_bin())
        .arg("grants")
        .arg("revoke")
        .arg(grant_id)
        .arg("--url")
        .arg(hearth.base_url())
        .arg(format!("--admin-token={}", hearth.server.admin_token()))
        .output()
        .expect("hearth grants revoke runs");

    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("revoked grant {grant_id}")),
        "{printed}"
    );
    assert!(printed.contains(PUBLIC_APP), "{printed}");
    assert!(printed.contains("site default"), "{printed}");
    crate::support::assert_token_dead(&hearth, &tokens.access, "the revoked grant's token");
}

/// A backend service registered for `system/*.rs` that asks for more gets what it may
/// have; only a request with nothing allowed gets `invalid_scope`.
#[test]
fn client_credentials_grants_allowed_subset() {
    let hearth = Hearth::start();
    let service = hearth.basic(crate::support::SERVICE_APP);
    let cases = [
        ("system/*.cruds", "system/*.rs"),
        (
            "system/Patient.rs system/Observation.cud",
            "system/Patient.rs",
        ),
    ];

    for (requested, granted) in cases {
        let reply = hearth.token(
            &service,
            &[("grant_type", "client_credentials"), ("scope", requested)],
        );
        assert_eq!(reply.status, 200, "{requested}: {}", reply.body);
        assert_eq!(reply.json()["scope"], granted, "{requested}");
    }

    let nothing = hearth.token(
        &service,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.cud"),
        ],
    );
    assert_oauth_error(&nothing, 400, "invalid_scope");
}

// The same tests against an EHR-backed site whose upstream stores the sample.
through_proxy!(client_credentials_grants_allowed_subset,);
