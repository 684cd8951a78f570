//! Measures how fast the repository applies load events, without HTTP or the log.
//!
//! Usage: cargo run --release -p hearth-cdr --example apply_throughput -- DIR [EVENTS_PER_COMMIT]
//! [STORE]
//!
//! DIR holds FHIR Bundles (for example the unpacked tests/data/synthea-r4.tar.xz). Each
//! file becomes one load event, as `hearth load` sends it; events are applied in
//! dependency order, EVENTS_PER_COMMIT (default 1) per SQLite transaction. The prepare step
//! (which the runner runs on its own thread) and the writer's step are timed apart.

use std::time::Instant;

use hearth_cdr::{Repository, RepositoryProjection, TransactionOutcome, Visibility};
use std::collections::HashSet;
use std::path::PathBuf;

use hearth_fhir_core::bundle::{Action, Entry, Semantics, parse_document};
use hearth_fhir_core::reference::for_each_reference;
use hearth_log::Record;
use hearth_projection::{Checkpointer, Projection, WRITER_AUTOCHECKPOINT_PAGES, open_connection};
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: apply_throughput DIR [EVENTS_PER_COMMIT] [STORE]");
    let per_commit: usize = args
        .next()
        .map_or(1, |n| n.parse().expect("EVENTS_PER_COMMIT is a number"));

    let started = Instant::now();
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let entries = parse_document(&std::fs::read(&path).unwrap(), Semantics::Load).unwrap();
        documents.push((path, entries));
    }
    documents.sort_by(|a, b| a.0.cmp(&b.0));
    let documents = dependency_order(documents);

    let mut records = Vec::new();
    let mut resources = 0;
    for (offset, entries) in documents.into_iter().enumerate() {
        resources += entries.len();
        let event = ResourceTransaction {
            event_id: format!("e{offset}"),
            occurred_at: 1_780_000_000_000_000 + offset as i64,
            site_id: "default".to_string(),
            kind: TransactionKind::Load,
            entries: entries
                .into_iter()
                .map(|e| ResourceOperation {
                    action: match e.action {
                        Action::Create => ResourceAction::Create,
                        Action::Delete => ResourceAction::Delete,
                        _ => ResourceAction::Update,
                    },
                    resource_type: e.resource_type,
                    id: e.id,
                    full_url: e.full_url,
                    resource: e.resource.map(|r| r.to_string()),
                    if_match: None,
                    if_none_exist: None,
                    criteria: None,
                })
                .collect(),
            client_id: None,
            user_id: None,
            request_id: None,
        };
        records.push(Record {
            topic: "hearth.resources".to_string(),
            partition: 0,
            offset: offset as u64,
            timestamp_ms: 0,
            key: Default::default(),
            value: hearth_schemas::encode(&event).unwrap().into(),
        });
    }
    println!(
        "prepared {} events, {resources} resources in {:.2} s",
        records.len(),
        started.elapsed().as_secs_f64()
    );

    // The store goes to STORE when given, to look at afterwards, or else to a temporary file.
    let dir = tempfile::tempdir().unwrap();
    let store = args
        .next()
        .map_or_else(|| dir.path().join("repository.db"), Into::into);
    let mut conn = open_connection(&store).unwrap();
    // As in the runner, a thread of its own checkpoints the WAL.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
        .unwrap();
    let checkpointer = Checkpointer::start(&store, "repository").unwrap();
    let mut projection = RepositoryProjection::default();
    projection.migrate(&conn).unwrap();
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let mut prepared: Vec<_> = records.iter().map(RepositoryProjection::prepare).collect();
    let prepare_seconds = started.elapsed().as_secs_f64();
    let prepare_cpu = thread_cpu_seconds() - cpu_started;
    println!(
        "prepare (decode, parse, extract) in {prepare_seconds:.2} s, {prepare_cpu:.2} s on CPU: {:.0} resources/s",
        resources as f64 / prepare_seconds
    );

    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let mut prepared = prepared.drain(..);
    for chunk in records.chunks(per_commit) {
        let tx = conn.transaction().unwrap();
        for record in chunk {
            let prepared = prepared.next().unwrap();
            let outcome = projection.apply(&tx, record, prepared).unwrap();
            if !matches!(outcome, TransactionOutcome::Applied(_)) {
                println!(
                    "event at offset {} was not applied: {outcome:?}",
                    record.offset
                );
            }
        }
        tx.commit().unwrap();
        checkpointer.committed();
    }
    let apply_seconds = started.elapsed().as_secs_f64();
    let apply_cpu = thread_cpu_seconds() - cpu_started;
    println!(
        "apply (writer) in {apply_seconds:.2} s, {apply_cpu:.2} s on CPU: {:.0} resources/s",
        resources as f64 / apply_seconds
    );
    for table in [
        "resources",
        "versions",
        "idx_token",
        "idx_string",
        "idx_reference",
        "idx_date",
        "idx_number",
        "idx_quantity",
        "idx_uri",
    ] {
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap();
        print!("{table} {rows}; ");
    }
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    println!("{pages} pages");
    let total = prepare_seconds + apply_seconds;
    println!(
        "both on one thread: {:.0} resources/s; overlapped as the runner does: {:.0} resources/s",
        resources as f64 / total,
        resources as f64 / prepare_seconds.max(apply_seconds)
    );

    measure_patient_reads(&store);
}

/// Reads every Patient over and over through [`Repository::read`], on one thread, and prints
/// the rate and the 99th percentile latency.
fn measure_patient_reads(store: &std::path::Path) {
    let repository = Repository::open(store);
    let ids: Vec<String> = repository
        .search("Patient", &[], &Visibility::everything(), 10_000, None)
        .unwrap()
        .resources
        .into_iter()
        .map(|resource| resource.id)
        .collect();
    let mut latencies = Vec::new();
    let started = Instant::now();
    while latencies.len() < 50_000 && !ids.is_empty() {
        for id in &ids {
            let read_started = Instant::now();
            let found = repository.read("Patient", id).unwrap();
            latencies.push(read_started.elapsed());
            assert!(found.is_some_and(|resource| resource.json.is_some()));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "Patient reads on one thread: {} in {seconds:.2} s, {:.0} reads/s, p99 {:.3} ms",
        latencies.len(),
        latencies.len() as f64 / seconds,
        p99.as_secs_f64() * 1000.0
    );
}

/// Orders documents as `hearth load` sends them: each after the documents that define the
/// `urn:uuid:` placeholders it uses, and otherwise by file name.
fn dependency_order(mut pending: Vec<(PathBuf, Vec<Entry>)>) -> Vec<Vec<Entry>> {
    let mut defined: HashSet<String> = HashSet::new();
    let mut ordered = Vec::new();
    while !pending.is_empty() {
        let ready = |entries: &[Entry]| {
            let own: HashSet<&str> = entries
                .iter()
                .filter_map(|e| e.full_url.as_deref())
                .collect();
            let mut missing = false;
            for resource in entries.iter().filter_map(|e| e.resource.as_ref()) {
                for_each_reference(resource, &mut |reference| {
                    missing |= reference.starts_with("urn:uuid:")
                        && !own.contains(reference)
                        && !defined.contains(reference);
                });
            }
            !missing
        };
        // A document whose placeholders are never defined goes last rather than never.
        let index = pending.iter().position(|(_, e)| ready(e)).unwrap_or(0);
        let (_, entries) = pending.remove(index);
        defined.extend(entries.iter().filter_map(|e| e.full_url.clone()));
        ordered.push(entries);
    }
    ordered
}

/// Returns the time this thread has spent on a CPU, from Linux's schedstat, so that runs on a
/// busy machine can be compared; 0 where that file does not exist.
fn thread_cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos: f64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    nanos / 1e9
}
