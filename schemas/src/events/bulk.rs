//! Events of the `hearth.bulk` topic: the lifecycle of Bulk Data export and import jobs.

use serde::{Deserialize, Serialize};

/// A Bulk Data kick-off request was accepted and a job was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobRequested {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Id of the job, part of its status URL.
    pub job_id: String,
    pub kind: BulkJobKind,
    pub level: ExportLevel,
    /// Logical id of the Group for a GROUP level export.
    pub group_id: Option<String>,
    pub site_id: String,
    pub client_id: String,
    /// Kick-off request URL, reported as request in the manifest.
    pub request_url: String,
    /// MIME type of the output files, e.g. application/fhir+ndjson.
    pub output_format: String,
    /// _since: export only resources changed after this time.
    pub since: Option<i64>,
    /// _until: export only resources changed before this time.
    pub until: Option<i64>,
    /// _type: resource types to export. Empty exports every type the client may read.
    pub types: Vec<String>,
    /// _typeFilter: FHIR search queries such as Observation?category=laboratory.
    pub type_filters: Vec<String>,
    /// _elements: element names to keep, optionally prefixed by a resource type.
    pub elements: Vec<String>,
    /// Patient references from the patient parameter of a POST kick-off.
    pub patients: Vec<String>,
    /// includeAssociatedData values, e.g. LatestProvenanceResources.
    pub include_associated_data: Vec<String>,
    /// organizeOutputBy: resource type by which to group the output files, e.g. Patient.
    pub organize_output_by: Option<String>,
    /// allowPartialManifests: whether the client accepts manifests before the job completes.
    pub allow_partial_manifests: bool,
    /// MIME type of the input files of an IMPORT.
    pub input_format: Option<String>,
    /// URI of the system the IMPORT data comes from.
    pub input_source: Option<String>,
    /// Files to read for an IMPORT.
    pub inputs: Vec<BulkImportInput>,
    /// Time the export reflects, reported as transactionTime in the manifest. Changes after it are
    /// not exported.
    pub transaction_time: i64,
    /// Whether downloading the output files requires an access token (manifest
    /// requiresAccessToken).
    pub requires_access_token: bool,
    /// Space-separated scopes of the caller's access token. The job exports only what they
    /// allow. Added in version 2.
    pub scope: String,
    /// Id of the patient in the caller's launch context, for patient scopes. Added in
    /// version 2.
    pub patient_context: Option<String>,
    /// The caller's fhirUser, such as `Patient/123`, for user scopes. Added in version 2.
    pub fhir_user: Option<String>,
    /// Absolute URL of the site's FHIR base, from which file and status URLs are built.
    /// Added in version 2.
    pub base_url: String,
    /// Kick-off parameters that lenient handling left out, each as a message for the job's
    /// error file. Added in version 3.
    pub warnings: Vec<String>,
}

/// A running bulk job reached a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobProgressed {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub job_id: String,
    /// JSON text from which the job resumes after a restart. Its format belongs to the job runner.
    pub checkpoint: String,
    /// Resources written since the job started.
    pub resources_written: i64,
    /// Files finished since the previous checkpoint.
    pub files: Vec<BulkFile>,
}

/// A bulk job finished and its manifest is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobCompleted {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub job_id: String,
    /// Resources written in total.
    pub resources_written: i64,
    /// Every file of the manifest.
    pub files: Vec<BulkFile>,
    /// Time when the files will be deleted. None keeps them until the client deletes the job.
    pub expires_at: Option<i64>,
}

/// A bulk job stopped with an error. The status URL returns the error as an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobFailed {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub job_id: String,
    /// Message for the client, without internal detail.
    pub error: String,
    /// OperationOutcome returned by the status URL, as JSON text. None means one is built from
    /// error.
    pub operation_outcome: Option<String>,
}

/// A bulk job was cancelled by a DELETE on its status URL before it completed, or by an
/// administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobCancelled {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub job_id: String,
    /// client_id or administrator user id that cancelled the job.
    pub actor: String,
    pub reason: Option<String>,
}

/// Output files of a bulk job were deleted from storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFilesDeleted {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    pub job_id: String,
    /// URLs of the deleted files.
    pub urls: Vec<String>,
    pub reason: BulkFilesDeletedReason,
}

/// One file of a Bulk Data manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFile {
    /// FHIR resource type of the resources in the file.
    pub resource_type: String,
    /// URL at which the client downloads the file.
    pub url: String,
    /// Number of resources in the file.
    pub count: i64,
    /// Size of the file in bytes.
    pub bytes: i64,
    pub kind: BulkFileKind,
}

/// One NDJSON file named by a Bulk Data $import request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkImportInput {
    /// FHIR resource type of the resources in the file.
    pub resource_type: String,
    /// URL from which Hearth reads the file.
    pub url: String,
}

/// Bulk Data operation: $export or $import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BulkJobKind {
    Export,
    Import,
}

/// Level of a Bulk Data kick-off request: [base]/$export, [base]/Patient/$export or
/// [base]/Group/[id]/$export. Imports are SYSTEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportLevel {
    System,
    Patient,
    Group,
}

/// Manifest section of a bulk file: output, error (OperationOutcome resources) or deleted (Bundles
/// of deleted resources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BulkFileKind {
    Output,
    Error,
    Deleted,
}

/// Reason bulk files were deleted. CLIENT_REQUEST is a DELETE on the status URL of a finished job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BulkFilesDeletedReason {
    Expired,
    ClientRequest,
    Cancelled,
}
