use super::*;
use crate::criteria;
use serde_json::json;

fn store() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    schema::migrate(&conn, &LocalBases::none()).unwrap();
    conn
}

/// Applies `event` as the runner does: prepared first, then applied.
fn apply_event(
    conn: &Connection,
    event: &ResourceTransaction,
) -> rusqlite::Result<TransactionOutcome> {
    let mut prepared = prepare::prepare_entries(event);
    super::apply_event(conn, event, &mut prepared, &LocalBases::none())
}

fn operation(
    action: ResourceAction,
    resource_type: &str,
    id: Option<&str>,
    resource: Option<Value>,
) -> ResourceOperation {
    ResourceOperation {
        action,
        resource_type: resource_type.to_string(),
        id: id.map(str::to_string),
        full_url: None,
        resource: resource.map(|r| r.to_string()),
        if_match: None,
        if_none_exist: None,
        criteria: None,
    }
}

fn event(kind: TransactionKind, entries: Vec<ResourceOperation>) -> ResourceTransaction {
    ResourceTransaction {
        event_id: "e1".to_string(),
        occurred_at: 1_780_000_000_123_456,
        site_id: "default".to_string(),
        kind,
        entries,
        client_id: None,
        user_id: None,
        request_id: None,
    }
}

fn stored_json(conn: &Connection, resource_type: &str, id: &str) -> Option<Value> {
    conn.query_row(
        "SELECT v.body FROM resources r JOIN versions v ON v.vid = r.vid WHERE r.type = ?1 AND r.id = ?2",
        params![resource_type, id],
        |row| row.get::<_, Option<Vec<u8>>>(0),
    )
    .optional()
    .unwrap()
    .flatten()
    .map(|stored| serde_json::from_str(&crate::body::decompress(&stored).unwrap()).unwrap())
}

fn applied(outcome: TransactionOutcome) -> Vec<EntryOutcome> {
    match outcome {
        TransactionOutcome::Applied(entries) => entries,
        other => panic!("expected the event to apply, got {other:?}"),
    }
}

fn rejected(outcome: TransactionOutcome) -> Rejection {
    match outcome {
        TransactionOutcome::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn patient(id: &str, identifier: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "identifier": [{"system": "urn:test", "value": identifier}]})
}

#[test]
fn load_sets_id_meta_and_resolves_placeholders() {
    let conn = store();
    let mut observation = operation(
        ResourceAction::Update,
        "Observation",
        Some("o1"),
        Some(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:p1"}}),
        ),
    );
    observation.full_url = Some("urn:uuid:o1".to_string());
    let mut patient_entry = operation(
        ResourceAction::Update,
        "Patient",
        Some("p1"),
        Some(patient("p1", "1")),
    );
    patient_entry.full_url = Some("urn:uuid:p1".to_string());

    let outcomes = applied(
        apply_event(
            &conn,
            &event(TransactionKind::Load, vec![observation, patient_entry]),
        )
        .unwrap(),
    );
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].status, 201);
    assert_eq!(outcomes[0].version, 1);

    let stored = stored_json(&conn, "Observation", "o1").unwrap();
    assert_eq!(stored["subject"]["reference"], "Patient/p1");
    assert_eq!(stored["meta"]["versionId"], "1");
    assert_eq!(stored["meta"]["lastUpdated"], "2026-05-28T20:26:40.123Z");
}

#[test]
fn load_resolves_placeholder_of_earlier_load_by_id() {
    let conn = store();
    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Load,
                vec![operation(
                    ResourceAction::Update,
                    "Patient",
                    Some("p7"),
                    Some(patient("p7", "7")),
                )],
            ),
        )
        .unwrap(),
    );
    let group = json!({"resourceType": "Group", "type": "person", "actual": true,
                       "member": [{"entity": {"reference": "urn:uuid:p7"}}]});
    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Load,
                vec![operation(
                    ResourceAction::Update,
                    "Group",
                    Some("g1"),
                    Some(group.clone()),
                )],
            ),
        )
        .unwrap(),
    );
    assert_eq!(
        stored_json(&conn, "Group", "g1").unwrap()["member"][0]["entity"]["reference"],
        "Patient/p7"
    );

    let mut unknown = group;
    unknown["member"][0]["entity"]["reference"] = json!("urn:uuid:nobody");
    let rejection = rejected(
        apply_event(
            &conn,
            &event(
                TransactionKind::Load,
                vec![operation(
                    ResourceAction::Update,
                    "Group",
                    Some("g2"),
                    Some(unknown),
                )],
            ),
        )
        .unwrap(),
    );
    assert_eq!(rejection.status, 400);
    assert_eq!(rejection.entry, Some(0));
    assert!(stored_json(&conn, "Group", "g2").is_none());
}

#[test]
fn transaction_is_all_or_nothing() {
    let conn = store();
    let good = operation(
        ResourceAction::Update,
        "Patient",
        Some("a"),
        Some(patient("a", "1")),
    );
    let mut stale = operation(
        ResourceAction::Update,
        "Patient",
        Some("b"),
        Some(patient("b", "2")),
    );
    stale.if_match = Some("3".to_string());
    let rejection = rejected(
        apply_event(
            &conn,
            &event(TransactionKind::Transaction, vec![good, stale]),
        )
        .unwrap(),
    );
    assert_eq!(rejection.status, 412);
    assert_eq!(rejection.entry, Some(1));
    assert!(
        stored_json(&conn, "Patient", "a").is_none(),
        "the first entry must be rolled back"
    );
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM idx_token", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0, "no index rows of the rolled back entry remain");
}

#[test]
fn batch_entries_fail_alone() {
    let conn = store();
    let good = operation(
        ResourceAction::Update,
        "Patient",
        Some("a"),
        Some(patient("a", "1")),
    );
    let mut stale = operation(
        ResourceAction::Update,
        "Patient",
        Some("b"),
        Some(patient("b", "2")),
    );
    stale.if_match = Some("3".to_string());
    let outcomes =
        applied(apply_event(&conn, &event(TransactionKind::Batch, vec![good, stale])).unwrap());
    assert_eq!(outcomes[0].status, 201);
    assert_eq!(outcomes[1].status, 412);
    assert!(outcomes[1].rejection.is_some());
    assert!(stored_json(&conn, "Patient", "a").is_some());
    assert!(stored_json(&conn, "Patient", "b").is_none());
}

#[test]
fn update_replaces_index_rows_and_keeps_history() {
    let conn = store();
    let write = |identifier: &str, if_match: Option<&str>| {
        let mut entry = operation(
            ResourceAction::Update,
            "Patient",
            Some("p"),
            Some(patient("p", identifier)),
        );
        entry.if_match = if_match.map(str::to_string);
        apply_event(&conn, &event(TransactionKind::Single, vec![entry])).unwrap()
    };
    assert_eq!(applied(write("old", None))[0].status, 201);
    let second = applied(write("new", Some("1")));
    assert_eq!(second[0].status, 200);
    assert_eq!(second[0].version, 2);
    assert_eq!(rejected(write("newer", Some("1"))).status, 412);

    assert!(
        criteria::find(&conn, "Patient", "identifier=urn:test|old", 2)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        criteria::find(&conn, "Patient", "identifier=urn:test|new", 2).unwrap(),
        vec![("p".to_string(), 2)]
    );
    let versions: i64 = conn
        .query_row("SELECT count(*) FROM versions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(versions, 2);
}

#[test]
fn conditional_create_matches_existing() {
    let conn = store();
    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Single,
                vec![operation(
                    ResourceAction::Update,
                    "Patient",
                    Some("p1"),
                    Some(patient("p1", "123")),
                )],
            ),
        )
        .unwrap(),
    );

    let mut create = operation(
        ResourceAction::Create,
        "Patient",
        Some("p2"),
        Some(patient("p2", "123")),
    );
    create.if_none_exist = Some("identifier=urn:test|123".to_string());
    let outcome =
        applied(apply_event(&conn, &event(TransactionKind::Single, vec![create.clone()])).unwrap());
    assert_eq!(outcome[0].status, 200);
    assert_eq!(outcome[0].id, "p1");
    assert!(stored_json(&conn, "Patient", "p2").is_none());

    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Single,
                vec![operation(
                    ResourceAction::Update,
                    "Patient",
                    Some("p3"),
                    Some(patient("p3", "123")),
                )],
            ),
        )
        .unwrap(),
    );
    assert_eq!(
        rejected(apply_event(&conn, &event(TransactionKind::Single, vec![create])).unwrap()).status,
        412
    );
}

#[test]
fn conditional_reference_resolves_by_identifier() {
    let conn = store();
    let practitioner = json!({"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999"}]});
    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Load,
                vec![operation(
                    ResourceAction::Update,
                    "Practitioner",
                    Some("pr1"),
                    Some(practitioner),
                )],
            ),
        )
        .unwrap(),
    );
    let encounter = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "participant": [{"individual": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"}}]});
    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Load,
                vec![operation(
                    ResourceAction::Update,
                    "Encounter",
                    Some("e1"),
                    Some(encounter.clone()),
                )],
            ),
        )
        .unwrap(),
    );
    assert_eq!(
        stored_json(&conn, "Encounter", "e1").unwrap()["participant"][0]["individual"]["reference"],
        "Practitioner/pr1"
    );

    let mut missing = encounter;
    missing["participant"][0]["individual"]["reference"] =
        json!("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|0000");
    let rejection = rejected(
        apply_event(
            &conn,
            &event(
                TransactionKind::Load,
                vec![operation(
                    ResourceAction::Update,
                    "Encounter",
                    Some("e2"),
                    Some(missing),
                )],
            ),
        )
        .unwrap(),
    );
    assert_eq!(rejection.code, "not-found");
}

#[test]
fn delete_marks_resource_and_removes_index_rows() {
    let conn = store();
    applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Single,
                vec![operation(
                    ResourceAction::Update,
                    "Patient",
                    Some("p"),
                    Some(patient("p", "1")),
                )],
            ),
        )
        .unwrap(),
    );
    let outcome = applied(
        apply_event(
            &conn,
            &event(
                TransactionKind::Single,
                vec![operation(
                    ResourceAction::Delete,
                    "Patient",
                    Some("p"),
                    None,
                )],
            ),
        )
        .unwrap(),
    );
    assert_eq!(outcome[0].status, 204);
    assert_eq!(outcome[0].version, 2);
    let deleted: i64 = conn
        .query_row("SELECT deleted FROM resources WHERE id = 'p'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(deleted, 1);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM idx_token", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    assert!(
        criteria::find(&conn, "Patient", "_id=p", 2)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn same_resource_twice_in_transaction_is_rejected() {
    let conn = store();
    let first = operation(
        ResourceAction::Update,
        "Patient",
        Some("p"),
        Some(patient("p", "1")),
    );
    let second = operation(
        ResourceAction::Update,
        "Patient",
        Some("p"),
        Some(patient("p", "2")),
    );
    let rejection = rejected(
        apply_event(
            &conn,
            &event(TransactionKind::Transaction, vec![first, second]),
        )
        .unwrap(),
    );
    assert_eq!(rejection.status, 400);
    assert_eq!(rejection.entry, Some(1));
}

/// Events that take every path: prepared creates, prepared entries that turn out to update,
/// placeholders between entries and to earlier loads, conditional references, a batch with
/// a failing entry, a rejected transaction and a delete.
fn mixed_events() -> Vec<ResourceTransaction> {
    let mut observation = operation(
        ResourceAction::Update,
        "Observation",
        Some("o1"),
        Some(json!({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}], "text": "Height"},
                    "subject": {"reference": "urn:uuid:p1"},
                    "valueQuantity": {"value": 170, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}})),
    );
    observation.full_url = Some("urn:uuid:o1".to_string());
    let mut first_patient = operation(
        ResourceAction::Update,
        "Patient",
        Some("p1"),
        Some(patient("p1", "1")),
    );
    first_patient.full_url = Some("urn:uuid:p1".to_string());
    let first_load = event(
        TransactionKind::Load,
        vec![observation.clone(), first_patient],
    );

    let linked = operation(
        ResourceAction::Update,
        "Observation",
        Some("o2"),
        Some(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:p1"},
                    "performer": [{"reference": "Patient?identifier=urn:test|1"}]}),
        ),
    );
    let second_load = event(TransactionKind::Load, vec![linked]);

    let mut changed = observation;
    changed.resource = Some(
        json!({"resourceType": "Observation", "status": "amended", "code": {"text": "y"},
                "subject": {"reference": "Patient/p1"}})
        .to_string(),
    );
    let update = event(TransactionKind::Load, vec![changed]);

    let batch = event(
        TransactionKind::Batch,
        vec![
            operation(
                ResourceAction::Create,
                "Patient",
                Some("p2"),
                Some(patient("p2", "2")),
            ),
            operation(
                ResourceAction::Create,
                "Patient",
                Some("p1"),
                Some(patient("p1", "1")),
            ),
        ],
    );
    let failing = event(
        TransactionKind::Transaction,
        vec![
            operation(
                ResourceAction::Update,
                "Patient",
                Some("p3"),
                Some(patient("p3", "3")),
            ),
            operation(
                ResourceAction::Update,
                "Observation",
                Some("o3"),
                Some(
                    json!({"resourceType": "Observation", "status": "final", "code": {"text": "z"},
                            "subject": {"reference": "urn:uuid:nowhere"}}),
                ),
            ),
        ],
    );
    let delete = event(
        TransactionKind::Single,
        vec![operation(
            ResourceAction::Delete,
            "Patient",
            Some("p2"),
            None,
        )],
    );
    let mut events = vec![first_load, second_load, update, batch, failing, delete];
    for (index, event) in events.iter_mut().enumerate() {
        event.event_id = format!("e{index}");
    }
    events
}

#[test]
fn prepared_and_unprepared_paths_agree() {
    let prepared_store = store();
    let unprepared_store = store();
    for event in mixed_events() {
        let mut prepared = prepare::prepare_entries(&event);
        let mut none: Vec<Option<PreparedEntry>> = event.entries.iter().map(|_| None).collect();
        let bases = LocalBases::none();
        let with_prepared =
            super::apply_event(&prepared_store, &event, &mut prepared, &bases).unwrap();
        let without = super::apply_event(&unprepared_store, &event, &mut none, &bases).unwrap();
        assert_eq!(
            with_prepared, without,
            "outcomes of event {}",
            event.event_id
        );
    }
    assert_eq!(
        hearth_projection::dump(&prepared_store).unwrap(),
        hearth_projection::dump(&unprepared_store).unwrap()
    );
}

#[test]
fn mixed_events_prepare_some_entries() {
    let events = mixed_events();
    let prepared = prepare::prepare_entries(&events[0]);
    assert!(
        prepared.iter().all(Option::is_some),
        "a load linked by fullUrl"
    );
    let prepared = prepare::prepare_entries(&events[1]);
    assert!(
        prepared[0].is_none(),
        "a conditional reference needs the store"
    );
}
