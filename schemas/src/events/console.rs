//! Events of the `hearth.auth` topic about sessions of the console and the portals.

use serde::{Deserialize, Serialize};

/// A user signed in to the console and a session started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSignedIn {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// SHA-256 of the session cookie value, in lowercase hex.
    pub session_hash: String,
    pub user_id: String,
    /// End of the session unless the user signs out first, in microseconds since the epoch.
    pub expires_at: i64,
}

/// A console session ended before it expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSignedOut {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the change happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// SHA-256 of the session cookie value, in lowercase hex.
    pub session_hash: String,
    pub user_id: String,
}

/// A rejected console sign-in, recorded for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSignInFailed {
    /// UUID of this event. A retried append repeats it, so consumers can drop the duplicate.
    pub event_id: String,
    /// When the attempt happened, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Username as typed, which may name no user.
    pub username: String,
    pub reason: ConsoleSignInFailure,
}

/// Reason a console sign-in was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsoleSignInFailure {
    UnknownUser,
    WrongPassword,
    Disabled,
    /// The user has no console role and no FHIR user for the portals.
    NoConsoleAccess,
}
