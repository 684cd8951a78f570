//! Bulk Data exports at an EHR-backed site.
//!
//! The EHR runs the export. Hearth forwards the kick-off with its own credential, so at
//! the EHR every job belongs to Hearth's client. To keep each job to the app that started
//! it, Hearth seals the status and file URLs it hands out. A sealed URL carries the
//! upstream URL's path below the upstream base, base64url-encoded, and a keyed hash of that
//! path with the site and the app's client id. A status or file request is forwarded only
//! when the seal matches the caller's client id. Any other caller gets 404, as for a job
//! that does not exist.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hearth_analytics::pseudonym::Pseudonyms;
use serde_json::Value;

use crate::rewrite::Rewriter;

/// A Bulk Data request, by its path below the site's FHIR base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BulkPath {
    /// `$export` at system, patient or group level.
    KickOff,
    /// `$import`, Hearth's own asynchronous operation, with the same status pattern.
    Import,
    /// `$bulk-status/{sealed}`.
    Status(String),
    /// `$bulk-file/{sealed}/{name}`.
    File(String),
}

impl BulkPath {
    pub(crate) fn classify(path: &str) -> Option<BulkPath> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["$bulk-status", sealed] => Some(BulkPath::Status(sealed.to_string())),
            ["$bulk-file", sealed, _] => Some(BulkPath::File(sealed.to_string())),
            [.., "$export"] => Some(BulkPath::KickOff),
            [.., "$import"] => Some(BulkPath::Import),
            _ => None,
        }
    }
}

/// Seals and opens the job URLs of one site's exports.
#[derive(Clone)]
pub(crate) struct JobSeals {
    hash: Pseudonyms,
}

impl JobSeals {
    pub(crate) fn new(hash: Pseudonyms) -> Self {
        JobSeals { hash }
    }

    /// Seals `location`, an upstream URL's path and query below the upstream base.
    pub(crate) fn seal(&self, site_id: &str, client_id: &str, location: &str) -> String {
        let tag = self.hash.bulk_job(site_id, client_id, location);
        format!("{}.{tag:016x}", URL_SAFE_NO_PAD.encode(location))
    }

    /// Returns the upstream location that `sealed` stands for, when it was sealed for
    /// this site and client.
    pub(crate) fn open(&self, site_id: &str, client_id: &str, sealed: &str) -> Option<String> {
        let (encoded, tag) = sealed.split_once('.')?;
        let location = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
        let expected = format!("{:016x}", self.hash.bulk_job(site_id, client_id, &location));
        (tag == expected && location.starts_with('/') && !has_dot_segment(&location))
            .then_some(location)
    }
}

/// Returns whether a path (with any query) has a `.` or `..` segment, also percent-encoded.
fn has_dot_segment(location: &str) -> bool {
    let path = location.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// Maps the URLs of one export's responses between the upstream and the site.
pub(crate) struct JobUrls<'a> {
    pub seals: &'a JobSeals,
    pub site_id: &'a str,
    pub client_id: &'a str,
    pub upstream_base: &'a str,
    pub site_base: &'a str,
}

impl JobUrls<'_> {
    /// Returns the site's status URL for the upstream's status URL, or `None` when the
    /// upstream's URL is not under its base.
    pub(crate) fn status(&self, upstream_url: &str) -> Option<String> {
        let location = self.below_base(upstream_url)?;
        let sealed = self.seals.seal(self.site_id, self.client_id, location);
        Some(format!("{}/$bulk-status/{sealed}", self.site_base))
    }

    /// Puts the site's file URLs in a complete-status manifest, the site's base in its
    /// `request`, and marks the files as needing the app's token, which the site checks.
    pub(crate) fn manifest(&self, manifest: &mut Value) {
        let rewriter = Rewriter::new(self.upstream_base, self.site_base);
        if let Some(request) = manifest.get_mut("request")
            && let Some(text) = request.as_str()
        {
            *request = Value::String(rewriter.url(text));
        }
        for list in ["output", "error", "deleted"] {
            let Some(items) = manifest.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for item in items {
                let Some(url) = item.get_mut("url") else {
                    continue;
                };
                if let Some(file) = url.as_str().and_then(|text| self.file(text)) {
                    *url = Value::String(file);
                }
            }
        }
        if let Some(object) = manifest.as_object_mut() {
            object.insert("requiresAccessToken".to_string(), Value::Bool(true));
        }
    }

    fn file(&self, upstream_url: &str) -> Option<String> {
        let location = self.below_base(upstream_url)?;
        let name = location
            .split(['?', '#'])
            .next()
            .and_then(|path| path.rsplit('/').next())
            .filter(|name| !name.is_empty())
            .unwrap_or("file");
        let sealed = self.seals.seal(self.site_id, self.client_id, location);
        Some(format!("{}/$bulk-file/{sealed}/{name}", self.site_base))
    }

    /// Returns the part of `url` below the upstream base, when it stays there. Dot segments
    /// could lead out of the base to other endpoints of the EHR.
    fn below_base<'u>(&self, url: &'u str) -> Option<&'u str> {
        let base = self.upstream_base.trim_end_matches('/');
        url.strip_prefix(base)
            .filter(|rest| rest.starts_with('/') && !has_dot_segment(rest))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seals() -> JobSeals {
        JobSeals::new(Pseudonyms::from_key(b"a key for the tests only"))
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(BulkPath::classify("/$export"), Some(BulkPath::KickOff));
        assert_eq!(
            BulkPath::classify("/Patient/$export"),
            Some(BulkPath::KickOff)
        );
        assert_eq!(
            BulkPath::classify("/Group/g1/$export"),
            Some(BulkPath::KickOff)
        );
        assert_eq!(
            BulkPath::classify("/$bulk-status/abc.1"),
            Some(BulkPath::Status("abc.1".to_string()))
        );
        assert_eq!(
            BulkPath::classify("/$bulk-file/abc.1/Patient.ndjson"),
            Some(BulkPath::File("abc.1".to_string()))
        );
        assert_eq!(BulkPath::classify("/$import"), Some(BulkPath::Import));
        assert_eq!(BulkPath::classify("/Patient/1"), None);
    }

    #[test]
    fn a_seal_opens_only_for_its_client_and_site() {
        let seals = seals();
        let sealed = seals.seal("north", "app-a", "/$bulk-status/job-1");
        assert_eq!(
            seals.open("north", "app-a", &sealed).as_deref(),
            Some("/$bulk-status/job-1")
        );
        assert_eq!(seals.open("north", "app-b", &sealed), None);
        assert_eq!(seals.open("south", "app-a", &sealed), None);
        let other = seals.seal("north", "app-a", "/$bulk-status/job-2");
        let (encoded, _) = sealed.split_once('.').unwrap();
        let (_, other_tag) = other.split_once('.').unwrap();
        assert_eq!(
            seals.open("north", "app-a", &format!("{encoded}.{other_tag}")),
            None,
            "a tag of another job does not open this one"
        );
        assert_eq!(seals.open("north", "app-a", "not-sealed"), None);
        let escaping = seals.seal("north", "app-a", "/../../admin/apps");
        assert_eq!(seals.open("north", "app-a", &escaping), None);
    }

    #[test]
    fn manifest_urls_point_at_the_site() {
        let seals = seals();
        let urls = JobUrls {
            seals: &seals,
            site_id: "north",
            client_id: "app-a",
            upstream_base: "http://ehr.test/fhir",
            site_base: "http://hearth.test/sites/north/fhir",
        };
        let mut manifest = json!({
            "transactionTime": "2026-01-01T00:00:00Z",
            "request": "http://ehr.test/fhir/$export?_type=Patient",
            "requiresAccessToken": false,
            "output": [{"type": "Patient", "url": "http://ehr.test/fhir/$bulk-file/j1/Patient-1.ndjson", "count": 2}],
            "error": [{"type": "OperationOutcome", "url": "http://elsewhere.test/e.ndjson"}],
        });
        urls.manifest(&mut manifest);
        assert_eq!(
            manifest["request"],
            "http://hearth.test/sites/north/fhir/$export?_type=Patient"
        );
        assert_eq!(manifest["requiresAccessToken"], true);
        let file = manifest["output"][0]["url"].as_str().unwrap();
        let rest = file
            .strip_prefix("http://hearth.test/sites/north/fhir/$bulk-file/")
            .unwrap();
        let (sealed, name) = rest.split_once('/').unwrap();
        assert_eq!(name, "Patient-1.ndjson");
        assert_eq!(
            seals.open("north", "app-a", sealed).as_deref(),
            Some("/$bulk-file/j1/Patient-1.ndjson")
        );
        assert_eq!(manifest["output"][0]["count"], 2);
        assert_eq!(
            manifest["error"][0]["url"], "http://elsewhere.test/e.ndjson",
            "a URL outside the upstream base stays"
        );
        assert_eq!(
            urls.status("http://ehr.test/fhir/$bulk-status/j1")
                .unwrap()
                .split_once("/$bulk-status/")
                .map(|(base, _)| base.to_string()),
            Some("http://hearth.test/sites/north/fhir".to_string())
        );
    }
}
