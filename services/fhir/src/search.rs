//! Type-level and Patient-compartment search over GET and POST `_search`, and the
//! searchset Bundle that system-level search (`crate::search_system`) writes too.
//!
//! [`hearth_cdr::search`] parses the parameters and runs them against the repository with
//! the caller's visibility. The searched type and the types that chains and `_has` read
//! need search access. Resources that `_include` and `_revinclude` add need read access.
//! Each is narrowed by patient compartment and scope queries, as a read is.
//!
//! Paging links repeat the request's own parameters, in their original order and encoding
//! (ignored ones left out), plus a cursor, so following `next` replays the identical search
//! from where the page ended, also after a POST search.

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use hearth_cdr::Visibility;
use hearth_cdr::search::{
    self, Cursor, PAGE_AFTER, PAGE_OFFSET, ParseOptions, SearchAccess, SearchError, SearchQuery,
    Summary, Total, ValueContext,
};
use hearth_fhir_core::elements::{self, Subset};
use serde::Deserialize;
use serde_json::json;

use crate::access::Principal;
use crate::bundle_json::{BundleEntry, write_bundle};
use crate::error::{FhirError, FhirResult, operation_outcome};
use crate::media::FhirJson;
use crate::read::{check_type, read_resource};
use crate::scopes::visibility;
use crate::{FhirState, SiteContext};
use hearth_smart::scope::Interaction;

/// Query parameters every interaction accepts.
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    #[serde(rename = "_pretty")]
    pub pretty: Option<String>,
    #[serde(rename = "_summary")]
    pub summary: Option<String>,
    #[serde(rename = "_elements")]
    pub elements: Option<String>,
}

impl CommonParams {
    pub fn pretty(&self) -> bool {
        self.pretty.as_deref() == Some("true")
    }

    /// The subset that `_summary` or `_elements` asks of a read: `None` for the whole
    /// resource, 400 for a `_summary` value that a read cannot honour.
    pub fn subset(&self) -> FhirResult<Option<Subset>> {
        match self.summary.as_deref() {
            Some("true") => return Ok(Some(Subset::Summary)),
            Some("text") => return Ok(Some(Subset::Text)),
            Some("data") => return Ok(Some(Subset::Data)),
            Some("false") | None => {}
            Some(other) => {
                return Err(FhirError::bad_request(format!(
                    "_summary={} is not allowed on a read; use true, text, data or false",
                    hearth_fhir_core::id::shown(other)
                )));
            }
        }
        let names: Vec<String> = self
            .elements
            .iter()
            .flat_map(|list| list.split(','))
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        Ok((!names.is_empty()).then_some(Subset::Elements(names)))
    }
}

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
    let pairs = form_pairs(query.as_deref(), &headers, &body)?;
    run_search(&state, &site, &principal, &resource_type, pairs, &headers)
}

/// `GET Patient/{id}/{type}`: a search of `type` confined to the Patient's compartment.
pub async fn search_compartment(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((compartment, id, resource_type)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult<FhirJson> {
    let pairs = split_query(query.as_deref().unwrap_or(""));
    compartment_search(
        &state,
        &site,
        &principal,
        (&compartment, &id, &resource_type),
        pairs,
        &headers,
    )
}

/// `POST Patient/{id}/{type}/_search`.
pub async fn search_compartment_post(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    Path((compartment, id, resource_type)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    let pairs = form_pairs(query.as_deref(), &headers, &body)?;
    compartment_search(
        &state,
        &site,
        &principal,
        (&compartment, &id, &resource_type),
        pairs,
        &headers,
    )
}

fn compartment_search(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    (compartment, id, resource_type): (&str, &str, &str),
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> FhirResult<FhirJson> {
    if compartment != "Patient" {
        check_type(compartment)?;
        return Err(FhirError::not_found(format!(
            "compartment search is supported for the Patient compartment only, not {compartment}"
        )));
    }
    check_type(resource_type)?;
    // The Patient must exist and, for a caller confined to one patient, be that patient,
    // so the response never distinguishes another patient's id from an unknown one. Reading the
    // Patient resource itself is not needed: the results pass the caller's scopes for
    // the searched type like any search.
    match read_resource(state, principal, "Patient", id) {
        Ok(_) => {}
        Err(error) if error.status == StatusCode::FORBIDDEN => {
            let confined_elsewhere = principal
                .patient
                .as_deref()
                .is_some_and(|patient| patient != id);
            let exists = state
                .repository
                .read("Patient", id)?
                .is_some_and(|stored| !stored.is_deleted());
            if confined_elsewhere || !exists {
                return Err(FhirError::not_found(format!("Patient/{id} is not known")));
            }
        }
        Err(error) => return Err(error),
    }
    let request = SearchRequest {
        resource_type,
        compartment: Some(id),
        pairs,
    };
    search_response(state, site, principal, &request, headers)
}

/// Collects the pairs of a POST search: those of the query string, then those of the
/// form body.
pub(crate) fn form_pairs(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> FhirResult<Vec<(String, String)>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a POST search takes an application/x-www-form-urlencoded body",
        ));
    }
    let body = std::str::from_utf8(body)
        .map_err(|_| FhirError::bad_request("the form body is not valid UTF-8"))?;
    let mut pairs = split_query(query.unwrap_or(""));
    pairs.extend(split_query(body));
    Ok(pairs)
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

/// Returns whether the request has `Prefer: handling=strict`. Lenient handling is the
/// default.
pub(crate) fn strict_handling(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|part| part.trim().eq_ignore_ascii_case("handling=strict"))
}

/// Returns whether the pairs contain `_pretty=true`.
pub(crate) fn pretty(pairs: &[(String, String)]) -> bool {
    pairs
        .iter()
        .any(|(name, value)| name == "_pretty" && value == "true")
}

/// Runs a type-level search and returns its searchset Bundle; batch entries call it too.
pub(crate) fn run_search(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    resource_type: &str,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> FhirResult<FhirJson> {
    check_type(resource_type)?;
    let request = SearchRequest {
        resource_type,
        compartment: None,
        pairs,
    };
    search_response(state, site, principal, &request, headers)
}

/// One search as the handlers received it.
struct SearchRequest<'a> {
    resource_type: &'a str,
    /// The Patient id of a compartment search.
    compartment: Option<&'a str>,
    pairs: Vec<(String, String)>,
}

impl SearchRequest<'_> {
    /// Returns the path of the search under the base, which paging links repeat.
    fn path(&self) -> String {
        match self.compartment {
            Some(id) => format!("Patient/{}/{}", encode_component(id), self.resource_type),
            None => self.resource_type.to_string(),
        }
    }
}

/// Returns the error for a search that cannot run: 400, as an invalid or (under strict
/// handling) unsupported parameter.
pub(crate) fn search_error(error: SearchError) -> FhirError {
    match error {
        SearchError::Invalid(message) => FhirError::bad_request(message),
        SearchError::Unsupported(message) => {
            FhirError::not_supported(StatusCode::BAD_REQUEST, message)
        }
    }
}

/// Looks up what the caller may search or read of each type, for chains and includes.
pub(crate) fn access_of(
    principal: &Principal,
    interaction: Interaction,
) -> impl Fn(&str) -> Option<Visibility> + '_ {
    move |resource_type: &str| visibility(principal, resource_type, interaction).ok()
}

fn search_response(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    request: &SearchRequest<'_>,
    headers: &HeaderMap,
) -> FhirResult<FhirJson> {
    let resource_type = request.resource_type;
    // A type the caller may not search at all is 403, not an empty Bundle.
    visibility(principal, resource_type, Interaction::Search)?;
    let base = site.fhir_base_url.as_str();
    let options = parse_options(base, headers);
    let query = search::parse(resource_type, &request.pairs, &options).map_err(search_error)?;

    let search_visibility = access_of(principal, Interaction::Search);
    let read_visibility = access_of(principal, Interaction::Read);
    let access = SearchAccess {
        search: &search_visibility,
        read: &read_visibility,
        compartment: request.compartment,
    };
    let repository = &state.repository;
    let search = SearchRun {
        base,
        path: request.path(),
        query: &query,
        pretty: pretty(&request.pairs),
    };
    search.respond(
        &state.settings,
        || Ok(repository.search_count(&query, &access)?),
        |count| Ok(repository.search_page(&query, &access, count)?),
    )
}

/// How to parse the parameters of a request to the FHIR base `base`.
pub(crate) fn parse_options<'a>(base: &'a str, headers: &HeaderMap) -> ParseOptions<'a> {
    ParseOptions {
        strict: strict_handling(headers),
        context: ValueContext {
            base_url: base,
            now: search::now_micros(),
        },
    }
}

/// A parsed search on its way to a searchset Bundle.
pub(crate) struct SearchRun<'a> {
    pub base: &'a str,
    /// The path of the search under the base, which paging links repeat.
    pub path: String,
    pub query: &'a SearchQuery,
    pub pretty: bool,
}

impl SearchRun<'_> {
    /// Runs the search with `count_all`, which counts every match, and `page`, which
    /// returns a page of the given size, and writes the searchset Bundle.
    pub fn respond(
        &self,
        settings: &crate::FhirSettings,
        count_all: impl Fn() -> FhirResult<u64>,
        page: impl Fn(usize) -> FhirResult<hearth_cdr::search::SearchResults>,
    ) -> FhirResult<FhirJson> {
        let (base, path, query) = (self.base, self.path.as_str(), self.query);
        let count = query
            .count
            .unwrap_or(settings.default_page_size)
            .min(settings.max_page_size);
        let self_link = link(base, path, &query.echoed, query.cursor);

        let count_only = count == 0 || query.summary == Some(Summary::Count);
        let total_requested = matches!(query.total, Some(Total::Accurate | Total::Estimate));
        if count_only {
            let total = match query.total {
                Some(Total::None) => None,
                _ => Some(count_all()?),
            };
            let body = write_bundle("searchset", total, &[("self", &self_link)], &[]);
            return Ok(FhirJson::ok(body).pretty(self.pretty));
        }

        let results = page(count)?;
        let total = if total_requested {
            Some(count_all()?)
        } else if query.total.is_none() && query.cursor.is_none() && results.next.is_none() {
            // The first page contains every match, so the total is known without counting.
            Some(results.matches.len() as u64)
        } else {
            None
        };

        let next_link = results
            .next
            .map(|next| link(base, path, &query.echoed, Some(next)));
        let first_link = query
            .cursor
            .is_some()
            .then(|| link(base, path, &query.echoed, None));
        let mut links = vec![("self", self_link.as_str())];
        if let Some(first) = &first_link {
            links.push(("first", first.as_str()));
        }
        if let Some(next) = &next_link {
            links.push(("next", next.as_str()));
        }

        let match_subset = subset_of(query, true);
        let include_subset = subset_of(query, false);
        let mut bodies: Vec<(&hearth_cdr::StoredResource, &'static str, Option<String>)> =
            Vec::with_capacity(results.matches.len() + results.included.len());
        for stored in &results.matches {
            bodies.push((stored, "match", reshape(stored, match_subset.as_ref())));
        }
        for stored in &results.included {
            bodies.push((stored, "include", reshape(stored, include_subset.as_ref())));
        }
        let mut entries: Vec<BundleEntry<'_>> = bodies
            .iter()
            .map(|(stored, mode, reshaped)| BundleEntry {
                full_url: format!("{base}/{}/{}", stored.resource_type, stored.id),
                resource: reshaped.as_deref().or(stored.json.as_deref()),
                search_mode: Some(*mode),
                request: None,
                response: None,
            })
            .collect();
        let warning = warnings(query, results.included_truncated);
        if let Some(outcome) = &warning {
            entries.push(BundleEntry {
                full_url: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                resource: Some(outcome.as_str()),
                search_mode: Some("outcome"),
                request: None,
                response: None,
            });
        }
        let body = write_bundle("searchset", total, &links, &entries);
        Ok(FhirJson::ok(body).pretty(self.pretty))
    }
}

/// Returns the subset that `_summary` or `_elements` requests. `_summary` applies to every
/// entry and `_elements` to matches only.
fn subset_of(query: &SearchQuery, is_match: bool) -> Option<Subset> {
    match query.summary {
        Some(Summary::True) => return Some(Subset::Summary),
        Some(Summary::Text) => return Some(Subset::Text),
        Some(Summary::Data) => return Some(Subset::Data),
        Some(Summary::Count | Summary::False) | None => {}
    }
    match &query.elements {
        Some(names) if is_match => Some(Subset::Elements(names.clone())),
        _ => None,
    }
}

/// Returns the stored JSON cut down to `subset`, or `None` to send it as stored.
fn reshape(stored: &hearth_cdr::StoredResource, subset: Option<&Subset>) -> Option<String> {
    let subset = subset?;
    let value: serde_json::Value = serde_json::from_str(stored.json.as_deref()?).ok()?;
    Some(elements::subset(&value, subset).to_string())
}

/// Returns an OperationOutcome of warnings for the Bundle: parameters ignored under
/// lenient handling, and includes cut at their limit.
fn warnings(query: &SearchQuery, included_truncated: bool) -> Option<String> {
    let mut issues = Vec::new();
    if !query.ignored.is_empty() {
        issues.push(json!({
            "severity": "warning",
            "code": "not-supported",
            "diagnostics": format!(
                "ignored search parameters (unknown, or with an unsupported modifier): {}",
                query.ignored.join(", ")
            ),
        }));
    }
    if included_truncated {
        issues.push(json!({
            "severity": "warning",
            "code": "too-costly",
            "diagnostics": format!(
                "_include and _revinclude found more resources than the limit of {}; the rest are left out",
                search::MAX_INCLUDED
            ),
        }));
    }
    if issues.is_empty() {
        return None;
    }
    let mut outcome = operation_outcome("warning", "informational", "", &[]);
    outcome["issue"] = serde_json::Value::Array(issues);
    Some(outcome.to_string())
}

/// Builds a search URL from the echoed parameters and a cursor.
pub(crate) fn link(
    base: &str,
    path: &str,
    echoed: &[(String, String)],
    cursor: Option<Cursor>,
) -> String {
    // A system-level search has no path: its links are `[base]?...`.
    let mut url = if path.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{path}")
    };
    let mut separator = '?';
    for (name, value) in echoed {
        let decoded = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        url.push(separator);
        url.push_str(&encode_component(name));
        url.push('=');
        url.push_str(&encode_component(&decoded));
        separator = '&';
    }
    match cursor {
        Some(Cursor::After(after)) => url.push_str(&format!("{separator}{PAGE_AFTER}={after}")),
        Some(Cursor::Offset(offset)) => url.push_str(&format!("{separator}{PAGE_OFFSET}={offset}")),
        None => {}
    }
    url
}

/// Percent-encodes a parameter name or value for a link.
pub(crate) fn encode_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, QUERY_COMPONENT).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_reencodes_values() {
        let echoed = vec![
            ("name".to_string(), "O%27Brien+%26+Co".to_string()),
            ("code:not".to_string(), "a%7Cb,c".to_string()),
            ("given".to_string(), "J%C3%B6rg".to_string()),
        ];
        let url = link("http://h/fhir", "Patient", &echoed, Some(Cursor::After(7)));
        assert_eq!(
            url,
            "http://h/fhir/Patient?name=O'Brien%20%26%20Co&code:not=a%7Cb,c&given=J%C3%B6rg&_page_after=7"
        );
    }

    #[test]
    fn link_keeps_plus_of_time_zone() {
        let echoed = vec![(
            "date".to_string(),
            "gt2020-01-01T00:00:00%2B00:00".to_string(),
        )];
        let url = link(
            "http://h/fhir",
            "Observation",
            &echoed,
            Some(Cursor::Offset(4)),
        );
        assert_eq!(
            url,
            "http://h/fhir/Observation?date=gt2020-01-01T00:00:00%2B00:00&_page_offset=4"
        );
    }

    #[test]
    fn strict_handling_from_prefer() {
        let mut headers = HeaderMap::new();
        assert!(!strict_handling(&headers));
        headers.insert("prefer", "return=minimal, handling=strict".parse().unwrap());
        assert!(strict_handling(&headers));
    }
}
