//! `$import` of NDJSON from an HTTP URL on 127.0.0.1 and from the object store, with the
//! same asynchronous status pattern as `$export`, and the allow list of import hosts.

use std::io::{Read, Write};
use std::net::TcpListener;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{BulkClient, FHIR_JSON, Reply, assert_outcome, keys};
use crate::fixture::{Hearth, observation, patient};

/// The `hearth serve` environment that allows imports from 127.0.0.1, where the tests
/// serve their files.
const LOOPBACK_IMPORTS: (&str, &str) = ("HEARTH_BULK_IMPORT_ALLOWED_HOSTS", "127.0.0.1");

/// Serves `body` to every request on a free 127.0.0.1 port, from a thread that lives as
/// long as the test process; returns the URL of `name` on it.
fn serve_once(name: &str, body: String) -> String {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/fhir+ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let port = serve_raw(format!("{head}{body}"));
    format!("http://127.0.0.1:{port}/{name}")
}

/// Sends `response`, a whole HTTP response, to every request on a free 127.0.0.1 port, and
/// returns the port.
fn serve_raw(response: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
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
    let hearth = Hearth::start_with(&[], &[LOOPBACK_IMPORTS]);
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
    // The FHIR API rejects an unknown element, and so must the import.
    let unknown_element = json!({"resourceType": "Patient", "id": "store-bad", "foo": "bar"});
    let text = format!(
        "{}\nnot json\n{}\n{unknown_element}\n",
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
    assert_eq!(errors.len(), 3, "one issue per bad line: {errors:?}");
    assert!(
        errors
            .iter()
            .any(|(_, outcome)| outcome.to_string().contains("foo")),
        "{errors:?}"
    );
    assert_eq!(writer.get("Patient/store1").status, 200);
    assert_eq!(writer.get("Patient/store-bad").status, 404);
}

#[test]
fn import_rejects_links_out_of_the_store() {
    let hearth = Hearth::start();
    let outside = tempfile::tempdir().expect("a directory outside the store");
    let secret = outside.path().join("Patient.ndjson");
    std::fs::write(&secret, ndjson(&[patient("outside1", "male")])).expect("the outside file");
    let dir = hearth.server.data_dir.path().join("bulk").join("links");
    std::fs::create_dir_all(&dir).expect("an import directory");
    std::os::unix::fs::symlink(&secret, dir.join("Patient.ndjson")).expect("a file link");
    std::os::unix::fs::symlink(outside.path(), dir.join("out")).expect("a directory link");
    let dir = dir.canonicalize().expect("the import directory resolves");
    let writer = hearth.writer();

    for url in [
        format!("file://{}/Patient.ndjson", dir.display()),
        format!("file://localhost{}/Patient.ndjson", dir.display()),
        format!("file://{}/out/Patient.ndjson", dir.display()),
    ] {
        let reply = kick_off_import(&writer, &import_body(&[("Patient", &url)]));
        let message = assert_outcome(&reply, 400);
        assert!(
            message.contains("outside the bulk store"),
            "{url}: {message}"
        );
    }
    let missing = format!("file://{}/Missing.ndjson", dir.display());
    assert_outcome(
        &kick_off_import(&writer, &import_body(&[("Patient", &missing)])),
        400,
    );
    assert_eq!(writer.get("Patient/outside1").status, 404);

    // A link that stays inside the store is followed.
    std::fs::write(
        dir.join("real.ndjson"),
        ndjson(&[patient("inside1", "female")]),
    )
    .expect("the inside file");
    std::os::unix::fs::symlink(dir.join("real.ndjson"), dir.join("inside.ndjson"))
        .expect("an inside link");
    let url = format!("file://localhost{}/inside.ndjson", dir.display());
    let status = writer.status_url(&kick_off_import(
        &writer,
        &import_body(&[("Patient", &url)]),
    ));
    let manifest = writer.wait(&status);
    assert_eq!(manifest["output"][0]["count"], 1, "{manifest}");
    assert_eq!(writer.get("Patient/inside1").status, 200);
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

#[test]
fn import_rejects_hosts_off_the_list() {
    // By default no host is allowed, so URL imports are off.
    let hearth = Hearth::start();
    let writer = hearth.writer();
    let url = serve_once("Patient.ndjson", ndjson(&[patient("off1", "male")]));
    let reply = kick_off_import(&writer, &import_body(&[("Patient", &url)]));
    let message = assert_outcome(&reply, 400);
    assert!(message.contains("import_allowed_hosts"), "{message}");

    let hearth = Hearth::start_with(&[], &[("HEARTH_BULK_IMPORT_ALLOWED_HOSTS", "localhost")]);
    let writer = hearth.writer();
    for url in [
        url.as_str(),
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/Patient.ndjson",
        "ftp://localhost/Patient.ndjson",
    ] {
        let reply = kick_off_import(&writer, &import_body(&[("Patient", url)]));
        assert_outcome(&reply, 400);
    }
    assert_eq!(writer.get("Patient/off1").status, 404);
}

#[test]
fn import_refuses_redirect_off_the_list() {
    let hearth = Hearth::start_with(&[], &[LOOPBACK_IMPORTS]);
    let target = serve_once("Patient.ndjson", ndjson(&[patient("moved1", "female")]));
    // The allowed host forwards to the same file under a name the list does not allow.
    let elsewhere = target.replace("127.0.0.1", "localhost");
    let port = serve_raw(format!(
        "HTTP/1.1 302 Found\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ));
    let url = format!("http://127.0.0.1:{port}/Patient.ndjson");
    let writer = hearth.writer();

    let manifest = writer.wait(&writer.status_url(&kick_off_import(
        &writer,
        &import_body(&[("Patient", &url)]),
    )));
    assert_eq!(manifest["output"][0]["count"], 0, "{manifest}");
    let errors = writer.lines_of(&manifest, "error");
    assert!(
        errors
            .iter()
            .any(|(_, e)| e.to_string().contains("redirect refused")),
        "{errors:?}"
    );
    assert_eq!(writer.get("Patient/moved1").status, 404);

    // A redirect that stays on an allowed host is followed.
    let port = serve_raw(format!(
        "HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ));
    let url = format!("http://127.0.0.1:{port}/Patient.ndjson");
    let manifest = writer.wait(&writer.status_url(&kick_off_import(
        &writer,
        &import_body(&[("Patient", &url)]),
    )));
    assert_eq!(manifest["output"][0]["count"], 1, "{manifest}");
    assert_eq!(writer.get("Patient/moved1").status, 200);
}
