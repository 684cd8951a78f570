//! Search over HTTP: `_count=0` and `_summary=count`, paging links that replay the search
//! (also after a POST search and with awkward characters), every parameter type, the
//! modifiers, chains, `_has`, includes, sorting, `_summary`, `_elements`, `_total`, strict
//! and lenient handling, compartment search and `$everything`.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Fhir, assert_outcome, entry_resources, link, start_server};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn observation(id: &str, patient: &str, code: &str, effective: &str, value: Option<f64>) -> Value {
    let mut observation = json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": format!("Code {code}")}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": effective,
    });
    if let Some(value) = value {
        observation["valueQuantity"] =
            json!({"value": value, "unit": "cm", "system": UCUM, "code": "cm"});
    }
    observation
}

fn condition(id: &str, patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "subject": {"reference": format!("Patient/{patient}")},
        "code": {"coding": [{"system": "urn:icd", "code": code}]},
    })
}

/// Stores each resource under its own id.
pub(crate) fn put_all(fhir: &Fhir, resources: &[Value]) {
    for resource in resources {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().expect("a resourceType"),
            resource["id"].as_str().expect("an id")
        );
        let reply = fhir.put(&path, resource);
        assert!(
            reply.status == 200 || reply.status == 201,
            "storing {path}: {}",
            reply.body
        );
    }
}

/// A server holding two patients with Observations and Conditions, a Practitioner and
/// an Organization.
pub(crate) fn fixture() -> (crate::client::TestServer, Fhir) {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let mut performed = observation("o4", "p2", "29463-7", "2022-01-01", None);
    performed["performer"] = json!([{"reference": "Practitioner/dr1"}]);
    let mut derived = observation("o5", "p2", "8302-2", "2020-12-31", Some(150.0));
    derived["derivedFrom"] = json!([{"reference": "Observation/o1"}]);
    put_all(
        &fhir,
        &[
            json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}),
            json!({"resourceType": "Organization", "id": "org1", "name": "Acme"}),
            json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-01",
                   "name": [{"family": "Smith", "given": ["Ann"]}],
                   "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann Smith</div>"},
                   "identifier": [{"system": "urn:mrn", "value": "1",
                                   "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
                   "managingOrganization": {"reference": "Organization/org1"}}),
            json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1990",
                   "name": [{"family": "Smithson", "given": ["Bob"]}],
                   "generalPractitioner": [{"reference": "Practitioner/dr1"}]}),
            observation("o1", "p1", "8302-2", "2020-03-01T10:00:00Z", Some(170.0)),
            observation("o2", "p1", "29463-7", "2021-06-01", Some(70.0)),
            observation("o3", "p2", "8302-2", "2019-01-01", Some(180.0)),
            performed,
            derived,
            condition("c1", "p1", "A01"),
            condition("c2", "p2", "A03"),
            condition("c3", "p2", "B02"),
        ],
    );
    (server, fhir)
}

/// The searchset of `path`, which must be 200.
pub(crate) fn search(fhir: &Fhir, path: &str) -> Value {
    let reply = fhir.get(path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    bundle
}

/// Ids of the entries with `search.mode` equal to `mode`, in Bundle order.
pub(crate) fn ids_with_mode(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == mode)
        .map(|entry| {
            entry["resource"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Ids of the matches of `path` on its first page.
fn matches(fhir: &Fhir, path: &str) -> Vec<String> {
    ids_with_mode(&search(fhir, path), "match")
}

/// Follows `next` links from `path` and returns every match id with the number of pages.
pub(crate) fn all_pages(fhir: &Fhir, first: Value) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut page = first;
    loop {
        pages += 1;
        ids.extend(ids_with_mode(&page, "match"));
        let Some(next) = link(&page, "next") else {
            break;
        };
        assert!(pages < 50, "too many pages");
        page = search(fhir, &next);
    }
    (ids, pages)
}

pub(crate) fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

#[test]
fn count_zero_gives_total_only() {
    let (_server, fhir) = fixture();
    for path in [
        "Observation?patient=p1&_count=0",
        "Observation?patient=p1&_summary=count",
    ] {
        let bundle = search(&fhir, path);
        assert_eq!(bundle["total"], 2, "{path}: {bundle}");
        assert!(bundle.get("entry").is_none(), "{path}: {bundle}");
        assert_eq!(link(&bundle, "next"), None, "{path}: {bundle}");
        assert!(link(&bundle, "self").is_some(), "{path}: {bundle}");
    }
}

#[test]
fn next_links_replay_the_search() {
    let (_server, fhir) = fixture();
    let first = search(
        &fhir,
        "Observation?date=gt2020-01-01T00:00:00%2B00:00&_count=2",
    );
    let (ids, pages) = all_pages(&fhir, first);
    assert_eq!(sorted(&ids), ["o1", "o2", "o4", "o5"]);
    assert_eq!(pages, 2);

    let first = search(&fhir, "Condition?code:not=A01,A03&_count=2");
    let (ids, _) = all_pages(&fhir, first);
    assert_eq!(ids, ["c3"]);

    let first = search(&fhir, "Condition?code:not=A01&_count=1&_sort=-_id");
    let (ids, pages) = all_pages(&fhir, first);
    assert_eq!(ids, ["c3", "c2"]);
    assert_eq!(pages, 2);
}

#[test]
fn next_links_keep_awkward_values_encoded() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let family = "O'Brien & \"Søn\" + Co|x";
    for (id, given) in [("a1", "Ann"), ("a2", "Bo"), ("a3", "Cy")] {
        put_all(
            &fhir,
            &[json!({"resourceType": "Patient", "id": id,
                     "name": [{"family": family, "given": [given]}],
                     "identifier": [{"system": "urn:odd", "value": "a&b|c+d"}]})],
        );
    }
    put_all(
        &fhir,
        &[json!({"resourceType": "Patient", "id": "z1", "name": [{"family": "O'Brien"}]})],
    );
    let encoded = "O%27Brien%20%26%20%22S%C3%B8n%22%20%2B%20Co%5C%7Cx";
    let first = search(&fhir, &format!("Patient?family:exact={encoded}&_count=1"));
    let next = link(&first, "next").expect("a next link");
    assert!(next.contains("%26"), "& stays encoded in {next}");
    assert!(next.contains("%2B"), "+ stays encoded in {next}");
    assert!(next.contains("%C3%B8"), "ø stays encoded in {next}");
    let (ids, pages) = all_pages(&fhir, first);
    assert_eq!(ids, ["a1", "a2", "a3"]);
    assert_eq!(pages, 3);

    let first = search(
        &fhir,
        "Patient?identifier=urn:odd%7Ca%26b%5C%7Cc%2Bd&_count=2",
    );
    let (ids, _) = all_pages(&fhir, first);
    assert_eq!(ids, ["a1", "a2", "a3"]);
}

#[test]
fn post_search_pages_with_get() {
    let (_server, fhir) = fixture();
    let reply = fhir.send(
        Method::POST,
        "Observation/_search",
        "application/x-www-form-urlencoded",
        "code=http%3A%2F%2Floinc.org%7C8302-2&_count=2",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let first = reply.json();
    let next = link(&first, "next").expect("a next link after a POST search");
    assert!(
        next.contains("/Observation?"),
        "the next link is a GET search: {next}"
    );
    let (ids, _) = all_pages(&fhir, first);
    assert_eq!(sorted(&ids), ["o1", "o3", "o5"]);

    let wrong_type = fhir.send(
        Method::POST,
        "Observation/_search",
        "text/plain",
        "code=1",
        &[],
    );
    assert_outcome(&wrong_type, 415);
}

#[test]
fn parameter_types_match() {
    let (_server, fhir) = fixture();
    let cases: &[(&str, &[&str])] = &[
        ("Patient?name=smi", &["p1", "p2"]),
        ("Patient?name:exact=Smith", &["p1"]),
        ("Patient?name:contains=SON", &["p2"]),
        ("Patient?gender=female", &["p1"]),
        ("Patient?identifier=urn:mrn%7C1", &["p1"]),
        ("Patient?birthdate=1980", &["p1"]),
        ("Patient?birthdate=ge1985-01-01", &["p2"]),
        ("Patient?birthdate:missing=true", &[]),
        ("Observation?date=lt2020", &["o3"]),
        ("Observation?date=eb2020-03-01&date=sa2018", &["o3"]),
        ("Observation?date=ne2020", &["o2", "o3", "o4"]),
        (
            "Observation?value-quantity=gt160%7Chttp://unitsofmeasure.org%7Ccm",
            &["o1", "o3"],
        ),
        ("Observation?value-quantity=le70", &["o2"]),
        ("Observation?value-quantity=ap175", &["o1", "o3"]),
        ("Observation?value-quantity:missing=true", &["o4"]),
        ("Observation?code-value-quantity=8302-2$gt175", &["o3"]),
        ("Observation?subject=Patient/p1", &["o1", "o2"]),
        ("Observation?patient=p2&code=8302-2", &["o3", "o5"]),
        ("Condition?code:not=A01,A03", &["c3"]),
        ("Observation?code:text=code%2029463", &["o2", "o4"]),
        (
            "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203%7CMR%7C1",
            &["p1"],
        ),
        ("Patient?_id=p2,p9", &["p2"]),
        ("Patient?organization=Organization/org1", &["p1"]),
    ];
    for (path, expected) in cases {
        assert_eq!(&matches(&fhir, path), expected, "GET {path}");
    }
}

#[test]
fn chains_and_reverse_chains() {
    let (_server, fhir) = fixture();
    let cases: &[(&str, &[&str])] = &[
        (
            "Observation?subject:Patient.name=smithson",
            &["o3", "o4", "o5"],
        ),
        ("Observation?patient.gender=female", &["o1", "o2"]),
        ("Observation?performer:Practitioner.name=house", &["o4"]),
        (
            "Observation?patient.general-practitioner.name=house",
            &["o3", "o4", "o5"],
        ),
        (
            "Patient?_has:Observation:patient:code=29463-7",
            &["p1", "p2"],
        ),
        ("Patient?_has:Condition:subject:code=B02", &["p2"]),
        (
            "Practitioner?_has:Observation:performer:patient.name=smithson",
            &["dr1"],
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(&matches(&fhir, path), expected, "GET {path}");
    }
}

#[test]
fn includes_and_revincludes() {
    let (_server, fhir) = fixture();
    let bundle = search(
        &fhir,
        "Observation?code=29463-7&_include=Observation:subject",
    );
    assert_eq!(ids_with_mode(&bundle, "match"), ["o2", "o4"]);
    assert_eq!(sorted(&ids_with_mode(&bundle, "include")), ["p1", "p2"]);
    assert_eq!(
        bundle["total"], 2,
        "the total counts matches only: {bundle}"
    );

    let bundle = search(&fhir, "Patient?_id=p1&_revinclude=Observation:subject");
    assert_eq!(sorted(&ids_with_mode(&bundle, "include")), ["o1", "o2"]);

    let path =
        "Observation?_id=o5&_include=Observation:derived-from&_include:iterate=Observation:subject";
    let bundle = search(&fhir, path);
    assert_eq!(
        sorted(&ids_with_mode(&bundle, "include")),
        ["o1", "p1", "p2"]
    );

    let path =
        "Patient?_id=p1&_revinclude=Observation:subject&_include:iterate=Observation:performer";
    let bundle = search(&fhir, path);
    assert_eq!(sorted(&ids_with_mode(&bundle, "include")), ["o1", "o2"]);
    let path =
        "Patient?_id=p2&_revinclude=Observation:subject&_include:iterate=Observation:performer";
    let bundle = search(&fhir, path);
    assert_eq!(
        sorted(&ids_with_mode(&bundle, "include")),
        ["dr1", "o3", "o4", "o5"]
    );
}

#[test]
fn sort_on_several_keys() {
    let (_server, fhir) = fixture();
    assert_eq!(
        matches(&fhir, "Observation?_sort=code,-date"),
        ["o4", "o2", "o5", "o1", "o3"]
    );
    assert_eq!(
        matches(&fhir, "Observation?_sort=-value-quantity"),
        ["o3", "o1", "o5", "o2", "o4"]
    );
    assert_eq!(matches(&fhir, "Patient?_sort=-birthdate"), ["p2", "p1"]);
    let first = search(&fhir, "Observation?_sort=date&_count=2");
    let (ids, pages) = all_pages(&fhir, first);
    assert_eq!(ids, ["o3", "o1", "o5", "o2", "o4"]);
    assert_eq!(pages, 3);
}

fn is_subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|tag| tag["code"] == "SUBSETTED")
}

#[test]
fn summary_and_elements_subset_entries() {
    let (_server, fhir) = fixture();
    let bundle = search(&fhir, "Patient?_id=p1&_summary=true");
    let patient = &entry_resources(&bundle)[0];
    assert!(patient.get("text").is_none(), "{patient}");
    assert_eq!(patient["name"][0]["family"], "Smith");
    assert!(is_subsetted(patient), "{patient}");

    let bundle = search(&fhir, "Patient?_id=p1&_summary=text");
    let patient = &entry_resources(&bundle)[0];
    assert!(patient.get("text").is_some(), "{patient}");
    assert!(patient.get("name").is_none(), "{patient}");

    let bundle = search(&fhir, "Patient?_id=p1&_summary=data");
    let patient = &entry_resources(&bundle)[0];
    assert!(patient.get("text").is_none(), "{patient}");
    assert!(patient.get("managingOrganization").is_some(), "{patient}");

    let bundle = search(&fhir, "Observation?_id=o1&_elements=subject");
    let observation = &entry_resources(&bundle)[0];
    let mut keys: Vec<&str> = observation
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    // status and code are mandatory, so they stay.
    assert_eq!(
        keys,
        ["code", "id", "meta", "resourceType", "status", "subject"]
    );
    assert!(is_subsetted(observation), "{observation}");

    let bundle = search(&fhir, "Observation?_id=o1");
    assert!(!is_subsetted(&entry_resources(&bundle)[0]));
}

#[test]
fn total_parameter() {
    let (_server, fhir) = fixture();
    let bundle = search(&fhir, "Observation?_count=2&_total=accurate");
    assert_eq!(bundle["total"], 5, "{bundle}");
    assert_eq!(ids_with_mode(&bundle, "match").len(), 2);
    let bundle = search(&fhir, "Observation?_total=none");
    assert!(bundle.get("total").is_none(), "{bundle}");
    let bundle = search(&fhir, "Observation");
    assert_eq!(
        bundle["total"], 5,
        "a single page states its total: {bundle}"
    );
}

#[test]
fn lenient_and_strict_handling() {
    let (_server, fhir) = fixture();
    let path = "Patient?nonsense=1&name=smith&gender:fuzzy=x";
    let bundle = search(&fhir, path);
    assert_eq!(ids_with_mode(&bundle, "match"), ["p1", "p2"]);
    let self_link = link(&bundle, "self").expect("a self link");
    assert!(self_link.ends_with("/Patient?name=smith"), "{self_link}");
    let outcome = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["search"]["mode"] == "outcome")
        .expect("an outcome entry names the ignored parameters");
    let diagnostics = outcome["resource"]["issue"][0]["diagnostics"].to_string();
    assert!(diagnostics.contains("nonsense"), "{diagnostics}");
    assert!(diagnostics.contains("gender:fuzzy"), "{diagnostics}");

    let reply = fhir.get_with(path, &[("Prefer", "handling=lenient")]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = fhir.get_with(path, &[("Prefer", "handling=strict")]);
    let diagnostics = assert_outcome(&reply, 400);
    assert!(diagnostics.contains("nonsense"), "{diagnostics}");
}

#[test]
fn invalid_searches_are_400() {
    let (_server, fhir) = fixture();
    for path in [
        "Patient?birthdate=1980-13-01",
        "Patient?birthdate=xx1980",
        "Patient?_count=-1",
        "Patient?_count=ten",
        "Patient?_summary=maybe",
        "Patient?_total=perhaps",
        "Patient?gender:missing=maybe",
        "Observation?subject=Nope/1",
        "Observation?value-quantity=heavy",
        "Observation?_include=Nope:subject",
        "Observation?code-value-quantity=8302-2",
        "Patient?_has:Observation:patient",
        "Patient?_page_after=x",
        "Patient?_sort=",
        "Patient?gender.name=x",
    ] {
        let reply = fhir.get(path);
        assert_outcome(&reply, 400);
    }
    assert_outcome(&fhir.get("Nope?name=x"), 404);
    assert_outcome(&fhir.get("Patient/p1/Nope"), 404);
}

#[test]
fn compartment_search() {
    let (_server, fhir) = fixture();
    assert_eq!(matches(&fhir, "Patient/p1/Observation"), ["o1", "o2"]);
    assert_eq!(
        matches(&fhir, "Patient/p2/Observation?code=8302-2"),
        ["o3", "o5"]
    );
    assert_eq!(matches(&fhir, "Patient/p2/Condition?code:not=A03"), ["c3"]);
    let first = search(&fhir, "Patient/p2/Observation?_count=2");
    let next = link(&first, "next").expect("a next link");
    assert!(next.contains("/Patient/p2/Observation?"), "{next}");
    let (ids, _) = all_pages(&fhir, first);
    assert_eq!(sorted(&ids), ["o3", "o4", "o5"]);
    assert_outcome(&fhir.get("Patient/p9/Observation"), 404);
}

#[test]
fn everything_of_a_patient() {
    let (_server, fhir) = fixture();
    let bundle = search(&fhir, "Patient/p2/$everything");
    let ids = ids_with_mode(&bundle, "match");
    assert_eq!(ids[0], "p2", "the Patient comes first: {ids:?}");
    let found: BTreeSet<String> = ids.iter().cloned().collect();
    let expected: BTreeSet<String> = ["p2", "o3", "o4", "o5", "c2", "c3", "dr1"]
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(found, expected);
    assert_eq!(ids.len(), expected.len(), "no resource twice: {ids:?}");

    let first = search(&fhir, "Patient/p2/$everything?_count=3");
    let (paged, pages) = all_pages(&fhir, first);
    assert_eq!(pages, 3);
    assert_eq!(paged, ids);

    let bundle = search(&fhir, "Patient/p2/$everything?_type=Condition");
    assert_eq!(sorted(&ids_with_mode(&bundle, "match")), ["c2", "c3"]);
    assert_outcome(&fhir.get("Patient/p9/$everything"), 404);
    assert_outcome(&fhir.get("Observation/o1/$everything"), 404);
    assert_outcome(&fhir.get("Patient/p2/$everything?_since=yesterday"), 400);
}

#[test]
fn capability_statement_lists_search() {
    let (_server, fhir) = fixture();
    let statement = fhir.read("metadata");
    let resources = statement["rest"][0]["resource"]
        .as_array()
        .expect("resources");
    let observation = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .expect("Observation is listed");
    let params: BTreeSet<&str> = observation["searchParam"]
        .as_array()
        .expect("searchParam")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "_id",
        "_lastUpdated",
        "code",
        "date",
        "patient",
        "value-quantity",
        "code-value-quantity",
    ] {
        assert!(params.contains(name), "Observation lists {name}");
    }
    assert!(!params.contains("_text"), "_text is not searchable");
    let includes = observation["searchInclude"].to_string();
    assert!(includes.contains("Observation:subject"), "{includes}");
    let patient = resources
        .iter()
        .find(|r| r["type"] == "Patient")
        .expect("Patient is listed");
    assert!(patient["operation"].to_string().contains("everything"));
    let interactions = observation["interaction"].to_string();
    assert!(interactions.contains("search-type"), "{interactions}");

    // Every operation defined under this base resolves to its OperationDefinition.
    let mut operations: Vec<&Value> = statement["rest"][0]["operation"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    for resource in resources {
        operations.extend(resource["operation"].as_array().into_iter().flatten());
    }
    let local: Vec<&str> = operations
        .iter()
        .filter_map(|o| o["definition"].as_str())
        .filter(|url| url.starts_with(&fhir.base))
        .collect();
    assert_eq!(local.len(), 2, "import and group-refresh: {local:?}");
    for url in local {
        let definition = fhir.read(url);
        assert_eq!(
            definition["resourceType"], "OperationDefinition",
            "{definition}"
        );
        let id = url.rsplit('/').next().unwrap_or_default();
        assert_eq!(definition["id"], id, "{definition}");
        let subset = fhir.read(&format!("{url}?_elements=code"));
        assert!(subset.get("parameter").is_none(), "{subset}");
        let mut changed = definition.clone();
        changed["description"] = json!("changed");
        assert_outcome(&fhir.put(url, &changed), 405);
        assert_outcome(&fhir.delete(url), 405);
    }
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    count_zero_gives_total_only,
    next_links_replay_the_search,
    next_links_keep_awkward_values_encoded,
    post_search_pages_with_get,
    parameter_types_match,
    chains_and_reverse_chains,
    includes_and_revincludes,
    sort_on_several_keys,
    summary_and_elements_subset_entries,
    total_parameter,
    lenient_and_strict_handling,
    invalid_searches_are_400,
    compartment_search,
    everything_of_a_patient,
    capability_statement_lists_search,
);
