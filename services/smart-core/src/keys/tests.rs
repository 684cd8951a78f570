use std::time::Instant;

use serde_json::Value;

use super::*;

const ISSUER: &str = "https://hearth.example/auth";
const AUDIENCE: &str = "https://hearth.example/fhir";

fn now() -> i64 {
    now_seconds()
}

fn access_claims(exp: i64) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.to_string(),
        sub: "user-1".to_string(),
        aud: AUDIENCE.to_string(),
        exp,
        iat: now(),
        jti: "jti-1".to_string(),
        client_id: "app-pub".to_string(),
        scope: "launch/patient patient/*.rs".to_string(),
        gid: Some("grant-1".to_string()),
        site: "main".to_string(),
        patient: Some("123".to_string()),
        encounter: None,
        fhir_user: Some("Patient/123".to_string()),
        user_type: Some("Patient".to_string()),
    }
}

fn id_claims() -> IdTokenClaims {
    IdTokenClaims {
        iss: ISSUER.to_string(),
        sub: "user-1".to_string(),
        aud: "app-pub".to_string(),
        exp: now() + 300,
        iat: now(),
        nonce: Some("n-0S6_WzA2Mj".to_string()),
        fhir_user: Some("https://hearth.example/fhir/Patient/123".to_string()),
        auth_time: None,
        name: Some("Amy Shaw".to_string()),
        given_name: None,
        family_name: None,
        preferred_username: None,
        profile: None,
    }
}

fn open_new() -> (tempfile::TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open_or_create(&dir.path().join("keys")).unwrap();
    (dir, store)
}

fn segment_json(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&crate::base64url::decode(part).unwrap()).unwrap()
}

#[test]
fn thumbprint_matches_rfc7638_example() {
    let jwk = PublicJwk::Rsa {
        n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t\
            Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y\
            GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk\
            t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnq\
            DKgw"
            .to_string(),
        e: "AQAB".to_string(),
    };

    assert_eq!(
        jwk.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn first_open_creates_keys_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let store = KeyStore::open_or_create(&dir.path().join("keys")).unwrap();
    let elapsed = started.elapsed();

    // RSA 2048 generation dominates; the dev profile builds dependencies at opt-level 2.
    assert!(elapsed.as_secs() < 10, "key generation took {elapsed:?}");
    let keys = store.keys();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|key| key.status == KeyStatus::Active));
    assert!(
        keys.iter()
            .any(|key| key.algorithm == SigningAlgorithm::Rs256)
    );
    assert!(
        keys.iter()
            .any(|key| key.algorithm == SigningAlgorithm::Es256)
    );
}

#[cfg(unix)]
#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let (dir, store) = open_new();
    let keys_dir = dir.path().join("keys");

    for key in store.keys() {
        let path = keys_dir.join(format!("{}.pem", key.kid));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{}",
            path.display()
        );
    }
    let dir_mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let index_mode = std::fs::metadata(keys_dir.join(store::INDEX_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(index_mode & 0o777, 0o600);
}

#[test]
fn reopen_loads_same_keys() {
    let (dir, store) = open_new();
    let token = store
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();

    let reopened = KeyStore::open_or_create(&dir.path().join("keys")).unwrap();

    assert_eq!(reopened.keys(), store.keys());
    assert_eq!(reopened.jwks(), store.jwks());
    let claims: AccessClaims = reopened
        .verify_access_token(&token, ISSUER, AUDIENCE)
        .unwrap();
    assert_eq!(claims, access_claims(claims.exp));
}

#[test]
fn jwks_has_public_members_only() {
    let (_dir, store) = open_new();
    let jwks = store.jwks();
    let keys = jwks["keys"].as_array().unwrap();

    assert_eq!(keys.len(), 2);
    let rsa = keys.iter().find(|key| key["kty"] == "RSA").unwrap();
    let ec = keys.iter().find(|key| key["kty"] == "EC").unwrap();

    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["use"], "sig");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(
        crate::base64url::decode(rsa["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    assert_eq!(ec["alg"], "ES256");
    assert_eq!(ec["crv"], "P-256");
    assert_eq!(
        crate::base64url::decode(ec["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        crate::base64url::decode(ec["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
        assert_eq!(key["kid"].as_str().unwrap().len(), 43);
    }
}

#[test]
fn access_token_round_trip() {
    let (_dir, store) = open_new();
    let claims = access_claims(now() + 300);

    let token = store.sign_access_token(&claims).unwrap();
    let header = segment_json(&token, 0);
    let verified: AccessClaims = store.verify_access_token(&token, ISSUER, AUDIENCE).unwrap();

    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], store.jwks()["keys"][1]["kid"]);
    assert_eq!(verified, claims);
    assert_eq!(segment_json(&token, 1)["fhirUser"], "Patient/123");
}

#[test]
fn id_token_round_trip() {
    let (_dir, store) = open_new();
    let claims = id_claims();

    let token = store.sign_id_token(&claims).unwrap();
    let header = segment_json(&token, 0);
    let verified: IdTokenClaims = store.verify_id_token(&token, ISSUER, "app-pub").unwrap();

    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(verified, claims);
    let payload = segment_json(&token, 1);
    assert_eq!(
        payload["fhirUser"],
        "https://hearth.example/fhir/Patient/123"
    );
    assert!(payload.get("given_name").is_none());
}

#[test]
fn verify_rejects_wrong_issuer_and_audience() {
    let (_dir, store) = open_new();
    let token = store
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();

    let wrong_issuer = store.verify_access_token::<AccessClaims>(&token, "https://x", AUDIENCE);
    let wrong_audience = store.verify_access_token::<AccessClaims>(&token, ISSUER, "https://x");

    assert!(
        matches!(wrong_issuer, Err(KeyError::InvalidToken(_))),
        "{wrong_issuer:?}"
    );
    assert!(
        matches!(wrong_audience, Err(KeyError::InvalidToken(_))),
        "{wrong_audience:?}"
    );
}

#[test]
fn verify_rejects_expired() {
    let (_dir, store) = open_new();
    let just_expired = store.sign_access_token(&access_claims(now() - 5)).unwrap();
    let expired = store
        .sign_access_token(&access_claims(now() - 120))
        .unwrap();

    let within_skew = store.verify_access_token::<AccessClaims>(&just_expired, ISSUER, AUDIENCE);
    let result = store.verify_access_token::<AccessClaims>(&expired, ISSUER, AUDIENCE);

    assert!(within_skew.is_ok(), "{within_skew:?}");
    assert!(matches!(result, Err(KeyError::Expired)), "{result:?}");
}

#[test]
fn verify_rejects_future_nbf() {
    let (_dir, store) = open_new();
    let mut claims = serde_json::to_value(access_claims(now() + 600)).unwrap();
    claims["nbf"] = (now() + 300).into();

    let token = store.sign_access_token(&claims).unwrap();
    let result = store.verify_access_token::<AccessClaims>(&token, ISSUER, AUDIENCE);

    assert!(
        matches!(result, Err(KeyError::InvalidToken(_))),
        "{result:?}"
    );
}

#[test]
fn verify_rejects_tampered_token() {
    let (_dir, store) = open_new();
    let token = store
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims = segment_json(&token, 1);
    claims["patient"] = "456".into();
    parts[1] = crate::base64url::encode(serde_json::to_vec(&claims).unwrap());

    let result = store.verify_access_token::<AccessClaims>(&parts.join("."), ISSUER, AUDIENCE);

    assert!(
        matches!(result, Err(KeyError::InvalidToken(_))),
        "{result:?}"
    );
}

#[test]
fn id_token_is_not_an_access_token() {
    let (_dir, store) = open_new();
    let mut claims = serde_json::to_value(id_claims()).unwrap();
    claims["aud"] = AUDIENCE.into();
    let token = store.sign_id_token(&claims).unwrap();

    let result = store.verify_access_token::<Value>(&token, ISSUER, AUDIENCE);

    assert!(
        matches!(result, Err(KeyError::InvalidToken(_))),
        "{result:?}"
    );
}

#[test]
fn verify_rejects_garbage() {
    let (_dir, store) = open_new();

    for token in ["", "a.b.c", "not a token", "eyJhbGciOiJub25lIn0.e30."] {
        let result = store.verify_access_token::<Value>(token, ISSUER, AUDIENCE);
        assert!(
            matches!(result, Err(KeyError::InvalidToken(_))),
            "{token}: {result:?}"
        );
    }
}

#[test]
fn verify_rejects_unknown_kid() {
    let (_dir, store) = open_new();
    let (_other_dir, other) = open_new();
    let token = other
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();

    let result = store.verify_access_token::<AccessClaims>(&token, ISSUER, AUDIENCE);

    assert!(
        matches!(result, Err(KeyError::InvalidToken(_))),
        "{result:?}"
    );
}

#[test]
fn rotate_keeps_old_keys_published() {
    let (dir, mut store) = open_new();
    let old_token = store
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();
    let old_kids: Vec<String> = store.keys().into_iter().map(|key| key.kid).collect();

    store.rotate().unwrap();
    let new_token = store
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();

    let keys = store.keys();
    assert_eq!(keys.len(), 4);
    for key in &keys {
        let expected = if old_kids.contains(&key.kid) {
            KeyStatus::Retired
        } else {
            KeyStatus::Active
        };
        assert_eq!(key.status, expected, "{}", key.kid);
    }
    assert_eq!(store.jwks()["keys"].as_array().unwrap().len(), 4);
    assert_ne!(
        segment_json(&old_token, 0)["kid"],
        segment_json(&new_token, 0)["kid"]
    );
    for token in [&old_token, &new_token] {
        assert!(
            store
                .verify_access_token::<AccessClaims>(token, ISSUER, AUDIENCE)
                .is_ok()
        );
    }

    let reopened = KeyStore::open_or_create(&dir.path().join("keys")).unwrap();
    assert_eq!(reopened.keys(), keys);
}

#[test]
fn prune_removes_retired_keys() {
    let (dir, mut store) = open_new();
    let old_token = store
        .sign_access_token(&access_claims(now() + 300))
        .unwrap();
    store.rotate().unwrap();

    assert_eq!(store.prune_retired(now() - 3600).unwrap(), 0);
    assert_eq!(store.prune_retired(now() + 1).unwrap(), 2);

    assert_eq!(store.keys().len(), 2);
    let result = store.verify_access_token::<AccessClaims>(&old_token, ISSUER, AUDIENCE);
    assert!(
        matches!(result, Err(KeyError::InvalidToken(_))),
        "{result:?}"
    );
    let pem_files = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("pem".as_ref()))
        .count();
    assert_eq!(pem_files, 2);
}

#[test]
fn swapped_key_file_is_detected() {
    let (dir, _store) = open_new();
    let keys_dir = dir.path().join("keys");
    let index_path = keys_dir.join(store::INDEX_FILE);
    let mut index: Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    index["keys"][1]["kid"] = "not-the-thumbprint".into();
    std::fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();

    let result = KeyStore::open_or_create(&keys_dir);

    assert!(
        matches!(result, Err(KeyError::InvalidKeyFile { .. })),
        "{result:?}"
    );
}

#[test]
fn index_cannot_point_outside_directory() {
    let (dir, _store) = open_new();
    let keys_dir = dir.path().join("keys");
    let index_path = keys_dir.join(store::INDEX_FILE);
    let mut index: Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    index["keys"][0]["file"] = "../outside.pem".into();
    std::fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();

    let result = KeyStore::open_or_create(&keys_dir);

    assert!(
        matches!(result, Err(KeyError::InvalidIndex { .. })),
        "{result:?}"
    );
}

#[test]
fn corrupt_index_is_an_error() {
    let (dir, _store) = open_new();
    let keys_dir = dir.path().join("keys");
    std::fs::write(keys_dir.join(store::INDEX_FILE), "{not json").unwrap();

    let result = KeyStore::open_or_create(&keys_dir);

    assert!(
        matches!(result, Err(KeyError::InvalidIndex { .. })),
        "{result:?}"
    );
}

#[test]
fn client_assertion_verifies_with_client_jwks() {
    use crate::client_assertion::{Jwks, verify_client_assertion};

    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open_or_create(dir.path()).unwrap();
    let token_url = "https://ehr.example/auth/token";
    let claims = json!({
        "iss": "hearth", "sub": "hearth", "aud": token_url,
        "exp": now() + 60, "jti": "assertion-1",
    });
    let assertion = store.sign_client_assertion(&claims).unwrap();
    let jwks = Jwks::from_json(&store.client_jwks().to_string()).unwrap();
    assert_eq!(jwks.len(), 1, "one RSA key is published for RS384");

    let verified = verify_client_assertion(&assertion, &jwks, "hearth", token_url, now()).unwrap();
    assert_eq!(verified.jti, "assertion-1");
}
