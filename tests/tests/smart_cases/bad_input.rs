//! Bad input at every endpoint: missing and repeated parameters, wrong content types,
//! malformed bodies, forged tokens and oversized requests. Each gets an RFC 6749 error
//! (or an error page or redirect at authorize), never a 5xx, and writes nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::support::{
    AuthRequest, BASIC_APP, Browser, ClientAuth, DOCTOR, Hearth, PUBLIC_APP, REDIRECT_URI, Reply,
    SERVICE_APP, assert_error_page, assert_error_redirect, assert_oauth_error,
    assert_oauth_error_in, form, hidden_field, jwt_claims, sign_es384, with_claims,
};

const SCOPE: &str = "launch/patient patient/*.rs offline_access";

/// A body size above axum's default request body limit of 2 MB, which the OAuth and
/// admin endpoints keep.
const OVERSIZED_BYTES: usize = 3 * 1024 * 1024;

fn oversized_form() -> String {
    format!(
        "grant_type=authorization_code&token=x&code={}",
        "a".repeat(OVERSIZED_BYTES)
    )
}

fn code_for(hearth: &Hearth, client_id: &str) -> (AuthRequest, String) {
    let request = AuthRequest::new(&hearth.default_site, client_id, SCOPE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    (request, code)
}

fn apps(hearth: &Hearth) -> Value {
    let (status, apps) = hearth
        .server
        .get_json(&format!("{}/admin/apps", hearth.base_url()));
    assert_eq!(status, 200);
    apps
}

#[test]
fn authorize_rejects_repeated_parameters() {
    let hearth = Hearth::start();
    let browser = Browser::new();
    let valid = || AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);

    for name in ["client_id", "redirect_uri"] {
        let value = valid().param(name).unwrap_or_default().to_string();
        let reply = browser.start(&valid().add(name, &value));
        assert_error_page(&reply);
    }

    let request = valid();
    let state = request.state().to_string();
    let reply = browser.start(&request.add("state", "second"));
    let redirect = reply.redirect();
    assert_eq!(redirect.param("error"), Some("invalid_request"));
    assert_eq!(redirect.param("code"), None);
    assert_ne!(redirect.param("state"), Some(state.as_str()));

    for name in [
        "response_type",
        "scope",
        "aud",
        "code_challenge",
        "code_challenge_method",
    ] {
        let request = valid();
        let value = request.param(name).unwrap_or_default().to_string();
        let repeated = request.add(name, &value);
        let reply = browser.start(&repeated);
        assert_error_redirect(&reply, "invalid_request", Some(repeated.state()));
    }

    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

#[test]
fn authorize_rejects_malformed_parameters() {
    let hearth = Hearth::start();
    let browser = Browser::new();
    let valid = || AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);

    let empty = browser.get(&format!("{}/authorize", hearth.default_site.auth));
    assert_error_page(&empty);
    let no_client = browser.start(&valid().without("client_id"));
    assert_error_page(&no_client);
    let not_utf8 = browser.get(&format!(
        "{}/authorize?client_id=%FF%FE&response_type=code",
        hearth.default_site.auth
    ));
    assert_error_page(&not_utf8);

    let no_type = valid().without("response_type");
    assert_error_redirect(
        &browser.start(&no_type),
        "invalid_request",
        Some(no_type.state()),
    );
    let implicit = valid().set("response_type", "token");
    assert_error_redirect(
        &browser.start(&implicit),
        "unsupported_response_type",
        Some(implicit.state()),
    );
    let short_challenge = valid().set("code_challenge", "abc");
    assert_error_redirect(
        &browser.start(&short_challenge),
        "invalid_request",
        Some(short_challenge.state()),
    );
    let no_scope = valid().without("scope");
    let reply = browser.start(&no_scope);
    let redirect = reply.redirect();
    assert!(
        matches!(
            redirect.param("error"),
            Some("invalid_scope" | "invalid_request")
        ),
        "{}",
        redirect.location
    );
    assert_eq!(redirect.param("state"), Some(no_scope.state()));

    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

#[test]
fn authorize_post_needs_form_body() {
    let hearth = Hearth::start();
    let browser = Browser::new();
    let url = format!("{}/authorize", hearth.default_site.auth);
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let as_json: Value = request
        .params
        .iter()
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect::<serde_json::Map<String, Value>>()
        .into();

    let json_body = browser.post(&url, "application/json", as_json.to_string());
    assert_error_page(&json_body);
    let empty = browser.post(&url, "application/x-www-form-urlencoded", "");
    assert_error_page(&empty);

    assert_eq!(hearth.grants(PUBLIC_APP), json!([]));
}

/// Why a reply to an oversized body is not an OAuth error, or `None` when it is one.
fn too_large_problem(reply: &Reply, page: bool) -> Option<String> {
    let content_type = reply.header("content-type").unwrap_or_default();
    let expected_type = if page {
        "text/html"
    } else {
        "application/json"
    };
    let error = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string));
    let fits = matches!(reply.status, 400 | 413)
        && content_type.starts_with(expected_type)
        && (page || error.as_deref() == Some("invalid_request"));
    let body: String = reply.body.chars().take(80).collect();
    (!fits).then(|| format!("{} {content_type}: {body}", reply.status))
}

#[test]
fn oversized_bodies_get_oauth_errors() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let grants = hearth.all_grants();
    let before = apps(&hearth);
    let auth = &hearth.default_site.auth;
    let form_type = "application/x-www-form-urlencoded";
    let big_json = |name: &str| json!({ name: "x".repeat(OVERSIZED_BYTES) }).to_string();

    let replies = [
        (
            "token",
            hearth.post_raw(&format!("{auth}/token"), form_type, oversized_form()),
        ),
        (
            "introspect",
            hearth.post_raw(&format!("{auth}/introspect"), form_type, oversized_form()),
        ),
        (
            "revoke",
            hearth.post_raw(&format!("{auth}/revoke"), form_type, oversized_form()),
        ),
        (
            "register",
            hearth.post_raw(
                &format!("{}/register", open.auth),
                "application/json",
                big_json("client_name"),
            ),
        ),
        (
            "launch",
            hearth.admin_post_raw("/auth/launch", "application/json", &big_json("intent")),
        ),
        (
            "admin apps",
            hearth.admin_post_raw("/admin/apps", "application/json", &big_json("name")),
        ),
    ];
    let mut problems: Vec<String> = replies
        .iter()
        .filter_map(|(endpoint, reply)| {
            too_large_problem(reply, false).map(|p| format!("{endpoint}: {p}"))
        })
        .collect();
    let authorize = Browser::new().post(&format!("{auth}/authorize"), form_type, oversized_form());
    if let Some(problem) = too_large_problem(&authorize, true) {
        problems.push(format!("authorize: {problem}"));
    }

    assert!(problems.is_empty(), "not OAuth errors: {problems:#?}");
    assert_eq!(hearth.all_grants(), grants);
    assert_eq!(apps(&hearth), before);
}

#[test]
fn flow_pages_reject_tampered_forms() {
    let hearth = Hearth::start();
    let browser = Browser::new();
    let auth = &hearth.default_site.auth;
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, SCOPE);
    let login = browser.start(&request);
    let pending = hidden_field(&login.body, "request");
    let csrf = hidden_field(&login.body, "csrf");
    let login_url = format!("{auth}/authorize/login");
    let decision_url = format!("{auth}/authorize/decision");

    let no_fields = browser.post_form(&login_url, &[("username", DOCTOR)]);
    assert_error_page(&no_fields);
    let wrong_csrf = browser.post_form(
        &login_url,
        &[
            ("request", &pending),
            ("csrf", "forged"),
            ("username", DOCTOR),
        ],
    );
    assert_error_page(&wrong_csrf);
    let as_json = browser.post(
        &login_url,
        "application/json",
        json!({"request": pending, "csrf": csrf, "username": DOCTOR}).to_string(),
    );
    assert_error_page(&as_json);
    let repeated = browser.post_form(
        &login_url,
        &[
            ("request", &pending),
            ("request", &pending),
            ("csrf", &csrf),
        ],
    );
    assert_error_page(&repeated);

    let wrong_password = browser.post_form(
        &login_url,
        &[
            ("request", &pending),
            ("csrf", &csrf),
            ("username", DOCTOR),
            ("password", "not-the-password"),
        ],
    );
    assert_eq!(wrong_password.status, 200, "{}", wrong_password.body);
    assert!(wrong_password.body.contains("name=\"username\""));
    assert!(wrong_password.header("set-cookie").is_none());

    // Approving before signing in only shows the sign-in page again.
    let early = browser.post_form(
        &decision_url,
        &[
            ("request", &pending),
            ("csrf", &csrf),
            ("decision", "approve"),
        ],
    );
    assert_eq!(early.status, 200, "{}", early.body);
    assert!(early.body.contains("name=\"username\""), "{}", early.body);

    let picker = browser.sign_in(&login, DOCTOR);
    let unknown = browser.choose_patient(&picker, "no-such-patient");
    assert!(
        unknown.body.contains("name=\"patient\""),
        "{}",
        unknown.body
    );
    assert!(
        !unknown.body.contains("name=\"decision\""),
        "{}",
        unknown.body
    );

    // A second browser with the stolen form fields is not signed in.
    let approval = browser.choose_patient(&picker, &hearth.sample.patient.id);
    let thief = Browser::new().post_form(
        &decision_url,
        &[
            ("request", &pending),
            ("csrf", &csrf),
            ("decision", "approve"),
        ],
    );
    assert!(
        thief.header("location").is_none(),
        "{:?}",
        thief.header("location")
    );

    let redirect = browser.decide(&approval, "approve").redirect();
    assert!(redirect.param("code").is_some(), "{}", redirect.location);
    let replay = browser.decide(&approval, "approve");
    assert_error_page(&replay);
    assert_eq!(hearth.grants(PUBLIC_APP).as_array().map(Vec::len), Some(1));
}

#[test]
fn token_rejects_malformed_requests() {
    let hearth = Hearth::start();
    let (request, code) = code_for(&hearth, PUBLIC_APP);
    let grants = hearth.all_grants();
    let url = format!("{}/token", hearth.default_site.auth);
    let valid = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", request.pkce.verifier.as_str()),
        ("client_id", PUBLIC_APP),
    ];
    let body = form(&valid);
    let as_json: Value = valid
        .iter()
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect::<serde_json::Map<String, Value>>()
        .into();

    let bodies: [(&str, Vec<u8>, &str); 6] = [
        ("application/json", as_json.to_string().into_bytes(), "JSON"),
        ("text/plain", body.clone().into_bytes(), "text/plain"),
        (
            "multipart/form-data",
            body.clone().into_bytes(),
            "multipart",
        ),
        (
            "application/x-www-form-urlencoded",
            Vec::new(),
            "an empty form",
        ),
        (
            "application/x-www-form-urlencoded",
            vec![0xff, 0xfe, b'=', 0xff, b'&', 0x80],
            "bytes that are not UTF-8",
        ),
        (
            "application/x-www-form-urlencoded",
            b"grant_type=%zz%&&=&code".to_vec(),
            "broken percent escapes",
        ),
    ];
    for (content_type, bytes, what) in bodies {
        let reply = hearth.post_raw(&url, content_type, bytes);
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_oauth_error(&reply, 400, "invalid_request");
    }
    let no_type = Reply::send(
        reqwest::blocking::Client::new()
            .post(&url)
            .body(body.clone()),
    );
    assert_oauth_error(&no_type, 400, "invalid_request");

    let public = ClientAuth::public(PUBLIC_APP);
    let without = |name: &str| -> Vec<(&str, &str)> {
        valid[..4]
            .iter()
            .filter(|(n, _)| *n != name)
            .cloned()
            .collect()
    };
    for name in ["grant_type", "code"] {
        let reply = hearth.token(&public, &without(name));
        assert_oauth_error(&reply, 400, "invalid_request");
    }
    for name in ["grant_type", "code", "code_verifier", "redirect_uri"] {
        let mut pairs = valid[..4].to_vec();
        let value = pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_default();
        pairs.push((name, value));
        let reply = hearth.token(&public, &pairs);
        assert_eq!(reply.status, 400, "repeated {name}: {}", reply.body);
        assert_oauth_error(&reply, 400, "invalid_request");
    }
    let mut twice = valid.to_vec();
    twice.push(("client_id", PUBLIC_APP));
    assert_oauth_error(
        &hearth.token(&ClientAuth::Anonymous, &twice),
        400,
        "invalid_request",
    );

    let mut garbage = valid[..4].to_vec();
    garbage[1] = ("code", "not-a-code");
    assert_oauth_error(&hearth.token(&public, &garbage), 400, "invalid_grant");
    for grant_type in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        let reply = hearth.token(
            &public,
            &[("grant_type", grant_type), ("scope", "patient/*.rs")],
        );
        assert_oauth_error(&reply, 400, "unsupported_grant_type");
        let anonymous = hearth.token(&ClientAuth::Anonymous, &[("grant_type", grant_type)]);
        assert_oauth_error(&anonymous, 400, "unsupported_grant_type");
    }
    let credentials = hearth.token(
        &public,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
        ],
    );
    assert_oauth_error(&credentials, 400, "unauthorized_client");
    let refresh = hearth.refresh(&public, "not-a-refresh-token", None);
    assert_oauth_error(&refresh, 400, "invalid_grant");
    let no_refresh = hearth.token(&public, &[("grant_type", "refresh_token")]);
    assert_oauth_error(&no_refresh, 400, "invalid_request");

    assert_eq!(
        hearth.all_grants(),
        grants,
        "a rejected request changed grants"
    );
    let tokens = hearth.exchange(&public, &request, &code);
    assert!(!tokens.access.is_empty());
}

#[test]
fn client_credentials_rejects_bad_scopes() {
    let hearth = Hearth::start();
    let service = hearth.basic(SERVICE_APP);
    let grant = |scope: Option<&str>| {
        let mut pairs = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            pairs.push(("scope", scope));
        }
        hearth.token(&service, &pairs)
    };

    for scope in [
        None,
        Some("patient/*.rs"),
        Some("user/Patient.rs"),
        Some("system/Patient.c"),
    ] {
        assert_oauth_error(&grant(scope), 400, "invalid_scope");
    }

    let reply = grant(Some("system/Patient.rs"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let read = hearth.fhir(&token, &format!("Patient/{}", hearth.sample.patient.id));
    assert_eq!(read.status, 200, "{}", read.body);
}

#[test]
fn introspection_rejects_malformed_requests() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);
    let site = &hearth.default_site;
    let url = format!("{}/introspect", site.auth);
    let caller = hearth.introspector();
    let introspect = |pairs: &[(&str, &str)]| hearth.post_form(&url, &caller, pairs);

    let as_json = Reply::send(
        reqwest::blocking::Client::new()
            .post(&url)
            .header(
                "Authorization",
                crate::support::basic_header(SERVICE_APP, &hearth.secret(SERVICE_APP)),
            )
            .header("Content-Type", "application/json")
            .body(json!({"token": tokens.access}).to_string()),
    );
    assert_oauth_error(&as_json, 400, "invalid_request");
    assert_oauth_error(&introspect(&[]), 400, "invalid_request");
    let twice = introspect(&[("token", &tokens.access), ("token", &tokens.access)]);
    assert_oauth_error(&twice, 400, "invalid_request");
    let unknown_caller = ClientAuth::Basic("no-such-app".to_string(), "x".to_string());
    let reply = hearth.introspect_at(site, &unknown_caller, &tokens.access);
    assert_oauth_error(&reply, 401, "invalid_client");

    for forged in forged_tokens(&hearth, &tokens.access) {
        assert_eq!(
            hearth.introspect(&forged),
            json!({"active": false}),
            "{forged}"
        );
    }
}

#[test]
fn revocation_rejects_malformed_requests() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);
    let url = format!("{}/revoke", hearth.default_site.auth);
    let public = ClientAuth::public(PUBLIC_APP);
    let access = tokens.access.as_str();

    let as_json = hearth.post_raw(
        &url,
        "application/json",
        json!({"token": access, "client_id": PUBLIC_APP}).to_string(),
    );
    assert_oauth_error(&as_json, 400, "invalid_request");
    assert_oauth_error(
        &hearth.post_form(&url, &public, &[]),
        400,
        "invalid_request",
    );
    let twice = hearth.post_form(&url, &public, &[("token", access), ("token", access)]);
    assert_oauth_error(&twice, 400, "invalid_request");
    let hint = hearth.post_form(
        &url,
        &public,
        &[("token", access), ("token_type_hint", "id_token")],
    );
    assert_oauth_error(&hint, 400, "unsupported_token_type");
    let anonymous = hearth.post_form(&url, &ClientAuth::Anonymous, &[("token", access)]);
    assert_oauth_error_in(
        &anonymous,
        &[400, 401],
        &["invalid_request", "invalid_client"],
    );
    let wrong_secret = ClientAuth::Basic(BASIC_APP.to_string(), "wrong".to_string());
    let reply = hearth.post_form(&url, &wrong_secret, &[("token", access)]);
    assert_oauth_error(&reply, 401, "invalid_client");

    // RFC 7009: unknown tokens and other clients' tokens get 200 and change nothing.
    let unknown = hearth.post_form(&url, &public, &[("token", "not-a-token")]);
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    let other_client = hearth.post_form(&url, &hearth.basic(BASIC_APP), &[("token", access)]);
    assert_eq!(other_client.status, 200, "{}", other_client.body);
    let refresh = tokens.refresh_token();
    let other_refresh = hearth.post_form(&url, &hearth.basic(BASIC_APP), &[("token", refresh)]);
    assert_eq!(other_refresh.status, 200, "{}", other_refresh.body);

    let read = hearth.fhir(access, &format!("Patient/{}", hearth.sample.patient.id));
    assert_eq!(
        read.status, 200,
        "a rejected revocation stopped the token: {}",
        read.body
    );
    assert_eq!(hearth.introspect(refresh)["active"], true);
}

/// Tokens that look like an access token but must not be accepted.
fn forged_tokens(hearth: &Hearth, access: &str) -> Vec<String> {
    let mut claims = jwt_claims(access);
    let mut other_patient = claims.clone();
    other_patient["patient"] = json!(hearth.sample.other.id);
    let mut wider = claims.clone();
    wider["scope"] = json!("user/*.cruds");
    claims["exp"] = json!(claims["exp"].as_i64().unwrap_or_default() + 3600);

    let header = jsonwebtoken::decode_header(access).expect("a JWS header");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(jwt_claims(access).to_string())
    );
    let mut foreign_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    foreign_header.kid = header.kid;
    let foreign = sign_es384(&foreign_header, &jwt_claims(access));
    let truncated = access[..access.len() - 10].to_string();

    vec![
        with_claims(access, &other_patient),
        with_claims(access, &wider),
        with_claims(access, &claims),
        unsigned,
        foreign,
        truncated,
        "not-a-jwt".to_string(),
        "a.b.c".to_string(),
    ]
}

#[test]
fn fhir_rejects_bad_bearer_tokens() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);
    let url = format!(
        "{}/Patient/{}",
        hearth.default_site.fhir, hearth.sample.patient.id
    );
    let client = reqwest::blocking::Client::new();
    let mut headers: Vec<String> = forged_tokens(&hearth, &tokens.access)
        .into_iter()
        .map(|t| format!("Bearer {t}"))
        .collect();
    headers.push("Bearer ".to_string());
    headers.push(crate::support::basic_header(PUBLIC_APP, "x"));
    headers.push(tokens.access.clone());

    let anonymous = Reply::send(client.get(&url));
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    for header in headers {
        let reply = Reply::send(client.get(&url).header("Authorization", &header));
        assert_eq!(reply.status, 401, "{header}: {}", reply.body);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }

    let read = hearth.fhir(
        &tokens.access,
        &format!("Patient/{}", hearth.sample.patient.id),
    );
    assert_eq!(read.status, 200, "{}", read.body);
}

#[test]
fn admin_api_rejects_bad_requests() {
    let hearth = Hearth::start();
    let before = apps(&hearth);
    let url = format!("{}/admin/apps", hearth.base_url());
    let app = json!({
        "client_id": "new-app",
        "name": "New app",
        "client_type": "public",
        "redirect_uris": [REDIRECT_URI],
        "scope": "patient/*.rs",
    });

    let anonymous = hearth.post_raw(&url, "application/json", app.to_string());
    assert_oauth_error(&anonymous, 401, "invalid_token");
    let wrong = Reply::send(
        reqwest::blocking::Client::new()
            .post(&url)
            .bearer_auth("wrong-admin-token")
            .header("Content-Type", "application/json")
            .body(app.to_string()),
    );
    assert_oauth_error(&wrong, 401, "invalid_token");

    let with = |name: &str, value: Value| {
        let mut changed = app.clone();
        changed[name] = value;
        changed.to_string()
    };
    let bodies = [
        ("{\"client_id\":".to_string(), "malformed JSON"),
        (with("unknown_field", json!(1)), "an unknown field"),
        (
            with("client_type", json!("trusted")),
            "an unknown client type",
        ),
        (
            with("grant_types", json!(["password"])),
            "an unknown grant type",
        ),
        (with("grant_types", json!([])), "no grant type"),
        (
            with("client_id", json!("has space")),
            "a client id with a space",
        ),
        (with("name", json!(" ")), "an empty name"),
        (
            with("name", json!("n".repeat(201))),
            "a name of 201 characters",
        ),
        (with("name", json!("New\napp")), "a name with a line break"),
        (with("scope", json!("")), "an empty scope"),
        (with("scope", json!("  ")), "a blank scope"),
        (
            with("scope", json!("patient/*.rs ".repeat(400))),
            "a scope of 5200 characters",
        ),
        (
            with("vendor", json!("v".repeat(201))),
            "a vendor of 201 characters",
        ),
    ];
    for (body, what) in bodies {
        let reply = hearth.admin_post_raw("/admin/apps", "application/json", &body);
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_oauth_error(&reply, 400, "invalid_request");
    }
    let long_uri = format!("https://app.example/{}", "p".repeat(2000));
    let redirects = [
        (json!(["http://app.example/cb"]), "plain http"),
        (json!(["https://app.example/cb#x"]), "a fragment"),
        (json!(["javascript:alert(1)"]), "a javascript: URI"),
        (json!(["data:text/html,hi"]), "a data: URI"),
        (json!(["app.example/cb"]), "a relative URI"),
        (json!([long_uri]), "a URI of 2020 characters"),
        (json!(vec![REDIRECT_URI; 21]), "21 redirect URIs"),
        (json!([]), "no redirect URI for a public client"),
    ];
    for (uris, what) in redirects {
        let reply = hearth.admin_post("/admin/apps", &with_json(&app, "redirect_uris", uris));
        assert_oauth_error(&reply, 400, "invalid_redirect_uri");
        assert!(reply.body.contains("redirect"), "{what}: {}", reply.body);
    }
    let no_redirects =
        hearth.admin_post("/admin/apps", &with_json(&app, "redirect_uris", json!([])));
    assert!(
        no_redirects.body.contains("redirect_uris is empty"),
        "{}",
        no_redirects.body
    );
    let empty_scope = hearth.admin_post("/admin/apps", &with_value(&app, "scope", ""));
    assert!(
        empty_scope.body.contains("scope is empty"),
        "{}",
        empty_scope.body
    );
    let launch_uris = [
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://app.example/launch",
        "http://app.example/launch",
        "/launch.html",
        long_uri.as_str(),
    ];
    for uri in launch_uris {
        let reply = hearth.admin_post("/admin/apps", &with_value(&app, "launch_uri", uri));
        assert_oauth_error(&reply, 400, "invalid_client_metadata");
        assert!(reply.body.contains("launch_uri"), "{uri}: {}", reply.body);
    }
    for field in ["jwks_uri", "logo_uri", "client_uri"] {
        let reply = hearth.admin_post("/admin/apps", &with_value(&app, field, "javascript:x"));
        assert_oauth_error(&reply, 400, "invalid_client_metadata");
        assert!(reply.body.contains(field), "{field}: {}", reply.body);
    }
    let existing = hearth.admin_post("/admin/apps", &with_value(&app, "client_id", PUBLIC_APP));
    assert_eq!(existing.status, 409, "{}", existing.body);
    let unknown_site = hearth.admin_post("/admin/apps", &with_value(&app, "sites", "no-such-site"));
    assert_eq!(unknown_site.status, 400, "{}", unknown_site.body);
    let unknown_site = hearth.admin_post(
        "/admin/apps",
        &json!({
            "client_id": "new-app",
            "name": "New app",
            "client_type": "public",
            "redirect_uris": [REDIRECT_URI],
            "scope": "patient/*.rs",
            "sites": ["default", "no-such-site"],
        }),
    );
    assert_oauth_error(&unknown_site, 404, "invalid_request");

    let bad_site = hearth.admin_post("/admin/sites", &json!({"site_id": "a/b", "name": "x"}));
    assert_oauth_error(&bad_site, 400, "invalid_request");
    let unknown_backing = hearth.admin_post(
        "/admin/sites",
        &json!({"site_id": "north", "name": "North", "backing": "cache"}),
    );
    assert_oauth_error(&unknown_backing, 400, "invalid_request");
    assert!(
        unknown_backing.body.contains("repository, ehr"),
        "the error lists the allowed backings: {}",
        unknown_backing.body
    );
    let (status, _) = hearth
        .server
        .get_json(&format!("{}/admin/sites/north", hearth.base_url()));
    assert_eq!(status, 404, "a rejected site was created");
    let long_name = hearth.admin_post(
        "/admin/sites",
        &json!({"site_id": "north", "name": "n".repeat(201)}),
    );
    assert_oauth_error(&long_name, 400, "invalid_request");
    let unknown_grant = hearth.admin_delete("/admin/grants/no-such-grant");
    assert_eq!(unknown_grant.status, 404, "{}", unknown_grant.body);

    assert_eq!(
        apps(&hearth),
        before,
        "a rejected request registered an app"
    );
}

fn with_json(value: &Value, name: &str, replacement: Value) -> Value {
    let mut changed = value.clone();
    changed[name] = replacement;
    changed
}

fn users(hearth: &Hearth) -> Vec<String> {
    let (status, listed) = hearth
        .server
        .get_json(&format!("{}/admin/users", hearth.base_url()));
    assert_eq!(status, 200, "{listed}");
    listed["users"]
        .as_array()
        .expect("a list of users")
        .iter()
        .map(|u| u["username"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn admin_api_checks_users_before_writing() {
    let hearth = Hearth::start();
    let before = users(&hearth);
    let user = |changes: Value| {
        let mut body = json!({"username": "site-keeper", "password": "a long password"});
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        hearth.admin_post("/admin/users", &body)
    };

    let unknown_site = user(json!({"roles": ["site-admin"], "site_id": "no-such-site"}));
    assert_oauth_error(&unknown_site, 404, "invalid_request");
    assert!(
        unknown_site.body.contains("no-such-site"),
        "{}",
        unknown_site.body
    );
    let cases = [
        (
            json!({"roles": ["site-admin"]}),
            "a site-admin without a site",
        ),
        (
            json!({"site_id": "default"}),
            "a site without the site-admin role",
        ),
        (
            json!({"username": "u".repeat(201)}),
            "a username of 201 characters",
        ),
        (
            json!({"display_name": "d".repeat(201)}),
            "a display name of 201 characters",
        ),
        (
            json!({"password": "p".repeat(1025)}),
            "a password of 1025 bytes",
        ),
    ];
    for (changes, what) in cases {
        let reply = user(changes);
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_oauth_error(&reply, 400, "invalid_request");
    }
    assert_eq!(users(&hearth), before, "a rejected request added a user");

    let keeper = user(json!({"roles": ["site-admin"], "site_id": "default"}));
    assert_eq!(keeper.status, 201, "{}", keeper.body);
    assert_eq!(keeper.json()["site_id"], "default");
}

#[test]
fn cli_rejects_unknown_sites_before_writing() {
    let hearth = Hearth::start();
    let before = apps(&hearth);
    // Runs the command line with a password on standard input, for `hearth users add`.
    let run = |args: &[&str]| {
        let mut child = std::process::Command::new(hearth_e2e::hearth_bin())
            .args(args)
            .arg("--url")
            .arg(hearth.base_url())
            .arg(format!("--admin-token={}", hearth.server.admin_token()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("hearth starts");
        let mut stdin = child.stdin.take().expect("a stdin pipe");
        std::io::Write::write_all(&mut stdin, b"a long password\n")
            .expect("the password is written");
        drop(stdin);
        child.wait_with_output().expect("hearth runs")
    };

    let app = run(&[
        "apps",
        "register",
        "--client-id",
        "cli-app",
        "--name",
        "CLI app",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        "launch/patient patient/*.rs",
        "--site",
        "default",
        "--site",
        "no-such-site",
    ]);
    assert!(
        !app.status.success(),
        "an app was registered at an unknown site"
    );
    let stderr = String::from_utf8_lossy(&app.stderr);
    assert!(stderr.contains("no site no-such-site"), "{stderr}");
    assert_eq!(apps(&hearth), before, "the rejected app was registered");

    let user = run(&[
        "users",
        "add",
        "--username",
        "cli-keeper",
        "--role",
        "site-admin",
        "--site",
        "no-such-site",
    ]);
    assert!(
        !user.status.success(),
        "a site admin of an unknown site was added"
    );
    let stderr = String::from_utf8_lossy(&user.stderr);
    assert!(stderr.contains("no site no-such-site"), "{stderr}");
    assert!(
        !users(&hearth).contains(&"cli-keeper".to_string()),
        "the rejected user was added"
    );
}

fn with_value(value: &Value, name: &str, replacement: &str) -> Value {
    let mut changed = value.clone();
    changed[name] = json!(replacement);
    changed
}
