//! Fetching a client's JWKS over https: the server's certificate is verified against the
//! system roots plus the CA file named by `--extra-ca-file`, and a certificate from any
//! other CA is rejected.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::http::{ES384_KID, ES384_X, ES384_Y};
use crate::support::*;

/// A certificate authority made for one test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("a CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Issues a server certificate for 127.0.0.1 and returns it with its key, as PEM.
    fn server_certificate(&self) -> (String, String) {
        let key = KeyPair::generate().expect("a server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        (certificate.pem(), key.serialize_pem())
    }
}

/// Serves the JWKS of the test P-384 key over https on a random local port, with a
/// certificate issued by `ca`. Returns the document's URL.
fn serve_jwks(ca: &TestCa) -> String {
    let (certificate, key) = ca.server_certificate();
    let chain = vec![CertificateDer::from_pem_slice(certificate.as_bytes()).expect("PEM")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("PEM key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a TLS server configuration");
    let config = Arc::new(config);

    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-384", "x": ES384_X, "y": ES384_Y,
        "kid": ES384_KID, "alg": "ES384", "use": "sig",
    }]})
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{jwks}",
        jwks.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("a local address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            // A client that rejects the certificate ends the handshake here.
            let mut request = [0u8; 4096];
            if tls.read(&mut request).is_ok() {
                let _ = tls.write_all(response.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    format!("https://{address}/jwks.json")
}

/// Registers a backend service whose keys are at `jwks_uri` and requests a token with
/// an assertion signed by the test key.
fn token_with_keys_at(hearth: &Hearth, jwks_uri: &str) -> Reply {
    let client_id = unique("tls-signer");
    let reply = hearth.admin_post(
        "/admin/apps",
        &json!({
            "client_id": client_id,
            "name": "Signer with an https JWKS",
            "client_type": "confidential-asymmetric",
            "jwks_uri": jwks_uri,
            "scope": "system/Patient.rs",
            "sites": ["default"],
        }),
    );
    assert_eq!(reply.status, 201, "registering: {}", reply.body);

    let token_url = format!("{}/token", hearth.default_site.auth);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(ES384_KID.to_string());
    let assertion = sign_es384(
        &header,
        &json!({
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": now_seconds() + 120,
            "jti": unique("jti"),
        }),
    );
    hearth.token(
        &ClientAuth::Assertion(client_id, assertion),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
        ],
    )
}

#[test]
fn https_jwks_trusts_only_known_cas() {
    let trusted = TestCa::new("Hearth test CA");
    let ca_file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(ca_file.path(), &trusted.pem).expect("writing the CA file");
    let ca_path = ca_file.path().to_str().expect("a UTF-8 path");
    let hearth = Hearth::start_with(&["--extra-ca-file", ca_path]);

    let reply = token_with_keys_at(&hearth, &serve_jwks(&trusted));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["scope"], "system/Patient.rs");

    let unknown = TestCa::new("Unknown CA");
    let reply = token_with_keys_at(&hearth, &serve_jwks(&unknown));
    assert_oauth_error(&reply, 401, "invalid_client");
    assert!(
        reply.body.contains("TLS certificate is not trusted"),
        "{}",
        reply.body
    );
}

#[test]
fn https_jwks_needs_a_trusted_ca() {
    let hearth = Hearth::start();
    let ca = TestCa::new("Hearth test CA");

    let reply = token_with_keys_at(&hearth, &serve_jwks(&ca));

    assert_oauth_error(&reply, 401, "invalid_client");
    assert!(
        reply.body.contains("TLS certificate is not trusted"),
        "{}",
        reply.body
    );
}
