//! Measures append and read throughput of the embedded log.
//!
//! ```text
//! cargo run -p hearth-log --example append_throughput -- DIR [TASKS] [RECORDS_PER_TASK] [VALUE_BYTES] [PARTITIONS]
//! ```
//!
//! `TASKS` tasks append concurrently, each awaiting one append at a time, so the number of
//! tasks is the number of appends that can share a group commit. DIR must not exist or
//! must hold no topic named `bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_log::Log;
use hearth_log::embedded::{EmbeddedLog, EmbeddedOptions};

fn argument(args: &[String], index: usize, default: usize) -> usize {
    args.get(index).map_or(default, |arg| {
        arg.parse()
            .unwrap_or_else(|_| panic!("argument {index} must be a number, not {arg:?}"))
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect(
        "usage: append_throughput DIR [TASKS] [RECORDS_PER_TASK] [VALUE_BYTES] [PARTITIONS]",
    ));
    let tasks = argument(&args, 2, 64);
    let per_task = argument(&args, 3, 500);
    let value_bytes = argument(&args, 4, 300);
    let partitions = argument(&args, 5, 4) as u32;

    let log = Arc::new(EmbeddedLog::open(&dir, EmbeddedOptions::default()).expect("open the log"));
    log.ensure_topic("bench", partitions)
        .await
        .expect("create the topic");
    let value = Arc::new(vec![b'x'; value_bytes]);

    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let log = log.clone();
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let key = format!("key-{task}-{i}");
                log.append("bench", key.as_bytes(), &value)
                    .await
                    .expect("append");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("appender task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = tasks * per_task;
    println!(
        "appended {total} records of {value_bytes} bytes: {:.0} records/s, {:.1} MB/s",
        total as f64 / elapsed,
        (total * value_bytes) as f64 / elapsed / 1e6
    );

    let started = Instant::now();
    let mut read = 0;
    for partition in 0..partitions {
        let mut reader = log
            .read("bench", partition, 0)
            .await
            .expect("open a reader");
        loop {
            let batch = reader
                .next_batch(10_000, Duration::from_millis(10))
                .await
                .expect("read");
            if batch.is_empty() {
                break;
            }
            read += batch.len();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "read {read} records: {:.0} records/s",
        read as f64 / elapsed
    );
    log.close().await.expect("close the log");
}
