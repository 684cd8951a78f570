use hearth_schemas::{
    AnyEvent, ApiCall, AuthorizationDenied, Backing, CacheStatus, GrantType, Surface, TokenIssued,
    TokenRefreshed, UserType,
};

use super::*;

const AT: Position = Position {
    partition: 0,
    offset: 42,
};

fn converter() -> Converter {
    Converter::new(Pseudonyms::from_key(b"0123456789abcdef0123456789abcdef"))
}

pub(crate) fn api_call(site: &str, status: i32) -> ApiCall {
    ApiCall {
        event_id: "e-1".to_string(),
        occurred_at: 1_700_000_000_123_456,
        request_id: "r-1".to_string(),
        site_id: Some(site.to_string()),
        surface: Surface::Fhir,
        method: "GET".to_string(),
        route: "/fhir/{type}/{id}".to_string(),
        interaction: Some("read".to_string()),
        operation: None,
        resource_type: Some("Patient".to_string()),
        status,
        latency_us: 1500,
        request_bytes: 0,
        response_bytes: 2048,
        client_id: Some("app".to_string()),
        grant_id: Some("g-1".to_string()),
        user_type: Some(UserType::Practitioner),
        user_id: Some("u-1".to_string()),
        patient: Some("p-1".to_string()),
        backing: None,
        cache: Some(CacheStatus::Hit),
        upstream_status: None,
        upstream_latency_us: None,
        error_code: None,
    }
}

fn token_issued(grant_id: &str) -> TokenIssued {
    TokenIssued {
        event_id: "t-1".to_string(),
        occurred_at: 1_700_000_000_000_000,
        token_id: "tok".to_string(),
        grant_id: Some(grant_id.to_string()),
        site_id: "default".to_string(),
        client_id: "app".to_string(),
        grant_type: GrantType::AuthorizationCode,
        scope: "patient/*.rs".to_string(),
        user_type: UserType::Patient,
        user_id: Some("u-2".to_string()),
        fhir_user: Some("Patient/p-2".to_string()),
        patient: Some("p-2".to_string()),
        encounter: None,
        expires_at: 1_700_000_300_000_000,
        refresh_token_hash: Some("hash-of-refresh-token".to_string()),
        refresh_expires_at: None,
        id_token_issued: true,
        assertion_jti: None,
    }
}

#[test]
fn api_call_keeps_dimensions_and_hashes_people() {
    let mut converter = converter();
    let Some(Converted::ApiCall(row)) =
        converter.convert(AT, AnyEvent::ApiCall(api_call("north", 200)))
    else {
        panic!("an ApiCall becomes an api_calls row");
    };
    assert_eq!(row.occurred_at, 1_700_000_000);
    assert_eq!(row.log_offset, 42);
    assert_eq!(row.site_id, "north");
    assert_eq!(row.interaction, "read");
    assert_eq!(row.resource_type, "Patient");
    assert_eq!(row.latency_us, 1500);
    assert_eq!(row.response_bytes, 2048);
    assert_eq!(row.cache, codes::cache(Some(CacheStatus::Hit)));
    assert_eq!(
        row.user_type,
        codes::user_type(Some(UserType::Practitioner))
    );
    let pseudonyms = converter.pseudonyms();
    assert_eq!(row.user_hash, pseudonyms.user(Some("u-1")));
    assert_eq!(row.patient_hash, pseudonyms.patient("north", Some("p-1")));
    assert_ne!(row.patient_hash, pseudonyms.patient("south", Some("p-1")));
}

#[test]
fn api_call_takes_backing_of_its_site() {
    let mut converter = converter();
    converter.remember_backing("ehr-site".to_string(), codes::backing(Some(Backing::Ehr)));
    let Some(Converted::ApiCall(row)) =
        converter.convert(AT, AnyEvent::ApiCall(api_call("ehr-site", 200)))
    else {
        panic!("expected an api_calls row");
    };
    assert_eq!(row.backing, codes::backing(Some(Backing::Ehr)));
    let Some(Converted::ApiCall(row)) =
        converter.convert(AT, AnyEvent::ApiCall(api_call("unknown", 200)))
    else {
        panic!("expected an api_calls row");
    };
    assert_eq!(
        row.backing, 0,
        "a site never registered has an unknown backing"
    );
}

#[test]
fn denial_keeps_reason_and_bounds_text() {
    let event = AuthorizationDenied {
        event_id: "d-1".to_string(),
        occurred_at: 1_700_000_000_000_000,
        site_id: "default".to_string(),
        client_id: Some("app".to_string()),
        user_id: Some("u-1".to_string()),
        error: "access_denied".to_string(),
        error_description: Some("x".repeat(5000)),
        scope_requested: Some("patient/*.rs".to_string()),
        redirect_uri: Some("https://app.example/cb".to_string()),
        launch_id: None,
    };
    let Some(Converted::Authorization(row)) =
        converter().convert(AT, AnyEvent::AuthorizationDenied(event))
    else {
        panic!("a denial becomes an authorizations row");
    };
    assert_eq!(row.outcome, codes::DENIED);
    assert_eq!(row.error, "access_denied");
    assert_eq!(row.error_description.len(), MAX_TEXT);
    assert_eq!(row.launch_type, codes::STANDALONE);
}

#[test]
fn token_row_carries_no_token_material() {
    let Some(Converted::TokenGrant(row)) =
        converter().convert(AT, AnyEvent::TokenIssued(token_issued("g-2")))
    else {
        panic!("a token becomes a token_grants row");
    };
    let text = format!("{row:?}");
    assert!(!text.contains("hash-of-refresh-token"), "{text}");
    assert!(!text.contains("tok\""), "{text}");
    assert!(!text.contains("p-2"), "{text}");
    assert_eq!(row.refresh_token_issued, 1);
    assert_eq!(row.id_token_issued, 1);
}

#[test]
fn refresh_takes_user_of_its_grant() {
    let mut converter = converter();
    converter.convert(AT, AnyEvent::TokenIssued(token_issued("g-2")));
    let refresh = TokenRefreshed {
        event_id: "r-1".to_string(),
        occurred_at: 1_700_000_100_000_000,
        grant_id: "g-2".to_string(),
        site_id: "default".to_string(),
        client_id: "app".to_string(),
        previous_refresh_hash: "old".to_string(),
        refresh_token_hash: "new".to_string(),
        token_id: "tok-2".to_string(),
        scope: "patient/*.rs".to_string(),
        expires_at: 1_700_000_400_000_000,
        refresh_expires_at: None,
        assertion_jti: None,
    };
    let Some(Converted::TokenGrant(row)) = converter.convert(AT, AnyEvent::TokenRefreshed(refresh))
    else {
        panic!("a refresh becomes a token_grants row");
    };
    assert_eq!(row.grant_type, codes::grant_type(GrantType::RefreshToken));
    assert_eq!(row.user_type, codes::user_type(Some(UserType::Patient)));
    assert_eq!(row.user_hash, converter.pseudonyms().user(Some("u-2")));
}

#[test]
fn bounded_cuts_at_char_boundary() {
    let text = "é".repeat(MAX_TEXT);
    let cut = bounded(text);
    assert!(cut.len() <= MAX_TEXT);
    assert!(cut.chars().all(|c| c == 'é'));
}
