//! Reads Hearth makes at a site's upstream for itself, outside any app's request: the
//! patient picker of a standalone launch and the context resources of an EHR launch.
//! They use the site's upstream credentials, concurrency limit and STU3 conversion, and
//! bypass the cache so the picker shows the EHR's current data.

use bytes::Bytes;
use hearth_auth_store::Site;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::ProxyError;
use crate::proxy::{EhrProxy, is_stu3};
use crate::stu3::{self, Direction};
use crate::upstream::{UpstreamRequest, UpstreamResponse};

impl EhrProxy {
    /// Searches the upstream's resources of a type with decoded search parameters and
    /// returns at most `count` matches as R4. Included resources are left out, and so are
    /// matches on later pages.
    pub async fn search_resources(
        &self,
        site: &Site,
        resource_type: &str,
        params: &[(String, String)],
        count: usize,
    ) -> Result<Vec<Value>, ProxyError> {
        if !hearth_fhir_core::resource_types::is_resource_type(resource_type) {
            return Ok(Vec::new());
        }
        let query = {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in params {
                query.append_pair(name, value);
            }
            query.append_pair("_count", &count.to_string());
            query.finish()
        };
        let url = format!("{}/{resource_type}?{query}", base(site)?);
        let response = self.fetch(site, url).await?;
        if !response.status.is_success() {
            return Err(ProxyError::BadStatus(response.status.as_u16()));
        }
        let mut bundle = parse(site, &response.body)?;
        let patients = bundle
            .get_mut("entry")
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| entry["search"]["mode"] != "include")
            .map(|mut entry| entry["resource"].take())
            .filter(|resource| resource["resourceType"] == resource_type)
            .take(count)
            .collect();
        Ok(patients)
    }

    /// Reads one resource from the upstream as R4. Returns `None` when the upstream responds
    /// with 404 or 410 (deleted).
    pub async fn read_resource(
        &self,
        site: &Site,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Value>, ProxyError> {
        let valid = hearth_fhir_core::resource_types::is_resource_type(resource_type)
            && hearth_fhir_core::id::is_valid_id(id);
        if !valid {
            return Ok(None);
        }
        let url = format!("{}/{resource_type}/{id}", base(site)?);
        let response = self.fetch(site, url).await?;
        match response.status {
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            status if status.is_success() => {
                let resource = parse(site, &response.body)?;
                Ok((resource["resourceType"] == resource_type).then_some(resource))
            }
            status => Err(ProxyError::BadStatus(status.as_u16())),
        }
    }

    async fn fetch(&self, site: &Site, url: String) -> Result<UpstreamResponse, ProxyError> {
        let request = UpstreamRequest {
            method: Method::GET,
            url,
            headers: reqwest::header::HeaderMap::new(),
            body: None,
        };
        let response = self.upstreams().send(site, request).await?;
        if response.status.is_server_error() {
            return Err(ProxyError::BadStatus(response.status.as_u16()));
        }
        Ok(response)
    }
}

fn base(site: &Site) -> Result<&str, ProxyError> {
    site.upstream_base_url
        .as_deref()
        .map(|url| url.trim_end_matches('/'))
        .ok_or_else(|| ProxyError::Config(site.site_id.clone(), "no upstream_base_url".to_string()))
}

fn parse(site: &Site, body: &Bytes) -> Result<Value, ProxyError> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| ProxyError::InvalidBody(e.to_string()))?;
    if is_stu3(site) {
        stu3::convert(&mut value, Direction::ToR4);
    }
    Ok(value)
}
