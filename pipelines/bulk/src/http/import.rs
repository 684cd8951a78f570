//! `POST [base]/$import`: Hearth's asynchronous NDJSON import, with the same status URL
//! pattern as `$export`.
//!
//! The body is a `Parameters` resource:
//!
//! ```json
//! {"resourceType": "Parameters", "parameter": [
//!   {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
//!   {"name": "inputSource", "valueUri": "https://source.example"},
//!   {"name": "input", "part": [
//!     {"name": "type", "valueCode": "Patient"},
//!     {"name": "url", "valueUri": "https://source.example/Patient.ndjson"}]}
//! ]}
//! ```
//!
//! An input URL is either `http(s)` on a host of `[bulk] import_allowed_hosts`, or a
//! location inside the bulk store (`s3://...` under the configured store, or `file://`
//! under the local store directory); any other URL gets 400.

use axum::http::StatusCode;
use axum::response::Response;
use hearth_fhir::FhirError;
use hearth_schemas::{BulkImportInput, BulkJobKind, BulkJobRequested, ExportLevel};
use hearth_smart::scope::{Context, Interaction};
use serde_json::Value;

use super::kickoff::{KickOff, accepted, check_headers};
use super::{error_response, internal, too_many};
use crate::jobs::JobOutcome;
use crate::request::NDJSON;
use crate::service::{BulkService, now_micros};

pub async fn kickoff(request: KickOff) -> Response {
    match accept(&request).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

async fn accept(request: &KickOff) -> Result<Response, FhirError> {
    let KickOff {
        service,
        site,
        principal,
        headers,
        uri,
        body,
    } = request;
    check_headers(headers)?;
    let parameters: Value = serde_json::from_slice(body).map_err(|e| {
        FhirError::bad_request(format!("the body is not a JSON Parameters resource: {e}"))
    })?;
    let (format, source, inputs) = read_parameters(&parameters)?;
    for input in &inputs {
        for interaction in [Interaction::Create, Interaction::Update] {
            let access = principal.scopes.access(
                &[Context::User, Context::System],
                &input.resource_type,
                interaction,
            );
            if !access.is_unrestricted() {
                return Err(FhirError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "$import needs unrestricted create and update access to {}, such as the scope system/*.cu",
                        input.resource_type
                    ),
                ));
            }
        }
    }

    for input in &inputs {
        check_source(service, &input.url)?;
    }

    let job_id = uuid::Uuid::new_v4().to_string();
    let now = now_micros();
    let event = BulkJobRequested {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now,
        job_id: job_id.clone(),
        kind: BulkJobKind::Import,
        level: ExportLevel::System,
        group_id: None,
        site_id: site.site_id.clone(),
        client_id: principal.client_id.clone(),
        request_url: format!("{}{}", site.fhir_base_url, uri.path()),
        output_format: NDJSON.to_string(),
        since: None,
        until: None,
        types: Vec::new(),
        type_filters: Vec::new(),
        elements: Vec::new(),
        patients: Vec::new(),
        include_associated_data: Vec::new(),
        organize_output_by: None,
        allow_partial_manifests: false,
        input_format: Some(format),
        input_source: source,
        inputs,
        transaction_time: now,
        requires_access_token: true,
        scope: principal.scopes.to_string(),
        patient_context: principal.patient.clone(),
        fhir_user: principal.fhir_user.clone(),
        base_url: site.fhir_base_url.clone(),
        warnings: Vec::new(),
    };
    match service
        .append_and_wait(&job_id, &event)
        .await
        .map_err(internal)?
    {
        JobOutcome::Started => {
            service.wake.notify_one();
            tracing::info!(job_id, client_id = %principal.client_id, "bulk import requested");
            Ok(accepted(&site.fhir_base_url, &job_id))
        }
        JobOutcome::TooManyJobs { running } => Ok(too_many(
            format!("this client already has {running} running Bulk Data jobs, the limit"),
            service.settings.retry_after_seconds.max(10),
        )),
        other => Err(internal(format!(
            "unexpected outcome of a kick-off: {other:?}"
        ))),
    }
}

/// Rejects an input URL the import could not read: an `http(s)` host outside the allow
/// list, or a location outside the bulk store.
fn check_source(service: &BulkService, url: &str) -> Result<(), FhirError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let parsed = url::Url::parse(url).map_err(|e| {
            FhirError::bad_request(format!("the input URL '{url}' is invalid: {e}"))
        })?;
        return service
            .settings
            .import_allowed_hosts
            .check(&parsed)
            .map_err(FhirError::bad_request);
    }
    let Some(relative) = service.files.relative_location(url) else {
        return Err(FhirError::bad_request(format!(
            "the input URL '{url}' is neither http(s) nor inside the bulk store at {}",
            service.files.location()
        )));
    };
    service
        .files
        .resolve_inside(&relative)
        .map_err(|reason| FhirError::bad_request(format!("the input URL '{url}': {reason}")))?;
    Ok(())
}

type ImportParameters = (String, Option<String>, Vec<BulkImportInput>);

fn read_parameters(body: &Value) -> Result<ImportParameters, FhirError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::bad_request(
            "the body of $import must be a Parameters resource",
        ));
    }
    let mut format = NDJSON.to_string();
    let mut source = None;
    let mut inputs = Vec::new();
    for parameter in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let text = |keys: &[&str]| {
            keys.iter()
                .find_map(|key| parameter.get(*key).and_then(Value::as_str))
                .map(str::to_string)
        };
        match name {
            "inputFormat" => format = text(&["valueCode", "valueString"]).unwrap_or_default(),
            "inputSource" => source = text(&["valueUri", "valueString"]),
            "input" => inputs.push(read_input(parameter)?),
            other => {
                return Err(FhirError::bad_request(format!(
                    "$import does not take the parameter '{other}'"
                )));
            }
        }
    }
    if !matches!(
        format.as_str(),
        "application/fhir+ndjson" | "application/ndjson" | "ndjson"
    ) {
        return Err(FhirError::bad_request(format!(
            "inputFormat '{format}' is not supported; use application/fhir+ndjson"
        )));
    }
    if inputs.is_empty() {
        return Err(FhirError::bad_request("$import needs at least one input"));
    }
    Ok((NDJSON.to_string(), source, inputs))
}

fn read_input(parameter: &Value) -> Result<BulkImportInput, FhirError> {
    let mut resource_type = None;
    let mut url = None;
    for part in parameter
        .get("part")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = ["valueCode", "valueUri", "valueUrl", "valueString"]
            .iter()
            .find_map(|key| part.get(*key).and_then(Value::as_str))
            .map(str::to_string);
        match part.get("name").and_then(Value::as_str) {
            Some("type") => resource_type = value,
            Some("url") => url = value,
            _ => {}
        }
    }
    let resource_type = resource_type
        .filter(|t| hearth_fhir_core::resource_types::is_resource_type(t))
        .ok_or_else(|| {
            FhirError::bad_request("each input needs a type that is an R4 resource type")
        })?;
    let url = url.ok_or_else(|| FhirError::bad_request("each input needs a url"))?;
    Ok(BulkImportInput { resource_type, url })
}
