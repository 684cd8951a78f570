//! Token introspection (RFC 7662) with the SMART context fields.

use serde_json::json;

use crate::support::{
    ClientAuth, Hearth, PUBLIC_APP, SERVICE_APP, assert_oauth_error, jwt_claims, now_seconds,
    scope_set, unique,
};

const SCOPE: &str = "launch/patient patient/*.rs openid fhirUser offline_access";

#[test]
fn introspection_returns_launch_context() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);
    let id_token = tokens.response["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("openid fhirUser gives an id_token: {}", tokens.response));
    let id_claims = jwt_claims(id_token);

    let info = hearth.introspect(&tokens.access);

    assert_eq!(info["active"], true, "{info}");
    assert_eq!(
        scope_set(info["scope"].as_str().unwrap_or_default()),
        scope_set(SCOPE)
    );
    assert_eq!(info["client_id"], PUBLIC_APP);
    let exp = info["exp"]
        .as_i64()
        .unwrap_or_else(|| panic!("exp: {info}"));
    assert!(exp > now_seconds(), "exp {exp} has passed");
    assert_eq!(
        info["patient"],
        hearth.sample.patient.id.as_str(),
        "a bare id"
    );
    let fhir_user = format!(
        "{}/Practitioner/{}",
        hearth.default_site.fhir, hearth.sample.practitioner
    );
    assert_eq!(info["fhirUser"], fhir_user.as_str());
    assert_eq!(id_claims["fhirUser"], fhir_user.as_str());
    assert_eq!(info["iss"], hearth.default_site.auth.as_str());
    assert_eq!(info["iss"], id_claims["iss"]);
    assert_eq!(info["sub"], id_claims["sub"]);
}

#[test]
fn unknown_token_is_inactive() {
    let hearth = Hearth::start();

    let reply = hearth.introspect_at(
        &hearth.default_site,
        &hearth.introspector(),
        &unique("unknown-token"),
    );

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"active": false}));
}

#[test]
fn introspection_needs_authenticated_caller() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);
    let site = &hearth.default_site;

    let anonymous = hearth.introspect_at(site, &ClientAuth::Anonymous, &tokens.access);
    assert_oauth_error(&anonymous, 401, "invalid_client");

    // A public client cannot authenticate, so naming one is not enough.
    let public = hearth.introspect_at(site, &ClientAuth::public(PUBLIC_APP), &tokens.access);
    assert_eq!(public.status, 401, "{}", public.body);

    let wrong_secret = ClientAuth::Basic(SERVICE_APP.to_string(), "wrong".to_string());
    let wrong = hearth.introspect_at(site, &wrong_secret, &tokens.access);
    assert_oauth_error(&wrong, 401, "invalid_client");

    let url = format!("{}/introspect", site.auth);
    let reply = reqwest::blocking::Client::new()
        .post(url)
        .bearer_auth("not-a-token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={}", tokens.access))
        .send()
        .expect("hearth answers");
    assert_eq!(reply.status().as_u16(), 401);
}

#[test]
fn refresh_token_introspection_has_patient() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(SCOPE);

    let info = hearth.introspect(tokens.refresh_token());

    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], PUBLIC_APP);
    assert_eq!(info["patient"], hearth.sample.patient.id.as_str());
}

// The same tests against an EHR-backed site whose upstream stores the sample.
through_proxy!(
    introspection_returns_launch_context,
    unknown_token_is_inactive,
    introspection_needs_authenticated_caller,
    refresh_token_introspection_has_patient,
);
