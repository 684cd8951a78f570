//! The two halves of the sink that run at the same time: the reader turns log records into
//! rows, the writer inserts the previous batch's rows into ClickHouse.
//!
//! Decoding and converting a batch is CPU work in the sink, inserting it is mostly work in
//! ClickHouse, so running them side by side lets the sink read batch N+1 while ClickHouse
//! stores batch N. The writer handles one batch at a time, in log order, and the sink commits
//! a batch's offsets only after the writer returned for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_log::{CommittedOffset, GroupConsumer, Record};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::batch::{self, Decoded, PendingRows};
use super::dedup::RecentEvents;
use super::{SinkOptions, SinkStatus, backoff, next_offsets};
use crate::client::ClickHouse;
use crate::convert::{Converter, GrantUser};
use crate::watermark::Watermarks;
use crate::{Error, Result};

/// ClickHouse forms one part per partition from at most `max_insert_block_size` rows
/// (1,048,576 by default); larger batches would split an insert into several parts and
/// break the exactly-once argument of `watermark.rs`.
const MAX_BATCH_RECORDS: usize = 1_000_000;

/// The reason a stage ended early.
pub(super) enum Processing {
    /// A stop was requested while the stage waited to retry.
    Stopped,
    Failed(Error),
}

impl From<Error> for Processing {
    fn from(error: Error) -> Self {
        Processing::Failed(error)
    }
}

/// Waits between attempts after transient errors, and notices stop requests meanwhile.
pub(super) struct Retry {
    pub initial: Duration,
    pub max: Duration,
    pub status: Arc<Mutex<SinkStatus>>,
    pub stop: watch::Receiver<bool>,
}

impl Retry {
    /// Logs a transient error and waits before the next attempt, or returns `Stopped` when
    /// a stop is requested meanwhile.
    pub(super) async fn wait(&mut self, error: &Error, attempt: u32) -> Result<(), Processing> {
        let wait = backoff(self.initial, self.max, attempt);
        {
            let mut status = self.status.lock();
            status.state = "retrying";
            status.last_error = Some(error.to_string());
        }
        // Log the first failures, then every tenth, so an outage of hours does not flood
        // the log.
        if attempt < 3 || attempt.is_multiple_of(10) {
            tracing::warn!(%error, attempt, retry_in_ms = wait.as_millis() as u64, "ClickHouse is unavailable to the analytics sink; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            _ = self.stop.wait_for(|stop| *stop) => Err(Processing::Stopped),
        }
    }

    fn stop_requested(&self) -> bool {
        *self.stop.borrow()
    }
}

/// A batch whose rows are built and not yet written.
pub(super) struct PreparedBatch {
    pub records: u64,
    pub duplicates: u64,
    pub commits: Vec<CommittedOffset>,
    pub pending: PendingRows,
    pub started: Instant,
}

/// Reads records, decodes them and builds rows.
pub(super) struct BatchReader {
    pub client: ClickHouse,
    pub converter: Converter,
    pub recent: RecentEvents,
    pub max_records: usize,
    pub max_delay: Duration,
    pub retry: Retry,
}

impl BatchReader {
    pub(super) fn new(
        client: ClickHouse,
        converter: Converter,
        options: &SinkOptions,
        retry: Retry,
    ) -> Self {
        BatchReader {
            client,
            converter,
            recent: RecentEvents::default(),
            max_records: options.max_batch_records.clamp(1, MAX_BATCH_RECORDS),
            max_delay: options.max_batch_delay,
            retry,
        }
    }

    /// Reads the next batch and builds its rows. Returns `None` when nothing arrived for
    /// `max_delay`.
    pub(super) async fn next(
        &mut self,
        consumer: &mut dyn GroupConsumer,
    ) -> Result<Option<PreparedBatch>, Processing> {
        let records = self.collect(consumer).await?;
        if records.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let record_count = records.len() as u64;
        let commits = next_offsets(&records);
        let (decoded, duplicates) = self.decode(records).await?;
        self.lookup_grants(&decoded).await?;
        let pending = self.convert(decoded).await?;
        Ok(Some(PreparedBatch {
            records: record_count,
            duplicates,
            commits,
            pending,
            started,
        }))
    }

    /// Reads records until the batch is full or `max_delay` passed since its first record.
    /// Returns an empty batch when nothing arrived for `max_delay`.
    async fn collect(&mut self, consumer: &mut dyn GroupConsumer) -> Result<Vec<Record>> {
        let max = self.max_records;
        let delay = self.max_delay;
        let mut records = consumer.next_batch(max, delay).await?;
        let deadline = Instant::now() + delay;
        while !records.is_empty() && records.len() < max && !self.retry.stop_requested() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let more = consumer.next_batch(max - records.len(), left).await?;
            if more.is_empty() {
                break;
            }
            records.extend(more);
        }
        Ok(records)
    }

    /// Decodes the records on a blocking thread, dropping repeated event ids. Returns the
    /// events and the number of repeats dropped.
    async fn decode(&mut self, records: Vec<Record>) -> Result<(Vec<Decoded>, u64), Processing> {
        let mut recent = std::mem::take(&mut self.recent);
        let task = tokio::task::spawn_blocking(move || {
            let result = batch::decode(&records, &mut recent);
            (recent, result)
        });
        let (recent, result) = task.await.map_err(|error| {
            Processing::Failed(Error::Config(format!("decoding task failed: {error}")))
        })?;
        self.recent = recent;
        Ok(result?)
    }

    /// Looks up in ClickHouse the users of refreshed grants that the converter does not
    /// remember, retrying while ClickHouse is unreachable.
    async fn lookup_grants(&mut self, decoded: &[Decoded]) -> Result<(), Processing> {
        let missing = batch::unknown_grants(decoded, &self.converter);
        if missing.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match batch::load_grants(&self.client, &missing).await {
                Ok(found) => {
                    for (grant_id, user) in found {
                        self.converter.remember_grant(grant_id, user);
                    }
                    for grant_id in missing {
                        if !self.converter.knows_grant(&grant_id) {
                            self.converter
                                .remember_grant(grant_id, GrantUser::default());
                        }
                    }
                    return Ok(());
                }
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    self.retry.wait(&error, attempt).await?;
                }
                Err(error) => return Err(Processing::Failed(error)),
            }
        }
    }

    /// Converts the events on a blocking thread: pseudonyms cost an HMAC each.
    async fn convert(&mut self, decoded: Vec<Decoded>) -> Result<PendingRows, Processing> {
        let placeholder = Converter::new(self.converter.pseudonyms().clone());
        let mut converter = std::mem::replace(&mut self.converter, placeholder);
        let task = tokio::task::spawn_blocking(move || {
            let pending = batch::convert(decoded, &mut converter);
            (converter, pending)
        });
        let (converter, pending) = task.await.map_err(|error| {
            Processing::Failed(Error::Config(format!("conversion task failed: {error}")))
        })?;
        self.converter = converter;
        Ok(pending)
    }
}

/// What the writer did with one batch.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Written {
    pub rows: u64,
    pub already_stored: u64,
}

/// Inserts batches into ClickHouse, one at a time and in log order.
pub(super) struct BatchWriter {
    pub client: ClickHouse,
    pub watermarks: Watermarks,
    pub retry: Retry,
}

impl BatchWriter {
    /// Inserts the rows that ClickHouse does not hold yet, retrying transient errors with
    /// backoff. Returns once ClickHouse acknowledged every row.
    pub(super) async fn write(&mut self, pending: &mut PendingRows) -> Result<Written, Processing> {
        let already_stored = pending.remove_stored(&self.watermarks);
        let mut rows = 0;
        let mut attempt = 0;
        loop {
            match pending
                .write(&self.client, &mut self.watermarks, &mut rows)
                .await
            {
                Ok(()) => {
                    return Ok(Written {
                        rows,
                        already_stored,
                    });
                }
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    self.retry.wait(&error, attempt).await?;
                    // The failed insert may have been applied before the error reached
                    // the sink, so read what ClickHouse stored before trying again.
                    self.reload_watermarks().await?;
                    pending.remove_stored(&self.watermarks);
                }
                Err(error) => return Err(Processing::Failed(error)),
            }
        }
    }

    async fn reload_watermarks(&mut self) -> Result<(), Processing> {
        let mut attempt = 0;
        loop {
            match Watermarks::load(&self.client).await {
                Ok(watermarks) => {
                    self.watermarks = watermarks;
                    return Ok(());
                }
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    self.retry.wait(&error, attempt).await?;
                }
                Err(error) => return Err(Processing::Failed(error)),
            }
        }
    }
}
