//! Writers of one output file (a part): NDJSON lines or Parquet rows of one view.
//!
//! Both stream into the object store through a multipart upload, so memory stays bounded
//! by the upload buffer (and for Parquet one row group), whatever the file's size.

use std::sync::Arc;

use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use crate::storage::FileStore;
use crate::views::{RowBuilder, View};
use crate::{Error, Result};

/// Bytes of NDJSON collected before one write to the upload buffer.
const LINE_BUFFER_BYTES: usize = 1024 * 1024;

/// Rows collected before they go to the Parquet writer as one record batch.
const PARQUET_BATCH_ROWS: usize = 8192;

/// Rows of one Parquet row group. The writer keeps the row group being built in memory.
const PARQUET_ROW_GROUP_ROWS: usize = 65_536;

/// A file being written.
pub enum PartWriter {
    Ndjson(Box<NdjsonPart>),
    Parquet(Box<ParquetPart>),
}

impl PartWriter {
    /// Writes one resource; `text` is its JSON on one line and `resource` its parsed form,
    /// which only Parquet needs.
    pub fn write(&mut self, text: &str, resource: Option<&Value>) -> Result<()> {
        match self {
            PartWriter::Ndjson(part) => part.write_line(text),
            PartWriter::Parquet(part) => {
                let parsed;
                let resource = match resource {
                    Some(resource) => resource,
                    None => {
                        parsed = serde_json::from_str::<Value>(text)
                            .map_err(|e| Error::Export(format!("stored JSON is invalid: {e}")))?;
                        &parsed
                    }
                };
                part.write_row(resource, text)
            }
        }
    }

    /// Resources written so far.
    pub fn count(&self) -> i64 {
        match self {
            PartWriter::Ndjson(part) => part.count,
            PartWriter::Parquet(part) => part.count,
        }
    }

    /// Finishes the upload and returns the file's size in bytes.
    pub fn finish(self) -> Result<i64> {
        match self {
            PartWriter::Ndjson(part) => part.finish(),
            PartWriter::Parquet(part) => part.finish(),
        }
    }
}

/// An NDJSON file: one resource per line, each line ending in `\n`.
pub struct NdjsonPart {
    handle: Handle,
    writer: BufWriter,
    buffer: Vec<u8>,
    count: i64,
    bytes: i64,
}

impl NdjsonPart {
    pub fn create(handle: Handle, files: &FileStore, job_id: &str, name: &str) -> Self {
        NdjsonPart {
            handle,
            writer: files.writer(job_id, name),
            buffer: Vec::with_capacity(LINE_BUFFER_BYTES),
            count: 0,
            bytes: 0,
        }
    }

    /// Writes one line. The caller passes JSON without raw line breaks (see
    /// [`super::one_line`]); U+2028 and U+2029 are not line breaks in NDJSON and stay as
    /// they are.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
        self.count += 1;
        self.bytes += line.len() as i64 + 1;
        if self.buffer.len() >= LINE_BUFFER_BYTES {
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn flush_buffer(&mut self) -> Result<()> {
        let writer = &mut self.writer;
        let buffer = &self.buffer;
        self.handle
            .block_on(writer.write_all(buffer))
            .map_err(|e| Error::Storage(format!("writing an export file failed: {e}")))?;
        self.buffer.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<i64> {
        self.flush_buffer()?;
        let writer = &mut self.writer;
        self.handle
            .block_on(writer.shutdown())
            .map_err(|e| Error::Storage(format!("finishing an export file failed: {e}")))?;
        Ok(self.bytes)
    }
}

/// A Parquet file of one view's rows.
pub struct ParquetPart {
    handle: Handle,
    /// The object store's `BufWriter` is an `AsyncWrite`, which the writer takes directly;
    /// finishing the writer shuts it down, which completes the upload.
    writer: AsyncArrowWriter<BufWriter>,
    rows: RowBuilder,
    count: i64,
}

impl ParquetPart {
    pub fn create(
        handle: Handle,
        files: &FileStore,
        job_id: &str,
        name: &str,
        view: Arc<View>,
    ) -> Result<Self> {
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
            .build();
        let object = files.writer(job_id, name);
        let writer = AsyncArrowWriter::try_new(object, view.schema(), Some(properties))
            .map_err(|e| Error::Export(format!("cannot start a Parquet file: {e}")))?;
        Ok(ParquetPart {
            handle,
            writer,
            rows: RowBuilder::new(view),
            count: 0,
        })
    }

    fn write_row(&mut self, resource: &Value, text: &str) -> Result<()> {
        self.rows.append(resource, text);
        self.count += 1;
        if self.rows.rows() >= PARQUET_BATCH_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<()> {
        if self.rows.rows() == 0 {
            return Ok(());
        }
        let batch = self.rows.finish()?;
        let writer = &mut self.writer;
        self.handle
            .block_on(writer.write(&batch))
            .map_err(|e| Error::Storage(format!("writing a Parquet file failed: {e}")))
    }

    fn finish(mut self) -> Result<i64> {
        self.flush_rows()?;
        // finish writes the footer and completes the upload.
        let writer = &mut self.writer;
        self.handle
            .block_on(writer.finish())
            .map_err(|e| Error::Storage(format!("finishing a Parquet file failed: {e}")))?;
        Ok(self.writer.bytes_written() as i64)
    }
}
