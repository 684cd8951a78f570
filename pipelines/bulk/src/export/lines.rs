//! Turning stored JSON into export lines.

use serde_json::{Map, Value, json};

/// Returns the resource as one NDJSON line. Stored JSON is compact, but JSON text may
/// legally hold raw line breaks between tokens, so text with `\n` or `\r` is written again
/// compactly; JSON strings never hold them raw. U+2028 and U+2029 are not line breaks in
/// NDJSON, so they stay as they are.
pub fn one_line(json: String) -> String {
    if memchr::memchr2(b'\n', b'\r', json.as_bytes()).is_none() {
        return json;
    }
    match serde_json::from_str::<Value>(&json) {
        Ok(value) => value.to_string(),
        // Unparseable text cannot be repaired; dropping the breaks keeps the file valid
        // NDJSON, and the line still fails to parse on its own, where it is noticed.
        Err(_) => json.replace(['\n', '\r'], " "),
    }
}

/// Keeps only the listed top-level elements (and `resourceType`, `id` and `meta`), and
/// marks the resource SUBSETTED as the `_elements` search parameter does.
pub fn subset_elements(line: &str, elements: &[String]) -> Result<String, serde_json::Error> {
    let resource: Map<String, Value> = serde_json::from_str(line)?;
    let mut kept = Map::new();
    for (name, value) in resource {
        let mandatory = matches!(name.as_str(), "resourceType" | "id" | "meta");
        if mandatory || elements.contains(&name) {
            kept.insert(name, value);
        }
    }
    let meta = kept
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta
            .entry("tag")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED"
            }));
        }
    }
    serde_json::to_string(&Value::Object(kept))
}
