//! A check of an Avro binary body against its writer schema, run before apache-avro decodes
//! it.
//!
//! apache-avro 0.21 reserves room for all items of an array or map block as soon as it reads
//! the block's item count. It caps that count only at its allocation limit (512 Mi items by
//! default, each a `Value` of about 56 bytes), so one corrupt count can make it request tens
//! of gigabytes and abort the process. This pass walks the body without allocating. It rejects
//! item counts larger than the bytes left, lengths past the end, out-of-range union and enum
//! indexes, and bytes after the record, so the memory the decoder reserves stays
//! proportional to the input size. It does not check UTF-8, which the decoder does.

use apache_avro::Schema;

/// Reason a body does not match its schema.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// The body ended at `offset` inside a value.
    Truncated { offset: usize },
    /// The bytes at `offset` cannot be a value of the schema.
    Invalid { offset: usize, reason: String },
    /// The schema contains a type that this check cannot skip.
    Unsupported(String),
}

/// Checks that `body` is exactly one value of `schema`.
pub(crate) fn validate_body(schema: &Schema, body: &[u8]) -> Result<(), BodyError> {
    let mut cursor = Cursor {
        data: body,
        offset: 0,
    };
    cursor.skip_value(schema)?;
    if cursor.offset < body.len() {
        return Err(cursor.invalid(format!(
            "{} bytes follow the end of the record",
            body.len() - cursor.offset
        )));
    }
    Ok(())
}

struct Cursor<'a> {
    data: &'a [u8],
    offset: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.offset
    }

    fn invalid(&self, reason: String) -> BodyError {
        BodyError::Invalid {
            offset: self.offset,
            reason,
        }
    }

    fn skip_value(&mut self, schema: &Schema) -> Result<(), BodyError> {
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip_boolean(),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.read_int().map(drop),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.read_long().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Bytes | Schema::String | Schema::BigDecimal => self.skip_length_prefixed(),
            Schema::Fixed(fixed) => self.skip(fixed.size),
            Schema::Decimal(decimal) => self.skip_value(&decimal.inner),
            Schema::Enum(enumeration) => {
                self.read_index(enumeration.symbols.len(), "enum symbol")?;
                Ok(())
            }
            Schema::Union(union) => {
                let variants = union.variants();
                let index = self.read_index(variants.len(), "union branch")?;
                self.skip_value(&variants[index])
            }
            Schema::Array(array) => self.skip_blocks(|cursor| cursor.skip_value(&array.items)),
            Schema::Map(map) => self.skip_blocks(|cursor| {
                cursor.skip_length_prefixed()?;
                cursor.skip_value(&map.types)
            }),
            Schema::Record(record) => {
                for field in &record.fields {
                    self.skip_value(&field.schema)?;
                }
                Ok(())
            }
            Schema::Uuid | Schema::Duration | Schema::Ref { .. } => Err(BodyError::Unsupported(
                format!("{schema:?} cannot be checked"),
            )),
        }
    }

    fn skip(&mut self, len: usize) -> Result<(), BodyError> {
        if len > self.remaining() {
            return Err(BodyError::Truncated {
                offset: self.data.len(),
            });
        }
        self.offset += len;
        Ok(())
    }

    fn skip_boolean(&mut self) -> Result<(), BodyError> {
        match self.data.get(self.offset) {
            None => Err(BodyError::Truncated {
                offset: self.offset,
            }),
            Some(0 | 1) => {
                self.offset += 1;
                Ok(())
            }
            Some(byte) => Err(self.invalid(format!("boolean byte is {byte}, not 0 or 1"))),
        }
    }

    fn skip_length_prefixed(&mut self) -> Result<(), BodyError> {
        let len = self.read_long()?;
        let len =
            usize::try_from(len).map_err(|_| self.invalid(format!("length {len} is negative")))?;
        self.skip(len)
    }

    /// Skips the blocks of an array or map. A block starts with its item count. A negative
    /// count is followed by the block's size in bytes, which the decoder ignores.
    fn skip_blocks(
        &mut self,
        mut skip_item: impl FnMut(&mut Self) -> Result<(), BodyError>,
    ) -> Result<(), BodyError> {
        loop {
            let count = self.read_long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.read_long()?;
            }
            // Every item of a Hearth schema takes at least one byte, so a count above the
            // bytes left cannot be complete. Arrays of null would need a different bound.
            let count = count.unsigned_abs();
            if count > self.remaining() as u64 {
                return Err(BodyError::Truncated {
                    offset: self.data.len(),
                });
            }
            for _ in 0..count {
                skip_item(self)?;
            }
        }
    }

    fn read_index(&mut self, len: usize, item_kind: &str) -> Result<usize, BodyError> {
        let start = self.offset;
        let index = self.read_long()?;
        match usize::try_from(index) {
            Ok(index) if index < len => Ok(index),
            _ => Err(BodyError::Invalid {
                offset: start,
                reason: format!("{item_kind} index {index} is outside 0..{len}"),
            }),
        }
    }

    fn read_int(&mut self) -> Result<i32, BodyError> {
        let start = self.offset;
        let value = self.read_long()?;
        i32::try_from(value).map_err(|_| BodyError::Invalid {
            offset: start,
            reason: format!("int value {value} is outside the 32-bit range"),
        })
    }

    /// Reads a zig-zag variable-length long of at most 10 bytes, the limit apache-avro
    /// enforces too.
    fn read_long(&mut self) -> Result<i64, BodyError> {
        let start = self.offset;
        let mut raw: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.data.get(self.offset) else {
                return Err(BodyError::Truncated {
                    offset: self.offset,
                });
            };
            self.offset += 1;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(BodyError::Invalid {
            offset: start,
            reason: "variable-length integer is longer than 10 bytes".to_string(),
        })
    }
}
