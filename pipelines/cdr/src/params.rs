//! Integer ids of search parameters, the keys of the index tables.
//!
//! A parameter's id is its position in the registry of [`search_params`] ordered by resource
//! type, then by code. Ids therefore depend only on the embedded definitions, so a replay
//! assigns the same ids; [`fingerprint`] changes whenever the list of parameters does, and
//! the store records it so that a store built with other ids is rebuilt.

use std::collections::HashMap;
use std::sync::LazyLock;

use hearth_fhir_core::resource_types;
use hearth_fhir_core::search_params::{self, SearchParam};

struct ParamIds {
    /// For each resource type, the id of its first parameter and its parameters by code.
    by_type: HashMap<&'static str, (i64, &'static [SearchParam])>,
    /// The resource type and parameter of each id, indexed by id.
    by_id: Vec<(&'static str, &'static SearchParam)>,
    fingerprint: String,
}

static PARAM_IDS: LazyLock<ParamIds> = LazyLock::new(build);

fn build() -> ParamIds {
    let mut by_type = HashMap::new();
    let mut by_id = Vec::new();
    let mut next_id = 0;
    // FNV-1a over every `Type.code:type`, which is stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for resource_type in resource_types::all() {
        let params = search_params::for_type(resource_type);
        by_type.insert(resource_type.as_str(), (next_id, params));
        next_id += params.len() as i64;
        for param in params {
            by_id.push((resource_type.as_str(), param));
            let entry = format!("{resource_type}.{}:{};", param.code, param.param_type);
            for byte in entry.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    ParamIds {
        by_type,
        by_id,
        fingerprint: format!("{next_id}-{hash:016x}"),
    }
}

/// Returns the id of parameter `code` of `resource_type`, or `None` when the type has no
/// such parameter.
pub fn id(resource_type: &str, code: &str) -> Option<i64> {
    let (first, params) = PARAM_IDS.by_type.get(resource_type)?;
    let index = params
        .binary_search_by(|param| param.code.as_str().cmp(code))
        .ok()?;
    Some(first + index as i64)
}

/// Returns the resource type and the parameter that `id` was assigned to.
pub fn describe(id: i64) -> Option<(&'static str, &'static SearchParam)> {
    let index = usize::try_from(id).ok()?;
    PARAM_IDS.by_id.get(index).copied()
}

/// Identifies the parameter list the ids were assigned from: the number of parameters and
/// a hash of their types and codes.
pub fn fingerprint() -> &'static str {
    &PARAM_IDS.fingerprint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_per_type_and_code() {
        let patient_name = id("Patient", "name").unwrap();
        let patient_birthdate = id("Patient", "birthdate").unwrap();
        let observation_code = id("Observation", "code").unwrap();
        assert_ne!(patient_name, patient_birthdate);
        assert_ne!(patient_name, observation_code);
        assert_eq!(id("Patient", "name"), Some(patient_name));
    }

    #[test]
    fn describe_reverses_id() {
        let id = id("Observation", "subject").unwrap();
        let (resource_type, param) = describe(id).unwrap();
        assert_eq!(resource_type, "Observation");
        assert_eq!(param.code, "subject");
        assert!(describe(-1).is_none());
    }

    #[test]
    fn unknown_parameter_has_no_id() {
        assert_eq!(id("Patient", "no-such-parameter"), None);
        assert_eq!(id("NoSuchType", "name"), None);
    }

    #[test]
    fn fingerprint_counts_parameters() {
        let count: usize = resource_types::all()
            .iter()
            .map(|name| search_params::for_type(name).len())
            .sum();
        assert!(fingerprint().starts_with(&format!("{count}-")));
    }
}
