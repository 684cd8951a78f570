//! `POST [base]/Group/{id}/$refresh`: evaluates a cohort's member filters and stores the
//! Group with the members found, so its `quantity` shows the cohort's size.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_cdr::TransactionOutcome;
use hearth_fhir::{FhirError, Principal, SiteContext};
use hearth_log::topics;
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};
use hearth_smart::scope::{Context, Interaction};
use serde_json::Value;

use super::kickoff::{cohort_error, read_group};
use super::{error_response, internal};
use crate::cohort;
use crate::service::{BulkService, now_micros, visibility_for};

/// Key of every `hearth.resources` record, shared by all resource writes.
const RESOURCES_KEY: &[u8] = b"repository";

pub async fn refresh(
    State(service): State<BulkService>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match run(&service, &site, &principal, &id).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

async fn run(
    service: &BulkService,
    site: &SiteContext,
    principal: &Principal,
    id: &str,
) -> Result<Response, FhirError> {
    let access = principal.scopes.access(
        &[Context::User, Context::System],
        "Group",
        Interaction::Update,
    );
    if !access.is_unrestricted() {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "$refresh stores the Group, so it needs unrestricted update access to Group, such as system/Group.u",
        ));
    }
    let repository = service.repository.clone();
    let caller = principal.clone();
    let group_id = id.to_string();
    let bases = service.settings.local_bases.clone();
    let (group, members) = tokio::task::spawn_blocking(move || {
        let group = read_group(&repository, &caller, &group_id)?;
        let visibility = |resource_type: &str| visibility_for(&caller, resource_type);
        let members =
            cohort::members(&repository, &group, &visibility, &bases).map_err(cohort_error)?;
        Ok::<_, FhirError>((group, members))
    })
    .await
    .map_err(internal)??;

    let version = group
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let refreshed = cohort::with_members(&group, &members);
    let event = ResourceTransaction {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now_micros(),
        site_id: site.site_id.clone(),
        kind: TransactionKind::Single,
        entries: vec![ResourceOperation {
            action: ResourceAction::Update,
            resource_type: "Group".to_string(),
            id: Some(id.to_string()),
            full_url: None,
            resource: Some(refreshed.to_string()),
            if_match: version,
            if_none_exist: None,
            criteria: None,
        }],
        client_id: Some(principal.client_id.clone()),
        user_id: principal.fhir_user.clone(),
        request_id: None,
    };
    let value = hearth_schemas::encode(&event).map_err(internal)?;
    let position = service
        .log
        .append(topics::RESOURCES, RESOURCES_KEY, &value)
        .await
        .map_err(internal)?;
    let outcome = service
        .repository_projection
        .wait_for(position, service.settings.write_timeout)
        .await
        .map_err(internal)?;
    match outcome {
        Some(TransactionOutcome::Applied(_)) | None => {}
        Some(TransactionOutcome::Rejected(rejection)) => {
            return Err(FhirError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "the Group changed while its members were evaluated; try again ({rejection:?})"
                ),
            ));
        }
        Some(TransactionOutcome::Undecodable(reason)) => return Err(internal(reason)),
    }
    tracing::info!(group = id, members = members.len(), "cohort refreshed");

    let stored = service
        .repository
        .read("Group", id)
        .map_err(internal)?
        .and_then(|stored| stored.json)
        .ok_or_else(|| FhirError::not_found(format!("Group/{id} is not known")))?;
    let mut response = (StatusCode::OK, stored).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hearth_fhir::FHIR_JSON),
    );
    Ok(response)
}
