//! A canonical byte dump of a SQLite store, to compare two builds of a projection.

use std::fmt::Write as _;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

/// Writes every row of every table, tables by name and rows ordered by all their columns,
/// with each value tagged by its SQLite storage class. Two stores with the same content
/// give the same bytes, whatever order their pages or rowids were written in.
pub fn dump(conn: &Connection) -> rusqlite::Result<Vec<u8>> {
    let mut tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tables.sort();

    let mut out = Vec::new();
    for table in tables {
        out.extend_from_slice(format!("table {table}\n").as_bytes());
        dump_table(conn, &table, &mut out)?;
    }
    Ok(out)
}

fn dump_table(conn: &Connection, table: &str, out: &mut Vec<u8>) -> rusqlite::Result<()> {
    let quoted = table.replace('"', "\"\"");
    let columns = conn
        .prepare(&format!("SELECT * FROM \"{quoted}\" LIMIT 0"))?
        .column_count();
    let order: Vec<String> = (1..=columns).map(|i| i.to_string()).collect();
    let sql = format!("SELECT * FROM \"{quoted}\" ORDER BY {}", order.join(", "));

    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let mut line = String::new();
        for i in 0..columns {
            if i > 0 {
                line.push('\t');
            }
            match row.get_ref(i)? {
                ValueRef::Null => line.push('N'),
                ValueRef::Integer(v) => {
                    let _ = write!(line, "I{v}");
                }
                ValueRef::Real(v) => {
                    let _ = write!(line, "R{v:?}");
                }
                ValueRef::Text(v) => {
                    let _ = write!(line, "T{}:", v.len());
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(v);
                    line.clear();
                }
                ValueRef::Blob(v) => {
                    let _ = write!(line, "B{}:", v.len());
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(v);
                    line.clear();
                }
            }
        }
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
    }
    Ok(())
}
