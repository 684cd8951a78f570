//! Round trips of every event type through `encode`, `decode` and `decode_any`, with
//! instances generated from the type's current schema.

use std::fmt::Debug;

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum, from_value, to_value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::values::arbitrary_value;
use crate::*;

const CASES: u32 = 48;

/// Checks, for generated instances of `E`:
/// - apache-avro decodes the serde encoding to the value the instance was built from, which
///   fails when the struct's field order or enum variant order differs from the schema;
/// - `decode` and `decode_any` return the instance, and `event_name` its name;
/// - the header is the marker and the fingerprint of the current schema.
fn check_round_trip<E>()
where
    E: Event + Debug + PartialEq + Clone + Into<AnyEvent>,
{
    let schema = E::schema();
    let header = header_of(schema);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });

    let result = runner.run(&arbitrary_value(schema), |value| {
        let event: E = from_value(&value).map_err(fail)?;
        assert_field_order(&to_value(&event).map_err(fail)?, schema, E::NAME);

        let bytes = encode(&event).map_err(fail)?;
        prop_assert_eq!(&bytes[..10], &header[..]);
        let mut body = &bytes[10..];
        let written = from_avro_datum(schema, &mut body, None).map_err(fail)?;
        prop_assert_eq!(
            written,
            value,
            "apache-avro reads other values from the body"
        );

        prop_assert_eq!(decode::<E>(&bytes).map_err(fail)?, event.clone());
        prop_assert_eq!(decode_any(&bytes).map_err(fail)?, event.clone().into());
        prop_assert_eq!(event_name(&bytes).map_err(fail)?, E::NAME);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{} round trip failed: {error}", E::NAME);
    }
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

fn header_of(schema: &Schema) -> Vec<u8> {
    let mut header = vec![0xC3, 0x01];
    header.extend_from_slice(&fingerprint(schema).unwrap().to_le_bytes());
    header
}

/// Asserts that records serialized from Rust list their fields in schema order, recursing
/// into arrays and unions.
fn assert_field_order(value: &Value, schema: &Schema, path: &str) {
    match (value, schema) {
        (Value::Record(fields), Schema::Record(record)) => {
            let rust: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
            let avro: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(rust, avro, "field order of {path} differs from its schema");
            for ((name, field_value), field) in fields.iter().zip(&record.fields) {
                assert_field_order(field_value, &field.schema, &format!("{path}.{name}"));
            }
        }
        (Value::Array(items), Schema::Array(array)) => {
            for item in items {
                assert_field_order(item, &array.items, path);
            }
        }
        (Value::Union(_, inner), Schema::Union(union)) if **inner != Value::Null => {
            for variant in union.variants() {
                assert_field_order(inner, variant, path);
            }
        }
        _ => {}
    }
}

macro_rules! round_trip_tests {
    ($($test:ident: $event:ty,)+) => {
        $(
            #[test]
            fn $test() {
                check_round_trip::<$event>();
            }
        )+

        /// Names of the event types that have a round-trip test above.
        const TESTED: &[&str] = &[$(<$event as Event>::NAME,)+];
    };
}

round_trip_tests! {
    round_trip_app_registered: AppRegistered,
    round_trip_app_updated: AppUpdated,
    round_trip_app_secret_rotated: AppSecretRotated,
    round_trip_app_disabled: AppDisabled,
    round_trip_app_enabled: AppEnabled,
    round_trip_site_registered: SiteRegistered,
    round_trip_site_updated: SiteUpdated,
    round_trip_app_activated: AppActivated,
    round_trip_app_deactivated: AppDeactivated,
    round_trip_launch_created: LaunchCreated,
    round_trip_authorization_granted: AuthorizationGranted,
    round_trip_authorization_denied: AuthorizationDenied,
    round_trip_code_redeemed: CodeRedeemed,
    round_trip_token_issued: TokenIssued,
    round_trip_token_refreshed: TokenRefreshed,
    round_trip_token_revoked: TokenRevoked,
    round_trip_grant_revoked: GrantRevoked,
    round_trip_user_registered: UserRegistered,
    round_trip_user_disabled: UserDisabled,
    round_trip_console_signed_in: ConsoleSignedIn,
    round_trip_console_signed_out: ConsoleSignedOut,
    round_trip_console_sign_in_failed: ConsoleSignInFailed,
    round_trip_api_call: ApiCall,
    round_trip_resource_transaction: ResourceTransaction,
    round_trip_bulk_job_requested: BulkJobRequested,
    round_trip_bulk_job_progressed: BulkJobProgressed,
    round_trip_bulk_job_completed: BulkJobCompleted,
    round_trip_bulk_job_failed: BulkJobFailed,
    round_trip_bulk_job_cancelled: BulkJobCancelled,
    round_trip_bulk_files_deleted: BulkFilesDeleted,
    round_trip_ehr_response_cached: EhrResponseCached,
    round_trip_ehr_cache_invalidated: EhrCacheInvalidated,
}

#[test]
fn round_trip_covers_every_event() {
    let mut tested: Vec<&str> = TESTED.to_vec();
    let mut registered: Vec<&str> = super::registry().events().iter().map(|e| e.name).collect();
    tested.sort_unstable();
    registered.sort_unstable();
    assert_eq!(tested, registered);
}

fn resource_operation() -> impl Strategy<Value = ResourceOperation> {
    let action = prop_oneof![
        Just(ResourceAction::Create),
        Just(ResourceAction::Update),
        Just(ResourceAction::Delete),
        Just(ResourceAction::Patch),
    ];
    let text = || proptest::option::of(super::values::arbitrary_string());
    (
        action,
        "[A-Z][a-zA-Z]{0,20}",
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(action, resource_type, id, full_url, resource, if_match, if_none_exist, criteria)| {
                ResourceOperation {
                    action,
                    resource_type,
                    id,
                    full_url,
                    resource,
                    if_match,
                    if_none_exist,
                    criteria,
                }
            },
        )
}

fn resource_transaction() -> impl Strategy<Value = ResourceTransaction> {
    let kind = prop_oneof![
        Just(TransactionKind::Load),
        Just(TransactionKind::Transaction),
        Just(TransactionKind::Batch),
        Just(TransactionKind::Single),
    ];
    let text = || proptest::option::of(super::values::arbitrary_string());
    (
        "[0-9a-f-]{36}",
        any::<i64>(),
        super::values::arbitrary_string(),
        kind,
        proptest::collection::vec(resource_operation(), 0..8),
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(event_id, occurred_at, site_id, kind, entries, client_id, user_id, request_id)| {
                ResourceTransaction {
                    event_id,
                    occurred_at,
                    site_id,
                    kind,
                    entries,
                    client_id,
                    user_id,
                    request_id,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Builds instances from Rust strategies rather than from the schema, so the check does
    /// not depend on apache-avro's deserializer.
    #[test]
    fn resource_transaction_from_rust(event in resource_transaction()) {
        let bytes = encode(&event).unwrap();
        prop_assert_eq!(decode::<ResourceTransaction>(&bytes).unwrap(), event);
    }
}

#[test]
fn resource_transaction_many_large_entries() {
    let resource = format!(
        "{{\"resourceType\":\"Observation\",\"note\":[{{\"text\":\"{}\"}}]}}",
        "Ωmega 🩺 ".repeat(1_000)
    );
    let entries: Vec<ResourceOperation> = (0..2_000)
        .map(|i| ResourceOperation {
            action: ResourceAction::Create,
            resource_type: "Observation".to_string(),
            id: Some(format!("obs-{i}")),
            full_url: Some(format!("urn:uuid:00000000-0000-0000-0000-{i:012}")),
            resource: Some(resource.clone()),
            if_match: None,
            if_none_exist: None,
            criteria: None,
        })
        .collect();
    let event = ResourceTransaction {
        event_id: "4a1e8a52-2a0e-4a57-8c39-7d4d5b8b0c11".to_string(),
        occurred_at: 1_733_000_000_000_000,
        site_id: "main".to_string(),
        kind: TransactionKind::Load,
        entries,
        client_id: None,
        user_id: Some("admin".to_string()),
        request_id: None,
    };

    let bytes = encode(&event).unwrap();
    assert!(bytes.len() > 2_000 * resource.len());
    assert_eq!(decode::<ResourceTransaction>(&bytes).unwrap(), event);
}

#[test]
fn resource_transaction_empty_entries() {
    let event = ResourceTransaction {
        event_id: String::new(),
        occurred_at: i64::MIN,
        site_id: "sité".to_string(),
        kind: TransactionKind::Batch,
        entries: Vec::new(),
        client_id: Some(String::new()),
        user_id: None,
        request_id: Some("req-1".to_string()),
    };

    let bytes = encode(&event).unwrap();
    assert_eq!(decode::<ResourceTransaction>(&bytes).unwrap(), event);
}
