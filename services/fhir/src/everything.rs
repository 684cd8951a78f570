//! `Patient/{id}/$everything`: the Patient, its compartment and the resources they refer
//! to, each filtered by what the caller may read, paged by a cursor.

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::HeaderMap;
use hearth_cdr::search::{EverythingCursor, EverythingRequest};
use hearth_fhir_core::resource_types;
use hearth_smart::scope::Interaction;

use crate::access::Principal;
use crate::bundle_json::{BundleEntry, write_bundle};
use crate::error::{FhirError, FhirResult};
use crate::media::FhirJson;
use crate::read::read_resource;
use crate::search::{access_of, encode_component, pretty, split_query, strict_handling};
use crate::{FhirState, SiteContext};

/// The cursor parameter of `$everything` paging links.
const PAGE: &str = "_page";

/// What the query of a `$everything` request asks for.
#[derive(Default)]
struct Parameters {
    since: Option<i64>,
    types: Option<Vec<String>>,
    count: Option<usize>,
    cursor: Option<EverythingCursor>,
    /// Parameters repeated in paging links, as (name, decoded value).
    echoed: Vec<(String, String)>,
}

pub async fn everything(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult<FhirJson> {
    check_patient(&resource_type)?;
    let pairs = split_query(query.as_deref().unwrap_or(""));
    respond(&state, &site, &principal, &id, &pairs, &headers)
}

/// `POST Patient/{id}/$everything` with the parameters in a form body.
pub async fn everything_post(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    check_patient(&resource_type)?;
    let mut pairs = split_query(query.as_deref().unwrap_or(""));
    if !body.is_empty() {
        let body = std::str::from_utf8(&body)
            .map_err(|_| FhirError::bad_request("the form body is not valid UTF-8"))?;
        pairs.extend(split_query(body));
    }
    respond(&state, &site, &principal, &id, &pairs, &headers)
}

/// Rejects `$everything` on types other than Patient: the operation is not defined there.
fn check_patient(resource_type: &str) -> FhirResult<()> {
    if resource_type == "Patient" {
        return Ok(());
    }
    crate::read::check_type(resource_type)?;
    Err(FhirError::not_found(format!(
        "$everything is supported on Patient only, not on {resource_type}"
    )))
}

fn respond(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    id: &str,
    pairs: &[(String, String)],
    headers: &HeaderMap,
) -> FhirResult<FhirJson> {
    read_resource(state, principal, "Patient", id)?;
    let parameters = parse(pairs, strict_handling(headers))?;
    let request = EverythingRequest {
        patient: id,
        since: parameters.since,
        types: parameters.types.as_deref(),
    };
    let read = access_of(principal, Interaction::Read);
    let settings = &state.settings;
    let count = parameters
        .count
        .unwrap_or(settings.default_page_size)
        .clamp(1, settings.max_page_size);
    let page = state
        .repository
        .everything_page(&request, &read, count, parameters.cursor)?;

    let base = site.fhir_base_url.as_str();
    let path = format!("{base}/Patient/{}/$everything", encode_component(id));
    let self_link = link(&path, &parameters.echoed, parameters.cursor);
    let next_link = page
        .next
        .map(|next| link(&path, &parameters.echoed, Some(next)));
    let mut links = vec![("self", self_link.as_str())];
    if let Some(next) = &next_link {
        links.push(("next", next.as_str()));
    }
    let total = if parameters.cursor.is_none() && page.next.is_none() {
        Some(page.resources.len() as u64)
    } else {
        None
    };
    let entries: Vec<BundleEntry<'_>> = page
        .resources
        .iter()
        .map(|stored| BundleEntry {
            full_url: format!("{base}/{}/{}", stored.resource_type, stored.id),
            resource: stored.json.as_deref(),
            search_mode: Some("match"),
            request: None,
            response: None,
        })
        .collect();
    let body = write_bundle("searchset", total, &links, &entries);
    Ok(FhirJson::ok(body).pretty(pretty(pairs)))
}

fn parse(pairs: &[(String, String)], strict: bool) -> FhirResult<Parameters> {
    let mut parameters = Parameters::default();
    for (name, raw) in pairs {
        let value = percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8()
            .map_err(|_| FhirError::bad_request(format!("{name} is not percent-encoded UTF-8")))?
            .into_owned();
        match name.as_str() {
            "_since" => {
                // A `+` of a time zone that was sent unencoded arrives as a space.
                let instant = value.replace(' ', "+");
                let since = hearth_cdr::parse_instant(&instant).ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "_since '{value}' is not an instant such as 2024-01-31T10:00:00Z"
                    ))
                })?;
                parameters.since = Some(since);
            }
            "_type" => {
                let types: Vec<String> = value.split(',').map(|t| t.trim().to_string()).collect();
                if let Some(unknown) = types.iter().find(|t| !resource_types::is_resource_type(t)) {
                    return Err(FhirError::bad_request(format!(
                        "_type names '{unknown}', which is not a resource type"
                    )));
                }
                parameters.types = Some(types);
            }
            "_count" => {
                let count = value.trim().parse().map_err(|_| {
                    FhirError::bad_request(format!("_count must be a whole number, not '{value}'"))
                })?;
                parameters.count = Some(count);
            }
            PAGE => {
                let cursor = value.parse().map_err(|()| {
                    FhirError::bad_request(format!(
                        "{PAGE} is not a valid page cursor; follow the links of a $everything Bundle"
                    ))
                })?;
                parameters.cursor = Some(cursor);
                continue;
            }
            "_format" | "_pretty" => {}
            _ if strict => {
                return Err(FhirError::bad_request(format!(
                    "$everything does not support the parameter '{name}'"
                )));
            }
            _ => continue,
        }
        parameters.echoed.push((name.clone(), value));
    }
    Ok(parameters)
}

fn link(path: &str, echoed: &[(String, String)], cursor: Option<EverythingCursor>) -> String {
    let mut url = path.to_string();
    let mut separator = '?';
    for (name, value) in echoed {
        url.push(separator);
        url.push_str(&encode_component(name));
        url.push('=');
        url.push_str(&encode_component(value));
        separator = '&';
    }
    if let Some(cursor) = cursor {
        url.push_str(&format!("{separator}{PAGE}={cursor}"));
    }
    url
}
