//! What dynamic registration (RFC 7591) and the admin API let a registrant hold: the
//! anonymous registration policy, scope syntax, and `jwks_uri` checks and fetches.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::{Value, json};

use crate::support::{
    ClientAuth, Hearth, REDIRECT_URI, Reply, assert_oauth_error, now_seconds, sign_es384, unique,
};

fn register(hearth: &Hearth, auth: &str, metadata: &Value) -> Reply {
    hearth.post_raw(
        &format!("{auth}/register"),
        "application/json",
        metadata.to_string(),
    )
}

fn app_count(hearth: &Hearth) -> usize {
    let (_, apps) = hearth
        .server
        .get_json(&format!("{}/admin/apps", hearth.base_url()));
    apps["apps"].as_array().map_or(0, Vec::len)
}

#[test]
fn anonymous_registration_gets_no_system_access() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let before = app_count(&hearth);
    let cases = [
        json!({
            "client_name": "Backend",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "system/*.cruds",
        }),
        json!({
            "client_name": "Writer",
            "redirect_uris": [REDIRECT_URI],
            "scope": "launch/patient patient/*.cruds",
        }),
        json!({
            "client_name": "System in code flow",
            "redirect_uris": [REDIRECT_URI],
            "scope": "system/Patient.rs",
        }),
        json!({
            "client_name": "Mixed grants",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "patient/*.rs",
        }),
    ];

    for metadata in cases {
        let reply = register(&hearth, &open.auth, &metadata);
        assert_oauth_error(&reply, 400, "invalid_client_metadata");
        let description = reply.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            description.contains("initial access token"),
            "{metadata}: {description}"
        );
    }
    assert_eq!(
        app_count(&hearth),
        before,
        "a rejected registration stored an app"
    );
}

#[test]
fn anonymous_registration_default_scope() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let metadata = json!({"client_name": "Reader", "redirect_uris": [REDIRECT_URI]});

    let reply = register(&hearth, &open.auth, &metadata);

    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.json()["scope"],
        "launch launch/patient patient/*.rs openid fhirUser offline_access"
    );
}

#[test]
fn wrong_initial_access_token_is_rejected() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let metadata = json!({
        "client_name": "Backend",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "system/Patient.rs",
    });

    let reply = Reply::send(
        reqwest::blocking::Client::new()
            .post(format!("{}/register", open.auth))
            .bearer_auth("not-the-admin-token")
            .header("Content-Type", "application/json")
            .body(metadata.to_string()),
    );

    assert_oauth_error(&reply, 401, "invalid_token");
}

#[test]
fn malformed_scopes_are_rejected_at_registration() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    let before = app_count(&hearth);

    let admin = hearth.admin_post(
        "/admin/apps",
        &json!({
            "name": "Bad scope",
            "client_type": "public",
            "redirect_uris": [REDIRECT_URI],
            "scope": "patient/*.search garbage",
        }),
    );
    assert_oauth_error(&admin, 400, "invalid_request");
    assert!(admin.body.contains("patient/*.search"), "{}", admin.body);

    let dynamic = register(
        &hearth,
        &open.auth,
        &json!({"redirect_uris": [REDIRECT_URI], "scope": "patient/Observation.rx"}),
    );
    assert_oauth_error(&dynamic, 400, "invalid_client_metadata");

    assert_eq!(
        app_count(&hearth),
        before,
        "a rejected registration stored an app"
    );
}

#[test]
fn anonymous_jwks_uri_must_be_public_https() {
    let hearth = Hearth::start();
    let open = hearth.create_site("open", true);
    for uri in [
        format!("{}/auth/jwks", hearth.base_url()),
        "https://127.0.0.1:9/jwks".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "http://keys.app.example/jwks.json".to_string(),
    ] {
        let metadata = json!({
            "client_name": "Signer",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": uri,
            "scope": "patient/*.rs",
        });

        let reply = register(&hearth, &open.auth, &metadata);

        assert_oauth_error(&reply, 400, "invalid_client_metadata");
    }
}

/// Serves one fixed HTTP response to every connection, on a random local port.
fn serve_fixed(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("a local address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{address}/jwks")
}

#[test]
fn jwks_fetch_failure_is_not_echoed() {
    let hearth = Hearth::start();
    let error_body = "internal detail 7f3a";
    let failing = serve_fixed(
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{error_body}",
            error_body.len()
        )
        .into_bytes(),
    );
    let huge_body = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(200_000));
    let huge = serve_fixed(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{huge_body}",
            huge_body.len()
        )
        .into_bytes(),
    );

    for (case, uri) in [("status 503", failing), ("oversized", huge)] {
        let client_id = unique("signer");
        let reply = hearth.admin_post(
            "/admin/apps",
            &json!({
                "client_id": client_id,
                "name": "Signer",
                "client_type": "confidential-asymmetric",
                "jwks_uri": uri,
                "scope": "system/Patient.rs",
                "sites": ["default"],
            }),
        );
        assert_eq!(reply.status, 201, "{case}: {}", reply.body);

        let token_url = format!("{}/token", hearth.default_site.auth);
        let assertion = sign_es384(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384),
            &json!({
                "iss": client_id,
                "sub": client_id,
                "aud": token_url,
                "exp": now_seconds() + 120,
                "jti": unique("jti"),
            }),
        );
        let reply = hearth.token(
            &ClientAuth::Assertion(client_id.clone(), assertion),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
            ],
        );

        assert_oauth_error(&reply, 401, "invalid_client");
        for leaked in ["503", error_body, "127.0.0.1", "200000"] {
            assert!(!reply.body.contains(leaked), "{case}: {}", reply.body);
        }
    }
}
