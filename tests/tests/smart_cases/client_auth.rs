//! Client authentication at the token endpoint: secrets by Basic and by form, signed
//! assertions, and every way of getting them wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::support::{
    AuthRequest, BASIC_APP, Browser, ClientAuth, DOCTOR, Hearth, JWT_APP, POST_APP, PUBLIC_APP,
    REDIRECT_URI, Reply, assert_oauth_error, assert_oauth_error_in, basic_header, client_assertion,
    jwt_claims, now_seconds, sign_es384, unique, with_claims,
};

const SCOPE: &str = "launch/patient patient/*.rs offline_access";

/// Authorizes `client_id` as the doctor and returns the request and its code.
fn code_for(hearth: &Hearth, client_id: &str) -> (AuthRequest, String) {
    let request = AuthRequest::new(&hearth.default_site, client_id, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    (request, code)
}

fn code_pairs<'a>(request: &'a AuthRequest, code: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", &request.pkce.verifier),
    ]
}

/// POSTs a code exchange with a raw `Authorization` header.
fn exchange_with_header(hearth: &Hearth, header: &str, pairs: &[(&str, &str)]) -> Reply {
    let url = format!("{}/token", hearth.default_site.auth);
    Reply::send(
        reqwest::blocking::Client::new()
            .post(url)
            .header("Authorization", header)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(crate::support::form(pairs)),
    )
}

#[test]
fn symmetric_client_basic_and_post() {
    let hearth = Hearth::start();
    let cases = [
        (BASIC_APP, hearth.basic(BASIC_APP)),
        (POST_APP, hearth.post_secret(POST_APP)),
    ];

    for (client_id, client) in cases {
        let (request, code) = code_for(&hearth, client_id);
        let tokens = hearth.exchange(&client, &request, &code);
        let read = hearth.fhir(
            &tokens.access,
            &format!("Patient/{}", hearth.sample.patient.id),
        );
        assert_eq!(
            read.status, 200,
            "{client_id} with {client:?}: {}",
            read.body
        );

        let refreshed = hearth.refresh(&client, tokens.refresh_token(), None);
        assert_eq!(
            refreshed.status, 200,
            "{client_id} refresh: {}",
            refreshed.body
        );
    }
}

#[test]
fn secret_only_by_registered_method() {
    let hearth = Hearth::start();
    let cases = [
        (
            BASIC_APP,
            hearth.post_secret(BASIC_APP),
            "client_secret_post",
        ),
        (POST_APP, hearth.basic(POST_APP), "client_secret_basic"),
    ];

    for (client_id, client, method) in cases {
        let (request, code) = code_for(&hearth, client_id);
        let reply = hearth.token(&client, &code_pairs(&request, &code));
        assert_oauth_error(&reply, 401, "invalid_client");
        let description = reply.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(description.contains(method), "{client_id}: {description}");
    }
}

#[test]
fn confidential_client_needs_its_secret() {
    let hearth = Hearth::start();
    let (request, code) = code_for(&hearth, BASIC_APP);
    let pairs = code_pairs(&request, &code);
    let grants = hearth.all_grants();
    let id = BASIC_APP.to_string();
    let wrong = |secret: &str| ClientAuth::Basic(id.clone(), secret.to_string());

    let cases = [
        (ClientAuth::public(BASIC_APP), "no secret"),
        (wrong("wrong-secret"), "a wrong secret by Basic"),
        (
            ClientAuth::Post(id.clone(), "wrong-secret".to_string()),
            "a wrong secret by form",
        ),
        (wrong(&hearth.secret(POST_APP)), "another app's secret"),
        (wrong(""), "an empty secret"),
        (
            ClientAuth::Basic("no-such-app".to_string(), hearth.secret(BASIC_APP)),
            "an unknown client by Basic",
        ),
    ];
    for (client, what) in cases {
        let reply = hearth.token(&client, &pairs);
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_oauth_error(&reply, 401, "invalid_client");
        // RFC 6749 section 5.2: a failed Basic authentication gets a challenge.
        if matches!(client, ClientAuth::Basic(..)) {
            assert!(reply.header("www-authenticate").is_some(), "{what}");
        }
    }

    let secret = hearth.secret(BASIC_APP);
    let headers = [
        (
            "Basic !!!not-base64!!!".to_string(),
            "Basic credentials that are not base64",
        ),
        (
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(BASIC_APP)
            ),
            "Basic credentials without a colon",
        ),
        (
            basic_header(POST_APP, &secret),
            "another client id with this secret",
        ),
    ];
    for (header, what) in headers {
        let reply = exchange_with_header(&hearth, &header, &pairs);
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_oauth_error(&reply, 401, "invalid_client");
    }

    // Two methods at once, and a form client_id that is not the Basic one.
    let mut both = pairs.clone();
    both.extend([("client_id", BASIC_APP), ("client_secret", secret.as_str())]);
    let reply = exchange_with_header(&hearth, &basic_header(BASIC_APP, &secret), &both);
    assert_oauth_error_in(&reply, &[400, 401], &["invalid_request", "invalid_client"]);
    let mut mismatched = pairs.clone();
    mismatched.push(("client_id", POST_APP));
    let reply = exchange_with_header(&hearth, &basic_header(BASIC_APP, &secret), &mismatched);
    assert_oauth_error(&reply, 401, "invalid_client");

    assert_eq!(
        hearth.all_grants(),
        grants,
        "a rejected request changed grants"
    );
    // Requests that failed to authenticate did not use up the code.
    let tokens = hearth.exchange(&hearth.basic(BASIC_APP), &request, &code);
    assert!(!tokens.access.is_empty());
}

#[test]
fn public_client_sending_secret_is_rejected() {
    let hearth = Hearth::start();
    let (request, code) = code_for(&hearth, PUBLIC_APP);
    let client = ClientAuth::Post(PUBLIC_APP.to_string(), "made-up".to_string());

    let reply = hearth.token(&client, &code_pairs(&request, &code));

    assert_oauth_error(&reply, 401, "invalid_client");
}

#[test]
fn unknown_client_is_invalid_client() {
    let hearth = Hearth::start();
    let (request, code) = code_for(&hearth, PUBLIC_APP);
    let grants = hearth.all_grants();

    let reply = hearth.token(
        &ClientAuth::public("no-such-app"),
        &code_pairs(&request, &code),
    );

    assert_oauth_error(&reply, 401, "invalid_client");
    assert_eq!(hearth.all_grants(), grants);
}

#[test]
fn code_of_another_client_is_invalid_grant() {
    let hearth = Hearth::start();
    let (request, code) = code_for(&hearth, PUBLIC_APP);

    let reply = hearth.token(&hearth.basic(BASIC_APP), &code_pairs(&request, &code));

    assert_oauth_error(&reply, 400, "invalid_grant");
    let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &code);
    assert!(!tokens.access.is_empty());
}

#[test]
fn bad_client_assertions_are_invalid_client() {
    let hearth = Hearth::start();
    let (request, code) = code_for(&hearth, JWT_APP);
    let pairs = code_pairs(&request, &code);
    let grants = hearth.all_grants();
    let token_url = format!("{}/token", hearth.default_site.auth);
    let valid = client_assertion(&token_url);

    let header = |alg: jsonwebtoken::Algorithm| {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some("e2e-es384".to_string());
        header
    };
    let claims = |aud: &str, exp: i64| json!({"iss": JWT_APP, "sub": JWT_APP, "aud": aud, "exp": exp, "jti": unique("jti")});
    let mut extended = jwt_claims(&valid);
    extended["exp"] = json!(now_seconds() + 200);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(&token_url, now_seconds() + 60).to_string())
    );
    let es384 = header(jsonwebtoken::Algorithm::ES384);

    let cases = [
        ("not-a-jwt".to_string(), "not a JWT"),
        ("a.b.c".to_string(), "three parts of nothing"),
        (unsigned, "alg none"),
        (
            with_claims(&valid, &extended),
            "claims changed after signing",
        ),
        (
            sign_es384(
                &es384,
                &claims("https://other.example/token", now_seconds() + 60),
            ),
            "another audience",
        ),
        (
            sign_es384(&es384, &claims(&token_url, now_seconds() - 600)),
            "expired",
        ),
        (
            sign_es384(&es384, &claims(&token_url, now_seconds() + 3600)),
            "exp too far ahead",
        ),
    ];
    for (assertion, what) in cases {
        let client = ClientAuth::Assertion(JWT_APP.to_string(), assertion);
        let reply = hearth.token(&client, &pairs);
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_oauth_error(&reply, 401, "invalid_client");
    }

    let mut wrong_type = pairs.clone();
    wrong_type.extend([
        ("client_id", JWT_APP),
        ("client_assertion_type", "urn:example:unknown"),
        ("client_assertion", valid.as_str()),
    ]);
    let reply = hearth.token(&ClientAuth::Anonymous, &wrong_type);
    assert_oauth_error(&reply, 401, "invalid_client");
    let mut untyped = pairs.clone();
    untyped.extend([("client_id", JWT_APP), ("client_assertion", valid.as_str())]);
    let reply = hearth.token(&ClientAuth::Anonymous, &untyped);
    assert_oauth_error_in(&reply, &[400, 401], &["invalid_request", "invalid_client"]);
    let secret = ClientAuth::Post(JWT_APP.to_string(), "a-secret".to_string());
    assert_oauth_error(&hearth.token(&secret, &pairs), 401, "invalid_client");

    assert_eq!(
        hearth.all_grants(),
        grants,
        "a rejected request changed grants"
    );
    let client = ClientAuth::Assertion(JWT_APP.to_string(), valid);
    let tokens = hearth.exchange(&client, &request, &code);
    assert!(!tokens.access.is_empty());
}

/// SMART App Launch 2.2: a `jti` already seen for the client within the assertion
/// lifetime is a replay, whatever the grant type.
#[test]
fn replayed_client_assertion_is_rejected() {
    let hearth = Hearth::start();
    let token_url = format!("{}/token", hearth.default_site.auth);
    let assertion = client_assertion(&token_url);
    let client = ClientAuth::Assertion(JWT_APP.to_string(), assertion);
    let (first_request, first_code) = code_for(&hearth, JWT_APP);
    hearth.exchange(&client, &first_request, &first_code);

    let (request, code) = code_for(&hearth, JWT_APP);
    let reply = hearth.token(&client, &code_pairs(&request, &code));

    assert_oauth_error(&reply, 401, "invalid_client");
}
