//! Round trip of the official R4 examples: every example resource is stored through
//! `$load` and read back equal to its file, apart from `meta.versionId` and
//! `meta.lastUpdated`.
//!
//! The examples come from the npm package `hl7.fhir.r4.examples` 4.0.1 (one resource per
//! file, about 5,300 files). Set `HEARTH_R4_EXAMPLES` to its unpacked `package` directory;
//! `infra/test.sh` does. Without it the test prints a notice and passes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{FHIR_JSON, Fhir, start_server, without_version};

const EXAMPLES_VAR: &str = "HEARTH_R4_EXAMPLES";

/// Bundle types that record an exchange (search results, history, responses) rather than
/// content a server stores.
const EXCHANGE_BUNDLE_TYPES: &[&str] = &[
    "searchset",
    "history",
    "transaction-response",
    "batch-response",
];

/// Resources per `$load` request, and the largest request body the test builds, in bytes.
const CHUNK_RESOURCES: usize = 250;
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Threads that read the examples back.
const READERS: usize = 4;

/// One example file.
struct Example {
    file: String,
    resource_type: String,
    id: String,
    resource: Value,
    size: usize,
}

impl Example {
    fn path(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

/// Why an example did not round trip, and whose fault that is.
#[derive(Debug)]
struct Problem {
    file: String,
    cause: Cause,
    detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    /// The example breaks R4 itself, so a server may reject it.
    Example,
    /// Hearth rejected or changed a valid example.
    Hearth,
}

/// Whether `id` is an R4 id: 1 to 64 characters from `A-Z a-z 0-9 - .`.
fn is_r4_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Reads the example files. Files that are no resource (the package's `package.json`) and
/// exchange Bundles are counted in `skipped`, by reason.
fn read_examples(dir: &Path, skipped: &mut BTreeMap<String, usize>) -> Vec<Example> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut examples = Vec::new();
    for path in paths {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path).expect("a readable example");
        let resource: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        let Some(resource_type) = resource["resourceType"].as_str().map(str::to_string) else {
            *skipped.entry("not a resource".to_string()).or_default() += 1;
            continue;
        };
        if resource_type == "Bundle" {
            let bundle_type = resource["type"].as_str().unwrap_or_default();
            if EXCHANGE_BUNDLE_TYPES.contains(&bundle_type) {
                *skipped
                    .entry(format!("Bundle of type {bundle_type}"))
                    .or_default() += 1;
                continue;
            }
        }
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        examples.push(Example {
            file,
            resource_type,
            id,
            resource,
            size: bytes.len(),
        });
    }
    examples
}

/// Splits off the examples that cannot be stored as they are: an invalid id, or the same
/// type and id as an earlier file.
fn reject_broken(examples: Vec<Example>, problems: &mut Vec<Problem>) -> Vec<Example> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut kept = Vec::new();
    for example in examples {
        if !is_r4_id(&example.id) {
            problems.push(Problem {
                file: example.file.clone(),
                cause: Cause::Example,
                detail: format!("id {:?} is not a valid R4 id", example.id),
            });
            continue;
        }
        if let Some(first) = seen.insert(example.path(), example.file.clone()) {
            problems.push(Problem {
                file: example.file.clone(),
                cause: Cause::Example,
                detail: format!("{} is also the resource of {first}", example.path()),
            });
            continue;
        }
        kept.push(example);
    }
    kept
}

/// Loads a group of examples as one collection Bundle whose entries are the examples, so
/// that each example, Bundles included, is stored as one resource. Returns the error
/// text of a rejected load.
fn load(fhir: &Fhir, examples: &[&Example]) -> Result<(), String> {
    let entries: Vec<Value> = examples
        .iter()
        .map(|example| json!({"resource": example.resource}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    let reply = fhir.send(Method::POST, "$load", FHIR_JSON, bundle.to_string(), &[]);
    if reply.status == 200 {
        Ok(())
    } else {
        Err(format!("$load returned {}: {}", reply.status, reply.body))
    }
}

/// Loads every example, in chunks; the examples of a rejected chunk are loaded one by one
/// to find those that fail. Returns the examples that were stored.
fn load_all<'a>(
    fhir: &Fhir,
    examples: &'a [Example],
    problems: &mut Vec<Problem>,
) -> Vec<&'a Example> {
    let mut chunks: Vec<Vec<&Example>> = vec![Vec::new()];
    let mut bytes = 0;
    for example in examples {
        let full = chunks.last().is_some_and(|c| c.len() >= CHUNK_RESOURCES);
        if full || bytes + example.size > CHUNK_BYTES {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += example.size;
        chunks.last_mut().expect("a chunk").push(example);
    }
    let mut stored = Vec::new();
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        if load(fhir, &chunk).is_ok() {
            stored.extend(chunk);
            continue;
        }
        for example in chunk {
            match load(fhir, &[example]) {
                Ok(()) => stored.push(example),
                Err(detail) => problems.push(Problem {
                    file: example.file.clone(),
                    cause: Cause::Hearth,
                    detail,
                }),
            }
        }
    }
    stored
}

/// The JSON pointer of the first place where `found` differs from `expected`, with both
/// values there.
fn first_difference(expected: &Value, found: &Value, pointer: &str) -> Option<String> {
    match (expected, found) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                let here = format!("{pointer}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(difference) = first_difference(x, y, &here) {
                            return Some(difference);
                        }
                    }
                    (x, y) => return Some(describe(&here, x, y)),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{pointer}/{i}"))),
        (a, b) if a == b => None,
        (a, b) => Some(describe(pointer, Some(a), Some(b))),
    }
}

fn describe(pointer: &str, expected: Option<&Value>, found: Option<&Value>) -> String {
    let show = |value: Option<&Value>| {
        let text = value.map_or_else(|| "nothing".to_string(), Value::to_string);
        if text.chars().count() > 120 {
            format!("{}...", text.chars().take(120).collect::<String>())
        } else {
            text
        }
    };
    format!(
        "at {pointer}: the file has {}, Hearth returned {}",
        show(expected),
        show(found)
    )
}

/// Reads one stored example back and compares it with its file.
fn read_back(fhir: &Fhir, example: &Example) -> Option<Problem> {
    let reply = fhir.get(&example.path());
    let problem = |detail: String| Problem {
        file: example.file.clone(),
        cause: Cause::Hearth,
        detail,
    };
    if reply.status != 200 {
        return Some(problem(format!(
            "reading {} returned {}: {}",
            example.path(),
            reply.status,
            reply.body
        )));
    }
    let expected = without_version(&example.resource);
    let found = without_version(&reply.json());
    first_difference(&expected, &found, "").map(problem)
}

fn read_all(fhir: &Fhir, stored: &[&Example]) -> Vec<Problem> {
    let per_thread = stored.len().div_ceil(READERS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = stored
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|example| read_back(fhir, example))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a reader thread"))
            .collect()
    })
}

#[test]
fn r4_examples_round_trip() {
    let Some(dir) = std::env::var_os(EXAMPLES_VAR) else {
        eprintln!(
            "skipped: set {EXAMPLES_VAR} to the package directory of hl7.fhir.r4.examples 4.0.1"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let mut skipped = BTreeMap::new();
    let examples = read_examples(&dir, &mut skipped);
    assert!(
        examples.len() > 5000,
        "{} holds {} examples; expected the whole package",
        dir.display(),
        examples.len()
    );
    let mut problems = Vec::new();
    let examples = reject_broken(examples, &mut problems);

    let server = start_server();
    let fhir = Fhir::admin(&server);
    let stored = load_all(&fhir, &examples, &mut problems);
    problems.extend(read_all(&fhir, &stored));

    problems.sort_by(|a, b| (a.cause, &a.file).cmp(&(b.cause, &b.file)));
    eprintln!(
        "R4 examples: {} files read, {} stored, {} round trips differ or failed; skipped {skipped:?}",
        examples.len()
            + problems
                .iter()
                .filter(|p| p.cause == Cause::Example)
                .count(),
        stored.len(),
        problems.len(),
    );
    for problem in &problems {
        eprintln!(
            "  {:?}: {}: {}",
            problem.cause, problem.file, problem.detail
        );
    }
    let hearth_problems: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.cause == Cause::Hearth)
        .collect();
    assert!(
        hearth_problems.is_empty(),
        "{} valid examples did not round trip; the first: {:?}",
        hearth_problems.len(),
        hearth_problems.first()
    );
}
