//! Bulk Data exports at the EHR-backed site: the EHR runs the job, and the front hands
//! out status and file URLs on its own base that only the app which started the job can
//! follow.

use serde_json::{Value, json};

use crate::bulk_client::{BulkClient, assert_outcome};
use crate::front::Front;
use crate::http::{Reply, basic_header, form};

/// Registers a backend service with `scope` at the EHR-backed site and returns a token
/// of it.
fn service_token(front: &Front, client_id: &str, scope: &str) -> String {
    let app = json!({
        "client_id": client_id,
        "name": client_id,
        "client_type": "confidential-symmetric",
        "scope": scope,
        "sites": [front.site.id],
    });
    let created = front.admin_post("/admin/apps", &app, 201).json();
    let secret = created["client_secret"].as_str().expect("a client secret");
    let reply = Reply::send(
        front
            .client()
            .post(format!("{}/token", front.site.auth))
            .header("Authorization", basic_header(client_id, secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
            ])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

fn count(front: &Front, token: &str, resource_type: &str) -> u64 {
    let reply = front.get(
        &front.site,
        token,
        &format!("{resource_type}?_summary=count"),
        &[("Cache-Control", "no-cache")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64().expect("a total")
}

#[test]
fn export_through_the_proxy_belongs_to_its_app() {
    let front = Front::start();
    let owner = BulkClient::new(
        &front.site.fhir,
        &service_token(&front, "export-owner", "system/*.rs"),
    );
    let stranger = owner.with_token(&service_token(&front, "export-stranger", "system/*.rs"));

    let kick_off = owner.kick_off("$export?_type=Patient,Observation");
    let status = owner.status_url(&kick_off);
    let ehr_base = front.ehr.default_site.fhir.clone();
    assert!(
        !kick_off.text().contains(&ehr_base),
        "the kick-off names the EHR: {}",
        kick_off.text()
    );
    let status_prefix = format!("{}/$bulk-status/", front.site.fhir);
    assert!(status.starts_with(&status_prefix), "{status}");

    // Another app with the same scopes cannot follow or cancel the job.
    assert_outcome(&stranger.get(&status), 404);
    assert_outcome(&stranger.delete(&status), 404);
    let forged = format!("{status_prefix}not-a-job");
    assert_outcome(&owner.get(&forged), 404);

    let manifest = owner.wait(&status);
    let request = manifest["request"].as_str().expect("the kick-off request");
    assert!(
        request.starts_with(&format!("{}/$export", front.site.fhir)),
        "{request}"
    );
    assert_eq!(manifest["requiresAccessToken"], true);
    let outputs = manifest["output"].as_array().expect("output files");
    assert!(!outputs.is_empty(), "{manifest}");
    let file_prefix = format!("{}/$bulk-file/", front.site.fhir);
    for output in outputs {
        let url = output["url"].as_str().expect("a file URL");
        assert!(url.starts_with(&file_prefix), "{url}");
        assert_outcome(&stranger.download(url), 404);
    }

    // Every exported line arrives whole, and the counts match searches through the site.
    let lines = owner.lines_of(&manifest, "output");
    let token = owner.token.clone();
    for resource_type in ["Patient", "Observation"] {
        let exported = lines
            .iter()
            .filter(|(_, line)| line["resourceType"] == resource_type)
            .count() as u64;
        assert_eq!(
            exported,
            count(&front, &token, resource_type),
            "{resource_type}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|(listed, line)| line["resourceType"] == Value::String(listed.clone()))
    );

    // The owner deletes the finished job; its status URL is then gone.
    let deleted = owner.delete(&status);
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    assert_outcome(&owner.get(&status), 404);
}

#[test]
fn export_needs_unrestricted_read_of_what_it_exports() {
    let front = Front::start();
    let patients_only = BulkClient::new(
        &front.site.fhir,
        &service_token(&front, "patients-only", "system/Patient.rs"),
    );
    for path in [
        "$export",
        "Patient/$export",
        "Patient/$export?_type=Patient,Observation",
        "$export?_type=Patient&includeAssociatedData=LatestProvenanceResources",
    ] {
        let reply = patients_only.kick_off(path);
        assert_outcome(&reply, 403);
    }
    let posted = patients_only.kick_off_post("$export", &[("_type", "Patient")]);
    assert_outcome(&posted, 403);

    let allowed = patients_only.kick_off("$export?_type=Patient");
    let manifest = patients_only.wait(&patients_only.status_url(&allowed));
    let lines = patients_only.lines_of(&manifest, "output");
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|(_, line)| line["resourceType"] == "Patient")
    );
}
