//! Bulk Data export and import for Hearth.
//!
//! Jobs are driven by events on `hearth.bulk`: a kick-off appends `BulkJobRequested`, the
//! [`worker`] runs the job and appends `BulkJobProgressed` at each checkpoint, then
//! `BulkJobCompleted` or `BulkJobFailed`; a DELETE appends `BulkJobCancelled` and
//! `BulkFilesDeleted`. The job store ([`jobs`]) is the projection of that topic, so jobs
//! survive a restart and resume from their last checkpoint. Files are written through
//! object_store to a local directory or an S3-compatible bucket ([`storage`]), as NDJSON
//! or as Parquet with columns from SQL-on-FHIR style view definitions ([`views`]).

pub mod allow_list;
pub mod cohort;
pub mod config;
pub mod export;
pub mod http;
pub mod import;
pub mod jobs;
pub mod request;
pub mod service;
pub mod storage;
pub mod views;
pub mod worker;

pub use jobs::{Job, JobOutcome, JobProjection, JobState, JobStore};
pub use service::{BulkService, BulkSettings};
pub use storage::FileStore;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("repository query failed: {0}")]
    Repository(#[from] hearth_cdr::Error),
    #[error("file storage failed: {0}")]
    Storage(String),
    #[error("the event log failed: {0}")]
    Log(String),
    #[error("invalid view definition: {0}")]
    View(String),
    #[error("export failed: {0}")]
    Export(String),
    #[error("import failed: {0}")]
    Import(String),
    /// The job was cancelled while it ran.
    #[error("the job was cancelled")]
    Cancelled,
    /// The server is shutting down: the job stops at its last checkpoint and resumes
    /// from it at the next start.
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl Error {
    /// The message a client sees in the OperationOutcome of a failed job: the kind of
    /// failure without internal detail, which is logged.
    pub fn client_message(&self) -> String {
        match self {
            Error::Import(message) => format!("the import failed: {message}"),
            Error::Storage(_) => "the job could not write its files; try again later".to_string(),
            Error::Log(_) => "the event log was unavailable; try again later".to_string(),
            _ => "the job failed; the failure is logged on the server".to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
