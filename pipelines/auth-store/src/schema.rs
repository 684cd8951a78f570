//! Tables of the auth state store.
//!
//! Configuration (apps, sites, activations, users, launches) is stored as the JSON of the
//! latest model value, with the columns that lookups need beside it. Grants, refresh
//! tokens, access tokens and client assertion ids hold the state that single-use and
//! revocation decisions read.

use rusqlite::Connection;

pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "
        CREATE TABLE IF NOT EXISTS apps (
            client_id TEXT PRIMARY KEY,
            json TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS sites (
            site_id TEXT PRIMARY KEY,
            fhir_base_path TEXT NOT NULL,
            json TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS activations (
            site_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            PRIMARY KEY (site_id, client_id)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS users (
            user_id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            json TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS launches (
            launch_id TEXT PRIMARY KEY,
            expires_at INTEGER NOT NULL,
            json TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS grants (
            grant_id TEXT PRIMARY KEY,
            site_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            user_id TEXT,
            code_hash TEXT NOT NULL,
            code_expires_at INTEGER NOT NULL,
            code_redeemed INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER,
            revoked_reason TEXT,
            json TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX IF NOT EXISTS grants_by_code ON grants (code_hash);
        CREATE INDEX IF NOT EXISTS grants_by_client ON grants (client_id, site_id);
        CREATE INDEX IF NOT EXISTS grants_by_user ON grants (user_id, site_id);

        CREATE TABLE IF NOT EXISTS refresh_tokens (
            hash TEXT PRIMARY KEY,
            grant_id TEXT NOT NULL,
            current INTEGER NOT NULL,
            expires_at INTEGER
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS access_tokens (
            token_id TEXT PRIMARY KEY,
            grant_id TEXT,
            client_id TEXT NOT NULL,
            site_id TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0,
            json TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS console_sessions (
            session_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS console_sessions_by_user ON console_sessions (user_id);

        CREATE TABLE IF NOT EXISTS assertion_ids (
            client_id TEXT NOT NULL,
            jti TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (client_id, jti)
        ) WITHOUT ROWID;
        ",
    )
}
