//! The crate's error type.

use std::path::PathBuf;

/// Errors of the analytics sink, migrations and reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid analytics configuration: {0}")]
    Config(String),
    #[error("ClickHouse request failed: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("event log error: {0}")]
    Log(#[from] hearth_log::Error),
    /// A record of the log that this version of Hearth cannot decode.
    #[error("record {offset} of {topic} partition {partition} cannot be decoded: {source}")]
    Schema {
        topic: String,
        partition: u32,
        offset: u64,
        #[source]
        source: hearth_schemas::Error,
    },
    #[error("migration {name} failed: {reason}")]
    Migration { name: String, reason: String },
    #[error("invalid report request: {0}")]
    InvalidRequest(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ClickHouse error codes that mean the tables or the rows do not match what this
/// version of Hearth writes, or that the credentials are wrong. Retrying cannot fix them.
/// The numbers are ClickHouse's ErrorCodes, unchanged from 18.16 to current releases.
const PERMANENT_CODES: &[u32] = &[
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    47,  // UNKNOWN_IDENTIFIER
    53,  // TYPE_MISMATCH
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    70,  // CANNOT_CONVERT_TYPE
    81,  // UNKNOWN_DATABASE
    117, // INCORRECT_DATA
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

impl Error {
    /// Whether retrying the same request later can succeed: network errors, timeouts and
    /// server-side conditions such as too many parts or a server that is shutting down.
    /// Schema and authentication errors are not transient, so the sink stops on them
    /// instead of retrying forever.
    pub fn is_transient(&self) -> bool {
        use clickhouse::error::Error as Ch;
        match self {
            Error::ClickHouse(Ch::Network(_) | Ch::TimedOut) => true,
            Error::ClickHouse(Ch::BadResponse(message)) => match clickhouse_code(message) {
                Some(code) => !PERMANENT_CODES.contains(&code),
                None => true,
            },
            Error::ClickHouse(Ch::Other(_)) => true,
            _ => false,
        }
    }
}

/// Returns the ClickHouse error code of a response message such as `Code: 60, ...`.
pub(crate) fn clickhouse_code(message: &str) -> Option<u32> {
    let start = message.find("Code: ")? + "Code: ".len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_response(message: &str) -> Error {
        Error::ClickHouse(clickhouse::error::Error::BadResponse(message.to_string()))
    }

    #[test]
    fn code_parsed_from_message() {
        let message = "Code: 60, e.displayText() = DB::Exception: Table hearth.x doesn't exist";
        assert_eq!(clickhouse_code(message), Some(60));
        assert_eq!(clickhouse_code("502 Bad Gateway"), None);
    }

    #[test]
    fn schema_errors_are_permanent() {
        assert!(
            !bad_response("Code: 60, e.displayText() = DB::Exception: no table").is_transient()
        );
        assert!(!bad_response("Code: 33, Cannot read all data").is_transient());
        assert!(!bad_response("Code: 516, Authentication failed").is_transient());
    }

    #[test]
    fn server_conditions_are_transient() {
        assert!(bad_response("Code: 252, Too many parts").is_transient());
        assert!(bad_response("Code: 241, Memory limit exceeded").is_transient());
        assert!(bad_response("503 Service Unavailable").is_transient());
        assert!(Error::ClickHouse(clickhouse::error::Error::TimedOut).is_transient());
    }
}
