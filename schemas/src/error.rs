/// Errors of encoding and decoding events.
///
/// Decoding returns one of these for malformed input instead of panicking. Property tests
/// check that on random and corrupted payloads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input does not start with the single-object marker `C3 01`.
    #[error("invalid single-object marker: expected C3 01, found {found:02X?}")]
    BadMarker { found: Vec<u8> },

    /// The input ended before the header or the Avro body was complete.
    #[error("input of {len} bytes ended while reading {reading}")]
    Truncated { len: usize, reading: &'static str },

    /// No current or earlier event schema has the fingerprint in the header. The payload
    /// comes from a newer release or is not a Hearth event.
    #[error(
        "unknown schema fingerprint {fingerprint:016x}; the event comes from a newer release or is not a Hearth event"
    )]
    UnknownFingerprint { fingerprint: u64 },

    /// The payload is a valid event, but of another type than the caller requested.
    #[error("expected a {expected} event, found {found}")]
    SchemaMismatch {
        expected: &'static str,
        found: &'static str,
    },

    /// The Avro body does not match its writer schema.
    #[error("invalid Avro body of {event} at byte {offset}: {reason}")]
    InvalidBody {
        event: &'static str,
        offset: usize,
        reason: String,
    },

    /// A decoded value does not fit the Rust type of its event, which means the struct and
    /// the current schema disagree.
    #[error("decoded {event} does not fit its Rust type: {reason}")]
    Deserialize { event: &'static str, reason: String },

    /// A schema uses a feature that this crate does not encode or fingerprint.
    #[error("unsupported schema construct: {0}")]
    UnsupportedSchema(String),

    /// An error from the Avro library: serialization, decoding or schema resolution.
    #[error("Avro error: {0}")]
    Avro(#[from] apache_avro::Error),
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;
