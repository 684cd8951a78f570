//! Scope grammar at the authorize endpoint, and what each granted scope lets a token see
//! at the FHIR API.

use serde_json::Value;

use crate::support::{
    AuthRequest, Browser, DOCTOR, Hearth, PUBLIC_APP, assert_denied, assert_error_redirect,
    has_category, scope_set, subject_of,
};

/// Returns the ids of a list of resources, sorted.
fn ids(resources: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = resources
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

#[test]
fn v1_scopes_granted_as_requested() {
    let hearth = Hearth::start();
    let scope = "launch/patient patient/*.read offline_access";

    let tokens = hearth.patient_launch(scope);

    assert_eq!(tokens.scope(), scope_set(scope));
    assert!(
        tokens.refresh.is_some(),
        "offline_access gives a refresh token"
    );
    // `.read` is v2 `.rs`: the token reads and searches.
    let patient = &hearth.sample.patient;
    let read = hearth.fhir(&tokens.access, &format!("Patient/{}", patient.id));
    assert_eq!(read.status, 200, "{}", read.body);
    let observation = hearth.fhir(
        &tokens.access,
        &format!("Observation/{}", patient.observations[0]),
    );
    assert_eq!(observation.status, 200, "{}", observation.body);
    let found = hearth
        .search_all(
            &tokens.access,
            &format!("Observation?patient={}", patient.id),
        )
        .unwrap_or_else(|reply| panic!("search refused: {}", reply.body));
    assert_eq!(ids(&found), sorted(&patient.observations));
}

#[test]
fn v2_patient_scopes_are_granted() {
    let hearth = Hearth::start();
    let scope = "launch/patient patient/*.rs";

    let tokens = hearth.patient_launch(scope);

    assert_eq!(tokens.scope(), scope_set(scope));
    assert_eq!(
        tokens.response["patient"],
        hearth.sample.patient.id.as_str()
    );
}

#[test]
fn v2_user_scopes_are_granted() {
    let hearth = Hearth::start();

    let tokens = hearth.launch("user/*.cruds", DOCTOR, None);

    assert_eq!(tokens.scope(), vec!["user/*.cruds"]);
    assert!(
        tokens.response.get("patient").is_none(),
        "{}",
        tokens.response
    );
}

#[test]
fn malformed_scopes_are_dropped_whole() {
    let hearth = Hearth::start();
    let patient = &hearth.sample.patient;

    let tokens = hearth.patient_launch(
        "launch/patient patient/Patient.rs patient/*.search patient/Observation.rx",
    );

    assert_eq!(
        tokens.scope(),
        scope_set("launch/patient patient/Patient.rs")
    );
    let read = hearth.fhir(&tokens.access, &format!("Patient/{}", patient.id));
    assert_eq!(read.status, 200, "{}", read.body);
    // `patient/Observation.rx` must not be honoured as `.r`.
    let observation = hearth.fhir(
        &tokens.access,
        &format!("Observation/{}", patient.observations[0]),
    );
    assert_eq!(observation.status, 403, "{}", observation.body);
}

#[test]
fn only_malformed_scopes_get_invalid_scope() {
    let hearth = Hearth::start();
    let request = AuthRequest::new(
        &hearth.default_site,
        PUBLIC_APP,
        "patient/*.search patient/Observation.rx",
    );

    let reply = Browser::new().start(&request);

    assert_error_redirect(&reply, "invalid_scope", Some(request.state()));
}

#[test]
fn user_scope_searches_across_patients() {
    let hearth = Hearth::start();
    let sample = hearth.sample;

    let tokens = hearth.launch("user/Observation.rs", DOCTOR, None);
    assert!(
        tokens.response.get("patient").is_none(),
        "{}",
        tokens.response
    );

    let found = hearth
        .search_all(&tokens.access, "Observation")
        .unwrap_or_else(|reply| panic!("a user-scoped search was refused: {}", reply.body));
    let mut expected = sample.patient.observations.clone();
    expected.extend(sample.other.observations.iter().cloned());
    assert_eq!(ids(&found), sorted(&expected));

    let other = hearth
        .search_all(
            &tokens.access,
            &format!("Observation?patient={}", sample.other.id),
        )
        .unwrap_or_else(|reply| panic!("a user-scoped search was refused: {}", reply.body));
    assert_eq!(ids(&other), sorted(&sample.other.observations));
}

#[test]
fn patient_token_confined_to_its_patient() {
    let hearth = Hearth::start();
    let sample = hearth.sample;
    let (mine, theirs) = (&sample.patient, &sample.other);
    let tokens = hearth.patient_launch("launch/patient patient/*.rs");
    let token = tokens.access.as_str();

    let read = hearth.fhir(token, &format!("Patient/{}", mine.id));
    assert_eq!(read.status, 200, "{}", read.body);
    let own = hearth
        .search_all(token, &format!("Observation?patient={}", mine.id))
        .unwrap_or_else(|reply| panic!("own Observations refused: {}", reply.body));
    assert_eq!(ids(&own), sorted(&mine.observations));

    let other_patient = hearth.fhir(token, &format!("Patient/{}", theirs.id));
    assert_denied(&other_patient, "the other patient");
    let other_observation = hearth.fhir(token, &format!("Observation/{}", theirs.observations[0]));
    assert_denied(&other_observation, "the other patient's Observation");
    let other_encounter = hearth.fhir(token, &format!("Encounter/{}", theirs.encounter));
    assert_denied(&other_encounter, "the other patient's Encounter");

    let everything = hearth
        .search_all(token, "Observation")
        .unwrap_or_else(|reply| panic!("Observation search refused: {}", reply.body));
    assert_eq!(ids(&everything), sorted(&mine.observations));
    assert!(everything.iter().all(|o| subject_of(o) == mine.id));

    match hearth.search_all(token, &format!("Observation?patient={}", theirs.id)) {
        Ok(found) => assert_eq!(ids(&found), Vec::<String>::new()),
        Err(reply) => assert_eq!(reply.status, 403, "{}", reply.body),
    }
    let patients = hearth
        .search_all(token, "Patient")
        .unwrap_or_else(|reply| panic!("Patient search refused: {}", reply.body));
    assert_eq!(ids(&patients), vec![mine.id.clone()]);

    // Practitioners are outside the Patient compartment and stay readable.
    let practitioner = hearth.fhir(token, &format!("Practitioner/{}", sample.practitioner));
    assert_eq!(practitioner.status, 200, "{}", practitioner.body);
}

#[test]
fn v2_query_scope_limits_search() {
    let hearth = Hearth::start();
    let patient = &hearth.sample.patient;
    let scope = "launch/patient patient/Observation.rs?category=laboratory";

    let tokens = hearth.patient_launch(scope);

    assert_eq!(tokens.scope(), scope_set(scope));
    let found = hearth
        .search_all(
            &tokens.access,
            &format!("Observation?patient={}", patient.id),
        )
        .unwrap_or_else(|reply| panic!("laboratory search refused: {}", reply.body));
    assert!(
        found.iter().all(|o| has_category(o, "laboratory")),
        "a non-laboratory Observation was returned"
    );
    assert_eq!(ids(&found), sorted(&patient.laboratory));

    let lab = hearth.fhir(
        &tokens.access,
        &format!("Observation/{}", patient.laboratory[0]),
    );
    assert_eq!(lab.status, 200, "{}", lab.body);
    let vital = hearth.fhir(
        &tokens.access,
        &format!("Observation/{}", patient.not_laboratory[0]),
    );
    assert_denied(&vital, "a non-laboratory Observation");
}

#[test]
fn token_without_observation_scope_gets_403() {
    let hearth = Hearth::start();
    let patient = &hearth.sample.patient;

    let tokens = hearth.patient_launch("launch/patient patient/Patient.rs");

    let read = hearth.fhir(&tokens.access, &format!("Patient/{}", patient.id));
    assert_eq!(read.status, 200, "{}", read.body);
    let observation = hearth.fhir(
        &tokens.access,
        &format!("Observation/{}", patient.observations[0]),
    );
    assert_eq!(observation.status, 403, "{}", observation.body);
    let search = hearth.fhir(
        &tokens.access,
        &format!("Observation?patient={}", patient.id),
    );
    assert_eq!(search.status, 403, "{}", search.body);
}

// The same tests against an EHR-backed site whose upstream stores the sample.
through_proxy!(
    v1_scopes_granted_as_requested,
    v2_patient_scopes_are_granted,
    v2_user_scopes_are_granted,
    malformed_scopes_are_dropped_whole,
    only_malformed_scopes_get_invalid_scope,
    user_scope_searches_across_patients,
    patient_token_confined_to_its_patient,
    v2_query_scope_limits_search,
    token_without_observation_scope_gets_403,
);
