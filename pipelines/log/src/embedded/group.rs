//! Consumer groups of the embedded log.
//!
//! A group's committed offsets are kept in `groups/<group>.json` under the log directory
//! and replaced atomically on every commit (see [`write_atomic`]). The embedded log has no
//! group coordinator: every member of a group reads every partition of the topics it
//! joined, so a group is meant to have one member at a time.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::files::{io_error, write_atomic};
use super::partition::PartitionReaderState;
use crate::{CommittedOffset, Error, GroupConsumer, Record, Result};

/// Maximum length, in bytes, of the name of a group's offsets file.
const MAX_FILE_NAME_LEN: usize = 240;

/// Committed offsets by topic and partition.
type Offsets = BTreeMap<String, BTreeMap<u32, u64>>;

/// Contents of a group's offsets file.
#[derive(Debug, Serialize, Deserialize)]
struct GroupFile {
    group: String,
    offsets: Offsets,
}

/// The committed offsets of one consumer group, shared by its members in this process.
#[derive(Debug)]
pub(crate) struct GroupStore {
    name: String,
    path: PathBuf,
    /// Also serializes commits, so file writes happen in commit order.
    offsets: tokio::sync::Mutex<Offsets>,
}

impl GroupStore {
    /// Loads the group's offsets file from `groups_dir`, or starts with no offsets when the
    /// group has never committed. Blocking.
    pub(crate) fn load(groups_dir: &Path, name: &str) -> Result<Self> {
        let path = groups_dir.join(group_file_name(name)?);
        let offsets = match fs::read(&path) {
            Ok(contents) => {
                let file: GroupFile =
                    serde_json::from_slice(&contents).map_err(|err| Error::Corrupt {
                        path: path.display().to_string(),
                        position: err.column() as u64,
                        reason: format!("invalid group offsets file: {err}"),
                    })?;
                file.offsets
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Offsets::new(),
            Err(err) => return Err(io_error(&path, err)),
        };
        Ok(Self {
            name: name.to_string(),
            path,
            offsets: tokio::sync::Mutex::new(offsets),
        })
    }

    /// Returns the committed next offset of a partition, if the group has one.
    pub(crate) async fn committed(&self, topic: &str, partition: u32) -> Option<u64> {
        let offsets = self.offsets.lock().await;
        offsets.get(topic)?.get(&partition).copied()
    }

    /// Merges `commits` into the group's offsets and writes the file durably.
    async fn commit(&self, commits: &[CommittedOffset]) -> Result<()> {
        let mut offsets = self.offsets.lock().await;
        let mut updated = offsets.clone();
        for commit in commits {
            updated
                .entry(commit.topic.clone())
                .or_default()
                .insert(commit.partition, commit.next_offset);
        }

        let file = GroupFile {
            group: self.name.clone(),
            offsets: updated,
        };
        let contents = serde_json::to_vec_pretty(&file)
            .map_err(|err| io_error(&self.path, io::Error::other(err)))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &contents))
            .await
            .map_err(|err| io_error(&self.path, io::Error::other(err.to_string())))??;

        *offsets = file.offsets;
        Ok(())
    }
}

/// Returns the file name for a group's offsets: the name with every byte other than
/// ASCII letters, digits, `-` and `_` written as `%XX`, plus `.json`.
pub(crate) fn group_file_name(group: &str) -> Result<String> {
    if group.is_empty() {
        return Err(Error::InvalidArgument(
            "consumer group name must not be empty".to_string(),
        ));
    }
    let mut name = String::with_capacity(group.len() + 5);
    for byte in group.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name.push_str(".json");
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "consumer group name {group:?} is too long: its offsets file name would exceed \
             {MAX_FILE_NAME_LEN} bytes"
        )));
    }
    Ok(name)
}

/// A member of an embedded consumer group. It reads every partition of its topics.
pub struct EmbeddedGroupConsumer {
    store: Arc<GroupStore>,
    readers: Vec<PartitionReaderState>,
    /// Reader that the next batch starts with, so no partition starves the others.
    first_reader: usize,
}

impl EmbeddedGroupConsumer {
    pub(crate) fn new(store: Arc<GroupStore>, readers: Vec<PartitionReaderState>) -> Self {
        Self {
            store,
            readers,
            first_reader: 0,
        }
    }

    /// Reads fsynced records from the partitions in turn without waiting.
    async fn read_ready(&mut self, max: usize) -> Result<Vec<Record>> {
        let count = self.readers.len();
        let mut records = Vec::new();
        for i in 0..count {
            if records.len() >= max {
                break;
            }
            let reader = &mut self.readers[(self.first_reader + i) % count];
            if reader.has_records() {
                records.extend(reader.read_available(max - records.len()).await?);
            }
        }
        self.first_reader = (self.first_reader + 1) % count;
        Ok(records)
    }

    fn check_assigned(&self, commit: &CommittedOffset) -> Result<()> {
        let joined = self
            .readers
            .iter()
            .any(|reader| reader.topic() == commit.topic);
        if !joined {
            return Err(Error::InvalidArgument(format!(
                "consumer group {} cannot commit topic {}: the member did not join it",
                self.store.name, commit.topic
            )));
        }
        let assigned = self
            .readers
            .iter()
            .any(|reader| reader.topic() == commit.topic && reader.partition() == commit.partition);
        if !assigned {
            return Err(Error::UnknownPartition {
                topic: commit.topic.clone(),
                partition: commit.partition,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl GroupConsumer for EmbeddedGroupConsumer {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>> {
        if max == 0 || self.readers.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let records = self.read_ready(max).await?;
            if !records.is_empty() {
                return Ok(records);
            }

            let waits = self
                .readers
                .iter_mut()
                .map(|reader| Box::pin(reader.wait_for_records()));
            match tokio::time::timeout_at(deadline, futures::future::select_all(waits)).await {
                Ok((result, _, _)) => result?,
                Err(_elapsed) => return Ok(Vec::new()),
            }
        }
    }

    async fn commit(&mut self, offsets: &[CommittedOffset]) -> Result<()> {
        for commit in offsets {
            self.check_assigned(commit)?;
        }
        self.store.commit(offsets).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_file_name_escapes_bytes() {
        assert_eq!(
            group_file_name("cdr-projection").unwrap(),
            "cdr-projection.json"
        );
        assert_eq!(group_file_name("a.b/c").unwrap(), "a%2Eb%2Fc.json");
        assert_eq!(group_file_name("..").unwrap(), "%2E%2E.json");
    }

    #[test]
    fn group_file_name_rejects_empty_and_long() {
        assert!(matches!(
            group_file_name(""),
            Err(Error::InvalidArgument(_))
        ));
        let long = "é".repeat(60);
        assert!(matches!(
            group_file_name(&long),
            Err(Error::InvalidArgument(_))
        ));
    }
}
