//! The `deleted` section: resources deleted between `_since` and the cutoff, as
//! transaction Bundles of DELETE entries.

use std::collections::HashSet;

use hearth_cdr::{HistoryScope, StoredResource};
use hearth_schemas::{BulkFile, BulkFileKind};
use serde_json::{Value, json};

use super::provenance::{PROVENANCE, local_target, target_references};
use super::{Export, file_url, patient_set};
use crate::Result;
use hearth_schemas::ExportLevel;

/// Entries in one Bundle line.
const ENTRIES_PER_BUNDLE: usize = 500;

/// Versions read from history in one query.
const HISTORY_PAGE: usize = 1000;

impl Export<'_> {
    /// Writes the deletions of the current type to `deleted-<Type>.ndjson` and returns its
    /// manifest entry, or nothing when there were none.
    pub(super) fn deleted_of_type(&mut self) -> Result<Option<BulkFile>> {
        let Some(since) = self.request.since else {
            return Ok(None);
        };
        let resource_type = self.state.types[self.state.type_index].clone();
        if (self.context.access)(&resource_type).is_none() {
            return Ok(None);
        }
        let deleted = self.deleted_ids(&resource_type, since)?;
        if deleted.is_empty() {
            return Ok(None);
        }
        let mut text = String::new();
        for chunk in deleted.chunks(ENTRIES_PER_BUNDLE) {
            let entries: Vec<Value> = chunk
                .iter()
                .map(|id| json!({"request": {"method": "DELETE", "url": format!("{resource_type}/{id}")}}))
                .collect();
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            text.push_str(&bundle.to_string());
            text.push('\n');
        }
        let name = format!("deleted-{resource_type}.ndjson");
        let bytes = text.len() as i64;
        let put = self
            .context
            .files
            .put(&self.request.job_id, &name, text.into_bytes());
        self.context.handle.block_on(put)?;
        Ok(Some(BulkFile {
            resource_type: "Bundle".to_string(),
            url: file_url(self.request, &name),
            count: deleted.chunks(ENTRIES_PER_BUNDLE).len() as i64,
            bytes,
            kind: BulkFileKind::Deleted,
        }))
    }

    /// Ids of resources of a type whose deletion falls in the window and that were still
    /// deleted at the cutoff, oldest deletion first.
    fn deleted_ids(&self, resource_type: &str, since: i64) -> Result<Vec<String>> {
        let access = self.context.access;
        let everything = |t: &str| access(t).map(|_| hearth_cdr::Visibility::everything());
        let patients = patient_set(self.request);
        // History is read without the caller's restrictions, so a caller confined to
        // patients gets only deletions of what those patients' compartments held.
        let visibility = access(resource_type);
        let confined = match &visibility {
            Some(visibility) if !visibility.is_everything() => Some(confined_patients(visibility)),
            _ => None,
        };
        let any_patient =
            self.request.level == ExportLevel::Patient && !super::limited_to_patients(self.request);
        let associated = self.state.associated_provenance && resource_type == PROVENANCE;
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        let mut before = None;
        loop {
            let page = self.context.repository.history(
                HistoryScope::Type(resource_type),
                Some(since),
                HISTORY_PAGE,
                before,
                &everything,
            )?;
            for version in &page.versions {
                if !version.is_deleted() || version.last_updated > self.cutoff {
                    continue;
                }
                if !seen.insert(version.id.clone()) {
                    continue;
                }
                if !self.deleted_at_cutoff(version)? {
                    continue;
                }
                if associated {
                    if !self.targeted_exported_type(version)? {
                        continue;
                    }
                } else {
                    // A patient-limited export keeps its patients' deletions, and a Patient
                    // export without a list those of any patient.
                    let wanted = if super::limited_to_patients(self.request) {
                        Some(Some(&patients))
                    } else if any_patient {
                        Some(None)
                    } else {
                        None
                    };
                    if let Some(wanted) = wanted
                        && !self.belonged_to(version, wanted)?
                    {
                        continue;
                    }
                }
                if let Some(confined) = &confined {
                    let visible = match confined {
                        Some(confined) => self.belonged_to(version, Some(confined))?,
                        None => false,
                    };
                    if !visible {
                        continue;
                    }
                }
                ids.push(version.id.clone());
            }
            match page.next_before {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        ids.reverse();
        Ok(ids)
    }

    /// Whether the resource was still deleted at the cutoff: it has no later version at or
    /// before the cutoff.
    fn deleted_at_cutoff(&self, deletion: &StoredResource) -> Result<bool> {
        let later = self.context.repository.vread(
            &deletion.resource_type,
            &deletion.id,
            deletion.version + 1,
        )?;
        Ok(later.is_none_or(|later| later.last_updated > self.cutoff))
    }

    /// Returns whether the version of a Provenance before its deletion targeted a resource
    /// of one of the export's other types. In an export limited to patients, the target
    /// must also be a live resource in the compartment of one of them.
    // NOTE: the target is not checked against `_typeFilter` or the time window, so the
    // deletion of a Provenance of a resource outside the export can be reported.
    fn targeted_exported_type(&self, deletion: &StoredResource) -> Result<bool> {
        let Some(value) = self.version_before(deletion)? else {
            return Ok(false);
        };
        let limited = super::limited_to_patients(self.request);
        for reference in target_references(&value) {
            let Some((resource_type, id)) = local_target(reference, &self.request.base_url) else {
                continue;
            };
            if resource_type == PROVENANCE || !self.state.types.iter().any(|t| t == resource_type) {
                continue;
            }
            if !limited || self.in_listed_compartment(resource_type, id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Returns whether the version before the deletion referenced one of `patients`, or
    /// any local patient when `patients` is `None`.
    // NOTE: this looks at every `reference` in the resource, not only the Patient
    // compartment's parameters, so a deletion can be reported for a patient who was only
    // mentioned by the resource.
    fn belonged_to(
        &self,
        deletion: &StoredResource,
        patients: Option<&HashSet<&str>>,
    ) -> Result<bool> {
        if deletion.resource_type == "Patient" {
            return Ok(patients.is_none_or(|patients| patients.contains(deletion.id.as_str())));
        }
        let Some(value) = self.version_before(deletion)? else {
            return Ok(false);
        };
        Ok(references_patient(&value, patients))
    }

    /// Reads the version a deletion ended, or `None` when it has no readable JSON.
    fn version_before(&self, deletion: &StoredResource) -> Result<Option<Value>> {
        let previous = self.context.repository.vread(
            &deletion.resource_type,
            &deletion.id,
            deletion.version - 1,
        )?;
        Ok(previous
            .and_then(|version| version.json)
            .and_then(|json| serde_json::from_str::<Value>(&json).ok()))
    }
}

/// Returns the patients a restricted visibility confines the caller to, or `None` when an
/// alternative restricts by search parameters, which a deleted resource cannot be checked
/// against (its deletions are then left out).
fn confined_patients(visibility: &hearth_cdr::Visibility) -> Option<HashSet<&str>> {
    visibility
        .alternatives
        .iter()
        .map(
            |alternative| match alternative.patient_compartment.as_deref() {
                Some(patient) if alternative.filters.is_empty() => Some(patient),
                _ => None,
            },
        )
        .collect()
}

fn references_patient(value: &Value, patients: Option<&HashSet<&str>>) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, item)| {
            let direct = key == "reference"
                && item
                    .as_str()
                    .and_then(|r| r.strip_prefix("Patient/"))
                    .and_then(|id| id.split('/').next())
                    .is_some_and(|id| patients.is_none_or(|patients| patients.contains(id)));
            direct || references_patient(item, patients)
        }),
        Value::Array(items) => items.iter().any(|item| references_patient(item, patients)),
        _ => false,
    }
}
