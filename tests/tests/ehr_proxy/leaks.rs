//! Requests of a patient-restricted token that the EHR would answer with Hearth's own
//! access: batches and transactions, system-level operations, posted and system-level
//! searches, counts, and conditional creates. Each must stay within the token's patient.

use serde_json::{Value, json};

use crate::front::Front;
use crate::http::Reply;

const PATIENT_WRITE_SCOPE: &str = "launch/patient patient/*.cruds openid fhirUser";

fn assert_forbidden(reply: &Reply) {
    assert_eq!(reply.status, 403, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], "forbidden", "{body}");
}

fn post(front: &Front, url: &str, token: &str, content_type: &str, body: String) -> Reply {
    front.send(
        front
            .client()
            .post(url)
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body),
    )
}

fn total(reply: &Reply) -> Option<u64> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64()
}

#[test]
fn patient_token_cannot_send_bundles_upstream() {
    let front = Front::start();
    let other_observation = front.ehr.sample.other.observations[0].clone();
    let other = front.ehr.sample.other.id.clone();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let admin = front.admin_token();
    let base = front.site.fhir.clone();

    let delete = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": format!("Observation/{other_observation}")}}],
    });
    let reply = post(
        &front,
        &base,
        &token,
        "application/fhir+json",
        delete.to_string(),
    );
    assert_forbidden(&reply);
    let kept = front.get(
        &front.site,
        &admin,
        &format!("Observation/{other_observation}"),
        &[("Cache-Control", "no-cache")],
    );
    assert_eq!(kept.status, 200, "the transaction deleted: {}", kept.body);

    let create = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{
            "request": {"method": "POST", "url": "Observation"},
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "written for another patient"},
                "subject": {"reference": format!("Patient/{other}")},
            },
        }],
    });
    let reply = post(
        &front,
        &base,
        &token,
        "application/fhir+json",
        create.to_string(),
    );
    assert_forbidden(&reply);

    // An unrestricted token still runs batches at the EHR.
    let read = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": format!("Observation/{other_observation}")}}],
    });
    let reply = post(
        &front,
        &base,
        &admin,
        "application/fhir+json",
        read.to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["type"], "batch-response", "{}", reply.body);

    // System-level operations and history cannot be filtered either.
    let export = front.get(
        &front.site,
        &token,
        "$export?_type=Patient",
        &[("Prefer", "respond-async")],
    );
    assert_forbidden(&export);
    let history = front.get(&front.site, &token, "_history", &[]);
    assert_forbidden(&history);
}

#[test]
fn patient_counts_and_posted_searches_stay_in_compartment() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let other = front.ehr.sample.other.id.clone();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let base = front.site.fhir.clone();
    let form = "application/x-www-form-urlencoded";

    let foreign = post(
        &front,
        &format!("{base}/Observation/_search"),
        &token,
        form,
        format!("patient={other}&_summary=count"),
    );
    assert_eq!(total(&foreign), Some(0), "{}", foreign.body);

    let own = post(
        &front,
        &format!("{base}/Observation/_search"),
        &token,
        form,
        format!("patient={patient}&_summary=count"),
    );
    let own_count = total(&own).expect("a total for the own compartment");
    assert!(own_count > 0, "{}", own.body);

    let patients = post(
        &front,
        &format!("{base}/Patient/_search"),
        &token,
        form,
        "_summary=count".to_string(),
    );
    assert_eq!(total(&patients), Some(1), "{}", patients.body);

    let posted = post(
        &front,
        &format!("{base}/Observation/_search"),
        &token,
        form,
        "_count=200".to_string(),
    );
    let bundle: Value = posted.json();
    assert_eq!(posted.status, 200, "{}", posted.body);
    for entry in bundle["entry"].as_array().cloned().unwrap_or_default() {
        assert_eq!(
            entry["resource"]["subject"]["reference"],
            format!("Patient/{patient}"),
            "a posted search leaked"
        );
    }

    // A system-level search is filtered after the fact, so it has no upstream total
    // and no count.
    let count = front.get_url(
        &format!("{base}?_type=Observation&_summary=count"),
        &token,
        &[],
    );
    assert_forbidden(&count);
    let posted_count = post(
        &front,
        &format!("{base}/_search"),
        &token,
        form,
        "_type=Observation&_summary=count".to_string(),
    );
    assert_forbidden(&posted_count);
    let accurate = front.get_url(
        &format!("{base}?_type=Observation&_count=0&_total=accurate"),
        &token,
        &[],
    );
    let system_total = total(&accurate);
    assert!(
        system_total.is_none_or(|t| t <= own_count),
        "the total of all patients passed: {}",
        accurate.body
    );
}

#[test]
fn query_restricted_token_counts_only_its_category() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let token = front.patient_token(
        &front.site,
        "launch/patient patient/Observation.rs?category=laboratory openid fhirUser",
    );
    let reply = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={patient}&category=vital-signs&_summary=count"),
        &[],
    );
    if reply.status == 200 {
        assert_eq!(reply.json()["total"], 0, "{}", reply.body);
    } else {
        assert_forbidden(&reply);
    }
    let accurate = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={patient}&category=vital-signs&_count=0&_total=accurate"),
        &[],
    );
    let counted = total(&accurate);
    assert!(
        counted.is_none_or(|t| t == 0),
        "vital signs were counted: {}",
        accurate.body
    );
}

#[test]
fn conditional_create_does_not_reveal_other_patients() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let other_observation = front.ehr.sample.other.observations[0].clone();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "conditional create"},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    let reply = front.send(
        front
            .client()
            .post(format!("{}/Observation", front.site.fhir))
            .bearer_auth(&token)
            .header("Content-Type", "application/fhir+json")
            .header("If-None-Exist", format!("_id={other_observation}"))
            .body(observation.to_string()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let location = reply.header("location").unwrap_or_default().to_string();
    assert!(
        !location.contains(&other_observation),
        "the other patient's resource was named: {location}"
    );
}

#[test]
fn elements_apply_after_the_compartment_filter() {
    let front = Front::start();
    let patient = front.ehr.sample.patient.id.clone();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let reply = front.get(
        &front.site,
        &token,
        &format!("Observation?patient={patient}&_elements=id,code&_count=3"),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 3, "{bundle}");
    for entry in &entries {
        let resource = &entry["resource"];
        assert!(resource["code"].is_object(), "{resource}");
        assert!(
            resource.get("subject").is_none(),
            "not subsetted: {resource}"
        );
    }
    let next = bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_string();
    assert!(next.contains("_elements="), "{next}");
    let second = front.get_url(&next, &token, &[]);
    assert_eq!(second.status, 200, "{}", second.body);
    let second = second.json();
    let second_entries = second["entry"].as_array().cloned().unwrap_or_default();
    assert!(!second_entries.is_empty(), "{second}");
    assert!(
        second_entries
            .iter()
            .all(|e| e["resource"].get("subject").is_none()),
        "{second}"
    );
}

/// Sends `method path` to the front as written, without the URL normalization an HTTP
/// client applies, and returns the status and the body.
fn send_raw(front: &Front, method: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let address = front
        .server
        .base_url
        .trim_start_matches("http://")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connecting to the front");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).expect("sending");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn dot_segments_never_reach_the_ehr() {
    let front = Front::start();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let site = format!("/sites/{}/fhir", front.site.id);
    for (method, path) in [
        ("GET", "Observation/%2e%2e/_history"),
        ("GET", "Observation/../_history"),
        ("GET", "Patient/%2E%2E/Observation"),
        ("POST", "Observation/%2e%2e/$import"),
        ("DELETE", "Observation/%2e%2e"),
        ("GET", "Observation/a%2Fb"),
        ("GET", "Observation//_history"),
        ("GET", "Patient//Observation"),
    ] {
        let (status, body) = send_raw(&front, method, &format!("{site}/{path}"), &token);
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.contains("OperationOutcome"), "{method} {path}: {body}");
    }
}

#[test]
fn history_hides_other_patients_deletions() {
    let front = Front::start();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let deleted = front.ehr.sample.other.observations[0].clone();
    let reply = front.send(
        front
            .client()
            .delete(format!(
                "{}/Observation/{deleted}",
                front.ehr.default_site.fhir
            ))
            .bearer_auth(front.ehr.server.admin_token()),
    );
    assert!(reply.status < 300, "deleting at the EHR: {}", reply.body);

    let type_history = front.get(&front.site, &token, "Observation/_history?_count=50", &[]);
    assert_eq!(type_history.status, 200, "{}", type_history.body);
    assert!(
        !type_history.body.contains(&deleted),
        "another patient's deletion leaked: {}",
        type_history.body
    );
    let instance = front.get(
        &front.site,
        &token,
        &format!("Observation/{deleted}/_history"),
        &[],
    );
    assert!(
        !instance.body.contains("\"DELETE\""),
        "another patient's deletion leaked: {}",
        instance.body
    );

    // A token that may read every Observation still gets the deletion.
    let admin = front.admin_token();
    let full = front.get(&front.site, &admin, "Observation/_history?_count=50", &[]);
    assert!(full.body.contains(&deleted), "{}", full.body);
}

#[test]
fn xml_bodies_get_415() {
    let front = Front::start();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    for content_type in ["application/fhir+xml", "application/xml"] {
        let reply = post(
            &front,
            &format!("{}/Observation", front.site.fhir),
            &token,
            content_type,
            "<Observation/>".to_string(),
        );
        assert_eq!(reply.status, 415, "{content_type}: {}", reply.body);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    }
}

#[test]
fn methods_outside_fhir_get_405() {
    let front = Front::start();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let patient = front.ehr.sample.patient.id.clone();
    let site = format!("/sites/{}/fhir", front.site.id);
    for method in ["TRACE", "PROPFIND", "FOO"] {
        let (status, body) = send_raw(&front, method, &format!("{site}/Patient/{patient}"), &token);
        assert_eq!(status, 405, "{method}: {body}");
    }
    let head = front.send(
        front
            .client()
            .head(format!("{}/Patient/{patient}", front.site.fhir))
            .bearer_auth(&token),
    );
    assert_eq!(head.status, 200, "HEAD of the token's own patient");
    assert!(head.body.is_empty());
}

#[test]
fn has_through_other_patients_is_empty() {
    let front = Front::start();
    let token = front.patient_token(&front.site, PATIENT_WRITE_SCOPE);
    let other = front.ehr.sample.other.id.clone();
    let reply = front.get(
        &front.site,
        &token,
        &format!("Practitioner?_has:Encounter:participant:patient={other}"),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert!(body.get("entry").is_none(), "{body}");
}
