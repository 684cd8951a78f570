//! EHR launch: the EHR or portal creates a launch context, then opens the app with the
//! returned `launch` value; the token response carries the context.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_auth_store::Site;
use hearth_schemas::LaunchCreated;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AuthState;
use crate::admin::require_admin;
use crate::events::{new_id, now_micros, record};
use crate::oauth_error::{OAuthError, OAuthResult};

/// The body of `POST /auth/launch`. Unknown members become custom context parameters of
/// the token response.
#[derive(Debug, Default, Deserialize)]
pub struct LaunchRequest {
    pub client_id: Option<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    #[serde(rename = "fhirContext")]
    pub fhir_context: Option<Vec<Value>>,
    pub intent: Option<String>,
    pub need_patient_banner: Option<bool>,
    pub smart_style_url: Option<String>,
    pub tenant: Option<String>,
    /// The user the EHR has signed in, as a relative FHIR reference.
    pub user: Option<String>,
    #[serde(flatten)]
    pub custom: Map<String, Value>,
}

/// Parameters a launch may not set, because the token response defines them.
const RESERVED: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "scope",
    "refresh_token",
    "id_token",
    "state",
    "code",
];

pub async fn create_launch(
    State(state): State<AuthState>,
    Extension(site): Extension<Site>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match create(&state, &site, &headers, &body).await {
        // The launch value grants its context to whoever presents it, so caches keep none.
        Ok(body) => crate::authorize::no_store((StatusCode::CREATED, Json(body)).into_response()),
        Err(error) => error.into_response(),
    }
}

async fn create(
    state: &AuthState,
    site: &Site,
    headers: &HeaderMap,
    body: &[u8],
) -> OAuthResult<Value> {
    require_admin(state, headers)?;
    let request: LaunchRequest = serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_request(format!("the launch request is not valid JSON: {e}"))
    })?;
    let launch_id = create_launch_as(state, site, &request).await?;
    Ok(json!({"launch": launch_id, "expires_in": state.settings.launch_seconds}))
}

/// Checks a launch request, records the launch context and returns its `launch` value.
pub async fn create_launch_as(
    state: &AuthState,
    site: &Site,
    request: &LaunchRequest,
) -> OAuthResult<String> {
    if let Some(reserved) = request
        .custom
        .keys()
        .find(|k| RESERVED.contains(&k.as_str()))
    {
        return Err(OAuthError::invalid_request(format!(
            "a launch cannot set the token parameter {reserved}"
        )));
    }
    if let Some(client_id) = &request.client_id
        && !state.store.is_active(&site.site_id, client_id)?
    {
        return Err(OAuthError::unauthorized_client(
            "the client is not active at this site",
        ));
    }
    if let Some(patient) = &request.patient {
        check_exists(state, &site.site_id, "Patient", patient).await?;
    }
    if let Some(encounter_id) = &request.encounter {
        let encounter = check_exists(state, &site.site_id, "Encounter", encounter_id).await?;
        if let Some(patient) = &request.patient {
            check_encounter_subject(&encounter, encounter_id, patient)?;
        }
    }

    let launch_id = hearth_smart::secret::generate_token(16);
    let expires_at = now_micros() + state.settings.launch_seconds * 1_000_000;
    let custom =
        (!request.custom.is_empty()).then(|| Value::Object(request.custom.clone()).to_string());
    let event = LaunchCreated {
        event_id: new_id(),
        occurred_at: now_micros(),
        launch_id: launch_id.clone(),
        site_id: site.site_id.clone(),
        client_id: request.client_id.clone(),
        expires_at,
        patient: request.patient.clone(),
        encounter: request.encounter.clone(),
        fhir_context: request
            .fhir_context
            .as_ref()
            .map(|c| Value::Array(c.clone()).to_string()),
        need_patient_banner: request.need_patient_banner,
        smart_style_url: request.smart_style_url.clone(),
        intent: request.intent.clone(),
        tenant: request.tenant.clone(),
        user: request.user.clone(),
        custom_context: custom,
    };
    record(state, &launch_id, event).await?;
    Ok(launch_id)
}

/// Rejects an encounter whose subject is not the launch's patient, so an app is never
/// handed one patient's record with another patient's encounter.
fn check_encounter_subject(
    encounter: &Value,
    encounter_id: &str,
    patient: &str,
) -> OAuthResult<()> {
    let subject = encounter["subject"]["reference"].as_str().unwrap_or("");
    if reference_target(subject) == Some(("Patient", patient)) {
        return Ok(());
    }
    let subject = if subject.is_empty() {
        "no patient"
    } else {
        subject
    };
    Err(OAuthError::invalid_request(format!(
        "Encounter/{encounter_id} is an encounter of {subject}, not of Patient/{patient}"
    )))
}

/// Returns the type and id a literal reference points at: `Patient/1`, an absolute URL
/// ending in `Patient/1`, either with `/_history/{version}`.
fn reference_target(reference: &str) -> Option<(&str, &str)> {
    let path = match reference.split_once("/_history/") {
        Some((path, _)) => path,
        None => reference,
    };
    let mut segments = path.rsplit('/');
    let id = segments.next().filter(|id| !id.is_empty())?;
    let resource_type = segments.next()?;
    Some((resource_type, id))
}

/// Checks that a context resource exists at the site (in the repository, or at the EHR
/// of an EHR-backed site), so a typo fails here and not inside the app, and returns it.
async fn check_exists(
    state: &AuthState,
    site_id: &str,
    resource_type: &str,
    id: &str,
) -> OAuthResult<Value> {
    match crate::patients::read(state, site_id, resource_type, id).await {
        Ok(Some(resource)) => Ok(resource),
        Ok(None) => Err(OAuthError::invalid_request(format!(
            "{resource_type}/{id} does not exist"
        ))),
        Err(error) => {
            tracing::error!(site = %site_id, %error, "checking a launch context resource failed");
            Err(OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!(
                    "{resource_type}/{id} could not be checked at the site's EHR; try again later"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encounter_of(reference: &str) -> Value {
        json!({"resourceType": "Encounter", "id": "e1", "subject": {"reference": reference}})
    }

    #[test]
    fn encounter_subject_must_be_patient() {
        for reference in [
            "Patient/p1",
            "https://ehr.example/fhir/Patient/p1",
            "Patient/p1/_history/3",
        ] {
            assert!(
                check_encounter_subject(&encounter_of(reference), "e1", "p1").is_ok(),
                "{reference}"
            );
        }
        for reference in ["Patient/p2", "Group/p1", "p1", "Patient/p11", ""] {
            let error =
                check_encounter_subject(&encounter_of(reference), "e1", "p1").expect_err(reference);
            assert_eq!(error.error, "invalid_request", "{reference}");
            assert!(
                error.description.contains("not of Patient/p1"),
                "{reference}"
            );
        }
        let no_subject = json!({"resourceType": "Encounter", "id": "e1"});
        let error = check_encounter_subject(&no_subject, "e1", "p1").unwrap_err();
        assert!(
            error.description.contains("of no patient"),
            "{}",
            error.description
        );
    }
}
