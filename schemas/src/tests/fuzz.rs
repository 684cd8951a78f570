//! Decoding malformed input returns errors and never panics.

use proptest::prelude::*;
use proptest::sample::select;

use crate::*;

fn known_fingerprints() -> Vec<u64> {
    super::registry()
        .events()
        .iter()
        .flat_map(|event| event.history.iter().map(|(_, parsed)| parsed.fingerprint))
        .collect()
}

fn sample_transaction() -> ResourceTransaction {
    ResourceTransaction {
        event_id: "2f5c4c0e-0c1b-4e0e-9d8e-8f7f6a5b4c3d".to_string(),
        occurred_at: 1_733_000_000_000_000,
        site_id: "main".to_string(),
        kind: TransactionKind::Transaction,
        entries: vec![ResourceOperation {
            action: ResourceAction::Update,
            resource_type: "Patient".to_string(),
            id: Some("p1".to_string()),
            full_url: None,
            resource: Some(r#"{"resourceType":"Patient","id":"p1"}"#.to_string()),
            if_match: Some("W/\"1\"".to_string()),
            if_none_exist: None,
            criteria: None,
        }],
        client_id: Some("app".to_string()),
        user_id: None,
        request_id: Some("r1".to_string()),
    }
}

/// Runs every decoding entry point on `bytes`. Each may fail, but none may panic.
fn decode_everything(bytes: &[u8]) {
    let _ = decode_any(bytes);
    let _ = event_name(bytes);
    let _ = decode::<ResourceTransaction>(bytes);
    let _ = decode::<ApiCall>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn known_header_with_arbitrary_body_does_not_panic(
        fingerprint in select(known_fingerprints()),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![0xC3, 0x01];
        bytes.extend_from_slice(&fingerprint.to_le_bytes());
        bytes.extend_from_slice(&body);
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_payload_does_not_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&sample_transaction()).unwrap();
        for (index, byte) in flips {
            let i = 10 + index.index(bytes.len() - 10);
            bytes[i] = byte;
        }
        decode_everything(&bytes);
        decode_everything(&bytes[..cut.index(bytes.len())]);
    }
}

#[test]
fn empty_input_is_truncated() {
    assert!(matches!(
        decode_any(&[]),
        Err(Error::Truncated { len: 0, .. })
    ));
}

#[test]
fn short_header_is_truncated() {
    let bytes = encode(&sample_transaction()).unwrap();
    assert!(matches!(
        event_name(&bytes[..7]),
        Err(Error::Truncated { len: 7, .. })
    ));
}

#[test]
fn wrong_marker_is_rejected() {
    let mut bytes = encode(&sample_transaction()).unwrap();
    bytes[1] = 0x00;
    assert!(matches!(decode_any(&bytes), Err(Error::BadMarker { .. })));
}

#[test]
fn unknown_fingerprint_is_reported() {
    let mut bytes = encode(&sample_transaction()).unwrap();
    bytes[2..10].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_le_bytes());
    let error = decode_any(&bytes).unwrap_err();
    assert!(matches!(
        error,
        Error::UnknownFingerprint {
            fingerprint: 0x0123_4567_89ab_cdef
        }
    ));
}

#[test]
fn other_event_type_is_schema_mismatch() {
    let bytes = encode(&sample_transaction()).unwrap();
    let error = decode::<ApiCall>(&bytes).unwrap_err();
    assert!(matches!(
        error,
        Error::SchemaMismatch {
            expected: "hearth.events.ApiCall",
            found: "hearth.events.ResourceTransaction",
        }
    ));
}

#[test]
fn truncated_body_is_truncated() {
    let bytes = encode(&sample_transaction()).unwrap();
    for len in 10..bytes.len() {
        let error = decode_any(&bytes[..len]).unwrap_err();
        assert!(
            matches!(error, Error::Truncated { .. }),
            "length {len}: {error:?}"
        );
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&sample_transaction()).unwrap();
    bytes.push(0);
    assert!(matches!(decode_any(&bytes), Err(Error::InvalidBody { .. })));
}

/// An array count far beyond the input must be rejected before apache-avro reserves
/// memory for it.
#[test]
fn huge_array_count_is_rejected() {
    let mut bytes = encode(&sample_transaction()).unwrap()[..10].to_vec();
    // Empty event_id, occurred_at 0, empty site_id, kind LOAD.
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    // Zig-zag varint of 2^40 entries.
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    let error = decode_any(&bytes).unwrap_err();
    assert!(matches!(error, Error::Truncated { .. }), "{error:?}");
}

#[test]
fn invalid_utf8_is_an_error() {
    let event = sample_transaction();
    let mut bytes = encode(&event).unwrap();
    let position = bytes.windows(4).position(|w| w == b"main").unwrap();
    bytes[position] = 0xFF;
    assert!(decode_any(&bytes).is_err());
}
