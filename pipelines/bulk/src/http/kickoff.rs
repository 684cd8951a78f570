//! `$export` kick-off at the system, Patient and Group levels, over GET and POST.
//!
//! One handler per level serves both methods: [`KickOff`] extracts what every kick-off
//! needs, and the parameters come from the query string (GET, or POST without a body) or
//! from the `Parameters` body (POST) through one parser.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hearth_cdr::search::{ParseOptions, SearchError, ValueContext};
use hearth_fhir::{FhirError, Principal, SiteContext};
use hearth_fhir_core::reference::LocalBases;
use hearth_schemas::{BulkJobKind, BulkJobRequested, ExportLevel};
use hearth_smart::scope::Interaction;
use serde_json::Value;

use super::{error_response, internal, too_many};
use crate::cohort::{self, CohortError};
use crate::export::in_patient_compartment;
use crate::jobs::JobOutcome;
use crate::request::{ExportParameters, Handling, NDJSON, OutputFormat, parse_prefer};
use crate::service::{BulkService, now_micros, visibility_for};

/// What every kick-off handler receives: the service, the site and caller that the FHIR
/// token check put in the request's extensions, the headers, the URI and the body.
pub(super) struct KickOff {
    pub service: BulkService,
    pub site: SiteContext,
    pub principal: Principal,
    pub headers: HeaderMap,
    pub uri: Uri,
    /// The body; empty for GET, whose parameters are in the query string.
    pub body: Bytes,
}

impl KickOff {
    /// The body, when the request has one.
    fn body(&self) -> Option<&[u8]> {
        Some(self.body.as_ref()).filter(|body| !body.is_empty())
    }
}

impl FromRequest<BulkService> for KickOff {
    type Rejection = Response;

    async fn from_request(request: Request, service: &BulkService) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let missing = |what: &str| {
            error_response(internal(format!(
                "the FHIR token check did not supply the {what} of a Bulk Data request"
            )))
        };
        let site = parts
            .extensions
            .get::<SiteContext>()
            .cloned()
            .ok_or_else(|| missing("site"))?;
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| missing("caller"))?;
        let headers = parts.headers.clone();
        let uri = parts.uri.clone();
        // A GET kick-off takes its parameters from the query string only.
        let body = if parts.method == Method::GET {
            Bytes::new()
        } else {
            Bytes::from_request(Request::from_parts(parts, body), service)
                .await
                .map_err(IntoResponse::into_response)?
        };
        Ok(KickOff {
            service: service.clone(),
            site,
            principal,
            headers,
            uri,
            body,
        })
    }
}

/// `GET`/`POST [base]/$export`.
pub async fn system(request: KickOff) -> Response {
    export(request, ExportLevel::System, None).await
}

/// `GET`/`POST [base]/Patient/$export`.
pub async fn patient(request: KickOff) -> Response {
    export(request, ExportLevel::Patient, None).await
}

/// `GET`/`POST [base]/Group/{id}/$export`.
pub async fn group(Path(id): Path<String>, request: KickOff) -> Response {
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
    let bases = service.settings.local_bases.clone();
    let patients = tokio::task::spawn_blocking(move || match group {
        Some(id) => group_members(&repository, &principal, &id, &requested_patients, &bases),
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
    let bases = &request.service.settings.local_bases;
    ExportParameters::read(query, request.body(), handling, bases)
        .map_err(|e| FhirError::bad_request(e.0))
}

/// `includeAssociatedData` values Hearth honours; both add the Provenance resources whose
/// target is an exported resource (see `export::provenance`).
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
    // The IG defines `patient` for Patient and Group exports. A system export keeps it
    // under lenient handling, because it narrows the export rather than widening it.
    if level == ExportLevel::System && !parameters.patients.is_empty() {
        parameters
            .unsupported(
                handling,
                "the patient parameter is defined for Patient and Group exports; at system level it limits the export to the listed patients".to_string(),
            )
            .map_err(invalid)?;
    }
    check_organize_output_by(request, level, handling, parameters)?;
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
    // An empty list means every type, so a `_type` whose names were all left out must not
    // fall back to it: the export would hold far more than the client asked for.
    if parameters.type_requested && types.is_empty() {
        return Err(FhirError::bad_request(format!(
            "_type names no resource type that this export can contain: {}",
            parameters.ignored.join("; ")
        )));
    }
    parameters.types = types;
    check_elements(handling, parameters)?;
    check_type_filters(request, level, handling, parameters)
}

/// Checks the `_typeFilter` queries. The Bulk Data IG (v2.0.0) asks a server that cannot
/// run a query to return an error, and allows it to go on only when the client sent
/// `Prefer: handling=lenient`. Then the query is left out and reported in the error file.
/// Leaving out one of several queries of a type narrows that type's export, because the
/// queries are OR'd. Leaving out the only ones would widen it to every resource of the type,
/// so that type is not exported at all.
fn check_type_filters(
    request: &KickOff,
    level: ExportLevel,
    handling: Handling,
    parameters: &mut ExportParameters,
) -> Result<(), FhirError> {
    let invalid = |e: crate::request::ParameterError| FhirError::bad_request(e.0);
    let lenient = handling == Handling::Lenient && lenient_requested(&request.headers);
    let mut kept = Vec::new();
    let mut left_out = Vec::new();
    for filter in std::mem::take(&mut parameters.type_filters) {
        match check_type_filter(request, parameters, &filter)? {
            FilterCheck::Supported => kept.push(filter),
            FilterCheck::OtherType(message) => {
                parameters.unsupported(handling, message).map_err(invalid)?;
            }
            FilterCheck::Unsupported(message) if lenient => {
                parameters.ignored.push(message);
                left_out.push(filter);
            }
            FilterCheck::Unsupported(message) => {
                return Err(FhirError::bad_request(format!(
                    "{message}. Remove it, or send Prefer: handling=lenient to export without it"
                )));
            }
        }
    }
    parameters.type_filters = kept;

    let mut unfiltered: Vec<String> = Vec::new();
    for filter in &left_out {
        let resource_type = filter.split_once('?').map_or("", |(t, _)| t).to_string();
        let still_filtered = parameters.type_filters.iter().any(|kept| {
            kept.split_once('?')
                .is_some_and(|(t, _)| t == resource_type)
        });
        if !still_filtered && !unfiltered.contains(&resource_type) {
            unfiltered.push(resource_type);
        }
    }
    if unfiltered.is_empty() {
        return Ok(());
    }
    leave_out_types(request, level, parameters, &unfiltered)
}

/// Removes `resource_types`, whose every `_typeFilter` query was left out, from the export
/// and reports each. An export without `_type` gets the list of every type it may contain
/// first, so that leaving some out cannot widen it to every type.
fn leave_out_types(
    request: &KickOff,
    level: ExportLevel,
    parameters: &mut ExportParameters,
    resource_types: &[String],
) -> Result<(), FhirError> {
    if parameters.types.is_empty() {
        parameters.types = hearth_fhir_core::resource_types::all()
            .iter()
            .filter(|t| level == ExportLevel::System || in_patient_compartment(t))
            .filter(|t| visibility_for(&request.principal, t).is_some())
            .cloned()
            .collect();
    }
    for resource_type in resource_types {
        parameters.types.retain(|t| t != resource_type);
        // Provenance that `includeAssociatedData` adds would otherwise go unfiltered.
        if resource_type == "Provenance" && !parameters.include_associated_data.is_empty() {
            parameters.include_associated_data.clear();
            parameters.ignored.push(
                "includeAssociatedData was not applied, because no _typeFilter query of Provenance could be applied".to_string(),
            );
        }
        parameters.ignored.push(format!(
            "no {resource_type} was exported, because none of its _typeFilter queries could be applied"
        ));
    }
    if parameters.types.is_empty() {
        return Err(FhirError::bad_request(format!(
            "no resource type is left to export: {}",
            parameters.ignored.join("; ")
        )));
    }
    Ok(())
}

/// Whether the kick-off sent `Prefer: handling=lenient` itself, which lenient handling
/// without a preference does not count as.
fn lenient_requested(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .any(|token| token.trim().eq_ignore_ascii_case("handling=lenient"))
}

/// What [`check_type_filter`] found of one `_typeFilter` query that is well formed.
enum FilterCheck {
    /// The search engine can run it.
    Supported,
    /// It is for a type that `_type` leaves out, so it changes nothing.
    OtherType(String),
    /// It uses a parameter, modifier or value that search does not support, or one that
    /// only shapes results.
    Unsupported(String),
}

/// Checks `_elements`: each entry is an element name or `Type.element`, and only NDJSON
/// output can be subsetted. Entries Hearth cannot honour are rejected under strict
/// handling and left out (and reported) otherwise.
fn check_elements(handling: Handling, parameters: &mut ExportParameters) -> Result<(), FhirError> {
    let invalid = |e: crate::request::ParameterError| FhirError::bad_request(e.0);
    if parameters.output_format == Some(OutputFormat::Parquet) && !parameters.elements.is_empty() {
        let elements = std::mem::take(&mut parameters.elements).join(",");
        return parameters
            .unsupported(
                handling,
                format!(
                    "_elements={elements} was not applied: Parquet files have the columns of their view, so _elements works with NDJSON only"
                ),
            )
            .map_err(invalid);
    }
    let mut elements = Vec::new();
    for element in std::mem::take(&mut parameters.elements) {
        if is_element_entry(&element) {
            elements.push(element);
            continue;
        }
        parameters
            .unsupported(
                handling,
                format!(
                    "_elements entry '{element}' is neither a top-level element name nor Type.element with an R4 resource type"
                ),
            )
            .map_err(invalid)?;
    }
    parameters.elements = elements;
    Ok(())
}

/// Whether an `_elements` entry is `element` or `Type.element`, with a top-level element
/// name (no nested path) and a resource type Hearth knows.
fn is_element_entry(entry: &str) -> bool {
    let is_name = |name: &str| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match entry.split_once('.') {
        Some((resource_type, name)) => {
            hearth_fhir_core::resource_types::is_resource_type(resource_type) && is_name(name)
        }
        None => is_name(entry),
    }
}

/// Checks `organizeOutputBy`: Hearth organizes NDJSON output by Patient only. A value it
/// cannot honour is rejected under strict handling and left out (and reported) otherwise.
fn check_organize_output_by(
    request: &KickOff,
    level: ExportLevel,
    handling: Handling,
    parameters: &mut ExportParameters,
) -> Result<(), FhirError> {
    let Some(organize) = parameters.organize_output_by.take() else {
        return Ok(());
    };
    let problem = if organize != "Patient" {
        Some(format!(
            "organizeOutputBy={organize} is not supported; Hearth organizes output by Patient only"
        ))
    } else if parameters.output_format == Some(OutputFormat::Parquet) {
        Some(
            "organizeOutputBy=Patient cannot be combined with _outputFormat=parquet, which writes one file set per resource type"
                .to_string(),
        )
    } else {
        None
    };
    if let Some(message) = problem {
        return parameters
            .unsupported(handling, message)
            .map_err(|e| FhirError::bad_request(e.0));
    }
    // Without a patient list the export walks every Patient the caller may search.
    let walks_patients = level != ExportLevel::Group && parameters.patients.is_empty();
    if walks_patients && visibility_for(&request.principal, "Patient").is_none() {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "organizeOutputBy=Patient needs a token whose scopes allow searching Patient",
        ));
    }
    parameters.organize_output_by = Some(organize);
    Ok(())
}

/// Checks one `_typeFilter` query with the search engine's parser under strict handling:
/// its type, and parameters, modifiers or values that search does not support. `Err` is a
/// malformed value, rejected under any handling as a search would be.
fn check_type_filter(
    request: &KickOff,
    parameters: &ExportParameters,
    filter: &str,
) -> Result<FilterCheck, FhirError> {
    let Some((resource_type, query)) = filter.split_once('?') else {
        return Err(FhirError::bad_request(format!(
            "_typeFilter '{filter}' is not of the form Type?query"
        )));
    };
    if !hearth_fhir_core::resource_types::is_resource_type(resource_type) {
        return Err(FhirError::bad_request(format!(
            "_typeFilter '{filter}' names no R4 resource type"
        )));
    }
    if has_broken_escape(query) {
        return Err(FhirError::bad_request(format!(
            "_typeFilter '{filter}' has a '%' that is not followed by two hex digits"
        )));
    }
    // Provenance that `includeAssociatedData` adds is filtered like a type of `_type`.
    let associated =
        resource_type == "Provenance" && !parameters.include_associated_data.is_empty();
    if !parameters.types.is_empty()
        && !associated
        && !parameters.types.iter().any(|t| t == resource_type)
    {
        return Ok(FilterCheck::OtherType(format!(
            "_typeFilter '{filter}' is for {resource_type}, which _type does not include"
        )));
    }
    let options = ParseOptions {
        strict: true,
        context: ValueContext {
            base_url: &request.site.fhir_base_url,
            now: now_micros(),
        },
    };
    let pairs = crate::request::query_pairs(query);
    let parsed = match hearth_cdr::search::parse(resource_type, &pairs, &options) {
        Ok(parsed) => parsed,
        Err(SearchError::Unsupported(reason)) => {
            return Ok(FilterCheck::Unsupported(format!(
                "_typeFilter '{filter}' is not supported: {reason}"
            )));
        }
        Err(SearchError::Invalid(reason)) => {
            return Err(FhirError::bad_request(format!(
                "_typeFilter '{filter}' is invalid: {reason}"
            )));
        }
    };
    if crate::request::shapes_results(&parsed) {
        return Ok(FilterCheck::Unsupported(format!(
            "_typeFilter '{filter}' uses a parameter that only shapes search results (such as _sort, _include or _count) and cannot filter an export"
        )));
    }
    if parsed.filters.is_empty() {
        return Ok(FilterCheck::Unsupported(format!(
            "_typeFilter '{filter}' has no search parameters"
        )));
    }
    Ok(FilterCheck::Supported)
}

/// Returns whether `query` has a percent sign that does not start a `%XX` escape.
fn has_broken_escape(query: &str) -> bool {
    let bytes = query.as_bytes();
    bytes.iter().enumerate().any(|(index, byte)| {
        *byte == b'%'
            && !(bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The patients of a Group the caller may read, intersected with the `patient` parameter
/// when one was given.
fn group_members(
    repository: &hearth_cdr::Repository,
    principal: &Principal,
    id: &str,
    requested: &[String],
    bases: &LocalBases,
) -> Result<Vec<String>, FhirError> {
    let group = read_group(repository, principal, id)?;
    let visibility = |resource_type: &str| visibility_for(principal, resource_type);
    let members = cohort::members(repository, &group, &visibility, bases).map_err(cohort_error)?;
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
    if request.body().is_none()
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
        organize_output_by: parameters.organize_output_by.clone(),
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
