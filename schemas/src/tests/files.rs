//! Checks of the `.avsc` files: every file is embedded, history is complete, the current
//! schema equals the highest released version, and the conventions of the README hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use apache_avro::Schema;
use serde_json::Value as Json;

use crate::parsing_canonical_form;
use crate::registry::RegisteredEvent;

const NAMESPACE: &str = "hearth.events";

fn avsc_stems(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn short_name(event: &RegisteredEvent) -> &str {
    event.name.strip_prefix("hearth.events.").unwrap()
}

#[test]
fn avro_files_match_catalog() {
    let avro = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let registry = super::registry();

    let on_disk = avsc_stems(&avro);
    let cataloged: BTreeSet<String> = registry
        .events()
        .iter()
        .map(|e| short_name(e).to_string())
        .collect();
    assert_eq!(on_disk, cataloged, "avro/*.avsc and the catalog differ");

    let history_on_disk = avsc_stems(&avro.join("history"));
    let history_cataloged: BTreeSet<String> = registry
        .events()
        .iter()
        .flat_map(|event| {
            let name = short_name(event);
            event
                .history
                .iter()
                .map(move |(version, _)| format!("{name}.v{version}"))
        })
        .collect();
    assert_eq!(
        history_on_disk, history_cataloged,
        "avro/history and the catalog differ"
    );
}

#[test]
fn history_versions_are_contiguous() {
    for event in super::registry().events() {
        let versions: Vec<u32> = event.history.iter().map(|(version, _)| *version).collect();
        let expected: Vec<u32> = (1..=versions.len() as u32).collect();
        assert_eq!(versions, expected, "versions of {}", event.name);
    }
}

#[test]
fn current_equals_highest_history() {
    for event in super::registry().events() {
        let (version, highest) = event.history.last().unwrap();
        assert_eq!(
            parsing_canonical_form(&event.current.schema).unwrap(),
            parsing_canonical_form(&highest.schema).unwrap(),
            "avro/{0}.avsc differs from avro/history/{0}.v{version}.avsc; release a new version",
            short_name(event),
        );
    }
}

/// Walks every named type, field and union of a schema and records violations of the
/// conventions.
struct ConventionCheck {
    problems: Vec<String>,
}

impl ConventionCheck {
    fn check_schema(&mut self, schema: &Schema, path: &str) {
        match schema {
            Schema::Record(record) => {
                if record.doc.as_deref().unwrap_or("").is_empty() {
                    self.problems.push(format!("{path}: record has no doc"));
                }
                if record.name.namespace.as_deref() != Some(NAMESPACE) {
                    self.problems
                        .push(format!("{path}: namespace is not {NAMESPACE}"));
                }
                for field in &record.fields {
                    let field_path = format!("{path}.{}", field.name);
                    self.check_field_default(&field.schema, field.default.as_ref(), &field_path);
                    self.check_schema(&field.schema, &field_path);
                }
            }
            Schema::Enum(enumeration) if enumeration.doc.as_deref().unwrap_or("").is_empty() => {
                self.problems.push(format!("{path}: enum has no doc"));
            }
            Schema::Array(array) => self.check_schema(&array.items, path),
            Schema::Map(map) => self.check_schema(&map.types, path),
            Schema::Union(union) => {
                let variants = union.variants();
                if variants.len() != 2 || variants[0] != Schema::Null {
                    self.problems
                        .push(format!("{path}: union is not [\"null\", T]"));
                }
                for variant in variants {
                    self.check_schema(variant, path);
                }
            }
            // The encoder resolves no references, so a named type may appear once per file.
            Schema::Ref { name } => self.problems.push(format!("{path}: reuses {name:?}")),
            _ => {}
        }
    }

    fn check_field_default(&mut self, schema: &Schema, default: Option<&Json>, path: &str) {
        let required = match schema {
            Schema::Union(_) => Some(Json::Null),
            Schema::Array(_) => Some(Json::Array(Vec::new())),
            Schema::Map(_) => Some(Json::Object(Default::default())),
            _ => None,
        };
        if let Some(required) = required
            && default != Some(&required)
        {
            self.problems
                .push(format!("{path}: default must be {required}"));
        }
    }
}

#[test]
fn schemas_follow_conventions() {
    let mut check = ConventionCheck {
        problems: Vec::new(),
    };
    for event in super::registry().events() {
        let versions = event
            .history
            .iter()
            .map(|(v, parsed)| (format!("v{v}"), &parsed.schema));
        for (label, schema) in
            std::iter::once(("current".to_string(), &event.current.schema)).chain(versions)
        {
            let path = format!("{} ({label})", event.name);
            check.check_schema(schema, &path);

            let Schema::Record(record) = schema else {
                unreachable!()
            };
            let first: Vec<(&str, &Schema)> = record
                .fields
                .iter()
                .take(2)
                .map(|f| (f.name.as_str(), &f.schema))
                .collect();
            if first
                != [
                    ("event_id", &Schema::String),
                    ("occurred_at", &Schema::TimestampMicros),
                ]
            {
                check
                    .problems
                    .push(format!("{path}: must start with event_id and occurred_at"));
            }
        }
    }
    assert!(check.problems.is_empty(), "{}", check.problems.join("\n"));
}

/// One Rust enum serves every schema that defines an enum of that name, and the encoder
/// writes its variant position, so all definitions must list the same symbols in order.
#[test]
fn shared_enums_have_same_symbols() {
    fn collect(schema: &Schema, found: &mut BTreeMap<String, BTreeSet<Vec<String>>>) {
        match schema {
            Schema::Record(record) => record.fields.iter().for_each(|f| collect(&f.schema, found)),
            Schema::Array(array) => collect(&array.items, found),
            Schema::Map(map) => collect(&map.types, found),
            Schema::Union(union) => union.variants().iter().for_each(|v| collect(v, found)),
            Schema::Enum(enumeration) => {
                found
                    .entry(enumeration.name.fullname(None))
                    .or_default()
                    .insert(enumeration.symbols.clone());
            }
            _ => {}
        }
    }

    let mut found = BTreeMap::new();
    for event in super::registry().events() {
        collect(&event.current.schema, &mut found);
    }
    for (name, definitions) in found {
        assert_eq!(
            definitions.len(),
            1,
            "{name} has differing symbol lists: {definitions:?}"
        );
    }
}
