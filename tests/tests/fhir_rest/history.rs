//! History of an instance, a type and the whole repository: `_since`, `_count`, and `next`
//! links followed to the end.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Fhir, assert_outcome, link, start_server, unique};

/// One version as a history entry names it: type, id and version.
type VersionKey = (String, String, u64);

/// Follows `next` links from `path` and returns every entry of every page, with the
/// number of pages. Each page must hold at most `page_size` entries.
fn history_pages(fhir: &Fhir, path: &str, page_size: usize) -> (Vec<Value>, usize) {
    let mut next = Some(path.to_string());
    let mut entries = Vec::new();
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages < 1000, "the next links of {path} do not end");
        let page = fhir.read(&url);
        assert_eq!(page["resourceType"], "Bundle", "{page}");
        assert_eq!(page["type"], "history", "{page}");
        assert!(
            link(&page, "self").is_some(),
            "a page needs a self link: {page}"
        );
        let page_entries = page["entry"].as_array().cloned().unwrap_or_default();
        assert!(
            page_entries.len() <= page_size,
            "a page of {url} has {} entries, more than _count",
            page_entries.len()
        );
        next = link(&page, "next");
        if next.is_some() {
            assert!(
                !page_entries.is_empty(),
                "an empty page with a next link: {page}"
            );
        }
        entries.extend(page_entries);
    }
    (entries, pages)
}

/// The version an entry stands for, from its `fullUrl` and `response.etag`.
fn version_key(entry: &Value) -> VersionKey {
    let full_url = entry["fullUrl"]
        .as_str()
        .expect("a history entry has a fullUrl");
    let mut parts = full_url.rsplit('/');
    let id = parts.next().expect("an id").to_string();
    let resource_type = parts.next().expect("a type").to_string();
    let etag = entry["response"]["etag"].as_str().expect("response.etag");
    let version: u64 = etag
        .trim_start_matches("W/\"")
        .trim_end_matches('"')
        .parse()
        .unwrap_or_else(|_| panic!("etag {etag} is not W/\"n\""));
    if let Some(resource) = entry.get("resource") {
        assert_eq!(resource["resourceType"], resource_type.as_str(), "{entry}");
        assert_eq!(resource["id"], id.as_str(), "{entry}");
        assert_eq!(
            resource["meta"]["versionId"],
            version.to_string(),
            "{entry}"
        );
    }
    (resource_type, id, version)
}

/// Asserts that the entries hold every expected version once, newest first.
fn assert_versions(entries: &[Value], expected: &BTreeSet<VersionKey>, what: &str) {
    let keys: Vec<VersionKey> = entries.iter().map(version_key).collect();
    let distinct: BTreeSet<VersionKey> = keys.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "{what}: a version appears twice"
    );
    let missing: Vec<_> = expected.difference(&distinct).collect();
    let extra: Vec<_> = distinct.difference(expected).collect();
    assert!(missing.is_empty(), "{what}: missing versions {missing:?}");
    assert!(extra.is_empty(), "{what}: unexpected versions {extra:?}");
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["lastModified"].as_str().unwrap_or_default())
        .collect();
    for pair in times.windows(2) {
        assert!(pair[0] >= pair[1], "{what}: not newest first: {times:?}");
    }
}

/// Writes a history: Patients with three versions each, one of them deleted, and
/// Observations with one. Returns every version written.
fn write_history(fhir: &Fhir, patients: usize, observations: usize) -> BTreeSet<VersionKey> {
    let mut written = BTreeSet::new();
    let mut ids = Vec::new();
    for n in 0..patients {
        let created = fhir.create(&json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:test", "value": unique("history")}],
            "birthDate": format!("19{:02}-01-01", 50 + n),
        }));
        let id = created["id"].as_str().expect("an id").to_string();
        written.insert(("Patient".to_string(), id.clone(), 1));
        ids.push((id, created));
    }
    for (id, created) in &ids {
        for version in 2..=3 {
            let mut changed = created.clone();
            changed["gender"] = json!(if version == 2 { "female" } else { "male" });
            let reply = fhir.put(&format!("Patient/{id}"), &changed);
            assert_eq!(reply.status, 200, "{}", reply.body);
            written.insert(("Patient".to_string(), id.clone(), version));
        }
    }
    let (deleted, _) = &ids[0];
    let reply = fhir.delete(&format!("Patient/{deleted}"));
    assert_eq!(reply.status, 204, "{}", reply.body);
    written.insert(("Patient".to_string(), deleted.clone(), 4));
    // The last Patient, which is not the deleted one unless it is the only one.
    let (subject, _) = &ids[ids.len() - 1];
    for _ in 0..observations {
        let created = fhir.create(&json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "history"},
            "subject": {"reference": format!("Patient/{subject}")},
        }));
        let id = created["id"].as_str().expect("an id").to_string();
        written.insert(("Observation".to_string(), id, 1));
    }
    written
}

fn of_type(versions: &BTreeSet<VersionKey>, resource_type: &str) -> BTreeSet<VersionKey> {
    versions
        .iter()
        .filter(|(t, _, _)| t == resource_type)
        .cloned()
        .collect()
}

#[test]
fn history_pages_cover_every_version_once() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let written = write_history(&fhir, 4, 3);
    assert_eq!(written.len(), 4 * 3 + 1 + 3);

    let (system, pages) = history_pages(&fhir, "_history?_count=4", 4);
    assert_versions(&system, &written, "system history");
    assert_eq!(pages, 4, "16 versions in pages of 4");

    let (patients, _) = history_pages(&fhir, "Patient/_history?_count=5", 5);
    assert_versions(&patients, &of_type(&written, "Patient"), "Patient history");

    let (observations, _) = history_pages(&fhir, "Observation/_history?_count=2", 2);
    assert_versions(
        &observations,
        &of_type(&written, "Observation"),
        "Observation history",
    );

    let (one, _) = history_pages(&fhir, "Patient/_history?_count=1", 1);
    let (_, id, _) = version_key(&one[0]);
    let (instance, pages) = history_pages(&fhir, &format!("Patient/{id}/_history?_count=1"), 1);
    let instance_versions: Vec<u64> = instance.iter().map(|e| version_key(e).2).collect();
    assert_eq!(pages, instance_versions.len());
    let mut expected: Vec<u64> = written
        .iter()
        .filter(|(_, i, _)| *i == id)
        .map(|(_, _, v)| *v)
        .collect();
    expected.reverse();
    assert_eq!(
        instance_versions, expected,
        "versions of Patient/{id}, newest first"
    );

    let (all, pages) = history_pages(&fhir, "_history", 50);
    assert_eq!(pages, 1, "the default page size holds 16 versions");
    assert_versions(&all, &written, "unpaged system history");
}

#[test]
fn history_entries_describe_the_write() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    write_history(&fhir, 2, 0);

    let (entries, _) = history_pages(&fhir, "Patient/_history", 50);

    for entry in &entries {
        let (resource_type, id, version) = version_key(entry);
        let (method, url, status) = match version {
            1 => ("POST", resource_type.clone(), "201 Created"),
            4 => ("DELETE", format!("{resource_type}/{id}"), "204 No Content"),
            _ => ("PUT", format!("{resource_type}/{id}"), "200 OK"),
        };
        assert_eq!(entry["request"]["method"], method, "{entry}");
        assert_eq!(entry["request"]["url"], url.as_str(), "{entry}");
        assert_eq!(entry["response"]["status"], status, "{entry}");
        assert_eq!(
            entry.get("resource").is_none(),
            method == "DELETE",
            "{entry}"
        );
    }
}

#[test]
fn history_since_keeps_later_versions() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let earlier = write_history(&fhir, 3, 2);
    // Versions are stamped in microseconds and `meta.lastUpdated` shows milliseconds, so
    // a pause keeps the two rounds of writes apart in the instant used as `_since`.
    std::thread::sleep(Duration::from_millis(50));
    let later = write_history(&fhir, 2, 2);
    let first_later = later
        .iter()
        .filter(|(t, _, v)| t == "Patient" && *v == 1)
        .map(|(_, id, _)| fhir.read(&format!("Patient/{id}/_history/1")))
        .map(|r| {
            r["meta"]["lastUpdated"]
                .as_str()
                .expect("lastUpdated")
                .to_string()
        })
        .min()
        .expect("a later Patient");

    let path = format!("_history?_since={first_later}&_count=3");
    let (since, _) = history_pages(&fhir, &path, 3);
    assert_versions(&since, &later, "system history since the second round");

    let path = format!("Patient/_history?_since={first_later}&_count=2");
    let (patients, _) = history_pages(&fhir, &path, 2);
    assert_versions(
        &patients,
        &of_type(&later, "Patient"),
        "Patient history since",
    );

    let future = "2999-01-01T00:00:00Z";
    let (none, pages) = history_pages(&fhir, &format!("_history?_since={future}"), 50);
    assert!(none.is_empty(), "nothing was written after {future}");
    assert_eq!(pages, 1);

    let offset = "_history?_since=2000-01-01T00:00:00%2B02:00";
    let (everything, _) = history_pages(&fhir, offset, 50);
    let both: BTreeSet<VersionKey> = earlier.union(&later).cloned().collect();
    assert_versions(&everything, &both, "history since 2000");
}

#[test]
fn history_paging_ignores_later_writes() {
    let server = start_server();
    let fhir = Fhir::admin(&server);
    let written = write_history(&fhir, 3, 0);

    let first = fhir.read("_history?_count=3");
    let next = link(&first, "next").expect("a next link");
    let added = write_history(&fhir, 1, 1);
    let (rest, _) = history_pages(&fhir, &next, 3);

    let mut entries = first["entry"].as_array().cloned().unwrap_or_default();
    entries.extend(rest);
    assert_versions(&entries, &written, "pages of the first history");
    let (all, _) = history_pages(&fhir, "_history?_count=7", 7);
    let both: BTreeSet<VersionKey> = written.union(&added).cloned().collect();
    assert_versions(&all, &both, "history after the later writes");
}

#[test]
fn history_rejects_bad_parameters() {
    let server = start_server();
    let fhir = Fhir::admin(&server);

    assert_outcome(&fhir.get("_history?_since=yesterday"), 400);
    assert_outcome(&fhir.get("Patient/_history?_count=many"), 400);
    assert_outcome(&fhir.get("NoSuchType/_history"), 404);
    assert_outcome(&fhir.get("_history?_page_before=x"), 400);
}

// The same tests against an EHR-backed site whose upstream stores the data.
through_proxy!(
    history_pages_cover_every_version_once,
    history_entries_describe_the_write,
    history_since_keeps_later_versions,
    history_paging_ignores_later_writes,
    history_rejects_bad_parameters,
);
