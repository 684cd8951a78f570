//! Tables of the clinical data repository.
//!
//! `resources` has one row per resource with its current version; `versions` has every
//! version, its JSON included (compressed, see [`crate::body`]), so reads, vreads and history come from one table. The
//! `idx_*` tables hold one row per search-parameter value of each current version, keyed
//! by the parameter's integer id (see [`crate::params`]) and the value. When a resource
//! changes, its old rows are computed again from the old JSON and deleted by key, so the
//! write path needs no index by resource. Only `idx_date`, `idx_string`, `idx_reference`
//! and `idx_token` have one (`rid`, `param`): search checks the rows its most selective
//! filter found against the other filters through them (see `search::plan`), sorts by
//! dates and strings per resource, and follows a resource's references for `_include`,
//! `_has` and `$everything`. The other tables are read as a whole set per parameter.
//!
//! `Reference.identifier` values are stored in `idx_token` under the id of their reference
//! parameter, so `:identifier` matches them like a token. `idx_composite` is described at
//! [`composite_table`].
//!
//! Index rows depend on the extraction code, on the parameter ids and on the server's public
//! URL, which decides the absolute references that are local. So `meta` records the index
//! version, the parameter fingerprint and that URL. A store built with other values is
//! emptied by [`migrate`] and rebuilt from the log.

use hearth_fhir_core::reference::LocalBases;
use rusqlite::{Connection, OptionalExtension};

use crate::{index_composite, params};

/// Changes whenever the tables or index extraction change what the store holds.
pub const INDEX_VERSION: i64 = 5;

const TABLES: &[&str] = &[
    "resources",
    "versions",
    "idx_token",
    "idx_string",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_composite",
];

/// Creates the tables, first emptying a store built by an incompatible version or for
/// other local `bases`. Returns whether it did so.
pub fn migrate(conn: &Connection, bases: &LocalBases) -> rusqlite::Result<bool> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;",
    )?;
    let expected = [
        ("index_version", INDEX_VERSION.to_string()),
        ("search_params", params::fingerprint().to_string()),
        ("local_base", bases.public_url().to_string()),
    ];
    let mut cleared = false;
    if meta_value(conn, "index_version")?.is_some() {
        for (key, value) in &expected {
            if meta_value(conn, key)?.as_ref() != Some(value) {
                cleared = true;
            }
        }
    }
    if cleared {
        for table in TABLES {
            conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))?;
        }
        conn.execute("DELETE FROM meta", [])?;
    }
    create(conn)?;
    for (key, value) in &expected {
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            [key, value.as_str()],
        )?;
    }
    Ok(cleared)
}

// NOTE: history by time (`_history` at type or system level) needs an index on
// `versions.last_updated`, left out until that read exists because it costs every write.
fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "
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
        -- Scans of one type in storage order (search and export pages by rid) read a
        -- range of this index instead of sorting every resource of the type.
        CREATE INDEX IF NOT EXISTS resources_by_type_rid ON resources (type, rid);

        CREATE TABLE IF NOT EXISTS versions (
            vid INTEGER PRIMARY KEY,
            rid INTEGER NOT NULL,
            version INTEGER NOT NULL,
            last_updated INTEGER NOT NULL,
            action INTEGER NOT NULL,
            body BLOB
        );
        CREATE UNIQUE INDEX IF NOT EXISTS versions_by_resource ON versions (rid, version);

        CREATE TABLE IF NOT EXISTS idx_token (
            param INTEGER NOT NULL,
            code TEXT NOT NULL,
            system TEXT NOT NULL,
            rid INTEGER NOT NULL,
            text TEXT,
            PRIMARY KEY (param, code, system, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_string (
            param INTEGER NOT NULL,
            value TEXT NOT NULL,
            exact TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (param, value, exact, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_reference (
            param INTEGER NOT NULL,
            target_id TEXT NOT NULL,
            target_type TEXT NOT NULL,
            url TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (param, target_id, target_type, url, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_date (
            param INTEGER NOT NULL,
            low INTEGER NOT NULL,
            high INTEGER NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (param, low, high, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_number (
            param INTEGER NOT NULL,
            value REAL NOT NULL,
            low REAL NOT NULL,
            high REAL NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (param, value, low, high, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_quantity (
            param INTEGER NOT NULL,
            value REAL NOT NULL,
            low REAL NOT NULL,
            high REAL NOT NULL,
            system TEXT NOT NULL,
            code TEXT NOT NULL,
            unit TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (param, value, low, high, system, code, unit, rid)
        ) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS idx_uri (
            param INTEGER NOT NULL,
            value TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (param, value, rid)
        ) WITHOUT ROWID;
        ",
    )?;
    conn.execute_batch(&composite_table())?;
    conn.execute_batch(
        "
        CREATE INDEX IF NOT EXISTS idx_date_by_resource ON idx_date (rid, param);
        CREATE INDEX IF NOT EXISTS idx_string_by_resource ON idx_string (rid, param);
        CREATE INDEX IF NOT EXISTS idx_reference_by_resource ON idx_reference (rid, param);
        CREATE INDEX IF NOT EXISTS idx_token_by_resource ON idx_token (rid, param);
        ",
    )
}

/// `idx_composite`: one row per combination of the component rows of a composite value.
/// Component `i` fills `ci_text1..3` and `ci_low`, `ci_high`, `ci_value` by its type:
///
/// | type | text1 | text2 | text3 | low, high, value |
/// | --- | --- | --- | --- | --- |
/// | token | code | system | | |
/// | string | normalized value | exact value | | |
/// | reference | target id | target type | url | |
/// | uri | value | | | |
/// | date | | | | low, high (INTEGER microseconds) |
/// | number | | | | low, high, value (REAL) |
/// | quantity | code | system | unit | low, high, value (REAL) |
///
/// Unused columns contain `''` or 0. The table also stores identifier types for `:of-type`
/// under the id of the token parameter: component 0 is the Identifier.type coding and
/// component 1 the identifier's value and system.
fn composite_table() -> String {
    let columns = index_composite::column_names();
    let definitions: Vec<String> = columns
        .iter()
        .map(|name| match name.as_str() {
            "param" => "param INTEGER NOT NULL".to_owned(),
            name if name.contains("_text") => format!("{name} TEXT NOT NULL"),
            // No declared type, so dates stay INTEGER and numbers REAL.
            name => format!("{name} NOT NULL"),
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS idx_composite (
            {},
            rid INTEGER NOT NULL,
            PRIMARY KEY ({}, rid)
        ) WITHOUT ROWID;",
        definitions.join(",\n            "),
        columns.join(", ")
    )
}

/// The value stored in `meta` under `key`.
pub fn meta_value(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .optional()
}
