use hearth_schemas::*;

use crate::apply::apply_event;
use crate::{AuthOutcome, AuthStore, Refusal};

struct Fixture {
    _dir: tempfile::TempDir,
    conn: rusqlite::Connection,
    store: AuthStore,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.db");
    let conn = hearth_projection::open_connection(&path).unwrap();
    crate::schema::create(&conn).unwrap();
    // The app "app", enabled and active at the default site, written as rows because the
    // registration events carry much that these tests do not need.
    let app = crate::models::App {
        client_id: "app".to_string(),
        name: "App".to_string(),
        client_type: ClientType::Public,
        token_endpoint_auth_method: "none".to_string(),
        redirect_uris: vec!["https://app.example/cb".to_string()],
        launch_uri: None,
        scope: "launch/patient patient/*.rs offline_access".to_string(),
        grant_types: vec!["authorization_code".to_string()],
        client_secret_hash: None,
        jwks: None,
        jwks_uri: None,
        logo_uri: None,
        client_uri: None,
        contacts: Vec::new(),
        vendor: None,
        software_id: None,
        software_version: None,
        disabled: false,
        registered_at: 0,
        anonymous_jwks_uri: false,
    };
    conn.execute(
        "INSERT INTO apps (client_id, json) VALUES ('app', ?1)",
        [serde_json::to_string(&app).unwrap()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO activations (site_id, client_id) VALUES ('default', 'app')",
        [],
    )
    .unwrap();
    Fixture {
        store: AuthStore::open(&path),
        conn,
        _dir: dir,
    }
}

impl Fixture {
    fn apply(&self, event: impl Into<AnyEvent>) -> AuthOutcome {
        apply_event(&self.conn, &event.into()).unwrap()
    }
}

fn granted(grant_id: &str, code_hash: &str, expires_at: i64) -> AuthorizationGranted {
    AuthorizationGranted {
        event_id: format!("ev-{grant_id}"),
        occurred_at: 1_000,
        grant_id: grant_id.to_string(),
        site_id: "default".to_string(),
        client_id: "app".to_string(),
        user_id: Some("u1".to_string()),
        fhir_user: Some("Practitioner/p1".to_string()),
        user_type: UserType::Practitioner,
        scope_requested: "launch/patient patient/*.rs offline_access".to_string(),
        scope_granted: "launch/patient patient/*.rs offline_access".to_string(),
        launch_id: None,
        patient: Some("pat1".to_string()),
        encounter: None,
        fhir_context: None,
        need_patient_banner: None,
        smart_style_url: None,
        intent: None,
        tenant: None,
        custom_context: None,
        redirect_uri: "https://app.example/cb".to_string(),
        code_hash: code_hash.to_string(),
        code_expires_at: expires_at,
        code_challenge: Some("c".repeat(43)),
        code_challenge_method: Some("S256".to_string()),
        nonce: None,
        refresh_policy: RefreshPolicy::Offline,
        session_id: None,
    }
}

fn redeemed(grant_id: &str, code_hash: &str, at: i64) -> CodeRedeemed {
    CodeRedeemed {
        event_id: format!("redeem-{at}"),
        occurred_at: at,
        grant_id: grant_id.to_string(),
        code_hash: code_hash.to_string(),
        client_id: "app".to_string(),
        site_id: "default".to_string(),
        token_id: format!("tok-{at}"),
    }
}

fn issued(
    token_id: &str,
    grant_id: Option<&str>,
    refresh: Option<&str>,
    jti: Option<&str>,
) -> TokenIssued {
    TokenIssued {
        event_id: format!("issue-{token_id}"),
        occurred_at: 2_000,
        token_id: token_id.to_string(),
        grant_id: grant_id.map(str::to_string),
        site_id: "default".to_string(),
        client_id: "app".to_string(),
        grant_type: if grant_id.is_some() {
            GrantType::AuthorizationCode
        } else {
            GrantType::ClientCredentials
        },
        scope: "patient/*.rs".to_string(),
        user_type: UserType::Practitioner,
        user_id: None,
        fhir_user: None,
        patient: Some("pat1".to_string()),
        encounter: None,
        expires_at: 10_000_000,
        refresh_token_hash: refresh.map(str::to_string),
        refresh_expires_at: None,
        id_token_issued: false,
        assertion_jti: jti.map(str::to_string),
    }
}

fn refreshed(previous: &str, next: &str, token_id: &str) -> TokenRefreshed {
    TokenRefreshed {
        event_id: format!("refresh-{token_id}"),
        occurred_at: 3_000,
        grant_id: "g1".to_string(),
        site_id: "default".to_string(),
        client_id: "app".to_string(),
        previous_refresh_hash: previous.to_string(),
        refresh_token_hash: next.to_string(),
        token_id: token_id.to_string(),
        scope: "patient/*.rs".to_string(),
        expires_at: 10_000_000,
        refresh_expires_at: None,
        assertion_jti: None,
    }
}

#[test]
fn code_redeems_once_and_replay_revokes() {
    let f = fixture();
    f.apply(granted("g1", "h1", 5_000));
    assert_eq!(f.apply(redeemed("g1", "h1", 2_000)), AuthOutcome::Applied);
    f.apply(issued("tok-2000", Some("g1"), Some("r1"), None));
    assert!(f.store.token_is_live("tok-2000").unwrap());

    assert_eq!(
        f.apply(redeemed("g1", "h1", 2_500)),
        AuthOutcome::Refused(Refusal::CodeReplayed)
    );
    assert!(!f.store.grant_is_live("g1").unwrap());
    assert!(
        !f.store.token_is_live("tok-2000").unwrap(),
        "tokens of a replayed code stop working"
    );
}

#[test]
fn deactivation_stops_tokens_at_that_site() {
    let f = fixture();
    f.apply(issued("t1", None, None, Some("j1")));
    assert!(f.store.token_is_live("t1").unwrap());
    f.apply(AppDeactivated {
        event_id: "deactivate".to_string(),
        occurred_at: 3_000,
        site_id: "default".to_string(),
        client_id: "app".to_string(),
        actor: "admin".to_string(),
    });
    assert!(
        !f.store.token_is_live("t1").unwrap(),
        "a token stops working when its app is deactivated at its site"
    );
}

#[test]
fn disabling_app_stops_its_tokens() {
    let f = fixture();
    f.apply(issued("t1", None, None, Some("j1")));
    f.apply(AppDisabled {
        event_id: "disable".to_string(),
        occurred_at: 3_000,
        client_id: "app".to_string(),
        reason: None,
        actor: "admin".to_string(),
    });
    assert!(
        !f.store.token_is_live("t1").unwrap(),
        "a client_credentials token stops working when its app is disabled"
    );
}

#[test]
fn expired_or_wrong_code_is_refused() {
    let f = fixture();
    f.apply(granted("g1", "h1", 5_000));
    assert_eq!(
        f.apply(redeemed("g1", "other", 2_000)),
        AuthOutcome::Refused(Refusal::UnknownGrant)
    );
    assert_eq!(
        f.apply(redeemed("g1", "h1", 6_000)),
        AuthOutcome::Refused(Refusal::CodeExpired)
    );
    assert_eq!(
        f.apply(redeemed("nope", "h1", 2_000)),
        AuthOutcome::Refused(Refusal::UnknownGrant)
    );
}

#[test]
fn refresh_rotates_and_reuse_revokes() {
    let f = fixture();
    f.apply(granted("g1", "h1", 5_000));
    f.apply(redeemed("g1", "h1", 2_000));
    f.apply(issued("t1", Some("g1"), Some("r1"), None));

    assert_eq!(f.apply(refreshed("r1", "r2", "t2")), AuthOutcome::Applied);
    assert!(f.store.refresh_token("r2").unwrap().unwrap().current);
    assert!(!f.store.refresh_token("r1").unwrap().unwrap().current);
    let token = f.store.access_token("t2").unwrap().unwrap();
    assert_eq!(
        token.patient.as_deref(),
        Some("pat1"),
        "a refreshed token keeps the launch context"
    );

    assert_eq!(
        f.apply(refreshed("r1", "r3", "t3")),
        AuthOutcome::Refused(Refusal::RefreshReused)
    );
    assert!(!f.store.grant_is_live("g1").unwrap());
    assert!(!f.store.token_is_live("t2").unwrap());
    assert_eq!(
        f.apply(refreshed("r2", "r4", "t4")),
        AuthOutcome::Refused(Refusal::GrantRevoked)
    );
    assert_eq!(
        f.apply(refreshed("unknown", "r5", "t5")),
        AuthOutcome::Refused(Refusal::UnknownRefreshToken)
    );
}

#[test]
fn revoking_refresh_token_revokes_grant() {
    let f = fixture();
    f.apply(granted("g1", "h1", 5_000));
    f.apply(redeemed("g1", "h1", 2_000));
    f.apply(issued("t1", Some("g1"), Some("r1"), None));
    f.apply(TokenRevoked {
        event_id: "rev".to_string(),
        occurred_at: 4_000,
        token_id: None,
        token_hash: Some("r1".to_string()),
        token_kind: TokenKind::Refresh,
        grant_id: Some("g1".to_string()),
        client_id: "app".to_string(),
        reason: None,
        actor: "app".to_string(),
    });
    assert!(!f.store.grant_is_live("g1").unwrap());
    assert!(!f.store.token_is_live("t1").unwrap());
}

#[test]
fn client_assertion_id_is_single_use() {
    let f = fixture();
    assert_eq!(
        f.apply(issued("c1", None, None, Some("jti-1"))),
        AuthOutcome::Applied
    );
    assert!(f.store.token_is_live("c1").unwrap());
    assert_eq!(
        f.apply(issued("c2", None, None, Some("jti-1"))),
        AuthOutcome::Refused(Refusal::AssertionReplayed)
    );
    assert!(f.store.access_token("c2").unwrap().is_none());
}

#[test]
fn username_belongs_to_one_user() {
    let f = fixture();
    let user = |user_id: &str| UserRegistered {
        event_id: format!("u-{user_id}"),
        occurred_at: 1,
        user_id: user_id.to_string(),
        username: "drsmith".to_string(),
        password_hash: "$argon2id$...".to_string(),
        fhir_user: Some("Practitioner/p1".to_string()),
        display_name: None,
        roles: vec![],
        site_id: None,
        vendor: None,
        actor: "cli".to_string(),
    };
    assert_eq!(f.apply(user("u1")), AuthOutcome::Applied);
    assert_eq!(
        f.apply(user("u1")),
        AuthOutcome::Applied,
        "the same user may replace itself"
    );
    assert_eq!(
        f.apply(user("u2")),
        AuthOutcome::Refused(Refusal::UsernameTaken)
    );
    assert_eq!(
        f.store
            .user_by_username("drsmith")
            .unwrap()
            .unwrap()
            .registration
            .user_id,
        "u1"
    );
}

#[test]
fn refresh_assertion_id_is_single_use() {
    let f = fixture();
    f.apply(granted("g1", "h1", 5_000));
    f.apply(redeemed("g1", "h1", 2_000));
    f.apply(issued("t1", Some("g1"), Some("r1"), Some("jti-a")));

    let mut replayed = refreshed("r1", "r2", "t2");
    replayed.assertion_jti = Some("jti-a".to_string());
    assert_eq!(
        f.apply(replayed),
        AuthOutcome::Refused(Refusal::AssertionReplayed)
    );
    assert!(
        f.store.refresh_token("r1").unwrap().unwrap().current,
        "a refused refresh rotates nothing"
    );

    let mut fresh = refreshed("r1", "r2", "t2");
    fresh.assertion_jti = Some("jti-b".to_string());
    assert_eq!(f.apply(fresh), AuthOutcome::Applied);
}

#[test]
fn console_session_lives_until_sign_out() {
    let f = fixture();
    let signed_in = |hash: &str, at: i64, expires_at: i64| ConsoleSignedIn {
        event_id: format!("in-{hash}"),
        occurred_at: at,
        session_hash: hash.to_string(),
        user_id: "u1".to_string(),
        expires_at,
    };
    f.apply(signed_in("s1", 10, 100));
    assert_eq!(
        f.store.console_session("s1").unwrap(),
        Some(("u1".to_string(), 100))
    );

    f.apply(signed_in("s2", 200, 300));
    assert_eq!(
        f.store.console_session("s1").unwrap(),
        None,
        "a later sign-in drops sessions that expired before it"
    );

    f.apply(ConsoleSignedOut {
        event_id: "out-s2".to_string(),
        occurred_at: 210,
        session_hash: "s2".to_string(),
        user_id: "u1".to_string(),
    });
    assert_eq!(f.store.console_session("s2").unwrap(), None);
}

#[test]
fn disabling_user_ends_console_sessions() {
    let f = fixture();
    f.apply(ConsoleSignedIn {
        event_id: "in".to_string(),
        occurred_at: 1,
        session_hash: "s1".to_string(),
        user_id: "u1".to_string(),
        expires_at: 100,
    });
    f.apply(UserDisabled {
        event_id: "off".to_string(),
        occurred_at: 2,
        user_id: "u1".to_string(),
        actor: "cli".to_string(),
    });
    assert_eq!(f.store.console_session("s1").unwrap(), None);
}

#[test]
fn user_grants_are_per_user_and_site() {
    let f = fixture();
    f.apply(granted("g1", "h1", 5_000));
    let mut other_user = granted("g2", "h2", 5_000);
    other_user.user_id = Some("u2".to_string());
    f.apply(other_user);
    let mut other_site = granted("g3", "h3", 5_000);
    other_site.site_id = "north".to_string();
    f.apply(other_site);

    let ids = |user: &str, site: &str| -> Vec<String> {
        f.store
            .user_grants(user, site)
            .unwrap()
            .into_iter()
            .map(|g| g.approval.grant_id)
            .collect()
    };
    assert_eq!(ids("u1", "default"), ["g1"]);
    assert_eq!(ids("u2", "default"), ["g2"]);
    assert_eq!(ids("u1", "north"), ["g3"]);
    assert!(ids("u3", "default").is_empty());
}
