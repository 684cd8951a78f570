//! Runs projections of the log into SQLite stores.
//!
//! A [`Projection`] turns records of one topic into rows of its own SQLite database. The
//! [`start`] runner reads the topic from the offsets stored in that same database, applies
//! records in batches, and writes the next offsets in the transaction that holds the
//! batch's changes. A crash therefore never applies a record twice or skips one, and
//! deleting the database and starting again rebuilds the same state from offset zero.
//!
//! Decisions that must be unique (a conditional create, a code redeemed once) are made by
//! the projection in log order. A request handler appends its record, then calls
//! [`ProjectionHandle::wait_for`] to learn the outcome the projection reached for it.

mod checkpoint;
mod dump;
mod pool;
mod runner;

pub use checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};
pub use dump::dump;
pub use pool::{PooledConnection, ReadPool};
pub use runner::{ProjectionHandle, RunnerOptions, start};

use hearth_log::Record;
use rusqlite::{Connection, Transaction};

/// A store built from the records of one topic.
pub trait Projection: Send + 'static {
    /// What applying one record decided, handed to the request that appended it.
    type Outcome: Send + Sync + 'static;

    /// What [`Projection::prepare`] computes from one record for [`Projection::apply`].
    /// A projection with nothing to prepare uses `()`.
    type Prepared: Send + 'static;

    /// A short stable name, used in logs.
    fn name(&self) -> &'static str;

    /// Creates the projection's tables and indexes if they do not exist. A store written by
    /// an incompatible version of the projection is emptied here, and [`StoreState::Cleared`]
    /// tells the runner to apply the topic again from offset zero.
    fn migrate(&mut self, conn: &Connection) -> rusqlite::Result<StoreState>;

    /// Does the work on one record that depends on nothing but the record, such as decoding
    /// it. The runner calls it on a thread of its own, ahead of the writer, so it must not
    /// read the store: whatever depends on the store is decided in [`Projection::apply`].
    fn prepare(record: &Record) -> Self::Prepared;

    /// Applies one record inside the batch transaction, given what `prepare` computed from
    /// that same record.
    ///
    /// Records that the projection rejects (a failed precondition, content it cannot use)
    /// produce an outcome that says so; an `Err` means the store itself failed and stops
    /// the runner, because skipping a record would make replicas disagree.
    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        record: &Record,
        prepared: Self::Prepared,
    ) -> Result<Self::Outcome, Error>;
}

/// What [`Projection::migrate`] found in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    /// The store is new or was written by a compatible version; applying resumes at the
    /// stored offsets.
    Current,
    /// The store was written by an incompatible version and has been emptied; applying
    /// starts again at offset zero.
    Cleared,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("log error: {0}")]
    Log(#[from] hearth_log::Error),
    #[error("projection {name} stopped: {reason}")]
    Stopped { name: &'static str, reason: String },
    #[error("timed out after {0:?} waiting for the projection to apply the record")]
    Timeout(std::time::Duration),
    #[error("projection store failed: {0}")]
    Store(String),
    /// The store applied records the log no longer has: the log was replaced, emptied or
    /// lost its tail. Serving from such a store would hide the loss, so the runner refuses.
    #[error(
        "the {name} store has applied {topic} up to offsets {applied:?}, but the log ends at {end:?}: \
         the log lost records or is another log. Rebuild the store from the log with `hearth replay {name}`"
    )]
    AheadOfLog {
        name: &'static str,
        topic: String,
        applied: Vec<u64>,
        end: Vec<u64>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Opens a SQLite connection with the settings every projection store uses: WAL so readers
/// never block the writer, and `synchronous=NORMAL`, which keeps each commit atomic but may
/// lose the last commits on power loss. That loss is safe because the offsets live in the
/// same commits, so the runner re-applies those records from the log.
pub fn open_connection(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "cache_size", -262144)?;
    // Savepoints inside a batch (a transaction applied all or nothing) write a statement
    // journal; in memory it costs no file I/O.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoint the WAL into the database every 64 MiB of WAL instead of every 4 MiB,
    // so bulk loads copy pages less often.
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    Ok(conn)
}
