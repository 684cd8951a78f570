//! Segment files: naming, the sparse offset index, the recovery scan and reading records.
//!
//! A partition directory contains `<base>.log` segment files, where `<base>` is the offset of
//! the segment's first record as 20 decimal digits, and a `<base>.index` file for every
//! sealed segment. The index maps some offsets to byte positions, one entry per
//! `index_interval_bytes` of records, so a reader finds any offset by a binary search
//! and a short forward scan.
//!
//! Index file layout (little-endian): `count` entries of (u64 offset, u64 position), then
//! a trailer of u64 segment length, u64 next offset, u32 entry count and a u32 CRC-32C of
//! every byte before the CRC. An index file that is missing, fails its CRC or describes
//! a segment of another length is rebuilt by scanning the segment.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::files::{io_error, write_atomic};
use super::record::{self, Decoded, DecodedRecord, HEADER_LEN};
use crate::{Error, Result};

const SEGMENT_EXTENSION: &str = "log";
const INDEX_EXTENSION: &str = "index";
const INDEX_ENTRY_LEN: usize = 16;
const INDEX_TRAILER_LEN: usize = 24;

/// Bytes a reader fetches from a segment file per read call, unless one record is larger.
pub(crate) const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// Returns the path of the segment file whose first offset is `base`.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SEGMENT_EXTENSION}"))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{INDEX_EXTENSION}"))
}

/// Lists the base offsets of the segment files in a partition directory, in order.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let entries = fs::read_dir(dir).map_err(|err| io_error(dir, err))?;
    for entry in entries {
        let path = entry.map_err(|err| io_error(dir, err))?.path();
        if path.extension().is_none_or(|ext| ext != SEGMENT_EXTENSION) {
            continue;
        }
        let base = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<u64>().ok());
        match base {
            Some(base) => bases.push(base),
            None => {
                tracing::warn!(path = %path.display(), "ignoring a .log file whose name is not an offset")
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// One entry of the sparse offset index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub position: u64,
}

/// Metadata of one segment file.
#[derive(Debug)]
pub(crate) struct SegmentMeta {
    pub base: u64,
    pub path: PathBuf,
    /// Bytes of fsynced records. Readers never read past it.
    pub len: u64,
    /// Offset that the next record appended to this segment gets.
    pub next_offset: u64,
    pub index: Vec<IndexEntry>,
}

impl SegmentMeta {
    /// Returns the indexed record closest before or at `target`, or the segment start.
    pub(crate) fn seek(&self, target: u64) -> IndexEntry {
        let after = self.index.partition_point(|entry| entry.offset <= target);
        match after.checked_sub(1) {
            Some(i) => self.index[i],
            None => IndexEntry {
                offset: self.base,
                position: 0,
            },
        }
    }
}

/// Result of scanning a segment file from its start.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// Bytes of valid records at the start of the file.
    pub valid_len: u64,
    pub next_offset: u64,
    pub index: Vec<IndexEntry>,
    /// Byte position of the first invalid record and the reason, when the scan stopped
    /// before the end of the file.
    pub invalid_at: Option<(u64, String)>,
}

/// Reads a segment from the start and checks every record until the end of the file or
/// the first invalid byte.
pub(crate) fn scan(path: &Path, base: u64, index_interval: u64) -> Result<ScanOutcome> {
    let file = File::open(path).map_err(|err| io_error(path, err))?;
    let file_len = file.metadata().map_err(|err| io_error(path, err))?.len();
    let mut reader = BufReader::with_capacity(READ_CHUNK_BYTES, file);

    let mut outcome = ScanOutcome {
        valid_len: 0,
        next_offset: base,
        index: Vec::new(),
        invalid_at: None,
    };
    let mut last_indexed = 0u64;
    let mut frame = Vec::new();

    while outcome.valid_len < file_len {
        let position = outcome.valid_len;
        let remaining = file_len - position;
        if remaining < HEADER_LEN as u64 {
            outcome.invalid_at = Some((position, format!("partial header of {remaining} bytes")));
            break;
        }

        frame.resize(HEADER_LEN, 0);
        reader
            .read_exact(&mut frame)
            .map_err(|err| io_error(path, err))?;
        let total = match record::frame_len_from_prefix(&frame) {
            Ok(Some(total)) => total,
            Ok(None) => unreachable!("a full header contains the length field"),
            Err(reason) => {
                outcome.invalid_at = Some((position, reason));
                break;
            }
        };
        if total as u64 > remaining {
            outcome.invalid_at = Some((
                position,
                format!("record of {total} bytes but only {remaining} bytes left in the file"),
            ));
            break;
        }

        frame.resize(total, 0);
        reader
            .read_exact(&mut frame[HEADER_LEN..])
            .map_err(|err| io_error(path, err))?;
        if let Err(reason) = record::verify_frame(&frame, outcome.next_offset) {
            outcome.invalid_at = Some((position, reason));
            break;
        }

        if position > 0 && position - last_indexed >= index_interval {
            outcome.index.push(IndexEntry {
                offset: outcome.next_offset,
                position,
            });
            last_indexed = position;
        }
        outcome.valid_len += total as u64;
        outcome.next_offset += 1;
    }
    Ok(outcome)
}

/// Loads the metadata of a sealed segment from its index file, or rebuilds it with a
/// scan. Any invalid record in a sealed segment is an error: sealed segments were fsynced
/// in full before the next one was created, so a crash cannot have torn them.
pub(crate) fn load_sealed(dir: &Path, base: u64, index_interval: u64) -> Result<SegmentMeta> {
    let path = segment_path(dir, base);
    let len = fs::metadata(&path)
        .map_err(|err| io_error(&path, err))?
        .len();

    if let Some((index, next_offset)) = read_index(&index_path(dir, base), len) {
        return Ok(SegmentMeta {
            base,
            path,
            len,
            next_offset,
            index,
        });
    }

    tracing::info!(path = %path.display(), "rebuilding the offset index of a sealed segment");
    let outcome = scan(&path, base, index_interval)?;
    if let Some((position, reason)) = outcome.invalid_at {
        return Err(Error::Corrupt {
            path: path.display().to_string(),
            position,
            reason: format!("{reason} (in a sealed segment)"),
        });
    }
    let meta = SegmentMeta {
        base,
        path,
        len: outcome.valid_len,
        next_offset: outcome.next_offset,
        index: outcome.index,
    };
    write_index(dir, &meta)?;
    Ok(meta)
}

/// Writes the index file of a sealed segment.
pub(crate) fn write_index(dir: &Path, meta: &SegmentMeta) -> Result<()> {
    let mut contents = Vec::with_capacity(meta.index.len() * INDEX_ENTRY_LEN + INDEX_TRAILER_LEN);
    for entry in &meta.index {
        contents.extend_from_slice(&entry.offset.to_le_bytes());
        contents.extend_from_slice(&entry.position.to_le_bytes());
    }
    contents.extend_from_slice(&meta.len.to_le_bytes());
    contents.extend_from_slice(&meta.next_offset.to_le_bytes());
    contents.extend_from_slice(&(meta.index.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c(&contents);
    contents.extend_from_slice(&crc.to_le_bytes());
    write_atomic(&index_path(dir, meta.base), &contents)
}

/// Reads an index file and returns its entries and the segment's next offset, or `None`
/// when it is missing, damaged or written for a segment of another length.
fn read_index(path: &Path, segment_len: u64) -> Option<(Vec<IndexEntry>, u64)> {
    let contents = match fs::read(path) {
        Ok(contents) => contents,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "failed to read an index file; rebuilding it");
            return None;
        }
    };
    let valid = parse_index(&contents, segment_len);
    if valid.is_none() {
        tracing::warn!(path = %path.display(), "index file is damaged or out of date; rebuilding it");
    }
    valid
}

fn parse_index(contents: &[u8], segment_len: u64) -> Option<(Vec<IndexEntry>, u64)> {
    let body_len = contents.len().checked_sub(INDEX_TRAILER_LEN)?;
    let (body, trailer) = contents.split_at(body_len);
    let u64_at = |bytes: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let u32_at = |bytes: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };

    let crc = u32_at(trailer, 20)?;
    if crc32c::crc32c(&contents[..contents.len() - 4]) != crc {
        return None;
    }
    let len = u64_at(trailer, 0)?;
    let next_offset = u64_at(trailer, 8)?;
    let count = u32_at(trailer, 16)? as usize;
    if len != segment_len || body.len() != count * INDEX_ENTRY_LEN {
        return None;
    }

    let index = body
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|chunk| {
            Some(IndexEntry {
                offset: u64_at(chunk, 0)?,
                position: u64_at(chunk, 8)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((index, next_offset))
}

/// Position of a reader inside one segment file.
#[derive(Debug)]
pub(crate) struct SegmentCursor {
    pub base: u64,
    pub path: PathBuf,
    file: File,
    /// Byte position of the next frame to decode.
    pub position: u64,
    /// Offset of the next frame to decode.
    pub offset: u64,
    /// Bytes already read from `position` onward.
    buffered: Bytes,
}

impl SegmentCursor {
    /// Opens a segment for reading at a record boundary.
    pub(crate) fn open(base: u64, path: PathBuf, at: IndexEntry) -> Result<Self> {
        let file = File::open(&path).map_err(|err| io_error(&path, err))?;
        Ok(Self {
            base,
            path,
            file,
            position: at.position,
            offset: at.offset,
            buffered: Bytes::new(),
        })
    }

    /// Decodes records up to byte `end` of the segment and appends those with an offset of
    /// at least `from_offset` to `out`, until it contains `max` records or the keys and values
    /// appended used up `budget` bytes.
    pub(crate) fn read(
        &mut self,
        end: u64,
        from_offset: u64,
        max: usize,
        budget: &mut usize,
        out: &mut Vec<DecodedRecord>,
    ) -> Result<()> {
        while out.len() < max && *budget > 0 && self.position < end {
            if self.buffered.is_empty() {
                self.fill(end, 0)?;
            }
            match record::decode(&self.buffered, 0, self.offset) {
                Decoded::Record(decoded) => {
                    self.buffered = self.buffered.slice(decoded.frame_len..);
                    self.position += decoded.frame_len as u64;
                    self.offset += 1;
                    if decoded.offset >= from_offset {
                        *budget = budget.saturating_sub(decoded.key.len() + decoded.value.len());
                        out.push(decoded);
                    }
                }
                Decoded::Incomplete(needed) => self.fill(end, needed)?,
                Decoded::Invalid(reason) => return Err(self.corrupt(reason)),
            }
        }
        Ok(())
    }

    /// Reads at least `needed` bytes (and up to a chunk) from `position`, all before `end`.
    fn fill(&mut self, end: u64, needed: usize) -> Result<()> {
        let available = end - self.position;
        if needed as u64 > available {
            return Err(self.corrupt(format!(
                "record of {needed} bytes runs past the {available} bytes written after it"
            )));
        }
        let len = (available.min(READ_CHUNK_BYTES as u64) as usize).max(needed);
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(|err| io_error(&self.path, err))?;
        self.buffered = Bytes::from(buf);
        Ok(())
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.display().to_string(),
            position: self.position,
            reason,
        }
    }
}
