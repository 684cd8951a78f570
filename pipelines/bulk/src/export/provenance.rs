//! `includeAssociatedData`: the Provenance resources associated with the resources an
//! export writes.
//!
//! When `_type` does not name Provenance, the job still lists Provenance among its
//! types, but writes a Provenance only when one of its `target` references names a
//! resource that the export writes. Such a resource is of another exported type and
//! passes the same checks as the export of that type (scopes, patients, `_typeFilter`,
//! `_since` and `_until`). With `LatestProvenanceResources` the Provenance must also be
//! the most recent Provenance of such a target, by `meta.lastUpdated` and then by id.
//!
//! Each check is a search of the repository (the target by `_id`, and the Provenance of a
//! target by `target`), so a job keeps no set of written ids and decides the same way
//! when it resumes from a checkpoint.

use hearth_cdr::search::{Filter, ParseOptions, SearchAccess, SearchQuery, ValueContext, parse};
use hearth_fhir_core::reference::{ReferenceKind, classify};
use hearth_fhir_core::resource_types;
use serde_json::Value;

use super::{Export, limited_to_patients};
use crate::{Error, Result};

/// The resource type that `includeAssociatedData` adds.
pub const PROVENANCE: &str = "Provenance";

/// Matches read in one search of the Provenance of a target. A page keeps their JSON in
/// memory, so it stays small.
const PROVENANCE_PAGE: usize = 100;

/// The choice of Provenance that `includeAssociatedData` requests for a written resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociatedProvenance {
    /// `LatestProvenanceResources`: the most recent Provenance of each written resource.
    Latest,
    /// `RelevantProvenanceResources`: every Provenance whose target is a written resource.
    Relevant,
}

impl AssociatedProvenance {
    /// Returns the mode a job requested. `RelevantProvenanceResources` wins over
    /// `LatestProvenanceResources` when both are given, because it includes it.
    pub fn of(include_associated_data: &[String]) -> Option<Self> {
        let named = |value: &str| include_associated_data.iter().any(|v| v == value);
        if named("RelevantProvenanceResources") {
            Some(AssociatedProvenance::Relevant)
        } else if named("LatestProvenanceResources") {
            Some(AssociatedProvenance::Latest)
        } else {
            None
        }
    }
}

/// Returns whether a job with these `_type` and `includeAssociatedData` values exports
/// Provenance only as data associated with its other resources: it requested associated
/// Provenance and named `_type` without Provenance. With no `_type`, Provenance is one of the
/// exported types like any other.
pub fn exports_associated_provenance(types: &[String], include_associated_data: &[String]) -> bool {
    AssociatedProvenance::of(include_associated_data).is_some()
        && !types.is_empty()
        && !types.iter().any(|t| t == PROVENANCE)
}

/// A type that the export writes, with its parsed `_typeFilter` alternatives (empty when
/// the type has no filter).
pub struct TargetType {
    resource_type: String,
    alternatives: Vec<Vec<Filter>>,
}

/// The inputs of the associated Provenance check, built once for each pass over Provenance.
pub struct ProvenanceTargets {
    mode: AssociatedProvenance,
    types: Vec<TargetType>,
    /// The `_typeFilter` alternatives of Provenance itself: the Provenance compared when
    /// looking for the most recent one are those the export could write.
    provenance_alternatives: Vec<Vec<Filter>>,
}

impl Export<'_> {
    /// Returns the checks of associated Provenance, or `None` when the job exports
    /// `resource_type` as a plain type. `provenance_alternatives` are the parsed
    /// `_typeFilter` queries of Provenance.
    pub(super) fn provenance_targets(
        &mut self,
        resource_type: &str,
        provenance_alternatives: &[Vec<Filter>],
    ) -> Option<ProvenanceTargets> {
        if resource_type != PROVENANCE || !self.state.associated_provenance {
            return None;
        }
        let mode = AssociatedProvenance::of(&self.request.include_associated_data)?;
        let mut types = Vec::new();
        for target_type in self.state.types.clone() {
            if target_type == PROVENANCE || (self.context.access)(&target_type).is_none() {
                continue;
            }
            // A type whose filters cannot run exports nothing, so it has no targets.
            if let Some(alternatives) = self.type_filters(&target_type) {
                types.push(TargetType {
                    resource_type: target_type,
                    alternatives,
                });
            }
        }
        Some(ProvenanceTargets {
            mode,
            types,
            provenance_alternatives: provenance_alternatives.to_vec(),
        })
    }

    /// Returns whether the Provenance `id`, as exported (`json`, last updated at
    /// `last_updated`), is associated with a resource that the export writes.
    pub(super) fn is_associated(
        &self,
        targets: &ProvenanceTargets,
        id: &str,
        last_updated: i64,
        json: &str,
    ) -> Result<bool> {
        let Ok(provenance) = serde_json::from_str::<Value>(json) else {
            return Ok(false);
        };
        let mut checked: Vec<(&str, &str)> = Vec::new();
        for reference in target_references(&provenance) {
            let Some(target) = local_target(reference, &self.request.base_url) else {
                continue;
            };
            if checked.contains(&target) {
                continue;
            }
            checked.push(target);
            let (target_type, target_id) = target;
            let Some(plan) = targets
                .types
                .iter()
                .find(|plan| plan.resource_type == target_type)
            else {
                continue;
            };
            if !self.target_written(plan, target_id)? {
                continue;
            }
            let associated = match targets.mode {
                AssociatedProvenance::Relevant => true,
                AssociatedProvenance::Latest => {
                    self.is_latest_provenance(targets, target, id, last_updated)?
                }
            };
            if associated {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Returns whether the export writes the resource `id` of a target type. It does when
    /// a search by `_id` with the type's filters finds it and its version at the cutoff is
    /// in the time window. An export limited to patients also needs it in the compartment
    /// of one of them.
    fn target_written(&self, plan: &TargetType, id: &str) -> Result<bool> {
        let id_filter = Filter::Id(vec![id.to_string()]);
        let Some(found) =
            self.find_one(&plan.resource_type, &plan.alternatives, &id_filter, None)?
        else {
            return Ok(false);
        };
        let Some(json) = found.json else {
            return Ok(false);
        };

        // The compartment index is of the current version, so the patients whose
        // compartment can contain the resource are those its current version references.
        let limited = limited_to_patients(self.request);
        let candidates = if limited {
            referenced_patients(&plan.resource_type, id, &json, &self.request.patients)
        } else {
            Vec::new()
        };
        let in_window = self.version_in_window(
            &plan.resource_type,
            id,
            found.version,
            found.last_updated,
            json,
        )?;
        if in_window.is_none() {
            return Ok(false);
        }
        if !limited {
            return Ok(true);
        }

        for patient in candidates {
            let found = self.find_one(
                &plan.resource_type,
                &plan.alternatives,
                &id_filter,
                Some(patient),
            )?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Returns whether the live resource `id` is in the compartment of one of the job's
    /// listed patients.
    pub(super) fn in_listed_compartment(&self, resource_type: &str, id: &str) -> Result<bool> {
        let id_filter = Filter::Id(vec![id.to_string()]);
        let Some(found) = self.find_one(resource_type, &[], &id_filter, None)? else {
            return Ok(false);
        };
        let Some(json) = found.json else {
            return Ok(false);
        };
        for patient in referenced_patients(resource_type, id, &json, &self.request.patients) {
            if self
                .find_one(resource_type, &[], &id_filter, Some(patient))?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Searches `resource_type` for the resource that `id_filter` names and that matches
    /// one of `alternatives` (any, when there are none), as the caller may search it and
    /// in `patient`'s compartment when one is given.
    fn find_one(
        &self,
        resource_type: &str,
        alternatives: &[Vec<Filter>],
        id_filter: &Filter,
        patient: Option<&str>,
    ) -> Result<Option<hearth_cdr::StoredResource>> {
        let access = SearchAccess {
            search: self.context.access,
            read: self.context.access,
            compartment: patient,
        };
        let no_filters = [Vec::new()];
        let alternatives = if alternatives.is_empty() {
            &no_filters[..]
        } else {
            alternatives
        };
        for filters in alternatives {
            let mut query = SearchQuery {
                resource_type: resource_type.to_string(),
                filters: filters.clone(),
                ..SearchQuery::default()
            };
            query.filters.push(id_filter.clone());
            let page = self.context.repository.search_page(&query, &access, 1)?;
            if let Some(found) = page.matches.into_iter().next() {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Returns whether no other Provenance of the target is more recent than the
    /// Provenance `id` last updated at `last_updated`. A Provenance changed after the
    /// cutoff counts as its version current at the cutoff, as the export writes it.
    // NOTE: the Provenance of a target are found by the `target` index of their current
    // versions, so a Provenance whose target changed after the cutoff is compared by
    // its current target.
    fn is_latest_provenance(
        &self,
        targets: &ProvenanceTargets,
        (target_type, target_id): (&str, &str),
        id: &str,
        last_updated: i64,
    ) -> Result<bool> {
        let pairs = [("target".to_string(), format!("{target_type}/{target_id}"))];
        let options = ParseOptions {
            strict: true,
            context: ValueContext {
                base_url: &self.request.base_url,
                now: self.request.transaction_time,
            },
        };
        let target_filters = parse(PROVENANCE, &pairs, &options)
            .map_err(|error| {
                Error::Export(format!(
                    "the Provenance search of {target_type}/{target_id} is invalid: {error}"
                ))
            })?
            .filters;
        let access = SearchAccess {
            search: self.context.access,
            read: self.context.access,
            compartment: None,
        };
        let no_filters = [Vec::new()];
        let alternatives = if targets.provenance_alternatives.is_empty() {
            &no_filters[..]
        } else {
            &targets.provenance_alternatives[..]
        };
        for filters in alternatives {
            let mut query = SearchQuery {
                resource_type: PROVENANCE.to_string(),
                filters: filters.clone(),
                ..SearchQuery::default()
            };
            query.filters.extend(target_filters.iter().cloned());
            loop {
                let page = self
                    .context
                    .repository
                    .search_page(&query, &access, PROVENANCE_PAGE)?;
                for other in page.matches {
                    if other.id == id || !self.targets_locally(&other, (target_type, target_id)) {
                        continue;
                    }
                    let Some(other_updated) = self.last_updated_at_cutoff(&other)? else {
                        continue;
                    };
                    if (other_updated, other.id.as_str()) > (last_updated, id) {
                        return Ok(false);
                    }
                }
                match page.next {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(true)
    }

    /// Returns whether a Provenance found by the `target` index names the target as a
    /// resource of this server. The index also matches absolute URLs of other servers
    /// that end in the same type and id, which name another resource.
    fn targets_locally(
        &self,
        provenance: &hearth_cdr::StoredResource,
        (target_type, target_id): (&str, &str),
    ) -> bool {
        let Some(value) = provenance
            .json
            .as_deref()
            .and_then(|json| serde_json::from_str::<Value>(json).ok())
        else {
            return false;
        };
        target_references(&value).any(|reference| {
            local_target(reference, &self.request.base_url) == Some((target_type, target_id))
        })
    }

    /// The `meta.lastUpdated` of a resource's version at the cutoff, or `None` when it
    /// did not exist then.
    fn last_updated_at_cutoff(&self, resource: &hearth_cdr::StoredResource) -> Result<Option<i64>> {
        if resource.last_updated <= self.cutoff {
            return Ok(Some(resource.last_updated));
        }
        let earlier =
            self.version_at_cutoff(&resource.resource_type, &resource.id, resource.version)?;
        Ok(earlier.map(|version| version.last_updated))
    }
}

/// Returns the `reference` strings of a Provenance's `target` elements.
pub fn target_references(provenance: &Value) -> impl Iterator<Item = &str> {
    provenance
        .get("target")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|target| target.get("reference").and_then(Value::as_str))
}

/// Returns the type and id of the resource on this server that `reference` names:
/// `Type/id`, `Type/id/_history/n`, or one of them after the server's `base_url`. Other
/// absolute URLs, contained (`#id`) and conditional references name nothing exported.
pub fn local_target<'a>(reference: &'a str, base_url: &str) -> Option<(&'a str, &'a str)> {
    let base = base_url.trim_end_matches('/');
    let relative = match reference.strip_prefix(base) {
        Some(rest) if !base.is_empty() => rest.strip_prefix('/')?,
        _ => reference,
    };
    match classify(relative) {
        ReferenceKind::Relative { resource_type, id }
            if resource_types::is_resource_type(resource_type) =>
        {
            Some((resource_type, id))
        }
        _ => None,
    }
}

/// Returns the listed patients whose compartment can contain the resource: the Patient
/// itself, or the listed patients that one of its references names.
fn referenced_patients<'p>(
    resource_type: &str,
    id: &str,
    json: &str,
    patients: &'p [String],
) -> Vec<&'p str> {
    if resource_type == "Patient" {
        return patients
            .iter()
            .filter(|patient| *patient == id)
            .map(String::as_str)
            .take(1)
            .collect();
    }
    let Ok(resource) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let mut referenced = Vec::new();
    collect_patient_ids(&resource, &mut referenced);
    patients
        .iter()
        .map(String::as_str)
        .filter(|patient| referenced.contains(patient))
        .collect()
}

/// Adds to `ids` the id of every reference in a resource that names a Patient:
/// `Patient/id`, with or without a base URL before it or a `_history` part after it, as
/// the compartment index reads them.
fn collect_patient_ids<'v>(value: &'v Value, ids: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if key == "reference"
                    && let Some(id) = item.as_str().and_then(patient_id)
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
                collect_patient_ids(item, ids);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_patient_ids(item, ids);
            }
        }
        _ => {}
    }
}

/// Returns the id of the Patient that a literal reference names, if it names one.
fn patient_id(reference: &str) -> Option<&str> {
    let path = reference
        .rsplit_once("/_history/")
        .map_or(reference, |(path, _)| path);
    let (prefix, id) = path.rsplit_once('/')?;
    let names_patient = prefix == "Patient" || prefix.ends_with("/Patient");
    (names_patient && !id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests;
