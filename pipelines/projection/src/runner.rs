//! The runner: partition readers feed a prepare thread, which feeds one writer thread that
//! owns the SQLite connection.
//!
//! The prepare thread runs [`Projection::prepare`] on each record in log order and hands the
//! results on in chunks, so the writer applies one chunk while the next is being prepared.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use hearth_log::{Log, Position, Record};
use parking_lot::Mutex;
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{
    Checkpointer, Error, Projection, Result, StoreState, WRITER_AUTOCHECKPOINT_PAGES,
    open_connection,
};

/// How a runner reads and batches.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub topic: String,
    /// The projection's SQLite file; created when missing.
    pub db_path: PathBuf,
    /// Records applied in one SQLite transaction, at most.
    pub max_batch_records: usize,
    /// Outcomes kept for requests that have not collected theirs yet. The oldest go first;
    /// a request whose outcome was dropped learns that its record was applied, not how.
    pub kept_outcomes: usize,
}

impl RunnerOptions {
    pub fn new(topic: &str, db_path: PathBuf) -> Self {
        RunnerOptions {
            topic: topic.to_string(),
            db_path,
            max_batch_records: 2000,
            kept_outcomes: 20_000,
        }
    }
}

/// The applied offsets of a running projection and the outcomes waiting to be collected.
pub struct ProjectionHandle<O> {
    shared: Arc<Shared<O>>,
}

impl<O> Clone for ProjectionHandle<O> {
    fn clone(&self) -> Self {
        ProjectionHandle {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<O> {
    name: &'static str,
    progress: watch::Sender<Progress>,
    outcomes: Mutex<BTreeMap<Position, O>>,
    kept_outcomes: usize,
    readers: Mutex<Vec<JoinHandle<()>>>,
    /// The prepare thread, then the writer thread.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Records prepared in one go before the prepare thread hands them to the writer. Small
/// enough that the writer starts early on a long catch-up batch, large enough that small
/// records still reach the writer in batches.
const PREPARE_CHUNK_RECORDS: usize = 64;

/// Prepared chunks waiting for the writer, at most.
const PREPARED_CHUNKS_QUEUED: usize = 4;

#[derive(Debug, Clone)]
struct Progress {
    /// Next offset to apply, per partition.
    next: Vec<u64>,
    stopped: Option<String>,
}

/// Opens (or creates) the projection's store and starts applying the topic from the
/// offsets stored there.
pub async fn start<P: Projection>(
    log: Arc<dyn Log>,
    mut projection: P,
    options: RunnerOptions,
) -> Result<ProjectionHandle<P::Outcome>> {
    let partitions = log.partition_count(&options.topic).await?;
    let name = projection.name();

    let conn = open_connection(&options.db_path)?;
    create_offsets_table(&conn)?;
    if projection.migrate(&conn)? == StoreState::Cleared {
        tracing::warn!(
            projection = name,
            "the store was written by an incompatible version; rebuilding it from offset zero"
        );
        clear_offsets(&conn)?;
    }
    let next = load_offsets(&conn, &options.topic, partitions)?;
    let ends = log.end_offsets(&options.topic).await?;
    if next.iter().zip(&ends).any(|(applied, end)| applied > end) {
        return Err(Error::AheadOfLog {
            name,
            topic: options.topic.clone(),
            applied: next,
            end: ends,
        });
    }
    tracing::info!(projection = name, topic = %options.topic, offsets = ?next, "projection starting");

    let (progress, _) = watch::channel(Progress {
        next: next.clone(),
        stopped: None,
    });
    let shared = Arc::new(Shared {
        name,
        progress,
        outcomes: Mutex::new(BTreeMap::new()),
        kept_outcomes: options.kept_outcomes,
        readers: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
    });

    let (sender, receiver) = mpsc::channel::<Vec<Record>>(8);
    for (partition, offset) in next.iter().enumerate() {
        let reader = tokio::spawn(read_partition(
            log.clone(),
            options.topic.clone(),
            partition as u32,
            *offset,
            options.max_batch_records,
            sender.clone(),
        ));
        shared.readers.lock().push(reader);
    }
    drop(sender);

    let (prepared_sender, prepared_receiver) = std_mpsc::sync_channel(PREPARED_CHUNKS_QUEUED);
    let preparer = std::thread::Builder::new()
        .name(format!("prepare-{name}"))
        .spawn(move || prepare_records::<P>(receiver, prepared_sender))
        .map_err(|e| Error::Store(format!("cannot start the prepare thread: {e}")))?;
    shared.threads.lock().push(preparer);

    // The checkpoint thread copies the WAL back into the database, so the writer does not.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    let checkpointer = Checkpointer::start(&options.db_path, name)?;

    let writer_shared = shared.clone();
    let writer = std::thread::Builder::new()
        .name(format!("projection-{name}"))
        .spawn(move || {
            let mut writer = Writer {
                conn,
                projection,
                topic: options.topic,
                next,
                max_batch_records: options.max_batch_records,
                shared: writer_shared,
                checkpointer,
            };
            writer.run(prepared_receiver);
        })
        .map_err(|e| Error::Store(format!("cannot start the writer thread: {e}")))?;
    shared.threads.lock().push(writer);

    Ok(ProjectionHandle { shared })
}

impl<O> ProjectionHandle<O> {
    /// Waits until the record at `position` is applied and returns its outcome, or `None`
    /// when the outcome was already collected or dropped.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<Option<O>> {
        let reached = |progress: &Progress| {
            progress
                .next
                .get(position.partition as usize)
                .is_some_and(|next| *next > position.offset)
        };
        self.wait_until(reached, timeout).await?;
        Ok(self.shared.outcomes.lock().remove(&position))
    }

    /// Waits until every partition has applied the records before the given offsets.
    pub async fn wait_for_offsets(&self, ends: &[u64], timeout: Duration) -> Result<()> {
        let reached = |progress: &Progress| {
            ends.iter()
                .enumerate()
                .all(|(partition, end)| progress.next.get(partition).is_some_and(|n| n >= end))
        };
        self.wait_until(reached, timeout).await
    }

    /// The next offset to apply, per partition.
    pub fn next_offsets(&self) -> Vec<u64> {
        self.shared.progress.borrow().next.clone()
    }

    /// Returns why the projection stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.shared.progress.borrow().stopped.clone()
    }

    async fn wait_until(
        &self,
        reached: impl Fn(&Progress) -> bool,
        timeout: Duration,
    ) -> Result<()> {
        let mut progress = self.shared.progress.subscribe();
        let wait = async {
            loop {
                {
                    let current = progress.borrow_and_update();
                    if reached(&current) {
                        return Ok(());
                    }
                    if let Some(reason) = &current.stopped {
                        return Err(Error::Stopped {
                            name: self.shared.name,
                            reason: reason.clone(),
                        });
                    }
                }
                if progress.changed().await.is_err() {
                    return Err(Error::Stopped {
                        name: self.shared.name,
                        reason: "the runner is gone".to_string(),
                    });
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Stops reading, lets the writer finish what was prepared, and waits for it.
    pub async fn stop(&self) {
        for reader in self.shared.readers.lock().drain(..) {
            reader.abort();
        }
        let threads: Vec<_> = self.shared.threads.lock().drain(..).collect();
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

struct Writer<P: Projection> {
    conn: Connection,
    projection: P,
    topic: String,
    next: Vec<u64>,
    max_batch_records: usize,
    shared: Arc<Shared<P::Outcome>>,
    checkpointer: Checkpointer,
}

impl<P: Projection> Writer<P> {
    fn run(&mut self, receiver: std_mpsc::Receiver<Prepared<P>>) {
        while let Ok(mut batch) = receiver.recv() {
            while batch.len() < self.max_batch_records {
                match receiver.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.apply_batch(batch) {
                let name = self.shared.name;
                tracing::error!(projection = name, %error, "projection stopped");
                self.shared
                    .progress
                    .send_modify(|p| p.stopped = Some(error.to_string()));
                return;
            }
        }
    }

    fn apply_batch(&mut self, batch: Prepared<P>) -> Result<()> {
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut next = self.next.clone();
        for (record, prepared) in batch {
            let expected = next[record.partition as usize];
            if record.offset < expected {
                // A reader restarted after an error can deliver records applied already.
                continue;
            }
            let outcome = self.projection.apply(&tx, &record, prepared)?;
            let position = Position {
                partition: record.partition,
                offset: record.offset,
            };
            outcomes.push((position, outcome));
            next[record.partition as usize] = record.offset + 1;
        }
        save_offsets(&tx, &self.topic, &self.next, &next)?;
        tx.commit()?;
        self.checkpointer.committed();
        self.next = next.clone();

        self.keep_outcomes(outcomes);
        self.shared.progress.send_modify(|p| p.next = next);
        Ok(())
    }

    fn keep_outcomes(&self, outcomes: Vec<(Position, P::Outcome)>) {
        let mut kept = self.shared.outcomes.lock();
        kept.extend(outcomes);
        while kept.len() > self.shared.kept_outcomes {
            kept.pop_first();
        }
    }
}

/// Records in log order, each with what [`Projection::prepare`] made of it.
type Prepared<P> = Vec<(Record, <P as Projection>::Prepared)>;

/// Runs [`Projection::prepare`] on every record the readers deliver, in their order, and
/// passes the results to the writer in chunks. Ends when the readers are gone or the writer
/// has stopped.
fn prepare_records<P: Projection>(
    mut receiver: mpsc::Receiver<Vec<Record>>,
    sender: std_mpsc::SyncSender<Prepared<P>>,
) {
    while let Some(batch) = receiver.blocking_recv() {
        let mut records = batch.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Prepared<P> = records
                .by_ref()
                .take(PREPARE_CHUNK_RECORDS)
                .map(|record| {
                    let prepared = P::prepare(&record);
                    (record, prepared)
                })
                .collect();
            if sender.send(chunk).is_err() {
                return;
            }
        }
    }
}

async fn read_partition(
    log: Arc<dyn Log>,
    topic: String,
    partition: u32,
    mut next: u64,
    max: usize,
    sender: mpsc::Sender<Vec<Record>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut reader = match log.read(&topic, partition, next).await {
            Ok(reader) => reader,
            Err(error) => {
                tracing::warn!(%topic, partition, %error, ?backoff, "cannot open the log; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            match reader.next_batch(max, Duration::from_secs(1)).await {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    backoff = Duration::from_millis(100);
                    next = batch.last().map_or(next, |r| r.offset + 1);
                    if sender.send(batch).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%topic, partition, %error, ?backoff, "reading the log failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    break;
                }
            }
        }
    }
}

fn create_offsets_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS projection_offsets (
            topic TEXT NOT NULL,
            partition INTEGER NOT NULL,
            next_offset INTEGER NOT NULL,
            PRIMARY KEY (topic, partition)
        )",
    )
}

/// Forgets every stored offset, for a store that [`Projection::migrate`] emptied.
fn clear_offsets(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM projection_offsets", [])
        .map(|_| ())
}

fn load_offsets(conn: &Connection, topic: &str, partitions: u32) -> rusqlite::Result<Vec<u64>> {
    let mut next = vec![0u64; partitions as usize];
    let mut statement =
        conn.prepare("SELECT partition, next_offset FROM projection_offsets WHERE topic = ?1")?;
    let rows = statement.query_map([topic], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (partition, offset) = row?;
        if let Some(slot) = next.get_mut(partition as usize) {
            *slot = offset as u64;
        }
    }
    Ok(next)
}

fn save_offsets(
    conn: &Connection,
    topic: &str,
    before: &[u64],
    after: &[u64],
) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT INTO projection_offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
    )?;
    for (partition, (old, new)) in before.iter().zip(after).enumerate() {
        if old != new {
            statement.execute(params![topic, partition as i64, *new as i64])?;
        }
    }
    Ok(())
}
