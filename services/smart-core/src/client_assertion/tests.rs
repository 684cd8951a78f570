use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p384::elliptic_curve::Generate;
use p384::pkcs8::EncodePrivateKey;
use proptest::prelude::*;
use rand::rngs::SysRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::*;

const CLIENT_ID: &str = "svc1";
const TOKEN_URL: &str = "https://hearth.example/auth/token";
const JWKS_URL: &str = "https://svc1.example/.well-known/jwks.json";
const NOW: i64 = 1_700_000_000;

/// A private key generated for the tests, with its public JWK.
struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa_test_key(kid: &str) -> TestKey {
    let key = rsa::PrivateKey::new(&mut SysRng, 2048).unwrap();
    let der = key.to_pkcs1_der().unwrap();

    TestKey {
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA",
            "kid": kid,
            "alg": "RS384",
            "n": base64url::encode(key.n_bytes()),
            "e": base64url::encode(key.e_bytes()),
        }),
    }
}

fn ec_test_key(kid: &str) -> TestKey {
    let key = p384::SecretKey::try_generate_from_rng(&mut SysRng).unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let point = key.public_key().to_sec1_bytes();

    TestKey {
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC",
            "kid": kid,
            "crv": "P-384",
            "x": base64url::encode(&point[1..49]),
            "y": base64url::encode(&point[49..97]),
        }),
    }
}

fn rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_test_key("rsa-1"))
}

fn second_rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_test_key("rsa-2"))
}

fn ec_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| ec_test_key("ec-1"))
}

fn jwks_of(keys: &[&Value]) -> Jwks {
    Jwks::from_json(&json!({ "keys": keys }).to_string()).unwrap()
}

fn client_jwks() -> Jwks {
    jwks_of(&[&rsa_key().jwk, &ec_key().jwk])
}

fn claims() -> Value {
    json!({
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": TOKEN_URL,
        "exp": NOW + 240,
        "iat": NOW,
        "jti": "8d7b9f3e-1c2a-4f5e-9b6d-0a1b2c3d4e5f",
    })
}

fn sign_with(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs384(claims: &Value) -> String {
    sign_with(Algorithm::RS384, Some("rsa-1"), claims, &rsa_key().encoding)
}

fn verify(assertion: &str) -> Result<AssertionClaims, AssertionError> {
    verify_client_assertion(assertion, &client_jwks(), CLIENT_ID, TOKEN_URL, NOW)
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

fn without_claim(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

/// Builds a JWT from raw header and claims JSON with a given signature part.
fn raw_jwt(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string())
    )
}

#[test]
fn accepts_rs384() {
    let verified = verify(&rs384(&claims())).unwrap();

    assert_eq!(verified.client_id, CLIENT_ID);
    assert_eq!(verified.jti, "8d7b9f3e-1c2a-4f5e-9b6d-0a1b2c3d4e5f");
    assert_eq!(verified.exp, NOW + 240);
    assert_eq!(verified.iat, Some(NOW));
    assert_eq!(verified.kid.as_deref(), Some("rsa-1"));
}

#[test]
fn accepts_es384() {
    let assertion = sign_with(
        Algorithm::ES384,
        Some("ec-1"),
        &claims(),
        &ec_key().encoding,
    );

    let verified = verify(&assertion).unwrap();

    assert_eq!(verified.kid.as_deref(), Some("ec-1"));
}

#[test]
fn accepts_audience_array() {
    let assertion = rs384(&with_claim(
        "aud",
        json!(["https://other.example", TOKEN_URL]),
    ));

    assert!(verify(&assertion).is_ok());
}

#[test]
fn rejects_disallowed_algorithms() {
    let rs256 = sign_with(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(),
        &rsa_key().encoding,
    );
    let hs256 = sign_with(
        Algorithm::HS256,
        Some("rsa-1"),
        &claims(),
        &EncodingKey::from_secret(b"shared secret").unwrap(),
    );
    let none = raw_jwt(&json!({"alg": "none", "typ": "JWT"}), &claims(), "");

    assert_eq!(
        verify(&rs256),
        Err(AssertionError::UnsupportedAlgorithm("RS256".to_string()))
    );
    assert_eq!(
        verify(&hs256),
        Err(AssertionError::UnsupportedAlgorithm("HS256".to_string()))
    );
    assert_eq!(
        verify(&none),
        Err(AssertionError::UnsupportedAlgorithm("none".to_string()))
    );
}

#[test]
fn rejects_missing_alg() {
    let assertion = raw_jwt(&json!({"typ": "JWT"}), &claims(), "AAAA");

    assert!(matches!(
        verify(&assertion),
        Err(AssertionError::Malformed(_))
    ));
}

#[test]
fn rejects_expired() {
    let expired = rs384(&with_claim("exp", json!(NOW - 60)));
    let within_skew = rs384(&with_claim("exp", json!(NOW - 10)));

    assert_eq!(verify(&expired), Err(AssertionError::Expired));
    assert!(verify(&within_skew).is_ok());
}

#[test]
fn rejects_exp_too_far_ahead() {
    let limit = NOW + MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS;
    let too_far = rs384(&with_claim("exp", json!(limit + 1)));
    let at_limit = rs384(&with_claim("exp", json!(limit)));
    let rounded_up = rs384(&with_claim("exp", json!(NOW + MAX_LIFETIME_SECONDS + 1)));

    assert_eq!(verify(&too_far), Err(AssertionError::ExpiresTooLate));
    assert!(verify(&at_limit).is_ok());
    assert!(verify(&rounded_up).is_ok());
}

#[test]
fn rejects_missing_exp() {
    assert_eq!(
        verify(&rs384(&without_claim("exp"))),
        Err(AssertionError::MissingClaim("exp"))
    );
}

#[test]
fn rejects_non_numeric_exp() {
    let assertion = rs384(&with_claim("exp", json!("tomorrow")));

    assert!(matches!(
        verify(&assertion),
        Err(AssertionError::Malformed(_))
    ));
}

#[test]
fn rejects_future_nbf_and_iat() {
    let nbf = rs384(&with_claim("nbf", json!(NOW + 120)));
    let iat = rs384(&with_claim("iat", json!(NOW + 120)));

    assert_eq!(verify(&nbf), Err(AssertionError::NotYetValid));
    assert_eq!(verify(&iat), Err(AssertionError::NotYetValid));
}

#[test]
fn rejects_wrong_audience() {
    let wrong = rs384(&with_claim("aud", json!("https://other.example/token")));
    let missing = rs384(&without_claim("aud"));

    assert_eq!(verify(&wrong), Err(AssertionError::WrongAudience));
    assert_eq!(verify(&missing), Err(AssertionError::MissingClaim("aud")));
}

#[test]
fn rejects_issuer_and_subject_mismatch() {
    let sub_differs = rs384(&with_claim("sub", json!("someone-else")));
    let both_other = rs384(&with_claim("iss", json!("other-client")));
    let missing_sub = rs384(&without_claim("sub"));

    assert_eq!(verify(&sub_differs), Err(AssertionError::SubjectMismatch));
    assert_eq!(verify(&both_other), Err(AssertionError::WrongIssuer));
    assert_eq!(
        verify(&missing_sub),
        Err(AssertionError::MissingClaim("sub"))
    );
}

#[test]
fn rejects_missing_jti() {
    let missing = rs384(&without_claim("jti"));
    let empty = rs384(&with_claim("jti", json!("")));

    assert_eq!(verify(&missing), Err(AssertionError::MissingClaim("jti")));
    assert_eq!(verify(&empty), Err(AssertionError::MissingClaim("jti")));
}

#[test]
fn rejects_unknown_kid() {
    let assertion = sign_with(
        Algorithm::RS384,
        Some("rsa-9"),
        &claims(),
        &rsa_key().encoding,
    );

    assert_eq!(
        verify(&assertion),
        Err(AssertionError::UnknownKey("rsa-9".to_string()))
    );
}

#[test]
fn kid_must_fit_algorithm() {
    // The EC key's kid on an RS384 assertion finds no RSA key with that kid.
    let assertion = sign_with(
        Algorithm::RS384,
        Some("ec-1"),
        &claims(),
        &rsa_key().encoding,
    );

    assert_eq!(
        verify(&assertion),
        Err(AssertionError::UnknownKey("ec-1".to_string()))
    );
}

#[test]
fn key_without_kid_is_chosen_when_alone() {
    let assertion = sign_with(Algorithm::RS384, None, &claims(), &rsa_key().encoding);

    assert!(verify(&assertion).is_ok());
}

#[test]
fn several_keys_without_kid_are_ambiguous() {
    let jwks = jwks_of(&[&rsa_key().jwk, &second_rsa_key().jwk]);
    let assertion = sign_with(Algorithm::RS384, None, &claims(), &rsa_key().encoding);

    let result = verify_client_assertion(&assertion, &jwks, CLIENT_ID, TOKEN_URL, NOW);

    assert_eq!(result, Err(AssertionError::AmbiguousKey("RS384")));
}

#[test]
fn duplicate_kid_is_rejected() {
    let mut copy = second_rsa_key().jwk.clone();
    copy["kid"] = json!("rsa-1");
    let jwks = jwks_of(&[&rsa_key().jwk, &copy]);

    let result = verify_client_assertion(&rs384(&claims()), &jwks, CLIENT_ID, TOKEN_URL, NOW);

    assert_eq!(
        result,
        Err(AssertionError::DuplicateKid("rsa-1".to_string()))
    );
}

#[test]
fn typ_must_be_jwt() {
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("rsa-1".to_string());
    header.typ = Some("at+jwt".to_string());
    let wrong_type = jsonwebtoken::encode(&header, &claims(), &rsa_key().encoding).unwrap();
    header.typ = None;
    let no_type = jsonwebtoken::encode(&header, &claims(), &rsa_key().encoding).unwrap();

    assert!(matches!(
        verify(&wrong_type),
        Err(AssertionError::Malformed(_))
    ));
    assert!(verify(&no_type).is_ok());
}

#[test]
fn no_key_for_algorithm() {
    let jwks = jwks_of(&[&ec_key().jwk]);
    let assertion = sign_with(Algorithm::RS384, None, &claims(), &rsa_key().encoding);

    let result = verify_client_assertion(&assertion, &jwks, CLIENT_ID, TOKEN_URL, NOW);

    assert_eq!(result, Err(AssertionError::NoKey("RS384")));
}

#[test]
fn rejects_tampered_payload() {
    let assertion = rs384(&claims());
    let parts: Vec<&str> = assertion.split('.').collect();
    let forged = with_claim("sub", json!(CLIENT_ID));
    let mut forged = forged;
    forged["jti"] = json!("replayed");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64url::encode(forged.to_string()),
        parts[2]
    );

    assert_eq!(verify(&tampered), Err(AssertionError::InvalidSignature));
}

#[test]
fn rejects_signature_by_other_key() {
    let assertion = sign_with(
        Algorithm::RS384,
        Some("rsa-1"),
        &claims(),
        &second_rsa_key().encoding,
    );

    assert_eq!(verify(&assertion), Err(AssertionError::InvalidSignature));
}

#[test]
fn rejects_truncated_signature() {
    let assertion = rs384(&claims());
    let (unsigned, _) = assertion.rsplit_once('.').unwrap();

    assert_eq!(
        verify(&format!("{unsigned}.")),
        Err(AssertionError::InvalidSignature)
    );
    assert_eq!(
        verify(&format!("{unsigned}.AAAA")),
        Err(AssertionError::InvalidSignature)
    );
}

#[test]
fn jku_must_be_registered_url() {
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("rsa-1".to_string());
    header.jku = Some(JWKS_URL.to_string());
    let assertion = jsonwebtoken::encode(&header, &claims(), &rsa_key().encoding).unwrap();
    header.jku = Some("https://attacker.example/jwks.json".to_string());
    let foreign = jsonwebtoken::encode(&header, &claims(), &rsa_key().encoding).unwrap();
    let registered = client_jwks().with_source_url(JWKS_URL);

    let matching = verify_client_assertion(&assertion, &registered, CLIENT_ID, TOKEN_URL, NOW);
    let mismatched = verify_client_assertion(&foreign, &registered, CLIENT_ID, TOKEN_URL, NOW);
    let unregistered = verify(&assertion);

    assert!(matching.is_ok(), "{matching:?}");
    assert_eq!(
        mismatched,
        Err(AssertionError::JkuMismatch {
            jku: "https://attacker.example/jwks.json".to_string()
        })
    );
    assert_eq!(
        unregistered,
        Err(AssertionError::JkuMismatch {
            jku: JWKS_URL.to_string()
        })
    );
}

#[test]
fn rejects_crit_header() {
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("rsa-1".to_string());
    header.crit = Some(vec!["exp".to_string()]);
    let assertion = jsonwebtoken::encode(&header, &claims(), &rsa_key().encoding).unwrap();

    assert_eq!(verify(&assertion), Err(AssertionError::CriticalHeader));
}

#[test]
fn rejects_malformed_assertions() {
    for assertion in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.", "e30.e30.e30"] {
        let result = verify(assertion);
        assert!(
            matches!(result, Err(AssertionError::Malformed(_))),
            "{assertion}: {result:?}"
        );
    }
}

#[test]
fn errors_map_to_invalid_client() {
    let error = verify("").unwrap_err();

    assert_eq!(error.oauth_error(), "invalid_client");
    assert!(error.to_string().starts_with("client_assertion"));
}

#[test]
fn jwks_requires_keys_array() {
    for text in ["", "[]", "{}", "{\"keys\": {}}", "not json"] {
        assert!(
            matches!(Jwks::from_json(text), Err(AssertionError::InvalidJwks(_))),
            "{text}"
        );
    }
    assert!(Jwks::from_json("{\"keys\": []}").unwrap().is_empty());
}

#[test]
fn jwks_skips_unusable_keys() {
    let mut encryption = rsa_key().jwk.clone();
    encryption["use"] = json!("enc");
    let mut sign_only = rsa_key().jwk.clone();
    sign_only["key_ops"] = json!(["sign"]);
    let mut verify_ops = rsa_key().jwk.clone();
    verify_ops["key_ops"] = json!(["verify"]);
    verify_ops["kid"] = json!("kept");
    let mut rs256 = rsa_key().jwk.clone();
    rs256["alg"] = json!("RS256");
    let mut with_private = rsa_key().jwk.clone();
    with_private["d"] = json!("AAAA");
    let mut small = rsa_key().jwk.clone();
    let modulus = base64url::decode(small["n"].as_str().unwrap()).unwrap();
    small["n"] = json!(base64url::encode(&modulus[..128]));
    let mut even_exponent = rsa_key().jwk.clone();
    even_exponent["e"] = json!(base64url::encode([1u8, 0, 0]));
    let mut p256 = ec_key().jwk.clone();
    p256["crv"] = json!("P-256");
    let mut off_curve = ec_key().jwk.clone();
    off_curve["y"] = off_curve["x"].clone();
    let unknown = json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"});
    let not_object = json!("text");

    let jwks = jwks_of(&[
        &encryption,
        &sign_only,
        &verify_ops,
        &rs256,
        &with_private,
        &small,
        &even_exponent,
        &p256,
        &off_curve,
        &unknown,
        &not_object,
    ]);

    assert_eq!(jwks.len(), 1);
    let usable = jwks.keys_for(AssertionAlgorithm::Rs384).next().unwrap();
    assert_eq!(usable.kid.as_deref(), Some("kept"));
}

#[test]
fn skipped_key_cannot_verify() {
    let mut encryption = rsa_key().jwk.clone();
    encryption["use"] = json!("enc");
    let jwks = jwks_of(&[&encryption]);

    let result = verify_client_assertion(&rs384(&claims()), &jwks, CLIENT_ID, TOKEN_URL, NOW);

    assert_eq!(result, Err(AssertionError::UnknownKey("rsa-1".to_string())));
}

fn header_strategy() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        Just(json!("RS384")),
        Just(json!("ES384")),
        Just(json!("none")),
        Just(json!(7)),
        any::<String>().prop_map(Value::from),
    ];
    let kid = prop_oneof![Just(Value::Null), Just(json!("rsa-1")), Just(json!("ec-1"))];
    (alg, kid).prop_map(|(alg, kid)| base64url::encode(json!({"alg": alg, "kid": kid}).to_string()))
}

proptest! {
    #[test]
    fn arbitrary_assertions_never_panic(assertion in any::<String>()) {
        prop_assert!(verify(&assertion).is_err());
    }

    #[test]
    fn jwt_shaped_assertions_never_panic(
        header in header_strategy(),
        payload in "[A-Za-z0-9_-]{0,80}",
        signature in "[A-Za-z0-9_-]{0,120}",
    ) {
        let assertion = format!("{header}.{payload}.{signature}");
        prop_assert!(verify(&assertion).is_err());
    }

    #[test]
    fn arbitrary_claims_never_panic(
        claims in proptest::collection::hash_map(
            prop_oneof![
                Just("iss".to_string()),
                Just("sub".to_string()),
                Just("aud".to_string()),
                Just("exp".to_string()),
                Just("jti".to_string()),
                Just("nbf".to_string()),
            ],
            prop_oneof![
                Just(json!(CLIENT_ID)),
                Just(json!(TOKEN_URL)),
                any::<i64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
                Just(Value::Null),
            ],
            0..6,
        ),
    ) {
        let claims = Value::Object(claims.into_iter().collect());
        let _ = verify(&rs384(&claims));
    }

    #[test]
    fn arbitrary_jwks_never_panic(text in any::<String>()) {
        let _ = Jwks::from_json(&text);
    }
}
