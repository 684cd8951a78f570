//! The analytics sink: a consumer of `hearth.auth` and `hearth.api` that writes rows into
//! ClickHouse in batches.
//!
//! Each batch is bounded by a record count and by the time since its first record. The
//! sink commits the batch's log offsets only after ClickHouse acknowledged every row of
//! it, and skips records whose rows ClickHouse holds already (see `watermark.rs`), so
//! rows are written once even when records are delivered again. While ClickHouse is
//! unreachable the sink keeps the batch, retries with exponential backoff and reads at
//! most one batch ahead, so events wait in the log. It stops, without committing, on a record it
//! cannot decode and on errors that retrying cannot fix, such as a table that does not
//! match the rows.

mod batch;
mod dedup;
mod stages;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hearth_log::{CommittedOffset, Log, Record, topics};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::client::ClickHouse;
use crate::convert::Converter;
use crate::pseudonym::Pseudonyms;
use crate::watermark::Watermarks;
use crate::{CONSUMER_GROUP, Error, Result, migrate};

use stages::{BatchReader, BatchWriter, PreparedBatch, Processing, Retry, Written};

/// How the sink batches and retries.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Consumer group whose offsets the sink commits.
    pub group: String,
    /// Records per batch at most (capped at 1,000,000).
    pub max_batch_records: usize,
    /// Time from a batch's first record until it is written, at most.
    pub max_batch_delay: Duration,
    /// First wait after a transient error; it doubles on each retry.
    pub retry_initial: Duration,
    /// Maximum wait between retries.
    pub retry_max: Duration,
    /// Return once the log has nothing left that was appended before the start, instead
    /// of following it. For backfills and benchmarks.
    pub stop_at_end: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            group: CONSUMER_GROUP.to_string(),
            max_batch_records: 100_000,
            max_batch_delay: Duration::from_secs(1),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            stop_at_end: false,
        }
    }
}

/// Counts of a sink run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SinkSummary {
    /// Log records read, of every event type.
    pub records: u64,
    /// Rows written to ClickHouse.
    pub rows_written: u64,
    /// Rows left out because ClickHouse held them already.
    pub rows_already_stored: u64,
    /// Records left out because an earlier record had the same event id (a producer's
    /// retried append).
    pub duplicate_events: u64,
    pub batches: u64,
}

/// What the sink is doing, for `GET /admin/analytics/status`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SinkStatus {
    /// `starting`, `running`, `retrying`, `stopped` or `failed`.
    pub state: &'static str,
    /// The last error, transient or not.
    pub last_error: Option<String>,
    /// Unix seconds of the last batch ClickHouse acknowledged.
    pub last_batch_at: Option<i64>,
    #[serde(flatten)]
    pub totals: SinkSummary,
}

/// A sink running as a task.
pub struct SinkHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<SinkSummary>>,
    status: Arc<Mutex<SinkStatus>>,
}

impl SinkHandle {
    pub fn status(&self) -> SinkStatus {
        self.status.lock().clone()
    }

    /// A shared view of the status that stays valid after the handle is gone.
    pub fn status_source(&self) -> Arc<Mutex<SinkStatus>> {
        self.status.clone()
    }

    /// Asks the sink to stop after the batch it is writing and waits for it.
    pub async fn stop(self) -> Result<SinkSummary> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(Error::Config(format!(
                "the analytics sink task failed: {error}"
            ))),
        }
    }

    /// Waits for a sink started with `stop_at_end`.
    pub async fn join(self) -> Result<SinkSummary> {
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(Error::Config(format!(
                "the analytics sink task failed: {error}"
            ))),
        }
    }
}

/// Starts the sink as a task. It logs and records its errors in the status; a sink
/// that stopped on an error is not restarted.
pub fn spawn(
    log: Arc<dyn Log>,
    client: ClickHouse,
    pseudonyms: Pseudonyms,
    options: SinkOptions,
) -> SinkHandle {
    let (stop, stop_requested) = watch::channel(false);
    let status = Arc::new(Mutex::new(SinkStatus {
        state: "starting",
        ..SinkStatus::default()
    }));
    let retry = |stop: &watch::Receiver<bool>| Retry {
        initial: options.retry_initial,
        max: options.retry_max,
        status: status.clone(),
        stop: stop.clone(),
    };
    let reader = BatchReader::new(
        client.clone(),
        Converter::new(pseudonyms),
        &options,
        retry(&stop_requested),
    );
    let writer = BatchWriter {
        client: client.clone(),
        watermarks: Watermarks::default(),
        retry: retry(&stop_requested),
    };
    let sink = Sink {
        log,
        client,
        reader,
        writer,
        options,
        stop: stop_requested,
        status: status.clone(),
        totals: SinkSummary::default(),
    };
    let task = tokio::spawn(sink.run());
    SinkHandle { stop, task, status }
}

struct Sink {
    log: Arc<dyn Log>,
    client: ClickHouse,
    reader: BatchReader,
    writer: BatchWriter,
    options: SinkOptions,
    stop: watch::Receiver<bool>,
    status: Arc<Mutex<SinkStatus>>,
    totals: SinkSummary,
}

impl Sink {
    async fn run(mut self) -> Result<SinkSummary> {
        let result = self.consume().await;
        let mut status = self.status.lock();
        status.totals = self.totals.clone();
        match &result {
            Ok(()) => {
                status.state = "stopped";
                tracing::info!(summary = ?self.totals, "analytics sink stopped");
            }
            Err(error) => {
                status.state = "failed";
                status.last_error = Some(error.to_string());
                tracing::error!(%error, "stopping the analytics sink; its log offsets stay uncommitted, so it resumes from there when started again");
            }
        }
        result.map(|()| self.totals.clone())
    }

    /// Follows the log. Each round reads and converts the next batch while the previous
    /// one is inserted, then commits the previous batch's offsets.
    async fn consume(&mut self) -> Result<()> {
        if !self.prepare().await? {
            return Ok(());
        }
        let ends = if self.options.stop_at_end {
            Some(end_offsets(self.log.as_ref()).await?)
        } else {
            None
        };
        let mut consumer = self
            .log
            .join_group(&self.options.group, &[topics::AUTH, topics::API])
            .await?;
        let mut reached: BTreeMap<(String, u32), u64> = BTreeMap::new();
        let mut idle_polls = 0;
        let mut in_flight: Option<PreparedBatch> = None;
        tracing::info!(group = %self.options.group, database = self.client.database(), "analytics sink started");

        // NOTE: a stop request drops a batch that was read but not yet written; its
        // offsets stay uncommitted, so the next start reads it again.
        while !*self.stop.borrow() {
            let reader = &mut self.reader;
            let writer = &mut self.writer;
            let write = async {
                match in_flight.as_mut() {
                    Some(batch) => writer.write(&mut batch.pending).await.map(Some),
                    None => Ok(None),
                }
            };
            let (next, written) = tokio::join!(reader.next(consumer.as_mut()), write);

            match written {
                Ok(Some(written)) => {
                    if let Some(batch) = in_flight.take() {
                        self.record_batch(&batch, written);
                        if let Err(error) = consumer.commit(&batch.commits).await {
                            // The rows are in ClickHouse; a later commit or the watermarks
                            // cover a replay of these records.
                            tracing::warn!(%error, "committing the analytics sink's log offsets failed");
                        }
                    }
                }
                Ok(None) => {}
                Err(Processing::Stopped) => return Ok(()),
                Err(Processing::Failed(error)) => return Err(error),
            }
            match next {
                Ok(Some(batch)) => {
                    idle_polls = 0;
                    for commit in &batch.commits {
                        reached
                            .insert((commit.topic.clone(), commit.partition), commit.next_offset);
                    }
                    in_flight = Some(batch);
                }
                Ok(None) => {
                    idle_polls += 1;
                    if let Some(ends) = &ends
                        && idle_polls >= 2
                        && caught_up(ends, &reached)
                    {
                        break;
                    }
                }
                Err(Processing::Stopped) => return Ok(()),
                Err(Processing::Failed(error)) => return Err(error),
            }
        }
        Ok(())
    }

    /// Adds a written batch to the totals and the status.
    fn record_batch(&mut self, batch: &PreparedBatch, written: Written) {
        self.totals.records += batch.records;
        self.totals.duplicate_events += batch.duplicates;
        self.totals.rows_written += written.rows;
        self.totals.rows_already_stored += written.already_stored;
        self.totals.batches += 1;
        let mut status = self.status.lock();
        status.state = "running";
        status.last_batch_at = Some(time::OffsetDateTime::now_utc().unix_timestamp());
        status.totals = self.totals.clone();
        drop(status);
        tracing::debug!(
            records = batch.records,
            rows = written.rows,
            already_stored = written.already_stored,
            elapsed_ms = batch.started.elapsed().as_millis() as u64,
            "analytics batch written"
        );
    }

    /// Applies migrations and loads the watermarks and site backings, retrying while
    /// ClickHouse is unreachable. Returns false when a stop was requested meanwhile.
    async fn prepare(&mut self) -> Result<bool> {
        let mut attempt = 0;
        loop {
            let prepared = async {
                let report = migrate::migrate(&self.client).await?;
                if !report.applied.is_empty() {
                    tracing::info!(applied = ?report.applied, "applied ClickHouse migrations");
                }
                let watermarks = Watermarks::load(&self.client).await?;
                let backings = batch::load_backings(&self.client).await?;
                Ok::<_, Error>((watermarks, backings))
            };
            match prepared.await {
                Ok((watermarks, backings)) => {
                    self.writer.watermarks = watermarks;
                    for (site_id, backing) in backings {
                        self.reader.converter.remember_backing(site_id, backing);
                    }
                    self.status.lock().state = "running";
                    return Ok(true);
                }
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    if self.writer.retry.wait(&error, attempt).await.is_err() {
                        return Ok(false);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// The wait before retry number `attempt` (from 1): `initial` for the first retry, doubled
/// for each later one, at most `max`.
fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(max)
}

/// The offsets to commit after a batch: one past the last record of each partition.
fn next_offsets(records: &[Record]) -> Vec<CommittedOffset> {
    let mut next: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for record in records {
        let entry = next.entry((&record.topic, record.partition)).or_insert(0);
        *entry = (*entry).max(record.offset + 1);
    }
    next.into_iter()
        .map(|((topic, partition), next_offset)| CommittedOffset {
            topic: topic.to_string(),
            partition,
            next_offset,
        })
        .collect()
}

async fn end_offsets(log: &dyn Log) -> Result<BTreeMap<(String, u32), u64>> {
    let mut ends = BTreeMap::new();
    for topic in [topics::AUTH, topics::API] {
        for (partition, end) in log.end_offsets(topic).await?.into_iter().enumerate() {
            let partition = u32::try_from(partition).unwrap_or(u32::MAX);
            ends.insert((topic.to_string(), partition), end);
        }
    }
    Ok(ends)
}

/// Whether every partition the sink read from reached its end offset from the start.
/// Partitions it never read from had nothing past the group's committed offset.
fn caught_up(ends: &BTreeMap<(String, u32), u64>, reached: &BTreeMap<(String, u32), u64>) -> bool {
    reached
        .iter()
        .all(|(key, next)| ends.get(key).is_none_or(|end| next >= end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(initial, max, 0), Duration::from_millis(100));
        assert_eq!(backoff(initial, max, 1), Duration::from_millis(100));
        assert_eq!(backoff(initial, max, 2), Duration::from_millis(200));
        assert_eq!(backoff(initial, max, 4), Duration::from_millis(800));
        assert_eq!(backoff(initial, max, 5), Duration::from_secs(1));
        assert_eq!(backoff(initial, max, 40), Duration::from_secs(1));
    }

    fn record(topic: &str, partition: u32, offset: u64) -> Record {
        Record {
            topic: topic.to_string(),
            partition,
            offset,
            timestamp_ms: 0,
            key: Default::default(),
            value: Default::default(),
        }
    }

    #[test]
    fn commits_follow_the_last_record_of_each_partition() {
        let records = [
            record("hearth.api", 0, 4),
            record("hearth.auth", 0, 9),
            record("hearth.api", 0, 5),
            record("hearth.api", 1, 2),
        ];
        let commits = next_offsets(&records);
        let found: Vec<(&str, u32, u64)> = commits
            .iter()
            .map(|c| (c.topic.as_str(), c.partition, c.next_offset))
            .collect();
        assert_eq!(
            found,
            vec![
                ("hearth.api", 0, 6),
                ("hearth.api", 1, 3),
                ("hearth.auth", 0, 10)
            ]
        );
    }

    #[test]
    fn caught_up_when_read_partitions_reach_their_ends() {
        let ends = BTreeMap::from([
            (("hearth.api".to_string(), 0), 10),
            (("hearth.auth".to_string(), 0), 5),
        ]);
        let mut reached = BTreeMap::from([(("hearth.api".to_string(), 0), 9)]);
        assert!(!caught_up(&ends, &reached));
        reached.insert(("hearth.api".to_string(), 0), 10);
        assert!(caught_up(&ends, &reached));
    }
}
