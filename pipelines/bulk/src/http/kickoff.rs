//! `$export` kick-off at the system, Patient and Group levels, over GET and POST.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hearth_cdr::Visibility;
use hearth_fhir::{FhirError, Principal, SiteContext};
use hearth_schemas::{BulkJobKind, BulkJobRequested, ExportLevel};
use hearth_smart::scope::Interaction;
use serde_json::Value;

use super::{error_response, internal, too_many};
use crate::cohort::{self, CohortError};
use crate::export::in_patient_compartment;
use crate::jobs::JobOutcome;
use crate::request::{ExportParameters, Handling, NDJSON, parse_prefer};
use crate::service::{BulkService, now_micros, visibility_for};

/// What every kick-off handler receives.
pub(super) struct KickOff {
    pub service: BulkService,
    pub site: SiteContext,
    pub principal: Principal,
    pub headers: HeaderMap,
    pub uri: Uri,
    /// The POST body, `None` for GET.
    pub body: Option<Bytes>,
}

macro_rules! kickoff_handlers {
    ($get:ident, $post:ident, $level:expr) => {
        pub async fn $get(
            State(service): State<BulkService>,
            Extension(site): Extension<SiteContext>,
            Extension(principal): Extension<Principal>,
            headers: HeaderMap,
            uri: Uri,
        ) -> Response {
            let request = KickOff {
                service,
                site,
                principal,
                headers,
                uri,
                body: None,
            };
            export(request, $level, None).await
        }

        pub async fn $post(
            State(service): State<BulkService>,
            Extension(site): Extension<SiteContext>,
            Extension(principal): Extension<Principal>,
            headers: HeaderMap,
            uri: Uri,
            body: Bytes,
        ) -> Response {
            let request = KickOff {
                service,
                site,
                principal,
                headers,
                uri,
                body: Some(body),
            };
            export(request, $level, None).await
        }
    };
}

kickoff_handlers!(system_get, system_post, ExportLevel::System);
kickoff_handlers!(patient_get, patient_post, ExportLevel::Patient);

pub async fn group_get(
    State(service): State<BulkService>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let request = KickOff {
        service,
        site,
        principal,
        headers,
        uri,
        body: None,
    };
    export(request, ExportLevel::Group, Some(id)).await
}

pub async fn group_post(
    State(service): State<BulkService>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let request = KickOff {
        service,
        site,
        principal,
        headers,
        uri,
        body: Some(body),
    };
    export(request, ExportLevel::Group, Some(id)).await
}

async fn export(request: KickOff, level: ExportLevel, group_id: Option<String>) -> Response {
    match accept(request, level, group_id).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

/// Checks the headers that every asynchronous kick-off needs and returns the handling.
pub(super) fn check_headers(headers: &HeaderMap) -> Result<Handling, FhirError> {
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok());
    let (respond_async, handling) = parse_prefer(prefer);
    if !respond_async {
        return Err(FhirError::bad_request(
            "Bulk Data operations run asynchronously: send the header Prefer: respond-async",
        ));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/fhir+json");
    let acceptable = accept
        .split(',')
        .map(|part| part.split(';').next().unwrap_or("").trim())
        .any(|media| {
            matches!(
                media,
                "application/fhir+json" | "application/json" | "*/*" | "application/*" | ""
            )
        });
    if !acceptable {
        return Err(FhirError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            format!("Bulk Data kick-off answers in application/fhir+json, not {accept}"),
        ));
    }
    Ok(handling)
}

async fn accept(
    request: KickOff,
    level: ExportLevel,
    group_id: Option<String>,
) -> Result<Response, FhirError> {
    let handling = check_headers(&request.headers)?;
    let mut parameters = read_parameters(&request, handling)?;
    check_parameters(&request, level, handling, &mut parameters)?;

    let service = request.service.clone();
    let principal = request.principal.clone();
    let group = group_id.clone();
    let repository = service.repository.clone();
    let requested_patients = parameters.patients.clone();
    let patients = tokio::task::spawn_blocking(move || match group {
        Some(id) => group_members(&repository, &principal, &id, &requested_patients),
        None => Ok(requested_patients),
    })
    .await
    .map_err(internal)??;

    let job_id = uuid::Uuid::new_v4().to_string();
    let event = job_request(&request, &parameters, level, group_id, patients, &job_id);
    let outcome = service
        .append_and_wait(&job_id, &event)
        .await
        .map_err(internal)?;
    match outcome {
        JobOutcome::Started => {
            service.wake.notify_one();
            tracing::info!(job_id, client_id = %request.principal.client_id, ?level, "bulk export requested");
            Ok(accepted(&request.site.fhir_base_url, &job_id))
        }
        JobOutcome::TooManyJobs { running } => Ok(too_many(
            format!(
                "this client already has {running} running Bulk Data jobs, the limit; wait for one to finish or cancel one"
            ),
            service.settings.retry_after_seconds.max(10),
        )),
        other => Err(internal(format!(
            "unexpected outcome of a kick-off: {other:?}"
        ))),
    }
}

/// `202 Accepted` with the status URL in `Content-Location`.
pub(super) fn accepted(base_url: &str, job_id: &str) -> Response {
    let location = format!("{base_url}/$bulk-status/{job_id}");
    let outcome = hearth_fhir::operation_outcome(
        "information",
        "informational",
        &format!("the job is accepted; poll {location} for its status"),
        &[],
    );
    let mut response = (StatusCode::ACCEPTED, outcome.to_string()).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = location.parse() {
        headers.insert(header::CONTENT_LOCATION, value);
    }
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(hearth_fhir::FHIR_JSON),
    );
    response
}

fn read_parameters(request: &KickOff, handling: Handling) -> Result<ExportParameters, FhirError> {
    let query = request.uri.query().unwrap_or("");
    let body = request.body.as_ref().filter(|body| !body.is_empty());
    let parameters = match body {
        None => ExportParameters::from_query(query, handling),
        Some(body) => {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                FhirError::bad_request(format!("the body is not a JSON Parameters resource: {e}"))
            })?;
            ExportParameters::from_parameters(&value, handling)
        }
    };
    parameters.map_err(|e| FhirError::bad_request(e.0))
}

/// `includeAssociatedData` values Hearth honours; both add the Provenance resources of
/// the export's compartments.
const ASSOCIATED_DATA: &[&str] = &["LatestProvenanceResources", "RelevantProvenanceResources"];

/// Checks what the parameters ask for against what Hearth supports and what the caller
/// may read; under lenient handling unsupported requests are left out and noted.
fn check_parameters(
    request: &KickOff,
    level: ExportLevel,
    handling: Handling,
    parameters: &mut ExportParameters,
) -> Result<(), FhirError> {
    let invalid = |e: crate::request::ParameterError| FhirError::bad_request(e.0);
    if let (Some(since), Some(until)) = (parameters.since, parameters.until)
        && since > until
    {
        return Err(FhirError::bad_request("_since is later than _until"));
    }
    if parameters.since.is_some_and(|since| since > now_micros()) {
        return Err(FhirError::bad_request("_since is in the future"));
    }
    if let Some(organize) = parameters.organize_output_by.take() {
        parameters
            .unsupported(
                handling,
                format!("organizeOutputBy={organize} is not supported"),
            )
            .map_err(invalid)?;
    }
    let mut associated = Vec::new();
    for value in std::mem::take(&mut parameters.include_associated_data) {
        if ASSOCIATED_DATA.contains(&value.as_str()) {
            associated.push(value);
            continue;
        }
        parameters
            .unsupported(
                handling,
                format!(
                    "includeAssociatedData={value} is not supported; use {}",
                    ASSOCIATED_DATA.join(" or ")
                ),
            )
            .map_err(invalid)?;
    }
    parameters.include_associated_data = associated;

    let mut types = Vec::new();
    for resource_type in std::mem::take(&mut parameters.types) {
        if level != ExportLevel::System && !in_patient_compartment(&resource_type) {
            parameters
                .unsupported(
                    handling,
                    format!("{resource_type} is outside the Patient compartment, so a patient or group export has none"),
                )
                .map_err(invalid)?;
            continue;
        }
        if visibility_for(&request.principal, &resource_type).is_none() {
            return Err(FhirError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the access token's scopes do not allow exporting {resource_type}"),
            ));
        }
        if !types.contains(&resource_type) {
            types.push(resource_type);
        }
    }
    parameters.types = types;

    let mut filters = Vec::new();
    for filter in std::mem::take(&mut parameters.type_filters) {
        match check_type_filter(request, parameters, &filter) {
            Ok(()) => filters.push(filter),
            Err(message) => parameters.unsupported(handling, message).map_err(invalid)?,
        }
    }
    parameters.type_filters = filters;
    Ok(())
}

/// Checks one `_typeFilter` query: its type, and a trial search that fails on parameters,
/// modifiers or values that search does not support.
fn check_type_filter(
    request: &KickOff,
    parameters: &ExportParameters,
    filter: &str,
) -> Result<(), String> {
    let Some((resource_type, query)) = filter.split_once('?') else {
        return Err(format!(
            "_typeFilter '{filter}' is not of the form Type?query"
        ));
    };
    if !hearth_fhir_core::resource_types::is_resource_type(resource_type) {
        return Err(format!("_typeFilter '{filter}' names no R4 resource type"));
    }
    if !parameters.types.is_empty() && !parameters.types.iter().any(|t| t == resource_type) {
        return Err(format!(
            "_typeFilter '{filter}' is for {resource_type}, which _type does not include"
        ));
    }
    let pairs = crate::request::query_pairs(query);
    if pairs.is_empty() {
        return Err(format!("_typeFilter '{filter}' has no search parameters"));
    }
    for (name, _) in &pairs {
        if matches!(
            name.as_str(),
            "_include" | "_revinclude" | "_sort" | "_count" | "_summary" | "_elements" | "_total"
        ) {
            return Err(format!(
                "_typeFilter '{filter}' uses {name}, which only shapes search results and cannot filter an export"
            ));
        }
    }
    let trial = request.service.repository.search(
        resource_type,
        &pairs,
        &Visibility::everything(),
        1,
        None,
    );
    match trial {
        Ok(_) => Ok(()),
        Err(hearth_cdr::Error::Criteria(error)) => {
            Err(format!("_typeFilter '{filter}' is not supported: {error}"))
        }
        Err(other) => {
            tracing::error!(error = %other, "checking a _typeFilter failed");
            Err(format!("_typeFilter '{filter}' could not be checked"))
        }
    }
}

/// The patients of a Group the caller may read, intersected with the `patient` parameter
/// when one was given.
fn group_members(
    repository: &hearth_cdr::Repository,
    principal: &Principal,
    id: &str,
    requested: &[String],
) -> Result<Vec<String>, FhirError> {
    let group = read_group(repository, principal, id)?;
    let visibility = |resource_type: &str| visibility_for(principal, resource_type);
    let members = cohort::members(repository, &group, &visibility).map_err(cohort_error)?;
    if requested.is_empty() {
        return Ok(members);
    }
    Ok(members
        .into_iter()
        .filter(|member| requested.contains(member))
        .collect())
}

/// Reads a Group the caller may see, or fails with 404 (also when it is invisible).
pub(super) fn read_group(
    repository: &hearth_cdr::Repository,
    principal: &Principal,
    id: &str,
) -> Result<Value, FhirError> {
    let not_found = || FhirError::not_found(format!("Group/{id} is not known"));
    let visibility = hearth_fhir::visibility(principal, "Group", Interaction::Read)?;
    let stored = repository
        .read("Group", id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    if stored.is_deleted() {
        return Err(FhirError::gone(format!("Group/{id} was deleted")));
    }
    if !repository
        .is_visible("Group", id, &visibility)
        .map_err(internal)?
    {
        return Err(not_found());
    }
    let json = stored.json.ok_or_else(not_found)?;
    serde_json::from_str(&json).map_err(internal)
}

pub(super) fn cohort_error(error: CohortError) -> FhirError {
    match error {
        CohortError::Invalid(message) => FhirError::bad_request(message),
        CohortError::Forbidden(message) => {
            FhirError::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
        CohortError::Repository(error) => internal(error),
    }
}

fn job_request(
    request: &KickOff,
    parameters: &ExportParameters,
    level: ExportLevel,
    group_id: Option<String>,
    patients: Vec<String>,
    job_id: &str,
) -> BulkJobRequested {
    let base = &request.site.fhir_base_url;
    let mut request_url = format!("{base}{}", request.uri.path());
    if request.body.as_ref().is_none_or(|body| body.is_empty())
        && let Some(query) = request.uri.query()
    {
        request_url.push('?');
        request_url.push_str(query);
    }
    let now = now_micros();
    let principal = &request.principal;
    BulkJobRequested {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now,
        job_id: job_id.to_string(),
        kind: BulkJobKind::Export,
        level,
        group_id,
        site_id: request.site.site_id.clone(),
        client_id: principal.client_id.clone(),
        request_url,
        output_format: parameters
            .output_format
            .map_or(NDJSON, |format| format.mime_type())
            .to_string(),
        since: parameters.since,
        until: parameters.until,
        types: parameters.types.clone(),
        type_filters: parameters.type_filters.clone(),
        elements: parameters.elements.clone(),
        patients,
        include_associated_data: parameters.include_associated_data.clone(),
        organize_output_by: None,
        allow_partial_manifests: parameters.allow_partial_manifests,
        input_format: None,
        input_source: None,
        inputs: Vec::new(),
        transaction_time: now,
        requires_access_token: true,
        scope: principal.scopes.to_string(),
        patient_context: principal.patient.clone(),
        fhir_user: principal.fhir_user.clone(),
        base_url: base.clone(),
        warnings: parameters.ignored.clone(),
    }
}
