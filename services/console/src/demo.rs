//! The bundled demo SMART app: a static page on the SMART JavaScript client that shows the
//! launched patient's demographics, conditions and latest observations. Hearth registers
//! it at start as a public client active at the default site, so a launch works right
//! after `hearth serve` and `hearth load`.

use hearth_auth::{AppRequest, AuthState, OAuthResult};
use hearth_schemas::RegistrationSource;

/// Client id of the demo app. The page's own script names it too.
pub const DEMO_CLIENT_ID: &str = "hearth-demo-app";

/// Scopes of the demo app: an EHR or standalone launch with read access to the patient's
/// record and the signed-in user's identity.
const DEMO_SCOPE: &str = "launch launch/patient openid fhirUser patient/Patient.rs patient/Condition.rs patient/Observation.rs";

fn demo_request(public_url: &str) -> AppRequest {
    let base = format!("{}/demo-app", public_url.trim_end_matches('/'));
    AppRequest {
        client_id: Some(DEMO_CLIENT_ID.to_string()),
        name: "Hearth demo app".to_string(),
        client_type: "public".to_string(),
        redirect_uris: vec![format!("{base}/")],
        launch_uri: Some(format!("{base}/launch.html")),
        scope: DEMO_SCOPE.to_string(),
        grant_types: Some(vec!["authorization_code".to_string()]),
        token_endpoint_auth_method: None,
        jwks: None,
        jwks_uri: None,
        logo_uri: None,
        client_uri: Some(format!("{base}/")),
        contacts: Vec::new(),
        vendor: Some("Hearth".to_string()),
        software_id: None,
        software_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        sites: Vec::new(),
    }
}

/// Registers the demo app and activates it at the default site when it does not exist,
/// and points its URIs at `public_url` when they point elsewhere. An administrator who
/// disabled or deactivated it keeps that choice.
pub async fn ensure_demo_app(state: &AuthState, public_url: &str) -> OAuthResult<()> {
    let request = demo_request(public_url);
    match state.store.app(DEMO_CLIENT_ID)? {
        None => {
            hearth_auth::register_app(state, &request, "hearth", RegistrationSource::Cli).await?;
            hearth_auth::activate_app_as(
                state,
                hearth_auth::DEFAULT_SITE,
                DEMO_CLIENT_ID,
                "hearth",
            )
            .await?;
            tracing::info!(
                client_id = DEMO_CLIENT_ID,
                "registered the demo app at the default site"
            );
        }
        Some(app)
            if app.redirect_uris != request.redirect_uris
                || app.launch_uri != request.launch_uri =>
        {
            let mut update = request;
            update.client_id = None;
            update.scope = app.scope.clone();
            hearth_auth::update_app_as(
                state,
                DEMO_CLIENT_ID,
                &update,
                "hearth",
                RegistrationSource::Cli,
            )
            .await?;
            tracing::info!(
                client_id = DEMO_CLIENT_ID,
                "pointed the demo app at the public URL"
            );
        }
        Some(_) => {}
    }
    Ok(())
}
