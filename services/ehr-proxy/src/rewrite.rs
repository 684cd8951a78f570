//! Rewriting upstream URLs to the Hearth site's FHIR base, so apps never see (or call)
//! the EHR directly: Bundle links (paging), `fullUrl`, entry response locations, and the
//! `Location` and `Content-Location` headers.

use serde_json::Value;

/// Maps URLs under the upstream FHIR base onto the site's base.
#[derive(Debug, Clone)]
pub struct Rewriter {
    upstream_base: String,
    site_base: String,
}

impl Rewriter {
    /// Both bases are absolute; trailing slashes are ignored.
    pub fn new(upstream_base: &str, site_base: &str) -> Self {
        Rewriter {
            upstream_base: upstream_base.trim_end_matches('/').to_string(),
            site_base: site_base.trim_end_matches('/').to_string(),
        }
    }

    /// Rewrites one URL. URLs outside the upstream base stay as they are.
    pub fn url(&self, url: &str) -> String {
        match url.strip_prefix(&self.upstream_base) {
            Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => {
                format!("{}{rest}", self.site_base)
            }
            _ => url.to_string(),
        }
    }

    /// Rewrites the URLs of a resource in place: a Bundle's links, `fullUrl`s and entry
    /// locations (nested Bundles too), and every URL in a CapabilityStatement.
    pub fn resource(&self, resource: &mut Value) {
        match resource["resourceType"].as_str() {
            Some("Bundle") => self.bundle(resource),
            // Operation definitions and the implementation URL can name the EHR's base
            // anywhere in the statement.
            Some("CapabilityStatement") => self.every_string(resource),
            _ => {}
        }
    }

    fn bundle(&self, bundle: &mut Value) {
        if let Some(links) = bundle.get_mut("link").and_then(Value::as_array_mut) {
            for link in links {
                if let Some(url) = link.get_mut("url") {
                    self.string(url);
                }
            }
        }
        let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
            return;
        };
        for entry in entries {
            if let Some(url) = entry.get_mut("fullUrl") {
                self.string(url);
            }
            if let Some(location) = entry.pointer_mut("/response/location") {
                self.string(location);
            }
            if let Some(resource) = entry.get_mut("resource") {
                self.resource(resource);
            }
        }
    }

    fn every_string(&self, value: &mut Value) {
        match value {
            Value::String(_) => self.string(value),
            Value::Array(items) => items.iter_mut().for_each(|item| self.every_string(item)),
            Value::Object(members) => members
                .values_mut()
                .for_each(|member| self.every_string(member)),
            _ => {}
        }
    }

    fn string(&self, value: &mut Value) {
        if let Some(text) = value.as_str() {
            *value = Value::String(self.url(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rewriter() -> Rewriter {
        Rewriter::new(
            "http://ehr.example:9000/fhir/",
            "https://hearth.example/sites/north/fhir",
        )
    }

    #[test]
    fn urls_under_upstream_base_move() {
        let r = rewriter();
        assert_eq!(
            r.url("http://ehr.example:9000/fhir/Patient/1"),
            "https://hearth.example/sites/north/fhir/Patient/1"
        );
        assert_eq!(
            r.url("http://ehr.example:9000/fhir?_getpages=abc"),
            "https://hearth.example/sites/north/fhir?_getpages=abc"
        );
        assert_eq!(
            r.url("http://ehr.example:9000/fhirx/Patient"),
            "http://ehr.example:9000/fhirx/Patient",
            "a longer path segment is another base"
        );
        assert_eq!(r.url("urn:uuid:1"), "urn:uuid:1");
    }

    #[test]
    fn bundle_links_and_full_urls_move() {
        let mut bundle = json!({
            "resourceType": "Bundle",
            "link": [{"relation": "next", "url": "http://ehr.example:9000/fhir/Patient?_page=2"}],
            "entry": [{
                "fullUrl": "http://ehr.example:9000/fhir/Patient/1",
                "resource": {"resourceType": "Patient", "id": "1"},
                "response": {"status": "201", "location": "http://ehr.example:9000/fhir/Patient/1/_history/1"},
            }],
        });
        rewriter().resource(&mut bundle);
        assert_eq!(
            bundle["link"][0]["url"],
            "https://hearth.example/sites/north/fhir/Patient?_page=2"
        );
        assert_eq!(
            bundle["entry"][0]["fullUrl"],
            "https://hearth.example/sites/north/fhir/Patient/1"
        );
        assert_eq!(
            bundle["entry"][0]["response"]["location"],
            "https://hearth.example/sites/north/fhir/Patient/1/_history/1"
        );
    }
}
