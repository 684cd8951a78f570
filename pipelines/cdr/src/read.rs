//! Reads from the repository: current versions, old versions, counts and searches.

use std::path::Path;

use hearth_projection::ReadPool;
use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, Row, params};

use crate::Result;
use crate::apply::ACTION_DELETE;
use crate::body;
use crate::criteria::build_filter;
use crate::visibility::Visibility;

/// One version of a resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    pub action: VersionAction,
    /// The resource JSON with `id` and `meta` set; `None` for a deletion.
    pub json: Option<String>,
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAction {
    Created,
    Updated,
    Deleted,
}

impl StoredResource {
    pub fn is_deleted(&self) -> bool {
        self.action == VersionAction::Deleted
    }
}

/// One page of search results in storage order.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub resources: Vec<StoredResource>,
    /// The cursor for the next page, when there is one.
    pub next_after: Option<i64>,
}

/// Read access to the repository store.
#[derive(Clone)]
pub struct Repository {
    pub(crate) pool: ReadPool,
}

pub(crate) const VERSION_COLUMNS: &str =
    "r.type, r.id, v.version, v.last_updated, v.action, v.body";

pub(crate) fn stored_from_row(row: &Row<'_>) -> rusqlite::Result<StoredResource> {
    let action = match row.get::<_, i64>(4)? {
        ACTION_DELETE => VersionAction::Deleted,
        0 => VersionAction::Created,
        _ => VersionAction::Updated,
    };
    Ok(StoredResource {
        resource_type: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        last_updated: row.get(3)?,
        action,
        json: row
            .get_ref(5)?
            .as_blob_or_null()?
            .map(body::decompress)
            .transpose()?,
    })
}

impl Repository {
    /// Opens read access to the store at `path`, which the projection runner creates.
    pub fn open(path: &Path) -> Self {
        Repository {
            pool: ReadPool::new(path, 64),
        }
    }

    /// Returns the current version, which may be a deletion, or `None` if the resource
    /// never existed.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        let conn = self.pool.get()?;
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.vid = r.vid WHERE r.type = ?1 AND r.id = ?2"
        );
        let found = conn
            .prepare_cached(&sql)?
            .query_row(params![resource_type, id], stored_from_row)
            .optional()?;
        Ok(found)
    }

    /// Returns one version of a resource.
    pub fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredResource>> {
        let conn = self.pool.get()?;
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.rid = r.rid
             WHERE r.type = ?1 AND r.id = ?2 AND v.version = ?3"
        );
        let found = conn
            .prepare_cached(&sql)?
            .query_row(params![resource_type, id, version], stored_from_row)
            .optional()?;
        Ok(found)
    }

    /// Returns `Type/id` of the one live resource with this id, of whatever type; `None`
    /// when there is none or several types share the id.
    pub fn find_by_id(&self, id: &str) -> Result<Option<String>> {
        let conn = self.pool.get()?;
        Ok(crate::apply::find_by_id(&conn, id)?)
    }

    /// Returns up to `limit` live resources (id, version) matching conditional criteria
    /// such as `identifier=system|value`, as a conditional write or reference would.
    pub fn criteria_matches(
        &self,
        resource_type: &str,
        criteria: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>> {
        let conn = self.pool.get()?;
        Ok(crate::criteria::find(
            &conn,
            resource_type,
            criteria,
            limit,
        )?)
    }

    /// Returns whether the live resource `resource_type/id` is visible.
    pub fn is_visible(
        &self,
        resource_type: &str,
        id: &str,
        visibility: &Visibility,
    ) -> Result<bool> {
        let (visible, args) = visibility.sql(resource_type)?;
        let sql = format!(
            "SELECT count(*) FROM resources r WHERE r.type = ? AND r.id = ? AND r.deleted = 0{visible}"
        );
        let mut all_args = vec![
            SqlValue::Text(resource_type.to_string()),
            SqlValue::Text(id.to_string()),
        ];
        all_args.extend(args);
        let conn = self.pool.get()?;
        let count: i64 = conn
            .prepare_cached(&sql)?
            .query_row(rusqlite::params_from_iter(all_args), |row| row.get(0))?;
        Ok(count > 0)
    }

    /// Counts the live, visible resources of a type that match `filters`.
    pub fn count(
        &self,
        resource_type: &str,
        filters: &[(String, String)],
        visibility: &Visibility,
    ) -> Result<u64> {
        let (matching, mut all_args) = build_filter(resource_type, filters)?;
        let (visible, visible_args) = visibility.sql(resource_type)?;
        let sql = format!("SELECT count(*) FROM resources r WHERE {matching}{visible}");
        all_args.extend(visible_args);
        let conn = self.pool.get()?;
        let count: i64 = conn
            .prepare_cached(&sql)?
            .query_row(rusqlite::params_from_iter(all_args), |row| row.get(0))?;
        Ok(count as u64)
    }

    /// Returns up to `count` live, visible resources of a type that match `filters`,
    /// after the cursor `after` (exclusive), in storage order.
    pub fn search(
        &self,
        resource_type: &str,
        filters: &[(String, String)],
        visibility: &Visibility,
        count: usize,
        after: Option<i64>,
    ) -> Result<SearchPage> {
        let (matching, mut all_args) = build_filter(resource_type, filters)?;
        let (visible, visible_args) = visibility.sql(resource_type)?;
        let sql = format!(
            "SELECT {VERSION_COLUMNS}, r.rid FROM resources r JOIN versions v ON v.vid = r.vid
             WHERE {matching} AND r.rid > ?{visible} ORDER BY r.rid LIMIT ?"
        );
        all_args.push(SqlValue::Integer(after.unwrap_or(0)));
        all_args.extend(visible_args);
        all_args.push(SqlValue::Integer(count as i64 + 1));

        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(all_args), |row| {
            Ok((stored_from_row(row)?, row.get::<_, i64>(6)?))
        })?;
        let mut resources = Vec::with_capacity(count);
        let mut next_after = None;
        let mut last_rid = None;
        for row in rows {
            let (resource, rid) = row?;
            if resources.len() == count {
                next_after = last_rid;
                break;
            }
            resources.push(resource);
            last_rid = Some(rid);
        }
        Ok(SearchPage {
            resources,
            next_after,
        })
    }
}
