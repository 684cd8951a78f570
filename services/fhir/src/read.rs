//! read and vread.

use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use hearth_cdr::StoredResource;
use hearth_fhir_core::resource_types::is_resource_type;

use crate::FhirState;
use crate::access::Principal;
use crate::error::{FhirError, FhirResult};
use crate::media::FhirJson;
use crate::scopes::visibility;
use crate::search::CommonParams;
use hearth_cdr::Visibility;
use hearth_smart::scope::Interaction;

pub async fn read(
    State(state): State<FhirState>,
    Extension(site): Extension<crate::SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(common): Query<CommonParams>,
) -> FhirResult<FhirJson> {
    let subset = common.subset()?;
    if resource_type == "OperationDefinition"
        && let Some(definition) = crate::operations::definition(&site.fhir_base_url, &id)
    {
        let definition = match &subset {
            Some(subset) => hearth_fhir_core::elements::subset(&definition, subset),
            None => definition,
        };
        return Ok(FhirJson::ok(definition.to_string()).pretty(common.pretty()));
    }
    let stored = read_resource(&state, &principal, &resource_type, &id)?;
    Ok(resource_response(subset_stored(stored, subset.as_ref())).pretty(common.pretty()))
}

/// Cuts the stored JSON down to `subset` (`_summary` or `_elements` on a read).
fn subset_stored(
    mut stored: StoredResource,
    subset: Option<&hearth_fhir_core::elements::Subset>,
) -> StoredResource {
    if let Some(subset) = subset
        && let Some(value) = stored
            .json
            .as_deref()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
    {
        stored.json = Some(hearth_fhir_core::elements::subset(&value, subset).to_string());
    }
    stored
}

/// Reads the current version of a resource the caller may see.
pub fn read_resource(
    state: &FhirState,
    principal: &Principal,
    resource_type: &str,
    id: &str,
) -> FhirResult<StoredResource> {
    check_type(resource_type)?;
    let visibility = visibility(principal, resource_type, Interaction::Read)?;
    let stored = state.repository.read(resource_type, id)?;
    let stored = live(stored, resource_type, id)?;
    check_visible(state, resource_type, id, &visibility)?;
    Ok(stored)
}

/// 404 for a resource the caller's scopes do not reach, so its existence is not revealed.
pub fn check_visible(
    state: &FhirState,
    resource_type: &str,
    id: &str,
    visibility: &Visibility,
) -> FhirResult<()> {
    if visibility.is_everything() || state.repository.is_visible(resource_type, id, visibility)? {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "{resource_type}/{id} is not known"
        )))
    }
}

pub async fn vread(
    State(state): State<FhirState>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    Query(common): Query<CommonParams>,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let subset = common.subset()?;
    let visibility = visibility(&principal, &resource_type, Interaction::Read)?;
    check_visible(&state, &resource_type, &id, &visibility)?;
    let number: i64 = version.parse().map_err(|_| {
        FhirError::not_found(format!("{resource_type}/{id} has no version '{version}'"))
    })?;
    let stored = state
        .repository
        .vread(&resource_type, &id, number)?
        .ok_or_else(|| {
            FhirError::not_found(format!("{resource_type}/{id} has no version {number}"))
        })?;
    if stored.is_deleted() {
        return Err(FhirError::gone(format!(
            "version {number} of {resource_type}/{id} is its deletion"
        )));
    }
    Ok(resource_response(subset_stored(stored, subset.as_ref())).pretty(common.pretty()))
}

/// Rejects names that are not R4 resource types with 404, as the type's endpoint does
/// not exist.
pub fn check_type(resource_type: &str) -> FhirResult<()> {
    if is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "unknown resource type '{resource_type}'"
        )))
    }
}

fn live(
    stored: Option<StoredResource>,
    resource_type: &str,
    id: &str,
) -> FhirResult<StoredResource> {
    match stored {
        None => Err(FhirError::not_found(format!(
            "{resource_type}/{id} is not known"
        ))),
        Some(stored) if stored.is_deleted() => {
            Err(FhirError::gone(format!("{resource_type}/{id} was deleted")))
        }
        Some(stored) => Ok(stored),
    }
}

/// A 200 response with the resource, its ETag and Last-Modified.
pub fn resource_response(stored: StoredResource) -> FhirJson {
    let etag = format!("W/\"{}\"", stored.version);
    let modified = http_date(stored.last_updated);
    FhirJson::ok(stored.json.unwrap_or_default())
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &modified)
}

/// Formats microseconds since the epoch as an HTTP date (RFC 9110 IMF-fixdate).
pub fn http_date(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let Ok(when) = time::OffsetDateTime::from_unix_timestamp(seconds) else {
        return String::new();
    };
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    when.format(&format).unwrap_or_default()
}
