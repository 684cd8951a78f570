//! Tables of the clinical data repository.
//!
//! `resources` has one row per resource with its current version; `versions` has every
//! version, its JSON included, so reads, vreads and history come from one table. The
//! `idx_*` tables hold one row per search-parameter value of each current version,
//! keyed for lookups by parameter and value. They have no index by resource: when a
//! resource changes, its old rows are computed again from the old JSON and deleted by key,
//! which keeps the load path to one B-tree per table.
//!
//! Index rows depend on the extraction code, so `meta.index_version` records which
//! extraction built them; a store built by another version is rebuilt from the log.

use rusqlite::Connection;

/// Changes whenever index extraction changes what rows it produces.
pub const INDEX_VERSION: i64 = 1;

pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "
        CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS resources (
            rid INTEGER PRIMARY KEY,
            type TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            vid INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            last_updated INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX IF NOT EXISTS resources_by_type_id ON resources (type, id);
        CREATE INDEX IF NOT EXISTS resources_by_id ON resources (id);

        CREATE TABLE IF NOT EXISTS versions (
            vid INTEGER PRIMARY KEY,
            rid INTEGER NOT NULL,
            version INTEGER NOT NULL,
            last_updated INTEGER NOT NULL,
            action INTEGER NOT NULL,
            json TEXT
        );
        CREATE UNIQUE INDEX IF NOT EXISTS versions_by_resource ON versions (rid, version);
        CREATE INDEX IF NOT EXISTS versions_by_time ON versions (last_updated);

        CREATE TABLE IF NOT EXISTS idx_token (
            sp TEXT NOT NULL,
            code TEXT NOT NULL,
            system TEXT NOT NULL,
            rid INTEGER NOT NULL,
            text TEXT,
            PRIMARY KEY (sp, code, system, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_string (
            sp TEXT NOT NULL,
            value TEXT NOT NULL,
            exact TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (sp, value, exact, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_reference (
            sp TEXT NOT NULL,
            target_id TEXT NOT NULL,
            target_type TEXT NOT NULL,
            url TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (sp, target_id, target_type, url, rid)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS idx_reference_by_target ON idx_reference (target_type, target_id);

        CREATE TABLE IF NOT EXISTS idx_date (
            sp TEXT NOT NULL,
            low INTEGER NOT NULL,
            high INTEGER NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (sp, low, high, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_number (
            sp TEXT NOT NULL,
            value REAL NOT NULL,
            low REAL NOT NULL,
            high REAL NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (sp, value, low, high, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_quantity (
            sp TEXT NOT NULL,
            value REAL NOT NULL,
            low REAL NOT NULL,
            high REAL NOT NULL,
            system TEXT NOT NULL,
            code TEXT NOT NULL,
            unit TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (sp, value, low, high, system, code, unit, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_uri (
            sp TEXT NOT NULL,
            value TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (sp, value, rid)
        ) WITHOUT ROWID;
        ",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('index_version', ?1)",
        [INDEX_VERSION.to_string()],
    )?;
    Ok(())
}

/// The index version the store was built with.
pub fn index_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let mut statement = conn.prepare("SELECT value FROM meta WHERE key = 'index_version'")?;
    let mut rows = statement.query([])?;
    match rows.next()? {
        Some(row) => Ok(row.get::<_, String>(0)?.parse().ok()),
        None => Ok(None),
    }
}
