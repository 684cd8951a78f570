//! Conversion of a decoded Avro `Value` into a Rust type by moving its contents.
//!
//! `apache_avro::from_value` deserializes from a borrowed `Value`, so every string is copied
//! a second time after decoding. Resource bodies and cached EHR responses are megabytes, so
//! this deserializer takes the `Value` by value and hands each `String` to the visitor
//! without copying it.
//!
//! Error messages name Avro types, never values, because values carry patient data.

use apache_avro::schema::SchemaKind;
use apache_avro::types::Value;
use serde::de::value::{Error as DeError, MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, Error as _, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// Deserializes `T` from `value`, consuming it.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DeError> {
    T::deserialize(OwnedValue(value))
}

/// A `Value` used as a serde `Deserializer`.
struct OwnedValue(Value);

impl<'de> IntoDeserializer<'de, DeError> for OwnedValue {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for OwnedValue {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => visitor.visit_i32(n),
            Value::Long(n)
            | Value::TimeMicros(n)
            | Value::TimestampMillis(n)
            | Value::TimestampMicros(n)
            | Value::TimestampNanos(n)
            | Value::LocalTimestampMillis(n)
            | Value::LocalTimestampMicros(n)
            | Value::LocalTimestampNanos(n) => visitor.visit_i64(n),
            Value::Float(x) => visitor.visit_f32(x),
            Value::Double(x) => visitor.visit_f64(x),
            Value::Bytes(bytes) | Value::Fixed(_, bytes) => visitor.visit_byte_buf(bytes),
            Value::String(s) | Value::Enum(_, s) => visitor.visit_string(s),
            Value::Uuid(uuid) => visitor.visit_string(uuid.to_string()),
            Value::Union(_, inner) => OwnedValue(*inner).deserialize_any(visitor),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(OwnedValue));
                let result = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(result)
            }
            Value::Map(entries) => {
                let entries = entries.into_iter().map(|(k, v)| (k, OwnedValue(v)));
                let mut map = MapDeserializer::new(entries);
                let result = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(result)
            }
            Value::Record(fields) => {
                let fields = fields.into_iter().map(|(k, v)| (k, OwnedValue(v)));
                let mut map = MapDeserializer::new(fields);
                let result = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(result)
            }
            other @ (Value::Decimal(_) | Value::BigDecimal(_) | Value::Duration(_)) => {
                Err(DeError::custom(format!(
                    "unsupported Avro type {:?}",
                    SchemaKind::from(&other)
                )))
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            Value::Union(_, inner) if *inner == Value::Null => visitor.visit_none(),
            Value::Union(_, inner) => visitor.visit_some(OwnedValue(*inner)),
            other => visitor.visit_some(OwnedValue(other)),
        }
    }

    /// Maps an Avro enum to the Rust variant of the same name, so the variant's position in
    /// the Rust enum does not matter when reading.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Enum(_, symbol) | Value::String(symbol) => {
                let symbol: StringDeserializer<DeError> = symbol.into_deserializer();
                visitor.visit_enum(symbol)
            }
            Value::Union(_, inner) => OwnedValue(*inner).deserialize_enum(name, variants, visitor),
            other => Err(DeError::custom(format!(
                "expected an enum symbol for {name}, found Avro type {:?}",
                SchemaKind::from(&other)
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
