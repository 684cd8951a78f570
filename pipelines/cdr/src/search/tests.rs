//! Tests of search: parsing (with property tests), and every parameter type, modifier,
//! chain, include, sort and paging form run against a small repository.

use hearth_fhir_core::reference::LocalBases;
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::visibility::{Alternative, Visibility};
use crate::{Repository, schema};

const BASE: &str = "http://h/fhir";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn options(strict: bool) -> ParseOptions<'static> {
    ParseOptions {
        strict,
        context: ValueContext {
            base_url: BASE,
            now: now_micros(),
        },
    }
}

/// Splits `a=1&b=2` into (name, raw value) pairs, as the HTTP layer does.
fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn parse_lenient(resource_type: &str, query: &str) -> SearchQuery {
    parse(resource_type, &pairs(query), &options(false))
        .unwrap_or_else(|error| panic!("{resource_type}?{query} does not parse: {error}"))
}

fn observation(id: &str, patient: &str, code: (&str, &str), effective: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code.0, "display": code.1}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": effective,
    })
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

/// A Procedure whose subject is `subject`, for the references that name Patient `p4`
/// relative to this server's base `http://h/fhir`, or to another server's.
fn procedure(id: &str, subject: &str) -> Value {
    json!({"resourceType": "Procedure", "id": id, "status": "completed",
           "subject": {"reference": subject}})
}

/// The resources every repository test searches.
fn resources() -> Vec<Value> {
    let mut o1 = observation(
        "o1",
        "p1",
        ("8302-2", "Body height"),
        "2020-03-01T10:00:00Z",
    );
    o1["valueQuantity"] = quantity(170.0, "cm");
    let mut o2 = observation("o2", "p1", ("29463-7", "Body weight"), "2021-06-01");
    o2["valueQuantity"] = quantity(70.0, "kg");
    let mut o3 = observation("o3", "p2", ("8302-2", "Body height"), "2019-01-01");
    o3["valueQuantity"] = quantity(180.0, "cm");
    o3["status"] = json!("preliminary");
    let mut o4 = observation("o4", "p3", ("29463-7", "Body weight"), "2022-01-01");
    o4["performer"] = json!([{"reference": "Practitioner/dr1"}]);
    let mut o5 = observation("o5", "p2", ("8302-2", "Body height"), "2020-12-31");
    o5["valueQuantity"] = quantity(150.0, "cm");
    o5["derivedFrom"] = json!([{"reference": "Observation/o1"}]);
    let condition = |id: &str, patient: &str, code: &str| {
        json!({"resourceType": "Condition", "id": id,
               "subject": {"reference": format!("Patient/{patient}")},
               "code": {"coding": [{"system": "urn:icd", "code": code}]}})
    };
    vec![
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}),
        json!({"resourceType": "Organization", "id": "org1", "name": "Acme"}),
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-01",
               "name": [{"family": "Smith", "given": ["Ann"]}],
               "identifier": [{"system": "urn:mrn", "value": "1",
                               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1990",
               "name": [{"family": "Smithson", "given": ["Bob"]}],
               "identifier": [{"system": "urn:mrn", "value": "2"}],
               "generalPractitioner": [{"reference": "Practitioner/dr1"}]}),
        json!({"resourceType": "Patient", "id": "p3", "gender": "female",
               "name": [{"family": "Jones", "given": ["Ann"]}],
               "managingOrganization": {"reference": "Organization/org1"}}),
        json!({"resourceType": "Patient", "id": "p4", "name": [{"family": "O'Brien & Co"}]}),
        o1,
        o2,
        o3,
        o4,
        o5,
        condition("c1", "p1", "A01"),
        condition("c2", "p2", "A03"),
        condition("c3", "p3", "B02"),
        json!({"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://example.org/vs/a"}),
        json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final",
               "subject": {"reference": "Patient/p1"},
               "prediction": [{"probabilityDecimal": 0.8}]}),
        procedure("pr-foreign", "http://other.example/fhir/Patient/p4"),
        procedure("pr-local", "http://h/fhir/Patient/p4"),
        procedure("pr-site", "http://h/sites/north/fhir/Patient/p4/_history/1"),
    ]
}

/// A repository holding [`resources`], in that storage order.
struct Store {
    _dir: tempfile::TempDir,
    repository: Repository,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.sqlite");
    let conn = hearth_projection::open_connection(&path).unwrap();
    let bases = LocalBases::new("http://h");
    schema::migrate(&conn, &bases).unwrap();
    let entries = resources()
        .into_iter()
        .map(|resource| ResourceOperation {
            action: ResourceAction::Update,
            resource_type: resource["resourceType"].as_str().unwrap().to_string(),
            id: Some(resource["id"].as_str().unwrap().to_string()),
            full_url: None,
            resource: Some(resource.to_string()),
            if_match: None,
            if_none_exist: None,
            criteria: None,
        })
        .collect();
    let event = ResourceTransaction {
        event_id: "e1".to_string(),
        occurred_at: 1_780_000_000_000_000,
        site_id: "default".to_string(),
        kind: TransactionKind::Transaction,
        entries,
        client_id: None,
        user_id: None,
        request_id: None,
    };
    let mut prepared = crate::prepare::prepare_entries(&event);
    let outcome = crate::apply::apply_event(&conn, &event, &mut prepared, &bases).unwrap();
    assert!(
        matches!(outcome, crate::TransactionOutcome::Applied(_)),
        "the fixture does not apply: {outcome:?}"
    );
    drop(conn);
    Store {
        repository: Repository::open(&path),
        _dir: dir,
    }
}

fn everything(_: &str) -> Option<Visibility> {
    Some(Visibility::everything())
}

const ALL: SearchAccess<'static> = SearchAccess {
    search: &everything,
    read: &everything,
    compartment: None,
};

fn ids(resources: &[crate::StoredResource]) -> Vec<String> {
    resources.iter().map(|r| r.id.clone()).collect()
}

impl Store {
    /// Returns the ids of every match of `Type?query` on one page, in result order.
    fn ids(&self, resource_type: &str, query: &str) -> Vec<String> {
        self.ids_with(resource_type, query, &ALL)
    }

    fn ids_with(&self, resource_type: &str, query: &str, access: &SearchAccess<'_>) -> Vec<String> {
        let parsed = parse(resource_type, &pairs(query), &options(true))
            .unwrap_or_else(|error| panic!("{resource_type}?{query} does not parse: {error}"));
        let page = self.repository.search_page(&parsed, access, 100).unwrap();
        assert!(
            page.next.is_none(),
            "{resource_type}?{query} has a second page"
        );
        let count = self.repository.search_count(&parsed, access).unwrap();
        assert_eq!(
            count as usize,
            page.matches.len(),
            "count of {resource_type}?{query}"
        );
        ids(&page.matches)
    }

    /// Returns the ids of the matches and of the included resources of `Type?query`.
    fn with_included(&self, resource_type: &str, query: &str) -> (Vec<String>, Vec<String>) {
        let parsed = parse_lenient(resource_type, query);
        let page = self.repository.search_page(&parsed, &ALL, 100).unwrap();
        let mut included = ids(&page.included);
        included.sort();
        (ids(&page.matches), included)
    }
}

#[test]
fn string_modifiers() {
    let store = store();
    assert_eq!(store.ids("Patient", "name=smi"), ["p1", "p2"]);
    assert_eq!(store.ids("Patient", "name=SMITH"), ["p1", "p2"]);
    assert_eq!(store.ids("Patient", "name:exact=Smith"), ["p1"]);
    assert!(store.ids("Patient", "name:exact=smith").is_empty());
    assert_eq!(store.ids("Patient", "name:contains=son"), ["p2"]);
    assert_eq!(store.ids("Patient", "family=o%27brien%20%26"), ["p4"]);
    assert_eq!(store.ids("Patient", "given=ann&family=jones"), ["p3"]);
    assert_eq!(store.ids("Patient", "given=bob,jones"), ["p2"]);
}

#[test]
fn token_forms_and_modifiers() {
    let store = store();
    assert_eq!(store.ids("Patient", "gender=female"), ["p1", "p3"]);
    assert_eq!(store.ids("Patient", "identifier=urn:mrn%7C1"), ["p1"]);
    assert!(store.ids("Patient", "identifier=%7C1").is_empty());
    assert_eq!(store.ids("Patient", "identifier=urn:mrn%7C"), ["p1", "p2"]);
    assert_eq!(
        store.ids("Observation", "code=http://loinc.org%7C8302-2"),
        ["o1", "o3", "o5"]
    );
    assert_eq!(store.ids("Condition", "code:not=A01,A03"), ["c3"]);
    assert_eq!(store.ids("Patient", "gender:missing=true"), ["p4"]);
    assert_eq!(
        store.ids("Patient", "gender:missing=false"),
        ["p1", "p2", "p3"]
    );
    assert_eq!(store.ids("Observation", "code:text=weight"), ["o2", "o4"]);
    assert_eq!(
        store.ids("Observation", "code:text=body%20h"),
        ["o1", "o3", "o5"]
    );
    let of_type = "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203%7CMR%7C1";
    assert_eq!(store.ids("Patient", of_type), ["p1"]);
    assert_eq!(store.ids("Patient", "_id=p1,p3"), ["p1", "p3"]);
    assert_eq!(store.ids("Patient", "_id:not=p1"), ["p2", "p3", "p4"]);
}

#[test]
fn date_prefixes() {
    let store = store();
    assert_eq!(store.ids("Patient", "birthdate=1980"), ["p1"]);
    assert_eq!(store.ids("Patient", "birthdate=1980-05-01"), ["p1"]);
    assert_eq!(store.ids("Patient", "birthdate=gt1985"), ["p2"]);
    assert_eq!(store.ids("Patient", "birthdate=le1980-05-01"), ["p1"]);
    assert_eq!(store.ids("Patient", "birthdate=ne1980"), ["p2"]);
    assert_eq!(
        store.ids("Observation", "date=ge2020-01-01"),
        ["o1", "o2", "o4", "o5"]
    );
    assert_eq!(store.ids("Observation", "date=lt2020"), ["o3"]);
    assert_eq!(store.ids("Observation", "date=eb2020-03-01"), ["o3"]);
    assert_eq!(store.ids("Observation", "date=sa2021"), ["o4"]);
    assert_eq!(
        store.ids(
            "Observation",
            "date=gt2020-03-01T09:00:00%2B00:00&date=lt2021"
        ),
        ["o1", "o5"]
    );
    // An unencoded `+` of a time zone arrives as a space and still parses.
    assert_eq!(
        store.ids("Observation", "date=2020-03-01T10:00:00+00:00"),
        ["o1"]
    );
    assert!(
        store
            .ids("Observation", "date=ap2020-03")
            .contains(&"o1".to_string())
    );
}

#[test]
fn quantity_number_and_uri() {
    let store = store();
    let cm = format!("gt160%7C{UCUM}%7Ccm");
    assert_eq!(
        store.ids("Observation", &format!("value-quantity={cm}")),
        ["o1", "o3"]
    );
    assert_eq!(store.ids("Observation", "value-quantity=lt100"), ["o2"]);
    assert_eq!(
        store.ids("Observation", "value-quantity=150%7C%7Ccm"),
        ["o5"]
    );
    assert!(
        store
            .ids("Observation", "value-quantity=150%7C%7Ckg")
            .is_empty()
    );
    assert_eq!(
        store.ids("Observation", "value-quantity=ap175"),
        ["o1", "o3"]
    );
    assert_eq!(
        store.ids("Observation", "value-quantity:missing=true"),
        ["o4"]
    );
    assert_eq!(store.ids("RiskAssessment", "probability=gt0.5"), ["r1"]);
    assert_eq!(store.ids("RiskAssessment", "probability=0.8"), ["r1"]);
    assert!(store.ids("RiskAssessment", "probability=0.7").is_empty());
    assert_eq!(
        store.ids("ValueSet", "url=http://example.org/vs/a"),
        ["vs1"]
    );
    assert_eq!(
        store.ids("ValueSet", "url:below=http://example.org/vs"),
        ["vs1"]
    );
    assert!(
        store
            .ids("ValueSet", "url=http://example.org/vs")
            .is_empty()
    );
    assert_eq!(
        store.ids("ValueSet", "url:above=http://example.org/vs/a/b"),
        ["vs1"]
    );
}

#[test]
fn composite_values() {
    let store = store();
    let query = "code-value-quantity=http://loinc.org%7C8302-2$gt175";
    assert_eq!(store.ids("Observation", query), ["o3"]);
    let query = "code-value-quantity=8302-2$lt175,29463-7$70";
    assert_eq!(store.ids("Observation", query), ["o1", "o2", "o5"]);
}

#[test]
fn references_and_chains() {
    let store = store();
    assert_eq!(store.ids("Observation", "subject=Patient/p1"), ["o1", "o2"]);
    assert_eq!(store.ids("Observation", "patient=p2"), ["o3", "o5"]);
    assert_eq!(store.ids("Observation", "subject:Patient=p1"), ["o1", "o2"]);
    assert_eq!(
        store.ids("Observation", "subject=http://h/fhir/Patient/p1"),
        ["o1", "o2"]
    );
    assert_eq!(
        store.ids("Observation", "subject:Patient.name=jones"),
        ["o4"]
    );
    assert_eq!(
        store.ids("Observation", "patient.gender=male"),
        ["o3", "o5"]
    );
    assert_eq!(
        store.ids("Observation", "performer:Practitioner.name=house"),
        ["o4"]
    );
    assert_eq!(
        store.ids("Observation", "patient.general-practitioner.name=house"),
        ["o3", "o5"]
    );
    assert_eq!(
        store.ids("Patient", "_has:Observation:patient:code=29463-7"),
        ["p1", "p3"]
    );
    assert_eq!(
        store.ids(
            "Practitioner",
            "_has:Observation:performer:patient.name=jones"
        ),
        ["dr1"]
    );
    assert_eq!(store.ids("Condition", "subject.gender:not=female"), ["c2"]);
}

#[test]
fn includes_and_iterate() {
    let store = store();
    let (matches, included) =
        store.with_included("Observation", "code=29463-7&_include=Observation:subject");
    assert_eq!(matches, ["o2", "o4"]);
    assert_eq!(included, ["p1", "p3"]);

    let (_, included) = store.with_included("Patient", "_id=p1&_revinclude=Observation:subject");
    assert_eq!(included, ["o1", "o2"]);

    let query = "_id=o5&_include=Observation:derived-from&_include:iterate=Observation:subject";
    let (_, included) = store.with_included("Observation", query);
    assert_eq!(included, ["o1", "p1", "p2"]);

    let (_, included) = store.with_included("Observation", "_id=o4&_include=*");
    assert_eq!(included, ["dr1", "p3"]);

    let (_, included) = store.with_included(
        "Observation",
        "_id=o4&_include=Observation:performer:Organization",
    );
    assert!(included.is_empty());
}

#[test]
fn sort_on_several_keys() {
    let store = store();
    assert_eq!(
        store.ids("Patient", "_sort=-birthdate"),
        ["p2", "p1", "p3", "p4"]
    );
    assert_eq!(
        store.ids("Patient", "_sort=gender,-birthdate"),
        ["p1", "p3", "p2", "p4"]
    );
    assert_eq!(store.ids("Patient", "_sort=-_id"), ["p4", "p3", "p2", "p1"]);
    assert_eq!(
        store.ids("Observation", "_sort=date"),
        ["o3", "o1", "o5", "o2", "o4"]
    );
    assert_eq!(
        store.ids("Observation", "_sort=code,-value-quantity"),
        ["o2", "o4", "o3", "o1", "o5"]
    );
}

#[test]
fn paging_replays_without_gaps() {
    let store = store();
    for query in ["_count=2", "_count=2&_sort=-_id", "_count=2&_sort=family"] {
        let mut parsed = parse_lenient("Patient", query);
        let mut seen = Vec::new();
        loop {
            let page = store.repository.search_page(&parsed, &ALL, 2).unwrap();
            assert!(page.matches.len() <= 2);
            seen.extend(ids(&page.matches));
            match page.next {
                Some(cursor) => parsed.cursor = Some(cursor),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, ["p1", "p2", "p3", "p4"], "pages of Patient?{query}");
    }
}

#[test]
fn compartment_and_visibility() {
    let store = store();
    let in_p1 = SearchAccess {
        compartment: Some("p1"),
        ..ALL
    };
    assert_eq!(store.ids_with("Observation", "", &in_p1), ["o1", "o2"]);
    assert_eq!(store.ids_with("Patient", "", &in_p1), ["p1"]);

    let patient_p2 = |resource_type: &str| {
        Some(Visibility {
            alternatives: vec![Alternative {
                patient_compartment: (resource_type != "Practitioner").then(|| "p2".to_string()),
                filters: Vec::new(),
            }],
        })
    };
    let scoped = SearchAccess {
        search: &patient_p2,
        read: &patient_p2,
        compartment: None,
    };
    assert_eq!(
        store.ids_with("Observation", "code=8302-2", &scoped),
        ["o3", "o5"]
    );
    // A chain reads the chained type through the same visibility.
    assert_eq!(
        store.ids_with("Observation", "patient.name=smith", &scoped),
        ["o3", "o5"]
    );
    assert!(
        store
            .ids_with("Observation", "patient.name=jones", &scoped)
            .is_empty()
    );

    let vital_signs = |_: &str| {
        Some(Visibility {
            alternatives: vec![Alternative {
                patient_compartment: None,
                filters: vec![("status".to_string(), "preliminary".to_string())],
            }],
        })
    };
    let narrowed = SearchAccess {
        search: &vital_signs,
        read: &vital_signs,
        compartment: None,
    };
    assert_eq!(store.ids_with("Observation", "", &narrowed), ["o3"]);

    // Included resources pass the read visibility: Patients outside p2's compartment drop.
    let parsed = parse_lenient("Observation", "_include=Observation:subject");
    let page = store.repository.search_page(&parsed, &scoped, 100).unwrap();
    assert_eq!(ids(&page.matches), ["o3", "o5"]);
    assert_eq!(ids(&page.included), ["p2"]);
    let no_patients =
        |resource_type: &str| (resource_type != "Patient").then(Visibility::everything);
    let hidden = SearchAccess {
        search: &everything,
        read: &no_patients,
        compartment: None,
    };
    let page = store.repository.search_page(&parsed, &hidden, 100).unwrap();
    assert!(page.included.is_empty());
}

#[test]
fn foreign_references_are_not_local() {
    let store = store();
    let local = ["pr-local", "pr-site"];
    assert_eq!(store.ids("Procedure", "subject=Patient/p4"), local);
    assert_eq!(store.ids("Procedure", "patient=p4"), local);
    assert_eq!(
        store.ids("Procedure", "subject=http://other.example/fhir/Patient/p4"),
        ["pr-foreign"]
    );
    assert_eq!(
        store.ids("Procedure", "subject:Patient.family=o%27brien"),
        local
    );
    assert!(
        store
            .ids("Patient", "_has:Procedure:subject:_id=pr-foreign")
            .is_empty()
    );
    assert_eq!(
        store.ids("Patient", "_has:Procedure:subject:_id=pr-site"),
        ["p4"]
    );

    let in_p4 = SearchAccess {
        compartment: Some("p4"),
        ..ALL
    };
    assert_eq!(store.ids_with("Procedure", "", &in_p4), local);

    let (_, included) =
        store.with_included("Procedure", "_id=pr-foreign&_include=Procedure:subject");
    assert!(included.is_empty(), "included {included:?}");
    let (_, included) = store.with_included("Procedure", "_id=pr-local&_include=Procedure:subject");
    assert_eq!(included, ["p4"]);
    let (_, included) = store.with_included("Patient", "_id=p4&_revinclude=Procedure:subject");
    assert_eq!(included, local);

    let request = EverythingRequest {
        patient: "p4",
        since: None,
        types: None,
    };
    let page = store
        .repository
        .everything_page(&request, &everything, 100, None)
        .unwrap();
    let mut found = ids(&page.resources);
    found.sort();
    assert_eq!(found, ["p4", "pr-local", "pr-site"]);
}

#[test]
fn everything_of_patient() {
    let store = store();
    let request = EverythingRequest {
        patient: "p3",
        since: None,
        types: None,
    };
    let page = store
        .repository
        .everything_page(&request, &everything, 100, None)
        .unwrap();
    let mut found = ids(&page.resources);
    assert_eq!(found[0], "p3");
    found.sort();
    assert_eq!(found, ["c3", "dr1", "o4", "p3"]);
    let count = store
        .repository
        .everything_count(&request, &everything)
        .unwrap();
    assert_eq!(count, 4);

    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .repository
            .everything_page(&request, &everything, 1, cursor)
            .unwrap();
        paged.extend(ids(&page.resources));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    paged.sort();
    assert_eq!(paged, ["c3", "dr1", "o4", "p3"]);

    let types = vec!["Observation".to_string()];
    let request = EverythingRequest {
        types: Some(&types),
        ..request
    };
    let page = store
        .repository
        .everything_page(&request, &everything, 100, None)
        .unwrap();
    assert_eq!(ids(&page.resources), ["o4"]);
}

#[test]
fn strict_and_lenient_handling() {
    let lenient = parse_lenient("Patient", "nonsense=1&name=a&name:fuzzy=b&_count=3");
    assert_eq!(lenient.ignored, ["nonsense", "name:fuzzy"]);
    let echoed: Vec<&str> = lenient.echoed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(echoed, ["name", "_count"]);
    assert_eq!(lenient.count, Some(3));

    let strict = parse("Patient", &pairs("nonsense=1"), &options(true));
    assert!(matches!(strict, Err(SearchError::Unsupported(_))));
    let strict = parse("Patient", &pairs("name:fuzzy=b"), &options(true));
    assert!(matches!(strict, Err(SearchError::Unsupported(_))));
}

#[test]
fn invalid_values_fail_under_any_handling() {
    for query in [
        "birthdate=1980-13",
        "birthdate=xx1980",
        "_count=-1",
        "_count=many",
        "_summary=maybe",
        "_total=some",
        "gender:missing=perhaps",
        "general-practitioner=Nope/1",
        "_include=Nope:subject",
        "_has:Observation:patient",
        "_sort=",
        "_page_after=x",
    ] {
        let result = parse("Patient", &pairs(query), &options(false));
        assert!(
            matches!(result, Err(SearchError::Invalid(_))),
            "Patient?{query} gave {result:?}"
        );
    }
    let deep = "subject:Patient.link:Patient.link:Patient.link:Patient.link:Patient.name=a";
    assert!(parse("Observation", &pairs(deep), &options(false)).is_err());
}

#[test]
fn result_parameters() {
    let query = parse_lenient(
        "Observation",
        "_summary=count&_total=accurate&_elements=Observation.code,subject&_sort=-date,_id",
    );
    assert_eq!(query.summary, Some(Summary::Count));
    assert_eq!(query.total, Some(Total::Accurate));
    assert_eq!(
        query.elements,
        Some(vec!["code".to_string(), "subject".to_string()])
    );
    assert_eq!(query.sort.len(), 2);
    assert!(query.sort[0].descending);
    assert_eq!(query.sort[1].field, SortField::Id);

    let include = parse_lenient(
        "Observation",
        "_include:iterate=Observation:subject:Patient",
    );
    assert_eq!(
        include.includes,
        [Include {
            source_type: Some("Observation".to_string()),
            param: Some("subject".to_string()),
            target_type: Some("Patient".to_string()),
            iterate: true,
        }]
    );
}

/// The plan of the typical search of one patient's Observations of one code since a date
/// starts from the patient's references and checks code and date per row through the
/// index tables' index by resource, with no sort.
#[test]
fn plan_starts_from_patient_reference() {
    let store = store();
    let query = parse_lenient(
        "Observation",
        "patient=Patient/p1&code=http://loinc.org%7C8302-2&date=ge2000-01-01",
    );
    let plan = store.repository.explain_page(&query, &ALL);
    let text = plan.join("\n");
    assert!(
        plan[0].starts_with("SEARCH r USING INTEGER PRIMARY KEY"),
        "{text}"
    );
    assert!(
        text.contains("SEARCH idx_reference USING PRIMARY KEY"),
        "{text}"
    );
    assert!(text.contains("idx_token_by_resource"), "{text}");
    assert!(text.contains("idx_date_by_resource"), "{text}");
    assert!(!text.contains("TEMP B-TREE"), "{text}");

    // Dates alone walk the type in storage order and stop when the page is full.
    let query = parse_lenient("Observation", "date=ge2000-01-01");
    let plan = store.repository.explain_page(&query, &ALL);
    let text = plan.join("\n");
    assert!(plan[0].contains("resources_by_type_rid"), "{text}");
    assert!(!text.contains("TEMP B-TREE"), "{text}");
}

/// Every filter that can find the rows of a search, and every one that can only check
/// them, combined in pairs and triples: the matches must be the matches common to each
/// filter alone, whichever filter the plan starts from.
#[test]
fn combined_filters_match_intersection() {
    let store = store();
    let filters = [
        "patient=Patient/p1",
        "subject=p2",
        "code=http://loinc.org%7C8302-2",
        "code=29463-7",
        "status=final",
        "status:not=final",
        "date=ge2020-01-01",
        "date=lt2021",
        "value-quantity=gt100",
        "_id=o1,o3,o4",
        "patient.name=smith",
        "code:text=body",
        "category:missing=false",
        "performer:missing=true",
    ];
    let single: Vec<Vec<String>> = filters
        .iter()
        .map(|filter| store.ids("Observation", filter))
        .collect();
    let storage_order = store.ids("Observation", "");
    let mut combinations = Vec::new();
    for a in 0..filters.len() {
        for b in a + 1..filters.len() {
            combinations.push(vec![a, b]);
            for c in b + 1..filters.len() {
                combinations.push(vec![a, b, c]);
            }
        }
    }
    for combination in combinations {
        let query: Vec<&str> = combination.iter().map(|&i| filters[i]).collect();
        let query = query.join("&");
        let expected: Vec<String> = storage_order
            .iter()
            .filter(|id| combination.iter().all(|&i| single[i].contains(id)))
            .cloned()
            .collect();
        assert_eq!(
            store.ids("Observation", &query),
            expected,
            "Observation?{query}"
        );
    }
}

/// The same combinations as [`combined_filters_match_intersection`] under a patient scope,
/// which can also find the rows.
#[test]
fn combined_filters_within_patient_scope() {
    let store = store();
    let patient_p2 = |_: &str| {
        Some(Visibility {
            alternatives: vec![Alternative {
                patient_compartment: Some("p2".to_string()),
                filters: vec![("status".to_string(), "final,preliminary".to_string())],
            }],
        })
    };
    let scoped = SearchAccess {
        search: &patient_p2,
        read: &patient_p2,
        compartment: None,
    };
    assert_eq!(store.ids_with("Observation", "", &scoped), ["o3", "o5"]);
    assert_eq!(
        store.ids_with("Observation", "code=8302-2&date=ge2020", &scoped),
        ["o5"]
    );
    assert_eq!(
        store.ids_with("Observation", "patient=Patient/p2&status=final", &scoped),
        ["o5"]
    );
    assert!(
        store
            .ids_with("Observation", "patient=Patient/p1", &scoped)
            .is_empty()
    );
}

/// Returns the (type, id) of every match of a system-level search on one page.
fn system_ids(store: &Store, query: &str, access: &SearchAccess<'_>) -> Vec<String> {
    let parsed = parse_system(&pairs(query), &options(true))
        .unwrap_or_else(|error| panic!("?{query} does not parse: {error}"));
    let page = store
        .repository
        .system_search_page(&parsed, access, 100)
        .unwrap();
    assert!(page.next.is_none(), "?{query} has a second page");
    let count = store
        .repository
        .system_search_count(&parsed, access)
        .unwrap();
    assert_eq!(count as usize, page.matches.len(), "count of ?{query}");
    page.matches
        .iter()
        .map(|r| format!("{}/{}", r.resource_type, r.id))
        .collect()
}

#[test]
fn system_search_across_types() {
    let store = store();
    assert_eq!(
        system_ids(
            &store,
            "_type=Condition,Observation&patient=Patient/p1",
            &ALL
        ),
        ["Observation/o1", "Observation/o2", "Condition/c1"]
    );
    assert_eq!(
        system_ids(
            &store,
            "_type=Condition,Observation&patient=p1&_sort=-_id",
            &ALL
        ),
        ["Observation/o2", "Observation/o1", "Condition/c1"]
    );
    assert_eq!(
        system_ids(&store, "_id=p1,o1,c1,nothing", &ALL),
        ["Patient/p1", "Observation/o1", "Condition/c1"]
    );
    assert_eq!(
        system_ids(&store, "_type=Practitioner,Organization", &ALL),
        ["Practitioner/dr1", "Organization/org1"]
    );
    let every = system_ids(&store, "", &ALL);
    assert_eq!(every.len(), resources().len());
    assert_eq!(every[0], "Practitioner/dr1");
    // `_lastUpdated` is a parameter of every type.
    assert_eq!(
        system_ids(&store, "_lastUpdated=gt2000", &ALL).len(),
        every.len()
    );
    assert!(system_ids(&store, "_lastUpdated=lt2000", &ALL).is_empty());
}

#[test]
fn system_search_parameters_every_type_has() {
    // `code` is not a parameter of Patient, so it is ignored for both types.
    let lenient = parse_system(
        &pairs("_type=Observation,Patient&code=1&_count=3"),
        &options(false),
    )
    .unwrap();
    assert_eq!(lenient.common.ignored, ["code"]);
    assert_eq!(lenient.common.count, Some(3));
    assert_eq!(
        lenient.common.echoed,
        [
            ("_type".to_string(), "Observation,Patient".to_string()),
            ("_count".to_string(), "3".to_string()),
        ]
    );
    assert!(lenient.filters("Observation").unwrap().is_empty());
    assert!(parse_system(&pairs("_type=Observation,Patient&code=1"), &options(true)).is_err());
    assert!(parse_system(&pairs("_type=NoSuchType"), &options(false)).is_err());
    // Sorting by a parameter has no meaning across types.
    let sorted = parse_system(
        &pairs("_type=Observation,Encounter&_sort=date"),
        &options(false),
    )
    .unwrap();
    assert!(sorted.common.sort.is_empty());
    assert_eq!(sorted.common.ignored, ["_sort"]);
    assert!(
        parse_system(
            &pairs("_type=Observation,Encounter&_sort=date"),
            &options(true)
        )
        .is_err()
    );
}

#[test]
fn system_search_paging_and_visibility() {
    let store = store();
    let mut parsed =
        parse_system(&pairs("_type=Patient,Condition&_count=2"), &options(true)).unwrap();
    let mut seen = Vec::new();
    loop {
        let page = store
            .repository
            .system_search_page(&parsed, &ALL, 2)
            .unwrap();
        assert!(page.matches.len() <= 2);
        seen.extend(ids(&page.matches));
        match page.next {
            Some(cursor) => parsed.common.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, ["p1", "p2", "p3", "p4", "c1", "c2", "c3"]);

    let patient_p1 = |resource_type: &str| {
        (resource_type != "Condition").then(|| Visibility {
            alternatives: vec![Alternative {
                patient_compartment: Some("p1".to_string()),
                filters: Vec::new(),
            }],
        })
    };
    let scoped = SearchAccess {
        search: &patient_p1,
        read: &patient_p1,
        compartment: None,
    };
    assert_eq!(
        system_ids(&store, "", &scoped),
        [
            "Patient/p1",
            "Observation/o1",
            "Observation/o2",
            "RiskAssessment/r1"
        ]
    );
    assert_eq!(
        system_ids(&store, "_type=Observation,Patient&_id=o1,o3,p1,p2", &scoped),
        ["Patient/p1", "Observation/o1"]
    );
}

/// Escapes the search separators in `text`, the inverse of splitting and unescaping.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '\\' | ',' | '|' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

proptest! {
    #[test]
    fn parse_never_panics(name in "[a-z_:.\\-]{0,24}", value in "\\PC{0,32}") {
        let _ = parse("Observation", &[(name.clone(), encode(&value))], &options(false));
        let _ = parse("Observation", &[(name, value)], &options(true));
    }

    #[test]
    fn escaped_values_split_back(values in proptest::collection::vec("\\PC{1,12}", 1..6)) {
        let joined: Vec<String> = values.iter().map(|v| escape(v)).collect();
        let joined = joined.join(",");
        let parts: Vec<String> = values::split_unescaped(&joined, ',')
            .into_iter()
            .map(values::unescape)
            .collect();
        prop_assert_eq!(parts, values);
    }

    #[test]
    fn token_values_round_trip(system in "[a-z:/.]{1,20}", code in "\\PC{1,12}") {
        let raw = encode(&format!("{}|{}", escape(&system), escape(&code)));
        let query = parse("Patient", &[("identifier".to_string(), raw)], &options(true)).unwrap();
        let expected = Filter::Param {
            param: crate::params::id("Patient", "identifier").unwrap(),
            matcher: Matcher::Token(vec![TokenValue {
                system: Some(system),
                code: Some(code),
            }]),
            negated: false,
        };
        prop_assert_eq!(&query.filters, &vec![expected]);
        prop_assert_eq!(query.echoed.len(), 1);
    }

    #[test]
    fn date_prefixes_parse(
        prefix in prop::sample::select(vec!["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]),
        year in 1900u32..2100,
        month in 1u32..=12,
        day in 1u32..=28,
    ) {
        let value = format!("{prefix}{year:04}-{month:02}-{day:02}");
        let query = parse("Patient", &[("birthdate".to_string(), value)], &options(true)).unwrap();
        let Filter::Param { matcher: Matcher::Date(dates), .. } = &query.filters[0] else {
            panic!("not a date filter: {:?}", query.filters);
        };
        let (expected, _) = values::split_prefix(prefix);
        prop_assert_eq!(dates[0].prefix, expected);
        prop_assert!(dates[0].range.low <= dates[0].range.high);
    }

    #[test]
    fn count_parses_any_whole_number(count in 0usize..100_000) {
        let query = parse("Patient", &[("_count".to_string(), count.to_string())], &options(true)).unwrap();
        prop_assert_eq!(query.count, Some(count));
    }
}
