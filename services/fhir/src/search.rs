//! Type-level search over GET and POST `_search`.
//!
//! Paging is by cursor: the `next` link repeats the request's own parameters, in their
//! original encoding, plus `_page_after`, the storage position of the last resource on the
//! page. Following it therefore replays the identical search from where the page ended.

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use hearth_fhir_core::search_params;
use serde::Deserialize;

use crate::access::Principal;
use crate::bundle_json::{BundleEntry, write_bundle};
use crate::error::{FhirError, FhirResult};
use crate::media::FhirJson;
use crate::read::check_type;
use crate::scopes::visibility;
use crate::{FhirState, SiteContext};
use hearth_smart::scope::Interaction;

/// Query parameters every interaction accepts.
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    #[serde(rename = "_pretty")]
    pub pretty: Option<String>,
}

impl CommonParams {
    pub fn pretty(&self) -> bool {
        self.pretty.as_deref() == Some("true")
    }
}

/// The cursor parameter of `next` links.
const PAGE_AFTER: &str = "_page_after";

/// Result parameters this version handles; other `_` parameters are unknown.
const RESULT_PARAMS: &[&str] = &[
    "_count", "_summary", "_total", "_format", "_pretty", PAGE_AFTER,
];

pub async fn search_type(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult<FhirJson> {
    let pairs = split_query(query.as_deref().unwrap_or(""));
    run_search(&state, &site, &principal, &resource_type, pairs, &headers)
}

pub async fn search_type_post(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST _search takes an application/x-www-form-urlencoded body",
        ));
    }
    let body = std::str::from_utf8(&body)
        .map_err(|_| FhirError::bad_request("the form body is not valid UTF-8"))?;
    let mut pairs = split_query(query.as_deref().unwrap_or(""));
    pairs.extend(split_query(body));
    run_search(&state, &site, &principal, &resource_type, pairs, &headers)
}

/// Splits a query string into (decoded name, still-encoded value) pairs.
pub(crate) fn split_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_encoding::percent_decode_str(&name.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            (name, value.to_string())
        })
        .collect()
}

/// The search as understood: filters, result parameters and the cursor.
struct SearchRequest {
    filters: Vec<(String, String)>,
    /// Parameters echoed in links, in request order and original encoding.
    echoed: Vec<(String, String)>,
    count: usize,
    summary_count: bool,
    want_total: bool,
    after: Option<i64>,
    pretty: bool,
}

fn understand(
    state: &FhirState,
    resource_type: &str,
    pairs: Vec<(String, String)>,
    strict: bool,
) -> FhirResult<SearchRequest> {
    let settings = &state.settings;
    let mut request = SearchRequest {
        filters: Vec::new(),
        echoed: Vec::new(),
        count: settings.default_page_size,
        summary_count: false,
        want_total: false,
        after: None,
        pretty: false,
    };
    for (name, value) in pairs {
        let decoded = || {
            percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        match name.as_str() {
            "_count" => {
                let count: usize = decoded().parse().map_err(|_| {
                    FhirError::bad_request(format!(
                        "_count must be a whole number, not '{}'",
                        decoded()
                    ))
                })?;
                request.count = count.min(settings.max_page_size);
            }
            "_summary" => match decoded().as_str() {
                "count" => request.summary_count = true,
                "false" => {}
                other if strict => {
                    return Err(FhirError::bad_request(format!(
                        "_summary={other} is not supported"
                    )));
                }
                _ => continue,
            },
            "_total" => request.want_total = matches!(decoded().as_str(), "accurate" | "estimate"),
            "_pretty" => request.pretty = decoded() == "true",
            PAGE_AFTER => {
                let after = decoded().parse().map_err(|_| {
                    FhirError::bad_request(format!("{PAGE_AFTER} is not a valid page cursor"))
                })?;
                request.after = Some(after);
                continue;
            }
            "_format" => {}
            _ if is_filter(resource_type, &name) => {
                request.filters.push((name.clone(), value.clone()))
            }
            _ if strict => {
                return Err(FhirError::bad_request(format!(
                    "unknown search parameter '{name}' for {resource_type}"
                )));
            }
            _ => continue,
        }
        request.echoed.push((name, value));
    }
    Ok(request)
}

fn is_filter(resource_type: &str, name: &str) -> bool {
    let code = name.split(':').next().unwrap_or(name);
    !RESULT_PARAMS.contains(&code)
        && (code == "_id" || search_params::get(resource_type, code).is_some())
}

/// Whether the request asked for `Prefer: handling=strict`.
fn strict_handling(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|part| part.trim().eq_ignore_ascii_case("handling=strict"))
}

pub(crate) fn run_search(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    resource_type: &str,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> FhirResult<FhirJson> {
    check_type(resource_type)?;
    let visibility = visibility(principal, resource_type, Interaction::Search)?;
    let request = understand(state, resource_type, pairs, strict_handling(headers))?;
    let base = site.fhir_base_url.as_str();

    let self_link = link(base, resource_type, &request.echoed, request.after);
    let total_needed = request.summary_count || request.want_total || request.count == 0;
    let total = if total_needed {
        Some(
            state
                .repository
                .count(resource_type, &request.filters, &visibility)?,
        )
    } else {
        None
    };
    if request.summary_count || request.count == 0 {
        let body = write_bundle("searchset", total, &[("self", &self_link)], &[]);
        return Ok(FhirJson::ok(body).pretty(request.pretty));
    }

    let page = state.repository.search(
        resource_type,
        &request.filters,
        &visibility,
        request.count,
        request.after,
    )?;
    let next_link = page
        .next_after
        .map(|after| link(base, resource_type, &request.echoed, Some(after)));
    let mut links = vec![("self", self_link.as_str())];
    if let Some(next) = &next_link {
        links.push(("next", next.as_str()));
    }
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
    Ok(FhirJson::ok(body).pretty(request.pretty))
}

fn link(
    base: &str,
    resource_type: &str,
    echoed: &[(String, String)],
    after: Option<i64>,
) -> String {
    let mut url = format!("{base}/{resource_type}");
    let mut separator = '?';
    for (name, value) in echoed {
        let name = percent_encoding::utf8_percent_encode(name, QUERY_COMPONENT);
        let decoded = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        let value = percent_encoding::utf8_percent_encode(&decoded, QUERY_COMPONENT);
        url.push_str(&format!("{separator}{name}={value}"));
        separator = '&';
    }
    if let Some(after) = after {
        url.push_str(&format!("{separator}{PAGE_AFTER}={after}"));
    }
    url
}

/// Characters escaped in parameter names and values echoed in links: everything RFC 3986
/// does not allow in a query, plus the query's own delimiters. Non-ASCII characters are
/// always escaped as UTF-8.
const QUERY_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
