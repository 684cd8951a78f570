//! Classification of a request to an EHR-backed site by its method and path.

use axum::http::Method;
use hearth_smart::scope::Interaction;

/// The FHIR interaction of a proxied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Capabilities,
    Read,
    Vread,
    Search,
    /// `POST [type]/_search` or `POST _search`: a search whose parameters are in the
    /// form body.
    SearchPost,
    /// `GET Patient/[id]/$everything`: the patient's record as a searchset, which the
    /// proxy filters entry by entry like a search.
    Everything,
    History,
    Create,
    Update,
    Patch,
    Delete,
    /// `POST [base]`: a batch or transaction.
    Bundle,
    /// Anything else, such as an operation.
    Other,
}

/// A classified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub kind: Kind,
    pub resource_type: Option<String>,
    pub id: Option<String>,
    /// The compartment of a compartment search (`GET Patient/1/Observation`) as its type
    /// and id. The search's `resource_type` is then the type searched (Observation).
    pub compartment: Option<(String, String)>,
}

impl Route {
    /// Classifies `path`, relative to the FHIR base (`/Patient/1`).
    pub fn classify(method: &Method, path: &str) -> Route {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let resource_type = segments
            .first()
            .and_then(|s| hearth_fhir_core::resource_types::lookup(s))
            .map(str::to_string);
        let id = segments
            .get(1)
            .filter(|s| !s.starts_with('_') && !s.starts_with('$'))
            .map(|s| s.to_string());
        let typed = resource_type.is_some();
        if let ("GET", ["Patient", _, "$everything"]) = (method.as_str(), segments.as_slice())
            && let Some(patient) = &id
        {
            return Route {
                kind: Kind::Everything,
                resource_type: Some("Patient".to_string()),
                id: Some(patient.clone()),
                compartment: Some(("Patient".to_string(), patient.clone())),
            };
        }
        if let ("GET", [_, _, searched]) = (method.as_str(), segments.as_slice())
            && let (Some(compartment_type), Some(compartment_id)) = (&resource_type, &id)
            && let Some(searched) = hearth_fhir_core::resource_types::lookup(searched)
        {
            return Route {
                kind: Kind::Search,
                resource_type: Some(searched.to_string()),
                id: None,
                compartment: Some((compartment_type.clone(), compartment_id.clone())),
            };
        }
        let kind = match (method.as_str(), segments.as_slice()) {
            ("GET", ["metadata"]) => Kind::Capabilities,
            ("GET", [_]) if typed => Kind::Search,
            ("GET", []) | ("GET", ["_search"]) => Kind::Search,
            ("POST", ["_search"]) => Kind::SearchPost,
            ("POST", [_, "_search"]) if typed => Kind::SearchPost,
            ("GET", [_, _]) if typed && id.is_some() => Kind::Read,
            ("GET", [_, _, "_history", _]) if typed && id.is_some() => Kind::Vread,
            ("GET", [.., "_history"]) => Kind::History,
            ("POST", [_]) if typed => Kind::Create,
            ("POST", []) => Kind::Bundle,
            ("PUT", [_, _]) if typed && id.is_some() => Kind::Update,
            ("PATCH", [_, _]) if typed && id.is_some() => Kind::Patch,
            ("DELETE", [_, _]) if typed && id.is_some() => Kind::Delete,
            _ => Kind::Other,
        };
        Route {
            kind,
            resource_type,
            id,
            compartment: None,
        }
    }

    /// The SMART interaction that the caller's scopes must allow, if the request has a
    /// resource type.
    pub fn interaction(&self) -> Option<Interaction> {
        let interaction = match self.kind {
            Kind::Read | Kind::Vread | Kind::History => Interaction::Read,
            Kind::Search | Kind::SearchPost | Kind::Everything => Interaction::Search,
            Kind::Create => Interaction::Create,
            Kind::Update | Kind::Patch => Interaction::Update,
            Kind::Delete => Interaction::Delete,
            Kind::Capabilities | Kind::Bundle | Kind::Other => return None,
        };
        Some(interaction)
    }

    /// Returns whether the response may come from, and go to, the cache.
    pub fn is_cacheable(&self) -> bool {
        matches!(
            self.kind,
            Kind::Read | Kind::Vread | Kind::Search | Kind::Capabilities
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(method: Method, path: &str) -> Kind {
        Route::classify(&method, path).kind
    }

    #[test]
    fn paths_map_to_interactions() {
        assert_eq!(kind(Method::GET, "/metadata"), Kind::Capabilities);
        assert_eq!(kind(Method::GET, "/Patient"), Kind::Search);
        assert_eq!(kind(Method::GET, "/Patient/1"), Kind::Read);
        assert_eq!(kind(Method::GET, "/Patient/1/_history/2"), Kind::Vread);
        assert_eq!(kind(Method::GET, "/Patient/1/_history"), Kind::History);
        assert_eq!(kind(Method::POST, "/Patient/_search"), Kind::SearchPost);
        assert_eq!(kind(Method::POST, "/Patient"), Kind::Create);
        assert_eq!(kind(Method::PUT, "/Patient/1"), Kind::Update);
        assert_eq!(kind(Method::DELETE, "/Patient/1"), Kind::Delete);
        assert_eq!(kind(Method::POST, "/"), Kind::Bundle);
        assert_eq!(kind(Method::GET, "/Patient/$match"), Kind::Other);
        assert_eq!(kind(Method::GET, "/NotAType/1"), Kind::Other);
    }

    #[test]
    fn compartment_search_is_a_search() {
        let route = Route::classify(&Method::GET, "/Patient/p1/Observation");
        assert_eq!(route.kind, Kind::Search);
        assert_eq!(route.resource_type.as_deref(), Some("Observation"));
        assert_eq!(route.id, None);
        assert_eq!(
            route.compartment,
            Some(("Patient".to_string(), "p1".to_string()))
        );
        assert!(route.is_cacheable());
        assert_eq!(
            kind(Method::GET, "/Patient/p1/$everything"),
            Kind::Everything
        );
        assert_eq!(kind(Method::GET, "/Encounter/e1/$everything"), Kind::Other);
        assert_eq!(kind(Method::GET, "/_search"), Kind::Search);
        assert_eq!(kind(Method::POST, "/_search"), Kind::SearchPost);
        assert_eq!(kind(Method::GET, "/Patient/p1/_history"), Kind::History);
    }

    #[test]
    fn route_keeps_type_and_id() {
        let route = Route::classify(&Method::GET, "/Observation/abc");
        assert_eq!(route.resource_type.as_deref(), Some("Observation"));
        assert_eq!(route.id.as_deref(), Some("abc"));
        assert!(route.is_cacheable());
    }
}
