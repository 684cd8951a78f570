//! Hearth's events: their Avro schemas, Rust types and single-object encoding.
//!
//! Every state change in Hearth is one of these events, appended to the log. A payload is
//! Avro single-object encoded: the marker `C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body.
//! The fingerprint lets a consumer find the writer schema among all versions embedded in
//! this crate, without a schema registry server.
//!
//! The `.avsc` files under `avro/` are the source of truth. `avro/history/` keeps every
//! released version, and decoding resolves data of any of them to the current schema by the
//! Avro schema resolution rules, so new fields take their defaults.
//!
//! ```
//! use hearth_schemas::{AnyEvent, AppEnabled, decode, decode_any, encode};
//!
//! let event = AppEnabled {
//!     event_id: "0b5e4a4e-7f0c-4bd4-9d53-5c3f3c0b1a11".to_string(),
//!     occurred_at: 1_700_000_000_000_000,
//!     client_id: "growth-chart".to_string(),
//!     actor: "admin".to_string(),
//! };
//! let bytes = encode(&event)?;
//! assert_eq!(decode::<AppEnabled>(&bytes)?, event);
//! assert_eq!(decode_any(&bytes)?, AnyEvent::AppEnabled(event));
//! # Ok::<(), hearth_schemas::Error>(())
//! ```

use std::sync::LazyLock;

use apache_avro::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod binary_de;
mod canonical;
mod catalog;
mod de;
mod error;
mod events;
mod registry;
mod validate;

#[cfg(test)]
mod tests;

pub use canonical::{fingerprint, parsing_canonical_form};
pub use catalog::AnyEvent;
pub use error::{Error, Result};
pub use events::*;

use registry::Registry;

/// All embedded schemas, parsed on first use.
///
/// The schemas are compile-time constants and the test suite builds this registry, so the
/// panic below can only happen in a build whose own tests fail.
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    Registry::new(catalog::EVENT_SCHEMAS)
        .unwrap_or_else(|error| panic!("embedded event schemas are invalid: {error}"))
});

mod sealed {
    pub trait Sealed {}
}

/// An event type of Hearth's log. Implemented for every event struct of this crate and for
/// no other type, because decoding needs the type's schemas embedded here.
pub trait Event: Serialize + DeserializeOwned + sealed::Sealed {
    /// Full Avro name of the record, e.g. `hearth.events.AppRegistered`.
    const NAME: &'static str;

    /// Log topic that events of this type are appended to, e.g. `hearth.auth`.
    const TOPIC: &'static str;

    /// Returns the current schema, which [`encode`] writes and [`decode`] resolves to.
    fn schema() -> &'static Schema {
        match REGISTRY.event(Self::NAME) {
            Some(event) => &event.current.schema,
            None => unreachable!("the catalog registers a schema for every Event type"),
        }
    }

    /// Returns the UUID of this event.
    fn event_id(&self) -> &str;

    /// Returns when the event happened, in microseconds since the Unix epoch.
    fn occurred_at(&self) -> i64;

    /// Returns the expected size of the encoded body, used to allocate the output once.
    #[doc(hidden)]
    fn encoded_size_hint(&self) -> usize;
}

/// Encodes `event` with its current schema as an Avro single-object payload.
///
/// Fails only if the Rust type and its schema disagree, which the test suite rules out for
/// every event type.
pub fn encode<E: Event>(event: &E) -> Result<Vec<u8>> {
    REGISTRY.encode(E::NAME, event, event.encoded_size_hint())
}

/// Decodes a single-object payload written by any known version of `E`'s schema.
///
/// Data of an earlier version is resolved to the current schema, so fields added since then
/// take their defaults. Fails with [`Error::SchemaMismatch`] when the payload is another
/// event type, and with [`Error::UnknownFingerprint`] when no embedded schema wrote it.
pub fn decode<E: Event>(bytes: &[u8]) -> Result<E> {
    REGISTRY.decode(bytes, E::NAME)
}

/// Decodes a single-object payload of any known event type.
pub fn decode_any(bytes: &[u8]) -> Result<AnyEvent> {
    let payload = REGISTRY.payload(bytes)?;
    match catalog::decode_payload(&payload) {
        Some(result) => result,
        None => unreachable!("the catalog has a Rust type for every registered schema"),
    }
}

/// Returns the full Avro name of the event type that wrote `bytes`, reading only the
/// header, e.g. to route or skip a record without decoding it.
pub fn event_name(bytes: &[u8]) -> Result<&'static str> {
    Ok(REGISTRY.payload(bytes)?.event.name)
}
