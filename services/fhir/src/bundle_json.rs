//! Writing Bundles around stored resource JSON without parsing it again.

use serde_json::Value;

/// One entry of a response Bundle.
pub struct BundleEntry<'a> {
    pub full_url: String,
    /// The stored resource JSON, written as is.
    pub resource: Option<&'a str>,
    /// `search.mode`, for searchset Bundles.
    pub search_mode: Option<&'static str>,
    /// `request`, for history Bundles.
    pub request: Option<Value>,
    /// `response`, for transaction-response and batch-response Bundles.
    pub response: Option<Value>,
}

/// Writes a Bundle of `bundle_type` with optional `total` and `link`s (relation, url).
pub fn write_bundle(
    bundle_type: &str,
    total: Option<u64>,
    links: &[(&str, &str)],
    entries: &[BundleEntry<'_>],
) -> String {
    let capacity = 256
        + entries
            .iter()
            .map(|e| e.resource.map_or(64, str::len) + 128)
            .sum::<usize>();
    let mut out = String::with_capacity(capacity);
    out.push_str("{\"resourceType\":\"Bundle\",\"type\":");
    push_string(&mut out, bundle_type);
    if let Some(total) = total {
        out.push_str(",\"total\":");
        out.push_str(&total.to_string());
    }
    if !links.is_empty() {
        out.push_str(",\"link\":[");
        for (i, (relation, url)) in links.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"relation\":");
            push_string(&mut out, relation);
            out.push_str(",\"url\":");
            push_string(&mut out, url);
            out.push('}');
        }
        out.push(']');
    }
    if !entries.is_empty() {
        out.push_str(",\"entry\":[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_entry(&mut out, entry);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Writes one entry. An empty `full_url` leaves `fullUrl` out, since FHIR strings are
/// never empty: a failed batch entry has no resource to name.
fn push_entry(out: &mut String, entry: &BundleEntry<'_>) {
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, name: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
    };
    if !entry.full_url.is_empty() {
        key(out, "fullUrl");
        push_string(out, &entry.full_url);
    }
    if let Some(resource) = entry.resource {
        key(out, "resource");
        out.push_str(resource);
    }
    if let Some(mode) = entry.search_mode {
        key(out, "search");
        out.push_str("{\"mode\":");
        push_string(out, mode);
        out.push('}');
    }
    if let Some(request) = &entry.request {
        key(out, "request");
        out.push_str(&request.to_string());
    }
    if let Some(response) = &entry.response {
        key(out, "response");
        out.push_str(&response.to_string());
    }
    out.push('}');
}

fn push_string(out: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_is_valid_json() {
        let entries = [BundleEntry {
            full_url: "http://h/fhir/Patient/1".to_string(),
            resource: Some(r#"{"resourceType":"Patient","id":"1"}"#),
            search_mode: Some("match"),
            request: None,
            response: None,
        }];
        let text = write_bundle(
            "searchset",
            Some(1),
            &[("self", "http://h/fhir/Patient?a=\"b\"")],
            &entries,
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["total"], 1);
        assert_eq!(value["link"][0]["url"], "http://h/fhir/Patient?a=\"b\"");
        assert_eq!(value["entry"][0]["resource"]["id"], "1");
        assert_eq!(value["entry"][0]["search"]["mode"], "match");
    }

    #[test]
    fn empty_bundle_has_no_entry_member() {
        let value: Value =
            serde_json::from_str(&write_bundle("searchset", Some(0), &[], &[])).unwrap();
        assert!(value.get("entry").is_none());
        assert_eq!(value["total"], 0);
    }

    #[test]
    fn entry_without_url_leaves_full_url_out() {
        let entries = [BundleEntry {
            full_url: String::new(),
            resource: None,
            search_mode: None,
            request: None,
            response: Some(serde_json::json!({"status": "404 Not Found"})),
        }];
        let value: Value =
            serde_json::from_str(&write_bundle("batch-response", None, &[], &entries)).unwrap();
        let entry = value["entry"][0].as_object().unwrap();
        assert!(!entry.contains_key("fullUrl"), "{value}");
        assert_eq!(entry["response"]["status"], "404 Not Found");
    }
}
