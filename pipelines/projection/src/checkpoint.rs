//! WAL checkpoints on a thread of their own, so the writer never copies pages back into the
//! database file itself.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::open_connection;

/// The minimum time between two checkpoints. Each one copies every page written since the
/// last, so running them less often copies a page changed by several commits only once.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// WAL pages after which the writer checkpoints by itself, as a backstop for a checkpoint
/// thread that cannot keep up: 262,144 pages of 4 KiB, or 1 GiB.
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 262_144;

/// The sending side of a checkpoint thread. Dropping it ends the thread after one last
/// checkpoint.
pub struct Checkpointer {
    commits: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts a thread that checkpoints the WAL of the store at `path` through a connection of
    /// its own, at most every [`CHECKPOINT_INTERVAL`] and only after a commit. A passive
    /// checkpoint waits for no reader or writer (SQLite's `wal_checkpoint` documentation) and
    /// copies the frames that no reader still needs.
    pub fn start(path: &Path, name: &str) -> rusqlite::Result<Self> {
        let conn = open_connection(path)?;
        let (commits, receiver) = mpsc::sync_channel::<()>(1);
        let name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("checkpoint-{name}"))
            .spawn(move || {
                while receiver.recv().is_ok() {
                    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(projection = %name, %error, "WAL checkpoint failed; retrying after the next commit");
                    }
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                }
            })
            .map_err(|e| {
                rusqlite::Error::ToSqlConversionFailure(
                    format!("cannot start the checkpoint thread: {e}").into(),
                )
            })?;
        Ok(Checkpointer {
            commits: Some(commits),
            thread: Some(thread),
        })
    }

    /// Tells the thread that a commit added pages to the WAL. Never blocks: commits made while
    /// a checkpoint is pending are covered by that checkpoint.
    pub fn committed(&self) {
        if let Some(commits) = &self.commits {
            let _ = commits.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.commits.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
