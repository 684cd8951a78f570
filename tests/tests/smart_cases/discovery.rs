//! Discovery: the SMART configuration, the CapabilityStatement, and a check that each
//! advertised capability works end to end.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};

use crate::support::{
    AuthRequest, BASIC_APP, Browser, ClientAuth, DOCTOR, Hearth, JWT_APP, PUBLIC_APP, Tokens,
    anonymous_get, assert_denied, client_assertion, scope_set,
};

fn smart_configuration(hearth: &Hearth) -> Value {
    let url = format!(
        "{}/.well-known/smart-configuration",
        hearth.default_site.fhir
    );
    let reply = anonymous_get(&url, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not an array"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default())
        .collect()
}

#[test]
fn smart_configuration_is_public_and_complete() {
    let hearth = Hearth::start();
    let url = format!(
        "{}/.well-known/smart-configuration",
        hearth.default_site.fhir
    );

    let reply = anonymous_get(&url, &[("Origin", "https://app.example")]);

    assert_eq!(reply.status, 200, "{}", reply.body);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let allowed = reply.header("access-control-allow-origin");
    assert!(
        matches!(allowed, Some("*") | Some("https://app.example")),
        "CORS header: {allowed:?}"
    );
    let config = reply.json();
    let auth = &hearth.default_site.auth;
    assert_eq!(config["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(config["issuer"], auth.as_str());
    for (field, path) in [
        ("authorization_endpoint", "authorize"),
        ("token_endpoint", "token"),
        ("introspection_endpoint", "introspect"),
        ("revocation_endpoint", "revoke"),
        ("management_endpoint", "manage"),
        ("jwks_uri", "jwks"),
    ] {
        assert_eq!(config[field], format!("{auth}/{path}").as_str(), "{field}");
    }
    let methods = strings(&config["token_endpoint_auth_methods_supported"]);
    assert!(methods.contains(&"private_key_jwt"), "{methods:?}");
    let algorithms = strings(&config["token_endpoint_auth_signing_alg_values_supported"]);
    assert!(algorithms.contains(&"RS384"), "{algorithms:?}");
    assert!(algorithms.contains(&"ES384"), "{algorithms:?}");
    assert!(!strings(&config["capabilities"]).is_empty());

    let jwks = anonymous_get(config["jwks_uri"].as_str().unwrap_or_default(), &[]);
    assert_eq!(jwks.status, 200, "{}", jwks.body);
    assert!(!strings_of_keys(&jwks.json()).is_empty());
}

fn strings_of_keys(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn smart_configuration_answers_cors_preflight() {
    let hearth = Hearth::start();
    let url = format!(
        "{}/.well-known/smart-configuration",
        hearth.default_site.fhir
    );

    let response = reqwest::blocking::Client::new()
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .expect("hearth answers");

    assert!(response.status().is_success(), "{}", response.status());
    assert!(
        response
            .headers()
            .contains_key("access-control-allow-origin"),
        "{:?}",
        response.headers()
    );
}

#[test]
fn metadata_is_public_with_oauth_uris() {
    let hearth = Hearth::start();
    let config = smart_configuration(&hearth);

    let reply = anonymous_get(&format!("{}/metadata", hearth.default_site.fhir), &[]);

    assert_eq!(reply.status, 200, "{}", reply.body);
    let statement = reply.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    let security = &statement["rest"][0]["security"];
    let codes: Vec<&Value> = security["service"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["coding"].as_array().into_iter().flatten())
        .collect();
    assert!(
        codes.iter().any(|c| c["code"] == "SMART-on-FHIR"
            && c["system"] == "http://terminology.hl7.org/CodeSystem/restful-security-service"),
        "{security}"
    );
    let oauth_uris = security["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        })
        .unwrap_or_else(|| panic!("no oauth-uris extension: {security}"));
    let uri = |name: &str| {
        oauth_uris["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == name)
            .map(|e| e["valueUri"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(uri("authorize"), config["authorization_endpoint"]);
    assert_eq!(uri("token"), config["token_endpoint"]);
}

/// A check that one capability works; it panics when it does not.
type CapabilityCheck = fn(&Hearth);

const CHECKS: &[(&str, CapabilityCheck)] = &[
    ("launch-ehr", check_ehr_launch),
    ("launch-standalone", check_standalone_launch),
    ("authorize-post", check_authorize_post),
    ("client-public", check_public_client),
    ("client-confidential-symmetric", check_symmetric_client),
    ("client-confidential-asymmetric", check_asymmetric_client),
    ("sso-openid-connect", check_openid_connect),
    ("context-passthrough-banner", check_banner),
    ("context-passthrough-style", check_style),
    ("context-ehr-patient", check_ehr_patient),
    ("context-ehr-encounter", check_ehr_encounter),
    ("context-standalone-patient", check_standalone_patient),
    ("permission-offline", check_offline),
    ("permission-online", check_online),
    ("permission-patient", check_patient_permission),
    ("permission-user", check_user_permission),
    ("permission-v1", check_v1),
    ("permission-v2", check_v2),
];

#[test]
fn every_listed_capability_works() {
    let hearth = Hearth::start();
    let config = smart_configuration(&hearth);
    let mut failed = Vec::new();

    for capability in strings(&config["capabilities"]) {
        let Some((_, check)) = CHECKS.iter().find(|(name, _)| *name == capability) else {
            failed.push(format!("{capability} (no check exists)"));
            continue;
        };
        if catch_unwind(AssertUnwindSafe(|| check(&hearth))).is_err() {
            failed.push(capability.to_string());
        }
    }

    assert!(
        failed.is_empty(),
        "capabilities that do not work: {failed:?}"
    );
}

fn patient_path(hearth: &Hearth) -> String {
    format!("Patient/{}", hearth.sample.patient.id)
}

fn assert_reads_patient(hearth: &Hearth, tokens: &Tokens) {
    let reply = hearth.fhir(&tokens.access, &patient_path(hearth));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Runs an EHR launch of the public app with the full context and returns its tokens.
fn ehr_launch(hearth: &Hearth) -> Tokens {
    let patient = &hearth.sample.patient;
    let launch = hearth.create_launch(
        &hearth.default_site,
        &json!({
            "client_id": PUBLIC_APP,
            "patient": patient.id,
            "encounter": patient.encounter,
            "need_patient_banner": true,
            "smart_style_url": "https://ehr.example/style.json",
        }),
    );
    let request = AuthRequest::new(
        &hearth.default_site,
        PUBLIC_APP,
        "launch patient/*.rs openid fhirUser",
    )
    .set("launch", &launch);
    let code = Browser::new().authorize(&request, DOCTOR, None).code();
    hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &code)
}

fn check_ehr_launch(hearth: &Hearth) {
    let tokens = ehr_launch(hearth);
    assert!(tokens.scope().contains(&"launch".to_string()));
    assert_reads_patient(hearth, &tokens);
}

fn check_standalone_launch(hearth: &Hearth) {
    let tokens = hearth.patient_launch("launch/patient patient/*.rs");
    assert_reads_patient(hearth, &tokens);
}

fn check_authorize_post(hearth: &Hearth) {
    let request = AuthRequest::new(
        &hearth.default_site,
        PUBLIC_APP,
        "launch/patient patient/*.rs",
    );
    let browser = Browser::new();
    let first = browser.start_post(&request);
    let code = browser
        .complete(first, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    let tokens = hearth.exchange(&ClientAuth::public(PUBLIC_APP), &request, &code);
    assert_reads_patient(hearth, &tokens);
}

fn check_public_client(hearth: &Hearth) {
    check_standalone_launch(hearth);
}

/// Runs a standalone launch of a confidential app that exchanges its code with `client`.
fn confidential_launch(hearth: &Hearth, client_id: &str, client: &ClientAuth) -> Tokens {
    let request = AuthRequest::new(
        &hearth.default_site,
        client_id,
        "launch/patient patient/*.rs",
    );
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    hearth.exchange(client, &request, &code)
}

fn check_symmetric_client(hearth: &Hearth) {
    let tokens = confidential_launch(hearth, BASIC_APP, &hearth.basic(BASIC_APP));
    assert_reads_patient(hearth, &tokens);
}

fn check_asymmetric_client(hearth: &Hearth) {
    let token_url = format!("{}/token", hearth.default_site.auth);
    let client = ClientAuth::Assertion(JWT_APP.to_string(), client_assertion(&token_url));
    let tokens = confidential_launch(hearth, JWT_APP, &client);
    assert_reads_patient(hearth, &tokens);
}

fn check_openid_connect(hearth: &Hearth) {
    let tokens = ehr_launch(hearth);
    let id_token = tokens.response["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {}", tokens.response));
    let config = smart_configuration(hearth);
    let jwks_url = config["jwks_uri"].as_str().unwrap_or_default();
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&anonymous_get(jwks_url, &[]).body).expect("a JWK set");
    let header = jsonwebtoken::decode_header(id_token).expect("a JWS header");
    let kid = header.kid.expect("the id token names its key");
    let jwk = jwks.find(&kid).expect("the id token's key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("a usable key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[PUBLIC_APP]);
    validation.set_issuer(&[hearth.default_site.auth.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .expect("the id token verifies")
        .claims;
    let fhir_user = format!(
        "{}/Practitioner/{}",
        hearth.default_site.fhir, hearth.sample.practitioner
    );
    assert_eq!(claims["fhirUser"], fhir_user.as_str());
}

fn check_banner(hearth: &Hearth) {
    assert_eq!(ehr_launch(hearth).response["need_patient_banner"], true);
}

fn check_style(hearth: &Hearth) {
    let tokens = ehr_launch(hearth);
    assert_eq!(
        tokens.response["smart_style_url"],
        "https://ehr.example/style.json"
    );
}

fn check_ehr_patient(hearth: &Hearth) {
    let tokens = ehr_launch(hearth);
    assert_eq!(
        tokens.response["patient"],
        hearth.sample.patient.id.as_str()
    );
}

fn check_ehr_encounter(hearth: &Hearth) {
    let tokens = ehr_launch(hearth);
    assert_eq!(
        tokens.response["encounter"],
        hearth.sample.patient.encounter.as_str()
    );
}

fn check_standalone_patient(hearth: &Hearth) {
    let tokens = hearth.launch(
        "launch/patient patient/*.rs",
        DOCTOR,
        Some(&hearth.sample.other.id),
    );
    assert_eq!(tokens.response["patient"], hearth.sample.other.id.as_str());
}

fn check_refresh(hearth: &Hearth, scope: &str) {
    let tokens = hearth.patient_launch(scope);
    let client = ClientAuth::public(PUBLIC_APP);
    let refreshed = Tokens::from_response(&hearth.refresh(&client, tokens.refresh_token(), None));
    assert_reads_patient(hearth, &refreshed);
}

fn check_offline(hearth: &Hearth) {
    check_refresh(hearth, "launch/patient patient/*.rs offline_access");
}

fn check_online(hearth: &Hearth) {
    check_refresh(hearth, "launch/patient patient/*.rs online_access");
}

fn check_patient_permission(hearth: &Hearth) {
    let tokens = hearth.patient_launch("launch/patient patient/*.rs");
    assert_reads_patient(hearth, &tokens);
    let other = hearth.fhir(
        &tokens.access,
        &format!("Patient/{}", hearth.sample.other.id),
    );
    assert_denied(&other, "the other patient");
}

fn check_user_permission(hearth: &Hearth) {
    let tokens = hearth.launch("user/*.rs", DOCTOR, None);
    for patient in [&hearth.sample.patient, &hearth.sample.other] {
        let reply = hearth.fhir(&tokens.access, &format!("Patient/{}", patient.id));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

fn check_v1(hearth: &Hearth) {
    let scope = "launch/patient patient/*.read";
    let tokens = hearth.patient_launch(scope);
    assert_eq!(tokens.scope(), scope_set(scope));
    assert_reads_patient(hearth, &tokens);
}

fn check_v2(hearth: &Hearth) {
    let scope = "launch/patient patient/Patient.r";
    let tokens = hearth.patient_launch(scope);
    assert_eq!(tokens.scope(), scope_set(scope));
    assert_reads_patient(hearth, &tokens);
}

// The same tests against an EHR-backed site whose upstream stores the sample.
through_proxy!(
    smart_configuration_is_public_and_complete,
    smart_configuration_answers_cors_preflight,
    metadata_is_public_with_oauth_uris,
    every_listed_capability_works,
);
