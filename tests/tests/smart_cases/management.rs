//! The grant management page (`management_endpoint`): a user signs in, sees the apps they
//! allowed with scopes and times, and revokes a grant, which stops its tokens at once.

use crate::support::{
    Browser, DOCTOR, Hearth, PASSWORD, PATIENT_USER, PUBLIC_APP, Reply, assert_token_dead,
    hidden_field,
};

const SCOPE: &str = "launch/patient patient/*.rs offline_access";

fn sign_in(browser: &Browser, manage: &str, username: &str) -> Reply {
    let page = browser.get(manage);
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden_field(&page.body, "csrf");
    browser.post_form(
        &format!("{manage}/login"),
        &[
            ("csrf", &csrf),
            ("username", username),
            ("password", PASSWORD),
        ],
    )
}

#[test]
fn user_lists_and_revokes_grants() {
    let hearth = Hearth::start();
    let (status, config) = hearth.server.get_json(&format!(
        "{}/.well-known/smart-configuration",
        hearth.default_site.fhir
    ));
    assert_eq!(status, 200);
    let manage = config["management_endpoint"]
        .as_str()
        .expect("management_endpoint")
        .to_string();
    assert_eq!(manage, format!("{}/manage", hearth.default_site.auth));
    hearth.launch(SCOPE, PATIENT_USER, None);
    let tokens = hearth.patient_launch(SCOPE);
    let grant_id = hearth.grants(PUBLIC_APP)[0]["grant_id"]
        .as_str()
        .expect("grant_id")
        .to_string();

    let browser = Browser::new();
    let signed_in = sign_in(&browser, &manage, DOCTOR);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let page = browser.get(&manage);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&grant_id), "{}", page.body);
    assert!(page.body.contains("patient/*.rs"), "{}", page.body);
    assert!(page.body.contains("Allowed 20"), "{}", page.body);

    // Another user sees none of the doctor's grants.
    let other = Browser::new();
    sign_in(&other, &manage, PATIENT_USER);
    let other_page = other.get(&manage);
    assert!(!other_page.body.contains(&grant_id), "{}", other_page.body);
    let csrf = hidden_field(&other_page.body, "csrf");
    let refused = other.post_form(
        &format!("{manage}/revoke"),
        &[("csrf", &csrf), ("grant_id", &grant_id)],
    );
    assert_eq!(refused.status, 404, "{}", refused.body);

    // A revoke without the page's CSRF value is rejected.
    let forged = browser.post_form(
        &format!("{manage}/revoke"),
        &[("csrf", "forged"), ("grant_id", &grant_id)],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    let live = hearth.fhir(
        &tokens.access,
        &format!("Patient/{}", hearth.sample.patient.id),
    );
    assert_eq!(
        live.status, 200,
        "a forged revoke took effect: {}",
        live.body
    );

    let csrf = hidden_field(&page.body, "csrf");
    let revoked = browser.post_form(
        &format!("{manage}/revoke"),
        &[("csrf", &csrf), ("grant_id", &grant_id)],
    );
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_token_dead(&hearth, &tokens.access, "the revoked grant's access token");
    let refresh = hearth.refresh(
        &crate::support::ClientAuth::public(PUBLIC_APP),
        tokens.refresh_token(),
        None,
    );
    assert_eq!(refresh.status, 400, "{}", refresh.body);
    let after = browser.get(&manage);
    assert!(after.body.contains("Revoked:"), "{}", after.body);
    assert!(after.body.contains("(user)"), "{}", after.body);
}

#[test]
fn sign_in_needs_form_csrf() {
    let hearth = Hearth::start();
    let manage = format!("{}/manage", hearth.default_site.auth);
    let browser = Browser::new();

    let reply = browser.post_form(
        &format!("{manage}/login"),
        &[
            ("csrf", "guess"),
            ("username", DOCTOR),
            ("password", PASSWORD),
        ],
    );

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("The sign-in form expired"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .header("set-cookie")
            .is_none_or(|c| !c.contains("hearth_session"))
    );
}
