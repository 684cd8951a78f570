//! Index extraction over Synthea patient bundles, and its speed.
//!
//! Set HEARTH_SYNTHEA_DIR to a directory of Synthea transaction Bundles (one JSON file per
//! patient); without it the tests print a notice and pass. Run the speed test with
//! `cargo test --release -p hearth-fhir-core --test synthea -- --nocapture` for a
//! meaningful number.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use hearth_fhir_core::index::{self, IndexRows};
use serde_json::Value;

/// Reads every entry resource of every Bundle in HEARTH_SYNTHEA_DIR, or returns `None`
/// after printing a notice when the variable is unset.
fn load_resources() -> Option<Vec<(String, Value)>> {
    let Some(dir) = std::env::var_os("HEARTH_SYNTHEA_DIR") else {
        eprintln!("skipped: set HEARTH_SYNTHEA_DIR to a directory of Synthea bundles");
        return None;
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", PathBuf::from(&dir).display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .json files in HEARTH_SYNTHEA_DIR");

    let mut resources = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let bundle: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        resources.extend(bundle_resources(bundle));
    }
    Some(resources)
}

/// Takes the resources out of a transaction Bundle, replacing `urn:uuid:` references with
/// `Type/id` as loading the Bundle does.
fn bundle_resources(bundle: Value) -> Vec<(String, Value)> {
    let Some(Value::Array(entries)) = bundle.get("entry").cloned() else {
        return Vec::new();
    };
    let mut targets = HashMap::new();
    for entry in &entries {
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        let resource_type = entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str);
        let id = entry.pointer("/resource/id").and_then(Value::as_str);
        if let (Some(full_url), Some(resource_type), Some(id)) = (full_url, resource_type, id) {
            targets.insert(full_url.to_owned(), format!("{resource_type}/{id}"));
        }
    }

    let mut resources = Vec::new();
    for mut entry in entries {
        let Some(mut resource) = entry.get_mut("resource").map(Value::take) else {
            continue;
        };
        replace_references(&mut resource, &targets);
        let resource_type = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        resources.push((resource_type, resource));
    }
    resources
}

fn replace_references(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                    && let Some(target) = targets.get(reference.as_str())
                {
                    *reference = target.clone();
                } else {
                    replace_references(child, targets);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                replace_references(item, targets);
            }
        }
        _ => {}
    }
}

fn reference_types<'a>(rows: &'a IndexRows, param: &str) -> Vec<Option<&'a str>> {
    rows.references
        .iter()
        .filter(|row| row.param == param)
        .map(|row| row.target_type.as_deref())
        .collect()
}

fn count(rows: &IndexRows, param: &str) -> usize {
    rows.tokens.iter().filter(|r| r.param == param).count()
        + rows.dates.iter().filter(|r| r.param == param).count()
}

#[test]
fn synthea_resources_index() {
    let Some(resources) = load_resources() else {
        return;
    };
    let mut by_type: HashMap<&str, usize> = HashMap::new();

    for (resource_type, resource) in &resources {
        let rows = index::extract(resource_type, resource);
        let id = resource["id"].as_str().unwrap_or_default();
        *by_type.entry(resource_type).or_default() += 1;
        assert_eq!(count(&rows, "_id"), 1, "{resource_type}/{id}");

        match resource_type.as_str() {
            "Observation" => {
                assert_eq!(reference_types(&rows, "subject"), [Some("Patient")], "{id}");
                assert_eq!(reference_types(&rows, "patient"), [Some("Patient")], "{id}");
                assert_eq!(
                    reference_types(&rows, "encounter"),
                    [Some("Encounter")],
                    "{id}"
                );
                assert!(
                    count(&rows, "code") >= 1,
                    "Observation/{id} has no code rows"
                );
                assert_eq!(count(&rows, "date"), 1, "Observation/{id}");
                let has_value = [
                    "valueQuantity",
                    "valueCodeableConcept",
                    "valueString",
                    "component",
                ]
                .iter()
                .any(|key| resource.get(key).is_some());
                let has_value_rows = !rows.quantities.is_empty()
                    || rows.tokens.iter().any(|r| r.param == "value-concept")
                    || rows.strings.iter().any(|r| r.param == "value-string")
                    || !rows.composites.is_empty();
                assert_eq!(has_value, has_value_rows, "Observation/{id}");
            }
            "Condition" | "Procedure" | "Immunization" | "MedicationRequest" => {
                assert_eq!(reference_types(&rows, "patient"), [Some("Patient")], "{id}");
                let code = if resource_type == "Immunization" {
                    "vaccine-code"
                } else {
                    "code"
                };
                assert!(
                    count(&rows, code) >= 1,
                    "{resource_type}/{id} has no {code} rows"
                );
            }
            "Encounter" => {
                assert_eq!(reference_types(&rows, "patient"), [Some("Patient")], "{id}");
                assert_eq!(count(&rows, "date"), 1, "Encounter/{id}");
            }
            "Patient" => {
                assert!(rows.strings.iter().any(|r| r.param == "family"), "{id}");
                assert_eq!(count(&rows, "birthdate"), 1, "Patient/{id}");
                assert_eq!(count(&rows, "deceased"), 1, "Patient/{id}");
            }
            _ => {}
        }
    }

    let mut summary: Vec<_> = by_type.into_iter().collect();
    summary.sort();
    println!("{} resources indexed: {summary:?}", resources.len());
}

#[test]
fn synthea_extraction_speed() {
    let Some(resources) = load_resources() else {
        return;
    };
    // One pass first, so the search parameter registry is built before timing.
    let mut rows = 0;
    for (resource_type, resource) in &resources {
        rows += index::extract(resource_type, resource).len();
    }

    let passes = 3;
    let started = Instant::now();
    for _ in 0..passes {
        for (resource_type, resource) in &resources {
            std::hint::black_box(index::extract(resource_type, resource));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let extracted = resources.len() * passes;
    println!(
        "extracted {extracted} resources ({rows} rows per pass) in {seconds:.2} s on one \
         thread: {:.0} resources/s",
        extracted as f64 / seconds
    );
}

#[test]
fn synthea_resources_validate() {
    let Some(resources) = load_resources() else {
        return;
    };
    for (path, resource) in &resources {
        if let Err(error) = hearth_fhir_core::validate::validate(resource) {
            panic!("{path}: {error}");
        }
    }
}
