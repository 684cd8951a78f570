//! `organizeOutputBy=Patient`: NDJSON files of resource blocks, one block per patient.
//!
//! A block is a header line, a `Parameters` resource whose `header` parameter references
//! the patient, followed by the resources of the export in that patient's compartment:
//! the Patient first, then the other types in export order. Blocks with no resource are
//! left out. Files end only between blocks, so a block is never split across files and
//! the manifest never needs `continuesInFile`. A block larger than `file_max_resources`
//! makes its file larger than that.
//!
//! The patients are the job's patient list (Group members, or the `patient` parameter),
//! or else every Patient the caller may search, in storage order. Checkpoints fall between
//! blocks: they record the position in the patient list, or the storage position of the
//! last patient whose block is in a finished file.

use hearth_cdr::search::Filter;
use hearth_schemas::BulkFile;
use serde_json::json;

use super::provenance::ProvenanceTargets;
use super::sink::{NdjsonPart, PartWriter};
use super::{Checkpoint, Export, elements_of, limited_to_patients};
use crate::Result;

/// Patient ids read in one query when the export walks every Patient.
const PATIENT_PAGE: usize = 1000;

/// One exported type's part of every block: its filters and `_elements`.
struct TypePlan {
    resource_type: String,
    /// `None` when the type has `_typeFilter` queries and none of them can run.
    alternatives: Option<Vec<Vec<Filter>>>,
    elements: Vec<String>,
    /// The checks of associated Provenance, when the type is Provenance added by
    /// `includeAssociatedData`.
    targets: Option<ProvenanceTargets>,
}

impl Export<'_> {
    /// Writes every block from the checkpoint's position on.
    pub(super) fn export_by_patient(
        &mut self,
        report: &mut dyn FnMut(&Checkpoint, Vec<BulkFile>) -> Result<()>,
    ) -> Result<()> {
        let mut plans = Vec::new();
        for resource_type in self.state.types.clone() {
            if (self.context.access)(&resource_type).is_none() {
                continue;
            }
            let alternatives = self.type_filters(&resource_type);
            let targets = match &alternatives {
                Some(alternatives) => self.provenance_targets(&resource_type, alternatives),
                None => None,
            };
            plans.push(TypePlan {
                alternatives,
                elements: elements_of(&self.request.elements, &resource_type),
                targets,
                resource_type,
            });
        }
        let mut part: Option<PartWriter> = None;
        loop {
            self.check_running()?;
            let patients = self.next_patients()?;
            if patients.is_empty() {
                break;
            }
            for (position, patient) in patients {
                self.write_block(&plans, &patient, &mut part)?;
                match position {
                    Some(rid) => self.state.after = Some(rid),
                    None => self.state.patient_index += 1,
                }
                let full = part
                    .as_ref()
                    .is_some_and(|p| p.count() >= self.context.settings.file_max_resources);
                if full {
                    let file = self.close_part("Patient", "output", part.take())?;
                    self.state.part += 1;
                    report(&self.state, file)?;
                }
            }
        }
        let file = self.close_part("Patient", "output", part.take())?;
        self.state.type_index = self.state.types.len();
        report(&self.state, file)
    }

    /// The next patients to write blocks for, each with its storage position when the
    /// export walks every Patient.
    fn next_patients(&self) -> Result<Vec<(Option<i64>, String)>> {
        if limited_to_patients(self.request) {
            let next = self
                .request
                .patients
                .iter()
                .skip(self.state.patient_index)
                .take(PATIENT_PAGE)
                .map(|id| (None, id.clone()))
                .collect();
            return Ok(next);
        }
        let settings = self.context.settings;
        let limit = hearth_cdr::PageLimit {
            rows: PATIENT_PAGE,
            bytes: settings.page_bytes.max(1),
        };
        let access = hearth_cdr::search::SearchAccess {
            search: self.context.access,
            read: self.context.access,
            compartment: None,
        };
        let page = self.context.repository.export_page(
            "Patient",
            &[],
            &access,
            limit,
            self.state.after,
        )?;
        Ok(page
            .rows
            .into_iter()
            .map(|row| (Some(row.rid), row.id))
            .collect())
    }

    /// Writes one patient's block, or nothing when no resource of the export is in the
    /// patient's compartment.
    // NOTE: associated Provenance is read from the patient's compartment too, so a block
    // contains only the Provenance that also targets the Patient. A Provenance that
    // targets only the patient's other resources is left out.
    fn write_block(
        &mut self,
        plans: &[TypePlan],
        patient: &str,
        part: &mut Option<PartWriter>,
    ) -> Result<()> {
        let mut started = false;
        for plan in plans {
            let Some(alternatives) = &plan.alternatives else {
                continue;
            };
            let mut after = None;
            loop {
                let page = self.page(&plan.resource_type, alternatives, Some(patient), after)?;
                self.throttle(page.rows.len());
                for row in page.rows {
                    let exported = self.exported_text(
                        &plan.resource_type,
                        row,
                        &plan.elements,
                        plan.targets.as_ref(),
                    )?;
                    let Some(text) = exported else {
                        continue;
                    };
                    let writer = match part {
                        Some(writer) => writer,
                        None => part.insert(self.open_organized_part()),
                    };
                    if !started {
                        writer.write(&header(patient), None)?;
                        started = true;
                    }
                    writer.write(&text, None)?;
                    self.state.resources_written += 1;
                }
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn open_organized_part(&self) -> PartWriter {
        let name = self.part_name("output");
        PartWriter::Ndjson(Box::new(NdjsonPart::create(
            self.context.handle.clone(),
            self.context.files,
            &self.request.job_id,
            &name,
        )))
    }
}

/// The header line that starts a patient's block.
pub fn header(patient: &str) -> String {
    json!({
        "resourceType": "Parameters",
        "parameter": [{"name": "header", "valueReference": {"reference": format!("Patient/{patient}")}}]
    })
    .to_string()
}
