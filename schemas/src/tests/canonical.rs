//! Parsing Canonical Form and fingerprints against published vectors and against
//! apache-avro on schemas without logical types.

use apache_avro::Schema;
use serde_json::Value as Json;

use crate::{fingerprint, parsing_canonical_form};

/// Input, canonical form and signed 64-bit fingerprint, from the Avro project's
/// share/test/data/schema-tests.txt, which the Java implementation cross-checks. One input
/// writes its boolean default as `true` instead of `"true"`, which changes no canonical form.
const VECTORS: &[(&str, &str, i64)] = &[
    (r#""null""#, r#""null""#, 7195948357588979594),
    (
        r#"{"type":"boolean"}"#,
        r#""boolean""#,
        -6970731678124411036,
    ),
    (r#""int""#, r#""int""#, 8247732601305521295),
    (r#""long""#, r#""long""#, -3434872931120570953),
    (r#""string""#, r#""string""#, -8142146995180207161),
    (
        r#"[ "int" , {"type":"boolean"} ]"#,
        r#"["int","boolean"]"#,
        5392556393470105090,
    ),
    (
        r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
        r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
        5916914534497305771,
    ),
    (
        r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
        r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
        -4616218487480524110,
    ),
    (
        r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},
            {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
            "type":"record", "name":"foo" }"#,
        r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
        -4860222112080293046,
    ),
    (
        r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
        r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
        -4448647247586288245,
    ),
    (
        r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
        r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
        -3064184465700546786,
    ),
    (
        r#"{ "items":{"type":"null"}, "type":"array"}"#,
        r#"{"type":"array","items":"null"}"#,
        -589620603366471059,
    ),
    (
        r#"{ "values":"string", "type":"map"}"#,
        r#"{"type":"map","values":"string"}"#,
        -8732877298790414990,
    ),
    (
        r#"{"name":"PigValue","type":"record",
            "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
        r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
        -1759257747318642341,
    ),
];

#[test]
fn canonical_form_matches_published_vectors() {
    for (input, form, expected) in VECTORS {
        let schema = Schema::parse_str(input).unwrap();
        assert_eq!(
            &parsing_canonical_form(&schema).unwrap(),
            form,
            "form of {input}"
        );
        assert_eq!(
            fingerprint(&schema).unwrap() as i64,
            *expected,
            "fingerprint of {input}"
        );
    }
}

/// The Java library writes a logical type's base type alone, as the specification's STRIP
/// and PRIMITIVES rules require, so the fingerprint equals that of the base type.
#[test]
fn logical_types_reduce_to_base_type() {
    let cases = [
        (
            r#"{"type":"long","logicalType":"timestamp-micros"}"#,
            r#""long""#,
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            r#""long""#,
        ),
        (r#"{"type":"int","logicalType":"date"}"#, r#""int""#),
        (
            r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#,
            r#""bytes""#,
        ),
    ];
    for (input, form) in cases {
        let schema = Schema::parse_str(input).unwrap();
        let base = Schema::parse_str(form).unwrap();
        assert_eq!(
            parsing_canonical_form(&schema).unwrap(),
            form,
            "form of {input}"
        );
        assert_eq!(
            fingerprint(&schema).unwrap(),
            fingerprint(&base).unwrap(),
            "{input}"
        );
    }
}

#[test]
fn uuid_schema_is_unsupported() {
    let schema = Schema::parse_str(r#"{"type":"string","logicalType":"uuid"}"#).unwrap();
    assert!(parsing_canonical_form(&schema).is_err());
}

fn strip_logical_types(json: &mut Json) {
    match json {
        Json::Object(map) => {
            map.remove("logicalType");
            map.values_mut().for_each(strip_logical_types);
        }
        Json::Array(items) => items.iter_mut().for_each(strip_logical_types),
        _ => {}
    }
}

/// Without logical types, apache-avro's canonical form is the specification's, so the two
/// implementations must agree on every event schema once logical types are removed.
#[test]
fn agrees_with_apache_avro_on_base_types() {
    for declaration in crate::catalog::EVENT_SCHEMAS {
        let texts =
            std::iter::once(declaration.current).chain(declaration.history.iter().map(|(_, t)| *t));
        for text in texts {
            let mut json: Json = serde_json::from_str(text).unwrap();
            strip_logical_types(&mut json);
            let schema = Schema::parse(&json).unwrap();
            assert_eq!(
                parsing_canonical_form(&schema).unwrap(),
                schema.canonical_form(),
                "{}",
                declaration.name
            );
        }
    }
}
