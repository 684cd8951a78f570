//! Tests of the embedded log that the Kafka backend has no counterpart for: crash
//! recovery, segment files, reopening and durability under SIGKILL.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_log::embedded::{EmbeddedLog, EmbeddedOptions};
use hearth_log::{CommittedOffset, Error, Log, Record};

/// Set in the child process of the SIGKILL test to the log directory it appends to.
const CHILD_DIR_ENV: &str = "HEARTH_LOG_SIGKILL_CHILD_DIR";

fn open(dir: &Path, options: EmbeddedOptions) -> EmbeddedLog {
    EmbeddedLog::open(dir, options).expect("open the embedded log")
}

fn value_of(i: u64) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

async fn append_values(log: &EmbeddedLog, topic: &str, range: std::ops::Range<u64>) {
    for i in range {
        let position = log
            .append(topic, b"key", &value_of(i))
            .await
            .expect("append");
        assert_eq!(position.offset, i, "offset of appended record");
    }
}

/// Reads a partition from `from` until a short wait returns nothing.
async fn read_all(log: &EmbeddedLog, topic: &str, partition: u32, from: u64) -> Vec<Record> {
    let mut reader = log.read(topic, partition, from).await.expect("read");
    let mut records = Vec::new();
    loop {
        let batch = reader
            .next_batch(1000, Duration::from_millis(100))
            .await
            .expect("next_batch");
        if batch.is_empty() {
            return records;
        }
        records.extend(batch);
    }
}

fn assert_values(records: &[Record], from: u64) {
    for (record, offset) in records.iter().zip(from..) {
        assert_eq!(record.offset, offset);
        assert_eq!(
            record.value.as_ref(),
            value_of(offset).as_slice(),
            "value at {offset}"
        );
    }
}

fn partition_dir(dir: &Path, topic: &str, partition: u32) -> PathBuf {
    dir.join("topics").join(topic).join(partition.to_string())
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read partition directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

/// Ways a crash can leave the end of the active segment.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The last record is cut off inside its value.
    TruncatedRecord,
    /// The last record is cut off inside its header.
    TruncatedHeader,
    /// Bytes that look like a frame header but fail the CRC follow the last record.
    Garbage,
    /// A zero-filled region follows the last record, as when a crash persisted a larger
    /// file size but not the data.
    ZeroFill,
    /// One byte of the last record's value changed.
    FlippedByte,
}

#[tokio::test]
async fn torn_tail_is_truncated_at_reopen() {
    let cases = [
        (Damage::TruncatedRecord, 9),
        (Damage::TruncatedHeader, 9),
        (Damage::Garbage, 10),
        (Damage::ZeroFill, 10),
        (Damage::FlippedByte, 9),
    ];
    for (damage, intact) in cases {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = open(dir.path(), EmbeddedOptions::default());
        log.ensure_topic("events", 1).await.expect("ensure_topic");
        append_values(&log, "events", 0..10).await;
        log.close().await.expect("close");

        let segment = files_with_extension(&partition_dir(dir.path(), "events", 0), "log")
            .pop()
            .expect("a segment file");
        let len = fs::metadata(&segment).expect("segment metadata").len();
        let last_frame_len = 28 + 3 + value_of(9).len() as u64;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment)
            .expect("open segment");
        file.seek(SeekFrom::End(0)).expect("seek to the end");
        match damage {
            Damage::TruncatedRecord => file.set_len(len - 5).expect("truncate"),
            Damage::TruncatedHeader => file.set_len(len - last_frame_len + 10).expect("truncate"),
            Damage::Garbage => {
                let mut garbage = 40u32.to_le_bytes().to_vec();
                garbage.extend((0..40u8).map(|i| i.wrapping_mul(37)));
                file.write_all(&garbage).expect("append garbage");
            }
            Damage::ZeroFill => file.write_all(&[0; 4096]).expect("append zeroes"),
            Damage::FlippedByte => {
                use std::os::unix::fs::FileExt;
                file.write_all_at(b"X", len - 2).expect("flip a byte");
            }
        }
        drop(file);

        let log = open(dir.path(), EmbeddedOptions::default());
        let records = read_all(&log, "events", 0, 0).await;
        assert_eq!(records.len(), intact, "{damage:?}: records kept");
        assert_values(&records, 0);

        let position = log.append("events", b"key", &value_of(intact as u64)).await;
        assert_eq!(
            position.expect("append").offset,
            intact as u64,
            "{damage:?}"
        );
        let records = read_all(&log, "events", 0, 0).await;
        assert_eq!(
            records.len(),
            intact + 1,
            "{damage:?}: records after append"
        );
        assert_values(&records, 0);
        log.close().await.expect("close");
    }
}

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..EmbeddedOptions::default()
    }
}

#[tokio::test]
async fn segments_roll_and_read_across() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = open(dir.path(), small_segments());
    log.ensure_topic("events", 1).await.expect("ensure_topic");
    append_values(&log, "events", 0..300).await;

    let partition = partition_dir(dir.path(), "events", 0);
    let segments = files_with_extension(&partition, "log");
    assert!(segments.len() >= 5, "only {} segments", segments.len());
    let indexes = files_with_extension(&partition, "index");
    assert_eq!(
        indexes.len(),
        segments.len() - 1,
        "every sealed segment has an index"
    );

    for from in [0, 1, 57, 150, 298, 299] {
        let records = read_all(&log, "events", 0, from).await;
        assert_eq!(records.len() as u64, 300 - from, "reading from {from}");
        assert_values(&records, from);
    }

    // A reader that started before the rolls follows them.
    let mut reader = log.read("events", 0, 295).await.expect("read");
    append_values(&log, "events", 300..400).await;
    let mut records = Vec::new();
    while records.len() < 105 {
        let batch = reader
            .next_batch(7, Duration::from_secs(5))
            .await
            .expect("next_batch");
        assert!(
            !batch.is_empty(),
            "reader stopped at {}",
            295 + records.len()
        );
        records.extend(batch);
    }
    assert_values(&records, 295);
    log.close().await.expect("close");

    // Reopen with the index files, then once more after deleting one.
    let log = open(dir.path(), small_segments());
    assert_values(&read_all(&log, "events", 0, 123).await, 123);
    append_values(&log, "events", 400..410).await;
    log.close().await.expect("close");

    fs::remove_file(&indexes[1]).expect("delete an index file");
    let log = open(dir.path(), small_segments());
    assert!(indexes[1].exists(), "the index file was rebuilt");
    let records = read_all(&log, "events", 0, 0).await;
    assert_eq!(records.len(), 410);
    assert_values(&records, 0);
    log.close().await.expect("close");
}

#[tokio::test]
async fn corrupt_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = open(dir.path(), small_segments());
    log.ensure_topic("events", 1).await.expect("ensure_topic");
    append_values(&log, "events", 0..200).await;
    log.close().await.expect("close");

    let partition = partition_dir(dir.path(), "events", 0);
    let first = &files_with_extension(&partition, "log")[0];
    let len = fs::metadata(first).expect("metadata").len();
    let mut bytes = fs::read(first).expect("read segment");
    bytes[len as usize / 2] ^= 0xff;
    fs::write(first, &bytes).expect("write segment");

    // With its index file, the damage shows when a reader reaches it.
    let log = open(dir.path(), small_segments());
    let mut reader = log.read("events", 0, 0).await.expect("read");
    let mut result = Ok(Vec::new());
    for _ in 0..100 {
        result = reader.next_batch(10, Duration::from_millis(100)).await;
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(Error::Corrupt { .. })),
        "expected Corrupt, got {result:?}"
    );
    // Records after the damaged segment are still readable.
    assert_values(&read_all(&log, "events", 0, 150).await, 150);
    log.close().await.expect("close");

    // Without it, the rebuilding scan at open finds the damage.
    fs::remove_file(files_with_extension(&partition, "index")[0].clone()).expect("delete index");
    let reopened = EmbeddedLog::open(dir.path(), small_segments());
    assert!(
        matches!(reopened, Err(Error::Corrupt { .. })),
        "expected Corrupt, got {reopened:?}"
    );
}

#[tokio::test]
async fn reopen_keeps_offsets_and_commits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = open(dir.path(), EmbeddedOptions::default());
    log.ensure_topic("events", 2).await.expect("ensure_topic");
    let mut ends = HashMap::new();
    for i in 0..20 {
        let key = format!("key-{i}");
        let position = log
            .append("events", key.as_bytes(), b"first")
            .await
            .expect("append");
        ends.insert(position.partition, position.offset + 1);
    }
    assert_eq!(ends.len(), 2, "both partitions got records");

    let mut member = log
        .join_group("projection", &["events"])
        .await
        .expect("join_group");
    let mut consumed = 0;
    while consumed < 20 {
        consumed += member
            .next_batch(100, Duration::from_secs(1))
            .await
            .expect("next_batch")
            .len();
    }
    let commits: Vec<_> = ends
        .iter()
        .map(|(&partition, &next_offset)| CommittedOffset {
            topic: "events".to_string(),
            partition,
            next_offset,
        })
        .collect();
    member.commit(&commits).await.expect("commit");
    drop(member);
    log.close().await.expect("close");

    let log = open(dir.path(), EmbeddedOptions::default());
    assert_eq!(
        log.partition_count("events")
            .await
            .expect("partition_count"),
        2
    );
    let mut member = log
        .join_group("projection", &["events"])
        .await
        .expect("join_group");
    let batch = member
        .next_batch(100, Duration::from_millis(200))
        .await
        .expect("next_batch");
    assert!(
        batch.is_empty(),
        "records before the commit came back: {batch:?}"
    );

    for i in 0..4 {
        let key = format!("key-{i}");
        let position = log
            .append("events", key.as_bytes(), b"second")
            .await
            .expect("append");
        let end = ends.get_mut(&position.partition).expect("known partition");
        assert_eq!(position.offset, *end, "offset continues after reopen");
        *end += 1;
    }
    let mut after = Vec::new();
    while after.len() < 4 {
        let batch = member
            .next_batch(100, Duration::from_secs(1))
            .await
            .expect("next_batch");
        assert!(!batch.is_empty(), "new records did not arrive");
        after.extend(batch);
    }
    assert!(
        after
            .iter()
            .all(|record| record.value.as_ref() == b"second")
    );
    log.close().await.expect("close");
}

#[tokio::test]
async fn close_stops_appends_and_waiting_readers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = open(dir.path(), EmbeddedOptions::default());
    log.ensure_topic("events", 1).await.expect("ensure_topic");
    append_values(&log, "events", 0..3).await;
    let mut reader = log.read("events", 0, 0).await.expect("read");

    let second = EmbeddedLog::open(dir.path(), EmbeddedOptions::default());
    assert!(
        matches!(second, Err(Error::Io { .. })),
        "a second open must fail: {second:?}"
    );

    log.close().await.expect("close");
    assert!(matches!(
        log.append("events", b"k", b"v").await,
        Err(Error::Closed)
    ));
    let records = reader
        .next_batch(10, Duration::from_secs(1))
        .await
        .expect("next_batch");
    assert_eq!(records.len(), 3, "written records stay readable");
    let waiting = reader.next_batch(10, Duration::from_secs(5)).await;
    assert!(
        matches!(waiting, Err(Error::Closed)),
        "expected Closed, got {waiting:?}"
    );
}

#[tokio::test]
async fn default_max_record_size() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = open(dir.path(), EmbeddedOptions::default());
    log.ensure_topic("bundles", 1).await.expect("ensure_topic");
    let max = log.max_record_bytes();
    assert_eq!(max, 64 * 1024 * 1024);

    let value: Vec<u8> = (0..max - 1).map(|i| (i % 253) as u8).collect();
    log.append("bundles", b"k", &value)
        .await
        .expect("append max size");
    let too_large = log.append("bundles", b"kk", &value).await;
    assert!(
        matches!(too_large, Err(Error::RecordTooLarge { size, max: 67_108_864 }) if size == max + 1)
    );

    let records = read_all(&log, "bundles", 0, 0).await;
    assert_eq!(records.len(), 1);
    assert!(records[0].value == value, "max size record changed");
    log.close().await.expect("close");
}

/// Deterministic contents of record `seq` of appender `task` in the SIGKILL test, of
/// varying size so records straddle read and write buffers.
fn durability_value(task: u32, seq: u64) -> Vec<u8> {
    let len = 64 + ((seq * 7919 + task as u64 * 104_729) % 20_000) as usize;
    let mut value = format!("{task}:{seq}:").into_bytes();
    value.extend((0..len).map(|i| (i as u64 ^ seq ^ task as u64) as u8));
    value
}

/// Appends as fast as it can and prints every acknowledged record; the parent test kills
/// it. Runs only as the child of `acknowledged_records_survive_sigkill`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let log = Arc::new(open(
        Path::new(&dir),
        EmbeddedOptions {
            segment_bytes: 512 * 1024,
            ..EmbeddedOptions::default()
        },
    ));
    log.ensure_topic("durability", 2)
        .await
        .expect("ensure_topic");

    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("task-{task}");
            let started = Instant::now();
            // The parent kills this process long before the time limit.
            for seq in 0.. {
                if started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                let value = durability_value(task, seq);
                let position = log
                    .append("durability", key.as_bytes(), &value)
                    .await
                    .expect("append");
                println!(
                    "ACK {} {} {task} {seq}",
                    position.partition, position.offset
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender task");
    }
}

#[tokio::test]
async fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "sigkill_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child process");

    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let collector = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") && lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // Kill at a random moment after the child has acknowledged at least 500 records.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let extra_delay = Duration::from_millis(u64::from(seed % 700));
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.len() < 500 {
        assert!(
            Instant::now() < deadline,
            "child acknowledged only {} records",
            acks.len()
        );
        match lines_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => acks.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(err) => panic!("child stopped early: {err}"),
        }
    }
    std::thread::sleep(extra_delay);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    collector.join().expect("collector thread");
    acks.extend(lines_rx.try_iter());
    eprintln!(
        "killed the child {extra_delay:?} after 500 acks; {} acks in total",
        acks.len()
    );

    let log = open(dir.path(), EmbeddedOptions::default());
    let mut stored: HashMap<(u32, u64), Record> = HashMap::new();
    for partition in 0..2 {
        let records = read_all(&log, "durability", partition, 0).await;
        for (record, offset) in records.iter().zip(0u64..) {
            assert_eq!(record.offset, offset, "partition {partition} has a gap");
        }
        stored.extend(records.into_iter().map(|r| ((r.partition, r.offset), r)));
    }

    for ack in &acks {
        let fields: Vec<u64> = ack[4..]
            .split(' ')
            .map(|field| field.parse().expect("numeric ACK field"))
            .collect();
        let (partition, offset, task, seq) =
            (fields[0] as u32, fields[1], fields[2] as u32, fields[3]);
        let record = stored
            .get(&(partition, offset))
            .unwrap_or_else(|| panic!("acknowledged record {partition}/{offset} is missing"));
        assert_eq!(record.key.as_ref(), format!("task-{task}").as_bytes());
        assert!(
            record.value.as_ref() == durability_value(task, seq).as_slice(),
            "record {partition}/{offset} does not hold task {task} seq {seq}"
        );
    }
    log.close().await.expect("close");
}
