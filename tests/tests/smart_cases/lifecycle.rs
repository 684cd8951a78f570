//! Codes, refresh tokens and revocation: what stays valid after each step.

use serde_json::{Value, json};

use crate::support::{
    AuthRequest, Browser, ClientAuth, DOCTOR, Hearth, PUBLIC_APP, REDIRECT_URI, Tokens,
    assert_oauth_error, assert_token_dead, scope_set,
};

const OFFLINE: &str = "launch/patient patient/*.rs offline_access";

fn newest_grant(hearth: &Hearth) -> Value {
    let grants = hearth.grants(PUBLIC_APP);
    grants[0].clone()
}

fn assert_works(hearth: &Hearth, tokens: &Tokens) {
    let path = format!("Patient/{}", hearth.sample.patient.id);
    let reply = hearth.fhir(&tokens.access, &path);
    assert_eq!(
        reply.status, 200,
        "the access token does not work: {}",
        reply.body
    );
}

#[test]
fn code_works_once() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(&hearth.default_site, PUBLIC_APP, OFFLINE);
    let code = Browser::new()
        .authorize(&request, DOCTOR, Some(&hearth.sample.patient.id))
        .code();
    let client = ClientAuth::public(PUBLIC_APP);
    let tokens = hearth.exchange(&client, &request, &code);
    assert_works(&hearth, &tokens);

    let again = hearth.token(
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &request.pkce.verifier),
        ],
    );

    assert_oauth_error(&again, 400, "invalid_grant");
    assert_token_dead(&hearth, &tokens.access, "access token of a replayed code");
    let refresh = hearth.refresh(&client, tokens.refresh_token(), None);
    assert_oauth_error(&refresh, 400, "invalid_grant");
    assert_eq!(newest_grant(&hearth)["revoked"], true);
}

#[test]
fn refresh_keeps_standalone_patient() {
    let hearth = Hearth::start();
    let client = ClientAuth::public(PUBLIC_APP);
    let first = hearth.patient_launch(OFFLINE);
    assert_eq!(first.scope(), scope_set(OFFLINE));
    assert_eq!(first.response["patient"], hearth.sample.patient.id.as_str());

    let reply = hearth.refresh(&client, first.refresh_token(), None);
    let second = Tokens::from_response(&reply);

    assert_eq!(second.response["patient"], first.response["patient"]);
    assert_eq!(second.scope(), first.scope());
    assert_ne!(second.refresh_token(), first.refresh_token());
    assert_works(&hearth, &second);
}

#[test]
fn refresh_keeps_ehr_context() {
    let hearth = Hearth::start();
    let sample = hearth.sample;
    let fhir_context =
        json!([{"reference": format!("Observation/{}", sample.patient.laboratory[0])}]);
    let launch = hearth.create_launch(
        &hearth.default_site,
        &json!({
            "client_id": PUBLIC_APP,
            "patient": sample.patient.id,
            "encounter": sample.patient.encounter,
            "fhirContext": fhir_context,
        }),
    );
    let request = AuthRequest::new(
        &hearth.default_site,
        PUBLIC_APP,
        "launch launch/patient patient/*.rs offline_access",
    )
    .set("launch", &launch);
    let code = Browser::new().authorize(&request, DOCTOR, None).code();
    let client = ClientAuth::public(PUBLIC_APP);
    let first = hearth.exchange(&client, &request, &code);

    let second = Tokens::from_response(&hearth.refresh(&client, first.refresh_token(), None));

    for name in ["patient", "encounter", "fhirContext"] {
        assert!(
            !first.response[name].is_null(),
            "{name} missing: {}",
            first.response
        );
        assert_eq!(
            second.response[name], first.response[name],
            "{name} after refresh"
        );
    }
    assert_eq!(second.response["patient"], sample.patient.id.as_str());
    assert_eq!(
        second.response["encounter"],
        sample.patient.encounter.as_str()
    );
    assert_eq!(second.response["fhirContext"], fhir_context);
}

#[test]
fn refresh_cannot_widen_scope() {
    let hearth = Hearth::start();
    let client = ClientAuth::public(PUBLIC_APP);
    let tokens = hearth
        .patient_launch("launch/patient patient/Observation.rs patient/Patient.rs offline_access");
    let refresh = tokens.refresh_token();

    for wider in [
        "patient/*.rs",
        "user/Observation.rs",
        "patient/Observation.cruds",
        "patient/Observation.rs patient/Condition.rs",
        "patient/Observation.rs openid",
    ] {
        let reply = hearth.refresh(&client, refresh, Some(wider));
        assert_oauth_error(&reply, 400, "invalid_scope");
    }

    let narrower =
        Tokens::from_response(&hearth.refresh(&client, refresh, Some("patient/Observation.rs")));
    assert_eq!(narrower.scope(), vec!["patient/Observation.rs"]);
    assert_eq!(
        narrower.response["patient"],
        hearth.sample.patient.id.as_str()
    );
}

#[test]
fn rotated_refresh_token_is_single_use() {
    let hearth = Hearth::start();
    let client = ClientAuth::public(PUBLIC_APP);
    let first = hearth.patient_launch(OFFLINE);
    let second = Tokens::from_response(&hearth.refresh(&client, first.refresh_token(), None));
    assert_works(&hearth, &second);

    let replay = hearth.refresh(&client, first.refresh_token(), None);
    assert_oauth_error(&replay, 400, "invalid_grant");

    // Presenting the rotated token revoked the grant, so its newest tokens stop too.
    let next = hearth.refresh(&client, second.refresh_token(), None);
    assert_oauth_error(&next, 400, "invalid_grant");
    assert_token_dead(&hearth, &second.access, "access token after refresh reuse");
    assert_token_dead(
        &hearth,
        &first.access,
        "first access token after refresh reuse",
    );
    assert_eq!(newest_grant(&hearth)["revoked"], true);
}

#[test]
fn revoking_refresh_token_stops_grant() {
    let hearth = Hearth::start();
    let client = ClientAuth::public(PUBLIC_APP);
    let tokens = hearth.patient_launch(OFFLINE);
    assert_works(&hearth, &tokens);

    let reply = hearth.revoke(&client, tokens.refresh_token());

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_token_dead(
        &hearth,
        &tokens.access,
        "access token after refresh revocation",
    );
    let refresh = hearth.refresh(&client, tokens.refresh_token(), None);
    assert_oauth_error(&refresh, 400, "invalid_grant");
    assert_eq!(
        hearth.introspect(tokens.refresh_token()),
        json!({"active": false})
    );
}

#[test]
fn revoking_access_token_stops_it() {
    let hearth = Hearth::start();
    let client = ClientAuth::public(PUBLIC_APP);
    let tokens = hearth.patient_launch(OFFLINE);
    assert_works(&hearth, &tokens);

    let reply = hearth.revoke(&client, &tokens.access);

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_token_dead(&hearth, &tokens.access, "revoked access token");
}

#[test]
fn admin_revocation_stops_token_at_once() {
    let hearth = Hearth::start();
    let client = ClientAuth::public(PUBLIC_APP);
    let tokens = hearth.patient_launch(OFFLINE);
    assert_works(&hearth, &tokens);
    let grant = newest_grant(&hearth);
    assert_eq!(grant["revoked"], false);
    let grant_id = grant["grant_id"].as_str().expect("grant_id");

    let reply = hearth.admin_delete(&format!("/admin/grants/{grant_id}"));

    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_token_dead(&hearth, &tokens.access, "access token of a revoked grant");
    let refresh = hearth.refresh(&client, tokens.refresh_token(), None);
    assert_oauth_error(&refresh, 400, "invalid_grant");
    assert_eq!(newest_grant(&hearth)["revoked"], true);
}

#[test]
fn deactivation_stops_token_at_once() {
    let hearth = Hearth::start();
    let tokens = hearth.patient_launch(OFFLINE);
    assert_works(&hearth, &tokens);

    let reply = hearth.admin_delete(&format!(
        "/admin/sites/{}/apps/{PUBLIC_APP}",
        hearth.default_site.id
    ));

    assert_eq!(reply.status, 204, "{}", reply.body);
    let path = format!("Patient/{}", hearth.sample.patient.id);
    let read = hearth.fhir(&tokens.access, &path);
    assert_eq!(
        read.status, 401,
        "a token of a deactivated app still works: {}",
        read.body
    );
}

// The same tests against an EHR-backed site whose upstream stores the sample.
through_proxy!(
    code_works_once,
    refresh_keeps_standalone_patient,
    refresh_keeps_ehr_context,
    refresh_cannot_widen_scope,
    rotated_refresh_token_is_single_use,
    revoking_refresh_token_stops_grant,
    revoking_access_token_stops_it,
    admin_revocation_stops_token_at_once,
    deactivation_stops_token_at_once,
);
