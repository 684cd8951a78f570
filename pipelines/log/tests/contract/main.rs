//! The contract every `Log` backend must meet. Each scenario in `scenarios.rs` runs once
//! against the embedded log and once against Kafka when `HEARTH_TEST_KAFKA_BROKERS` contains a
//! bootstrap address, for example from `infra/kafka/start.sh`. Without it the Kafka runs
//! print a notice and pass.

mod scenarios;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_log::Log;
use hearth_log::embedded::{EmbeddedLog, EmbeddedOptions};
use hearth_log::kafka::{KafkaConfig, KafkaLog};
use tempfile::TempDir;

/// Environment variable with the bootstrap servers of the broker for the Kafka runs.
const BROKERS_ENV: &str = "HEARTH_TEST_KAFKA_BROKERS";
/// Largest record in the contract runs; small enough to keep the tests fast.
const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// A backend under test and what the scenarios need to know about it.
pub struct Backend {
    pub log: Arc<dyn Log>,
    pub max_record_bytes: usize,
    /// How long a new group member may take to receive its first records. Kafka group
    /// joins take seconds.
    pub join_wait: Duration,
    prefix: String,
    _dir: Option<TempDir>,
}

impl Backend {
    /// Returns a topic or group name unique to this test run.
    pub fn name(&self, base: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{}-{base}-{n}", self.prefix)
    }
}

fn run_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("contract-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

pub async fn embedded_backend() -> Backend {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let options = EmbeddedOptions {
        max_record_bytes: MAX_RECORD_BYTES,
        // Small segments, so the scenarios also read across segment boundaries.
        segment_bytes: 256 * 1024,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), options).expect("open the embedded log");
    Backend {
        log: Arc::new(log),
        max_record_bytes: MAX_RECORD_BYTES,
        join_wait: Duration::from_secs(5),
        prefix: run_prefix(),
        _dir: Some(dir),
    }
}

pub async fn kafka_backend(scenario: &str) -> Option<Backend> {
    let Ok(brokers) = std::env::var(BROKERS_ENV) else {
        // Written to stderr directly, so the notice shows although the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "skipping the Kafka run of {scenario}: {BROKERS_ENV} is not set"
        );
        return None;
    };
    let mut config = KafkaConfig::new(brokers);
    config.max_record_bytes = MAX_RECORD_BYTES;
    // Every Kafka scenario runs under a topic prefix, so the renaming is covered too.
    config.topic_prefix = "hearth-contract.".to_string();
    let log = KafkaLog::connect(config).expect("connect to Kafka");
    Some(Backend {
        log: Arc::new(log),
        max_record_bytes: MAX_RECORD_BYTES,
        join_wait: Duration::from_secs(60),
        prefix: run_prefix(),
        _dir: None,
    })
}

/// Generates one test per scenario and backend: `embedded::<scenario>` and
/// `kafka::<scenario>`.
macro_rules! contract_tests {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let backend = super::embedded_backend().await;
                    super::scenarios::$scenario(&backend).await;
                }
            )*
        }

        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(backend) = super::kafka_backend(stringify!($scenario)).await else {
                        return;
                    };
                    super::scenarios::$scenario(&backend).await;
                }
            )*
        }
    };
}

contract_tests!(
    append_offsets_increase_per_partition,
    read_from_start_returns_every_record,
    read_from_middle_offset,
    reader_at_tail_receives_later_append,
    same_key_keeps_partition_and_order,
    concurrent_appends_read_exactly_once,
    group_member_resumes_after_commit,
    groups_are_independent,
    empty_batch_after_wait,
    records_near_max_size,
    unknown_topic_and_partition,
    end_offsets_follow_appends,
);
