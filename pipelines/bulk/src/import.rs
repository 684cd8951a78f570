//! `$import`: reads NDJSON files from URLs or from the object store and stores their
//! resources with their ids, as `hearth load` does, in batches appended to
//! `hearth.resources`. A checkpoint after each applied batch records the line reached, so
//! a resumed import neither skips nor repeats a batch.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use hearth_cdr::TransactionOutcome;
use hearth_log::topics;
use hearth_schemas::{
    BulkFile, BulkFileKind, BulkJobProgressed, ResourceAction, ResourceOperation,
    ResourceTransaction, TransactionKind,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::runtime::Handle;

use crate::allow_list::HostAllowList;
use crate::jobs::{Job, JobState};
use crate::service::{BulkService, now_micros};
use crate::{Error, Result};

/// Resources in one event, at most.
const BATCH_RESOURCES: usize = 500;
/// Bytes of resource JSON in one event, at most (the log takes records up to 64 MiB).
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Key of every `hearth.resources` record, as for every other resource write.
const RESOURCES_KEY: &[u8] = b"repository";
/// How long one batch waits for the repository to apply it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Where an import resumes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ImportCheckpoint {
    input_index: usize,
    /// Lines of the current input already stored or rejected.
    lines_done: u64,
    /// Resources stored per input, in input order.
    stored: Vec<i64>,
    issues: Vec<String>,
}

/// Runs (or resumes) an import job and returns its manifest files and resource count.
pub fn run(service: &BulkService, handle: &Handle, job: &Job) -> Result<(Vec<BulkFile>, i64)> {
    let request = &job.request;
    let mut state: ImportCheckpoint = match &job.checkpoint {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::Import(format!("the job's checkpoint is unreadable: {e}")))?,
        None => ImportCheckpoint::default(),
    };
    state.stored.resize(request.inputs.len(), 0);

    while state.input_index < request.inputs.len() {
        let input = &request.inputs[state.input_index];
        match handle.block_on(open(service, &input.url)) {
            Ok(chunks) => {
                let mut importer = Importer {
                    service,
                    handle,
                    job,
                    state: &mut state,
                    expected_type: input.resource_type.clone(),
                };
                importer.import_lines(chunks)?;
            }
            Err(error) => state
                .issues
                .push(format!("{}: cannot be read: {error}", input.url)),
        }
        state.input_index += 1;
        state.lines_done = 0;
        report(service, handle, job, &state, 0)?;
    }

    let mut files: Vec<BulkFile> = request
        .inputs
        .iter()
        .zip(&state.stored)
        .map(|(input, stored)| BulkFile {
            resource_type: input.resource_type.clone(),
            url: input.url.clone(),
            count: *stored,
            bytes: 0,
            kind: BulkFileKind::Output,
        })
        .collect();
    if !state.issues.is_empty() {
        files.push(write_errors(service, handle, job, &state.issues)?);
    }
    Ok((files, state.stored.iter().sum()))
}

struct Importer<'a> {
    service: &'a BulkService,
    handle: &'a Handle,
    job: &'a Job,
    state: &'a mut ImportCheckpoint,
    expected_type: String,
}

impl Importer<'_> {
    fn import_lines(&mut self, mut chunks: BoxStream<'static, Result<Bytes>>) -> Result<()> {
        let mut carry: Vec<u8> = Vec::new();
        let mut line_number: u64 = 0;
        let mut batch = Batch::default();
        loop {
            let chunk = self.handle.block_on(chunks.next()).transpose()?;
            let at_end = chunk.is_none();
            if let Some(chunk) = chunk {
                carry.extend_from_slice(&chunk);
            }
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &carry[start..]) {
                let line = carry[start..start + end].to_vec();
                start += end + 1;
                line_number += 1;
                self.line(line_number, &line, &mut batch)?;
            }
            carry.drain(..start);
            if at_end {
                if !carry.is_empty() {
                    line_number += 1;
                    let line = std::mem::take(&mut carry);
                    self.line(line_number, &line, &mut batch)?;
                }
                self.flush(&mut batch, line_number)?;
                return Ok(());
            }
        }
    }

    fn line(&mut self, number: u64, line: &[u8], batch: &mut Batch) -> Result<()> {
        if number <= self.state.lines_done {
            return Ok(());
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match self.operation(line) {
            Ok(operation) => {
                batch.bytes += line.len();
                batch.operations.push((number, operation));
            }
            Err(message) => self.state.issues.push(format!("line {number}: {message}")),
        }
        if batch.operations.len() >= BATCH_RESOURCES || batch.bytes >= BATCH_BYTES {
            self.flush(batch, number)?;
        }
        Ok(())
    }

    fn operation(&self, line: &[u8]) -> std::result::Result<ResourceOperation, String> {
        let resource: Value =
            serde_json::from_slice(line).map_err(|e| format!("invalid JSON: {e}"))?;
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or("the line has no resourceType")?;
        if !hearth_fhir_core::resource_types::is_resource_type(resource_type) {
            return Err(format!("'{resource_type}' is not an R4 resource type"));
        }
        if resource_type != self.expected_type {
            return Err(format!(
                "the input declares {} but the line holds a {resource_type}",
                self.expected_type
            ));
        }
        // The same rules as a create or update through the FHIR API, so an import stores
        // nothing that the API would reject.
        hearth_fhir::rules::check_resource_rules(resource_type, &resource)
            .map_err(|error| error.diagnostics)?;
        let id = match resource.get("id").and_then(Value::as_str) {
            Some(id) => hearth_fhir_core::id::is_valid_id(id)
                .then(|| id.to_string())
                .ok_or_else(|| format!("the id '{id}' is not a valid FHIR id"))?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        Ok(ResourceOperation {
            action: ResourceAction::Update,
            resource_type: resource_type.to_string(),
            id: Some(id),
            full_url: None,
            resource: Some(resource.to_string()),
            if_match: None,
            if_none_exist: None,
            criteria: None,
        })
    }

    /// Stores the batch; when the repository rejects it as a whole, stores its lines one
    /// by one to find and report the bad ones.
    fn flush(&mut self, batch: &mut Batch, last_line: u64) -> Result<()> {
        if batch.operations.is_empty() {
            return Ok(());
        }
        self.check_running()?;
        let operations = std::mem::take(&mut batch.operations);
        batch.bytes = 0;
        let entries: Vec<ResourceOperation> = operations.iter().map(|(_, op)| op.clone()).collect();
        match self.store(entries)? {
            Ok(count) => self.state.stored[self.state.input_index] += count,
            Err(_) => {
                for (line, operation) in operations {
                    match self.store(vec![operation])? {
                        Ok(count) => self.state.stored[self.state.input_index] += count,
                        Err(reason) => self.state.issues.push(format!("line {line}: {reason}")),
                    }
                }
            }
        }
        self.state.lines_done = last_line;
        let written = self.state.stored.iter().sum();
        report(self.service, self.handle, self.job, self.state, written)
    }

    /// Appends one event; the outer error is a failure of the log, the inner one the
    /// repository's rejection.
    fn store(&self, entries: Vec<ResourceOperation>) -> Result<std::result::Result<i64, String>> {
        let event = ResourceTransaction {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: now_micros(),
            site_id: self.job.request.site_id.clone(),
            kind: TransactionKind::Load,
            entries,
            client_id: Some(self.job.request.client_id.clone()),
            user_id: self.job.request.fhir_user.clone(),
            request_id: None,
        };
        let value = hearth_schemas::encode(&event).map_err(|e| Error::Import(e.to_string()))?;
        let service = self.service;
        let outcome = self.handle.block_on(async {
            let position = service
                .log
                .append(topics::RESOURCES, RESOURCES_KEY, &value)
                .await
                .map_err(|e| Error::Log(e.to_string()))?;
            service
                .repository_projection
                .wait_for(position, APPLY_TIMEOUT)
                .await
                .map_err(|e| Error::Log(e.to_string()))
        })?;
        Ok(match outcome {
            Some(TransactionOutcome::Applied(entries)) => Ok(entries.len() as i64),
            Some(TransactionOutcome::Rejected(rejection)) => Err(format!("{rejection:?}")),
            Some(TransactionOutcome::Undecodable(reason)) => Err(reason),
            None => Ok(event.entries.len() as i64),
        })
    }

    fn check_running(&self) -> Result<()> {
        if self.service.is_stopping() {
            return Err(Error::ShuttingDown);
        }
        match self.service.jobs.state(&self.job.request.job_id)? {
            Some(JobState::Running) => Ok(()),
            _ => Err(Error::Cancelled),
        }
    }
}

#[derive(Default)]
struct Batch {
    operations: Vec<(u64, ResourceOperation)>,
    bytes: usize,
}

fn report(
    service: &BulkService,
    handle: &Handle,
    job: &Job,
    state: &ImportCheckpoint,
    written: i64,
) -> Result<()> {
    let checkpoint = serde_json::to_string(state)
        .map_err(|e| Error::Import(format!("cannot write a checkpoint: {e}")))?;
    let event = BulkJobProgressed {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: now_micros(),
        job_id: job.request.job_id.clone(),
        checkpoint,
        resources_written: written.max(state.stored.iter().sum()),
        files: Vec::new(),
    };
    handle.block_on(service.append(&job.request.job_id, &event))?;
    Ok(())
}

/// Opens an input as a stream of byte chunks: an `http(s)` URL on a host of
/// `import_allowed_hosts`, or a location inside the configured object store.
async fn open(service: &BulkService, url: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let response = fetch(&service.settings.import_allowed_hosts, url).await?;
        let stream = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| Error::Import(format!("reading failed: {e}"))));
        return Ok(stream.boxed());
    }
    let relative = service.files.relative_location(url).ok_or_else(|| {
        Error::Import(format!(
            "the URL is neither http(s) nor inside the bulk store at {}",
            service.files.location()
        ))
    })?;
    let resolved = service
        .files
        .resolve_inside(&relative)
        .map_err(Error::Import)?;
    let result = service.files.get_relative(&resolved).await?;
    let stream = result
        .into_stream()
        .map(|chunk| chunk.map_err(|e| Error::Storage(format!("reading failed: {e}"))));
    Ok(stream.boxed())
}

/// Redirects followed for one input, at most.
const MAX_REDIRECTS: usize = 10;

/// Sends `GET url` after checking its host against `allowed`, and checks every redirect
/// the same way, so a permitted host cannot forward the request to a host that is not.
async fn fetch(allowed: &HostAllowList, url: &str) -> Result<reqwest::Response> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Import(format!("invalid URL: {e}")))?;
    allowed.check(&parsed).map_err(Error::Import)?;
    let redirect_check = allowed.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match redirect_check.check(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(reason) => attempt.error(format!("redirect refused: {reason}")),
        }
    });
    let client = reqwest::Client::builder()
        .redirect(policy)
        .build()
        .map_err(|e| Error::Import(format!("cannot build the HTTP client: {e}")))?;
    client
        .get(parsed)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Error::Import(format!("GET failed: {}", error_chain(&e))))
}

/// The error with its sources, because reqwest keeps the reason for a refused redirect
/// in the source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn write_errors(
    service: &BulkService,
    handle: &Handle,
    job: &Job,
    issues: &[String],
) -> Result<BulkFile> {
    let mut text = String::new();
    for issue in issues {
        let outcome = json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": issue}]
        });
        text.push_str(&outcome.to_string());
        text.push('\n');
    }
    let name = "errors.ndjson";
    let bytes = text.len() as i64;
    handle.block_on(
        service
            .files
            .put(&job.request.job_id, name, text.into_bytes()),
    )?;
    Ok(BulkFile {
        resource_type: "OperationOutcome".to_string(),
        url: crate::export::file_url(&job.request, name),
        count: issues.len() as i64,
        bytes,
        kind: BulkFileKind::Error,
    })
}
