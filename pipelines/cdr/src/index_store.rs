//! Writing and removing the search index rows of one resource version.

use std::cmp::Ordering;

use hearth_fhir_core::index::{self, IndexRows};
use hearth_fhir_core::reference::LocalBases;
use rusqlite::{Connection, OptionalExtension, Statement, params};
use serde_json::Value;

use crate::index_composite::{self, CompositeKey};
use crate::{body, params};

/// The index rows of one resource version with their parameter ids, in the column order of
/// their tables. Made by [`IndexEntries::extract`], which needs no store, so it can run
/// before the writer decides anything.
#[derive(Debug, Default)]
pub struct IndexEntries {
    rows: Vec<IndexRow>,
}

#[derive(Debug)]
enum IndexRow {
    Token {
        param: i64,
        code: String,
        system: String,
        text: Option<String>,
    },
    String {
        param: i64,
        value: String,
        exact: String,
    },
    Reference {
        param: i64,
        target_id: String,
        target_type: String,
        url: String,
    },
    Date {
        param: i64,
        low: i64,
        high: i64,
    },
    Number {
        param: i64,
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        param: i64,
        value: f64,
        low: f64,
        high: f64,
        system: String,
        code: String,
        unit: String,
    },
    Uri {
        param: i64,
        value: String,
    },
    Composite(CompositeKey),
}

impl IndexEntries {
    /// Extracts the index rows of `resource`, a resource of type `resource_type`. Absolute
    /// references name a resource (fill `target_type` and `target_id`) only under `bases`.
    pub fn extract(resource_type: &str, resource: &Value, bases: &LocalBases) -> Self {
        Self::from_rows(
            resource_type,
            index::extract(resource_type, resource),
            bases,
        )
    }

    /// Converts rows that [`index::extract`] made, dropping the targets of absolute
    /// references outside `bases` first.
    pub(crate) fn from_rows(resource_type: &str, mut rows: IndexRows, bases: &LocalBases) -> Self {
        rows.drop_foreign_targets(bases);
        let param = |code: &str| params::id(resource_type, code);
        let text = Option::unwrap_or_default;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows.tokens {
            if let Some(param) = param(row.param) {
                entries.extend(
                    CompositeKey::from_identifier_type(param, &row).map(IndexRow::Composite),
                );
                entries.push(IndexRow::Token {
                    param,
                    code: text(row.code),
                    system: text(row.system),
                    text: row.text,
                });
            }
        }
        for row in rows.strings {
            if let Some(param) = param(row.param) {
                entries.push(IndexRow::String {
                    param,
                    value: row.value,
                    exact: row.exact,
                });
            }
        }
        for row in rows.references {
            if let Some(param) = param(row.param) {
                // Reference.identifier goes to idx_token under the reference parameter's
                // id, for `:identifier`.
                if row.identifier_system.is_some() || row.identifier_value.is_some() {
                    entries.push(IndexRow::Token {
                        param,
                        code: row.identifier_value.clone().unwrap_or_default(),
                        system: row.identifier_system.clone().unwrap_or_default(),
                        text: None,
                    });
                }
                entries.push(IndexRow::Reference {
                    param,
                    target_id: text(row.target_id),
                    target_type: text(row.target_type),
                    url: text(row.url),
                });
            }
        }
        for row in rows.dates {
            if let Some(param) = param(row.param) {
                entries.push(IndexRow::Date {
                    param,
                    low: row.low,
                    high: row.high,
                });
            }
        }
        for row in rows.numbers {
            if let Some(param) = param(row.param) {
                entries.push(IndexRow::Number {
                    param,
                    value: row.value,
                    low: row.low,
                    high: row.high,
                });
            }
        }
        for row in rows.quantities {
            if let Some(param) = param(row.param) {
                entries.push(IndexRow::Quantity {
                    param,
                    value: row.value,
                    low: row.low,
                    high: row.high,
                    system: text(row.system),
                    code: text(row.code),
                    unit: text(row.unit),
                });
            }
        }
        for row in rows.uris {
            if let Some(param) = param(row.param) {
                entries.push(IndexRow::Uri {
                    param,
                    value: row.value,
                });
            }
        }
        for row in &rows.composites {
            if let Some(param) = param(row.param) {
                let keys = CompositeKey::from_composite(param, row);
                entries.extend(keys.into_iter().map(IndexRow::Composite));
            }
        }
        IndexEntries { rows: entries }
    }

    /// Deletes the rows of resource `rid`, each by its whole key.
    fn delete(&self, conn: &Connection, rid: i64) -> rusqlite::Result<()> {
        let mut statements = Statements::new(conn, Mode::Delete);
        for row in &self.rows {
            statements.execute(row, rid)?;
        }
        Ok(())
    }
}

/// The index rows of several resources, inserted together in key order so that consecutive
/// inserts land on the same B-tree pages.
#[derive(Debug, Default)]
pub struct IndexBatch {
    rows: Vec<(IndexRow, i64)>,
}

impl IndexBatch {
    /// Adds the rows of resource `rid`.
    pub fn add(&mut self, entries: IndexEntries, rid: i64) {
        self.rows
            .extend(entries.rows.into_iter().map(|row| (row, rid)));
    }

    /// Inserts every row added, sorted by table and key.
    pub fn insert(mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.rows
            .sort_unstable_by(|(a, a_rid), (b, b_rid)| a.key_order(b).then(a_rid.cmp(b_rid)));
        let mut statements = Statements::new(conn, Mode::Insert);
        for (row, rid) in &self.rows {
            statements.execute(row, *rid)?;
        }
        Ok(())
    }
}

impl IndexRow {
    /// Returns the table's position in the `*_SQL` constants, which orders rows of different
    /// tables.
    fn table(&self) -> usize {
        match self {
            IndexRow::Token { .. } => 0,
            IndexRow::String { .. } => 1,
            IndexRow::Reference { .. } => 2,
            IndexRow::Date { .. } => 3,
            IndexRow::Number { .. } => 4,
            IndexRow::Quantity { .. } => 5,
            IndexRow::Uri { .. } => 6,
            IndexRow::Composite(_) => 7,
        }
    }

    /// Orders rows by table, then by the table's primary key up to `rid`. Floats compare by
    /// `total_cmp`, which agrees with SQLite for the finite values and infinities stored.
    fn key_order(&self, other: &IndexRow) -> Ordering {
        use IndexRow as R;
        match (self, other) {
            (
                R::Token {
                    param: p,
                    code: c,
                    system: s,
                    ..
                },
                R::Token {
                    param: q,
                    code: d,
                    system: t,
                    ..
                },
            ) => p.cmp(q).then_with(|| c.cmp(d)).then_with(|| s.cmp(t)),
            (
                R::String {
                    param: p,
                    value: v,
                    exact: e,
                },
                R::String {
                    param: q,
                    value: w,
                    exact: f,
                },
            ) => p.cmp(q).then_with(|| v.cmp(w)).then_with(|| e.cmp(f)),
            (
                R::Reference {
                    param: p,
                    target_id: i,
                    target_type: t,
                    url: u,
                },
                R::Reference {
                    param: q,
                    target_id: j,
                    target_type: s,
                    url: v,
                },
            ) => p
                .cmp(q)
                .then_with(|| i.cmp(j))
                .then_with(|| t.cmp(s))
                .then_with(|| u.cmp(v)),
            (
                R::Date {
                    param: p,
                    low: l,
                    high: h,
                },
                R::Date {
                    param: q,
                    low: m,
                    high: i,
                },
            ) => p.cmp(q).then(l.cmp(m)).then(h.cmp(i)),
            (
                R::Number {
                    param: p,
                    value: v,
                    low: l,
                    high: h,
                },
                R::Number {
                    param: q,
                    value: w,
                    low: m,
                    high: i,
                },
            ) => p
                .cmp(q)
                .then(v.total_cmp(w))
                .then(l.total_cmp(m))
                .then(h.total_cmp(i)),
            (
                R::Quantity {
                    param: p,
                    value: v,
                    low: l,
                    high: h,
                    system: s,
                    code: c,
                    unit: u,
                },
                R::Quantity {
                    param: q,
                    value: w,
                    low: m,
                    high: i,
                    system: t,
                    code: d,
                    unit: n,
                },
            ) => p
                .cmp(q)
                .then(v.total_cmp(w))
                .then(l.total_cmp(m))
                .then(h.total_cmp(i))
                .then_with(|| s.cmp(t))
                .then_with(|| c.cmp(d))
                .then_with(|| u.cmp(n)),
            (R::Uri { param: p, value: v }, R::Uri { param: q, value: w }) => {
                p.cmp(q).then_with(|| v.cmp(w))
            }
            (R::Composite(a), R::Composite(b)) => a.key_order(b),
            _ => self.table().cmp(&other.table()),
        }
    }
}

/// Removes the index rows of version `vid` of resource `rid`, computed again from that
/// version's JSON with the `bases` that computed them. A deletion version has no JSON and
/// so no rows.
pub fn remove_version(
    conn: &Connection,
    bases: &LocalBases,
    resource_type: &str,
    rid: i64,
    vid: i64,
) -> rusqlite::Result<()> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT body FROM versions WHERE vid = ?1")?
        .query_row([vid], |row| row.get(0))
        .optional()?
        .flatten();
    let Some(stored) = stored else {
        return Ok(());
    };
    let json = body::decompress(&stored)?;
    let Ok(resource) = serde_json::from_str::<Value>(&json) else {
        return Ok(());
    };
    IndexEntries::extract(resource_type, &resource, bases).delete(conn, rid)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Delete,
}

/// SQL of each table's insert, and of its delete by the whole key.
const TOKEN_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_token (param, code, system, rid, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    "DELETE FROM idx_token WHERE param = ?1 AND code = ?2 AND system = ?3 AND rid = ?4",
];
const STRING_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_string (param, value, exact, rid) VALUES (?1, ?2, ?3, ?4)",
    "DELETE FROM idx_string WHERE param = ?1 AND value = ?2 AND exact = ?3 AND rid = ?4",
];
const REFERENCE_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_reference (param, target_id, target_type, url, rid)
     VALUES (?1, ?2, ?3, ?4, ?5)",
    "DELETE FROM idx_reference
     WHERE param = ?1 AND target_id = ?2 AND target_type = ?3 AND url = ?4 AND rid = ?5",
];
const DATE_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_date (param, low, high, rid) VALUES (?1, ?2, ?3, ?4)",
    "DELETE FROM idx_date WHERE param = ?1 AND low = ?2 AND high = ?3 AND rid = ?4",
];
const NUMBER_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_number (param, value, low, high, rid) VALUES (?1, ?2, ?3, ?4, ?5)",
    "DELETE FROM idx_number
     WHERE param = ?1 AND value = ?2 AND low = ?3 AND high = ?4 AND rid = ?5",
];
const QUANTITY_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_quantity (param, value, low, high, system, code, unit, rid)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "DELETE FROM idx_quantity WHERE param = ?1 AND value = ?2 AND low = ?3 AND high = ?4
     AND system = ?5 AND code = ?6 AND unit = ?7 AND rid = ?8",
];
const URI_SQL: [&str; 2] = [
    "INSERT OR IGNORE INTO idx_uri (param, value, rid) VALUES (?1, ?2, ?3)",
    "DELETE FROM idx_uri WHERE param = ?1 AND value = ?2 AND rid = ?3",
];

static COMPOSITE_SQL: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(index_composite::statements);

/// The cached statements of one mode, taken from the connection's cache on first use.
struct Statements<'conn> {
    conn: &'conn Connection,
    mode: Mode,
    /// One slot per table, in the order of the `*_SQL` constants above.
    cached: [Option<rusqlite::CachedStatement<'conn>>; 8],
}

impl<'conn> Statements<'conn> {
    fn new(conn: &'conn Connection, mode: Mode) -> Self {
        Statements {
            conn,
            mode,
            cached: Default::default(),
        }
    }

    fn get(&mut self, table: usize, sql: [&str; 2]) -> rusqlite::Result<&mut Statement<'conn>> {
        let sql = sql[usize::from(self.mode == Mode::Delete)];
        let slot = &mut self.cached[table];
        if slot.is_none() {
            *slot = Some(self.conn.prepare_cached(sql)?);
        }
        match slot {
            Some(statement) => Ok(statement),
            None => unreachable!("the slot was filled above"),
        }
    }

    fn execute(&mut self, row: &IndexRow, rid: i64) -> rusqlite::Result<()> {
        let insert = self.mode == Mode::Insert;
        match row {
            IndexRow::Token {
                param,
                code,
                system,
                text,
            } => {
                let statement = self.get(0, TOKEN_SQL)?;
                if insert {
                    statement.execute(params![param, code, system, rid, text])?
                } else {
                    statement.execute(params![param, code, system, rid])?
                }
            }
            IndexRow::String {
                param,
                value,
                exact,
            } => self
                .get(1, STRING_SQL)?
                .execute(params![param, value, exact, rid])?,
            IndexRow::Reference {
                param,
                target_id,
                target_type,
                url,
            } => self.get(2, REFERENCE_SQL)?.execute(params![
                param,
                target_id,
                target_type,
                url,
                rid
            ])?,
            IndexRow::Date { param, low, high } => self
                .get(3, DATE_SQL)?
                .execute(params![param, low, high, rid])?,
            IndexRow::Number {
                param,
                value,
                low,
                high,
            } => self
                .get(4, NUMBER_SQL)?
                .execute(params![param, value, low, high, rid])?,
            IndexRow::Quantity {
                param,
                value,
                low,
                high,
                system,
                code,
                unit,
            } => self
                .get(5, QUANTITY_SQL)?
                .execute(params![param, value, low, high, system, code, unit, rid])?,
            IndexRow::Uri { param, value } => {
                self.get(6, URI_SQL)?.execute(params![param, value, rid])?
            }
            IndexRow::Composite(key) => {
                let [insert, delete] = &*COMPOSITE_SQL;
                let mut values = key.values();
                values.push(rusqlite::types::Value::Integer(rid));
                self.get(7, [insert, delete])?
                    .execute(rusqlite::params_from_iter(values))?
            }
        };
        Ok(())
    }
}
