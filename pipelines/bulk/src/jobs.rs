//! The job store: a SQLite projection of `hearth.bulk`.
//!
//! Each job is one row in `jobs` with its request, its state and its latest checkpoint;
//! its finished files are rows of `files`. Whether a new job may start (the limit of
//! running jobs per client) and whether a cancellation still applies are decided here, in
//! log order, so every replica that replays the topic reaches the same answers.

use std::path::Path;

use hearth_log::Record;
use hearth_projection::{Projection, ReadPool, StoreState};
use hearth_schemas::{
    AnyEvent, BulkFile, BulkFileKind, BulkFilesDeleted, BulkJobCancelled, BulkJobCompleted,
    BulkJobFailed, BulkJobProgressed, BulkJobRequested,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Changes whenever the tables change what the store holds; a store of another version is
/// emptied and rebuilt from the log.
const STORE_VERSION: i64 = 1;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Accepted and waiting for the worker, or being worked on.
    Running,
    Completed,
    Failed,
    Cancelled,
    /// Not started because its client already had its limit of running jobs.
    Rejected,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Rejected => "rejected",
        }
    }

    fn parse(text: &str) -> JobState {
        match text {
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "rejected" => JobState::Rejected,
            _ => JobState::Running,
        }
    }
}

/// A job as the store has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub request: BulkJobRequested,
    pub state: JobState,
    pub resources_written: i64,
    /// The latest checkpoint of a running job, as the worker wrote it.
    pub checkpoint: Option<String>,
    /// Files finished so far; every file of the manifest once completed.
    pub files: Vec<BulkFile>,
    pub error: Option<String>,
    /// OperationOutcome JSON of a failed job.
    pub operation_outcome: Option<String>,
    /// When the job completed, failed or was cancelled, in microseconds since the epoch.
    pub finished_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// Whether the job's files were deleted from storage.
    pub files_deleted: bool,
}

/// What applying one `hearth.bulk` record decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// A new job was stored and is running.
    Started,
    /// The client already had `running` running jobs, so the job was not started.
    TooManyJobs { running: u32 },
    /// A cancellation applied to a job that was in `previous` state.
    Cancelled { previous: JobState },
    /// Any other event applied, or an event that no longer applies (a duplicate, a
    /// progress report of a cancelled job), which changes nothing.
    Applied,
    /// The record is not a `hearth.bulk` event this store understands.
    Undecodable(String),
}

/// The projection of `hearth.bulk` into `DATA_DIR/bulk.db`.
pub struct JobProjection {
    /// Running jobs one client may have; a request past it is rejected in log order.
    pub max_running_per_client: u32,
}

impl Projection for JobProjection {
    type Outcome = JobOutcome;
    type Prepared = Result<AnyEvent, String>;

    fn name(&self) -> &'static str {
        "bulk"
    }

    fn migrate(&mut self, conn: &Connection) -> rusqlite::Result<StoreState> {
        migrate(conn)
    }

    fn prepare(record: &Record) -> Self::Prepared {
        hearth_schemas::decode_any(&record.value).map_err(|e| e.to_string())
    }

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        _record: &Record,
        prepared: Self::Prepared,
    ) -> Result<JobOutcome, hearth_projection::Error> {
        let event = match prepared {
            Ok(event) => event,
            Err(reason) => {
                tracing::warn!(%reason, "skipping an undecodable hearth.bulk record");
                return Ok(JobOutcome::Undecodable(reason));
            }
        };
        let outcome = match event {
            AnyEvent::BulkJobRequested(event) => self.requested(tx, &event)?,
            AnyEvent::BulkJobProgressed(event) => progressed(tx, &event)?,
            AnyEvent::BulkJobCompleted(event) => completed(tx, &event)?,
            AnyEvent::BulkJobFailed(event) => failed(tx, &event)?,
            AnyEvent::BulkJobCancelled(event) => cancelled(tx, &event)?,
            AnyEvent::BulkFilesDeleted(event) => files_deleted(tx, &event)?,
            other => JobOutcome::Undecodable(format!(
                "{} does not belong on hearth.bulk",
                other_name(&other)
            )),
        };
        Ok(outcome)
    }
}

fn other_name(event: &AnyEvent) -> String {
    format!("{event:?}")
        .split(['(', ' '])
        .next()
        .unwrap_or("event")
        .to_string()
}

fn migrate(conn: &Connection) -> rusqlite::Result<StoreState> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bulk_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM bulk_meta WHERE key = 'store_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let mut state = StoreState::Current;
    if version.is_some_and(|v| v != STORE_VERSION) {
        conn.execute_batch("DROP TABLE IF EXISTS jobs; DROP TABLE IF EXISTS files;")?;
        state = StoreState::Cleared;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobs (
            job_id TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            state TEXT NOT NULL,
            request TEXT NOT NULL,
            resources_written INTEGER NOT NULL DEFAULT 0,
            checkpoint TEXT,
            error TEXT,
            operation_outcome TEXT,
            finished_at INTEGER,
            expires_at INTEGER,
            files_deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, client_id);
        CREATE TABLE IF NOT EXISTS files (
            job_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            url TEXT NOT NULL,
            count INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            PRIMARY KEY (job_id, seq)
        );",
    )?;
    conn.execute(
        "INSERT OR REPLACE INTO bulk_meta (key, value) VALUES ('store_version', ?1)",
        [STORE_VERSION],
    )?;
    Ok(state)
}

impl JobProjection {
    fn requested(
        &self,
        tx: &Transaction<'_>,
        event: &BulkJobRequested,
    ) -> rusqlite::Result<JobOutcome> {
        let exists: bool = tx
            .prepare_cached("SELECT count(*) FROM jobs WHERE job_id = ?1")?
            .query_row([&event.job_id], |row| row.get::<_, i64>(0))?
            > 0;
        if exists {
            return Ok(JobOutcome::Applied);
        }
        let running: i64 = tx
            .prepare_cached("SELECT count(*) FROM jobs WHERE state = 'running' AND client_id = ?1")?
            .query_row([&event.client_id], |row| row.get(0))?;
        let running = u32::try_from(running).unwrap_or(u32::MAX);
        let (state, outcome) = if running >= self.max_running_per_client {
            (JobState::Rejected, JobOutcome::TooManyJobs { running })
        } else {
            (JobState::Running, JobOutcome::Started)
        };
        let request = serde_json::to_string(event)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.prepare_cached(
            "INSERT INTO jobs (job_id, client_id, state, request) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            event.job_id,
            event.client_id,
            state.as_str(),
            request
        ])?;
        Ok(outcome)
    }
}

fn job_state(tx: &Transaction<'_>, job_id: &str) -> rusqlite::Result<Option<JobState>> {
    tx.prepare_cached("SELECT state FROM jobs WHERE job_id = ?1")?
        .query_row([job_id], |row| row.get::<_, String>(0))
        .optional()
        .map(|state| state.map(|s| JobState::parse(&s)))
}

fn progressed(tx: &Transaction<'_>, event: &BulkJobProgressed) -> rusqlite::Result<JobOutcome> {
    if job_state(tx, &event.job_id)? != Some(JobState::Running) {
        return Ok(JobOutcome::Applied);
    }
    tx.prepare_cached("UPDATE jobs SET checkpoint = ?2, resources_written = ?3 WHERE job_id = ?1")?
        .execute(params![
            event.job_id,
            event.checkpoint,
            event.resources_written
        ])?;
    append_files(tx, &event.job_id, &event.files)?;
    Ok(JobOutcome::Applied)
}

fn completed(tx: &Transaction<'_>, event: &BulkJobCompleted) -> rusqlite::Result<JobOutcome> {
    if job_state(tx, &event.job_id)? != Some(JobState::Running) {
        return Ok(JobOutcome::Applied);
    }
    tx.prepare_cached(
        "UPDATE jobs SET state = 'completed', resources_written = ?2, finished_at = ?3,
         expires_at = ?4, checkpoint = NULL WHERE job_id = ?1",
    )?
    .execute(params![
        event.job_id,
        event.resources_written,
        event.occurred_at,
        event.expires_at
    ])?;
    tx.prepare_cached("DELETE FROM files WHERE job_id = ?1")?
        .execute([&event.job_id])?;
    append_files(tx, &event.job_id, &event.files)?;
    Ok(JobOutcome::Applied)
}

fn failed(tx: &Transaction<'_>, event: &BulkJobFailed) -> rusqlite::Result<JobOutcome> {
    if job_state(tx, &event.job_id)? != Some(JobState::Running) {
        return Ok(JobOutcome::Applied);
    }
    tx.prepare_cached(
        "UPDATE jobs SET state = 'failed', error = ?2, operation_outcome = ?3, finished_at = ?4,
         checkpoint = NULL WHERE job_id = ?1",
    )?
    .execute(params![
        event.job_id,
        event.error,
        event.operation_outcome,
        event.occurred_at
    ])?;
    Ok(JobOutcome::Applied)
}

fn cancelled(tx: &Transaction<'_>, event: &BulkJobCancelled) -> rusqlite::Result<JobOutcome> {
    let previous = match job_state(tx, &event.job_id)? {
        Some(state @ (JobState::Running | JobState::Completed | JobState::Failed)) => state,
        Some(_) | None => return Ok(JobOutcome::Applied),
    };
    tx.prepare_cached(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, checkpoint = NULL WHERE job_id = ?1",
    )?
    .execute(params![event.job_id, event.occurred_at])?;
    Ok(JobOutcome::Cancelled { previous })
}

fn files_deleted(tx: &Transaction<'_>, event: &BulkFilesDeleted) -> rusqlite::Result<JobOutcome> {
    tx.prepare_cached("UPDATE jobs SET files_deleted = 1 WHERE job_id = ?1")?
        .execute([&event.job_id])?;
    Ok(JobOutcome::Applied)
}

fn append_files(tx: &Transaction<'_>, job_id: &str, files: &[BulkFile]) -> rusqlite::Result<()> {
    let next: i64 = tx
        .prepare_cached("SELECT coalesce(max(seq) + 1, 0) FROM files WHERE job_id = ?1")?
        .query_row([job_id], |row| row.get(0))?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO files (job_id, seq, kind, resource_type, url, count, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (offset, file) in files.iter().enumerate() {
        insert.execute(params![
            job_id,
            next + offset as i64,
            kind_name(file.kind),
            file.resource_type,
            file.url,
            file.count,
            file.bytes
        ])?;
    }
    Ok(())
}

fn kind_name(kind: BulkFileKind) -> &'static str {
    match kind {
        BulkFileKind::Output => "output",
        BulkFileKind::Error => "error",
        BulkFileKind::Deleted => "deleted",
    }
}

fn parse_kind(text: &str) -> BulkFileKind {
    match text {
        "error" => BulkFileKind::Error,
        "deleted" => BulkFileKind::Deleted,
        _ => BulkFileKind::Output,
    }
}

/// Read access to the job store.
#[derive(Clone)]
pub struct JobStore {
    pool: ReadPool,
}

impl JobStore {
    /// Opens read access to the store at `path`, which the projection runner creates.
    pub fn open(path: &Path) -> Self {
        JobStore {
            pool: ReadPool::new(path, 8),
        }
    }

    /// Returns the job, or `None` when no job has this id.
    pub fn get(&self, job_id: &str) -> rusqlite::Result<Option<Job>> {
        let conn = self.pool.get()?;
        let row = conn
            .prepare_cached(
                "SELECT request, state, resources_written, checkpoint, error, operation_outcome,
                 finished_at, expires_at, files_deleted FROM jobs WHERE job_id = ?1",
            )?
            .query_row([job_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                    row.get::<_, i64>(8)?,
                ))
            })
            .optional()?;
        let Some((request, state, written, checkpoint, error, outcome, finished, expires, deleted)) =
            row
        else {
            return Ok(None);
        };
        let request: BulkJobRequested = serde_json::from_str(&request).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        let files = files_of(&conn, job_id)?;
        Ok(Some(Job {
            request,
            state: JobState::parse(&state),
            resources_written: written,
            checkpoint,
            files,
            error,
            operation_outcome: outcome,
            finished_at: finished,
            expires_at: expires,
            files_deleted: deleted != 0,
        }))
    }

    /// Returns the state of a job alone, cheaply, for the worker's cancellation checks.
    pub fn state(&self, job_id: &str) -> rusqlite::Result<Option<JobState>> {
        let conn = self.pool.get()?;
        conn.prepare_cached("SELECT state FROM jobs WHERE job_id = ?1")?
            .query_row([job_id], |row| row.get::<_, String>(0))
            .optional()
            .map(|state| state.map(|s| JobState::parse(&s)))
    }

    /// Ids of running jobs, oldest first.
    pub fn running(&self) -> rusqlite::Result<Vec<String>> {
        self.ids_where("state = 'running'")
    }

    /// Ids of cancelled jobs whose files are not deleted yet.
    pub fn cancelled_with_files(&self) -> rusqlite::Result<Vec<String>> {
        self.ids_where("state = 'cancelled' AND files_deleted = 0")
    }

    /// Ids of finished jobs whose files expired before `now` and are not deleted yet. A
    /// completed job's files expire at its `expires_at`. A failed job has no manifest and
    /// no `expires_at`, so the partial files it left expire `failed_lifetime`
    /// microseconds after it failed.
    pub fn expired(&self, now: i64, failed_lifetime: i64) -> rusqlite::Result<Vec<String>> {
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(
            "SELECT job_id FROM jobs WHERE files_deleted = 0 AND (
                (state = 'completed' AND expires_at IS NOT NULL AND expires_at < ?1)
                OR (state = 'failed'
                    AND COALESCE(expires_at, finished_at + ?2, 0) < ?1))
             ORDER BY rowid",
        )?;
        let ids = statement.query_map([now, failed_lifetime], |row| row.get(0))?;
        ids.collect()
    }

    fn ids_where(&self, condition: &str) -> rusqlite::Result<Vec<String>> {
        let conn = self.pool.get()?;
        let sql = format!("SELECT job_id FROM jobs WHERE {condition} ORDER BY rowid");
        let mut statement = conn.prepare_cached(&sql)?;
        let ids = statement.query_map([], |row| row.get(0))?;
        ids.collect()
    }
}

fn files_of(conn: &Connection, job_id: &str) -> rusqlite::Result<Vec<BulkFile>> {
    let mut statement = conn.prepare_cached(
        "SELECT kind, resource_type, url, count, bytes FROM files WHERE job_id = ?1 ORDER BY seq",
    )?;
    let rows = statement.query_map([job_id], |row| {
        Ok(BulkFile {
            kind: parse_kind(&row.get::<_, String>(0)?),
            resource_type: row.get(1)?,
            url: row.get(2)?,
            count: row.get(3)?,
            bytes: row.get(4)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts a finished job row as the projection leaves it.
    fn insert_job(
        conn: &Connection,
        job_id: &str,
        state: &str,
        finished: i64,
        expires: Option<i64>,
    ) {
        conn.execute(
            "INSERT INTO jobs (job_id, client_id, state, request, finished_at, expires_at)
             VALUES (?1, 'c', ?2, '{}', ?3, ?4)",
            params![job_id, state, finished, expires],
        )
        .unwrap();
    }

    #[test]
    fn failed_jobs_expire_after_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bulk.db");
        let conn = Connection::open(&path).unwrap();
        migrate(&conn).unwrap();
        insert_job(&conn, "failed-old", "failed", 1_000, None);
        insert_job(&conn, "failed-new", "failed", 9_000, None);
        insert_job(&conn, "completed-old", "completed", 1_000, Some(2_000));
        insert_job(&conn, "completed-new", "completed", 9_000, Some(20_000));
        insert_job(&conn, "running", "running", 0, None);
        drop(conn);

        let store = JobStore::open(&path);
        let expired = store.expired(10_000, 5_000).unwrap();
        assert_eq!(expired, ["failed-old", "completed-old"]);
    }
}
