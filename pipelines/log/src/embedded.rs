//! The embedded log: segment files in a local directory.
//!
//! # Layout
//!
//! ```text
//! <dir>/LOCK                                   held with an exclusive file lock while open
//! <dir>/topics/<topic>/topic.json              {"partitions": N}
//! <dir>/topics/<topic>/<partition>/<base>.log  segment files, <base> = first offset, 20 digits
//! <dir>/topics/<topic>/<partition>/<base>.index  sparse offset index of a sealed segment
//! <dir>/groups/<group>.json                    committed offsets of a consumer group
//! ```
//!
//! A segment is a sequence of record frames (see `record.rs` for the byte layout): a length,
//! a CRC-32C of the rest of the frame, the offset, a timestamp in milliseconds, the key
//! and the value. The writer starts a new segment before a batch once the active one has
//! reached [`EmbeddedOptions::segment_bytes`], so a segment may exceed it by one batch.
//!
//! # Durability
//!
//! Each partition has one writer thread. It collects every append that is waiting, writes
//! the batch, calls `fdatasync` on the segment file once and only then acknowledges the
//! appends in the batch (group commit). A new segment file is followed by an fsync of the
//! partition directory, and a sealed segment gets its index file written atomically.
//! Topic metadata and group offsets are written to a temporary file that is fsynced,
//! renamed over the old file and followed by an fsync of the directory. Readers only see
//! records whose batch was fsynced, so no reader acts on a record that a crash could
//! take back.
//!
//! If `fdatasync` fails the partition rejects every later append until the log is
//! reopened, because the kernel may have dropped the pages it failed to write.
//!
//! # Recovery
//!
//! [`EmbeddedLog::open`] loads the index files of sealed segments (scanning a segment
//! whose index is missing or damaged) and scans the last segment of every partition
//! record by record. The first partial record, CRC mismatch, unexpected offset or
//! zero-filled header in the last segment ends it: the rest of the file is logged with
//! `tracing::warn!` and truncated. An invalid record in a sealed segment is an
//! [`Error::Corrupt`] at open (when the segment is scanned) or when a reader reaches it.
//!
//! # Partitions and groups
//!
//! A non-empty key picks its partition with Kafka's murmur2 hash (see
//! [`crate::partitioner`]); records with an empty key go round robin. A consumer group
//! has one member that reads every partition of its topics, and its commits are stored
//! in the group's offsets file.

mod files;
mod group;
mod partition;
mod record;
mod segment;

use std::collections::HashMap;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use group::EmbeddedGroupConsumer;

use self::files::{create_dir_durable, io_error, remove_stale_temp_files, write_atomic};
use self::group::GroupStore;
use self::partition::{
    AppendRequest, PartitionConfig, PartitionReaderState, PartitionShared, open_partition,
};
use crate::validate::{validate_partition_count, validate_topic_name};
use crate::{Error, GroupConsumer, Log, PartitionReader, Position, Record, Result};

/// How long [`EmbeddedLog::open`] waits for the directory lock that a log being closed in
/// this process may still hold.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Settings of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Size in bytes at which a segment is sealed and the next append starts a new one.
    pub segment_bytes: u64,
    /// Largest key plus value, in bytes, that `append` accepts.
    pub max_record_bytes: usize,
    /// Bytes of records between two entries of a segment's sparse offset index.
    pub index_interval_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 128 * 1024 * 1024,
            max_record_bytes: 64 * 1024 * 1024,
            index_interval_bytes: 4096,
        }
    }
}

impl EmbeddedOptions {
    fn validate(&self) -> Result<()> {
        if self.segment_bytes == 0 {
            return Err(Error::InvalidArgument(
                "segment_bytes must be at least 1".to_string(),
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidArgument(
                "index_interval_bytes must be at least 1".to_string(),
            ));
        }
        // The frame length field is a u32.
        let limit = u32::MAX as usize - record::frame_len(0, 0);
        if self.max_record_bytes > limit {
            return Err(Error::InvalidArgument(format!(
                "max_record_bytes is {} but must be at most {limit}",
                self.max_record_bytes
            )));
        }
        Ok(())
    }
}

/// Contents of `topic.json`.
#[derive(Debug, Serialize, Deserialize)]
struct TopicFile {
    partitions: u32,
}

struct Partition {
    sender: mpsc::Sender<AppendRequest>,
    shared: Arc<PartitionShared>,
}

struct Topic {
    partitions: Vec<Partition>,
    /// Next partition for records with an empty key.
    round_robin: AtomicU32,
}

struct Inner {
    dir: PathBuf,
    options: EmbeddedOptions,
    lock: Mutex<Option<Arc<File>>>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    groups: Mutex<HashMap<String, Arc<GroupStore>>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    /// Serializes topic creation.
    create_topic: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

/// A file-backed, segmented, CRC-checked log in a local directory.
///
/// Cloning is cheap and shares the open log. The log stops accepting appends when the
/// last clone is dropped or [`EmbeddedLog::close`] is called. Readers and group members
/// opened from it can still read what was written, then fail with [`Error::Closed`] where
/// they would wait for more.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.inner.dir)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log in `dir`, creating the directory if needed, and recovers every
    /// partition. Blocking: it reads every partition's last segment, so async code should
    /// call it through `spawn_blocking`.
    ///
    /// Fails when another open log, in this or another process, holds the directory lock
    /// for longer than two seconds.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedLog> {
        options.validate()?;
        fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
        let lock = Arc::new(lock_dir(dir)?);
        create_dir_durable(&dir.join("topics"))?;
        create_dir_durable(&dir.join("groups"))?;
        remove_stale_temp_files(&dir.join("groups"))?;

        let mut topics = HashMap::new();
        let mut writers = Vec::new();
        let topics_dir = dir.join("topics");
        let entries = fs::read_dir(&topics_dir).map_err(|err| io_error(&topics_dir, err))?;
        for entry in entries {
            let topic_dir = entry.map_err(|err| io_error(&topics_dir, err))?.path();
            let name = topic_dir.file_name().and_then(|name| name.to_str());
            let Some(name) = name.filter(|name| validate_topic_name(name).is_ok()) else {
                tracing::warn!(path = %topic_dir.display(), "ignoring a directory whose name is not a topic name");
                continue;
            };
            let Some(partitions) = read_topic_file(&topic_dir)? else {
                tracing::warn!(path = %topic_dir.display(), "ignoring a topic directory without topic.json (its creation did not finish)");
                continue;
            };
            let topic = open_topic(&topic_dir, name, partitions, &options, &lock, &mut writers)?;
            topics.insert(name.to_string(), Arc::new(topic));
        }
        tracing::info!(dir = %dir.display(), topics = topics.len(), "opened the embedded log");

        Ok(EmbeddedLog {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                options,
                lock: Mutex::new(Some(lock)),
                topics: RwLock::new(topics),
                groups: Mutex::new(HashMap::new()),
                writers: Mutex::new(writers),
                create_topic: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Returns the largest key plus value, in bytes, that `append` accepts.
    pub fn max_record_bytes(&self) -> usize {
        self.inner.options.max_record_bytes
    }

    /// Stops accepting appends, waits until the partition writers have finished the appends
    /// already sent to them and releases the directory lock. Later calls on this log fail
    /// with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        // Waits for a topic creation in progress, so it cannot start writers after this.
        let _creating = self.inner.create_topic.lock().await;
        self.inner.closed.store(true, Ordering::Release);
        let topics = std::mem::take(&mut *self.inner.topics.write());
        drop(topics);

        let writers = std::mem::take(&mut *self.inner.writers.lock());
        tokio::task::spawn_blocking(move || {
            for writer in writers {
                if writer.join().is_err() {
                    tracing::error!("a partition writer thread panicked");
                }
            }
        })
        .await
        .map_err(|err| io_error(&self.inner.dir, io::Error::other(err.to_string())))?;

        self.inner.lock.lock().take();
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.check_open()?;
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    fn group_store(&self, group: &str) -> Result<Arc<GroupStore>> {
        let mut groups = self.inner.groups.lock();
        if let Some(store) = groups.get(group) {
            return Ok(store.clone());
        }
        let store = Arc::new(GroupStore::load(&self.inner.dir.join("groups"), group)?);
        groups.insert(group.to_string(), store.clone());
        Ok(store)
    }
}

/// Takes the exclusive lock on `<dir>/LOCK`, waiting up to [`LOCK_WAIT`] for a log of this
/// process that is still closing.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = File::create(&path).map_err(|err| io_error(&path, err))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                let message =
                    "the log directory is locked by another open log, in this or another process";
                return Err(io_error(
                    &path,
                    io::Error::new(io::ErrorKind::WouldBlock, message),
                ));
            }
            Err(TryLockError::Error(err)) => return Err(io_error(&path, err)),
        }
    }
}

/// Reads a topic's partition count, or `None` when `topic.json` does not exist.
fn read_topic_file(topic_dir: &Path) -> Result<Option<u32>> {
    let path = topic_dir.join("topic.json");
    let contents = match fs::read(&path) {
        Ok(contents) => contents,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(&path, err)),
    };
    let file: TopicFile = serde_json::from_slice(&contents).map_err(|err| Error::Corrupt {
        path: path.display().to_string(),
        position: err.column() as u64,
        reason: format!("invalid topic file: {err}"),
    })?;
    Ok(Some(file.partitions))
}

/// Opens every partition of a topic and starts their writers.
fn open_topic(
    topic_dir: &Path,
    name: &str,
    partitions: u32,
    options: &EmbeddedOptions,
    lock: &Arc<File>,
    writers: &mut Vec<JoinHandle<()>>,
) -> Result<Topic> {
    let config = PartitionConfig {
        segment_bytes: options.segment_bytes,
        index_interval_bytes: options.index_interval_bytes,
    };
    let mut opened = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let dir = topic_dir.join(partition.to_string());
        if !dir.is_dir() {
            return Err(Error::Corrupt {
                path: dir.display().to_string(),
                position: 0,
                reason: format!(
                    "topic {name} has {partitions} partitions but this directory is missing"
                ),
            });
        }
        let handle = open_partition(&dir, name, partition, config, lock.clone())?;
        writers.push(handle.writer);
        opened.push(Partition {
            sender: handle.sender,
            shared: handle.shared,
        });
    }
    Ok(Topic {
        partitions: opened,
        round_robin: AtomicU32::new(0),
    })
}

/// Creates the directories and files of a new topic. A topic directory without
/// `topic.json` is the leftover of an interrupted creation, and this completes it.
fn create_topic_files(topic_dir: &Path, partitions: u32) -> Result<()> {
    create_dir_durable(topic_dir)?;
    for partition in 0..partitions {
        let dir = topic_dir.join(partition.to_string());
        create_dir_durable(&dir)?;
        if segment::list_segments(&dir)?.is_empty() {
            partition::create_segment_file(&dir, 0)?;
        }
    }
    let contents = serde_json::to_vec(&TopicFile { partitions })
        .map_err(|err| io_error(topic_dir, io::Error::other(err)))?;
    write_atomic(&topic_dir.join("topic.json"), &contents)
}

#[async_trait]
impl Log for EmbeddedLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        validate_topic_name(topic)?;
        validate_partition_count(partitions)?;
        let _creating = self.inner.create_topic.lock().await;
        self.check_open()?;
        if let Some(existing) = self.inner.topics.read().get(topic) {
            if existing.partitions.len() != partitions as usize {
                tracing::debug!(
                    topic,
                    existing = existing.partitions.len(),
                    requested = partitions,
                    "topic exists with another partition count; keeping it"
                );
            }
            return Ok(());
        }

        let inner = self.inner.clone();
        let name = topic.to_string();
        let (opened, writers) = tokio::task::spawn_blocking(move || -> Result<_> {
            let topic_dir = inner.dir.join("topics").join(&name);
            create_topic_files(&topic_dir, partitions)?;
            let lock = inner.lock.lock().clone().ok_or(Error::Closed)?;
            let mut writers = Vec::new();
            let opened = open_topic(
                &topic_dir,
                &name,
                partitions,
                &inner.options,
                &lock,
                &mut writers,
            )?;
            Ok((opened, writers))
        })
        .await
        .map_err(|err| io_error(&self.inner.dir, io::Error::other(err.to_string())))??;

        self.inner.writers.lock().extend(writers);
        self.inner
            .topics
            .write()
            .insert(topic.to_string(), Arc::new(opened));
        tracing::info!(topic, partitions, "created topic");
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    async fn append(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<Position> {
        let size = key.len() + value.len();
        let max = self.inner.options.max_record_bytes;
        if size > max {
            return Err(Error::RecordTooLarge { size, max });
        }
        let topic_state = self.topic(topic)?;
        let count = topic_state.partitions.len() as u32;
        let partition = if key.is_empty() {
            topic_state.round_robin.fetch_add(1, Ordering::Relaxed) % count
        } else {
            crate::partitioner::partition_for_key(key, count)
        };

        let (reply, acknowledged) = oneshot::channel();
        let request = AppendRequest {
            frame: record::encode_frame(key, value),
            reply,
        };
        topic_state.partitions[partition as usize]
            .sender
            .send(request)
            .await
            .map_err(|_| Error::Closed)?;
        drop(topic_state);
        acknowledged.await.map_err(|_| Error::Closed)?
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        let topic_state = self.topic(topic)?;
        Ok(topic_state
            .partitions
            .iter()
            .map(|p| p.shared.end_offset())
            .collect())
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
    ) -> Result<Box<dyn PartitionReader>> {
        let topic_state = self.topic(topic)?;
        let shared = topic_state
            .partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?
            .shared
            .clone();
        Ok(Box::new(EmbeddedReader {
            state: PartitionReaderState::new(shared, from_offset),
        }))
    }

    async fn join_group(&self, group: &str, topics: &[&str]) -> Result<Box<dyn GroupConsumer>> {
        if topics.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "consumer group {group} must join at least one topic"
            )));
        }
        let mut unique_topics: Vec<&str> = Vec::with_capacity(topics.len());
        for topic in topics {
            if !unique_topics.contains(topic) {
                unique_topics.push(topic);
            }
        }
        let states = unique_topics
            .iter()
            .map(|topic| self.topic(topic))
            .collect::<Result<Vec<_>>>()?;

        let log = self.clone();
        let name = group.to_string();
        let store = tokio::task::spawn_blocking(move || log.group_store(&name))
            .await
            .map_err(|err| io_error(&self.inner.dir, io::Error::other(err.to_string())))??;

        let mut readers = Vec::new();
        for (topic, state) in unique_topics.iter().zip(&states) {
            for (partition, handle) in state.partitions.iter().enumerate() {
                let start = store.committed(topic, partition as u32).await.unwrap_or(0);
                readers.push(PartitionReaderState::new(handle.shared.clone(), start));
            }
        }
        tracing::debug!(
            group,
            ?topics,
            partitions = readers.len(),
            "joined consumer group"
        );
        Ok(Box::new(EmbeddedGroupConsumer::new(store, readers)))
    }
}

/// Reader of one partition of the embedded log.
pub struct EmbeddedReader {
    state: PartitionReaderState,
}

#[async_trait]
impl PartitionReader for EmbeddedReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        self.state.next_batch(max, wait).await
    }
}
