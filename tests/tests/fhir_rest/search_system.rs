//! System-level search over HTTP: `[base]?_type=...` and `[base]/_search` (GET and POST),
//! with paging links that replay the search, `_include`, sorting, strict and lenient
//! handling, and the CapabilityStatement entry.

use reqwest::Method;

use crate::client::{assert_outcome, link};
use crate::search::{all_pages, fixture, ids_with_mode, search, sorted};

/// `Type/id` of each match of a searchset, in Bundle order.
fn typed_matches(bundle: &serde_json::Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == "match")
        .map(|entry| {
            let resource = &entry["resource"];
            format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn system_search_spans_types() {
    let (_server, fhir) = fixture();
    let bundle = search(&fhir, "_search?_type=Observation,Condition&patient=p1");
    assert_eq!(
        typed_matches(&bundle),
        ["Observation/o1", "Observation/o2", "Condition/c1"]
    );
    assert_eq!(bundle["total"], 3, "{bundle}");
    let own = link(&bundle, "self").expect("a self link");
    assert!(
        own.starts_with(&format!(
            "{}?_type=Observation,Condition&patient=p1",
            fhir.base
        )),
        "{own}"
    );

    // The base itself takes the same search.
    let bundle = search(&fhir, &format!("{}?_id=p2,c2,dr1", fhir.base));
    assert_eq!(
        typed_matches(&bundle),
        ["Practitioner/dr1", "Patient/p2", "Condition/c2"]
    );

    let bundle = search(&fhir, "_search?_type=Patient,Condition&_sort=-_id&_count=3");
    assert_eq!(
        typed_matches(&bundle),
        ["Patient/p2", "Patient/p1", "Condition/c3"]
    );
    let (ids, pages) = all_pages(&fhir, bundle);
    assert_eq!(ids, ["p2", "p1", "c3", "c2", "c1"]);
    assert_eq!(pages, 2);

    let bundle = search(
        &fhir,
        "_search?_type=Observation&_id=o4&_include=Observation:performer",
    );
    assert_eq!(ids_with_mode(&bundle, "match"), ["o4"]);
    assert_eq!(ids_with_mode(&bundle, "include"), ["dr1"]);

    let bundle = search(&fhir, "_search?_type=Observation,Condition&_count=0");
    assert_eq!(bundle["total"], 8, "{bundle}");
    assert!(bundle.get("entry").is_none(), "{bundle}");
}

#[test]
fn system_post_search_pages_with_get() {
    let (_server, fhir) = fixture();
    let reply = fhir.send(
        Method::POST,
        "_search",
        "application/x-www-form-urlencoded",
        "_type=Condition%2CPatient&_count=2",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let first = reply.json();
    let next = link(&first, "next").expect("a next link after a POST search");
    assert!(
        next.starts_with(&format!("{}?_type=Condition,Patient&_count=2&", fhir.base)),
        "the next link is a GET search of the base: {next}"
    );
    let (ids, pages) = all_pages(&fhir, first);
    assert_eq!(ids, ["p1", "p2", "c1", "c2", "c3"]);
    assert_eq!(pages, 3);
}

#[test]
fn system_search_parameters_of_every_type() {
    let (_server, fhir) = fixture();
    // `code` is no parameter of Patient, so the search ignores it and reports that in an
    // OperationOutcome entry.
    let bundle = search(
        &fhir,
        "_search?_type=Observation,Patient&code=8302-2&_count=50",
    );
    assert_eq!(
        sorted(&ids_with_mode(&bundle, "match")).len(),
        7,
        "{bundle}"
    );
    let outcome = ids_with_mode(&bundle, "outcome");
    assert_eq!(outcome.len(), 1, "{bundle}");
    let own = link(&bundle, "self").expect("a self link");
    assert!(!own.contains("code="), "{own}");

    let strict = fhir.get_with(
        "_search?_type=Observation,Patient&code=8302-2",
        &[("Prefer", "handling=strict")],
    );
    assert_outcome(&strict, 400);
    assert_outcome(&fhir.get("_search?_type=NoSuchType"), 400);
    assert_outcome(&fhir.get("_search?_type=Observation&date=notadate"), 400);
}

#[test]
fn capability_statement_lists_system_search() {
    let (_server, fhir) = fixture();
    let statement = fhir.read("metadata");
    let rest = &statement["rest"][0];
    let interactions = rest["interaction"].to_string();
    assert!(interactions.contains("search-system"), "{interactions}");
    let params: Vec<&str> = rest["searchParam"]
        .as_array()
        .expect("system searchParam")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["_id", "_lastUpdated", "_tag", "_profile", "_security"] {
        assert!(
            params.contains(&name),
            "system search lists {name}: {params:?}"
        );
    }
    assert!(!params.contains(&"code"), "{params:?}");
    assert!(!params.contains(&"_text"), "{params:?}");
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    system_search_spans_types,
    system_post_search_pages_with_get,
    system_search_parameters_of_every_type,
    capability_statement_lists_system_search,
);
