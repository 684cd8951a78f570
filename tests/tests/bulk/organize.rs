//! `organizeOutputBy=Patient`: files of patient blocks, each a header `Parameters`
//! resource followed by the patient's resources, with the manifest fields the IG requires.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::client::{assert_outcome, keys, ndjson_lines};
use crate::fixture::Hearth;

/// Files end after 10 resources, at the end of the block that reaches them, so each of
/// the sample's patients gets a file.
const SMALL_FILES: &str = "[bulk]\nfile_max_resources = 10\n";

/// Returns the patient a header line references, or `None` when the line is no header.
fn header_patient(line: &Value) -> Option<String> {
    if line["resourceType"] != "Parameters" {
        return None;
    }
    let parameter = &line["parameter"][0];
    assert_eq!(parameter["name"], "header", "{line}");
    let reference = parameter["valueReference"]["reference"]
        .as_str()
        .expect("a header references its patient");
    Some(
        reference
            .strip_prefix("Patient/")
            .expect("the header references a Patient")
            .to_string(),
    )
}

/// Returns the patient a resource belongs to, through `subject` or `patient`.
fn owner(resource: &Value) -> Option<String> {
    if resource["resourceType"] == "Patient" {
        return resource["id"].as_str().map(str::to_string);
    }
    ["subject", "patient"].iter().find_map(|field| {
        resource[*field]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
    })
}

#[test]
fn organized_export_writes_patient_blocks() {
    let hearth = Hearth::start_configured(SMALL_FILES);
    let client = hearth.client();
    let types = "_type=Patient,Condition,Observation";

    let manifest = client.export(&format!("Patient/$export?organizeOutputBy=Patient&{types}"));
    assert_eq!(manifest["outputOrganizedBy"], "Patient", "{manifest}");
    let output = manifest["output"].as_array().expect("an output array");
    assert!(
        output.len() > 1,
        "the small file limit gives several files: {manifest}"
    );

    let mut resources = Vec::new();
    let mut headers = Vec::new();
    for entry in output {
        assert!(
            entry.get("type").is_none(),
            "organized entries have no type: {entry}"
        );
        assert!(
            entry.get("continuesInFile").is_none(),
            "blocks are never split: {entry}"
        );
        let url = entry["url"].as_str().expect("a url");
        let reply = client.download(url);
        assert_eq!(reply.status, 200, "{url}");
        let lines = ndjson_lines(&reply.bytes);
        assert_eq!(
            entry["count"].as_u64(),
            Some(lines.len() as u64),
            "count of {url}"
        );
        let first = lines.first().expect("a file is never empty");
        assert!(
            header_patient(first).is_some(),
            "{url} starts with a header: {first}"
        );

        let mut current = None;
        for line in lines {
            if let Some(patient) = header_patient(&line) {
                assert!(
                    !headers.contains(&patient),
                    "Patient/{patient} has one block, in one file"
                );
                headers.push(patient.clone());
                current = Some(patient);
                continue;
            }
            assert_eq!(owner(&line), current, "a line outside its block: {line}");
            resources.push((String::new(), line));
        }
    }
    assert!(
        headers.len() >= 2,
        "the sample has two patients: {headers:?}"
    );

    // The blocks hold exactly what the same export by type holds.
    let by_type = client.export(&format!("Patient/$export?{types}"));
    let expected = keys(&client.lines_of(&by_type, "output"));
    assert_eq!(keys(&resources), expected);
    let patients: BTreeSet<&String> = headers.iter().collect();
    assert_eq!(patients.len(), headers.len());
}

#[test]
fn organized_export_by_group_follows_members() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let all = client.export("Patient/$export?_type=Patient");
    let first = keys(&client.lines_of(&all, "output"))
        .into_iter()
        .next()
        .expect("a patient");
    let id = first.strip_prefix("Patient/").expect("a Patient key");
    hearth.put(&crate::fixture::group("organized", &[id]));

    let manifest = client.export("Group/organized/$export?organizeOutputBy=Patient");
    let lines = client.lines_of(&manifest, "output");
    let blocks: Vec<String> = lines
        .iter()
        .filter_map(|(_, l)| header_patient(l))
        .collect();
    assert_eq!(blocks, [id.to_string()]);
    // Every type of the compartment is in the block, the Group itself too (through
    // `member`), so each line must reference the patient or be the patient.
    let reference = format!("\"Patient/{id}\"");
    for (_, line) in lines.iter().filter(|(_, l)| header_patient(l).is_none()) {
        let is_patient = line["resourceType"] == "Patient" && line["id"] == id;
        assert!(
            is_patient || line.to_string().contains(&reference),
            "a line outside the block of Patient/{id}: {line}"
        );
    }
}

#[test]
fn unsupported_organization_follows_handling() {
    let hearth = Hearth::start();
    let client = hearth.client();
    let strict = [("prefer", "respond-async, handling=strict")];

    let reply = client.kick_off_with("Patient/$export?organizeOutputBy=Encounter", &strict);
    assert_outcome(&reply, 400);
    let reply = client.kick_off_with(
        "Patient/$export?organizeOutputBy=Patient&_outputFormat=parquet",
        &strict,
    );
    assert_outcome(&reply, 400);

    // Lenient handling exports by type and says why in the error file.
    let manifest = client.export("Patient/$export?organizeOutputBy=Encounter&_type=Patient");
    assert!(manifest.get("outputOrganizedBy").is_none(), "{manifest}");
    assert_eq!(manifest["output"][0]["type"], "Patient", "{manifest}");
    let errors = client.lines_of(&manifest, "error");
    assert!(
        errors
            .iter()
            .any(|(_, e)| e.to_string().contains("organizeOutputBy=Encounter")),
        "{errors:?}"
    );

    // Walking every Patient needs Patient access.
    let observations_only =
        client.with_token(&hearth.token(crate::fixture::SERVICE, "system/Observation.rs"));
    let reply = observations_only.kick_off("Patient/$export?organizeOutputBy=Patient");
    assert_outcome(&reply, 403);
}
