//! The error type of this crate.

/// Errors from parsing FHIR values and FHIRPath expressions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A FHIRPath expression uses syntax or a function outside the supported subset, or is
    /// malformed. `offset` is the byte offset in `expression` where parsing stopped.
    #[error("invalid FHIRPath expression `{expression}` at offset {offset}: {message}")]
    FhirPath {
        expression: String,
        offset: usize,
        message: String,
    },

    /// A value is not a valid FHIR `date`, `dateTime` or `instant`, or not a valid date
    /// search value.
    #[error("invalid date `{value}`: {reason}")]
    InvalidDate { value: String, reason: &'static str },

    /// A search value is not a valid decimal number.
    #[error("invalid number `{value}`: expected a decimal such as 100, 0.25 or 1e-3")]
    InvalidNumber { value: String },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
