//! Chained parameters and `_has` in searches at an EHR-backed site. The EHR evaluates them
//! with Hearth's own access, so a chain through a type the caller may not search in full
//! would select resources by data the caller cannot see, such as another patient's
//! Encounters. The proxy cannot evaluate a chain with the caller's visibility as a
//! repository site does, so it returns an empty searchset for those searches instead of
//! asking the EHR. Such a search at a repository site can match the caller's own data.

use hearth_fhir::Principal;
use hearth_fhir_core::search_params;
use hearth_smart::scope::Interaction;

/// Returns the first resource type that a chain or `_has` parameter of `query` reaches and
/// the caller may not search in full, or `None` when the caller may search every resource
/// of every type it reaches.
pub fn hidden_type(principal: &Principal, resource_type: &str, query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(name, _)| name.into_owned())
        .find_map(|name| hidden_type_of_param(principal, resource_type, &name))
}

fn hidden_type_of_param(principal: &Principal, resource_type: &str, name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("_has:") {
        let referring = rest.split(':').next().unwrap_or_default();
        return (!searchable(principal, referring)).then(|| referring.to_string());
    }
    let mut hops: Vec<&str> = name.split('.').collect();
    hops.pop();
    let mut current = resource_type.to_string();
    for hop in hops {
        let (code, explicit) = match hop.split_once(':') {
            Some((code, target)) => (code, Some(target.to_string())),
            None => (hop, None),
        };
        let targets = match explicit {
            Some(target) => vec![target],
            None => search_params::get(&current, code)
                .map(|param| param.targets.clone())
                .unwrap_or_default(),
        };
        if !targets.is_empty() && !targets.iter().any(|t| searchable(principal, t)) {
            return targets.into_iter().next();
        }
        match targets.as_slice() {
            [only] => current = only.clone(),
            // The next hop's type is ambiguous; the EHR resolves it.
            _ => return None,
        }
    }
    None
}

fn searchable(principal: &Principal, resource_type: &str) -> bool {
    hearth_fhir::visibility(principal, resource_type, Interaction::Search)
        .is_ok_and(|visibility| visibility.is_everything())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scope: &str) -> Principal {
        Principal {
            client_id: "app".to_string(),
            token_id: "t".to_string(),
            grant_id: None,
            scopes: hearth_smart::scope::parse(scope),
            patient: Some("p1".to_string()),
            fhir_user: None,
            user_type: None,
        }
    }

    #[test]
    fn chain_through_unscoped_type_is_hidden() {
        let observations = principal("launch/patient patient/Observation.rs");
        assert_eq!(
            hidden_type(&observations, "Observation", "subject:Patient.gender=male"),
            Some("Patient".to_string())
        );
        assert_eq!(
            hidden_type(&observations, "Observation", "patient.gender=male"),
            Some("Patient".to_string())
        );
        assert_eq!(
            hidden_type(&observations, "Patient", "_has:Condition:subject:code=1"),
            Some("Condition".to_string())
        );
        assert_eq!(
            hidden_type(&observations, "Observation", "code=1&_count=5"),
            None
        );
    }

    #[test]
    fn chain_through_partly_visible_type_is_hidden() {
        let patient = principal("launch/patient patient/*.rs");
        assert_eq!(
            hidden_type(&patient, "Observation", "subject:Patient.gender=male"),
            Some("Patient".to_string())
        );
        assert_eq!(
            hidden_type(
                &patient,
                "Practitioner",
                "_has:Encounter:participant:patient=p2"
            ),
            Some("Encounter".to_string())
        );
    }

    #[test]
    fn chain_through_wholly_visible_type_goes_upstream() {
        let mut system = principal("system/*.rs");
        system.patient = None;
        assert_eq!(
            hidden_type(&system, "Observation", "subject:Patient.gender=male"),
            None
        );
        assert_eq!(
            hidden_type(&system, "Patient", "_has:Observation:patient:code=1"),
            None
        );
    }
}
