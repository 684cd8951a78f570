//! A serde `Deserializer` that reads an Avro binary body straight into a Rust type.
//!
//! apache-avro 0.21 decodes a body into a `Value` tree first, and it builds a resolved copy
//! of the schema's names on every call. For small events such as `ApiCall`, that costs far
//! more than the decoding itself. When the writer schema is the current schema, no resolution is
//! needed, so this module walks the writer schema and the bytes together and hands each
//! value to the visitor as it is read. It follows the mapping of `de.rs`: records become
//! maps keyed by field name, unions become options or their branch, enums are matched by
//! symbol name.
//!
//! The caller runs `validate_body` first, but every read is still bounds-checked, so a
//! body that does not match its schema returns an error and never panics. Error messages
//! name Avro types, never values, because values carry patient data.

use apache_avro::Schema;
use apache_avro::schema::{RecordField, SchemaKind};
use serde::de::value::{Error as DeError, StrDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Error as _, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde::forward_to_deserialize_any;

/// Deserializes `T` from `body`, the Avro binary encoding of one value of `schema`.
pub(crate) fn from_body<T: DeserializeOwned>(schema: &Schema, body: &[u8]) -> Result<T, DeError> {
    let mut input = Input {
        data: body,
        offset: 0,
    };
    let value = T::deserialize(ValueDeserializer {
        schema,
        input: &mut input,
    })?;
    if input.offset != body.len() {
        return Err(DeError::custom(format!(
            "{} bytes follow the end of the record",
            body.len() - input.offset
        )));
    }
    Ok(value)
}

/// The body and the position of the next byte to read.
struct Input<'b> {
    data: &'b [u8],
    offset: usize,
}

impl<'b> Input<'b> {
    fn take(&mut self, len: usize) -> Result<&'b [u8], DeError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| DeError::custom("the Avro body ends inside a value"))?;
        let bytes = &self.data[self.offset..end];
        self.offset = end;
        Ok(bytes)
    }

    /// Reads a zig-zag variable-length long of at most 10 bytes.
    fn read_long(&mut self) -> Result<i64, DeError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(DeError::custom(
            "variable-length integer is longer than 10 bytes",
        ))
    }

    fn read_int(&mut self) -> Result<i32, DeError> {
        let value = self.read_long()?;
        i32::try_from(value).map_err(|_| DeError::custom("int value is outside the 32-bit range"))
    }

    /// Reads a union branch or enum symbol index below `len`.
    fn read_index(&mut self, len: usize, kind: &str) -> Result<usize, DeError> {
        let index = self.read_long()?;
        usize::try_from(index)
            .ok()
            .filter(|index| *index < len)
            .ok_or_else(|| DeError::custom(format!("{kind} index is outside 0..{len}")))
    }

    fn read_bytes(&mut self) -> Result<&'b [u8], DeError> {
        let len = self.read_long()?;
        let len = usize::try_from(len).map_err(|_| DeError::custom("negative length"))?;
        self.take(len)
    }

    fn read_string(&mut self) -> Result<String, DeError> {
        let bytes = self.read_bytes()?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DeError::custom("string is not valid UTF-8")),
        }
    }

    /// Reads the item count that starts a block of an array or map. A negative count is
    /// followed by the block's size in bytes, which is not needed here.
    fn read_block_count(&mut self) -> Result<usize, DeError> {
        let count = self.read_long()?;
        if count < 0 {
            self.read_long()?;
        }
        // Every item of a Hearth schema takes at least one byte.
        let remaining = self.data.len() - self.offset;
        usize::try_from(count.unsigned_abs())
            .ok()
            .filter(|count| *count <= remaining)
            .ok_or_else(|| DeError::custom("block item count exceeds the bytes left"))
    }
}

/// One value of `schema`, read from `input` when the visitor asks for it.
struct ValueDeserializer<'s, 'i, 'b> {
    schema: &'s Schema,
    input: &'i mut Input<'b>,
}

impl<'s, 'i, 'b> ValueDeserializer<'s, 'i, 'b> {
    /// Reads a union's branch index and returns the branch's schema.
    fn union_branch(&mut self) -> Result<Option<&'s Schema>, DeError> {
        match self.schema {
            Schema::Union(union) => {
                let variants = union.variants();
                let index = self.input.read_index(variants.len(), "union branch")?;
                Ok(Some(&variants[index]))
            }
            _ => Ok(None),
        }
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_, '_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        let input = &mut *self.input;
        match self.schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match input.take(1)?[0] {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                _ => Err(DeError::custom("boolean byte is not 0 or 1")),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => visitor.visit_i32(input.read_int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => visitor.visit_i64(input.read_long()?),
            Schema::Float => {
                let bytes = input.take(4)?;
                visitor.visit_f32(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            Schema::Double => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(input.take(8)?);
                visitor.visit_f64(f64::from_le_bytes(bytes))
            }
            Schema::Bytes => visitor.visit_byte_buf(input.read_bytes()?.to_vec()),
            Schema::Fixed(fixed) => visitor.visit_byte_buf(input.take(fixed.size)?.to_vec()),
            Schema::String => visitor.visit_string(input.read_string()?),
            Schema::Enum(enumeration) => {
                let index = input.read_index(enumeration.symbols.len(), "enum symbol")?;
                visitor.visit_string(enumeration.symbols[index].clone())
            }
            Schema::Union(_) => {
                let branch = self.union_branch()?.unwrap_or(&Schema::Null);
                ValueDeserializer {
                    schema: branch,
                    input: self.input,
                }
                .deserialize_any(visitor)
            }
            Schema::Array(array) => visitor.visit_seq(ArrayAccess {
                items: &array.items,
                input,
                left_in_block: 0,
                done: false,
            }),
            Schema::Map(map) => visitor.visit_map(MapBlocksAccess {
                values: &map.types,
                input,
                left_in_block: 0,
                done: false,
            }),
            Schema::Record(record) => visitor.visit_map(RecordAccess {
                fields: record.fields.iter(),
                next_value: None,
                input,
            }),
            other => Err(DeError::custom(format!(
                "unsupported Avro type {:?}",
                SchemaKind::from(other)
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        match self.union_branch()? {
            Some(Schema::Null) => visitor.visit_none(),
            Some(branch) => visitor.visit_some(ValueDeserializer {
                schema: branch,
                input: self.input,
            }),
            None if matches!(self.schema, Schema::Null) => visitor.visit_none(),
            None => visitor.visit_some(self),
        }
    }

    /// Maps an Avro enum to the Rust variant of the same name, as `de.rs` does.
    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if let Some(branch) = self.union_branch()? {
            return ValueDeserializer {
                schema: branch,
                input: self.input,
            }
            .deserialize_enum(name, variants, visitor);
        }
        match self.schema {
            Schema::Enum(enumeration) => {
                let index = self
                    .input
                    .read_index(enumeration.symbols.len(), "enum symbol")?;
                let symbol: StrDeserializer<'_, DeError> =
                    enumeration.symbols[index].as_str().into_deserializer();
                visitor.visit_enum(symbol)
            }
            Schema::String => {
                let symbol: StringDeserializer<DeError> =
                    self.input.read_string()?.into_deserializer();
                visitor.visit_enum(symbol)
            }
            other => Err(DeError::custom(format!(
                "expected an enum symbol for {name}, found Avro type {:?}",
                SchemaKind::from(other)
            ))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// The fields of a record, as map entries keyed by field name.
struct RecordAccess<'s, 'i, 'b> {
    fields: std::slice::Iter<'s, RecordField>,
    next_value: Option<&'s Schema>,
    input: &'i mut Input<'b>,
}

impl<'de> MapAccess<'de> for RecordAccess<'_, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.next_value = Some(&field.schema);
        let key: StrDeserializer<'_, DeError> = field.name.as_str().into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let schema = self
            .next_value
            .take()
            .ok_or_else(|| DeError::custom("a record value was requested before its key"))?;
        seed.deserialize(ValueDeserializer {
            schema,
            input: self.input,
        })
    }
}

/// The items of an array, read block by block.
struct ArrayAccess<'s, 'i, 'b> {
    items: &'s Schema,
    input: &'i mut Input<'b>,
    left_in_block: usize,
    done: bool,
}

/// Moves to the next block when the current one is used up; returns false at the end.
fn next_item(
    input: &mut Input,
    left_in_block: &mut usize,
    done: &mut bool,
) -> Result<bool, DeError> {
    while !*done && *left_in_block == 0 {
        *left_in_block = input.read_block_count()?;
        *done = *left_in_block == 0;
    }
    if *done {
        return Ok(false);
    }
    *left_in_block -= 1;
    Ok(true)
}

impl<'de> SeqAccess<'de> for ArrayAccess<'_, '_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if !next_item(self.input, &mut self.left_in_block, &mut self.done)? {
            return Ok(None);
        }
        seed.deserialize(ValueDeserializer {
            schema: self.items,
            input: self.input,
        })
        .map(Some)
    }
}

/// The entries of a map, read block by block; keys are strings.
struct MapBlocksAccess<'s, 'i, 'b> {
    values: &'s Schema,
    input: &'i mut Input<'b>,
    left_in_block: usize,
    done: bool,
}

impl<'de> MapAccess<'de> for MapBlocksAccess<'_, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if !next_item(self.input, &mut self.left_in_block, &mut self.done)? {
            return Ok(None);
        }
        let key: StringDeserializer<DeError> = self.input.read_string()?.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        seed.deserialize(ValueDeserializer {
            schema: self.values,
            input: self.input,
        })
    }
}
