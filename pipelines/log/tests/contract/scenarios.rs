//! Scenarios of the log contract, written against `dyn Log` only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_log::partitioner::partition_for_key;
use hearth_log::{CommittedOffset, Error, GroupConsumer, PartitionReader, Position, Record};

use super::Backend;

/// Upper bound for any wait that should end as soon as records arrive.
const READ_DEADLINE: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Reads until `count` records arrived, failing the test after [`READ_DEADLINE`].
async fn read_exactly(reader: &mut dyn PartitionReader, count: usize, max: usize) -> Vec<Record> {
    let deadline = Instant::now() + READ_DEADLINE;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records before the deadline",
            records.len()
        );
        let batch = reader
            .next_batch(max, Duration::from_millis(500))
            .await
            .expect("next_batch");
        assert!(
            batch.len() <= max,
            "batch of {} exceeds max {max}",
            batch.len()
        );
        records.extend(batch);
    }
    assert_eq!(
        records.len(),
        count,
        "reader returned more records than appended"
    );
    records
}

/// Consumes until `count` records arrived or `wait` passed.
async fn consume(member: &mut dyn GroupConsumer, count: usize, wait: Duration) -> Vec<Record> {
    let deadline = Instant::now() + wait;
    let mut records = Vec::new();
    while records.len() < count && Instant::now() < deadline {
        let batch = member
            .next_batch(100, Duration::from_millis(500))
            .await
            .expect("group next_batch");
        records.extend(batch);
    }
    records
}

/// Asserts that a group member receives nothing more within `wait`.
async fn assert_no_more(member: &mut dyn GroupConsumer, wait: Duration) {
    let extra = member
        .next_batch(100, wait)
        .await
        .expect("group next_batch");
    let offsets: Vec<_> = extra.iter().map(|r| (r.partition, r.offset)).collect();
    assert!(extra.is_empty(), "unexpected records: {offsets:?}");
}

pub async fn append_offsets_increase_per_partition(backend: &Backend) {
    let topic = backend.name("offsets");
    backend
        .log
        .ensure_topic(&topic, 3)
        .await
        .expect("ensure_topic");

    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for i in 0..30 {
        let key = format!("key-{}", i % 10);
        let position = backend
            .log
            .append(&topic, key.as_bytes(), format!("value-{i}").as_bytes())
            .await
            .expect("append");
        assert!(
            position.partition < 3,
            "partition {} out of range",
            position.partition
        );
        by_partition
            .entry(position.partition)
            .or_default()
            .push(position.offset);
    }

    for (partition, offsets) in by_partition {
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, expected, "offsets of partition {partition}");
    }
}

pub async fn read_from_start_returns_every_record(backend: &Backend) {
    let topic = backend.name("read-all");
    backend
        .log
        .ensure_topic(&topic, 1)
        .await
        .expect("ensure_topic");

    let mut appended = Vec::new();
    let before = now_ms();
    for i in 0..20u32 {
        let key = if i % 5 == 0 {
            Vec::new()
        } else {
            format!("key-{i}").into_bytes()
        };
        let value: Vec<u8> = match i {
            3 => Vec::new(),
            7 => (0..=255u8).collect(),
            _ => format!("{{\"resourceType\":\"Patient\",\"id\":\"{i}\"}}").into_bytes(),
        };
        let position = backend
            .log
            .append(&topic, &key, &value)
            .await
            .expect("append");
        assert_eq!(
            position,
            Position {
                partition: 0,
                offset: i as u64
            }
        );
        appended.push((key, value));
    }
    let after = now_ms();

    let mut reader = backend.log.read(&topic, 0, 0).await.expect("read");
    let records = read_exactly(reader.as_mut(), appended.len(), 7).await;
    for (i, (record, (key, value))) in records.iter().zip(&appended).enumerate() {
        assert_eq!(record.topic, topic);
        assert_eq!(record.partition, 0);
        assert_eq!(record.offset, i as u64, "offset of record {i}");
        assert_eq!(record.key.as_ref(), key.as_slice(), "key of record {i}");
        assert_eq!(
            record.value.as_ref(),
            value.as_slice(),
            "value of record {i}"
        );
        assert!(
            (before..=after).contains(&record.timestamp_ms),
            "timestamp {} of record {i} outside [{before}, {after}]",
            record.timestamp_ms
        );
    }
}

pub async fn read_from_middle_offset(backend: &Backend) {
    let topic = backend.name("read-middle");
    backend
        .log
        .ensure_topic(&topic, 1)
        .await
        .expect("ensure_topic");
    for i in 0..50 {
        backend
            .log
            .append(&topic, b"k", format!("value-{i}").as_bytes())
            .await
            .expect("append");
    }

    for from in [23u64, 49, 0] {
        let mut reader = backend.log.read(&topic, 0, from).await.expect("read");
        let records = read_exactly(reader.as_mut(), (50 - from) as usize, 10).await;
        for (record, offset) in records.iter().zip(from..) {
            assert_eq!(record.offset, offset, "reading from {from}");
            assert_eq!(record.value.as_ref(), format!("value-{offset}").as_bytes());
        }
    }
}

pub async fn reader_at_tail_receives_later_append(backend: &Backend) {
    let topic = backend.name("tail");
    backend
        .log
        .ensure_topic(&topic, 1)
        .await
        .expect("ensure_topic");
    for i in 0..3 {
        backend
            .log
            .append(&topic, b"k", format!("early-{i}").as_bytes())
            .await
            .expect("append");
    }

    let mut reader = backend.log.read(&topic, 0, 3).await.expect("read");
    let log = backend.log.clone();
    let appender_topic = topic.clone();
    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        log.append(&appender_topic, b"k", b"late").await
    });

    let started = Instant::now();
    let batch = reader
        .next_batch(10, Duration::from_secs(20))
        .await
        .expect("next_batch");
    let waited = started.elapsed();
    let position = appender.await.expect("appender task").expect("append");

    assert_eq!(position.offset, 3);
    assert_eq!(batch.len(), 1, "one record expected, got {batch:?}");
    assert_eq!(batch[0].offset, 3);
    assert_eq!(batch[0].value.as_ref(), b"late");
    assert!(
        waited < Duration::from_secs(10),
        "reader woke after {waited:?}"
    );
}

pub async fn same_key_keeps_partition_and_order(backend: &Backend) {
    let topic = backend.name("keys");
    let partitions = 4;
    backend
        .log
        .ensure_topic(&topic, partitions)
        .await
        .expect("ensure_topic");

    let keys = [
        "patient-1",
        "patient-2",
        "patient-3",
        "encounter-9",
        "21",
        "foobar",
    ];
    let mut partition_of: HashMap<&str, u32> = HashMap::new();
    for seq in 0..8 {
        for key in keys {
            let value = format!("{key}/{seq}");
            let position = backend
                .log
                .append(&topic, key.as_bytes(), value.as_bytes())
                .await
                .expect("append");
            let first = *partition_of.entry(key).or_insert(position.partition);
            assert_eq!(position.partition, first, "key {key} moved partitions");
            assert_eq!(
                position.partition,
                partition_for_key(key.as_bytes(), partitions),
                "key {key} is not in its murmur2 partition"
            );
        }
    }

    for partition in 0..partitions {
        let expected = keys
            .iter()
            .filter(|key| partition_of[*key] == partition)
            .count()
            * 8;
        let mut reader = backend.log.read(&topic, partition, 0).await.expect("read");
        let records = read_exactly(reader.as_mut(), expected, 100).await;
        let mut last_seq: HashMap<Vec<u8>, u32> = HashMap::new();
        for record in records {
            let value = String::from_utf8(record.value.to_vec()).expect("utf-8 value");
            let (key, seq) = value.split_once('/').expect("key/seq value");
            assert_eq!(record.key.as_ref(), key.as_bytes());
            let seq: u32 = seq.parse().expect("sequence number");
            if let Some(previous) = last_seq.insert(record.key.to_vec(), seq) {
                assert_eq!(seq, previous + 1, "order of key {key}");
            }
        }
    }
}

pub async fn concurrent_appends_read_exactly_once(backend: &Backend) {
    let topic = backend.name("concurrent");
    let partitions = 4;
    backend
        .log
        .ensure_topic(&topic, partitions)
        .await
        .expect("ensure_topic");

    let tasks = 16;
    let per_task = 50;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let log = backend.log.clone();
        let topic = topic.clone();
        handles.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for i in 0..per_task {
                let key = format!("key-{}", (task * per_task + i) % 37);
                let value = format!("task-{task}-record-{i}");
                let position = log
                    .append(&topic, key.as_bytes(), value.as_bytes())
                    .await
                    .expect("append");
                positions.push((position, value));
            }
            positions
        }));
    }

    let mut expected: HashMap<Position, String> = HashMap::new();
    for handle in handles {
        for (position, value) in handle.await.expect("append task") {
            let duplicate = expected.insert(position, value);
            assert!(
                duplicate.is_none(),
                "position {position:?} acknowledged twice"
            );
        }
    }
    assert_eq!(expected.len(), tasks * per_task);

    let mut seen = HashSet::new();
    for partition in 0..partitions {
        let count = expected.keys().filter(|p| p.partition == partition).count();
        let mut reader = backend.log.read(&topic, partition, 0).await.expect("read");
        let records = read_exactly(reader.as_mut(), count, 64).await;
        for (record, offset) in records.iter().zip(0u64..) {
            assert_eq!(record.offset, offset, "partition {partition} has a gap");
            let position = Position { partition, offset };
            let value = expected.get(&position).expect("record was acknowledged");
            assert_eq!(record.value.as_ref(), value.as_bytes());
            assert!(seen.insert(value.clone()), "value {value} read twice");
        }
    }
    assert_eq!(seen.len(), tasks * per_task);
}

pub async fn group_member_resumes_after_commit(backend: &Backend) {
    let topic = backend.name("group-resume");
    let group = backend.name("group");
    backend
        .log
        .ensure_topic(&topic, 2)
        .await
        .expect("ensure_topic");
    for i in 0..20 {
        let key = format!("key-{i}");
        backend
            .log
            .append(&topic, key.as_bytes(), format!("first-{i}").as_bytes())
            .await
            .expect("append");
    }

    let mut first = backend
        .log
        .join_group(&group, &[&topic])
        .await
        .expect("join_group");
    let records = consume(first.as_mut(), 20, backend.join_wait).await;
    assert_eq!(
        records.len(),
        20,
        "first member read {} of 20 records",
        records.len()
    );

    // Commit half of each partition, so the next member must start in the middle.
    let mut per_partition: BTreeMap<u32, u64> = BTreeMap::new();
    for record in &records {
        *per_partition.entry(record.partition).or_default() += 1;
    }
    let commits: Vec<CommittedOffset> = per_partition
        .iter()
        .map(|(&partition, &count)| CommittedOffset {
            topic: topic.clone(),
            partition,
            next_offset: count / 2,
        })
        .collect();
    first.commit(&commits).await.expect("commit");
    drop(first);

    for i in 0..5 {
        let key = format!("key-{i}");
        backend
            .log
            .append(&topic, key.as_bytes(), format!("second-{i}").as_bytes())
            .await
            .expect("append");
    }

    let expected: usize = per_partition
        .values()
        .map(|&count| (count - count / 2) as usize)
        .sum::<usize>()
        + 5;
    let mut second = backend
        .log
        .join_group(&group, &[&topic])
        .await
        .expect("join_group");
    let resumed = consume(second.as_mut(), expected, backend.join_wait).await;
    assert_eq!(
        resumed.len(),
        expected,
        "second member read {} of {expected} records",
        resumed.len()
    );
    for record in &resumed {
        let committed = per_partition[&record.partition] / 2;
        assert!(
            record.offset >= committed,
            "second member read offset {} of partition {} before the commit at {committed}",
            record.offset,
            record.partition
        );
    }
    let unique: HashSet<_> = resumed.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(
        unique.len(),
        resumed.len(),
        "second member read a record twice"
    );
    assert_no_more(second.as_mut(), Duration::from_secs(1)).await;
}

pub async fn groups_are_independent(backend: &Backend) {
    let topic = backend.name("groups");
    backend
        .log
        .ensure_topic(&topic, 1)
        .await
        .expect("ensure_topic");
    for i in 0..6 {
        backend
            .log
            .append(&topic, b"k", format!("value-{i}").as_bytes())
            .await
            .expect("append");
    }

    let group_a = backend.name("group-a");
    let mut member_a = backend
        .log
        .join_group(&group_a, &[&topic])
        .await
        .expect("join a");
    let records_a = consume(member_a.as_mut(), 6, backend.join_wait).await;
    assert_eq!(records_a.len(), 6);
    member_a
        .commit(&[CommittedOffset {
            topic: topic.clone(),
            partition: 0,
            next_offset: 6,
        }])
        .await
        .expect("commit a");

    let group_b = backend.name("group-b");
    let mut member_b = backend
        .log
        .join_group(&group_b, &[&topic])
        .await
        .expect("join b");
    let records_b = consume(member_b.as_mut(), 6, backend.join_wait).await;
    let offsets: Vec<u64> = records_b.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<_>>(), "group b starts at 0");
    assert_no_more(member_b.as_mut(), Duration::from_millis(500)).await;
}

pub async fn empty_batch_after_wait(backend: &Backend) {
    let topic = backend.name("empty");
    backend
        .log
        .ensure_topic(&topic, 1)
        .await
        .expect("ensure_topic");

    let mut reader = backend.log.read(&topic, 0, 0).await.expect("read");
    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let batch = reader.next_batch(10, wait).await.expect("next_batch");
    let waited = started.elapsed();
    assert!(batch.is_empty(), "expected no records, got {batch:?}");
    assert!(
        waited >= wait - Duration::from_millis(50),
        "returned after {waited:?}"
    );
    assert!(
        waited < wait + Duration::from_secs(5),
        "returned after {waited:?}"
    );

    let group = backend.name("empty-group");
    let mut member = backend
        .log
        .join_group(&group, &[&topic])
        .await
        .expect("join_group");
    let started = Instant::now();
    let batch = member.next_batch(10, wait).await.expect("group next_batch");
    let waited = started.elapsed();
    assert!(batch.is_empty(), "expected no records, got {batch:?}");
    assert!(
        waited >= wait - Duration::from_millis(50),
        "returned after {waited:?}"
    );

    let batch = reader.next_batch(0, wait).await.expect("next_batch of 0");
    assert!(batch.is_empty());
}

pub async fn records_near_max_size(backend: &Backend) {
    let topic = backend.name("large");
    backend
        .log
        .ensure_topic(&topic, 1)
        .await
        .expect("ensure_topic");
    let max = backend.max_record_bytes;
    let key = b"bundle-1";

    let bundle: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let largest: Vec<u8> = (0..max - key.len()).map(|i| (i % 241) as u8).collect();
    backend
        .log
        .append(&topic, key, &bundle)
        .await
        .expect("append 1 MiB");
    backend
        .log
        .append(&topic, key, &largest)
        .await
        .expect("append max size");
    backend
        .log
        .append(&topic, key, b"small")
        .await
        .expect("append small");

    let too_large = vec![7u8; max - key.len() + 1];
    match backend.log.append(&topic, key, &too_large).await {
        Err(Error::RecordTooLarge { size, max: limit }) => {
            assert_eq!(size, max + 1);
            assert_eq!(limit, max);
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }

    let mut reader = backend.log.read(&topic, 0, 0).await.expect("read");
    let records = read_exactly(reader.as_mut(), 3, 10).await;
    assert!(records[0].value == bundle, "1 MiB record changed");
    assert!(records[1].value == largest, "max size record changed");
    assert_eq!(records[2].value.as_ref(), b"small");
    assert_eq!(records[1].key.as_ref(), key);
}

pub async fn unknown_topic_and_partition(backend: &Backend) {
    let missing = backend.name("missing");
    assert!(matches!(
        backend.log.append(&missing, b"k", b"v").await,
        Err(Error::UnknownTopic(name)) if name == missing
    ));
    assert!(matches!(
        backend.log.partition_count(&missing).await,
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        backend.log.read(&missing, 0, 0).await.err(),
        Some(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        backend.log.join_group("g", &[&missing]).await.err(),
        Some(Error::UnknownTopic(_))
    ));

    let topic = backend.name("known");
    backend
        .log
        .ensure_topic(&topic, 2)
        .await
        .expect("ensure_topic");
    backend
        .log
        .ensure_topic(&topic, 2)
        .await
        .expect("ensure_topic again");
    assert_eq!(
        backend
            .log
            .partition_count(&topic)
            .await
            .expect("partition_count"),
        2
    );
    assert!(matches!(
        backend.log.read(&topic, 2, 0).await.err(),
        Some(Error::UnknownPartition { partition: 2, .. })
    ));
    assert!(matches!(
        backend.log.ensure_topic("not/valid", 1).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        backend.log.ensure_topic(&backend.name("zero"), 0).await,
        Err(Error::InvalidArgument(_))
    ));
}

pub async fn end_offsets_follow_appends(backend: &Backend) {
    let topic = backend.name("ends");
    backend
        .log
        .ensure_topic(&topic, 2)
        .await
        .expect("ensure_topic");
    let empty = backend.log.end_offsets(&topic).await.expect("end_offsets");
    assert_eq!(empty, vec![0, 0], "end offsets of a new topic");

    let mut appended = [0u64; 2];
    for i in 0..12 {
        let key = format!("key-{i}");
        let position = backend
            .log
            .append(&topic, key.as_bytes(), b"value")
            .await
            .expect("append");
        appended[position.partition as usize] += 1;
    }
    let ends = backend.log.end_offsets(&topic).await.expect("end_offsets");
    assert_eq!(ends, appended.to_vec(), "end offsets after 12 appends");

    let mut reader = backend.log.read(&topic, 0, 0).await.expect("read");
    let records = read_exactly(reader.as_mut(), appended[0] as usize, 100).await;
    assert!(
        records.iter().all(|r| r.topic == topic),
        "records carry the topic name without prefix"
    );
}
