//! The schemas of all event types and versions, indexed by fingerprint, and the
//! single-object encoding built on them.

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum, write_avro_datum_ref};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::canonical::fingerprint;
use crate::validate::{BodyError, validate_body};
use crate::{Error, Result, binary_de, de};

/// Marker that starts every single-object encoded payload.
pub(crate) const MARKER: [u8; 2] = [0xC3, 0x01];

/// Length of the single-object header: the marker and the 8-byte fingerprint.
pub(crate) const HEADER_LEN: usize = 10;

/// The embedded `.avsc` texts of one event type.
pub(crate) struct EventSchemas {
    /// Full Avro name, e.g. `hearth.events.AppRegistered`.
    pub name: &'static str,
    /// Text of `avro/<Name>.avsc`, the schema that writers use and readers resolve to.
    pub current: &'static str,
    /// Version number and text of each `avro/history/<Name>.v<N>.avsc`.
    pub history: &'static [(u32, &'static str)],
}

/// A parsed schema with its fingerprint.
pub(crate) struct ParsedSchema {
    pub schema: Schema,
    pub fingerprint: u64,
}

impl ParsedSchema {
    pub fn parse(text: &str) -> Result<Self> {
        let schema = Schema::parse_str(text)?;
        let fingerprint = fingerprint(&schema)?;
        Ok(Self {
            schema,
            fingerprint,
        })
    }
}

/// One event type with its current schema and every released version.
pub(crate) struct RegisteredEvent {
    pub name: &'static str,
    pub current: ParsedSchema,
    pub history: Vec<(u32, ParsedSchema)>,
}

/// Location of the schema behind a fingerprint: the event's index and, for a history
/// version, its position in the event's history.
#[derive(Clone, Copy)]
struct Writer {
    event: usize,
    history: Option<usize>,
}

/// All known event schemas, looked up by name and by fingerprint.
pub(crate) struct Registry {
    events: Vec<RegisteredEvent>,
    by_name: HashMap<&'static str, usize>,
    by_fingerprint: HashMap<u64, Writer>,
}

impl Registry {
    /// Parses every schema and indexes it. Fails when a text is not a valid schema, when a
    /// record's full name differs from the event name it is declared under, or when two
    /// event types share a fingerprint.
    pub fn new(declarations: &[EventSchemas]) -> std::result::Result<Self, String> {
        let mut registry = Registry {
            events: Vec::with_capacity(declarations.len()),
            by_name: HashMap::new(),
            by_fingerprint: HashMap::new(),
        };
        for declaration in declarations {
            let event = parse_event(declaration)?;
            let index = registry.events.len();
            if registry.by_name.insert(event.name, index).is_some() {
                return Err(format!("event {} is declared twice", event.name));
            }
            registry.add_fingerprint(event.current.fingerprint, index, None)?;
            for (position, (_, version)) in event.history.iter().enumerate() {
                registry.add_fingerprint(version.fingerprint, index, Some(position))?;
            }
            registry.events.push(event);
        }
        Ok(registry)
    }

    fn add_fingerprint(
        &mut self,
        fingerprint: u64,
        event: usize,
        history: Option<usize>,
    ) -> std::result::Result<(), String> {
        match self.by_fingerprint.get(&fingerprint) {
            Some(existing) if existing.event != event => Err(format!(
                "fingerprint {fingerprint:016x} belongs to two event types"
            )),
            // The current schema equals its highest history version; keep the first entry.
            Some(_) => Ok(()),
            None => {
                self.by_fingerprint
                    .insert(fingerprint, Writer { event, history });
                Ok(())
            }
        }
    }

    #[cfg(test)]
    pub fn events(&self) -> &[RegisteredEvent] {
        &self.events
    }

    pub fn event(&self, name: &str) -> Option<&RegisteredEvent> {
        self.by_name.get(name).map(|&index| &self.events[index])
    }

    /// Encodes `value` with the current schema of `event`, as a single-object payload.
    /// `size_hint` is the expected body size, so the output is allocated once.
    pub fn encode<T: Serialize>(
        &self,
        event: &str,
        value: &T,
        size_hint: usize,
    ) -> Result<Vec<u8>> {
        let registered = self.event(event).ok_or_else(|| {
            Error::UnsupportedSchema(format!("no schema is registered for {event}"))
        })?;
        let current = &registered.current;

        let mut out = Vec::with_capacity(HEADER_LEN + size_hint);
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&current.fingerprint.to_le_bytes());

        // NOTE: apache-avro 0.21 serializes each array item into a buffer of its own and then
        // copies it to `out`, so each resource of a transaction is copied once more here.
        write_avro_datum_ref(&current.schema, value, &mut out)?;
        Ok(out)
    }

    /// Reads the header of `bytes` and looks up the schema that wrote it.
    pub fn payload<'r, 'b>(&'r self, bytes: &'b [u8]) -> Result<Payload<'r, 'b>> {
        let fingerprint = read_header(bytes)?;
        let writer = self
            .by_fingerprint
            .get(&fingerprint)
            .ok_or(Error::UnknownFingerprint { fingerprint })?;
        let event = &self.events[writer.event];
        let writer = match writer.history {
            Some(position) => &event.history[position].1,
            None => &event.current,
        };
        Ok(Payload {
            event,
            writer,
            body: &bytes[HEADER_LEN..],
        })
    }

    /// Decodes `bytes` into an Avro value of the current schema of its event type.
    #[cfg(test)]
    pub fn decode_value(&self, bytes: &[u8]) -> Result<(&RegisteredEvent, Value)> {
        let payload = self.payload(bytes)?;
        Ok((payload.event, payload.decode_value()?))
    }

    /// Decodes `bytes` as an event named `expected` into `T`. Fails with
    /// [`Error::SchemaMismatch`] before decoding the body when another event type wrote it.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8], expected: &'static str) -> Result<T> {
        let payload = self.payload(bytes)?;
        if payload.event.name != expected {
            return Err(Error::SchemaMismatch {
                expected,
                found: payload.event.name,
            });
        }
        payload.decode()
    }
}

/// A payload whose header names a known schema, with the body not decoded yet.
pub(crate) struct Payload<'r, 'b> {
    pub event: &'r RegisteredEvent,
    writer: &'r ParsedSchema,
    body: &'b [u8],
}

impl Payload<'_, '_> {
    /// Decodes the body into a value of the event's current schema, resolving it from the
    /// writer's schema when the two differ.
    pub fn decode_value(&self) -> Result<Value> {
        let current = &self.event.current;
        validate_body(&self.writer.schema, self.body).map_err(|error| self.body_error(error))?;

        let reader = (self.writer.fingerprint != current.fingerprint).then_some(&current.schema);
        let mut input = self.body;
        Ok(from_avro_datum(&self.writer.schema, &mut input, reader)?)
    }

    /// Decodes the body into `T`, the Rust type of the event's current schema.
    ///
    /// Data written with the current schema needs no resolution, so it is read straight
    /// into `T` without building an Avro `Value` first.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        let deserialize_error = |error: serde::de::value::Error| Error::Deserialize {
            event: self.event.name,
            reason: error.to_string(),
        };
        if self.writer.fingerprint == self.event.current.fingerprint {
            validate_body(&self.writer.schema, self.body)
                .map_err(|error| self.body_error(error))?;
            return binary_de::from_body(&self.writer.schema, self.body).map_err(deserialize_error);
        }
        let value = self.decode_value()?;
        de::from_value(value).map_err(deserialize_error)
    }

    fn body_error(&self, error: BodyError) -> Error {
        match error {
            BodyError::Truncated { .. } => Error::Truncated {
                len: HEADER_LEN + self.body.len(),
                reading: "the Avro body",
            },
            BodyError::Invalid { offset, reason } => Error::InvalidBody {
                event: self.event.name,
                offset: HEADER_LEN + offset,
                reason,
            },
            BodyError::Unsupported(reason) => Error::UnsupportedSchema(reason),
        }
    }
}

fn parse_event(declaration: &EventSchemas) -> std::result::Result<RegisteredEvent, String> {
    let parse = |label: String, text: &str| -> std::result::Result<ParsedSchema, String> {
        let parsed = ParsedSchema::parse(text).map_err(|error| format!("{label}: {error}"))?;
        match &parsed.schema {
            Schema::Record(record) if record.name.fullname(None) == declaration.name => Ok(parsed),
            Schema::Record(record) => Err(format!(
                "{label} defines record {}, expected {}",
                record.name.fullname(None),
                declaration.name
            )),
            _ => Err(format!("{label} is not a record schema")),
        }
    };

    let current = parse(
        format!("current schema of {}", declaration.name),
        declaration.current,
    )?;
    let mut history = Vec::with_capacity(declaration.history.len());
    for &(version, text) in declaration.history {
        let label = format!("version {version} of {}", declaration.name);
        history.push((version, parse(label, text)?));
    }
    Ok(RegisteredEvent {
        name: declaration.name,
        current,
        history,
    })
}

/// Reads the single-object header and returns the writer schema's fingerprint.
pub(crate) fn read_header(bytes: &[u8]) -> Result<u64> {
    let marker_len = bytes.len().min(MARKER.len());
    if bytes[..marker_len] != MARKER[..marker_len] {
        return Err(Error::BadMarker {
            found: bytes[..marker_len].to_vec(),
        });
    }
    let Some(fingerprint) = bytes.get(MARKER.len()..HEADER_LEN) else {
        return Err(Error::Truncated {
            len: bytes.len(),
            reading: "the single-object header",
        });
    };
    let mut le_bytes = [0u8; 8];
    le_bytes.copy_from_slice(fingerprint);
    Ok(u64::from_le_bytes(le_bytes))
}
