//! Hearth's event log.
//!
//! Every state change in Hearth is a record appended to a topic of this log before the
//! request that caused it is acknowledged. [`Log`] is the one interface; [`embedded`] keeps
//! the log in segment files under the data directory and [`kafka`] talks to any
//! Kafka-protocol cluster. Both pass the same contract test suite.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub mod embedded;
pub mod kafka;
pub mod partitioner;
mod validate;

/// Topic names used by Hearth.
pub mod topics {
    /// App and site registration, launches, authorizations, tokens and grants.
    pub const AUTH: &str = "hearth.auth";
    /// One record per FHIR or auth HTTP call.
    pub const API: &str = "hearth.api";
    /// Resource writes with the full resource.
    pub const RESOURCES: &str = "hearth.resources";
    /// Bulk export and import job lifecycle.
    pub const BULK: &str = "hearth.bulk";
    /// Responses fetched from upstream EHRs.
    pub const EHR: &str = "hearth.ehr";
}

/// A record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Milliseconds since the Unix epoch, set when the record was appended.
    pub timestamp_ms: i64,
    pub key: Bytes,
    pub value: Bytes,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// The offset a consumer group has reached on one partition: the offset of the next record
/// it will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub next_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("log I/O failed on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic {topic} does not exist")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("record of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    #[error("corrupt log data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: String,
        position: u64,
        reason: String,
    },
    #[error("Kafka error: {0}")]
    Kafka(String),
    #[error("timed out after {0:?} waiting for the log")]
    Timeout(Duration),
    #[error("the log is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A batch stops growing once its keys and values reach this many bytes, so a large
/// `max` cannot pull gigabytes of big records into memory at once. The first record of a
/// batch is always returned, whatever its size.
pub(crate) const MAX_READ_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// An append-only, partitioned, durable log of records.
///
/// Records with the same key always land in the same partition, so their order is kept.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Creates the topic with `partitions` partitions unless it exists already.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()>;

    /// Returns the number of partitions of an existing topic.
    async fn partition_count(&self, topic: &str) -> Result<u32>;

    /// Appends one record and returns once it is durable: fsynced by the embedded log,
    /// acknowledged by all in-sync replicas on Kafka.
    async fn append(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<Position>;

    /// Returns, per partition, the offset after the last acknowledged record: the offset
    /// the next append to that partition gets.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>>;

    /// Opens a reader of one partition that starts at `from_offset` (0 reads everything).
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
    ) -> Result<Box<dyn PartitionReader>>;

    /// Joins consumer group `group` on `topics`. Reading resumes after the group's
    /// committed offsets, or at the start of each partition when none are committed.
    async fn join_group(&self, group: &str, topics: &[&str]) -> Result<Box<dyn GroupConsumer>>;
}

/// Reads one partition in order.
#[async_trait]
pub trait PartitionReader: Send {
    /// Returns up to `max` records that follow the last one returned. Waits up to `wait`
    /// for at least one and returns an empty batch when none arrived in that time.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>>;
}

/// A member of a consumer group with offsets committed to the log.
#[async_trait]
pub trait GroupConsumer: Send {
    /// Returns up to `max` records from the partitions assigned to this member, waiting up
    /// to `wait` for at least one.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>>;

    /// Commits the given offsets for the group, so a new member resumes after them.
    async fn commit(&mut self, offsets: &[CommittedOffset]) -> Result<()>;
}
