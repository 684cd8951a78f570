//! History: every version of one resource, of one type, or of the whole repository,
//! newest first.

use rusqlite::types::Value as SqlValue;

use crate::Result;
use crate::read::{Repository, StoredResource, VERSION_COLUMNS, stored_from_row};
use crate::visibility::Visibility;

/// Which versions a history request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryScope<'a> {
    Instance { resource_type: &'a str, id: &'a str },
    Type(&'a str),
    System,
}

/// One page of history, newest version first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub versions: Vec<StoredResource>,
    /// The cursor for the next (older) page, when there is one.
    pub next_before: Option<i64>,
}

impl Repository {
    /// Returns up to `count` versions in `scope`, newest first, written at or after
    /// `since` (microseconds since the Unix epoch) and older than the cursor `before`.
    /// Versions of resources the caller cannot see are left out; for a system-wide history
    /// the visibility is checked per resource type.
    pub fn history(
        &self,
        scope: HistoryScope<'_>,
        since: Option<i64>,
        count: usize,
        before: Option<i64>,
        visibility: &dyn Fn(&str) -> Option<Visibility>,
    ) -> Result<HistoryPage> {
        let mut sql = format!(
            "SELECT {VERSION_COLUMNS}, v.vid FROM versions v JOIN resources r ON r.rid = v.rid WHERE v.vid < ? AND v.last_updated >= ?"
        );
        let mut args = vec![
            SqlValue::Integer(before.unwrap_or(i64::MAX)),
            SqlValue::Integer(since.unwrap_or(i64::MIN)),
        ];
        match scope {
            HistoryScope::Instance { resource_type, id } => {
                sql.push_str(" AND r.type = ? AND r.id = ?");
                args.push(SqlValue::Text(resource_type.to_string()));
                args.push(SqlValue::Text(id.to_string()));
            }
            HistoryScope::Type(resource_type) => {
                sql.push_str(" AND r.type = ?");
                args.push(SqlValue::Text(resource_type.to_string()));
            }
            HistoryScope::System => {}
        }
        if let HistoryScope::Instance { resource_type, .. } | HistoryScope::Type(resource_type) =
            scope
        {
            match visibility(resource_type) {
                Some(visible) => {
                    let (condition, condition_args) = visible.sql(resource_type)?;
                    sql.push_str(&condition);
                    args.extend(condition_args);
                }
                None => {
                    return Ok(HistoryPage {
                        versions: Vec::new(),
                        next_before: None,
                    });
                }
            }
        }
        sql.push_str(" ORDER BY v.vid DESC LIMIT ?");
        // The system-wide query filters by type afterwards, so it reads more rows to fill
        // a page; a page may come back short when most versions are invisible.
        let limit = if scope == HistoryScope::System {
            count * 4 + 1
        } else {
            count + 1
        };
        args.push(SqlValue::Integer(limit as i64));

        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
            Ok((stored_from_row(row)?, row.get::<_, i64>(6)?))
        })?;
        let mut versions = Vec::with_capacity(count);
        let mut next_before = None;
        let mut scanned = 0;
        let mut last_vid = None;
        for row in rows {
            let (version, vid) = row?;
            scanned += 1;
            if versions.len() == count {
                // More rows follow the full page: the next page starts after its last row.
                next_before = last_vid;
                break;
            }
            last_vid = Some(vid);
            if scope == HistoryScope::System && !self.system_visible(&version, visibility)? {
                continue;
            }
            versions.push(version);
        }
        if next_before.is_none() && scanned == limit && versions.len() < count {
            // The scan stopped at its limit before the page filled: continue after it.
            next_before = last_vid;
        }
        Ok(HistoryPage {
            versions,
            next_before,
        })
    }

    fn system_visible(
        &self,
        version: &StoredResource,
        visibility: &dyn Fn(&str) -> Option<Visibility>,
    ) -> Result<bool> {
        match visibility(&version.resource_type) {
            None => Ok(false),
            Some(visible) if visible.is_everything() => Ok(true),
            Some(visible) => self.is_visible(&version.resource_type, &version.id, &visible),
        }
    }
}
