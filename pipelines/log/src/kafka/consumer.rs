//! Kafka readers and group members, and the client context that sends librdkafka's logs
//! to `tracing`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::kafka_error;
use crate::{CommittedOffset, Error, GroupConsumer, PartitionReader, Record, Result};

/// Forwards librdkafka's log lines, errors and rebalances to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, "librdkafka client error: {reason}");
    }
}

impl ConsumerContext for TracingContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::debug!(
                    partitions = partitions.count(),
                    "consumer group assigned partitions"
                );
            }
            Rebalance::Revoke(partitions) => {
                tracing::debug!(
                    partitions = partitions.count(),
                    "consumer group revoked partitions"
                );
            }
            Rebalance::Error(err) => {
                tracing::warn!(error = %err, "consumer group rebalance failed")
            }
        }
    }
}

/// Returns whether librdkafka retries the cause of a consumer error by itself, so the
/// consumer should keep waiting instead of failing.
fn is_transient(err: &KafkaError) -> bool {
    let Some(code) = err.rdkafka_error_code() else {
        return false;
    };
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::PartitionEOF
    )
}

/// Logs a transient consumer error, or returns a permanent one as [`Error::Kafka`].
fn check_consumer_error(err: KafkaError, context: &str) -> Result<()> {
    if is_transient(&err) {
        tracing::warn!(error = %err, "{context}: transient error, still waiting");
        Ok(())
    } else {
        Err(kafka_error(context, err))
    }
}

/// Converts a message, taking the deployment's topic prefix off its topic name.
fn to_record(message: &BorrowedMessage<'_>, prefix: &str) -> Record {
    let topic = message.topic();
    Record {
        topic: topic.strip_prefix(prefix).unwrap_or(topic).to_string(),
        partition: message.partition() as u32,
        offset: message.offset() as u64,
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        key: message
            .key()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        value: message
            .payload()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
    }
}

fn record_bytes(record: &Record) -> usize {
    record.key.len() + record.value.len()
}

/// Receives up to `max` records that pass `keep`, waiting up to `wait` for the first one.
async fn receive_batch<F>(
    consumer: &StreamConsumer<TracingContext>,
    prefix: &str,
    max: usize,
    wait: Duration,
    context: &str,
    mut keep: F,
) -> Result<Vec<Record>>
where
    F: FnMut(&Record) -> bool,
{
    let mut records = Vec::new();
    if max == 0 {
        return Ok(records);
    }
    let deadline = Instant::now() + wait;

    while records.is_empty() {
        let received = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(received) => received,
            Err(_elapsed) => return Ok(records),
        };
        match received {
            Ok(message) => {
                let record = to_record(&message, prefix);
                if keep(&record) {
                    records.push(record);
                }
            }
            Err(err) => check_consumer_error(err, context)?,
        }
    }

    // Take what librdkafka has fetched already, without waiting for more.
    let mut bytes: usize = records.iter().map(record_bytes).sum();
    while records.len() < max && bytes < crate::MAX_READ_BATCH_BYTES {
        match consumer.recv().now_or_never() {
            Some(Ok(message)) => {
                let record = to_record(&message, prefix);
                if keep(&record) {
                    bytes += record_bytes(&record);
                    records.push(record);
                }
            }
            Some(Err(err)) => {
                check_consumer_error(err, context)?;
                break;
            }
            None => break,
        }
    }
    Ok(records)
}

/// A consumer that is closed on a blocking thread when dropped.
///
/// librdkafka requires a `group.id` for `assign`, and rdkafka closes a consumer that has
/// one by polling until the close finishes, which must not stall a runtime thread.
struct OwnedConsumer(Option<Arc<StreamConsumer<TracingContext>>>);

impl OwnedConsumer {
    fn get(&self) -> Result<&Arc<StreamConsumer<TracingContext>>> {
        self.0.as_ref().ok_or(Error::Closed)
    }
}

impl Drop for OwnedConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop(consumer));
        }
    }
}

/// Reader of one Kafka partition: a consumer assigned one partition at an offset. Its
/// `group.id` is unique and it never joins the group or commits.
pub struct KafkaReader {
    consumer: OwnedConsumer,
    prefix: String,
    topic: String,
    partition: u32,
    next_offset: u64,
}

impl KafkaReader {
    /// Assigns `topic`, the name in the cluster with the prefix, at `from_offset`.
    pub(crate) fn new(
        config: &ClientConfig,
        prefix: &str,
        topic: &str,
        partition: u32,
        from_offset: u64,
    ) -> Result<Self> {
        let consumer: StreamConsumer<TracingContext> =
            config
                .create_with_context(TracingContext)
                .map_err(|err| kafka_error("failed to create a Kafka consumer", err))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition as i32, Offset::Offset(from_offset as i64))
            .map_err(|err| kafka_error("invalid offset", err))?;
        consumer
            .assign(&assignment)
            .map_err(|err| kafka_error(&format!("failed to assign {topic}/{partition}"), err))?;

        Ok(Self {
            consumer: OwnedConsumer(Some(Arc::new(consumer))),
            prefix: prefix.to_string(),
            topic: topic.to_string(),
            partition,
            next_offset: from_offset,
        })
    }
}

#[async_trait]
impl PartitionReader for KafkaReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        let context = format!("failed to read {}/{}", self.topic, self.partition);
        let next_offset = self.next_offset;
        let consumer = self.consumer.get()?;
        let records = receive_batch(consumer, &self.prefix, max, wait, &context, |record| {
            record.offset >= next_offset
        })
        .await?;
        if let Some(last) = records.last() {
            self.next_offset = last.offset + 1;
        }
        Ok(records)
    }
}

/// A member of a Kafka consumer group.
pub struct KafkaGroupConsumer {
    consumer: OwnedConsumer,
    prefix: String,
    group: String,
}

impl KafkaGroupConsumer {
    /// Subscribes to `topics`, the names in the cluster with the prefix.
    pub(crate) fn new(
        config: &ClientConfig,
        prefix: &str,
        group: &str,
        topics: &[&str],
    ) -> Result<Self> {
        let consumer: StreamConsumer<TracingContext> =
            config
                .create_with_context(TracingContext)
                .map_err(|err| kafka_error("failed to create a Kafka consumer", err))?;
        consumer
            .subscribe(topics)
            .map_err(|err| kafka_error(&format!("group {group} failed to subscribe"), err))?;
        tracing::debug!(group, ?topics, "joining consumer group");
        Ok(Self {
            consumer: OwnedConsumer(Some(Arc::new(consumer))),
            prefix: prefix.to_string(),
            group: group.to_string(),
        })
    }
}

#[async_trait]
impl GroupConsumer for KafkaGroupConsumer {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        let context = format!("consumer group {} failed to read", self.group);
        receive_batch(
            self.consumer.get()?,
            &self.prefix,
            max,
            wait,
            &context,
            |_| true,
        )
        .await
    }

    async fn commit(&mut self, offsets: &[CommittedOffset]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for commit in offsets {
            list.add_partition_offset(
                &format!("{}{}", self.prefix, commit.topic),
                commit.partition as i32,
                Offset::Offset(commit.next_offset as i64),
            )
            .map_err(|err| kafka_error("invalid offset", err))?;
        }

        let consumer = self.consumer.get()?.clone();
        let group = self.group.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|err| Error::Kafka(format!("commit task failed: {err}")))?
            .map_err(|err| kafka_error(&format!("consumer group {group} failed to commit"), err))
    }
}
