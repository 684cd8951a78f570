//! Updates, patches and deletes of callers whose scopes cover only part of a type, such
//! as one patient's compartment. The request names the target but not what it contains,
//! so the proxy reads the target at the upstream, checks it (and a patch's result), and
//! pins the write to the version it checked.

use axum::http::StatusCode;
use bytes::Bytes;
use hearth_auth_store::Site;
use hearth_fhir::{FhirError, Principal};
use serde_json::Value;

use crate::filter;
use crate::proxy::EhrProxy;
use crate::route::{Kind, Route};

impl EhrProxy {
    /// Checks the target of an update, patch or delete for a caller who may not write
    /// every resource of its type. Returns 403 when the stored resource is outside what
    /// the caller may write, or when the patch would move it out. Otherwise returns the
    /// version the check read, which the write must still find (`If-Match`), or `None`
    /// when there is nothing to pin: an unrestricted caller, or a target the upstream
    /// does not have.
    pub(crate) async fn check_write_target(
        &self,
        site: &Site,
        principal: &Principal,
        route: &Route,
        body: Option<&Bytes>,
    ) -> Result<Option<String>, FhirError> {
        let (Some(resource_type), Some(id), Some(interaction)) =
            (&route.resource_type, &route.id, route.interaction())
        else {
            return Ok(None);
        };
        if !matches!(route.kind, Kind::Update | Kind::Patch | Kind::Delete) {
            return Ok(None);
        }
        let visibility = hearth_fhir::visibility(principal, resource_type, interaction)?;
        if visibility.is_everything() {
            return Ok(None);
        }
        let Some(stored) = self
            .read_resource(site, resource_type, id)
            .await
            .map_err(|error| error.to_fhir())?
        else {
            // A create by update is checked by its body; a delete of nothing changes nothing.
            return Ok(None);
        };
        if !filter::visible(principal, &stored, interaction) {
            return Err(forbidden(format!(
                "{resource_type}/{id} is outside what the access token may change"
            )));
        }
        if route.kind == Kind::Patch
            && let Some(patched) = patched(&stored, body)
            && !filter::writable(principal, &patched, interaction)
        {
            return Err(forbidden(format!(
                "the patch moves {resource_type}/{id} out of what the access token may change"
            )));
        }
        Ok(stored
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}

/// Applies a JSON Patch body to `stored`. Returns `None` when the body is not a patch that
/// applies, which the upstream then rejects with its own message.
fn patched(stored: &Value, body: Option<&Bytes>) -> Option<Value> {
    let patch: json_patch::Patch = serde_json::from_slice(body?).ok()?;
    let mut resource = stored.clone();
    json_patch::patch(&mut resource, &patch).ok()?;
    Some(resource)
}

fn forbidden(message: String) -> FhirError {
    FhirError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_applies_to_stored_copy() {
        let stored = json!({"resourceType": "Observation", "subject": {"reference": "Patient/a"}});
        let body = Bytes::from(
            json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/b"}])
                .to_string(),
        );
        let result = patched(&stored, Some(&body)).expect("the patch applies");
        assert_eq!(result["subject"]["reference"], "Patient/b");
        assert_eq!(stored["subject"]["reference"], "Patient/a");
    }

    #[test]
    fn malformed_patch_is_left_to_upstream() {
        let stored = json!({"resourceType": "Observation"});
        assert_eq!(patched(&stored, Some(&Bytes::from_static(b"{}"))), None);
        let missing = Bytes::from(json!([{"op": "remove", "path": "/nope"}]).to_string());
        assert_eq!(patched(&stored, Some(&missing)), None);
        assert_eq!(patched(&stored, None), None);
    }
}
