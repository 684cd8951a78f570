//! Builds the repository from an embedded log, deletes it, replays the log from offset
//! zero, and checks that both builds are identical byte for byte. Also checks that a
//! runner stopped half way resumes from its stored offsets to the same state.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_cdr::{RepositoryProjection, TransactionOutcome};
use hearth_log::embedded::{EmbeddedLog, EmbeddedOptions};
use hearth_log::{Log, topics};
use hearth_projection::{RunnerOptions, dump, open_connection, start};
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};
use serde_json::json;

fn operation(
    action: ResourceAction,
    resource_type: &str,
    id: &str,
    resource: Option<serde_json::Value>,
) -> ResourceOperation {
    ResourceOperation {
        action,
        resource_type: resource_type.to_string(),
        id: Some(id.to_string()),
        full_url: Some(format!("urn:uuid:{id}")),
        resource: resource.map(|r| r.to_string()),
        if_match: None,
        if_none_exist: None,
        criteria: None,
    }
}

/// A mix of loads, updates, conditional creates, deletes and a rejected transaction.
fn events() -> Vec<ResourceTransaction> {
    let mut events = Vec::new();
    let mut time = 1_780_000_000_000_000;
    let mut push = |kind, entries| {
        time += 1_000_317;
        events.push(ResourceTransaction {
            event_id: format!("event-{}", events.len()),
            occurred_at: time,
            site_id: "default".to_string(),
            kind,
            entries,
            client_id: None,
            user_id: None,
            request_id: None,
        });
    };
    for p in 0..40 {
        let patient_id = format!("patient-{p}");
        let mut entries = vec![operation(
            ResourceAction::Update,
            "Patient",
            &patient_id,
            Some(
                json!({"resourceType": "Patient", "name": [{"family": format!("Family{p}"), "given": ["Ann"]}],
                        "identifier": [{"system": "urn:mrn", "value": format!("{p}")}], "birthDate": "1970-01-01"}),
            ),
        )];
        for o in 0..10 {
            entries.push(operation(
                ResourceAction::Update,
                "Observation",
                &format!("obs-{p}-{o}"),
                Some(json!({"resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                            "subject": {"reference": format!("urn:uuid:{patient_id}")},
                            "effectiveDateTime": format!("2020-01-{:02}T10:00:00Z", o + 1),
                            "valueQuantity": {"value": 170 + o, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}})),
            ));
        }
        push(TransactionKind::Load, entries);
    }
    for p in 0..10 {
        let mut update = operation(
            ResourceAction::Update,
            "Patient",
            &format!("patient-{p}"),
            Some(json!({"resourceType": "Patient", "name": [{"family": format!("Renamed{p}")}]})),
        );
        update.if_match = Some("1".to_string());
        push(TransactionKind::Single, vec![update]);
    }
    let mut create = operation(
        ResourceAction::Create,
        "Patient",
        "conditional",
        Some(
            json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "33"}]}),
        ),
    );
    create.if_none_exist = Some("identifier=urn:mrn|33".to_string());
    push(TransactionKind::Single, vec![create]);
    push(
        TransactionKind::Single,
        vec![operation(
            ResourceAction::Delete,
            "Observation",
            "obs-3-3",
            None,
        )],
    );
    let mut stale = operation(
        ResourceAction::Update,
        "Patient",
        "patient-20",
        Some(json!({"resourceType": "Patient"})),
    );
    stale.if_match = Some("9".to_string());
    push(TransactionKind::Transaction, vec![stale]);
    events
}

fn open_log(dir: &Path) -> Arc<EmbeddedLog> {
    Arc::new(EmbeddedLog::open(dir, EmbeddedOptions::default()).unwrap())
}

async fn build(log: Arc<dyn Log>, db: &Path, until: u64) -> Vec<u8> {
    let handle = start(
        log,
        RepositoryProjection::default(),
        RunnerOptions::new(topics::RESOURCES, db.to_path_buf()),
    )
    .await
    .unwrap();
    handle
        .wait_for_offsets(&[until], Duration::from_secs(60))
        .await
        .unwrap();
    handle.stop().await;
    let conn = open_connection(db).unwrap();
    dump(&conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_identical_store() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log"));
    log.ensure_topic(topics::RESOURCES, 1).await.unwrap();
    let events = events();
    for event in &events {
        let value = hearth_schemas::encode(event).unwrap();
        log.append(topics::RESOURCES, b"repository", &value)
            .await
            .unwrap();
    }
    let count = events.len() as u64;

    let db = dir.path().join("repository.db");
    let first = build(log.clone(), &db, count).await;
    assert!(
        first.len() > 10_000,
        "the dump is suspiciously small: {} bytes",
        first.len()
    );

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("repository.db{suffix}")));
    }
    let second = build(log.clone(), &db, count).await;
    assert!(
        first == second,
        "the replayed store differs from the first build"
    );

    // A store built from the first half of the log, then resumed after the rest was
    // appended, ends in the same state.
    let resumed_log = open_log(&dir.path().join("resumed-log"));
    resumed_log
        .ensure_topic(topics::RESOURCES, 1)
        .await
        .unwrap();
    let half = events.len() / 2;
    for event in &events[..half] {
        let value = hearth_schemas::encode(event).unwrap();
        resumed_log
            .append(topics::RESOURCES, b"repository", &value)
            .await
            .unwrap();
    }
    let resumed_db = dir.path().join("resumed.db");
    let partial = build(resumed_log.clone(), &resumed_db, half as u64).await;
    assert!(partial != first, "half the log cannot give the whole state");
    for event in &events[half..] {
        let value = hearth_schemas::encode(event).unwrap();
        resumed_log
            .append(topics::RESOURCES, b"repository", &value)
            .await
            .unwrap();
    }
    let resumed = build(resumed_log, &resumed_db, count).await;
    assert!(
        first == resumed,
        "the resumed store differs from the first build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_handler_gets_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(&dir.path().join("log"));
    log.ensure_topic(topics::RESOURCES, 1).await.unwrap();
    let handle = start(
        log.clone(),
        RepositoryProjection::default(),
        RunnerOptions::new(topics::RESOURCES, dir.path().join("repository.db")),
    )
    .await
    .unwrap();
    let events = events();
    let last = events.last().unwrap();
    let position = log
        .append(
            topics::RESOURCES,
            b"repository",
            &hearth_schemas::encode(last).unwrap(),
        )
        .await
        .unwrap();
    let outcome = handle
        .wait_for(position, Duration::from_secs(30))
        .await
        .unwrap();
    match outcome {
        Some(TransactionOutcome::Rejected(rejection)) => assert_eq!(rejection.status, 412),
        other => panic!("expected the stale If-Match to be rejected, got {other:?}"),
    }
    handle.stop().await;
}
