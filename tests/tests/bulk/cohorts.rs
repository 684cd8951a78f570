//! Cohorts: Groups whose members come from FHIR searches, refreshed on demand, and the
//! export of exactly those patients.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Reply, assert_outcome, keys};
use crate::fixture::{Hearth, condition, observation, patient};

const MEMBER_FILTER: &str = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter";
const DIABETES: &str = "44054006";
const GLUCOSE: &str = "2345-7";

fn cohort_group(id: &str, filters: &[&str]) -> Value {
    let extensions: Vec<Value> = filters
        .iter()
        .map(|query| {
            json!({"url": MEMBER_FILTER, "valueExpression": {
                "language": "application/x-fhir-query", "expression": query}})
        })
        .collect();
    json!({"resourceType": "Group", "id": id, "type": "person", "actual": true,
           "name": "Diabetes with high glucose", "modifierExtension": extensions})
}

/// Three patients: c1 with diabetes and a high glucose value, c2 with diabetes and a
/// normal one, c3 with a high value and no diabetes.
fn load_cohort_data(hearth: &Hearth) {
    for id in ["c1", "c2", "c3"] {
        hearth.put(&patient(id, "female"));
    }
    hearth.put(&condition("c1-dm", "c1", DIABETES));
    hearth.put(&condition("c2-dm", "c2", DIABETES));
    hearth.put(&observation("c1-glu", "c1", GLUCOSE, 180.0));
    hearth.put(&observation("c2-glu", "c2", GLUCOSE, 90.0));
    hearth.put(&observation("c3-glu", "c3", GLUCOSE, 200.0));
}

fn refresh(hearth: &Hearth, id: &str) -> Reply {
    Reply::send(
        hearth
            .writer()
            .request(Method::POST, &format!("Group/{id}/$refresh"))
            .header("accept", "application/fhir+json"),
    )
}

#[test]
fn criteria_cohort_exports_exactly_its_members() {
    let hearth = Hearth::start();
    load_cohort_data(&hearth);
    hearth.put(&cohort_group(
        "dm-high",
        &[
            &format!("Condition?code=http://snomed.info/sct|{DIABETES}"),
            &format!("Observation?code={GLUCOSE}&value-quantity=gt150"),
        ],
    ));

    let refreshed = refresh(&hearth, "dm-high");
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let group = refreshed.json();
    assert_eq!(group["quantity"], 1, "{group}");
    assert_eq!(group["member"][0]["entity"]["reference"], "Patient/c1");

    let client = hearth.client();
    let manifest = client.export("Group/dm-high/$export?_type=Patient,Condition,Observation");
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        ["Condition/c1-dm", "Observation/c1-glu", "Patient/c1"]
    );

    // The export evaluates the criteria again: c2's new high value makes c2 a member.
    hearth.put(&observation("c2-glu-2", "c2", GLUCOSE, 170.0));
    let manifest = client.export("Group/dm-high/$export?_type=Patient");
    assert_eq!(
        keys(&client.lines_of(&manifest, "output")),
        ["Patient/c1", "Patient/c2"]
    );
    let group = refresh(&hearth, "dm-high").json();
    assert_eq!(group["quantity"], 2, "{group}");
}

#[test]
fn member_list_group_and_bad_filters() {
    let hearth = Hearth::start();
    load_cohort_data(&hearth);
    let client = hearth.client();

    let empty = json!({"resourceType": "Group", "id": "empty", "type": "person", "actual": true});
    hearth.put(&empty);
    let manifest = client.export("Group/empty/$export?_type=Patient,Observation");
    assert!(
        client.lines_of(&manifest, "output").is_empty(),
        "a Group without members exports nothing: {manifest}"
    );

    hearth.put(&cohort_group("bad", &["Medication?code=1"]));
    assert_outcome(&client.kick_off("Group/bad/$export"), 400);
    assert_outcome(&refresh(&hearth, "bad"), 400);

    hearth.put(&cohort_group(
        "unknown-param",
        &["Condition?no-such-param=1"],
    ));
    assert_outcome(&client.kick_off("Group/unknown-param/$export"), 400);
}
