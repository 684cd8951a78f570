//! One partition: the group-commit writer thread and the readers.
//!
//! Appenders encode their record into a frame and send it to the partition's writer thread
//! over a bounded channel. The writer takes every request that is waiting (up to
//! [`MAX_COMMIT_BYTES`]), assigns offsets, writes the frames with vectored writes, fsyncs
//! the segment file once and only then acknowledges every append in the batch. Then it
//! publishes the new end of the partition through a `watch` channel, which wakes waiting
//! readers. Readers never read past that end, so they only see fsynced records.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot, watch};

use super::files::{io_error, remove_stale_temp_files, sync_dir};
use super::record::{self, DecodedRecord};
use super::segment::{self, IndexEntry, SegmentCursor, SegmentMeta, list_segments, segment_path};
use crate::{Error, Position, Record, Result};

/// A group commit stops collecting requests once they reach this many bytes, unless the
/// first record alone is larger.
const MAX_COMMIT_BYTES: usize = 16 * 1024 * 1024;
/// Appends that may wait for the writer before `append` itself waits.
const REQUEST_QUEUE_LEN: usize = 4096;

/// Settings a partition needs from the log options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionConfig {
    pub segment_bytes: u64,
    pub index_interval_bytes: u64,
}

/// One record waiting for the writer.
pub(crate) struct AppendRequest {
    /// A frame from `record::encode_frame`. The writer fills in offset, timestamp and CRC.
    pub frame: Vec<u8>,
    pub reply: oneshot::Sender<Result<Position>>,
}

/// State of a partition shared by its writer and readers.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    pub topic: String,
    pub partition: u32,
    dir: PathBuf,
    segments: RwLock<Vec<SegmentMeta>>,
    /// Offset after the last fsynced record.
    end: watch::Sender<u64>,
    writer_stopped: AtomicBool,
}

impl PartitionShared {
    pub(crate) fn end_offset(&self) -> u64 {
        *self.end.borrow()
    }

    /// Returns the segment and index entry to start reading `target` from.
    fn locate(&self, target: u64) -> (u64, PathBuf, IndexEntry) {
        let segments = self.segments.read();
        let after = segments.partition_point(|meta| meta.base <= target);
        let meta = &segments[after.saturating_sub(1)];
        (meta.base, meta.path.clone(), meta.seek(target))
    }

    /// Returns the readable length of segment `base` and the segment after it, if any.
    fn segment_end(&self, base: u64) -> Option<(u64, Option<(u64, PathBuf)>)> {
        let segments = self.segments.read();
        let i = segments
            .binary_search_by_key(&base, |meta| meta.base)
            .ok()?;
        let next = segments
            .get(i + 1)
            .map(|meta| (meta.base, meta.path.clone()));
        Some((segments[i].len, next))
    }

    /// Reads up to `max` records from offset `from`, continuing from `cursor` when it is
    /// positioned there. Blocking.
    ///
    /// When an invalid record follows valid ones, the valid ones are returned and the error
    /// comes with the next call, which starts at the invalid record.
    fn read(
        &self,
        cursor: &mut Option<SegmentCursor>,
        from: u64,
        max: usize,
    ) -> Result<Vec<DecodedRecord>> {
        let mut out = Vec::new();
        match self.read_into(cursor, from, max, &mut out) {
            Err(err) if out.is_empty() => Err(err),
            _ => Ok(out),
        }
    }

    fn read_into(
        &self,
        cursor: &mut Option<SegmentCursor>,
        from: u64,
        max: usize,
        out: &mut Vec<DecodedRecord>,
    ) -> Result<()> {
        let mut budget = crate::MAX_READ_BATCH_BYTES;
        if cursor.as_ref().is_some_and(|c| c.offset > from) {
            *cursor = None;
        }

        loop {
            let current = match cursor {
                Some(current) => current,
                None => {
                    let (base, path, entry) = self.locate(from);
                    cursor.insert(SegmentCursor::open(base, path, entry)?)
                }
            };
            let Some((end, next)) = self.segment_end(current.base) else {
                // Segments are never deleted while the log is open.
                return Err(Error::Corrupt {
                    path: current.path.display().to_string(),
                    position: current.position,
                    reason: "segment disappeared while it was read".to_string(),
                });
            };

            current.read(end, from, max, &mut budget, out)?;
            if out.len() >= max || budget == 0 || current.position < end {
                return Ok(());
            }
            let Some((next_base, next_path)) = next else {
                return Ok(());
            };
            if current.offset != next_base {
                return Err(Error::Corrupt {
                    path: current.path.display().to_string(),
                    position: current.position,
                    reason: format!(
                        "segment ends before offset {} but the next one starts at {next_base}",
                        current.offset
                    ),
                });
            }
            let start = IndexEntry {
                offset: next_base,
                position: 0,
            };
            *cursor = Some(SegmentCursor::open(next_base, next_path, start)?);
        }
    }

    /// Makes newly fsynced records visible to readers.
    fn publish(&self, len: u64, next_offset: u64, new_entries: Vec<IndexEntry>) {
        {
            let mut segments = self.segments.write();
            if let Some(last) = segments.last_mut() {
                last.len = len;
                last.next_offset = next_offset;
                last.index.extend(new_entries);
            }
        }
        self.end.send_replace(next_offset);
    }
}

/// A partition opened for writing: the channel to its writer thread and the shared state.
pub(crate) struct PartitionHandle {
    pub sender: mpsc::Sender<AppendRequest>,
    pub shared: Arc<PartitionShared>,
    pub writer: JoinHandle<()>,
}

/// Opens the partition stored in `dir`, recovers the tail of its last segment and starts
/// its writer thread. `lock` is the log directory lock, kept until the writer stops.
pub(crate) fn open_partition(
    dir: &Path,
    topic: &str,
    partition: u32,
    config: PartitionConfig,
    lock: Arc<File>,
) -> Result<PartitionHandle> {
    remove_stale_temp_files(dir)?;
    let mut bases = list_segments(dir)?;
    if bases.is_empty() {
        create_segment_file(dir, 0)?;
        bases.push(0);
    }

    let last_base = bases[bases.len() - 1];
    let mut segments = Vec::with_capacity(bases.len());
    for &base in &bases[..bases.len() - 1] {
        segments.push(segment::load_sealed(
            dir,
            base,
            config.index_interval_bytes,
        )?);
    }
    segments.push(recover_last_segment(dir, last_base, config)?);
    check_continuity(&segments)?;

    let last = &segments[segments.len() - 1];
    let next_offset = last.next_offset;
    let segment_len = last.len;
    let last_indexed = last.index.last().map_or(0, |entry| entry.position);
    let mut file = OpenOptions::new()
        .write(true)
        .open(&last.path)
        .map_err(|err| io_error(&last.path, err))?;
    file.seek(SeekFrom::Start(segment_len))
        .map_err(|err| io_error(&last.path, err))?;

    let (end, _) = watch::channel(next_offset);
    let shared = Arc::new(PartitionShared {
        topic: topic.to_string(),
        partition,
        dir: dir.to_path_buf(),
        segments: RwLock::new(segments),
        end,
        writer_stopped: AtomicBool::new(false),
    });

    let (sender, requests) = mpsc::channel(REQUEST_QUEUE_LEN);
    let writer = PartitionWriter {
        shared: shared.clone(),
        requests,
        file,
        segment_base: last_base,
        segment_len,
        next_offset,
        last_indexed,
        config,
        failure: None,
        _lock: lock,
    };
    let writer = std::thread::Builder::new()
        .name(format!("log-{partition}-{topic}"))
        .spawn(move || writer.run())
        .map_err(|err| io_error(dir, err))?;

    Ok(PartitionHandle {
        sender,
        shared,
        writer,
    })
}

/// Creates an empty segment file and makes its directory entry durable.
pub(crate) fn create_segment_file(dir: &Path, base: u64) -> Result<File> {
    let path = segment_path(dir, base);
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|err| io_error(&path, err))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Scans the active segment and truncates a torn or corrupt tail.
///
/// Only the last segment can have a torn tail, because the writer fsyncs every batch
/// before it acknowledges it and seals a segment only after its last batch was fsynced.
/// Bytes from the first invalid record on are taken to be a write that never completed,
/// so they are dropped.
///
/// NOTE: damage to acknowledged records of the last segment (a bad disk) looks the same
/// as a torn write, so it is dropped as well, with the warning as the only trace.
fn recover_last_segment(dir: &Path, base: u64, config: PartitionConfig) -> Result<SegmentMeta> {
    let path = segment_path(dir, base);
    let outcome = segment::scan(&path, base, config.index_interval_bytes)?;

    if let Some((position, reason)) = &outcome.invalid_at {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|err| io_error(&path, err))?;
        let file_len = file.metadata().map_err(|err| io_error(&path, err))?.len();
        tracing::warn!(
            path = %path.display(),
            position,
            reason = %reason,
            dropped_bytes = file_len - outcome.valid_len,
            records_kept = outcome.next_offset - base,
            "truncating the torn or corrupt tail of the last segment"
        );
        file.set_len(outcome.valid_len)
            .and_then(|()| file.sync_all())
            .map_err(|err| io_error(&path, err))?;
    }

    Ok(SegmentMeta {
        base,
        path,
        len: outcome.valid_len,
        next_offset: outcome.next_offset,
        index: outcome.index,
    })
}

/// Checks that every segment ends where the next one starts.
fn check_continuity(segments: &[SegmentMeta]) -> Result<()> {
    for pair in segments.windows(2) {
        if pair[0].next_offset != pair[1].base {
            return Err(Error::Corrupt {
                path: pair[0].path.display().to_string(),
                position: pair[0].len,
                reason: format!(
                    "segment ends before offset {} but the next segment starts at {}",
                    pair[0].next_offset, pair[1].base
                ),
            });
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, or 0 when the clock reads before it.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The thread that owns a partition's active segment file.
struct PartitionWriter {
    shared: Arc<PartitionShared>,
    requests: mpsc::Receiver<AppendRequest>,
    file: File,
    segment_base: u64,
    /// Bytes of fsynced records in the active segment.
    segment_len: u64,
    next_offset: u64,
    /// Position of the last index entry of the active segment.
    last_indexed: u64,
    config: PartitionConfig,
    /// Set after an fsync failure. The kernel may have dropped the unsynced pages, so
    /// the writer rejects every later append instead of acknowledging them.
    failure: Option<String>,
    _lock: Arc<File>,
}

impl PartitionWriter {
    fn run(mut self) {
        let mut batch = Vec::new();
        while let Some(first) = self.requests.blocking_recv() {
            let mut bytes = first.frame.len();
            batch.push(first);
            while bytes < MAX_COMMIT_BYTES {
                let Ok(request) = self.requests.try_recv() else {
                    break;
                };
                bytes += request.frame.len();
                batch.push(request);
            }

            match self.commit(&mut batch) {
                Ok(first_offset) => {
                    for (request, offset) in batch.drain(..).zip(first_offset..) {
                        let position = Position {
                            partition: self.shared.partition,
                            offset,
                        };
                        // The appender may have stopped waiting; its record is durable anyway.
                        let _ = request.reply.send(Ok(position));
                    }
                }
                Err(err) => {
                    tracing::error!(
                        topic = %self.shared.topic,
                        partition = self.shared.partition,
                        records = batch.len(),
                        error = %err,
                        "failed to append a batch"
                    );
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(copy_error(&err)));
                    }
                }
            }
        }

        self.shared.writer_stopped.store(true, Ordering::Release);
        // Wakes readers waiting for records that will now never come.
        self.shared.end.send_modify(|_| {});
        tracing::debug!(topic = %self.shared.topic, partition = self.shared.partition, "partition writer stopped");
    }

    /// Writes and fsyncs a batch and returns the offset of its first record.
    fn commit(&mut self, batch: &mut [AppendRequest]) -> Result<u64> {
        if let Some(failure) = &self.failure {
            let path = segment_path(&self.shared.dir, self.segment_base);
            let message = format!(
                "an earlier fsync failed ({failure}), so the partition rejects appends until the log is reopened"
            );
            return Err(io_error(&path, io::Error::other(message)));
        }
        if self.segment_len >= self.config.segment_bytes {
            self.roll()?;
        }
        let path = segment_path(&self.shared.dir, self.segment_base);

        let timestamp_ms = now_ms();
        let first_offset = self.next_offset;
        let mut position = self.segment_len;
        let mut last_indexed = self.last_indexed;
        let mut new_entries = Vec::new();
        for (request, offset) in batch.iter_mut().zip(first_offset..) {
            record::seal_frame(&mut request.frame, offset, timestamp_ms);
            if position > 0 && position - last_indexed >= self.config.index_interval_bytes {
                new_entries.push(IndexEntry { offset, position });
                last_indexed = position;
            }
            position += request.frame.len() as u64;
        }

        if let Err(err) = write_frames(&mut self.file, batch) {
            self.undo_partial_write(&path);
            return Err(io_error(&path, err));
        }
        if let Err(err) = self.file.sync_data() {
            self.failure = Some(err.to_string());
            return Err(io_error(&path, err));
        }

        self.segment_len = position;
        self.last_indexed = last_indexed;
        self.next_offset += batch.len() as u64;
        self.shared.publish(position, self.next_offset, new_entries);
        Ok(first_offset)
    }

    /// Cuts the segment back to its last fsynced length after a failed write.
    fn undo_partial_write(&mut self, path: &Path) {
        let undone = self
            .file
            .set_len(self.segment_len)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.segment_len)));
        if let Err(err) = undone {
            tracing::error!(path = %path.display(), error = %err, "failed to truncate a partial write");
            self.failure = Some(format!("truncating a partial write failed: {err}"));
        }
    }

    /// Seals the active segment and starts a new one at the next offset.
    fn roll(&mut self) -> Result<()> {
        {
            let segments = self.shared.segments.read();
            if let Some(last) = segments.last() {
                segment::write_index(&self.shared.dir, last)?;
            }
        }

        let base = self.next_offset;
        let file = create_segment_file(&self.shared.dir, base)?;
        tracing::debug!(topic = %self.shared.topic, partition = self.shared.partition, base, "started a new segment");

        self.file = file;
        self.segment_base = base;
        self.segment_len = 0;
        self.last_indexed = 0;
        self.shared.segments.write().push(SegmentMeta {
            base,
            path: segment_path(&self.shared.dir, base),
            len: 0,
            next_offset: base,
            index: Vec::new(),
        });
        Ok(())
    }
}

/// Writes every frame of the batch with as few system calls as the kernel allows.
fn write_frames(file: &mut File, batch: &[AppendRequest]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .map(|request| IoSlice::new(&request.frame))
        .collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = file.write_vectored(remaining)?;
        if written == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}

/// Builds an error for one appender of a failed batch. `Error` is not `Clone` because
/// `io::Error` is not, so the copy keeps the kind and message of the I/O error.
fn copy_error(err: &Error) -> Error {
    match err {
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        Error::Corrupt {
            path,
            position,
            reason,
        } => Error::Corrupt {
            path: path.clone(),
            position: *position,
            reason: reason.clone(),
        },
        other => Error::Io {
            path: String::new(),
            source: io::Error::other(other.to_string()),
        },
    }
}

/// Reads one partition for [`crate::PartitionReader`] and for group members.
pub(crate) struct PartitionReaderState {
    shared: Arc<PartitionShared>,
    end: watch::Receiver<u64>,
    /// Offset of the next record to return.
    next_offset: u64,
    cursor: Option<SegmentCursor>,
}

impl PartitionReaderState {
    pub(crate) fn new(shared: Arc<PartitionShared>, from_offset: u64) -> Self {
        let end = shared.end.subscribe();
        Self {
            shared,
            end,
            next_offset: from_offset,
            cursor: None,
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.shared.topic
    }

    pub(crate) fn partition(&self) -> u32 {
        self.shared.partition
    }

    /// Returns whether fsynced records at or after the next offset exist.
    pub(crate) fn has_records(&self) -> bool {
        self.next_offset < self.shared.end_offset()
    }

    /// Waits until a record at or after the next offset is fsynced, or fails with
    /// [`Error::Closed`] once the writer has stopped.
    pub(crate) async fn wait_for_records(&mut self) -> Result<()> {
        let next = self.next_offset;
        let shared = &self.shared;
        // `wait_for` only fails when the sender is gone, and `shared` owns the sender.
        let _ = self
            .end
            .wait_for(|end| *end > next || shared.writer_stopped.load(Ordering::Acquire))
            .await;
        if self.has_records() {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Reads up to `max` fsynced records without waiting. Returns an empty batch when
    /// none are there.
    pub(crate) async fn read_available(&mut self, max: usize) -> Result<Vec<Record>> {
        if max == 0 || !self.has_records() {
            return Ok(Vec::new());
        }

        let shared = self.shared.clone();
        let mut cursor = self.cursor.take();
        let from = self.next_offset;
        let (cursor, decoded) = tokio::task::spawn_blocking(move || {
            let decoded = shared.read(&mut cursor, from, max);
            (cursor, decoded)
        })
        .await
        .map_err(|err| io_error(&self.shared.dir, io::Error::other(err.to_string())))?;
        self.cursor = cursor;
        let decoded = decoded?;

        if let Some(last) = decoded.last() {
            self.next_offset = last.offset + 1;
        }
        let records = decoded
            .into_iter()
            .map(|record| Record {
                topic: self.shared.topic.clone(),
                partition: self.shared.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key,
                value: record.value,
            })
            .collect();
        Ok(records)
    }

    /// Returns up to `max` records, waiting up to `wait` for the first one.
    pub(crate) async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if !self.has_records() {
            match tokio::time::timeout(wait, self.wait_for_records()).await {
                Ok(result) => result?,
                Err(_elapsed) => return Ok(Vec::new()),
            }
        }
        self.read_available(max).await
    }
}
