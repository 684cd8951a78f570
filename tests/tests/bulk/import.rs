//! `$import` of NDJSON from an HTTP URL on 127.0.0.1 and from the object store, with the
//! same asynchronous status pattern as `$export`.

use std::io::{Read, Write};
use std::net::TcpListener;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{BulkClient, FHIR_JSON, Reply, assert_outcome, keys};
use crate::fixture::{Hearth, observation, patient};

/// Serves `body` to every request on a free 127.0.0.1 port, from a thread that lives as
/// long as the test process; returns the URL of `name` on it.
fn serve_once(name: &str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/fhir+ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/{name}")
}

fn import_body(inputs: &[(&str, &str)]) -> Value {
    let mut parameter =
        vec![json!({"name": "inputFormat", "valueCode": "application/fhir+ndjson"})];
    for (resource_type, url) in inputs {
        parameter.push(json!({"name": "input", "part": [
            {"name": "type", "valueCode": resource_type},
            {"name": "url", "valueUri": url}
        ]}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

fn kick_off_import(client: &BulkClient, body: &Value) -> Reply {
    Reply::send(
        client
            .request(Method::POST, "$import")
            .header("accept", FHIR_JSON)
            .header("prefer", "respond-async")
            .header("content-type", FHIR_JSON)
            .body(body.to_string()),
    )
}

fn ndjson(resources: &[Value]) -> String {
    resources.iter().map(|r| format!("{r}\n")).collect()
}

#[test]
fn import_from_url_stores_resources() {
    let hearth = Hearth::start();
    let patients = ndjson(&[patient("imp1", "female"), patient("imp2", "male")]);
    let observations = ndjson(&[
        observation("imp-o1", "imp1", "2345-7", 99.0),
        observation("imp-o2", "imp2", "2345-7", 101.0),
    ]);
    let patient_url = serve_once("Patient.ndjson", patients);
    let observation_url = serve_once("Observation.ndjson", observations);
    let writer = hearth.writer();

    let reply = kick_off_import(
        &writer,
        &import_body(&[("Patient", &patient_url), ("Observation", &observation_url)]),
    );
    let status = writer.status_url(&reply);
    let manifest = writer.wait(&status);
    let counts: Vec<u64> = manifest["output"]
        .as_array()
        .expect("output")
        .iter()
        .map(|e| e["count"].as_u64().unwrap_or_default())
        .collect();
    assert_eq!(counts, [2, 2], "{manifest}");

    let read = writer.get("Observation/imp-o2");
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["subject"]["reference"], "Patient/imp2");

    // The imported resources export like any other.
    let client = hearth.client();
    let exported = client.export("Patient/$export?_type=Patient,Observation");
    let exported = keys(&client.lines_of(&exported, "output"));
    for key in [
        "Patient/imp1",
        "Patient/imp2",
        "Observation/imp-o1",
        "Observation/imp-o2",
    ] {
        assert!(exported.contains(&key.to_string()), "{key} not exported");
    }
}

#[test]
fn import_from_store_reports_bad_lines() {
    let hearth = Hearth::start();
    let dir = hearth.server.data_dir.path().join("bulk").join("incoming");
    std::fs::create_dir_all(&dir).expect("an import directory");
    let text = format!(
        "{}\nnot json\n{}\n",
        patient("store1", "female"),
        observation("wrong-type", "store1", "1", 1.0)
    );
    std::fs::write(dir.join("Patient.ndjson"), text).expect("the input file");
    let url = format!("file://{}/Patient.ndjson", dir.display());
    let writer = hearth.writer();

    let manifest = writer.wait(&writer.status_url(&kick_off_import(
        &writer,
        &import_body(&[("Patient", &url)]),
    )));
    assert_eq!(manifest["output"][0]["count"], 1, "{manifest}");
    let errors = writer.lines_of(&manifest, "error");
    assert_eq!(errors.len(), 2, "one issue per bad line: {errors:?}");
    assert_eq!(writer.get("Patient/store1").status, 200);
}

#[test]
fn import_needs_write_scopes() {
    let hearth = Hearth::start();
    let reader = hearth.client();
    let url = serve_once("Patient.ndjson", ndjson(&[patient("x", "male")]));
    let reply = kick_off_import(&reader, &import_body(&[("Patient", &url)]));
    assert_outcome(&reply, 403);

    let writer = hearth.writer();
    let reply = kick_off_import(&writer, &json!({"resourceType": "Patient"}));
    assert_outcome(&reply, 400);
}
