//! Writing and removing the search index rows of one resource version.

use hearth_fhir_core::index::{self, IndexRows};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

/// Inserts the index rows of `resource`, stored as `rid`.
pub fn insert(
    conn: &Connection,
    resource_type: &str,
    rid: i64,
    resource: &Value,
) -> rusqlite::Result<()> {
    let rows = index::extract(resource_type, resource);
    write_rows(conn, resource_type, rid, &rows, Mode::Insert)
}

/// Removes the index rows of version `vid` of resource `rid`, computed again from that
/// version's JSON. A deletion version has no JSON and so no rows.
pub fn remove_version(
    conn: &Connection,
    resource_type: &str,
    rid: i64,
    vid: i64,
) -> rusqlite::Result<()> {
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM versions WHERE vid = ?1")?
        .query_row([vid], |row| row.get(0))
        .optional()?
        .flatten();
    let Some(json) = json else {
        return Ok(());
    };
    let Ok(resource) = serde_json::from_str::<Value>(&json) else {
        return Ok(());
    };
    let rows = index::extract(resource_type, &resource);
    write_rows(conn, resource_type, rid, &rows, Mode::Delete)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Delete,
}

/// Runs one statement per row: an insert, or a delete by the same key.
fn write_rows(
    conn: &Connection,
    resource_type: &str,
    rid: i64,
    rows: &IndexRows,
    mode: Mode,
) -> rusqlite::Result<()> {
    let sp = |param: &str| format!("{resource_type}.{param}");
    let insert = mode == Mode::Insert;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();

    if insert {
        let mut statement = conn.prepare_cached(
            "INSERT OR IGNORE INTO idx_token (sp, code, system, rid, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for row in &rows.tokens {
            statement.execute(params![
                sp(row.param),
                text(&row.code),
                text(&row.system),
                rid,
                row.text
            ])?;
        }
    } else {
        let mut statement = conn.prepare_cached(
            "DELETE FROM idx_token WHERE sp = ?1 AND code = ?2 AND system = ?3 AND rid = ?4",
        )?;
        for row in &rows.tokens {
            statement.execute(params![
                sp(row.param),
                text(&row.code),
                text(&row.system),
                rid
            ])?;
        }
    }

    let mut statement = conn.prepare_cached(if insert {
        "INSERT OR IGNORE INTO idx_string (sp, value, exact, rid) VALUES (?1, ?2, ?3, ?4)"
    } else {
        "DELETE FROM idx_string WHERE sp = ?1 AND value = ?2 AND exact = ?3 AND rid = ?4"
    })?;
    for row in &rows.strings {
        statement.execute(params![sp(row.param), row.value, row.exact, rid])?;
    }

    let mut statement = conn.prepare_cached(if insert {
        "INSERT OR IGNORE INTO idx_reference (sp, target_id, target_type, url, rid) VALUES (?1, ?2, ?3, ?4, ?5)"
    } else {
        "DELETE FROM idx_reference WHERE sp = ?1 AND target_id = ?2 AND target_type = ?3 AND url = ?4 AND rid = ?5"
    })?;
    for row in &rows.references {
        statement.execute(params![
            sp(row.param),
            text(&row.target_id),
            text(&row.target_type),
            text(&row.url),
            rid
        ])?;
    }

    let mut statement = conn.prepare_cached(if insert {
        "INSERT OR IGNORE INTO idx_date (sp, low, high, rid) VALUES (?1, ?2, ?3, ?4)"
    } else {
        "DELETE FROM idx_date WHERE sp = ?1 AND low = ?2 AND high = ?3 AND rid = ?4"
    })?;
    for row in &rows.dates {
        statement.execute(params![sp(row.param), row.low, row.high, rid])?;
    }

    let mut statement = conn.prepare_cached(if insert {
        "INSERT OR IGNORE INTO idx_number (sp, value, low, high, rid) VALUES (?1, ?2, ?3, ?4, ?5)"
    } else {
        "DELETE FROM idx_number WHERE sp = ?1 AND value = ?2 AND low = ?3 AND high = ?4 AND rid = ?5"
    })?;
    for row in &rows.numbers {
        statement.execute(params![sp(row.param), row.value, row.low, row.high, rid])?;
    }

    let mut statement = conn.prepare_cached(if insert {
        "INSERT OR IGNORE INTO idx_quantity (sp, value, low, high, system, code, unit, rid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    } else {
        "DELETE FROM idx_quantity WHERE sp = ?1 AND value = ?2 AND low = ?3 AND high = ?4
         AND system = ?5 AND code = ?6 AND unit = ?7 AND rid = ?8"
    })?;
    for row in &rows.quantities {
        statement.execute(params![
            sp(row.param),
            row.value,
            row.low,
            row.high,
            text(&row.system),
            text(&row.code),
            text(&row.unit),
            rid
        ])?;
    }

    let mut statement = conn.prepare_cached(if insert {
        "INSERT OR IGNORE INTO idx_uri (sp, value, rid) VALUES (?1, ?2, ?3)"
    } else {
        "DELETE FROM idx_uri WHERE sp = ?1 AND value = ?2 AND rid = ?3"
    })?;
    for row in &rows.uris {
        statement.execute(params![sp(row.param), row.value, rid])?;
    }
    Ok(())
}
