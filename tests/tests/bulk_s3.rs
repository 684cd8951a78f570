//! Bulk Data with its files in an S3-compatible store: the test command starts s3s-fs on
//! 127.0.0.1 (infra/s3/start.sh) and names it in `HEARTH_TEST_S3_ENDPOINT`. Export NDJSON
//! and Parquet, download through Hearth, import from an `s3://` location, and DELETE.

// The client and the fixture are shared with bulk.rs, which uses a different part of them.
#[allow(dead_code)]
#[path = "bulk/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "bulk/fixture.rs"]
mod fixture;

use client::{entries, keys};
use fixture::{Hearth, sample_count};

/// The S3 endpoint, or `None` outside CI when no server was started. Under CI a missing
/// endpoint fails the test, so a broken setup cannot pass silently.
fn endpoint() -> Option<String> {
    match std::env::var("HEARTH_TEST_S3_ENDPOINT") {
        Ok(endpoint) => Some(endpoint),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("HEARTH_TEST_S3_ENDPOINT is not set; infra/test.sh starts the S3 server")
        }
        Err(_) => {
            eprintln!("skipping: HEARTH_TEST_S3_ENDPOINT is not set (run infra/test.sh)");
            None
        }
    }
}

fn s3_config(endpoint: &str, prefix: &str) -> String {
    let bucket = std::env::var("HEARTH_TEST_S3_BUCKET").unwrap_or_else(|_| "hearth-test".into());
    let key = std::env::var("HEARTH_S3_ACCESS_KEY").unwrap_or_else(|_| "hearth-test".into());
    let secret =
        std::env::var("HEARTH_S3_SECRET_KEY").unwrap_or_else(|_| "hearth-test-secret".into());
    format!(
        "[bulk]\nstore = \"s3://{bucket}/{prefix}\"\n\n[bulk.store_options]\n\
         aws_endpoint = \"{endpoint}\"\naws_region = \"us-east-1\"\n\
         aws_access_key_id = \"{key}\"\naws_secret_access_key = \"{secret}\"\n\
         aws_allow_http = \"true\"\naws_virtual_hosted_style_request = \"false\"\n"
    )
}

#[test]
fn export_and_import_through_s3() {
    let Some(endpoint) = endpoint() else { return };
    let prefix = format!("bulk-{}-{}", std::process::id(), fixture::unique_suffix());
    let hearth = Hearth::start_configured(&s3_config(&endpoint, &prefix));
    let client = hearth.client();

    let manifest = client.export("$export?_type=Patient,Observation");
    let lines = client.lines_of(&manifest, "output");
    let observations = lines.iter().filter(|(t, _)| t == "Observation").count();
    assert_eq!(observations, sample_count("Observation"));

    let parquet = client.export("$export?_type=Observation&_outputFormat=parquet");
    let parquet_count: u64 = entries(&parquet, "output").iter().map(|e| e.2).sum();
    assert_eq!(parquet_count as usize, observations);
    for (_, url, _) in entries(&parquet, "output") {
        let reply = client.download(&url);
        assert_eq!(reply.status, 200, "{url}");
        assert!(reply.bytes.starts_with(b"PAR1"), "{url} is not Parquet");
    }

    // Import the exported Patient file back from its s3:// location.
    let patient_url = entries(&manifest, "output")
        .into_iter()
        .find(|(t, _, _)| t == "Patient")
        .expect("a Patient file")
        .1;
    let (job_id, name) = {
        let mut parts = patient_url.rsplit('/');
        let name = parts.next().expect("a file name").to_string();
        (parts.next().expect("a job id").to_string(), name)
    };
    let bucket = std::env::var("HEARTH_TEST_S3_BUCKET").unwrap_or_else(|_| "hearth-test".into());
    let source = format!("s3://{bucket}/{prefix}/{job_id}/{name}");
    let writer = hearth.writer();
    let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
        {"name": "input", "part": [
            {"name": "type", "valueCode": "Patient"},
            {"name": "url", "valueUri": source}]}]});
    let reply = client::Reply::send(
        writer
            .request(reqwest::Method::POST, "$import")
            .header("accept", client::FHIR_JSON)
            .header("prefer", "respond-async")
            .header("content-type", client::FHIR_JSON)
            .body(body.to_string()),
    );
    let imported = writer.wait(&writer.status_url(&reply));
    assert_eq!(
        imported["output"][0]["count"].as_u64(),
        Some(sample_count("Patient") as u64),
        "{imported}"
    );

    // DELETE removes the files from the bucket.
    let status = client.status_url(&client.kick_off("$export?_type=Patient"));
    let done = client.wait(&status);
    let url = entries(&done, "output")[0].1.clone();
    assert_eq!(client.download(&url).status, 200);
    assert_eq!(client.delete(&status).status, 202);
    assert_eq!(client.download(&url).status, 404);
    assert!(keys(&lines).len() > 2);
}
