//! Data written with every released schema version must decode with the current schema.
//!
//! Values are generated from the old schema itself, so no Rust type of an old version is
//! needed. The checks compare each field of the resolved value with the written one, and
//! fields the writer did not have with their defaults.

use apache_avro::schema::RecordField;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::{Schema, to_avro_datum};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value as Json;

use super::values::arbitrary_value;
use crate::registry::{MARKER, Registry};

const CASES: u32 = 32;

/// Encodes `value` as a single-object payload of `schema`, as an old release did.
pub fn encode_with(schema: &Schema, value: Value) -> Vec<u8> {
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&crate::fingerprint(schema).unwrap().to_le_bytes());
    bytes.extend_from_slice(&to_avro_datum(schema, value).unwrap());
    bytes
}

/// Generates data with `writer` and checks that `registry` decodes it to the current
/// schema of `event` with every common field equal and every new field at its default.
pub fn check_readable(registry: &Registry, event: &str, writer: &Schema) {
    let current = &registry
        .event(event)
        .expect("event is registered")
        .current
        .schema;
    if let Err(error) = SchemaCompatibility::can_read(writer, current) {
        panic!("current {event} cannot read an earlier version: {error}");
    }

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&arbitrary_value(writer), |written| {
        let bytes = encode_with(writer, written.clone());
        let (decoded_event, resolved) = registry
            .decode_value(&bytes)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        assert_eq!(decoded_event.name, event);
        assert_resolved(&written, &resolved, current, event);
        Ok(())
    });
    if let Err(error) = result {
        panic!("decoding earlier {event} data failed: {error}");
    }
}

/// Asserts that `resolved`, a value of `schema`, carries the data of `written`.
fn assert_resolved(written: &Value, resolved: &Value, schema: &Schema, path: &str) {
    let written = unwrap_union(written);
    match (schema, resolved) {
        (Schema::Union(union), Value::Union(index, inner)) => {
            let branch = &union.variants()[*index as usize];
            assert_resolved(written, inner, branch, path);
        }
        (Schema::Record(record), Value::Record(fields)) => {
            let Value::Record(written_fields) = written else {
                panic!("{path}: written value is not a record: {written:?}");
            };
            for (field, (name, value)) in record.fields.iter().zip(fields) {
                assert_eq!(&field.name, name, "{path}: resolved fields out of order");
                let field_path = format!("{path}.{name}");
                match written_fields
                    .iter()
                    .find(|(written_name, _)| written_name == name)
                {
                    Some((_, written_value)) => {
                        assert_resolved(written_value, value, &field.schema, &field_path)
                    }
                    None => assert_default(field, value, &field_path),
                }
            }
        }
        (Schema::Array(array), Value::Array(items)) => {
            let Value::Array(written_items) = written else {
                panic!("{path}: written value is not an array: {written:?}");
            };
            assert_eq!(items.len(), written_items.len(), "{path}: array length");
            for (item, written_item) in items.iter().zip(written_items) {
                assert_resolved(written_item, item, &array.items, path);
            }
        }
        (Schema::Map(map), Value::Map(entries)) => {
            let Value::Map(written_entries) = written else {
                panic!("{path}: written value is not a map: {written:?}");
            };
            assert_eq!(entries.len(), written_entries.len(), "{path}: map size");
            for (key, value) in entries {
                assert_resolved(&written_entries[key], value, &map.types, path);
            }
        }
        (Schema::Enum(enumeration), Value::Enum(_, symbol)) => {
            let Value::Enum(_, written_symbol) = written else {
                panic!("{path}: written value is not an enum: {written:?}");
            };
            if enumeration.symbols.contains(written_symbol) {
                assert_eq!(symbol, written_symbol, "{path}");
            } else {
                assert_eq!(
                    Some(symbol),
                    enumeration.default.as_ref(),
                    "{path}: enum default"
                );
            }
        }
        (Schema::Long, Value::Long(n)) => match written {
            Value::Int(m) => assert_eq!(*n, i64::from(*m), "{path}: promoted int"),
            other => assert_eq!(&Value::Long(*n), other, "{path}"),
        },
        _ => assert_eq!(resolved, written, "{path}"),
    }
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

/// Asserts that `value` is the default of `field`. A union's default is a value of its
/// first branch.
fn assert_default(field: &RecordField, value: &Value, path: &str) {
    let Some(default) = &field.default else {
        panic!("{path} is new and has no default, so earlier data cannot be read");
    };
    let value = unwrap_union(value);
    let matches = match (default, value) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(expected), Value::Boolean(actual)) => expected == actual,
        (Json::Number(expected), Value::Int(actual)) => {
            expected.as_i64() == Some(i64::from(*actual))
        }
        (Json::Number(expected), Value::Long(actual) | Value::TimestampMicros(actual)) => {
            expected.as_i64() == Some(*actual)
        }
        (Json::String(expected), Value::String(actual) | Value::Enum(_, actual)) => {
            expected == actual
        }
        (Json::Array(expected), Value::Array(actual)) => expected.is_empty() && actual.is_empty(),
        (Json::Object(expected), Value::Map(actual)) => expected.is_empty() && actual.is_empty(),
        _ => false,
    };
    assert!(
        matches,
        "{path}: expected default {default}, decoded {value:?}"
    );
}

#[test]
fn every_history_version_decodes_with_current() {
    let registry = super::registry();
    for event in registry.events() {
        assert!(
            !event.history.is_empty(),
            "{} has no history version",
            event.name
        );
        for (_, version) in &event.history {
            check_readable(registry, event.name, &version.schema);
        }
    }
}

#[test]
fn every_history_version_decodes_to_rust() {
    let registry = super::registry();
    for event in registry.events() {
        for (version, parsed) in &event.history {
            let mut runner = TestRunner::new(Config {
                cases: 8,
                failure_persistence: None,
                ..Config::default()
            });
            let result = runner.run(&arbitrary_value(&parsed.schema), |written| {
                let bytes = encode_with(&parsed.schema, written);
                let decoded =
                    crate::decode_any(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let again = crate::decode_any(&decoded.encode().unwrap()).unwrap();
                assert_eq!(again, decoded);
                Ok(())
            });
            if let Err(error) = result {
                panic!(
                    "version {version} of {} does not decode to Rust: {error}",
                    event.name
                );
            }
        }
    }
}
