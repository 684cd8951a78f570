//! The auth state store: a SQLite projection of the `hearth.auth` topic.
//!
//! It holds apps, sites and their activations, users, launch contexts, grants and the
//! tokens issued for them. [`AuthProjection`] applies events in log order and decides the
//! single-use questions (a code redeemed once, a refresh token rotated once, a client
//! assertion used once); [`AuthStore`] reads with pooled read-only connections.

mod apply;
pub mod models;
mod read;
mod schema;

pub use apply::{AuthOutcome, AuthProjection, Refusal};
pub use models::{App, Grant, IssuedToken, Launch, RefreshToken, Site, User};
pub use read::AuthStore;

#[cfg(test)]
mod tests;
