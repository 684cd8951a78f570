//! A test-only event whose v1 and v2 schemas differ by every kind of compatible change.
//! V2 adds a field of each kind with a default, removes a field, promotes an int to long,
//! and inserts an enum symbol into an enum that has a default symbol. The tests prove the
//! resolution path before any real event has a second version.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use apache_avro::write_avro_datum_ref;
use serde::{Deserialize, Serialize};

use super::compat::check_readable;
use crate::Error;
use crate::registry::{EventSchemas, MARKER, ParsedSchema, Registry};

const NAME: &str = "hearth.test.Evolving";
const V1: &str = include_str!("../../testdata/evolution/Evolving.v1.avsc");
const V2: &str = include_str!("../../testdata/evolution/Evolving.v2.avsc");
const V3: &str = include_str!("../../testdata/evolution/Evolving.v3.avsc");
const NO_DEFAULT: &str = include_str!("../../testdata/evolution/Evolving.no-default.avsc");

#[derive(Debug, Serialize)]
struct EvolvingV1 {
    event_id: String,
    occurred_at: i64,
    count: i32,
    legacy_note: Option<String>,
    priority: PriorityV1,
    tags: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum PriorityV1 {
    Low,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EvolvingV2 {
    event_id: String,
    occurred_at: i64,
    count: i64,
    priority: Priority,
    tags: Vec<String>,
    source: Option<String>,
    attempts: i64,
    channel: Channel,
    labels: BTreeMap<String, String>,
    flagged: bool,
    created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Priority {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Channel {
    Web,
    Api,
}

/// Returns a registry in which v2 is current and `history` lists the writer versions.
fn registry_with(history: &'static [(u32, &'static str)]) -> Registry {
    let declarations = [EventSchemas {
        name: NAME,
        current: V2,
        history,
    }];
    Registry::new(&declarations).unwrap()
}

fn released() -> Registry {
    registry_with(&[(1, V1), (2, V2)])
}

/// Encodes `value` with `schema_text` as a single-object payload.
fn encode_with<T: Serialize>(schema_text: &str, value: &T) -> Vec<u8> {
    let parsed = ParsedSchema::parse(schema_text).unwrap();
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&parsed.fingerprint.to_le_bytes());
    write_avro_datum_ref(&parsed.schema, value, &mut bytes).unwrap();
    bytes
}

fn v1_event(count: i32, priority: PriorityV1) -> EvolvingV1 {
    EvolvingV1 {
        event_id: "7d0c5c1e-8f4e-4c52-a0a4-0f5f3b1e9d21".to_string(),
        occurred_at: 1_733_000_000_000_001,
        count,
        legacy_note: Some("dropped by v2".to_string()),
        priority,
        tags: vec!["a".to_string(), "ß".to_string()],
    }
}

#[test]
fn v1_data_resolves_to_v2() {
    let registry = released();
    let bytes = encode_with(V1, &v1_event(i32::MIN, PriorityV1::High));

    let decoded: EvolvingV2 = registry.decode(&bytes, NAME).unwrap();

    let expected = EvolvingV2 {
        event_id: "7d0c5c1e-8f4e-4c52-a0a4-0f5f3b1e9d21".to_string(),
        occurred_at: 1_733_000_000_000_001,
        count: i64::from(i32::MIN),
        priority: Priority::High,
        tags: vec!["a".to_string(), "ß".to_string()],
        source: None,
        attempts: 0,
        channel: Channel::Api,
        labels: BTreeMap::new(),
        flagged: false,
        created_at: 0,
    };
    assert_eq!(decoded, expected);
}

#[test]
fn v1_low_priority_keeps_symbol() {
    let registry = released();
    let bytes = encode_with(V1, &v1_event(3, PriorityV1::Low));

    let decoded: EvolvingV2 = registry.decode(&bytes, NAME).unwrap();

    assert_eq!(decoded.priority, Priority::Low);
    assert_eq!(decoded.count, 3);
}

#[test]
fn v1_generated_data_resolves_to_v2() {
    let registry = released();
    let v1 = ParsedSchema::parse(V1).unwrap();
    check_readable(&registry, NAME, &v1.schema);
}

#[test]
fn v2_round_trip() {
    let registry = released();
    let event = EvolvingV2 {
        event_id: "e".to_string(),
        occurred_at: -1,
        count: i64::MAX,
        priority: Priority::Medium,
        tags: Vec::new(),
        source: Some("ünïcode".to_string()),
        attempts: 2,
        channel: Channel::Web,
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
        flagged: true,
        created_at: 5,
    };

    let bytes = registry.encode(NAME, &event, 0).unwrap();
    let decoded: EvolvingV2 = registry.decode(&bytes, NAME).unwrap();

    assert_eq!(decoded, event);
}

/// A later writer's symbol that this reader lacks becomes the reader's enum default.
#[test]
fn unknown_enum_symbol_takes_enum_default() {
    let registry = registry_with(&[(1, V1), (2, V2), (3, V3)]);
    let v3 = ParsedSchema::parse(V3).unwrap();
    let value = Value::Record(vec![
        ("event_id".into(), "x".into()),
        ("occurred_at".into(), Value::TimestampMicros(9)),
        ("count".into(), Value::Long(1)),
        ("priority".into(), Value::Enum(3, "CRITICAL".into())),
        ("tags".into(), Value::Array(Vec::new())),
        ("source".into(), Value::Union(0, Box::new(Value::Null))),
        ("attempts".into(), Value::Long(0)),
        ("channel".into(), Value::Enum(0, "WEB".into())),
        ("labels".into(), Value::Map(Default::default())),
        ("flagged".into(), Value::Boolean(false)),
        ("created_at".into(), Value::TimestampMicros(0)),
    ]);
    let bytes = super::compat::encode_with(&v3.schema, value);

    let decoded: EvolvingV2 = registry.decode(&bytes, NAME).unwrap();

    assert_eq!(decoded.priority, Priority::Low);
}

#[test]
fn added_field_without_default_fails() {
    let declarations = [EventSchemas {
        name: NAME,
        current: NO_DEFAULT,
        history: &[(1, V1)],
    }];
    let registry = Registry::new(&declarations).unwrap();
    let bytes = encode_with(V1, &v1_event(1, PriorityV1::Low));

    let result = registry.decode_value(&bytes);

    assert!(
        matches!(result, Err(Error::Avro(_))),
        "expected an Avro resolution error"
    );
}
