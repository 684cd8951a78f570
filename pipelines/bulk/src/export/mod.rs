//! The export engine: reads the repository page by page and writes NDJSON or Parquet
//! files, reporting a checkpoint each time a file is finished.
//!
//! Files are cut only at page boundaries and each checkpoint records where the next page
//! starts (resource type, patient, storage position) and the number of the next file. A
//! job that resumes from a checkpoint writes the file after the last finished one under
//! a name that file would have had, so an interrupted upload is simply replaced: the files
//! of a resumed job neither repeat nor miss a resource.

mod by_patient;
mod deleted;
mod lines;
mod provenance;
mod sink;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hearth_cdr::search::{Filter, ParseOptions, SearchAccess, ValueContext};
use hearth_cdr::{ExportRow, Repository, StoredResource, Visibility};
use hearth_fhir_core::{resource_types, search_params};
use hearth_schemas::{BulkFile, BulkFileKind, BulkJobRequested, ExportLevel};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::runtime::Handle;

use crate::jobs::{JobState, JobStore};
use crate::request::{OutputFormat, query_pairs};
use crate::storage::FileStore;
use crate::views::View;
use crate::{Error, Result};

pub use lines::{one_line, subset_elements};
use provenance::{PROVENANCE, ProvenanceTargets, exports_associated_provenance};
use sink::{NdjsonPart, ParquetPart, PartWriter};

/// Limits of the export engine.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Resources read from the repository in one query, at most.
    pub page_size: usize,
    /// Bytes of resource JSON read in one query: a page ends with the resource that
    /// reaches this, so a page of large resources stays bounded in memory.
    pub page_bytes: usize,
    /// Resources in one output file, at most (files end at a page boundary after this).
    pub file_max_resources: i64,
    /// Resources exported per second by one job, at most; 0 means no limit. Keeps large
    /// exports from starving interactive requests of the repository.
    pub max_resources_per_second: u64,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            page_size: 4000,
            page_bytes: 8 * 1024 * 1024,
            file_max_resources: 100_000,
            max_resources_per_second: 0,
        }
    }
}

/// Which part of the job a checkpoint is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Output,
    Deleted,
    Errors,
    Done,
}

/// Where a job resumes: stored as JSON in `BulkJobProgressed.checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Resource types of the job in export order, fixed when the job starts.
    pub types: Vec<String>,
    pub phase: Phase,
    pub type_index: usize,
    /// Index into the job's patient list, for exports limited to patients.
    pub patient_index: usize,
    /// Storage position after which the next page starts. In an export organized by
    /// patient without a patient list, it is the position of the last Patient whose block
    /// is in a finished file.
    pub after: Option<i64>,
    /// Number of the next file of the current type.
    pub part: u32,
    pub resources_written: i64,
    /// Messages for the error file: parameters left out, resources that failed.
    pub issues: Vec<String>,
    /// Whether Provenance is in `types` only as `includeAssociatedData`, so that a
    /// Provenance is written only when it targets a resource the export writes.
    /// Checkpoints of jobs started before this field existed lack it, and those jobs
    /// go on exporting Provenance as a plain type.
    #[serde(default)]
    pub associated_provenance: bool,
}

/// What the engine needs besides the job.
pub struct ExportContext<'a> {
    pub repository: &'a Repository,
    pub files: &'a FileStore,
    pub jobs: &'a JobStore,
    pub handle: Handle,
    pub settings: &'a ExportSettings,
    /// What the job's caller may see of a type, or `None` when its scopes deny the type.
    pub access: &'a dyn Fn(&str) -> Option<Visibility>,
    /// Set when the server shuts down; the job then stops before its next page.
    pub stopping: &'a std::sync::atomic::AtomicBool,
}

/// The manifest of a finished export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportResult {
    pub files: Vec<BulkFile>,
    pub resources_written: i64,
}

/// Runs (or resumes) an export. `checkpoint` is the last one reported, `finished` the
/// files finished before it; `report` is called with each new checkpoint and the files
/// finished since the previous one, and must make both durable before returning.
pub fn run(
    context: &ExportContext<'_>,
    request: &BulkJobRequested,
    checkpoint: Option<Checkpoint>,
    finished: Vec<BulkFile>,
    report: &mut dyn FnMut(&Checkpoint, Vec<BulkFile>) -> Result<()>,
) -> Result<ExportResult> {
    let mut export = Export {
        context,
        request,
        format: OutputFormat::from_mime_type(&request.output_format),
        cutoff: request.until.map_or(request.transaction_time, |until| {
            until.min(request.transaction_time)
        }),
        state: match checkpoint {
            Some(checkpoint) => checkpoint,
            None => plan(context, request)?,
        },
        files: finished,
        started: Instant::now(),
        scanned: 0,
    };
    export.run_phases(report)?;
    Ok(ExportResult {
        files: export.files,
        resources_written: export.state.resources_written,
    })
}

/// The first checkpoint of a job: its resource types and the issues found at kick-off.
fn plan(context: &ExportContext<'_>, request: &BulkJobRequested) -> Result<Checkpoint> {
    let organized = organized_by_patient(request);
    // An export organized by patient holds only resources of patient compartments.
    let compartment_only = request.level != ExportLevel::System || organized;
    let mut candidates: Vec<String> = if request.types.is_empty() {
        resource_types::all()
            .iter()
            .filter(|t| !compartment_only || in_patient_compartment(t))
            .cloned()
            .collect()
    } else {
        request.types.clone()
    };
    // Provenance named in `_type`, or exported with every type, is a plain type.
    // Otherwise `includeAssociatedData` adds it, and only Provenance whose target is
    // exported is written (see the `provenance` module).
    let associated_provenance =
        exports_associated_provenance(&request.types, &request.include_associated_data);
    if associated_provenance {
        candidates.push(PROVENANCE.to_string());
    }
    let mut issues = request.warnings.clone();
    let mut types = Vec::new();
    for resource_type in candidates {
        if compartment_only && !in_patient_compartment(&resource_type) {
            if organized {
                issues.push(format!(
                    "{resource_type} is outside the Patient compartment, so an export organized by Patient leaves it out"
                ));
            }
            continue;
        }
        if (context.access)(&resource_type).is_none() {
            continue;
        }
        // Skip types with no resource at all, so a system export does not scan 146 types.
        if !has_any(context.repository, &resource_type)? && request.since.is_none() {
            continue;
        }
        types.push(resource_type);
    }
    // Each block of an export organized by patient starts with the Patient itself.
    if organized && let Some(index) = types.iter().position(|t| t == "Patient") {
        let patient = types.remove(index);
        types.insert(0, patient);
    }
    Ok(Checkpoint {
        types,
        issues,
        associated_provenance,
        ..Checkpoint::default()
    })
}

/// Whether the repository holds a live resource of the type.
fn has_any(repository: &Repository, resource_type: &str) -> Result<bool> {
    let everything = |_: &str| Some(Visibility::everything());
    let access = SearchAccess {
        search: &everything,
        read: &everything,
        compartment: None,
    };
    let limit = hearth_cdr::PageLimit { rows: 1, bytes: 1 };
    let page = repository.export_page(resource_type, &[], &access, limit, None)?;
    Ok(!page.rows.is_empty())
}

/// Whether the job asked for `organizeOutputBy=Patient`.
pub fn organized_by_patient(request: &BulkJobRequested) -> bool {
    request.organize_output_by.as_deref() == Some("Patient")
}

/// Whether resources of a type can belong to a patient's compartment.
pub fn in_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || !search_params::compartment_params(resource_type).is_empty()
}

struct Export<'a> {
    context: &'a ExportContext<'a>,
    request: &'a BulkJobRequested,
    format: OutputFormat,
    /// Versions written after this time (the transaction time, or `_until`) are not
    /// exported; the version current at that time is.
    cutoff: i64,
    state: Checkpoint,
    files: Vec<BulkFile>,
    started: Instant,
    scanned: u64,
}

impl Export<'_> {
    fn run_phases(
        &mut self,
        report: &mut dyn FnMut(&Checkpoint, Vec<BulkFile>) -> Result<()>,
    ) -> Result<()> {
        loop {
            match self.state.phase {
                Phase::Output => {
                    if organized_by_patient(self.request) {
                        self.export_by_patient(report)?;
                    } else {
                        while self.state.type_index < self.state.types.len() {
                            self.export_type(report)?;
                        }
                    }
                    self.next_phase(Phase::Deleted);
                }
                Phase::Deleted => {
                    if self.request.since.is_some() {
                        while self.state.type_index < self.state.types.len() {
                            let file = self.deleted_of_type()?;
                            self.state.type_index += 1;
                            let new_files: Vec<BulkFile> = file.into_iter().collect();
                            self.files.extend(new_files.clone());
                            report(&self.state, new_files)?;
                        }
                    }
                    self.next_phase(Phase::Errors);
                }
                Phase::Errors => {
                    let file = self.write_errors()?;
                    self.files.extend(file);
                    self.next_phase(Phase::Done);
                }
                Phase::Done => return Ok(()),
            }
        }
    }

    fn next_phase(&mut self, phase: Phase) {
        self.state.phase = phase;
        self.state.type_index = 0;
        self.state.patient_index = 0;
        self.state.after = None;
        self.state.part = 0;
    }

    /// Exports the current type from the checkpoint's position to its end.
    fn export_type(
        &mut self,
        report: &mut dyn FnMut(&Checkpoint, Vec<BulkFile>) -> Result<()>,
    ) -> Result<()> {
        let resource_type = self.state.types[self.state.type_index].clone();
        let readable = (self.context.access)(&resource_type).is_some();
        let alternatives = self.type_filters(&resource_type);
        let elements = elements_of(&self.request.elements, &resource_type);
        let view = (self.format == OutputFormat::Parquet).then(|| View::for_type(&resource_type));
        let mut part: Option<PartWriter> = None;
        let targets = match &alternatives {
            Some(alternatives) => self.provenance_targets(&resource_type, alternatives),
            None => None,
        };

        // Associated Provenance is read once over every Provenance the caller may
        // search, because its targets, not the Provenance, are in the patients'
        // compartments.
        // NOTE: so a Group export reads every Provenance of the repository, however
        // small the Group is.
        let limited = limited_to_patients(self.request) && targets.is_none();
        // A resource in the compartments of several listed patients (a Group, an
        // Encounter of two patients) is written for the first of them only. Whether an
        // earlier patient had it is asked of the repository, so memory stays within the
        // size of the patient list whatever the data size, and a resumed job decides as
        // the first run did.
        let first_positions = (readable && limited && self.request.patients.len() > 1)
            .then(|| first_positions(&self.request.patients));
        // A Patient export without a patient list reads whole types, so it keeps only
        // resources in some patient's compartment: not those without a subject, nor those
        // whose only patient is another server's.
        let any_compartment = self.request.level == ExportLevel::Patient
            && !limited
            && targets.is_none()
            && resource_type != "Patient";
        while readable && let Some(alternatives) = &alternatives {
            // A Group with no members exports nothing, because an empty patient list
            // never widens to every patient.
            let patient = match self.request.patients.get(self.state.patient_index) {
                Some(patient) if limited => Some(patient.as_str()),
                None if limited => break,
                _ => None,
            };
            self.check_running()?;
            let page = self.page(&resource_type, alternatives, patient, self.state.after)?;
            self.throttle(page.rows.len());
            for row in page.rows {
                if let Some(first_positions) = &first_positions
                    && self.written_for_earlier_patient(&resource_type, &row, first_positions)?
                {
                    continue;
                }
                if any_compartment
                    && self
                        .context
                        .repository
                        .compartment_patients(&resource_type, row.rid, &row.id)?
                        .is_empty()
                {
                    continue;
                }
                let exported =
                    self.exported_text(&resource_type, row, &elements, targets.as_ref())?;
                let Some(text) = exported else {
                    continue;
                };
                let writer = match &mut part {
                    Some(writer) => writer,
                    None => part.insert(self.open_part(&resource_type, view.clone())?),
                };
                writer.write(&text, None)?;
                self.state.resources_written += 1;
            }
            let type_done = match page.next_after {
                Some(after) => {
                    self.state.after = Some(after);
                    false
                }
                None if patient.is_some() => {
                    self.state.after = None;
                    self.state.patient_index += 1;
                    false
                }
                None => true,
            };
            let full = part
                .as_ref()
                .is_some_and(|p| p.count() >= self.context.settings.file_max_resources);
            if full && !type_done {
                let file = self.close_part(&resource_type, &resource_type, part.take())?;
                self.state.part += 1;
                report(&self.state, file)?;
            }
            if type_done {
                break;
            }
        }

        let file = self.close_part(&resource_type, &resource_type, part.take())?;
        self.state.type_index += 1;
        self.state.patient_index = 0;
        self.state.after = None;
        self.state.part = 0;
        report(&self.state, file)
    }

    /// Returns whether `row`, found in the compartment of the current patient, is also in
    /// the compartment of a patient listed before it, so that patient's pass wrote it.
    fn written_for_earlier_patient(
        &self,
        resource_type: &str,
        row: &ExportRow,
        first_positions: &HashMap<&str, usize>,
    ) -> Result<bool> {
        let current = self.state.patient_index;
        let patients =
            self.context
                .repository
                .compartment_patients(resource_type, row.rid, &row.id)?;
        Ok(patients.iter().any(|patient| {
            first_positions
                .get(patient.as_str())
                .is_some_and(|position| *position < current)
        }))
    }

    /// Reads one page of a type: what the caller may search, in `patient`'s compartment
    /// when one is given, matching one of `alternatives`.
    fn page(
        &self,
        resource_type: &str,
        alternatives: &[Vec<Filter>],
        patient: Option<&str>,
        after: Option<i64>,
    ) -> Result<hearth_cdr::ExportPage> {
        let settings = self.context.settings;
        let rows = settings
            .page_size
            .min(usize::try_from(settings.file_max_resources).unwrap_or(usize::MAX))
            .max(1);
        let limit = hearth_cdr::PageLimit {
            rows,
            bytes: settings.page_bytes.max(1),
        };
        let access = SearchAccess {
            search: self.context.access,
            read: self.context.access,
            compartment: patient,
        };
        Ok(self.context.repository.export_page(
            resource_type,
            alternatives,
            &access,
            limit,
            after,
        )?)
    }

    /// The `_typeFilter` queries of a type, parsed by the search engine: no alternatives
    /// when the type has no filter, `None` when it has filters but none of them can run
    /// (the type is then left out, because dropping its filters would widen the export).
    fn type_filters(&mut self, resource_type: &str) -> Option<Vec<Vec<Filter>>> {
        let queries: Vec<&str> = self
            .request
            .type_filters
            .iter()
            .filter_map(|filter| filter.split_once('?'))
            .filter(|(filter_type, _)| *filter_type == resource_type)
            .map(|(_, query)| query)
            .collect();
        let options = ParseOptions {
            strict: true,
            context: ValueContext {
                base_url: &self.request.base_url,
                now: self.request.transaction_time,
            },
        };
        let mut alternatives = Vec::new();
        for query in &queries {
            match hearth_cdr::search::parse(resource_type, &query_pairs(query), &options) {
                Ok(parsed) => alternatives.push(parsed.filters),
                Err(error) => self.note(format!(
                    "_typeFilter '{resource_type}?{query}' cannot run and was left out: {error}"
                )),
            }
        }
        if !queries.is_empty() && alternatives.is_empty() {
            self.note(format!(
                "no _typeFilter of {resource_type} can run, so no {resource_type} was exported"
            ));
            return None;
        }
        Some(alternatives)
    }

    /// Adds a message for the error file once, because a resumed job meets the same
    /// problems again.
    fn note(&mut self, issue: String) {
        if !self.state.issues.contains(&issue) {
            self.state.issues.push(issue);
        }
    }

    fn open_part(
        &self,
        resource_type: &str,
        view: Option<std::sync::Arc<View>>,
    ) -> Result<PartWriter> {
        let name = self.part_name(resource_type);
        let handle = self.context.handle.clone();
        let job_id = &self.request.job_id;
        Ok(match view {
            Some(view) => PartWriter::Parquet(Box::new(ParquetPart::create(
                handle,
                self.context.files,
                job_id,
                &name,
                view,
            )?)),
            None => PartWriter::Ndjson(Box::new(NdjsonPart::create(
                handle,
                self.context.files,
                job_id,
                &name,
            ))),
        })
    }

    /// The name of the current file: `Type-N.ext`, or `output-N.ndjson` in an export
    /// organized by patient.
    fn part_name(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}.{}",
            self.state.part + 1,
            self.format.extension()
        )
    }

    /// Finishes a file and returns its manifest entry (none when nothing was written).
    /// `prefix` starts the file's name, as in [`Self::part_name`].
    fn close_part(
        &mut self,
        resource_type: &str,
        prefix: &str,
        part: Option<PartWriter>,
    ) -> Result<Vec<BulkFile>> {
        let Some(part) = part else {
            return Ok(Vec::new());
        };
        let count = part.count();
        let bytes = part.finish()?;
        let file = BulkFile {
            resource_type: resource_type.to_string(),
            url: file_url(self.request, &self.part_name(prefix)),
            count,
            bytes,
            kind: BulkFileKind::Output,
        };
        self.files.push(file.clone());
        Ok(vec![file])
    }

    /// The line to export for a resource, or `None` when it is outside the time window
    /// or, with `targets`, a Provenance that targets no resource the export writes.
    /// A resource changed after the cutoff is exported as it was at the cutoff. Without
    /// `_elements` the stored JSON is written as it is, because it is already compact.
    fn exported_text(
        &mut self,
        resource_type: &str,
        row: ExportRow,
        elements: &[String],
        targets: Option<&ProvenanceTargets>,
    ) -> Result<Option<String>> {
        let id = row.id;
        let in_window =
            self.version_in_window(resource_type, &id, row.version, row.last_updated, row.json)?;
        let Some((json, last_updated)) = in_window else {
            return Ok(None);
        };
        if let Some(targets) = targets
            && !self.is_associated(targets, &id, last_updated, &json)?
        {
            return Ok(None);
        }
        let line = one_line(json);
        if elements.is_empty() || self.format == OutputFormat::Parquet {
            return Ok(Some(line));
        }
        match subset_elements(&line, elements) {
            Ok(subset) => Ok(Some(subset)),
            Err(error) => {
                self.state.issues.push(format!(
                    "{resource_type}/{id}: _elements could not be applied: {error}"
                ));
                Ok(Some(line))
            }
        }
    }

    /// The JSON and `meta.lastUpdated` of a resource as the export writes it: the version
    /// current at the cutoff, given as the current `version` and its `last_updated` and
    /// `json`. Returns `None` when the resource did not exist at the cutoff or that
    /// version is older than `_since`.
    fn version_in_window(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
        last_updated: i64,
        json: String,
    ) -> Result<Option<(String, i64)>> {
        let (json, last_updated) = if last_updated > self.cutoff {
            match self.version_at_cutoff(resource_type, id, version)? {
                Some(StoredResource {
                    json: Some(json),
                    last_updated,
                    ..
                }) => (json, last_updated),
                _ => return Ok(None),
            }
        } else {
            (json, last_updated)
        };
        if self.request.since.is_some_and(|since| last_updated < since) {
            return Ok(None);
        }
        Ok(Some((json, last_updated)))
    }

    fn version_at_cutoff(
        &self,
        resource_type: &str,
        id: &str,
        current: i64,
    ) -> Result<Option<StoredResource>> {
        for number in (1..current).rev() {
            let Some(version) = self.context.repository.vread(resource_type, id, number)? else {
                continue;
            };
            if version.last_updated <= self.cutoff {
                return Ok((!version.is_deleted()).then_some(version));
            }
        }
        Ok(None)
    }

    fn check_running(&self) -> Result<()> {
        if self
            .context
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::ShuttingDown);
        }
        match self.context.jobs.state(&self.request.job_id)? {
            Some(JobState::Running) => Ok(()),
            _ => Err(Error::Cancelled),
        }
    }

    fn throttle(&mut self, resources: usize) {
        self.scanned += resources as u64;
        let rate = self.context.settings.max_resources_per_second;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.scanned as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }

    fn write_errors(&mut self) -> Result<Vec<BulkFile>> {
        if self.state.issues.is_empty() {
            return Ok(Vec::new());
        }
        let name = "errors.ndjson";
        let mut text = String::new();
        for issue in &self.state.issues {
            let outcome = json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "processing", "diagnostics": issue}]
            });
            text.push_str(&outcome.to_string());
            text.push('\n');
        }
        let bytes = text.len() as i64;
        self.context.handle.block_on(self.context.files.put(
            &self.request.job_id,
            name,
            text.into_bytes(),
        ))?;
        Ok(vec![BulkFile {
            resource_type: "OperationOutcome".to_string(),
            url: file_url(self.request, name),
            count: self.state.issues.len() as i64,
            bytes,
            kind: BulkFileKind::Error,
        }])
    }
}

/// The URL of a job's file.
pub fn file_url(request: &BulkJobRequested, name: &str) -> String {
    format!("{}/$bulk-file/{}/{name}", request.base_url, request.job_id)
}

/// The `_elements` entries that apply to a type: unprefixed ones and `Type.element`.
fn elements_of(elements: &[String], resource_type: &str) -> Vec<String> {
    elements
        .iter()
        .filter_map(|element| match element.split_once('.') {
            Some((prefix, name)) if prefix == resource_type => Some(name.to_string()),
            Some(_) => None,
            None => Some(element.clone()),
        })
        .collect()
}

/// Whether a job exports only the compartments of its patient list: every Group export,
/// and Patient exports with the `patient` parameter.
pub fn limited_to_patients(request: &BulkJobRequested) -> bool {
    request.level == ExportLevel::Group || !request.patients.is_empty()
}

/// Ids kept in a set, for deleted-resource checks of patient-limited exports.
/// Maps each listed patient to its first position in the list, so a patient listed twice
/// is exported at its first position only.
fn first_positions(patients: &[String]) -> HashMap<&str, usize> {
    let mut positions = HashMap::with_capacity(patients.len());
    for (position, patient) in patients.iter().enumerate() {
        positions.entry(patient.as_str()).or_insert(position);
    }
    positions
}

fn patient_set(request: &BulkJobRequested) -> HashSet<&str> {
    request.patients.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests;
