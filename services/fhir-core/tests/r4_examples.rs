//! Index extraction over every example resource of the FHIR R4 specification.
//!
//! Set HEARTH_R4_EXAMPLES to the unpacked `package` directory of the npm package
//! `hl7.fhir.r4.examples@4.0.1`; without it the test prints a notice and passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_fhir_core::index::{self, IndexRows};
use hearth_fhir_core::search_params::{self, ParamType};
use hearth_fhir_core::{datetime, resource_types};
use serde_json::Value;

fn examples_dir() -> Option<PathBuf> {
    match std::env::var_os("HEARTH_R4_EXAMPLES") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!("skipped: set HEARTH_R4_EXAMPLES to the R4 examples package directory");
            None
        }
    }
}

/// Reads every resource in `dir`, with the entries of Bundles as resources of their own.
fn load_resources(dir: &Path) -> Vec<(String, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();

    let mut resources = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(resource) = serde_json::from_str::<Value>(&text) else {
            panic!("{} is not JSON", path.display());
        };
        collect(&resource, &mut resources);
    }
    resources
}

fn collect(resource: &Value, out: &mut Vec<(String, Value)>) {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return;
    };
    if !resource_types::is_resource_type(resource_type) {
        return;
    }
    if let Some(Value::Array(entries)) = resource.get("entry") {
        for entry in entries {
            if let Some(inner) = entry.get("resource") {
                collect(inner, out);
            }
        }
    }
    out.push((resource_type.to_owned(), resource.clone()));
}

/// Returns whether `rows` has a row of any type for the parameter `code`.
fn has_rows(rows: &IndexRows, code: &str) -> bool {
    rows.strings.iter().any(|r| r.param == code)
        || rows.tokens.iter().any(|r| r.param == code)
        || rows.references.iter().any(|r| r.param == code)
        || rows.dates.iter().any(|r| r.param == code)
        || rows.numbers.iter().any(|r| r.param == code)
        || rows.quantities.iter().any(|r| r.param == code)
        || rows.uris.iter().any(|r| r.param == code)
        || rows.composites.iter().any(|r| r.param == code)
        || rows.positions.iter().any(|r| r.param == code)
}

#[test]
fn every_example_indexes() {
    let Some(dir) = examples_dir() else {
        return;
    };
    let resources = load_resources(&dir);
    assert!(resources.len() > 5000, "only {} resources", resources.len());

    let mut total_rows = 0;
    // Parameters whose expression selected something that produced no row, by
    // `Type.code` and the JSON kind or object keys selected.
    let mut unindexed: BTreeMap<String, usize> = BTreeMap::new();
    for (resource_type, resource) in &resources {
        let rows = index::extract(resource_type, resource);
        total_rows += rows.len();

        if let Some(id) = resource.get("id").and_then(Value::as_str) {
            let id_rows: Vec<_> = rows.tokens.iter().filter(|r| r.param == "_id").collect();
            assert_eq!(id_rows.len(), 1, "{resource_type}/{id}");
            assert_eq!(id_rows[0].code.as_deref(), Some(id));
        }
        for row in &rows.dates {
            assert!(row.low <= row.high, "{resource_type}: {row:?}");
        }
        for row in &rows.strings {
            assert!(!row.value.is_empty());
        }
        if let Some(updated) = resource
            .pointer("/meta/lastUpdated")
            .and_then(Value::as_str)
            && datetime::parse(updated).is_ok()
        {
            assert!(rows.dates.iter().any(|r| r.param == "_lastUpdated"));
        }

        for param in search_params::for_type(resource_type) {
            if param.param_type == ParamType::Composite || has_rows(&rows, &param.code) {
                continue;
            }
            for node in param.path.evaluate(resource) {
                let shape = match node.value {
                    Value::Object(map) => map.keys().cloned().collect::<Vec<_>>().join(","),
                    other => format!("{other}").chars().take(40).collect(),
                };
                let key = format!(
                    "{resource_type}.{} [{}] {shape}",
                    param.code, param.param_type
                );
                *unindexed.entry(key).or_default() += 1;
            }
        }
    }

    println!("{} resources, {total_rows} index rows", resources.len());
    println!("selected elements that added no row:");
    for (key, count) in &unindexed {
        println!("  {count:5}  {key}");
    }
}

/// Every example passes the structural validation, which a load applies. (A few official
/// examples leave out mandatory elements, so the full validation of REST writes refuses
/// them; `rule_problems_are_the_known_ones` lists those.)
#[test]
fn every_example_validates() {
    let Some(dir) = examples_dir() else {
        return;
    };
    let resources = load_resources(&dir);
    let failures: Vec<String> = resources
        .iter()
        .filter_map(|(_, resource)| hearth_fhir_core::validate::validate_structure(resource).err())
        .map(|error| error.to_string())
        .collect();
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} examples failed validation",
        failures.len()
    );
}

/// The full validation of REST writes finds only the known gaps of the official examples:
/// SearchParameters of extensions without `base`, ImplementationGuides without `name`, and
/// one Questionnaire item without `linkId`. Every other example follows the mandatory
/// elements and required bindings of its definition.
#[test]
fn rule_problems_are_the_known_ones() {
    let Some(dir) = examples_dir() else {
        return;
    };
    let resources = load_resources(&dir);
    let known = [
        "SearchParameter.base",
        "ImplementationGuide.name",
        "Questionnaire.item[0].item[0].linkId",
    ];
    let mut found = 0;
    for (_, resource) in &resources {
        let Err(error) = hearth_fhir_core::validate::validate(resource) else {
            continue;
        };
        assert!(
            error.problem.is_rule() && known.contains(&error.path.as_str()),
            "unexpected problem in {}: {error}",
            resource["id"]
        );
        found += 1;
    }
    assert_eq!(
        found, 13,
        "the official examples have 13 known rule problems"
    );
}
