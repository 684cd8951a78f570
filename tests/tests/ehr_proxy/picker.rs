//! Launch context at the EHR-backed site: a practitioner's standalone launch with
//! `launch/patient` picks a patient the front finds at the EHR, the console's provider
//! portal lists the EHR's patients and encounters, and an EHR launch's patient and
//! encounter are checked at the EHR. The front's own repository is empty throughout, so
//! every patient it shows or accepts came from the upstream.

use serde_json::{Value, json};

use crate::browser::{AuthRequest, Browser, hidden_field};
use crate::front::{Front, send};
use crate::http::{Reply, Tokens, form};
use crate::support::{DOCTOR, PASSWORD, PUBLIC_APP, REDIRECT_URI};

const PICKER_SCOPE: &str = "launch/patient patient/*.rs openid fhirUser";

impl Front {
    fn register_doctor(&self) {
        let user = json!({
            "username": DOCTOR,
            "password": PASSWORD,
            "fhir_user": format!("Practitioner/{}", self.ehr.sample.practitioner),
            "display_name": DOCTOR,
        });
        self.admin_post("/admin/users", &user, 201);
    }

    /// Reads a resource straight from the EHR with its admin credential.
    fn ehr_resource(&self, path: &str) -> Value {
        let (status, body) = self
            .ehr
            .server
            .get_json(&format!("{}/{path}", self.ehr.default_site.fhir));
        assert_eq!(status, 200, "{body}");
        body
    }

    fn redeem(&self, request: &AuthRequest, code: &str) -> Tokens {
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", request.pkce.verifier.as_str()),
            ("client_id", PUBLIC_APP),
        ];
        let reply = Reply::send(
            self.client()
                .post(format!("{}/token", self.site.auth))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(&pairs)),
        );
        Tokens::from_response(&reply)
    }
}

/// Submits the picker's search form with `name`.
fn search_picker(browser: &Browser, front: &Front, page: &Reply, name: &str) -> Reply {
    let request = hidden_field(&page.body, "request");
    let csrf = hidden_field(&page.body, "csrf");
    browser.post_form(
        &format!("{}/authorize/patient", front.site.auth),
        &[
            ("request", request.as_str()),
            ("csrf", csrf.as_str()),
            ("name", name),
            ("search", "1"),
        ],
    )
}

fn choice(id: &str) -> String {
    format!("name=\"patient\" value=\"{id}\"")
}

#[test]
fn practitioner_picks_patient_from_ehr() {
    let front = Front::start();
    front.register_doctor();
    let patient = front.ehr.sample.patient.id.clone();
    let other = front.ehr.sample.other.id.clone();
    let record = front.ehr_resource(&format!("Patient/{patient}"));
    let family = record["name"][0]["family"]
        .as_str()
        .expect("the sample patient has a family name")
        .to_string();

    let (status, local) = front
        .server
        .get_json(&format!("{}/Patient?_count=1", front.server.fhir_url()));
    assert_eq!(status, 200, "{local}");
    assert!(
        local["entry"].as_array().is_none_or(Vec::is_empty),
        "the front's repository has patients: {local}"
    );

    let browser = Browser::new();
    let request = AuthRequest::new(&front.site, PUBLIC_APP, PICKER_SCOPE);
    let first = browser.start(&request);
    let picker = browser.sign_in(&first, DOCTOR);
    assert_eq!(picker.status, 200, "{}", picker.body);
    assert!(
        picker.body.contains("Choose the patient"),
        "no picker: {}",
        picker.body
    );
    assert!(
        picker.body.contains("name=\"patient\" value=\""),
        "the picker lists no EHR patient: {}",
        picker.body
    );

    let found = search_picker(&browser, &front, &picker, &family);
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(found.body.contains(&choice(&patient)), "{}", found.body);
    assert!(found.body.contains(&family), "{}", found.body);

    let nobody = search_picker(&browser, &front, &found, "Zzzyxxnobody");
    assert!(
        nobody.body.contains("No patient matches."),
        "{}",
        nobody.body
    );

    // An id the EHR does not know brings the picker back instead of the approval page.
    let unknown = browser.choose_patient(&found, "no-such-patient");
    assert!(
        unknown.body.contains("Choose the patient"),
        "an unknown patient was accepted: {}",
        unknown.body
    );

    let approval = browser.choose_patient(&unknown, &patient);
    assert!(
        approval.body.contains("name=\"decision\""),
        "no approval page: {}",
        approval.body
    );
    assert!(
        approval.body.contains(&family),
        "the approval page does not name the EHR patient: {}",
        approval.body
    );
    let redirect = browser.complete(approval, DOCTOR, None);
    let tokens = front.redeem(&request, &redirect.code());
    assert_eq!(
        tokens.response["patient"],
        patient.as_str(),
        "{}",
        tokens.response
    );

    let own = front.get(
        &front.site,
        &tokens.access,
        &format!("Patient/{patient}"),
        &[],
    );
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["id"], patient.as_str());
    let foreign = front.get(
        &front.site,
        &tokens.access,
        &format!("Patient/{other}"),
        &[],
    );
    assert_eq!(foreign.status, 404, "{}", foreign.body);
}

#[test]
fn ehr_launch_context_checked_at_ehr() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let encounters = front.ehr_resource(&format!("Encounter?patient={patient}&_count=1"));
    let encounter = encounters["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the sample patient has an encounter")
        .to_string();
    let launch = |body: Value| {
        send(
            front
                .client()
                .post(format!("{}/launch", front.site.auth))
                .bearer_auth(front.admin_token())
                .json(&body),
        )
    };

    let created = launch(json!({"patient": patient, "encounter": encounter}));
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.json()["launch"].is_string(), "{}", created.body);

    // The EHR's encounter of another patient is rejected.
    let foreign =
        launch(json!({"patient": patient, "encounter": front.ehr.sample.other.encounter}));
    assert_eq!(foreign.status, 400, "{}", foreign.body);
    assert_eq!(foreign.json()["error"], "invalid_request");
    assert!(
        foreign.body.contains(&format!("not of Patient/{patient}")),
        "{}",
        foreign.body
    );

    let missing = launch(json!({"patient": "no-such-patient"}));
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert_eq!(missing.json()["error"], "invalid_request");
    assert!(
        missing
            .body
            .contains("Patient/no-such-patient does not exist"),
        "{}",
        missing.body
    );

    // With the EHR stopped, the check cannot run: 503, not a launch with an unchecked patient.
    let pid = front.ehr.server.pid().to_string();
    let killed = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(&pid)
        .status()
        .expect("kill runs");
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let down = launch(json!({"patient": patient}));
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.json()["error"], "temporarily_unavailable");
}

/// A platform administrator of the front's console.
const CONSOLE_ADMIN: (&str, &str) = ("portal-admin", "a long portal password");

impl Front {
    /// Signs in to the console as [`CONSOLE_ADMIN`] and returns the session cookie pair.
    fn console_session(&self) -> String {
        let admin = json!({
            "username": CONSOLE_ADMIN.0,
            "password": CONSOLE_ADMIN.1,
            "roles": ["platform-admin"],
        });
        self.admin_post("/admin/users", &admin, 201);
        let sign_in = send(
            self.client()
                .get(format!("{}/console/sign-in", self.server.base_url)),
        );
        let form_cookie = sign_in
            .header("set-cookie")
            .and_then(|cookie| cookie.split(';').next())
            .expect("the sign-in form sets a cookie")
            .to_string();
        let (_, form_token) = form_cookie.split_once('=').expect("a cookie pair");
        let pairs = [
            ("username", CONSOLE_ADMIN.0),
            ("password", CONSOLE_ADMIN.1),
            ("signin", form_token),
        ];
        let signed_in = send(
            self.client()
                .post(format!("{}/console/sign-in", self.server.base_url))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Cookie", &form_cookie)
                .body(form(&pairs)),
        );
        assert_eq!(signed_in.status, 303, "console sign-in: {}", signed_in.body);
        signed_in
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|cookie| {
                cookie.starts_with("hearth_console=") && !cookie.starts_with("hearth_console=;")
            })
            .and_then(|cookie| cookie.split(';').next())
            .expect("a console session cookie")
            .to_string()
    }

    /// GETs the provider portal with `query` in the console session.
    fn portal(&self, session: &str, query: &[(&str, &str)]) -> Reply {
        let url =
            url::Url::parse_with_params(&format!("{}/console/portal", self.server.base_url), query)
                .expect("a portal URL");
        let page = send(self.client().get(url.as_str()).header("Cookie", session));
        assert_eq!(page.status, 200, "GET {url}: {}", page.body);
        page
    }
}

#[test]
fn provider_portal_searches_the_ehr() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let encounter = front.ehr.sample.patient.encounter.clone();
    let record = front.ehr_resource(&format!("Patient/{patient}"));
    let family = record["name"][0]["family"]
        .as_str()
        .expect("the sample patient has a family name")
        .to_string();
    let session = front.console_session();

    let found = front.portal(&session, &[("site", "ehr"), ("patient_name", &family)]);
    assert!(
        found.body.contains(&choice(&patient)),
        "the portal does not list the EHR's patient: {}",
        found.body
    );
    assert!(found.body.contains(&family), "{}", found.body);

    // The front's own repository is empty, so the same search at its default site finds
    // nobody.
    let local = front.portal(&session, &[("site", "default"), ("patient_name", &family)]);
    assert!(
        !local.body.contains(&choice(&patient)),
        "the default site listed a patient it does not store: {}",
        local.body
    );

    let chosen = front.portal(&session, &[("site", "ehr"), ("patient", &patient)]);
    assert!(
        chosen
            .body
            .contains(&format!("name=\"encounter\" value=\"{encounter}\"")),
        "the portal does not list the EHR's encounters of the patient: {}",
        chosen.body
    );
    assert!(
        chosen.body.contains(&family),
        "the launch context does not name the EHR's patient: {}",
        chosen.body
    );
    assert!(
        !chosen.body.contains(&format!("Patient/{patient}")),
        "the portal fell back to the patient's reference: {}",
        chosen.body
    );
}
