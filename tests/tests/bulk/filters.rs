//! `_typeFilter` queries run on the FHIR search engine with the caller's scopes.

use crate::client::{assert_outcome, keys};
use crate::fixture::{Hearth, SERVICE, observation, patient};

#[test]
fn type_filter_chains_follow_scopes() {
    let hearth = Hearth::start();
    hearth.put(&patient("chain-f", "female"));
    hearth.put(&patient("chain-m", "male"));
    hearth.put(&observation("chain-f-obs", "chain-f", "2345-7", 90.0));
    hearth.put(&observation("chain-m-obs", "chain-m", "2345-7", 95.0));
    let path = "$export?_type=Observation\
                &_typeFilter=Observation%3Fcode%3D2345-7%26subject%3APatient.gender%3Dfemale";

    // With Patient access the chain selects the female patient's Observation.
    let client = hearth.client();
    let exported = keys(&client.lines_of(&client.export(path), "output"));
    assert!(
        exported.contains(&"Observation/chain-f-obs".to_string()),
        "{exported:?}"
    );
    assert!(
        !exported.contains(&"Observation/chain-m-obs".to_string()),
        "{exported:?}"
    );

    // Without it the chain reads no Patient, as the same search would, so nothing matches.
    let observations_only = client.with_token(&hearth.token(SERVICE, "system/Observation.rs"));
    let manifest = observations_only.export(path);
    let exported = keys(&observations_only.lines_of(&manifest, "output"));
    assert!(exported.is_empty(), "the chain saw Patients: {exported:?}");
}

#[test]
fn malformed_type_filter_value_is_rejected() {
    let hearth = Hearth::start();
    let client = hearth.client();
    // A malformed date is invalid under any handling, as in a search.
    let reply =
        client.kick_off("$export?_type=Observation&_typeFilter=Observation%3Fdate%3Dnot-a-date");
    assert_outcome(&reply, 400);
    // So are a value without `Type?`, an unknown type and a broken percent escape.
    for filter in ["Patient", "NoSuchType%3Fname%3Dx", "Patient%3Fname%3D%25ZZ"] {
        let reply = client.kick_off(&format!("$export?_typeFilter={filter}"));
        assert_outcome(&reply, 400);
    }
    // A parameter that only shapes results cannot filter an export.
    let reply = client.kick_off_with(
        "$export?_type=Observation&_typeFilter=Observation%3F_sort%3Ddate",
        &[("prefer", "handling=strict")],
    );
    assert_outcome(&reply, 400);
}
