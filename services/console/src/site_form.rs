//! The form that creates a site and edits its settings: name, backing, and for a site
//! backed by an upstream EHR its base URL, FHIR version, how Hearth authenticates there,
//! and the cache freshness windows. Dynamic client registration applies to both
//! backings.
//!
//! No field carries a secret. The bearer token of an upstream comes only from the server
//! configuration, so the form names where to put it and never shows it.

use std::collections::BTreeMap;

use hearth_auth::SiteRequest;
use hearth_auth_store::Site;
use hearth_schemas::{Backing, UpstreamAuthMethod};

use crate::html::escape;
use crate::session::FormData;

/// FHIR versions offered for an upstream: R4 and STU3, which Hearth converts to R4.
const FHIR_VERSIONS: &[(&str, &str)] = &[
    ("4.0.1", "R4 (4.0.1)"),
    ("3.0.2", "STU3 (3.0.2), converted to R4 by Hearth"),
];

/// The form's fields as text, so a rejected form comes back as the user typed it.
#[derive(Debug, Default, Clone)]
pub struct SiteFields {
    pub site_id: String,
    pub name: String,
    /// `repository` or `ehr`.
    pub backing: String,
    pub upstream_base_url: String,
    pub upstream_fhir_version: String,
    /// `none`, `bearer` or `backend-services`.
    pub auth_method: String,
    pub upstream_client_id: String,
    pub upstream_token_url: String,
    pub upstream_scope: String,
    pub default_freshness: String,
    /// One `Type=seconds` per line.
    pub type_freshness: String,
    pub dynamic_registration: bool,
}

impl SiteFields {
    /// Reads the fields of a posted form.
    pub fn from_form(form: &FormData) -> SiteFields {
        let text = |name: &str| form.get(name).unwrap_or_default().to_string();
        SiteFields {
            site_id: text("site_id"),
            name: text("name"),
            backing: text("backing"),
            upstream_base_url: text("upstream_base_url"),
            upstream_fhir_version: text("upstream_fhir_version"),
            auth_method: text("upstream_auth_method"),
            upstream_client_id: text("upstream_client_id"),
            upstream_token_url: text("upstream_token_url"),
            upstream_scope: text("upstream_scope"),
            default_freshness: text("default_cache_freshness_s"),
            type_freshness: text("cache_freshness_s"),
            dynamic_registration: form.get("dynamic_registration").is_some(),
        }
    }

    /// Fills the fields with a site's current settings.
    pub fn from_site(site: &Site) -> SiteFields {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        SiteFields {
            site_id: site.site_id.clone(),
            name: site.name.clone(),
            backing: match site.backing {
                Backing::Repository => "repository".to_string(),
                Backing::Ehr => "ehr".to_string(),
            },
            upstream_base_url: text(&site.upstream_base_url),
            upstream_fhir_version: text(&site.upstream_fhir_version),
            auth_method: match site.upstream_auth_method {
                UpstreamAuthMethod::None => "none",
                UpstreamAuthMethod::Bearer => "bearer",
                UpstreamAuthMethod::BackendServices => "backend-services",
            }
            .to_string(),
            upstream_client_id: text(&site.upstream_client_id),
            upstream_token_url: text(&site.upstream_token_url),
            upstream_scope: text(&site.upstream_scope),
            default_freshness: site.default_cache_freshness_s.to_string(),
            type_freshness: site
                .cache_freshness_s
                .iter()
                .map(|(resource_type, seconds)| format!("{resource_type}={seconds}"))
                .collect::<Vec<_>>()
                .join("\n"),
            dynamic_registration: site.dynamic_registration,
        }
    }

    /// Builds the admin API's request, or returns a message naming the invalid field.
    /// Blank text fields are left out, so the API applies its defaults.
    pub fn to_request(&self) -> Result<SiteRequest, String> {
        let optional = |value: &str| Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match self.backing.as_str() {
            "ehr" => {}
            "repository" => return self.repository_request(),
            other => {
                return Err(format!(
                    "The backing {other:?} is not valid. Choose one of: {}.",
                    hearth_auth::BACKINGS.join(", ")
                ));
            }
        }
        let default_cache_freshness_s = match self.default_freshness.trim() {
            "" => 0,
            text => text.parse::<i64>().map_err(|_| {
                format!("The cache freshness {text:?} is not a whole number of seconds.")
            })?,
        };
        Ok(SiteRequest {
            site_id: self.site_id.trim().to_string(),
            name: self.name.trim().to_string(),
            backing: Some("ehr".to_string()),
            upstream_base_url: optional(&self.upstream_base_url),
            dynamic_registration: self.dynamic_registration,
            upstream_auth_method: optional(&self.auth_method).filter(|m| m != "none"),
            upstream_client_id: optional(&self.upstream_client_id),
            upstream_token_url: optional(&self.upstream_token_url),
            upstream_scope: optional(&self.upstream_scope),
            upstream_fhir_version: optional(&self.upstream_fhir_version),
            cache_freshness_s: parse_type_freshness(&self.type_freshness)?,
            default_cache_freshness_s,
        })
    }

    /// Builds the request of a repository-backed site. The FHIR version select always
    /// has a value, so it is ignored, but any other upstream setting is rejected, because
    /// it would be lost.
    fn repository_request(&self) -> Result<SiteRequest, String> {
        let upstream_text = [
            &self.upstream_base_url,
            &self.upstream_client_id,
            &self.upstream_token_url,
            &self.upstream_scope,
            &self.type_freshness,
        ];
        let default_freshness = self.default_freshness.trim();
        let has_upstream = upstream_text.iter().any(|v| !v.trim().is_empty())
            || !matches!(default_freshness, "" | "0")
            || !matches!(self.auth_method.as_str(), "" | "none");
        if has_upstream {
            return Err(
                "The upstream EHR settings apply only to a site backed by an upstream EHR. \
                 Choose that backing, or clear them."
                    .to_string(),
            );
        }
        Ok(SiteRequest {
            site_id: self.site_id.trim().to_string(),
            name: self.name.trim().to_string(),
            backing: Some("repository".to_string()),
            dynamic_registration: self.dynamic_registration,
            ..SiteRequest::default()
        })
    }

    /// Renders the fields inside a form. `editing` shows the site id and backing as fixed
    /// text, because neither can change after creation.
    pub fn render(&self, editing: bool) -> String {
        let identity = if editing {
            format!(
                "<p>Site id <code>{id}</code>, backed by {backing}. Neither can change.</p>\
                 <input type=\"hidden\" name=\"site_id\" value=\"{id}\">\
                 <input type=\"hidden\" name=\"backing\" value=\"{backing_value}\">",
                id = escape(&self.site_id),
                backing = if self.backing == "ehr" {
                    "an upstream EHR"
                } else {
                    "Hearth's clinical data repository"
                },
                backing_value = escape(&self.backing),
            )
        } else {
            format!(
                "<label for=\"site_id\">Site id <small>(letters, digits, - and _; part of the site's URLs)</small></label>\
                 <input type=\"text\" id=\"site_id\" name=\"site_id\" value=\"{id}\" required maxlength=\"64\" pattern=\"[A-Za-z0-9_\\-]{{1,64}}\">\
                 <label for=\"backing\">Backing</label>\
                 <select id=\"backing\" name=\"backing\">{options}</select>",
                id = escape(&self.site_id),
                options = options(
                    &[
                        ("repository", "Hearth's clinical data repository"),
                        ("ehr", "An upstream EHR's FHIR API"),
                    ],
                    &self.backing,
                ),
            )
        };
        let upstream = if editing && self.backing != "ehr" {
            String::new()
        } else {
            self.upstream_fields()
        };
        format!(
            "{identity}<label for=\"site_name\">Name</label>\
             <input type=\"text\" id=\"site_name\" name=\"name\" value=\"{name}\" required maxlength=\"{max_name}\">\
             <label class=\"check\"><input type=\"checkbox\" name=\"dynamic_registration\" value=\"1\"{dynamic}> \
             Apps may register themselves at this site (OAuth dynamic client registration, RFC 7591)</label>\
             {upstream}",
            name = escape(&self.name),
            max_name = hearth_auth::MAX_NAME_CHARS,
            dynamic = checked(self.dynamic_registration),
        )
    }

    fn upstream_fields(&self) -> String {
        let mut versions: Vec<(&str, &str)> = FHIR_VERSIONS.to_vec();
        let current = self.upstream_fhir_version.as_str();
        if !current.is_empty() && !versions.iter().any(|(v, _)| *v == current) {
            versions.push((current, current));
        }
        let method = |value: &str| {
            checked(self.auth_method == value || (value == "none" && self.auth_method.is_empty()))
        };
        let bearer_variable = format!(
            "HEARTH_EHR_BEARER_TOKEN_{}",
            if self.site_id.is_empty() {
                "SITE".to_string()
            } else {
                self.site_id.to_uppercase().replace('-', "_")
            }
        );
        format!(
            "<fieldset><legend>Upstream EHR <small>(for an EHR backing)</small></legend>\
             <label for=\"upstream_base_url\">FHIR base URL of the EHR</label>\
             <input type=\"url\" id=\"upstream_base_url\" name=\"upstream_base_url\" value=\"{base}\" maxlength=\"{max_uri}\" placeholder=\"https://ehr.example/fhir/R4\">\
             <label for=\"upstream_fhir_version\">FHIR version of the EHR</label>\
             <select id=\"upstream_fhir_version\" name=\"upstream_fhir_version\">{versions}</select>\
             </fieldset>\
             <fieldset><legend>How Hearth signs in at the EHR</legend>\
             <label class=\"check\"><input type=\"radio\" name=\"upstream_auth_method\" value=\"none\"{none}> No credential</label>\
             <label class=\"check\"><input type=\"radio\" name=\"upstream_auth_method\" value=\"bearer\"{bearer}> A static bearer token</label>\
             <p class=\"hint\" id=\"bearer-hint\">The token is a secret, so it is never entered or shown here: set \
             <code>{bearer_variable}</code> in the server's environment or <code>bearer_token</code> under \
             <code>[ehr.sites.{site}]</code> in <code>hearth.toml</code>.</p>\
             <label class=\"check\"><input type=\"radio\" name=\"upstream_auth_method\" value=\"backend-services\"{backend}> \
             SMART Backend Services with Hearth's own key</label>\
             <label for=\"upstream_client_id\">Hearth's client id at the EHR <small>(for Backend Services)</small></label>\
             <input type=\"text\" id=\"upstream_client_id\" name=\"upstream_client_id\" value=\"{client_id}\">\
             <label for=\"upstream_token_url\">Token endpoint of the EHR <small>(blank: read from its .well-known/smart-configuration)</small></label>\
             <input type=\"url\" id=\"upstream_token_url\" name=\"upstream_token_url\" value=\"{token_url}\" maxlength=\"{max_uri}\">\
             <label for=\"upstream_scope\">Scopes requested at the EHR <small>(blank: system/*.rs)</small></label>\
             <input type=\"text\" id=\"upstream_scope\" name=\"upstream_scope\" value=\"{scope}\">\
             <p class=\"hint\">Register Hearth at the EHR with the key set at <code>/ehr-client/jwks</code>.</p>\
             </fieldset>\
             <fieldset><legend>Cache of EHR responses</legend>\
             <label for=\"default_cache_freshness_s\">Seconds a cached response stays fresh <small>(0 turns the cache off)</small></label>\
             <input type=\"number\" id=\"default_cache_freshness_s\" name=\"default_cache_freshness_s\" min=\"0\" step=\"1\" value=\"{default_freshness}\">\
             <label for=\"cache_freshness_s\">Per resource type <small>(one Type=seconds per line, such as Patient=300)</small></label>\
             <textarea id=\"cache_freshness_s\" name=\"cache_freshness_s\" rows=\"4\" class=\"mono\">{type_freshness}</textarea>\
             </fieldset>",
            base = escape(&self.upstream_base_url),
            versions = options(&versions, current),
            none = method("none"),
            bearer = method("bearer"),
            backend = method("backend-services"),
            bearer_variable = escape(&bearer_variable),
            site = escape(if self.site_id.is_empty() {
                "SITE"
            } else {
                &self.site_id
            }),
            client_id = escape(&self.upstream_client_id),
            token_url = escape(&self.upstream_token_url),
            scope = escape(&self.upstream_scope),
            default_freshness = escape(&self.default_freshness),
            type_freshness = escape(&self.type_freshness),
            max_uri = hearth_auth::MAX_URI_CHARS,
        )
    }
}

fn checked(on: bool) -> &'static str {
    if on { " checked" } else { "" }
}

fn options(items: &[(&str, &str)], selected: &str) -> String {
    items
        .iter()
        .map(|(value, label)| {
            let mark = if *value == selected { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{mark}>{}</option>",
                escape(value),
                escape(label)
            )
        })
        .collect()
}

/// Parses lines of `Type=seconds` (blank lines allowed) into freshness windows.
fn parse_type_freshness(text: &str) -> Result<BTreeMap<String, i64>, String> {
    let mut windows = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parsed = line.split_once('=').and_then(|(resource_type, seconds)| {
            let resource_type = resource_type.trim();
            let valid_type = resource_type
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
                && resource_type.chars().all(|c| c.is_ascii_alphanumeric());
            let seconds = seconds.trim().parse::<i64>().ok()?;
            valid_type.then(|| (resource_type.to_string(), seconds))
        });
        let Some((resource_type, seconds)) = parsed else {
            return Err(format!(
                "The cache line {line:?} is not a resource type, =, and a whole number of seconds, such as Patient=300."
            ));
        };
        windows.insert(resource_type, seconds);
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_freshness_parses_lines() {
        let windows = parse_type_freshness("Patient=300\n\n Observation = 30 \n").unwrap();
        assert_eq!(windows.get("Patient"), Some(&300));
        assert_eq!(windows.get("Observation"), Some(&30));
        assert_eq!(windows.len(), 2);
    }

    #[test]
    fn type_freshness_rejects_bad_lines() {
        for line in ["Patient", "Patient=soon", "patient=3", "=3", "Pat ient=3"] {
            let error = parse_type_freshness(line).unwrap_err();
            assert!(error.contains(line.trim()), "{line}: {error}");
        }
    }

    #[test]
    fn repository_site_rejects_upstream_settings() {
        let fields = SiteFields {
            site_id: "north".into(),
            name: "North".into(),
            backing: "repository".into(),
            upstream_base_url: "https://ehr.example/fhir".into(),
            ..SiteFields::default()
        };
        assert!(fields.to_request().unwrap_err().contains("upstream EHR"));
    }

    #[test]
    fn unknown_backing_is_rejected() {
        for backing in ["", "cache", "EHR"] {
            let fields = SiteFields {
                site_id: "north".into(),
                name: "North".into(),
                backing: backing.into(),
                ..SiteFields::default()
            };
            let error = fields.to_request().unwrap_err();
            assert!(error.contains("repository, ehr"), "{backing}: {error}");
        }
    }

    #[test]
    fn blank_fields_are_left_out() {
        let fields = SiteFields {
            site_id: "north".into(),
            name: "North".into(),
            backing: "repository".into(),
            auth_method: "none".into(),
            upstream_fhir_version: "4.0.1".into(),
            ..SiteFields::default()
        };
        let request = fields.to_request().unwrap();
        assert_eq!(request.upstream_base_url, None);
        assert_eq!(request.upstream_auth_method, None);
        assert_eq!(request.upstream_fhir_version, None);
        assert_eq!(request.default_cache_freshness_s, 0);
        assert!(request.cache_freshness_s.is_empty());
    }

    #[test]
    fn site_round_trips_through_fields() {
        let site = Site {
            site_id: "north-1".into(),
            name: "North".into(),
            fhir_base_path: "/sites/north-1/fhir".into(),
            backing: Backing::Ehr,
            upstream_base_url: Some("https://ehr.example/fhir".into()),
            upstream_auth_method: UpstreamAuthMethod::BackendServices,
            upstream_client_id: Some("hearth".into()),
            upstream_token_url: None,
            upstream_scope: Some("system/*.rs".into()),
            upstream_fhir_version: Some("3.0.2".into()),
            dynamic_registration: true,
            cache_freshness_s: BTreeMap::from([("Patient".to_string(), 300)]),
            default_cache_freshness_s: 60,
        };
        let request = SiteFields::from_site(&site).to_request().unwrap();
        assert_eq!(request.backing.as_deref(), Some("ehr"));
        assert_eq!(
            request.upstream_auth_method.as_deref(),
            Some("backend-services")
        );
        assert_eq!(request.upstream_client_id.as_deref(), Some("hearth"));
        assert_eq!(request.upstream_token_url, None);
        assert_eq!(request.upstream_fhir_version.as_deref(), Some("3.0.2"));
        assert!(request.dynamic_registration);
        assert_eq!(request.cache_freshness_s, site.cache_freshness_s);
        assert_eq!(request.default_cache_freshness_s, 60);

        let html = SiteFields::from_site(&site).render(true);
        assert!(html.contains("HEARTH_EHR_BEARER_TOKEN_NORTH_1"));
        assert!(html.contains("value=\"3.0.2\" selected"));
        assert!(html.contains("value=\"backend-services\" checked"));
    }
}
