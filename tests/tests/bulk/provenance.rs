//! `includeAssociatedData`: only the Provenance whose target the export writes, the most
//! recent one of each target with `LatestProvenanceResources`, and the same choice after
//! a job resumes from a checkpoint.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cases::{SLOW, Stop, restart, stored_files};
use crate::client::{Reply, keys};
use crate::export::now_instant;
use crate::fixture::{Hearth, condition, group, observation, patient};

/// Builds a Provenance of `targets`, each `Type/id`.
fn provenance(id: &str, targets: &[&str]) -> Value {
    let target: Vec<Value> = targets
        .iter()
        .map(|reference| json!({"reference": reference}))
        .collect();
    json!({
        "resourceType": "Provenance", "id": id, "target": target,
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"display": "Test recorder"}}]
    })
}

/// Runs the export `path` and returns the ids of the Provenance in its output.
fn provenance_ids(hearth: &Hearth, path: &str) -> BTreeSet<String> {
    let client = hearth.client();
    let manifest = client.export(path);
    client
        .lines_of(&manifest, "output")
        .into_iter()
        .filter(|(_, line)| line["resourceType"] == "Provenance")
        .map(|(_, line)| line["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn ids(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// Stores two patients with an Observation of code 99999-1 (`assoc-a-obs`), one of
/// another code (`assoc-b-obs`) and a Condition, and Provenance of each.
fn store_targets(hearth: &Hearth) {
    hearth.put(&patient("assoc-a", "female"));
    hearth.put(&patient("assoc-b", "male"));
    hearth.put(&observation("assoc-a-obs", "assoc-a", "99999-1", 1.0));
    hearth.put(&observation("assoc-b-obs", "assoc-b", "99999-2", 2.0));
    hearth.put(&condition("assoc-a-cond", "assoc-a", "44054006"));
    hearth.put(&provenance("prov-a-obs", &["Observation/assoc-a-obs"]));
    hearth.put(&provenance("prov-b-obs", &["Observation/assoc-b-obs"]));
    hearth.put(&provenance("prov-cond", &["Condition/assoc-a-cond"]));
    hearth.put(&provenance(
        "prov-cond-and-obs",
        &[
            "Condition/assoc-a-cond",
            "Observation/assoc-a-obs/_history/1",
        ],
    ));
    hearth.put(&provenance("prov-missing", &["Observation/no-such-obs"]));
}

#[test]
fn provenance_follows_exported_targets() {
    let hearth = Hearth::start();
    store_targets(&hearth);

    // A Provenance is written when one of its targets is written, a versioned
    // reference included; a Condition is not exported, nor is a missing Observation.
    let relevant = "includeAssociatedData=RelevantProvenanceResources";
    let exported = provenance_ids(&hearth, &format!("$export?_type=Observation&{relevant}"));
    assert_eq!(
        exported,
        ids(&["prov-a-obs", "prov-b-obs", "prov-cond-and-obs"])
    );

    // The target must pass the type's _typeFilter as well.
    let filtered = provenance_ids(
        &hearth,
        &format!("$export?_type=Observation&_typeFilter=Observation%3Fcode%3D99999-1&{relevant}"),
    );
    assert_eq!(filtered, ids(&["prov-a-obs", "prov-cond-and-obs"]));

    // Naming Provenance in _type exports every Provenance, as any other type.
    let named = provenance_ids(
        &hearth,
        &format!("$export?_type=Observation,Provenance&{relevant}"),
    );
    assert_eq!(
        named,
        ids(&[
            "prov-a-obs",
            "prov-b-obs",
            "prov-cond",
            "prov-cond-and-obs",
            "prov-missing"
        ])
    );
}

#[test]
fn group_export_adds_members_provenance() {
    let hearth = Hearth::start();
    store_targets(&hearth);
    hearth.put(&group("assoc-group", &["assoc-a"]));

    // The Provenance of a member's Observation is outside the member's compartment but
    // follows its target; the other patient's Observation is not exported.
    let exported = provenance_ids(
        &hearth,
        "Group/assoc-group/$export?_type=Observation\
         &includeAssociatedData=RelevantProvenanceResources",
    );
    assert_eq!(exported, ids(&["prov-a-obs", "prov-cond-and-obs"]));
}

#[test]
fn provenance_of_targets_before_since_is_left_out() {
    let hearth = Hearth::start();
    hearth.put(&patient("since-p", "female"));
    hearth.put(&observation("since-old-obs", "since-p", "99999-3", 1.0));
    hearth.put(&condition("since-cond", "since-p", "44054006"));
    std::thread::sleep(Duration::from_millis(1100));
    let since = now_instant();
    std::thread::sleep(Duration::from_millis(1100));
    hearth.put(&observation("since-new-obs", "since-p", "99999-3", 2.0));
    // Both Provenance are recorded after _since, but only one target changed after it.
    hearth.put(&provenance("prov-old-obs", &["Observation/since-old-obs"]));
    hearth.put(&provenance("prov-new-obs", &["Observation/since-new-obs"]));
    hearth.put(&provenance("prov-gone-obs", &["Observation/since-new-obs"]));
    hearth.put(&provenance("prov-gone-cond", &["Condition/since-cond"]));
    hearth.delete("Provenance/prov-gone-obs");
    hearth.delete("Provenance/prov-gone-cond");

    let client = hearth.client();
    let manifest = client.export(&format!(
        "$export?_type=Observation&_since={since}\
         &includeAssociatedData=RelevantProvenanceResources"
    ));
    let output = keys(&client.lines_of(&manifest, "output"));
    assert!(
        output.contains(&"Provenance/prov-new-obs".to_string()),
        "{output:?}"
    );
    assert!(
        !output.contains(&"Provenance/prov-old-obs".to_string()),
        "{output:?}"
    );

    // Deletions are reported for Provenance of an exported type only.
    let deleted: Vec<String> = client
        .lines_of(&manifest, "deleted")
        .iter()
        .flat_map(|(_, bundle)| bundle["entry"].as_array().cloned().unwrap_or_default())
        .map(|entry| {
            entry["request"]["url"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        deleted.contains(&"Provenance/prov-gone-obs".to_string()),
        "{deleted:?}"
    );
    assert!(
        !deleted.contains(&"Provenance/prov-gone-cond".to_string()),
        "{deleted:?}"
    );
}

#[test]
fn latest_keeps_newest_of_each_target() {
    let hearth = Hearth::start();
    hearth.put(&patient("latest-p", "female"));
    hearth.put(&observation("latest-a", "latest-p", "99999-4", 1.0));
    hearth.put(&observation("latest-b", "latest-p", "99999-4", 2.0));
    // Stored in this order, so each is more recent than the one before.
    hearth.put(&provenance("prov-first", &["Observation/latest-a"]));
    hearth.put(&provenance(
        "prov-second",
        &["Observation/latest-a", "Observation/latest-b"],
    ));
    hearth.put(&provenance("prov-third", &["Observation/latest-a"]));
    // The newest of all names another server's Observation with the same id, so it is
    // neither written nor compared.
    hearth.put(&provenance(
        "prov-elsewhere",
        &["http://other.example/fhir/Observation/latest-a"],
    ));

    let latest = provenance_ids(
        &hearth,
        "$export?_type=Observation&includeAssociatedData=LatestProvenanceResources",
    );
    // prov-third is the newest of latest-a, prov-second the newest of latest-b.
    assert_eq!(latest, ids(&["prov-second", "prov-third"]));

    let relevant = provenance_ids(
        &hearth,
        "$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources",
    );
    assert_eq!(relevant, ids(&["prov-first", "prov-second", "prov-third"]));

    // A _typeFilter of Provenance limits the Provenance compared as well as those
    // written, so prov-first is the newest Provenance of latest-a that it leaves.
    let filtered = provenance_ids(
        &hearth,
        "$export?_type=Observation&_typeFilter=Provenance%3F_id%3Dprov-first\
         &includeAssociatedData=LatestProvenanceResources",
    );
    assert_eq!(filtered, ids(&["prov-first"]));
}

/// Provenance stored for the resume test: half of them target an exported Observation.
const RESUME_PROVENANCE: usize = 400;

#[test]
fn associated_provenance_survives_restart() {
    let hearth = Hearth::start_configured(SLOW);
    hearth.put(&patient("resume-p", "female"));
    hearth.put(&observation("resume-obs", "resume-p", "99999-5", 1.0));
    hearth.put(&condition("resume-cond", "resume-p", "44054006"));
    let entry: Vec<Value> = (0..RESUME_PROVENANCE)
        .map(|index| {
            let target = if index.is_multiple_of(2) {
                "Observation/resume-obs"
            } else {
                "Condition/resume-cond"
            };
            let id = format!("prov-resume-{index}");
            json!({
                "resource": provenance(&id, &[target]),
                "request": {"method": "PUT", "url": format!("Provenance/{id}")}
            })
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entry});
    let writer = hearth.writer();
    let reply = Reply::send(
        writer
            .request(Method::POST, &writer.base)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string()),
    );
    assert_eq!(reply.status, 200, "the transaction: {}", reply.text());

    let path = "$export?_type=Observation&includeAssociatedData=RelevantProvenanceResources";
    let client = hearth.client();
    let status = client.status_url(&client.kick_off(path));
    // Two Observation files come first, so the third file is one of Provenance.
    let mut finished = 0;
    for _ in 0..300 {
        finished = stored_files(&hearth, &status);
        if finished >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(finished >= 3, "the job finished {finished} files in 15 s");
    assert_eq!(client.get(&status).status, 202, "the job is still running");

    let hearth = restart(hearth, Stop::Kill);
    let client = hearth.client();
    let resumed = keys(&client.lines_of(&client.wait(&status), "output"));
    let mut unique = resumed.clone();
    unique.dedup();
    assert_eq!(unique.len(), resumed.len(), "a resource was written twice");
    let provenance: Vec<&String> = resumed
        .iter()
        .filter(|key| key.starts_with("Provenance/"))
        .collect();
    assert_eq!(provenance.len(), RESUME_PROVENANCE / 2);
    assert!(
        provenance.iter().all(|key| {
            let index: usize = key.rsplit('-').next().unwrap().parse().unwrap();
            index.is_multiple_of(2)
        }),
        "a Provenance of the Condition was written: {provenance:?}"
    );

    let fresh = keys(&client.lines_of(&client.export(path), "output"));
    assert_eq!(resumed, fresh);
}
