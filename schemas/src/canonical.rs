//! Parsing Canonical Form and CRC-64-AVRO fingerprints of schemas.
//!
//! apache-avro 0.21 writes a logical type's base type as `{"type":"long"}` in
//! `Schema::canonical_form`, where the Avro specification and the Java library write
//! `"long"`. Its fingerprints of schemas with logical types therefore differ from those of
//! other Avro libraries. Every Hearth event has a `timestamp-micros` field, so this module
//! writes the form the specification defines and hashes it with the crate's Rabin digest.

use std::collections::HashSet;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::schema::Name;
use digest::Digest;

use crate::{Error, Result};

/// Returns the Parsing Canonical Form of `schema`: full names, only the attributes that
/// affect parsing (name, type, fields, symbols, items, values, size) in that order, logical
/// types reduced to their base type, and no whitespace.
///
/// Errors on `uuid` and `duration` schemas, whose base type the parsed `Schema` no longer
/// records.
pub fn parsing_canonical_form(schema: &Schema) -> Result<String> {
    let mut out = String::new();
    let mut defined = HashSet::new();
    write_schema(schema, &mut defined, &mut out)?;
    Ok(out)
}

/// Returns the CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form.
///
/// Single-object encoding writes this value as 8 little-endian bytes.
pub fn fingerprint(schema: &Schema) -> Result<u64> {
    let form = parsing_canonical_form(schema)?;
    let digest = Rabin::digest(form.as_bytes());
    Ok(u64::from_le_bytes(digest.into()))
}

fn write_schema(schema: &Schema, defined: &mut HashSet<String>, out: &mut String) -> Result<()> {
    match schema {
        Schema::Null => write_primitive("null", out),
        Schema::Boolean => write_primitive("boolean", out),
        Schema::Int | Schema::Date | Schema::TimeMillis => write_primitive("int", out),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => write_primitive("long", out),
        Schema::Float => write_primitive("float", out),
        Schema::Double => write_primitive("double", out),
        Schema::Bytes | Schema::BigDecimal => write_primitive("bytes", out),
        Schema::String => write_primitive("string", out),
        Schema::Decimal(decimal) => write_schema(&decimal.inner, defined, out)?,
        Schema::Array(array) => {
            out.push_str(r#"{"type":"array","items":"#);
            write_schema(&array.items, defined, out)?;
            out.push('}');
        }
        Schema::Map(map) => {
            out.push_str(r#"{"type":"map","values":"#);
            write_schema(&map.types, defined, out)?;
            out.push('}');
        }
        Schema::Union(union) => {
            out.push('[');
            for (i, variant) in union.variants().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(variant, defined, out)?;
            }
            out.push(']');
        }
        Schema::Record(record) => {
            if write_named_header(&record.name, "record", defined, out) {
                out.push_str(r#","fields":["#);
                for (i, field) in record.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!(r#"{{"name":"{}","type":"#, field.name));
                    write_schema(&field.schema, defined, out)?;
                    out.push('}');
                }
                out.push_str("]}");
            }
        }
        Schema::Enum(enumeration) => {
            if write_named_header(&enumeration.name, "enum", defined, out) {
                let symbols: Vec<String> = enumeration
                    .symbols
                    .iter()
                    .map(|symbol| format!("\"{symbol}\""))
                    .collect();
                out.push_str(&format!(r#","symbols":[{}]}}"#, symbols.join(",")));
            }
        }
        Schema::Fixed(fixed) => {
            if write_named_header(&fixed.name, "fixed", defined, out) {
                out.push_str(&format!(r#","size":{}}}"#, fixed.size));
            }
        }
        Schema::Ref { name } => write_primitive(&name.fullname(None), out),
        Schema::Uuid | Schema::Duration => {
            return Err(Error::UnsupportedSchema(format!(
                "{schema:?} has no recorded base type, so its canonical form is unknown"
            )));
        }
    }
    Ok(())
}

fn write_primitive(name: &str, out: &mut String) {
    out.push('"');
    out.push_str(name);
    out.push('"');
}

/// Writes `{"name":"<full name>","type":"<kind>"` and returns true, or writes only the
/// quoted full name and returns false when the type was already defined earlier in the
/// schema. Names, field names and symbols need no JSON escaping because apache-avro's parser
/// rejects any with characters outside `[A-Za-z0-9_.]`.
fn write_named_header(
    name: &Name,
    kind: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> bool {
    let full_name = name.fullname(None);
    if !defined.insert(full_name.clone()) {
        write_primitive(&full_name, out);
        return false;
    }
    out.push_str(&format!(r#"{{"name":"{full_name}","type":"{kind}""#));
    true
}
