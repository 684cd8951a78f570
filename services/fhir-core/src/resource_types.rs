//! The concrete resource types of FHIR R4.

use std::sync::LazyLock;

/// Sorted names of the 146 concrete R4 resource types, from the core StructureDefinitions
/// of the R4 (4.0.1) package.
static RESOURCE_TYPES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names: Vec<String> =
        serde_json::from_str(include_str!("../definitions/r4-resource-types.json"))
            .expect("the embedded r4-resource-types.json is a JSON array of strings");
    names.sort();
    names
});

/// Returns whether `name` is a concrete R4 resource type (`Patient`, not `Resource` or
/// `DomainResource`). The comparison is case-sensitive, as in FHIR.
pub fn is_resource_type(name: &str) -> bool {
    lookup(name).is_some()
}

/// Returns every concrete R4 resource type, sorted.
pub fn all() -> &'static [String] {
    &RESOURCE_TYPES
}

/// Returns the registry's copy of `name`, so callers can keep a `&'static str` for a type
/// read from input.
pub fn lookup(name: &str) -> Option<&'static str> {
    let names = all();
    names
        .binary_search_by(|candidate| candidate.as_str().cmp(name))
        .ok()
        .map(|index| names[index].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_every_r4_type() {
        assert_eq!(all().len(), 146);
        assert!(is_resource_type("Patient"));
        assert!(is_resource_type("MedicinalProductUndesirableEffect"));
        assert!(!is_resource_type("patient"));
        assert!(!is_resource_type("Resource"));
        assert!(!is_resource_type("DomainResource"));
        assert!(!is_resource_type(""));
    }

    #[test]
    fn lookup_returns_static_name() {
        let name = String::from("Observation");
        assert_eq!(lookup(&name), Some("Observation"));
        assert_eq!(lookup("Observations"), None);
    }
}
