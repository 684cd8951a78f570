//! History of a resource, of a type and of the whole repository, newest version first,
//! with `_since`, `_count` and `next` links that continue where a page ended.

use axum::extract::{Extension, Path, RawQuery, State};
use hearth_cdr::{HistoryScope, VersionAction};
use hearth_smart::scope::Interaction;
use serde_json::json;

use crate::access::Principal;
use crate::bundle_json::{BundleEntry, write_bundle};
use crate::error::{FhirError, FhirResult};
use crate::media::FhirJson;
use crate::read::check_type;
use crate::scopes::visibility;
use crate::{FhirState, SiteContext};

/// The cursor parameter of history `next` links: the storage position to continue before.
const PAGE_BEFORE: &str = "_page_before";

pub async fn instance(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let path = format!("{resource_type}/{id}/_history");
    let scope = HistoryScope::Instance {
        resource_type: &resource_type,
        id: &id,
    };
    history(&state, &site, &principal, scope, &path, query.as_deref())
}

pub async fn of_type(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
) -> FhirResult<FhirJson> {
    check_type(&resource_type)?;
    let path = format!("{resource_type}/_history");
    history(
        &state,
        &site,
        &principal,
        HistoryScope::Type(&resource_type),
        &path,
        query.as_deref(),
    )
}

pub async fn system(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> FhirResult<FhirJson> {
    history(
        &state,
        &site,
        &principal,
        HistoryScope::System,
        "_history",
        query.as_deref(),
    )
}

/// The parameters of a history request.
struct HistoryRequest {
    since: Option<i64>,
    count: usize,
    before: Option<i64>,
    /// `_since` and `_count` as given, for links.
    echoed: Vec<(String, String)>,
}

fn understand(state: &FhirState, query: Option<&str>) -> FhirResult<HistoryRequest> {
    let mut request = HistoryRequest {
        since: None,
        count: state.settings.default_page_size,
        before: None,
        echoed: Vec::new(),
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned();
        match name {
            "_since" => {
                let since = hearth_cdr::parse_instant(&value).ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "_since '{value}' is not an instant such as 2024-01-31T10:00:00Z"
                    ))
                })?;
                request.since = Some(since);
                request.echoed.push((name.to_string(), raw.to_string()));
            }
            "_count" => {
                let count: usize = value.parse().map_err(|_| {
                    FhirError::bad_request(format!("_count must be a whole number, not '{value}'"))
                })?;
                request.count = count.min(state.settings.max_page_size);
                request.echoed.push((name.to_string(), raw.to_string()));
            }
            PAGE_BEFORE => {
                let before = value.parse().map_err(|_| {
                    FhirError::bad_request(format!("{PAGE_BEFORE} is not a valid page cursor"))
                })?;
                request.before = Some(before);
            }
            _ => {}
        }
    }
    Ok(request)
}

fn history(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    scope: HistoryScope<'_>,
    path: &str,
    query: Option<&str>,
) -> FhirResult<FhirJson> {
    if let HistoryScope::Instance { resource_type, .. } | HistoryScope::Type(resource_type) = scope
    {
        visibility(principal, resource_type, Interaction::Read)?;
    }
    let request = understand(state, query)?;
    let visible =
        |resource_type: &str| visibility(principal, resource_type, Interaction::Read).ok();
    let page = state.repository.history(
        scope,
        request.since,
        request.count,
        request.before,
        &visible,
    )?;

    let base = &site.fhir_base_url;
    let link = |before: Option<i64>| {
        let mut pairs: Vec<String> = request
            .echoed
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if let Some(before) = before {
            pairs.push(format!("{PAGE_BEFORE}={before}"));
        }
        if pairs.is_empty() {
            format!("{base}/{path}")
        } else {
            format!("{base}/{path}?{}", pairs.join("&"))
        }
    };
    let self_link = link(request.before);
    let next_link = page.next_before.map(|before| link(Some(before)));
    let mut links = vec![("self", self_link.as_str())];
    if let Some(next) = &next_link {
        links.push(("next", next.as_str()));
    }
    let entries: Vec<BundleEntry<'_>> = page
        .versions
        .iter()
        .map(|version| {
            let (method, url, status) = match version.action {
                VersionAction::Created => ("POST", version.resource_type.clone(), "201 Created"),
                VersionAction::Updated => (
                    "PUT",
                    format!("{}/{}", version.resource_type, version.id),
                    "200 OK",
                ),
                VersionAction::Deleted => (
                    "DELETE",
                    format!("{}/{}", version.resource_type, version.id),
                    "204 No Content",
                ),
            };
            BundleEntry {
                full_url: format!("{base}/{}/{}", version.resource_type, version.id),
                resource: version.json.as_deref(),
                search_mode: None,
                request: Some(json!({"method": method, "url": url})),
                response: Some(json!({
                    "status": status,
                    "etag": format!("W/\"{}\"", version.version),
                    "lastModified": hearth_cdr::format_instant(version.last_updated),
                })),
            }
        })
        .collect();
    Ok(FhirJson::ok(write_bundle(
        "history", None, &links, &entries,
    )))
}
