//! Finding and rewriting the literal references inside a resource.
//!
//! A literal reference is the `reference` string of a FHIR Reference element. Resources are
//! handled as JSON, so a Reference is recognised as an object with a string `reference`
//! member; the R4 specification defines no other element named `reference` whose value is a
//! string, except inside `Bundle.entry.request` which is never stored.

use serde_json::Value;

/// What a literal reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceKind<'a> {
    /// `urn:uuid:...`, a placeholder resolved against the `fullUrl`s of a bundle.
    Placeholder(&'a str),
    /// `Type?query`, resolved by searching the repository when the bundle is applied.
    Conditional {
        resource_type: &'a str,
        query: &'a str,
    },
    /// `#id`, a resource contained in the same resource.
    Contained,
    /// `Type/id` or `Type/id/_history/version`.
    Relative { resource_type: &'a str, id: &'a str },
    /// Anything else: absolute URLs, `urn:oid:`, canonical URLs.
    Other,
}

/// Classifies one reference string.
pub fn classify(reference: &str) -> ReferenceKind<'_> {
    if reference.starts_with("urn:uuid:") {
        return ReferenceKind::Placeholder(reference);
    }
    if reference.starts_with('#') {
        return ReferenceKind::Contained;
    }
    if let Some((resource_type, query)) = reference.split_once('?')
        && is_type_name(resource_type)
    {
        return ReferenceKind::Conditional {
            resource_type,
            query,
        };
    }
    let mut parts = reference.split('/');
    if let (Some(resource_type), Some(id)) = (parts.next(), parts.next()) {
        let rest: Vec<&str> = parts.collect();
        let history_ok = rest.is_empty() || (rest.len() == 2 && rest[0] == "_history");
        if is_type_name(resource_type) && crate::id::is_valid_id(id) && history_ok {
            return ReferenceKind::Relative { resource_type, id };
        }
    }
    ReferenceKind::Other
}

/// A resource type name has the shape of one (an upper-case ASCII letter, then letters);
/// whether it is an R4 type is checked elsewhere.
fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphabetic())
}

/// The FHIR base URLs of this server, under which an absolute reference names a local
/// resource: `{public_url}/fhir` and `{public_url}/sites/{site}/fhir` for any site id.
/// Absolute URLs under any other base name resources of other servers.
///
/// URLs are compared as written, so a reference that spells the public URL differently
/// (another letter case in the host, an explicit default port) counts as another server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalBases {
    /// The public URL without a trailing slash; empty when no absolute URL is local.
    public_url: String,
}

impl LocalBases {
    /// Returns the bases of a server reached at `public_url`, such as
    /// `http://127.0.0.1:8080`.
    pub fn new(public_url: &str) -> Self {
        LocalBases {
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Returns bases that make no absolute URL local.
    pub fn none() -> Self {
        LocalBases::default()
    }

    /// Returns the public URL the bases were made from, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Returns the part of `url` after one of these bases and its `/`, such as `Patient/1`
    /// for `{public_url}/fhir/Patient/1`, or `None` when `url` lies under no local base.
    pub fn strip<'a>(&self, url: &'a str) -> Option<&'a str> {
        if self.public_url.is_empty() {
            return None;
        }
        let path = url.strip_prefix(self.public_url.as_str())?;
        if let Some(rest) = path.strip_prefix("/fhir/") {
            return Some(rest);
        }
        let (site, rest) = path.strip_prefix("/sites/")?.split_once('/')?;
        if site.is_empty() {
            return None;
        }
        rest.strip_prefix("fhir/")
    }

    /// Returns whether the absolute URL `url` of a reference names a resource of this
    /// server: it is one of these bases followed by `Type/id`, optionally with
    /// `/_history/version`.
    pub fn is_local(&self, url: &str) -> bool {
        self.strip(url)
            .is_some_and(|rest| matches!(classify(rest), ReferenceKind::Relative { .. }))
    }
}

/// Returns whether `resource` contains a conditional reference (`Type?criteria`), which a
/// transaction resolves only when it is applied.
pub fn has_conditional_reference(resource: &Value) -> bool {
    let mut found = false;
    for_each_reference(resource, &mut |reference| {
        found |= matches!(classify(reference), ReferenceKind::Conditional { .. });
    });
    found
}

/// Calls `visit` with every literal reference string in `resource`, contained resources
/// included.
pub fn for_each_reference<'a>(resource: &'a Value, visit: &mut impl FnMut(&'a str)) {
    match resource {
        Value::Object(map) if is_bundle(map) => {}
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("reference", Value::String(reference)) => visit(reference),
                    _ => for_each_reference(value, visit),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_reference(item, visit);
            }
        }
        _ => {}
    }
}

/// Calls `rewrite` with every literal reference string in `resource`; the closure may
/// replace it in place.
pub fn rewrite_references<E>(
    resource: &mut Value,
    rewrite: &mut impl FnMut(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    match resource {
        Value::Object(map) if is_bundle(map) => {}
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("reference", Value::String(reference)) => rewrite(reference)?,
                    (_, value) => rewrite_references(value, rewrite)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, rewrite)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `map` is a Bundle resource. The references inside a Bundle resolve against its
/// own entries' `fullUrl`s, so a Bundle stored as a resource (a document, say) is left
/// out of reference resolution and kept as it is.
fn is_bundle(map: &serde_json::Map<String, Value>) -> bool {
    map.get("resourceType").and_then(Value::as_str) == Some("Bundle")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classify_reference_forms() {
        assert_eq!(
            classify("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            ReferenceKind::Placeholder("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427")
        );
        assert_eq!(
            classify("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"),
            ReferenceKind::Conditional {
                resource_type: "Practitioner",
                query: "identifier=http://hl7.org/fhir/sid/us-npi|123"
            }
        );
        assert_eq!(classify("#med1"), ReferenceKind::Contained);
        assert_eq!(
            classify("Patient/p1"),
            ReferenceKind::Relative {
                resource_type: "Patient",
                id: "p1"
            }
        );
        assert_eq!(
            classify("Patient/p1/_history/2"),
            ReferenceKind::Relative {
                resource_type: "Patient",
                id: "p1"
            }
        );
        assert_eq!(
            classify("https://example.org/fhir/Patient/1"),
            ReferenceKind::Other
        );
        assert_eq!(classify("Patient/bad id"), ReferenceKind::Other);
    }

    #[test]
    fn local_bases_accept_every_site_base() {
        let bases = LocalBases::new("http://127.0.0.1:8080/");
        assert!(bases.is_local("http://127.0.0.1:8080/fhir/Patient/1"));
        assert!(bases.is_local("http://127.0.0.1:8080/fhir/Patient/1/_history/3"));
        assert!(bases.is_local("http://127.0.0.1:8080/sites/north/fhir/Patient/1"));
        assert_eq!(
            bases.strip("http://127.0.0.1:8080/sites/north/fhir/Patient/1"),
            Some("Patient/1")
        );
    }

    #[test]
    fn local_bases_reject_other_servers() {
        let bases = LocalBases::new("http://127.0.0.1:8080");
        assert!(!bases.is_local("http://other.example/fhir/Patient/1"));
        assert!(!bases.is_local("http://127.0.0.1:80800/fhir/Patient/1"));
        assert!(!bases.is_local("http://127.0.0.1:8080/other/fhir/Patient/1"));
        assert!(!bases.is_local("http://127.0.0.1:8080/sites//fhir/Patient/1"));
        assert!(!bases.is_local("http://127.0.0.1:8080/sites/north/auth/Patient/1"));
        assert!(!bases.is_local("http://127.0.0.1:8080/fhir/x/Patient/1"));
        assert!(!bases.is_local("http://127.0.0.1:8080/fhir/Patient"));
        assert!(!LocalBases::none().is_local("http://127.0.0.1:8080/fhir/Patient/1"));
    }

    #[test]
    fn rewrite_reaches_nested_and_contained() {
        let mut resource = json!({
            "resourceType": "Observation",
            "subject": {"reference": "urn:uuid:a"},
            "performer": [{"reference": "urn:uuid:b"}, {"display": "no reference"}],
            "contained": [{"resourceType": "Specimen", "subject": {"reference": "urn:uuid:a"}}]
        });
        let mut seen = Vec::new();
        rewrite_references(&mut resource, &mut |reference: &mut String| {
            seen.push(reference.clone());
            *reference = reference.replace("urn:uuid:", "Patient/");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(resource["subject"]["reference"], "Patient/a");
        assert_eq!(
            resource["contained"][0]["subject"]["reference"],
            "Patient/a"
        );
    }

    #[test]
    fn references_inside_a_bundle_are_left_alone() {
        let mut resource = json!({
            "resourceType": "Composition",
            "subject": {"reference": "urn:uuid:a"},
            "contained": [{
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:inner"}}}]
            }]
        });
        let mut seen = Vec::new();
        for_each_reference(&resource, &mut |reference| seen.push(reference.to_owned()));
        assert_eq!(seen, ["urn:uuid:a"]);
        rewrite_references(&mut resource, &mut |reference: &mut String| {
            *reference = "Patient/p".to_owned();
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(
            resource["contained"][0]["entry"][0]["resource"]["subject"]["reference"],
            "urn:uuid:inner"
        );
    }
}
