//! Bulk Data export with a user token from a standalone launch: the export contains what
//! the user's scopes allow, exactly what FHIR search returns with the same token.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::bulk_client::{BulkClient, assert_outcome, keys};
use crate::support::{DOCTOR, Hearth};

/// `Type/id` of each resource, sorted.
fn resource_keys(resources: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn user_token_export_follows_scopes() {
    let hearth = Hearth::start();
    let scope = "openid fhirUser user/Patient.rs user/Observation.rs?category=laboratory";
    let tokens = hearth.launch(scope, DOCTOR, None);
    let granted = tokens.response["scope"].as_str().unwrap_or_default();
    assert!(
        granted.contains("user/Observation.rs?category=laboratory"),
        "the narrowed scope was granted: {granted}"
    );
    let client = BulkClient::new(&hearth.default_site.fhir, &tokens.access);

    let manifest = client.export("Patient/$export");
    let lines = client.lines_of(&manifest, "output");
    let types: BTreeSet<&str> = lines.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from(["Observation", "Patient"]),
        "only the types the scopes allow: {manifest}"
    );
    for (_, resource) in lines.iter().filter(|(t, _)| t == "Observation") {
        let categories: Vec<&str> = resource["category"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["coding"].as_array().into_iter().flatten())
            .filter_map(|coding| coding["code"].as_str())
            .collect();
        assert!(
            categories.contains(&"laboratory"),
            "Observation/{} is not a laboratory result: {categories:?}",
            resource["id"]
        );
    }

    // The export equals a search with the same token, type by type.
    let exported = keys(&lines);
    let mut searched = Vec::new();
    for resource_type in ["Patient", "Observation"] {
        let found = hearth
            .search_all(&tokens.access, resource_type)
            .unwrap_or_else(|reply| panic!("searching {resource_type}: {}", reply.body));
        searched.extend(resource_keys(&found));
    }
    searched.sort();
    assert!(!searched.is_empty(), "the sample has laboratory results");
    assert_eq!(exported, searched);

    // A type outside the scopes is refused at kick-off.
    let reply = client.kick_off("Patient/$export?_type=Condition");
    assert_outcome(&reply, 403);
}

#[test]
fn patient_token_export_reports_own_deletions() {
    let hearth = Hearth::start();
    let own = &hearth.sample.patient.observations[0];
    let other = &hearth.sample.other.observations[0];
    let repository = hearth.repository();
    let http = reqwest::blocking::Client::new();
    for id in [own, other] {
        let reply = http
            .delete(format!("{}/Observation/{id}", repository.fhir_url()))
            .bearer_auth(repository.admin_token())
            .send()
            .expect("the delete is sent");
        assert_eq!(reply.status().as_u16(), 204, "deleting Observation/{id}");
    }

    let tokens = hearth.patient_launch("launch/patient patient/*.rs");
    let client = BulkClient::new(&hearth.default_site.fhir, &tokens.access);
    let manifest = client.export("Patient/$export?_type=Observation&_since=2000-01-01T00:00:00Z");
    let deleted: Vec<String> = client
        .lines_of(&manifest, "deleted")
        .iter()
        .flat_map(|(_, bundle)| bundle["entry"].as_array().cloned().unwrap_or_default())
        .filter_map(|entry| entry["request"]["url"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(deleted, [format!("Observation/{own}")], "{manifest}");
}
