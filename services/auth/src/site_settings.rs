//! Checking a site's settings, and reading and changing one site through
//! `GET`, `PUT` and `PATCH /admin/sites/{site_id}`.
//!
//! A change is a `SiteUpdated` event on `hearth.auth` that carries every setting, and the
//! auth store replaces the site with it. `PUT` takes the settings as a whole, so fields
//! left out get the defaults of `POST /admin/sites`. `PATCH` takes a JSON merge patch
//! (RFC 7396) of the settings as `GET` shows them. A site's backing cannot change. Secrets
//! are not site settings: the bearer token of an upstream comes only from the server
//! configuration, so it never enters the log or a response.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hearth_auth_store::Site;
use hearth_schemas::{Backing, SiteUpdated, UpstreamAuthMethod};
use serde_json::Value;

use crate::AuthState;
use crate::admin::{AdminResult, SiteRequest, find_site, require_admin, site_json};
use crate::events::{new_id, now_micros, record};
use crate::limits::{MAX_URI_CHARS, check_length, check_name};
use crate::oauth_error::{OAuthError, OAuthResult};
use crate::site::fhir_base_path;

/// Maximum freshness window of the EHR cache: one year, in seconds.
pub const MAX_FRESHNESS_SECONDS: i64 = 365 * 24 * 3600;

/// Body fields that look like an upstream secret. They are rejected with a pointer to the
/// server configuration, because a secret in a request body would be written to the log.
const SECRET_FIELDS: &[&str] = &[
    "bearer_token",
    "upstream_bearer_token",
    "upstream_token",
    "upstream_client_secret",
    "client_secret",
];

/// Checks the settings of a site with the given backing and returns the site they
/// describe. Settings of an upstream EHR are rejected at a repository-backed site.
pub(crate) fn checked_site(
    site_id: &str,
    request: &SiteRequest,
    backing: Backing,
) -> OAuthResult<Site> {
    let name = request.name.trim();
    if name.is_empty() {
        return Err(OAuthError::invalid_request("name is empty"));
    }
    check_name("name", name)?;
    let mut site = Site {
        site_id: site_id.to_string(),
        name: name.to_string(),
        fhir_base_path: fhir_base_path(site_id),
        backing,
        upstream_base_url: None,
        upstream_auth_method: UpstreamAuthMethod::None,
        upstream_client_id: None,
        upstream_token_url: None,
        upstream_scope: None,
        upstream_fhir_version: None,
        dynamic_registration: request.dynamic_registration,
        cache_freshness_s: BTreeMap::new(),
        default_cache_freshness_s: 0,
    };
    match backing {
        Backing::Repository => {
            check_no_upstream(request)?;
            Ok(site)
        }
        Backing::Ehr => {
            let Some(base_url) = &request.upstream_base_url else {
                return Err(OAuthError::invalid_request(
                    "an EHR-backed site needs upstream_base_url",
                ));
            };
            check_upstream_url("upstream_base_url", base_url)?;
            site.upstream_base_url = Some(base_url.trim_end_matches('/').to_string());
            site.upstream_auth_method = auth_method(request)?;
            site.upstream_client_id = non_empty("upstream_client_id", &request.upstream_client_id)?;
            if let Some(url) = non_empty("upstream_token_url", &request.upstream_token_url)? {
                check_upstream_url("upstream_token_url", &url)?;
                site.upstream_token_url = Some(url);
            }
            site.upstream_scope = non_empty("upstream_scope", &request.upstream_scope)?;
            if let Some(version) =
                non_empty("upstream_fhir_version", &request.upstream_fhir_version)?
            {
                check_fhir_version(&version)?;
                site.upstream_fhir_version = Some(version);
            }
            check_freshness(request)?;
            site.cache_freshness_s = request.cache_freshness_s.clone();
            site.default_cache_freshness_s = request.default_cache_freshness_s;
            Ok(site)
        }
    }
}

/// The values of `backing`, as the admin API and the console take them.
pub const BACKINGS: &[&str] = &["repository", "ehr"];

/// Parses `backing`: `repository` or `ehr`.
pub fn parse_backing(backing: &str) -> OAuthResult<Backing> {
    match backing {
        "repository" => Ok(Backing::Repository),
        "ehr" => Ok(Backing::Ehr),
        other => Err(OAuthError::invalid_request(format!(
            "backing {other:?} is not valid; the allowed values are {}",
            BACKINGS.join(", ")
        ))),
    }
}

fn backing_name(backing: Backing) -> &'static str {
    match backing {
        Backing::Repository => "repository",
        Backing::Ehr => "ehr",
    }
}

fn auth_method(request: &SiteRequest) -> OAuthResult<UpstreamAuthMethod> {
    match request.upstream_auth_method.as_deref() {
        None | Some("none") => Ok(UpstreamAuthMethod::None),
        Some("bearer") => Ok(UpstreamAuthMethod::Bearer),
        Some("backend-services") => {
            let has_client = request
                .upstream_client_id
                .as_deref()
                .is_some_and(|id| !id.trim().is_empty());
            if !has_client {
                return Err(OAuthError::invalid_request(
                    "upstream_auth_method backend-services needs upstream_client_id",
                ));
            }
            Ok(UpstreamAuthMethod::BackendServices)
        }
        Some(other) => Err(OAuthError::invalid_request(format!(
            "upstream_auth_method {other} is not none, bearer or backend-services"
        ))),
    }
}

fn auth_method_name(method: UpstreamAuthMethod) -> &'static str {
    match method {
        UpstreamAuthMethod::None => "none",
        UpstreamAuthMethod::Bearer => "bearer",
        UpstreamAuthMethod::BackendServices => "backend-services",
    }
}

/// Rejects upstream settings at a repository-backed site, where they would have no effect.
fn check_no_upstream(request: &SiteRequest) -> OAuthResult<()> {
    let fields = [
        ("upstream_base_url", request.upstream_base_url.is_some()),
        (
            "upstream_auth_method",
            request
                .upstream_auth_method
                .as_deref()
                .is_some_and(|m| m != "none"),
        ),
        ("upstream_client_id", request.upstream_client_id.is_some()),
        ("upstream_token_url", request.upstream_token_url.is_some()),
        ("upstream_scope", request.upstream_scope.is_some()),
        (
            "upstream_fhir_version",
            request.upstream_fhir_version.is_some(),
        ),
        ("cache_freshness_s", !request.cache_freshness_s.is_empty()),
        (
            "default_cache_freshness_s",
            request.default_cache_freshness_s != 0,
        ),
    ];
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(OAuthError::invalid_request(format!(
            "{field} applies only to sites with backing ehr"
        ))),
        None => Ok(()),
    }
}

/// Returns a trimmed optional text setting, rejecting an empty or multi-line value.
fn non_empty(field: &str, value: &Option<String>) -> OAuthResult<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(OAuthError::invalid_request(format!(
            "{field} is empty; leave it out or set it to null instead"
        )));
    }
    if value.len() > 2048 || value.chars().any(char::is_control) {
        return Err(OAuthError::invalid_request(format!(
            "{field} must be at most 2048 characters without control characters"
        )));
    }
    Ok(Some(value.to_string()))
}

/// An upstream URL must be absolute http or https, with a host and no query or fragment.
/// User names and passwords in the URL are rejected because the URL is written to the log.
fn check_upstream_url(field: &str, url: &str) -> OAuthResult<()> {
    check_length(field, url, MAX_URI_CHARS)?;
    let parsed = url::Url::parse(url).map_err(|e| {
        OAuthError::invalid_request(format!("{field} {url} is not an absolute URL: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(OAuthError::invalid_request(format!(
            "{field} must be an http:// or https:// URL with a host"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(OAuthError::invalid_request(format!(
            "{field} must not contain a user name or password; use upstream_auth_method instead"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(OAuthError::invalid_request(format!(
            "{field} {url} must not have a query or fragment"
        )));
    }
    Ok(())
}

/// Accepts the STU3 (`3.x`) and R4 (`4.x`) versions that the proxy can serve.
fn check_fhir_version(version: &str) -> OAuthResult<()> {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or_default();
    let rest_numeric = parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if matches!(major, "3" | "4") && version.contains('.') && rest_numeric {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(format!(
            "upstream_fhir_version {version} is not supported; use an STU3 version such as 3.0.2 (converted to R4) or an R4 version such as 4.0.1"
        )))
    }
}

fn check_freshness(request: &SiteRequest) -> OAuthResult<()> {
    let in_range = |seconds: i64| (0..=MAX_FRESHNESS_SECONDS).contains(&seconds);
    if !in_range(request.default_cache_freshness_s) {
        return Err(OAuthError::invalid_request(format!(
            "default_cache_freshness_s must be from 0 to {MAX_FRESHNESS_SECONDS} seconds"
        )));
    }
    for (resource_type, seconds) in &request.cache_freshness_s {
        if !hearth_fhir_core::resource_types::is_resource_type(resource_type) {
            return Err(OAuthError::invalid_request(format!(
                "cache_freshness_s names {resource_type}, which is not an R4 resource type"
            )));
        }
        if !in_range(*seconds) {
            return Err(OAuthError::invalid_request(format!(
                "cache_freshness_s of {resource_type} must be from 0 to {MAX_FRESHNESS_SECONDS} seconds"
            )));
        }
    }
    Ok(())
}

/// Rejects a body that tries to set an upstream secret, naming where secrets go instead.
pub(crate) fn reject_secrets(body: &Value) -> OAuthResult<()> {
    let Some(object) = body.as_object() else {
        return Ok(());
    };
    match SECRET_FIELDS
        .iter()
        .find(|field| object.contains_key(**field))
    {
        Some(field) => Err(OAuthError::invalid_request(format!(
            "{field} cannot be set through the admin API; put the upstream bearer token in [ehr.sites.<site>] bearer_token of hearth.toml or in HEARTH_EHR_BEARER_TOKEN_<SITE>"
        ))),
        None => Ok(()),
    }
}

/// Returns a site's settings in the form `POST /admin/sites` takes them, the starting
/// point of a partial change.
pub fn site_request(site: &Site) -> SiteRequest {
    let ehr = site.backing == Backing::Ehr;
    SiteRequest {
        site_id: site.site_id.clone(),
        name: site.name.clone(),
        backing: Some(backing_name(site.backing).to_string()),
        upstream_base_url: site.upstream_base_url.clone().filter(|_| ehr),
        dynamic_registration: site.dynamic_registration,
        upstream_auth_method: ehr.then(|| auth_method_name(site.upstream_auth_method).to_string()),
        upstream_client_id: site.upstream_client_id.clone(),
        upstream_token_url: site.upstream_token_url.clone(),
        upstream_scope: site.upstream_scope.clone(),
        upstream_fhir_version: site.upstream_fhir_version.clone(),
        cache_freshness_s: site.cache_freshness_s.clone(),
        default_cache_freshness_s: site.default_cache_freshness_s,
    }
}

/// Replaces a site's settings with `request` and returns the site as stored. The body's
/// `site_id` and `backing` may be left out, and must match the site when given. Settings
/// equal to the current ones append no event.
pub async fn update_site_as(
    state: &AuthState,
    site_id: &str,
    request: &SiteRequest,
    actor: &str,
) -> OAuthResult<Site> {
    let current = find_site(state, site_id)?;
    if !request.site_id.is_empty() && request.site_id != site_id {
        return Err(OAuthError::invalid_request(format!(
            "site_id {} in the body differs from site {site_id} in the path; a site cannot be renamed",
            request.site_id
        )));
    }
    let backing = match request.backing.as_deref() {
        None => current.backing,
        Some(text) => parse_backing(text)?,
    };
    if backing != current.backing {
        return Err(OAuthError::invalid_request(format!(
            "backing cannot change from {} to {}; create a new site instead",
            backing_name(current.backing),
            backing_name(backing)
        )));
    }
    let site = checked_site(site_id, request, backing)?;
    if site == current {
        return Ok(current);
    }
    let event = SiteUpdated {
        event_id: new_id(),
        occurred_at: now_micros(),
        site_id: site.site_id.clone(),
        name: site.name.clone(),
        fhir_base_path: current.fhir_base_path.clone(),
        backing: site.backing,
        upstream_base_url: site.upstream_base_url.clone(),
        upstream_auth_method: site.upstream_auth_method,
        upstream_client_id: site.upstream_client_id.clone(),
        upstream_token_url: site.upstream_token_url.clone(),
        upstream_scope: site.upstream_scope.clone(),
        upstream_fhir_version: site.upstream_fhir_version.clone(),
        dynamic_registration: site.dynamic_registration,
        cache_freshness_s: site.cache_freshness_s.clone(),
        default_cache_freshness_s: site.default_cache_freshness_s,
        actor: actor.to_string(),
    };
    record(state, site_id, event).await?;
    tracing::info!(site = %site_id, %actor, "site settings changed");
    find_site(state, site_id)
}

/// Applies a JSON merge patch (RFC 7396) to `target`: members of the patch replace those
/// of the target, `null` removes one, and nested objects merge the same way.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(object) = target {
        for (key, value) in patch {
            if value.is_null() {
                object.remove(key);
            } else {
                merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn parse_object(body: &[u8]) -> OAuthResult<Value> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_request(format!("the request body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(OAuthError::invalid_request(
            "the request body must be a JSON object",
        ));
    }
    reject_secrets(&value)?;
    Ok(value)
}

fn to_request(value: Value) -> OAuthResult<SiteRequest> {
    serde_json::from_value(value)
        .map_err(|e| OAuthError::invalid_request(format!("the request body is not valid: {e}")))
}

pub(crate) async fn get_site(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(site_id): Path<String>,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let site = find_site(&state, &site_id)?;
    Ok(Json(site_json(&site)).into_response())
}

pub(crate) async fn replace_site(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(site_id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let request = to_request(parse_object(&body)?)?;
    let site = update_site_as(&state, &site_id, &request, "admin").await?;
    Ok((StatusCode::OK, Json(site_json(&site))).into_response())
}

pub(crate) async fn patch_site(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(site_id): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult {
    require_admin(&state, &headers)?;
    let patch = parse_object(&body)?;
    let current = find_site(&state, &site_id)?;
    let mut merged = serde_json::to_value(site_request(&current))
        .map_err(|e| OAuthError::server_error(format!("serializing site settings: {e}")))?;
    merge_patch(&mut merged, &patch);
    let request = to_request(merged)?;
    let site = update_site_as(&state, &site_id, &request, "admin").await?;
    Ok((StatusCode::OK, Json(site_json(&site))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ehr_request() -> SiteRequest {
        serde_json::from_value(json!({
            "site_id": "north",
            "name": "North",
            "backing": "ehr",
            "upstream_base_url": "https://ehr.example/fhir/",
            "upstream_auth_method": "backend-services",
            "upstream_client_id": "hearth",
            "upstream_fhir_version": "3.0.2",
            "default_cache_freshness_s": 60,
            "cache_freshness_s": {"Patient": 300},
        }))
        .expect("a valid request")
    }

    fn rejection(request: &SiteRequest, backing: Backing) -> String {
        match checked_site("north", request, backing) {
            Ok(site) => panic!("accepted {site:?}"),
            Err(error) => error.description,
        }
    }

    #[test]
    fn ehr_settings_are_checked_and_trimmed() {
        let site = checked_site("north", &ehr_request(), Backing::Ehr).expect("valid settings");
        assert_eq!(
            site.upstream_base_url.as_deref(),
            Some("https://ehr.example/fhir")
        );
        assert_eq!(
            site.upstream_auth_method,
            UpstreamAuthMethod::BackendServices
        );
        assert_eq!(site.cache_freshness_s.get("Patient"), Some(&300));
        assert_eq!(site.fhir_base_path, "/sites/north/fhir");
    }

    #[test]
    fn invalid_settings_name_the_field() {
        type Change = fn(&mut SiteRequest);
        let cases: Vec<(Change, &str)> = vec![
            (
                |r| r.upstream_base_url = Some("ftp://ehr.example".into()),
                "upstream_base_url",
            ),
            (
                |r| r.upstream_base_url = Some("not a url".into()),
                "upstream_base_url",
            ),
            (
                |r| r.upstream_base_url = Some("https://user:pw@ehr.example/fhir".into()),
                "user name or password",
            ),
            (|r| r.upstream_base_url = None, "needs upstream_base_url"),
            (|r| r.upstream_auth_method = Some("basic".into()), "basic"),
            (|r| r.upstream_client_id = None, "needs upstream_client_id"),
            (
                |r| r.upstream_client_id = Some("  ".into()),
                "needs upstream_client_id",
            ),
            (
                |r| r.upstream_token_url = Some("token".into()),
                "upstream_token_url",
            ),
            (
                |r| r.upstream_scope = Some(String::new()),
                "upstream_scope is empty",
            ),
            (|r| r.upstream_fhir_version = Some("5.0.0".into()), "5.0.0"),
            (|r| r.upstream_fhir_version = Some("stu3".into()), "stu3"),
            (
                |r| r.default_cache_freshness_s = -1,
                "default_cache_freshness_s",
            ),
            (
                |r| r.default_cache_freshness_s = MAX_FRESHNESS_SECONDS + 1,
                "default_cache_freshness_s",
            ),
            (
                |r| {
                    r.cache_freshness_s.insert("Patient".into(), -5);
                },
                "Patient",
            ),
            (
                |r| {
                    r.cache_freshness_s.insert("Patients".into(), 5);
                },
                "Patients",
            ),
            (|r| r.name = " ".into(), "name is empty"),
        ];
        for (change, expected) in cases {
            let mut request = ehr_request();
            change(&mut request);
            let message = rejection(&request, Backing::Ehr);
            assert!(
                message.contains(expected),
                "expected {expected:?} in {message:?}"
            );
        }
    }

    #[test]
    fn repository_site_rejects_upstream_settings() {
        let request = ehr_request();
        let message = rejection(&request, Backing::Repository);
        assert!(message.contains("backing ehr"), "{message}");
        let plain: SiteRequest =
            serde_json::from_value(json!({"name": "Main", "dynamic_registration": true}))
                .expect("a valid request");
        let site = checked_site("main", &plain, Backing::Repository).expect("valid settings");
        assert!(site.dynamic_registration);
    }

    #[test]
    fn merge_patch_replaces_removes_and_merges() {
        let mut target = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": "keep"});
        merge_patch(
            &mut target,
            &json!({"a": 2, "b": {"x": null, "z": 3}, "d": null}),
        );
        assert_eq!(target, json!({"a": 2, "b": {"y": 2, "z": 3}, "c": "keep"}));
    }

    #[test]
    fn secret_fields_are_rejected() {
        let error = reject_secrets(&json!({"bearer_token": "s3cr3t"})).unwrap_err();
        assert!(error.description.contains("HEARTH_EHR_BEARER_TOKEN_"));
        assert!(!error.description.contains("s3cr3t"));
        assert!(reject_secrets(&json!({"name": "x"})).is_ok());
    }

    #[test]
    fn site_request_round_trips_settings() {
        let site = checked_site("north", &ehr_request(), Backing::Ehr).expect("valid settings");
        let again = checked_site("north", &site_request(&site), Backing::Ehr).expect("valid");
        assert_eq!(site, again);
    }
}
