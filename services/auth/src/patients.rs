//! Lookup of the patients and other context resources of a launch: in Hearth's repository
//! for a repository-backed site, at the upstream EHR for an EHR-backed site. The patient picker, the patient named on the approval page, the
//! patient a user picks and the context of an EHR launch are all read through here.

use std::sync::Arc;

use hearth_auth_store::Site;
use hearth_schemas::Backing;
use serde_json::Value;

use crate::AuthState;

/// An error of an upstream call, with a message fit for the log and the user.
pub type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// Reads of an EHR-backed site's upstream, made as Hearth itself (with the site's upstream
/// credentials) and returned as R4.
#[async_trait::async_trait]
pub trait UpstreamResources: Send + Sync {
    /// Searches the upstream's resources of a type with search parameters (decoded names
    /// and values) and returns at most `count` matches.
    async fn search(
        &self,
        site: &Site,
        resource_type: &str,
        params: &[(String, String)],
        count: usize,
    ) -> Result<Vec<Value>, UpstreamError>;

    /// Searches the upstream's Patients by name, or any Patients when `name` is empty, and
    /// returns at most `count` of them.
    async fn search_patients(
        &self,
        site: &Site,
        name: &str,
        count: usize,
    ) -> Result<Vec<Value>, UpstreamError> {
        self.search(site, "Patient", &name_filter(name), count)
            .await
    }

    /// Reads one resource from the upstream; `None` when it is missing or deleted there.
    async fn read(
        &self,
        site: &Site,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Value>, UpstreamError>;
}

/// How many Patients the picker lists at most.
pub(crate) const PICKER_SIZE: usize = 20;

/// Returns the upstream of a site when it is EHR-backed, and an error when it is
/// EHR-backed but the server has no upstream client (as in tests of the auth crate alone).
fn upstream_of<'a>(
    state: &'a AuthState,
    site: &Site,
) -> Result<Option<&'a Arc<dyn UpstreamResources>>, UpstreamError> {
    if site.backing != Backing::Ehr {
        return Ok(None);
    }
    match &state.upstream {
        Some(upstream) => Ok(Some(upstream)),
        None => Err(format!(
            "site {} is EHR-backed, but this server has no EHR client",
            site.site_id
        )
        .into()),
    }
}

fn load_site(state: &AuthState, site_id: &str) -> Result<Site, UpstreamError> {
    state
        .store
        .site(site_id)?
        .ok_or_else(|| format!("no site {site_id}").into())
}

/// Builds the `name` search parameter of a name typed in a picker, or none when the name
/// is blank.
fn name_filter(name: &str) -> Vec<(String, String)> {
    if name.trim().is_empty() {
        Vec::new()
    } else {
        vec![("name".to_string(), name.trim().to_string())]
    }
}

/// Searches the Patients of a site by name.
pub(crate) async fn search_patients(
    state: &AuthState,
    site_id: &str,
    name: &str,
) -> Result<Vec<Value>, UpstreamError> {
    let site = load_site(state, site_id)?;
    if let Some(upstream) = upstream_of(state, &site)? {
        return upstream.search_patients(&site, name, PICKER_SIZE).await;
    }
    search_at(state, &site, "Patient", &name_filter(name), PICKER_SIZE).await
}

/// Searches the resources of a type at a site as Hearth itself, unfiltered by any token:
/// in the repository of a repository-backed site, at the EHR of an EHR-backed one.
/// `params` are decoded search parameters; at most `count` matches are returned.
pub async fn search_at(
    state: &AuthState,
    site: &Site,
    resource_type: &str,
    params: &[(String, String)],
    count: usize,
) -> Result<Vec<Value>, UpstreamError> {
    if let Some(upstream) = upstream_of(state, site)? {
        return upstream.search(site, resource_type, params, count).await;
    }
    let filters: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| {
            let encoded =
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            (name.clone(), encoded)
        })
        .collect();
    let page = state.repository.search(
        resource_type,
        &filters,
        &hearth_cdr::Visibility::everything(),
        count,
        None,
    )?;
    Ok(page
        .resources
        .iter()
        .filter_map(|stored| stored.json.as_deref())
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .collect())
}

/// Reads a resource at a site as Hearth itself; `None` when it does not exist or was
/// deleted.
pub async fn read_at(
    state: &AuthState,
    site: &Site,
    resource_type: &str,
    id: &str,
) -> Result<Option<Value>, UpstreamError> {
    if let Some(upstream) = upstream_of(state, site)? {
        return upstream.read(site, resource_type, id).await;
    }
    match state.repository.read(resource_type, id)? {
        Some(stored) if !stored.is_deleted() => Ok(stored
            .json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())),
        _ => Ok(None),
    }
}

/// Reads a resource of a site; `None` when it does not exist or was deleted.
pub(crate) async fn read(
    state: &AuthState,
    site_id: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<Value>, UpstreamError> {
    let site = load_site(state, site_id)?;
    read_at(state, &site, resource_type, id).await
}
