//! SMART App Launch 2.2 and OAuth 2.0 logic without HTTP or a database.
//!
//! - [`scope`]: parses SMART scopes (v1 and v2, with query restrictions), narrows a
//!   request to what a client may have, and checks permissions for FHIR interactions.
//! - [`pkce`]: RFC 7636 `S256` code challenge checks.
//! - [`keys`]: the server's signing keys on disk, the JWKS document, and signing and
//!   verification of access tokens (ES256) and id tokens (RS256).
//! - [`client_assertion`]: RFC 7523 `private_key_jwt` client assertions, as SMART Backend
//!   Services and confidential asymmetric clients send them.
//! - [`secret`]: random tokens, their stored hashes, and argon2id password hashes.
//!
//! The only I/O in this crate is [`keys::KeyStore`] reading and writing its key directory.

pub mod client_assertion;
pub mod keys;
pub mod pkce;
pub mod scope;
pub mod secret;

mod base64url;
