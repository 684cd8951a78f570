//! The Kafka log: any Kafka-protocol cluster through rdkafka (librdkafka).
//!
//! # Settings
//!
//! Producer: `enable.idempotence=true` and `acks=all`, so an acknowledged record is on
//! every in-sync replica and retries never duplicate it. `partitioner=murmur2_random` is
//! the Java client's key hash (see [`crate::partitioner`]) and spreads records without a
//! key at random. `linger.ms=2` lets concurrent appends share a request without adding
//! much latency. [`Log::append`] waits for the delivery report.
//!
//! Readers ([`Log::read`]) use a consumer that is assigned one partition at the requested
//! offset and never commits. librdkafka needs a `group.id` for `assign`, so each reader
//! gets a unique one that never joins a group. `auto.offset.reset=error` makes an offset
//! that the broker does not have an error instead of a silent jump to another position.
//!
//! Group members ([`Log::join_group`]) subscribe with `enable.auto.commit=false` and
//! `auto.offset.reset=earliest`; [`GroupConsumer::commit`] commits synchronously.
//! `session.timeout.ms=6000` and `heartbeat.interval.ms=1000` keep joins and rebalances
//! short, and `fetch.wait.max.ms=10` keeps the latency of a waiting consumer low.
//!
//! Every property can be overridden through [`KafkaConfig::properties`]. Nothing here
//! reads the high watermark or uses `auto.offset.reset=latest`, so the log does not
//! depend on a broker computing either correctly.

mod consumer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::RwLock;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

pub use consumer::{KafkaGroupConsumer, KafkaReader};

use self::consumer::TracingContext;
use crate::validate::{validate_partition_count, validate_topic_name};
use crate::{Error, GroupConsumer, Log, PartitionReader, Position, Result};

/// How long to wait for a new topic to show up in the cluster metadata.
const TOPIC_PROPAGATION_WAIT: Duration = Duration::from_secs(10);

/// Settings of the Kafka log. `Debug` masks property values that look like secrets.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties for every client this log creates. They are applied
    /// after Hearth's defaults, so they override them.
    pub properties: BTreeMap<String, String>,
    /// Largest key plus value, in bytes, that `append` accepts. Brokers and topics must
    /// accept records of this size too. `ensure_topic` sets the topic's
    /// `max.message.bytes`, but the broker's own `message.max.bytes` is set by its operator.
    pub max_record_bytes: usize,
    /// Replication factor of topics that `ensure_topic` creates. With -1 the broker uses
    /// its `default.replication.factor`.
    pub replication_factor: i32,
    /// Limit for admin and metadata requests and for the delivery of one record.
    pub request_timeout: Duration,
    /// Prepended to every topic and consumer group name in the cluster, so several
    /// deployments (or test runs) can share one cluster. Empty by default.
    pub topic_prefix: String,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret_property(key) {
                    "***"
                } else {
                    value
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &properties)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("replication_factor", &self.replication_factor)
            .field("request_timeout", &self.request_timeout)
            .field("topic_prefix", &self.topic_prefix)
            .finish()
    }
}

/// Returns whether a librdkafka property contains a secret, such as `sasl.password`,
/// `ssl.key.password`, `ssl.key.pem` or `sasl.oauthbearer.client.secret`.
fn is_secret_property(key: &str) -> bool {
    ["password", "secret", "jaas", ".pem", "token"]
        .iter()
        .any(|marker| key.contains(marker))
}

impl KafkaConfig {
    /// Returns the default settings for a cluster reached through `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
            max_record_bytes: 64 * 1024 * 1024,
            replication_factor: -1,
            request_timeout: Duration::from_secs(30),
            topic_prefix: String::new(),
        }
    }

    /// The name of `topic` (or of a consumer group) in the cluster.
    fn physical(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// Bytes of protocol overhead allowed on top of the largest record.
    const FRAMING_ALLOWANCE: usize = 64 * 1024;

    /// Returns a client configuration with the common settings and then the user's.
    fn client_config(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config.set("allow.auto.create.topics", "false");
        for (key, value) in defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    fn producer_config(&self) -> ClientConfig {
        let max_message = (self.max_record_bytes + Self::FRAMING_ALLOWANCE).to_string();
        self.client_config(&[
            ("enable.idempotence", "true".to_string()),
            ("acks", "all".to_string()),
            ("partitioner", "murmur2_random".to_string()),
            ("linger.ms", "2".to_string()),
            ("message.max.bytes", max_message),
            (
                "message.timeout.ms",
                self.request_timeout.as_millis().to_string(),
            ),
        ])
    }

    /// Settings shared by readers and group members.
    fn consumer_defaults(&self) -> Vec<(&'static str, String)> {
        let record = self.max_record_bytes + Self::FRAMING_ALLOWANCE;
        let fetch_max = record.max(50 * 1024 * 1024);
        vec![
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            ("fetch.wait.max.ms", "10".to_string()),
            ("fetch.error.backoff.ms", "50".to_string()),
            ("max.partition.fetch.bytes", record.to_string()),
            ("fetch.max.bytes", fetch_max.to_string()),
            (
                "receive.message.max.bytes",
                (fetch_max + 1024 * 1024).to_string(),
            ),
        ]
    }

    fn reader_config(&self) -> ClientConfig {
        static READERS: AtomicU64 = AtomicU64::new(0);
        let reader = READERS.fetch_add(1, Ordering::Relaxed);
        let group = format!("hearth-reader-{}-{}-{reader}", std::process::id(), now_ms());
        let mut defaults = self.consumer_defaults();
        defaults.extend([
            ("group.id", group),
            ("auto.offset.reset", "error".to_string()),
        ]);
        self.client_config(&defaults)
    }

    fn group_config(&self, group: &str) -> ClientConfig {
        let mut defaults = self.consumer_defaults();
        defaults.extend([
            ("group.id", group.to_string()),
            ("auto.offset.reset", "earliest".to_string()),
            ("session.timeout.ms", "6000".to_string()),
            ("heartbeat.interval.ms", "1000".to_string()),
        ]);
        self.client_config(&defaults)
    }
}

/// A log kept in a Kafka-protocol cluster.
#[derive(Clone)]
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer<TracingContext>,
    admin: std::sync::Arc<AdminClient<TracingContext>>,
    /// Partition counts of topics seen to exist.
    partition_counts: std::sync::Arc<RwLock<HashMap<String, u32>>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Creates the producer and admin client. librdkafka connects in the background, so
    /// an unreachable cluster shows up as an error or a timeout of the first request.
    pub fn connect(config: KafkaConfig) -> Result<KafkaLog> {
        let producer: FutureProducer<TracingContext> = config
            .producer_config()
            .create_with_context(TracingContext)
            .map_err(|err| kafka_error("failed to create the Kafka producer", err))?;
        let admin: AdminClient<TracingContext> = config
            .client_config(&[])
            .create_with_context(TracingContext)
            .map_err(|err| kafka_error("failed to create the Kafka admin client", err))?;
        tracing::info!(bootstrap_servers = %config.bootstrap_servers, "connected the Kafka log");

        Ok(KafkaLog {
            config,
            producer,
            admin: std::sync::Arc::new(admin),
            partition_counts: Default::default(),
        })
    }

    /// Returns the largest key plus value, in bytes, that `append` accepts.
    pub fn max_record_bytes(&self) -> usize {
        self.config.max_record_bytes
    }

    /// Asks the cluster for the partition count of `topic`, or `None` when it does not
    /// exist.
    async fn fetch_partition_count(&self, topic: &str) -> Result<Option<u32>> {
        let producer = self.producer.clone();
        let name = topic.to_string();
        let timeout = self.config.request_timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&name), timeout)
        })
        .await
        .map_err(|err| Error::Kafka(format!("metadata request task failed: {err}")))?
        .map_err(|err| kafka_error(&format!("failed to fetch metadata of topic {topic}"), err))?;

        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match found.error() {
            None if !found.partitions().is_empty() => {}
            None => return Ok(None),
            Some(code) => {
                let code = RDKafkaErrorCode::from(code);
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Ok(None);
                }
                return Err(Error::Kafka(format!(
                    "failed to fetch metadata of topic {topic}: {code}"
                )));
            }
        }
        let count = found.partitions().len() as u32;
        self.partition_counts
            .write()
            .insert(topic.to_string(), count);
        Ok(Some(count))
    }

    /// Returns the partition count of `topic` from the cache or the cluster.
    async fn known_partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(count) = self.partition_counts.read().get(topic) {
            return Ok(*count);
        }
        self.fetch_partition_count(topic)
            .await?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    /// Checks that `partition` exists, asking the cluster again when the cached count is
    /// too small, because partitions may have been added since.
    async fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        if partition < self.known_partition_count(topic).await? {
            return Ok(());
        }
        let count = self
            .fetch_partition_count(topic)
            .await?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        if partition < count {
            Ok(())
        } else {
            Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
        }
    }
}

/// Milliseconds since the Unix epoch, or 0 when the clock reads before it.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub(crate) fn kafka_error(context: &str, err: KafkaError) -> Error {
    Error::Kafka(format!("{context}: {err}"))
}

#[async_trait]
impl Log for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let result = self.ensure_topic_physical(topic, partitions).await;
        result.map_err(|e| self.logical_error(e))
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        let result = self.partition_count_physical(topic).await;
        result.map_err(|e| self.logical_error(e))
    }

    async fn append(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<Position> {
        let result = self.append_physical(topic, key, value).await;
        result.map_err(|e| self.logical_error(e))
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
    ) -> Result<Box<dyn PartitionReader>> {
        let result = self.read_physical(topic, partition, from_offset).await;
        result.map_err(|e| self.logical_error(e))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        let result = self.end_offsets_physical(topic).await;
        result.map_err(|e| self.logical_error(e))
    }

    async fn join_group(&self, group: &str, topics: &[&str]) -> Result<Box<dyn GroupConsumer>> {
        let result = self.join_group_physical(group, topics).await;
        result.map_err(|e| self.logical_error(e))
    }
}

impl KafkaLog {
    /// Reports topic names as the caller knows them, without the deployment's prefix.
    fn logical_error(&self, error: Error) -> Error {
        let prefix = self.config.topic_prefix.as_str();
        let strip = |name: String| {
            name.strip_prefix(prefix)
                .map(str::to_string)
                .unwrap_or(name)
        };
        match error {
            Error::UnknownTopic(topic) => Error::UnknownTopic(strip(topic)),
            Error::UnknownPartition { topic, partition } => Error::UnknownPartition {
                topic: strip(topic),
                partition,
            },
            other => other,
        }
    }
}

impl KafkaLog {
    async fn ensure_topic_physical(&self, topic: &str, partitions: u32) -> Result<()> {
        validate_topic_name(topic)?;
        validate_partition_count(partitions)?;
        let physical = self.config.physical(topic);
        let topic = physical.as_str();
        if self.partition_counts.read().contains_key(topic) {
            return Ok(());
        }

        let max_message =
            (self.config.max_record_bytes + KafkaConfig::FRAMING_ALLOWANCE).to_string();
        let new_topic = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(self.config.replication_factor),
        )
        .set("max.message.bytes", &max_message);
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.request_timeout))
            .operation_timeout(Some(self.config.request_timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|err| kafka_error(&format!("failed to create topic {topic}"), err))?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic, partitions, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic, "topic exists already");
                }
                Err((name, code)) => {
                    return Err(Error::Kafka(format!(
                        "failed to create topic {name}: {code}"
                    )));
                }
            }
        }

        // A broker may report the topic as created before its metadata includes it.
        let started = Instant::now();
        loop {
            if self.fetch_partition_count(topic).await?.is_some() {
                return Ok(());
            }
            if started.elapsed() > TOPIC_PROPAGATION_WAIT {
                return Err(Error::Timeout(TOPIC_PROPAGATION_WAIT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn partition_count_physical(&self, topic: &str) -> Result<u32> {
        let physical = self.config.physical(topic);
        let topic = physical.as_str();
        self.fetch_partition_count(topic)
            .await?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    async fn append_physical(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<Position> {
        let size = key.len() + value.len();
        let max = self.config.max_record_bytes;
        if size > max {
            return Err(Error::RecordTooLarge { size, max });
        }
        let physical = self.config.physical(topic);
        let topic = physical.as_str();
        self.known_partition_count(topic).await?;

        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(value)
            .timestamp(now_ms());
        if !key.is_empty() {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(record, Timeout::After(self.config.request_timeout))
            .await
            .map_err(|(err, _)| kafka_error(&format!("failed to append to topic {topic}"), err))?;

        Ok(Position {
            partition: delivery.partition as u32,
            offset: delivery.offset as u64,
        })
    }

    async fn read_physical(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
    ) -> Result<Box<dyn PartitionReader>> {
        let physical = self.config.physical(topic);
        self.check_partition(&physical, partition).await?;
        let reader = KafkaReader::new(
            &self.config.reader_config(),
            &self.config.topic_prefix,
            &physical,
            partition,
            from_offset,
        )?;
        Ok(Box::new(reader))
    }

    async fn end_offsets_physical(&self, topic: &str) -> Result<Vec<u64>> {
        let physical = self.config.physical(topic);
        let count = self.known_partition_count(&physical).await?;
        let consumer: rdkafka::consumer::BaseConsumer<TracingContext> = self
            .config
            .reader_config()
            .create_with_context(TracingContext)
            .map_err(|err| kafka_error("failed to create a Kafka consumer", err))?;
        let timeout = self.config.request_timeout;
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            (0..count)
                .map(|partition| {
                    consumer
                        .fetch_watermarks(&physical, partition as i32, timeout)
                        .map(|(_, high)| high.max(0) as u64)
                        .map_err(|err| {
                            kafka_error(&format!("failed to read the end of {physical}"), err)
                        })
                })
                .collect()
        })
        .await
        .map_err(|err| Error::Kafka(format!("watermark task failed: {err}")))?
    }

    async fn join_group_physical(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn GroupConsumer>> {
        if group.is_empty() {
            return Err(Error::InvalidArgument(
                "consumer group name must not be empty".to_string(),
            ));
        }
        if topics.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "consumer group {group} must join at least one topic"
            )));
        }
        let physical: Vec<String> = topics.iter().map(|t| self.config.physical(t)).collect();
        for topic in &physical {
            self.known_partition_count(topic).await?;
        }
        let names: Vec<&str> = physical.iter().map(String::as_str).collect();
        let group = self.config.physical(group);
        let member = KafkaGroupConsumer::new(
            &self.config.group_config(&group),
            &self.config.topic_prefix,
            &group,
            &names,
        )?;
        Ok(Box::new(member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_secrets() {
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config
            .properties
            .insert("sasl.password".to_string(), "hunter2".to_string());
        config
            .properties
            .insert("client.id".to_string(), "hearth".to_string());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("hearth"), "{shown}");
    }

    #[test]
    fn user_properties_override_defaults() {
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config
            .properties
            .insert("linger.ms".to_string(), "20".to_string());
        let producer = config.producer_config();
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("partitioner"), Some("murmur2_random"));
    }
}
