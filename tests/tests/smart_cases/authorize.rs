//! The authorize endpoint's checks: PKCE, redirect URIs, `state` on errors and `aud`.

use serde_json::json;

use crate::support::{
    AuthRequest, Browser, ClientAuth, DOCTOR, Hearth, PUBLIC_APP, Pkce, REDIRECT_URI,
    assert_error_page, assert_error_redirect, assert_oauth_error, assert_oauth_error_in,
};

const SCOPE: &str = "launch/patient patient/*.rs";

#[test]
fn authorize_without_code_challenge_redirects_error() {
    let hearth = Hearth::start();
    let browser = Browser::new();

    let without_challenge =
        AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE).without("code_challenge");
    let reply = browser.start(&without_challenge);
    assert_error_redirect(&reply, "invalid_request", Some(without_challenge.state()));

    let without_pkce = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE)
        .without("code_challenge")
        .without("code_challenge_method");
    let reply = browser.start(&without_pkce);
    assert_error_redirect(&reply, "invalid_request", Some(without_pkce.state()));

    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

#[test]
fn plain_challenge_method_is_rejected() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let verifier = request.pkce.verifier.clone();
    let plain = request
        .set("code_challenge", &verifier)
        .set("code_challenge_method", "plain");

    let reply = Browser::new().start(&plain);

    assert_error_redirect(&reply, "invalid_request", Some(plain.state()));
    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

#[test]
fn token_needs_matching_code_verifier() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    let grants = hearth.all_grants();
    let client = ClientAuth::public(PUBLIC_APP);
    let exchange = |verifier: Option<&str>| {
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
        ];
        if let Some(verifier) = verifier {
            pairs.push(("code_verifier", verifier));
        }
        hearth.token(&client, &pairs)
    };

    let missing = exchange(None);
    assert_oauth_error_in(&missing, &[400], &["invalid_request", "invalid_grant"]);
    let empty = exchange(Some(""));
    assert_oauth_error_in(&empty, &[400], &["invalid_request", "invalid_grant"]);
    let other = Pkce::new();
    let wrong = exchange(Some(&other.verifier));
    assert_oauth_error(&wrong, 400, "invalid_grant");
    // The challenge itself is not the verifier.
    let challenge = exchange(Some(&request.pkce.challenge));
    assert_oauth_error(&challenge, 400, "invalid_grant");

    assert_eq!(
        hearth.all_grants(),
        grants,
        "a rejected exchange changed grants"
    );
}

#[test]
fn code_exchange_rechecks_redirect_uri() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    let grants = hearth.all_grants();
    let client = ClientAuth::public(PUBLIC_APP);
    let verifier = request.pkce.verifier.as_str();

    let without = hearth.token(
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", verifier),
        ],
    );
    assert_oauth_error(&without, 400, "invalid_grant");

    let other = hearth.token(
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/other"),
            ("code_verifier", verifier),
        ],
    );
    assert_oauth_error(&other, 400, "invalid_grant");

    assert_eq!(
        hearth.all_grants(),
        grants,
        "a rejected exchange changed grants"
    );
}

#[test]
fn redirect_uri_must_match_exactly() {
    let hearth = Hearth::start();
    let browser = Browser::new();
    let variants = [
        "https://app.example:8443/cb",
        "https://app.example/cb/x",
        "https://app.example/cb?x=1",
        "https://APP.example/cb",
    ];

    for uri in variants {
        let request =
            AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE).set("redirect_uri", uri);
        let reply = browser.start(&request);
        assert_error_page(&reply);
    }

    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

#[test]
fn wrong_aud_redirects_with_state() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE)
        .set("state", "xyz123")
        .set("aud", "https://other.example/fhir");

    let reply = Browser::new().start(&request);

    let redirect = assert_error_redirect(&reply, "invalid_request", Some("xyz123"));
    assert!(
        redirect.location.starts_with("https://app.example/cb?"),
        "{}",
        redirect.location
    );
}

#[test]
fn unknown_client_gets_error_page() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, "no-such-app", SCOPE);

    let reply = Browser::new().start(&request);

    assert_error_page(&reply);
}

#[test]
fn unregistered_redirect_uri_gets_error_page() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE)
        .set("state", "xyz123")
        .set("redirect_uri", "https://evil.example/cb");

    let reply = Browser::new().start(&request);

    assert_error_page(&reply);
}

#[test]
fn authorize_without_aud_redirects_error() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE).without("aud");

    let reply = Browser::new().start(&request);

    assert_error_redirect(&reply, "invalid_request", Some(request.state()));
    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

#[test]
fn aud_exact_fhir_base_is_accepted() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    assert_eq!(
        request.param("aud"),
        Some(hearth.default_site.fhir.as_str())
    );

    let redirect = Browser::new().authorize(&request, DOCTOR, Some(&hearth.sample.patient.id));
    assert_eq!(redirect.param("state"), Some(request.state()));
    let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &redirect.code());

    let patient = hearth.fhir(
        &tokens.access,
        &format!("Patient/{}", hearth.sample.patient.id),
    );
    assert_eq!(patient.status, 200, "{}", patient.body);
}

/// One trailing slash names the same FHIR base, as docs/SMART.md states; two do not.
#[test]
fn aud_with_trailing_slash_is_accepted() {
    let hearth = Hearth::start();
    let aud = format!("{}/", hearth.default_site.fhir);
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE).set("aud", &aud);

    let redirect = Browser::new().authorize(&request, DOCTOR, Some(&hearth.sample.patient.id));
    let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &redirect.code());

    let info = hearth.introspect(&tokens.access);
    assert_eq!(info["active"], true);
    assert_eq!(info["aud"], hearth.default_site.fhir.as_str());
    let patient = hearth.fhir(
        &tokens.access,
        &format!("Patient/{}", hearth.sample.patient.id),
    );
    assert_eq!(patient.status, 200, "{}", patient.body);

    let two_slashes = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE)
        .set("aud", &format!("{}//", hearth.default_site.fhir));
    let reply = Browser::new().start(&two_slashes);
    assert_error_redirect(&reply, "invalid_request", Some(two_slashes.state()));
}

#[test]
fn authorize_by_post_issues_code() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let browser = Browser::new();

    let first = browser.start_post(&request);
    let redirect = browser.complete(first, DOCTOR, Some(&hearth.sample.patient.id));

    assert_eq!(redirect.param("state"), Some(request.state()));
    let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &redirect.code());
    assert_eq!(
        tokens.response["patient"],
        hearth.sample.patient.id.as_str()
    );
}

#[test]
fn denial_redirects_access_denied() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let browser = Browser::new();

    let login = browser.start(&request);
    let picker = browser.sign_in(&login, DOCTOR);
    let approval = browser.choose_patient(&picker, &hearth.sample.patient.id);
    let reply = browser.decide(&approval, "deny");

    assert_error_redirect(&reply, "access_denied", Some(request.state()));
    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

// The same tests against an EHR-backed site whose upstream stores the sample.
through_proxy!(
    authorize_without_code_challenge_redirects_error,
    plain_challenge_method_is_rejected,
    token_needs_matching_code_verifier,
    code_exchange_rechecks_redirect_uri,
    redirect_uri_must_match_exactly,
    wrong_aud_redirects_with_state,
    unknown_client_gets_error_page,
    unregistered_redirect_uri_gets_error_page,
    authorize_without_aud_redirects_error,
    aud_exact_fhir_base_is_accepted,
    aud_with_trailing_slash_is_accepted,
    authorize_by_post_issues_code,
    denial_redirects_access_denied,
);
