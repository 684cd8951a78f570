//! Loads the Synthea data through `hearth load`, then reads it back over HTTP, once per
//! log backend; and checks that malformed files are rejected and store nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use hearth_e2e::{Backend, Server, invalid_dir, synthea_dir};
use serde_json::Value;

/// What reading the Synthea files directly says: entries per type, and distinct
/// resources (type and id) per type. Some Organizations and Practitioners appear in more
/// than one file, so loading stores them once with a second version.
fn expected_counts(dir: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut entries = BTreeMap::new();
    let mut distinct: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        let value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let resources: Vec<&Value> = if value["resourceType"] == "Bundle" {
            value["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["resource"])
                .collect()
        } else {
            vec![&value]
        };
        for resource in resources {
            let resource_type = resource["resourceType"].as_str().unwrap().to_string();
            let id = resource["id"].as_str().unwrap().to_string();
            *entries.entry(resource_type.clone()).or_default() += 1;
            distinct.entry(resource_type).or_default().insert(id);
        }
    }
    let distinct = distinct
        .into_iter()
        .map(|(t, ids)| (t, ids.len() as u64))
        .collect();
    (entries, distinct)
}

fn total(server: &Server, query: &str) -> u64 {
    let (status, bundle) = server.get_json(&format!("{}/{query}", server.fhir_url()));
    assert_eq!(status, 200, "{query}: {bundle}");
    bundle["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("{query} has no total: {bundle}"))
}

fn load_and_read(backend: Backend) {
    let server = Server::start(&backend).unwrap();
    let data = synthea_dir();
    let output = server.load(&[data]).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hearth load failed:\n{stdout}\n{stderr}"
    );

    let (entries, distinct) = expected_counts(data);
    for (resource_type, count) in &entries {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(resource_type))
            .unwrap_or_else(|| panic!("the summary lists no {resource_type}:\n{stdout}"));
        let printed: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(printed, *count, "summary count of {resource_type}");
    }

    let fhir = server.fhir_url();
    for (resource_type, count) in &distinct {
        assert_eq!(
            total(&server, &format!("{resource_type}?_summary=count")),
            *count,
            "{resource_type} total"
        );
    }

    // One patient and that patient's Observations, compared with the file.
    let patient_file = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("Abram_Lemke")
        })
        .unwrap();
    let bundle: Value = serde_json::from_slice(&std::fs::read(patient_file).unwrap()).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    let patient = &entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["resource"];
    let patient_id = patient["id"].as_str().unwrap();
    let observations_in_file = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count() as u64;

    let (status, read) = server.get_json(&format!("{fhir}/Patient/{patient_id}"));
    assert_eq!(status, 200);
    assert_eq!(read["name"], patient["name"]);
    assert_eq!(read["birthDate"], patient["birthDate"]);
    assert_eq!(read["meta"]["versionId"], "1");

    let (status, vread) = server.get_json(&format!("{fhir}/Patient/{patient_id}/_history/1"));
    assert_eq!(status, 200);
    assert_eq!(vread, read);

    assert_eq!(
        total(
            &server,
            &format!("Observation?patient={patient_id}&_total=accurate")
        ),
        observations_in_file
    );
    let mut seen = 0;
    let mut next = Some(format!(
        "{fhir}/Observation?patient=Patient/{patient_id}&_count=40"
    ));
    while let Some(url) = next {
        let (status, page) = server.get_json(&url);
        assert_eq!(status, 200, "{url}: {page}");
        assert_eq!(page["type"], "searchset");
        for entry in page["entry"].as_array().into_iter().flatten() {
            assert_eq!(entry["resource"]["resourceType"], "Observation");
            assert_eq!(
                entry["resource"]["subject"]["reference"],
                format!("Patient/{patient_id}")
            );
            seen += 1;
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen, observations_in_file,
        "Observations reached by following next links"
    );

    let (status, by_id) = server.get_json(&format!("{fhir}/Patient?_id={patient_id}"));
    assert_eq!(status, 200);
    assert_eq!(by_id["entry"].as_array().map(Vec::len), Some(1));

    // The Group's members were urn:uuid references to Patients in other files.
    let (_, groups) = server.get_json(&format!("{fhir}/Group"));
    let group = &groups["entry"][0]["resource"];
    let member = group["member"][0]["entity"]["reference"].as_str().unwrap();
    assert!(member.starts_with("Patient/"), "{member}");
    let (status, _) = server.get_json(&format!("{fhir}/{member}"));
    assert_eq!(status, 200);

    let (status, missing) = server.get_json(&format!("{fhir}/Patient/no-such-patient"));
    assert_eq!(status, 404);
    assert_eq!(missing["resourceType"], "OperationOutcome");
}

#[test]
fn synthea_loads_on_embedded_log() {
    load_and_read(Backend::Embedded);
}

#[test]
fn synthea_loads_on_kafka() {
    let Some(backend) = Backend::kafka("load") else {
        eprintln!("HEARTH_TEST_KAFKA_BROKERS is not set; skipping the Kafka run");
        return;
    };
    load_and_read(backend);
}

#[test]
fn invalid_files_are_rejected_and_store_nothing() {
    let server = Server::start(&Backend::Embedded).unwrap();
    let fhir = server.fhir_url();
    for entry in std::fs::read_dir(invalid_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let output = server.load(&[&path]).unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} was accepted");
        assert!(
            stderr.contains(&name),
            "the error does not name {name}: {stderr}"
        );
        let names_position = stderr.contains("entry ")
            || stderr.contains("line ")
            || stderr.contains("invalid JSON")
            || stderr.contains("resourceType")
            || stderr.contains("Bundle.type");
        assert!(
            names_position,
            "the error for {name} does not say where: {stderr}"
        );
    }
    for resource_type in ["Patient", "Observation", "Bundle"] {
        assert_eq!(
            total(&server, &format!("{resource_type}?_summary=count")),
            0,
            "{resource_type} stored"
        );
    }
    // The next accepted body is the first record of the resource log.
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{fhir}/$load"))
        .bearer_auth(server.admin_token())
        .header("Content-Type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient","id":"after-rejections"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let result: Value = response.json().unwrap();
    let offset = result["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "offset")
        .and_then(|p| p["valueInteger"].as_u64());
    assert_eq!(
        offset,
        Some(0),
        "rejected files reached the resource log: {result}"
    );
}
