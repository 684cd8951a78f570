//! The crate as other crates use it: only public items.

use std::collections::BTreeMap;

use hearth_schemas::{
    AnyEvent, Backing, Error, Event, ResourceAction, ResourceOperation, ResourceTransaction,
    SiteRegistered, TransactionKind, UpstreamAuthMethod, decode, decode_any, encode, event_name,
    fingerprint,
};

fn site() -> SiteRegistered {
    SiteRegistered {
        event_id: "c6f1d3f0-3d55-4a3e-8d0b-6f4b1f7d2a90".to_string(),
        occurred_at: 1_733_000_000_000_000,
        site_id: "north".to_string(),
        name: "North Clinic".to_string(),
        fhir_base_path: "/fhir/north".to_string(),
        backing: Backing::Ehr,
        upstream_base_url: Some("https://ehr.example.org/fhir".to_string()),
        upstream_auth_method: UpstreamAuthMethod::BackendServices,
        upstream_client_id: Some("hearth".to_string()),
        upstream_token_url: None,
        upstream_scope: Some("system/*.rs".to_string()),
        upstream_fhir_version: Some("4.0.1".to_string()),
        dynamic_registration: true,
        cache_freshness_s: BTreeMap::from([
            ("Patient".to_string(), 300),
            ("Observation".to_string(), 60),
        ]),
        default_cache_freshness_s: 30,
        actor: "admin".to_string(),
    }
}

fn transaction() -> ResourceTransaction {
    ResourceTransaction {
        event_id: "5b0a8f0e-1c1f-4d8e-a7a3-52c0f7f0d3b4".to_string(),
        occurred_at: 1_733_000_000_000_123,
        site_id: "main".to_string(),
        kind: TransactionKind::Single,
        entries: vec![ResourceOperation {
            action: ResourceAction::Patch,
            resource_type: "Patient".to_string(),
            id: Some("p1".to_string()),
            full_url: None,
            resource: Some(r#"[{"op":"replace","path":"/active","value":false}]"#.to_string()),
            if_match: Some("W/\"2\"".to_string()),
            if_none_exist: None,
            criteria: None,
        }],
        client_id: Some("app".to_string()),
        user_id: Some("u1".to_string()),
        request_id: Some("req-9".to_string()),
    }
}

#[test]
fn typed_round_trip() {
    let event = site();
    let bytes = encode(&event).unwrap();

    assert_eq!(bytes[..2], [0xC3, 0x01]);
    assert_eq!(
        bytes[2..10],
        fingerprint(SiteRegistered::schema()).unwrap().to_le_bytes()
    );
    assert_eq!(decode::<SiteRegistered>(&bytes).unwrap(), event);
}

#[test]
fn any_event_round_trip() {
    let bytes = encode(&transaction()).unwrap();

    let any = decode_any(&bytes).unwrap();

    assert_eq!(any.name(), "hearth.events.ResourceTransaction");
    assert_eq!(any.topic(), "hearth.resources");
    assert_eq!(any.event_id(), "5b0a8f0e-1c1f-4d8e-a7a3-52c0f7f0d3b4");
    assert_eq!(any.occurred_at(), 1_733_000_000_000_123);
    assert_eq!(any.encode().unwrap(), bytes);
    assert_eq!(any, AnyEvent::from(transaction()));
}

#[test]
fn event_name_reads_header_only() {
    let mut bytes = encode(&site()).unwrap();
    bytes.truncate(10);

    assert_eq!(event_name(&bytes).unwrap(), SiteRegistered::NAME);
    assert!(matches!(decode_any(&bytes), Err(Error::Truncated { .. })));
}

#[test]
fn event_constants() {
    assert_eq!(SiteRegistered::NAME, "hearth.events.SiteRegistered");
    assert_eq!(SiteRegistered::TOPIC, "hearth.auth");
    assert_eq!(ResourceTransaction::TOPIC, "hearth.resources");
}

#[test]
fn wrong_type_is_schema_mismatch() {
    let bytes = encode(&site()).unwrap();

    let error = decode::<ResourceTransaction>(&bytes).unwrap_err();

    assert!(matches!(error, Error::SchemaMismatch { .. }));
    assert_eq!(
        error.to_string(),
        "expected a hearth.events.ResourceTransaction event, found hearth.events.SiteRegistered"
    );
}

#[test]
fn error_is_send_sync() {
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
}
