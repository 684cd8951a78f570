//! Connects the authorization server's patient picker and launch checks to the EHR proxy,
//! so they read EHR-backed sites' patients from the upstream EHR.

use hearth_auth::{UpstreamError, UpstreamResources};
use hearth_auth_store::Site;
use hearth_ehr_proxy::EhrProxy;
use serde_json::Value;

/// The EHR proxy as the authorization server's reader of upstream resources.
pub struct ProxyResources(pub EhrProxy);

#[async_trait::async_trait]
impl UpstreamResources for ProxyResources {
    async fn search(
        &self,
        site: &Site,
        resource_type: &str,
        params: &[(String, String)],
        count: usize,
    ) -> Result<Vec<Value>, UpstreamError> {
        Ok(self
            .0
            .search_resources(site, resource_type, params, count)
            .await?)
    }

    async fn read(
        &self,
        site: &Site,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Value>, UpstreamError> {
        Ok(self.0.read_resource(site, resource_type, id).await?)
    }
}
