//! Conversion between FHIR STU3 (3.0) and R4 for sites whose upstream speaks STU3.
//!
//! Each converted resource type has a list of [`Rule`]s in [`maps`], written from the
//! structure maps of the R4 specification ("R3 to R4" and "R4 to R3" conversions). Going
//! to R4 the rules apply in list order; going back to STU3 each rule is inverted and the
//! list runs backwards, so a rule may name paths that an earlier rule produced. Code
//! system URLs that moved to `terminology.hl7.org` are mapped everywhere in both
//! directions. Types without rules pass through unchanged apart from those URLs.

mod maps;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

pub use maps::CONVERTED_TYPES;

/// One difference between the STU3 and R4 shape of a resource type.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// A field renamed. `parent` is the path (R4 names) of the objects that hold it,
    /// empty for the resource itself; arrays on the way are walked element by element.
    Rename {
        parent: &'static [&'static str],
        r3: &'static str,
        r4: &'static str,
    },
    /// Code values that differ, as `(stu3, r4)` pairs. Each direction takes the first
    /// pair that matches; an empty target removes the field. Other values pass unchanged.
    Codes {
        field: &'static str,
        pairs: &'static [(&'static str, &'static str)],
    },
    /// A `code` in STU3 that is a CodeableConcept with one coding of `system` in R4.
    CodeToConcept {
        field: &'static str,
        system: &'static str,
    },
    /// One element in STU3, an array in R4 (back to STU3 keeps the first).
    SingleToList { field: &'static str },
    /// STU3 `field: {inner: X, ...}` is R4 `field: X`, per element when `field` is an array.
    Unwrap {
        field: &'static str,
        inner: &'static str,
    },
    /// A string in STU3, an array of Annotations in R4.
    StringToNotes { r3: &'static str, r4: &'static str },
    /// STU3 `flag: true` is R4 `status: not_done_status`; back to STU3 the status becomes
    /// `r3_status`.
    FlagToStatus {
        flag: &'static str,
        not_done_status: &'static str,
        r3_status: &'static str,
    },
    /// STU3 `parent.child` is the R4 top-level `r4`. With `first_only`, the STU3 value is
    /// an array and the R4 value its first element.
    Hoist {
        parent: &'static str,
        child: &'static str,
        r4: &'static str,
        first_only: bool,
    },
    /// STU3 Dosage `doseX` and `rateX` are R4 `doseAndRate[0]`, for the Dosages in `field`.
    DoseAndRate { field: &'static str },
    /// A field only STU3 has; dropped going to R4.
    R3Only {
        parent: &'static [&'static str],
        field: &'static str,
    },
    /// A field only R4 has; dropped going to STU3.
    R4Only { field: &'static str },
}

/// Direction of a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToR4,
    ToStu3,
}

/// Converts a resource (a Bundle's entries too) in place.
pub fn convert(resource: &mut Value, direction: Direction) {
    if resource["resourceType"] == "Bundle" {
        if let Some(entries) = resource.get_mut("entry").and_then(Value::as_array_mut) {
            for entry in entries {
                if let Some(inner) = entry.get_mut("resource") {
                    convert(inner, direction);
                }
            }
        }
        return;
    }
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rules = maps::rules(&resource_type);
    if let Some(object) = resource.as_object_mut() {
        match direction {
            Direction::ToR4 => rules.iter().for_each(|rule| to_r4(object, rule)),
            Direction::ToStu3 => rules.iter().rev().for_each(|rule| to_stu3(object, rule)),
        }
    }
    map_systems(resource, direction);
    if resource_type == "CapabilityStatement" && direction == Direction::ToR4 {
        resource["fhirVersion"] = json!("4.0.1");
    }
}

/// Renames R4 search parameters that STU3 calls differently, in `(name, value)` pairs.
pub fn search_params_to_stu3(resource_type: &str, pairs: &mut [(String, String)]) {
    for (name, _) in pairs.iter_mut() {
        let (base, modifier) = match name.split_once(':') {
            Some((base, modifier)) => (base.to_string(), format!(":{modifier}")),
            None => (name.clone(), String::new()),
        };
        if let Some((_, _, r3)) = maps::SEARCH_PARAMS
            .iter()
            .find(|(t, r4, _)| *t == resource_type && *r4 == base)
        {
            *name = format!("{r3}{modifier}");
        }
    }
}

fn to_r4(object: &mut Map<String, Value>, rule: &Rule) {
    match *rule {
        Rule::Rename { parent, r3, r4 } => each_at(object, parent, &mut |o| rename(o, r3, r4)),
        Rule::Codes { field, pairs } => {
            map_code(object, field, pairs.iter().map(|(a, b)| (*a, *b)))
        }
        Rule::CodeToConcept { field, system } => {
            if let Some(Value::String(code)) = object.get(field) {
                let concept = json!({"coding": [{"system": system, "code": code}]});
                object.insert(field.to_string(), concept);
            }
        }
        Rule::SingleToList { field } => {
            if let Some(value) = object.remove(field) {
                let list = if value.is_array() {
                    value
                } else {
                    json!([value])
                };
                object.insert(field.to_string(), list);
            }
        }
        Rule::Unwrap { field, inner } => {
            if let Some(value) = object.get_mut(field) {
                let take = |v: &mut Value| v.get_mut(inner).map(Value::take);
                match value {
                    Value::Array(items) => {
                        let unwrapped: Vec<Value> = items.iter_mut().filter_map(take).collect();
                        *value = Value::Array(unwrapped);
                    }
                    other => match take(other) {
                        Some(inner_value) => *other = inner_value,
                        None => {
                            object.remove(field);
                        }
                    },
                }
            }
        }
        Rule::StringToNotes { r3, r4 } => {
            if let Some(Value::String(text)) = object.remove(r3) {
                let notes = object.entry(r4).or_insert_with(|| json!([]));
                if let Some(list) = notes.as_array_mut() {
                    list.push(json!({"text": text}));
                }
            }
        }
        Rule::FlagToStatus {
            flag,
            not_done_status,
            ..
        } => {
            if object.remove(flag) == Some(Value::Bool(true)) {
                object.insert("status".to_string(), json!(not_done_status));
            }
        }
        Rule::Hoist {
            parent,
            child,
            r4,
            first_only,
        } => {
            let value = object
                .get_mut(parent)
                .and_then(Value::as_object_mut)
                .and_then(|p| p.remove(child));
            if object
                .get(parent)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                object.remove(parent);
            }
            let value = match (value, first_only) {
                (Some(Value::Array(mut items)), true) if !items.is_empty() => Some(items.remove(0)),
                (Some(Value::Array(_)), true) => None,
                (value, _) => value,
            };
            if let Some(value) = value {
                object.insert(r4.to_string(), value);
            }
        }
        Rule::DoseAndRate { field } => each_at(object, &[field], &mut dose_to_r4),
        Rule::R3Only { parent, field } => each_at(object, parent, &mut |o| {
            o.remove(field);
        }),
        Rule::R4Only { .. } => {}
    }
}

fn to_stu3(object: &mut Map<String, Value>, rule: &Rule) {
    match *rule {
        Rule::Rename { parent, r3, r4 } => each_at(object, parent, &mut |o| rename(o, r4, r3)),
        Rule::Codes { field, pairs } => {
            map_code(object, field, pairs.iter().map(|(a, b)| (*b, *a)))
        }
        Rule::CodeToConcept { field, system } => {
            let code = object.get(field).and_then(|concept| {
                let codings = concept["coding"].as_array()?;
                let preferred = codings.iter().find(|c| c["system"] == system);
                preferred.or(codings.first())?["code"]
                    .as_str()
                    .map(str::to_string)
            });
            match code {
                Some(code) => object.insert(field.to_string(), json!(code)),
                None => object.remove(field),
            };
        }
        Rule::SingleToList { field } => {
            if let Some(Value::Array(mut items)) = object.remove(field)
                && !items.is_empty()
            {
                object.insert(field.to_string(), items.remove(0));
            }
        }
        Rule::Unwrap { field, inner } => {
            if let Some(value) = object.get_mut(field) {
                match value {
                    Value::Array(items) => {
                        for item in items.iter_mut() {
                            *item = json!({ inner: item.take() });
                        }
                    }
                    other => *other = json!({ inner: other.take() }),
                }
            }
        }
        Rule::StringToNotes { r3, r4 } => {
            let text: Vec<String> = object
                .remove(r4)
                .and_then(|notes| notes.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|note| note["text"].as_str().map(str::to_string))
                .collect();
            if !text.is_empty() {
                object.insert(r3.to_string(), json!(text.join("\n\n")));
            }
        }
        Rule::FlagToStatus {
            flag,
            not_done_status,
            r3_status,
        } => {
            if object.get("status").and_then(Value::as_str) == Some(not_done_status) {
                object.insert("status".to_string(), json!(r3_status));
                object.insert(flag.to_string(), json!(true));
            }
        }
        Rule::Hoist {
            parent,
            child,
            r4,
            first_only,
        } => {
            if let Some(value) = object.remove(r4) {
                let value = if first_only { json!([value]) } else { value };
                let holder = object.entry(parent).or_insert_with(|| json!({}));
                if let Some(holder) = holder.as_object_mut() {
                    holder.insert(child.to_string(), value);
                }
            }
        }
        Rule::DoseAndRate { field } => each_at(object, &[field], &mut dose_to_stu3),
        Rule::R3Only { .. } => {}
        Rule::R4Only { field } => {
            object.remove(field);
        }
    }
}

/// Calls `apply` on every object at `path` below `object` (`object` itself when empty).
fn each_at(
    object: &mut Map<String, Value>,
    path: &[&str],
    apply: &mut dyn FnMut(&mut Map<String, Value>),
) {
    let Some((first, rest)) = path.split_first() else {
        apply(object);
        return;
    };
    match object.get_mut(*first) {
        Some(Value::Object(child)) => each_at(child, rest, apply),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::Object(child) = item {
                    each_at(child, rest, apply);
                }
            }
        }
        _ => {}
    }
}

fn rename(object: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = object.remove(from) {
        object.insert(to.to_string(), value);
    }
}

fn map_code<'a>(
    object: &mut Map<String, Value>,
    field: &str,
    mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
) {
    let Some(code) = object.get(field).and_then(Value::as_str) else {
        return;
    };
    if let Some((_, target)) = pairs.find(|(from, _)| *from == code) {
        if target.is_empty() {
            object.remove(field);
        } else {
            object.insert(field.to_string(), json!(target));
        }
    }
}

const DOSE_FIELDS: &[&str] = &[
    "doseRange",
    "doseQuantity",
    "rateRatio",
    "rateRange",
    "rateQuantity",
];

fn dose_to_r4(dosage: &mut Map<String, Value>) {
    let mut dose_and_rate = Map::new();
    for field in DOSE_FIELDS {
        if let Some(value) = dosage.remove(*field) {
            dose_and_rate.insert(field.to_string(), value);
        }
    }
    if !dose_and_rate.is_empty() {
        dosage.insert("doseAndRate".to_string(), json!([dose_and_rate]));
    }
}

fn dose_to_stu3(dosage: &mut Map<String, Value>) {
    let Some(Value::Array(items)) = dosage.remove("doseAndRate") else {
        return;
    };
    if let Some(Value::Object(first)) = items.into_iter().next() {
        for (field, value) in first {
            if DOSE_FIELDS.contains(&field.as_str()) {
                dosage.insert(field, value);
            }
        }
    }
}

/// Maps code system URLs between their STU3 and R4 forms, in every object of the resource
/// that has a `system` string.
fn map_systems(value: &mut Value, direction: Direction) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(system)) = object.get_mut("system")
                && let Some(mapped) = map_system(system, direction)
            {
                *system = mapped;
            }
            for child in object.values_mut() {
                map_systems(child, direction);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| map_systems(item, direction)),
        _ => {}
    }
}

const R4_TERMINOLOGY: &str = "http://terminology.hl7.org/CodeSystem/";

fn map_system(system: &str, direction: Direction) -> Option<String> {
    match direction {
        Direction::ToR4 => {
            if let Some(table) = system.strip_prefix("http://hl7.org/fhir/v2/") {
                return Some(format!("{R4_TERMINOLOGY}v2-{table}"));
            }
            if let Some(name) = system.strip_prefix("http://hl7.org/fhir/v3/") {
                return Some(format!("{R4_TERMINOLOGY}v3-{name}"));
            }
            maps::SYSTEMS
                .iter()
                .find(|(r3, _)| *r3 == system)
                .map(|(_, r4)| format!("{R4_TERMINOLOGY}{r4}"))
        }
        Direction::ToStu3 => {
            let name = system.strip_prefix(R4_TERMINOLOGY)?;
            if let Some(table) = name.strip_prefix("v2-") {
                return Some(format!("http://hl7.org/fhir/v2/{table}"));
            }
            if let Some(code_system) = name.strip_prefix("v3-") {
                return Some(format!("http://hl7.org/fhir/v3/{code_system}"));
            }
            maps::SYSTEMS
                .iter()
                .find(|(_, r4)| *r4 == name)
                .map(|(r3, _)| r3.to_string())
        }
    }
}
