//! Subsets of a resource for `_summary` and `_elements`.
//!
//! Which top-level elements are summary elements (`isSummary`) and which are mandatory
//! (minimum cardinality 1) comes from the StructureDefinitions of the R4 (4.0.1) package.
//! A subset keeps or drops whole top-level elements, and marks the resource with the
//! `SUBSETTED` tag as the R4 search page requires.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The code system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

#[derive(Debug, Default, Deserialize)]
struct TypeElements {
    /// Top-level elements marked `isSummary`; choice elements end in `[x]`.
    summary: Vec<String>,
    /// Top-level elements with a minimum cardinality of 1.
    mandatory: Vec<String>,
    /// Names of the top-level choice elements, without `[x]`.
    choices: Vec<String>,
}

static ELEMENTS: LazyLock<HashMap<String, TypeElements>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../definitions/r4-summary-elements.json"))
        .expect("the embedded r4-summary-elements.json maps type names to element lists")
});

/// Which part of a resource to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subset {
    /// `_summary=true`: the summary elements.
    Summary,
    /// `_summary=text`: `text`, `id`, `meta` and the mandatory elements.
    Text,
    /// `_summary=data`: everything but `text`.
    Data,
    /// `_elements`: the named top-level elements, with `id`, `meta` and the mandatory
    /// elements.
    Elements(Vec<String>),
}

/// Returns whether JSON member `key` holds the element `element` as the definitions name
/// it: `status` holds `status` and `_status` (its primitive extension), and
/// `valueQuantity` holds `value[x]`.
fn holds(key: &str, element: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    match element.strip_suffix("[x]") {
        Some(base) => key
            .strip_prefix(base)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase()),
        None => key == element,
    }
}

/// Returns whether a member of a resource of `resource_type` stays in `subset`.
fn keeps(resource_type: &str, subset: &Subset, key: &str) -> bool {
    if key == "resourceType" {
        return true;
    }
    let elements = ELEMENTS.get(resource_type);
    let listed = |names: Option<&Vec<String>>| names.into_iter().flatten().any(|e| holds(key, e));
    let base = matches!(key, "id" | "meta");
    match subset {
        Subset::Summary => base || listed(elements.map(|e| &e.summary)),
        Subset::Text => base || key == "text" || listed(elements.map(|e| &e.mandatory)),
        Subset::Data => key != "text",
        Subset::Elements(names) => {
            let named = names.iter().any(|name| {
                let is_choice = elements.is_some_and(|e| e.choices.contains(name));
                holds(key, name) || (is_choice && holds(key, &format!("{name}[x]")))
            });
            base || named || listed(elements.map(|e| &e.mandatory))
        }
    }
}

/// Returns the subset of `resource`, tagged `SUBSETTED`. A value that is not a JSON
/// object is returned unchanged.
pub fn subset(resource: &Value, subset: &Subset) -> Value {
    let Some(object) = resource.as_object() else {
        return resource.clone();
    };
    let resource_type = object
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut kept: Map<String, Value> = object
        .iter()
        .filter(|(key, _)| keeps(resource_type, subset, key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    tag_subsetted(&mut kept);
    Value::Object(kept)
}

/// Adds the `SUBSETTED` tag to `meta.tag`, once.
fn tag_subsetted(resource: &mut Map<String, Value>) {
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let tags = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(tags) = tags.as_array_mut() else {
        return;
    };
    let present = tags
        .iter()
        .any(|tag| tag["system"] == SUBSETTED_SYSTEM && tag["code"] == "SUBSETTED");
    if !present {
        tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation() -> Value {
        json!({
            "resourceType": "Observation",
            "id": "o1",
            "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div>x</div>"},
            "status": "final",
            "_status": {"extension": []},
            "category": [{"text": "vital-signs"}],
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 70},
            "note": [{"text": "n"}],
        })
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn summary_keeps_summary_elements() {
        let out = subset(&observation(), &Subset::Summary);
        assert_eq!(
            keys(&out),
            [
                "_status",
                "code",
                "id",
                "meta",
                "resourceType",
                "status",
                "subject",
                "valueQuantity"
            ]
        );
        assert_eq!(out["meta"]["tag"][0]["code"], "SUBSETTED");
        assert_eq!(out["meta"]["versionId"], "1");
    }

    #[test]
    fn text_keeps_text_and_mandatory() {
        let out = subset(&observation(), &Subset::Text);
        assert_eq!(
            keys(&out),
            [
                "_status",
                "code",
                "id",
                "meta",
                "resourceType",
                "status",
                "text"
            ]
        );
    }

    #[test]
    fn data_drops_text_only() {
        let out = subset(&observation(), &Subset::Data);
        assert!(out.get("text").is_none());
        assert_eq!(out["note"][0]["text"], "n");
    }

    #[test]
    fn elements_keep_named_and_mandatory() {
        let names = vec!["subject".to_string(), "value".to_string()];
        let out = subset(&observation(), &Subset::Elements(names));
        assert_eq!(
            keys(&out),
            [
                "_status",
                "code",
                "id",
                "meta",
                "resourceType",
                "status",
                "subject",
                "valueQuantity"
            ]
        );
    }

    #[test]
    fn tag_is_added_once() {
        let once = subset(&observation(), &Subset::Data);
        let twice = subset(&once, &Subset::Data);
        assert_eq!(twice["meta"]["tag"].as_array().unwrap().len(), 1);
    }
}
