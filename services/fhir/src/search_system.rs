//! System-level search: `GET [base]?_type=A,B&...`, and `GET` or `POST [base]/_search`.
//!
//! [`hearth_cdr::search::parse_system`] parses the parameters for each searched type.
//! Types named in `_type` need search access, as a type-level search does (403 without
//! it). Without `_type` the search covers every stored type the caller may search. Every
//! match and included resource passes the caller's visibility of its type.

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::HeaderMap;
use hearth_cdr::search::{self, SearchAccess};
use hearth_smart::scope::Interaction;

use crate::access::Principal;
use crate::error::FhirResult;
use crate::media::FhirJson;
use crate::scopes::visibility;
use crate::search::{
    SearchRun, access_of, form_pairs, parse_options, pretty, search_error, split_query,
};
use crate::{FhirState, SiteContext};

/// `GET [base]?...` and `GET [base]/_search?...`.
pub async fn search_system(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult<FhirJson> {
    let pairs = split_query(query.as_deref().unwrap_or(""));
    system_search(&state, &site, &principal, pairs, &headers)
}

/// `POST [base]/_search` with a form body.
pub async fn search_system_post(
    State(state): State<FhirState>,
    Extension(site): Extension<SiteContext>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult<FhirJson> {
    let pairs = form_pairs(query.as_deref(), &headers, &body)?;
    system_search(&state, &site, &principal, pairs, &headers)
}

fn system_search(
    state: &FhirState,
    site: &SiteContext,
    principal: &Principal,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> FhirResult<FhirJson> {
    let base = site.fhir_base_url.as_str();
    let options = parse_options(base, headers);
    let query = search::parse_system(&pairs, &options).map_err(search_error)?;
    for resource_type in &query.named_types {
        visibility(principal, resource_type, Interaction::Search)?;
    }

    let search_visibility = access_of(principal, Interaction::Search);
    let read_visibility = access_of(principal, Interaction::Read);
    let access = SearchAccess {
        search: &search_visibility,
        read: &read_visibility,
        compartment: None,
    };
    let repository = &state.repository;
    let run = SearchRun {
        base,
        path: String::new(),
        query: &query.common,
        pretty: pretty(&pairs),
    };
    run.respond(
        &state.settings,
        || Ok(repository.system_search_count(&query, &access)?),
        |count| Ok(repository.system_search_page(&query, &access, count)?),
    )
}
