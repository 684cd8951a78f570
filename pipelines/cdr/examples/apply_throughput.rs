//! Measures how fast the repository applies load events, without HTTP or the log.
//!
//! Usage: cargo run --release -p hearth-cdr --example apply_throughput -- DIR [EVENTS_PER_COMMIT]
//!
//! DIR holds FHIR Bundles (for example the unpacked tests/data/synthea-r4.tar.xz). Each
//! file becomes one load event, as `hearth load` sends it; events are applied in
//! dependency order, EVENTS_PER_COMMIT (default 1) per SQLite transaction. The prepare step
//! (which the runner runs on its own thread) and the writer's step are timed apart.

use std::time::Instant;

use hearth_cdr::RepositoryProjection;
use hearth_fhir_core::bundle::{Action, Semantics, parse_document};
use hearth_log::Record;
use hearth_projection::{Projection, open_connection};
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: apply_throughput DIR [EVENTS_PER_COMMIT]");
    let per_commit: usize = args
        .next()
        .map_or(1, |n| n.parse().expect("EVENTS_PER_COMMIT is a number"));

    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        (
            !name.contains("Information"),
            name.starts_with("group"),
            name,
        )
    });

    let started = Instant::now();
    let mut records = Vec::new();
    let mut resources = 0;
    for (offset, path) in files.iter().enumerate() {
        let entries = parse_document(&std::fs::read(path).unwrap(), Semantics::Load).unwrap();
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

    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("repository.db")).unwrap();
    let mut projection = RepositoryProjection;
    projection.migrate(&conn).unwrap();
    let started = Instant::now();
    let mut prepared: Vec<_> = records.iter().map(RepositoryProjection::prepare).collect();
    let prepare_seconds = started.elapsed().as_secs_f64();
    println!(
        "prepare (decode, parse, extract) in {prepare_seconds:.2} s: {:.0} resources/s",
        resources as f64 / prepare_seconds
    );

    let started = Instant::now();
    let mut prepared = prepared.drain(..);
    for chunk in records.chunks(per_commit) {
        let tx = conn.transaction().unwrap();
        for record in chunk {
            let prepared = prepared.next().unwrap();
            projection.apply(&tx, record, prepared).unwrap();
        }
        tx.commit().unwrap();
    }
    let apply_seconds = started.elapsed().as_secs_f64();
    println!(
        "apply (writer) in {apply_seconds:.2} s: {:.0} resources/s",
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
}
