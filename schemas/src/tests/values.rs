//! Proptest strategies that generate Avro values from a schema, so tests need no Rust type
//! for old schema versions.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::types::Value;
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

/// Strings that exercise multi-byte UTF-8, right-to-left text, combining marks and JSON
/// escapes.
const UNICODE_SAMPLES: &[&str] = &[
    "Zoë Ångström",
    "患者 山田太郎",
    "מטופל",
    "🩺💊 ok",
    "e\u{301}",
    "{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"Ünal\"}]}",
    "line\nbreak\ttab \"quote\" \\ back",
];

pub fn arbitrary_string() -> BoxedStrategy<String> {
    prop_oneof![
        1 => Just(String::new()),
        4 => ".{0,24}",
        2 => select(UNICODE_SAMPLES).prop_map(str::to_string),
    ]
    .boxed()
}

/// Returns a strategy for values of `schema`. Arrays and maps have 0 to 3 items, so empty
/// collections come up often.
pub fn arbitrary_value(schema: &Schema) -> BoxedStrategy<Value> {
    match schema {
        Schema::Null => Just(Value::Null).boxed(),
        Schema::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        Schema::Int => any::<i32>().prop_map(Value::Int).boxed(),
        Schema::Long => any::<i64>().prop_map(Value::Long).boxed(),
        Schema::TimestampMicros => any::<i64>().prop_map(Value::TimestampMicros).boxed(),
        Schema::Float => any::<f32>().prop_map(Value::Float).boxed(),
        Schema::Double => any::<f64>().prop_map(Value::Double).boxed(),
        Schema::Bytes => vec(any::<u8>(), 0..16).prop_map(Value::Bytes).boxed(),
        Schema::String => arbitrary_string().prop_map(Value::String).boxed(),
        Schema::Enum(enumeration) => {
            let symbols = enumeration.symbols.clone();
            (0..symbols.len())
                .prop_map(move |i| Value::Enum(i as u32, symbols[i].clone()))
                .boxed()
        }
        Schema::Union(union) => {
            let branches: Vec<BoxedStrategy<Value>> = union
                .variants()
                .iter()
                .enumerate()
                .map(|(i, variant)| {
                    arbitrary_value(variant)
                        .prop_map(move |value| Value::Union(i as u32, Box::new(value)))
                        .boxed()
                })
                .collect();
            proptest::strategy::Union::new(branches).boxed()
        }
        Schema::Array(array) => vec(arbitrary_value(&array.items), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Schema::Map(map) => hash_map(arbitrary_string(), arbitrary_value(&map.types), 0..4)
            .prop_map(|entries: HashMap<String, Value>| Value::Map(entries))
            .boxed(),
        Schema::Record(record) => {
            let names: Vec<String> = record.fields.iter().map(|f| f.name.clone()).collect();
            let fields: Vec<BoxedStrategy<Value>> = record
                .fields
                .iter()
                .map(|field| arbitrary_value(&field.schema))
                .collect();
            fields
                .prop_map(move |values| Value::Record(names.iter().cloned().zip(values).collect()))
                .boxed()
        }
        other => panic!("no value strategy for schema {other:?}; extend arbitrary_value"),
    }
}
