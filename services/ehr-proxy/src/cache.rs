//! The EHR cache: a SQLite projection of `hearth.ehr`.
//!
//! [`CacheProjection`] stores each `EhrResponseCached` under its site and cache key and
//! applies `EhrCacheInvalidated` by deleting entries. An invalidation also records its
//! time, and a response fetched before that time is dropped when it arrives later in the
//! log, so a read racing a write never puts the old version back. [`EhrCache`] reads the
//! store with pooled read-only connections.
//!
//! An invalidation removes, by its fields:
//! - `resource_type` and `resource_id`: reads of that resource and every search of its type;
//! - `resource_type` only: every entry of the type;
//! - neither: every entry of the site (a batch or transaction went through the proxy);
//! - and in every case each key in `cache_keys`.

use std::path::Path;

use hearth_log::Record;
use hearth_projection::{Error as ProjectionError, Projection, ReadPool, StoreState};
use hearth_schemas::{AnyEvent, EhrCacheInvalidated, EhrResponseCached};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Effect of applying one `hearth.ehr` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    Stored,
    /// The response was fetched before a later invalidation of what it contains.
    Stale,
    Invalidated {
        removed: usize,
    },
    /// Another event type, or a payload this version cannot decode.
    Skipped,
}

/// The projection of `hearth.ehr` into the cache store.
#[derive(Debug, Default)]
pub struct CacheProjection;

/// Store layout version; a store of another version is emptied and rebuilt from the log.
const SCHEMA_VERSION: i64 = 1;

impl Projection for CacheProjection {
    type Outcome = CacheOutcome;
    type Prepared = Option<AnyEvent>;

    fn name(&self) -> &'static str {
        "ehr-cache"
    }

    fn migrate(&mut self, conn: &Connection) -> rusqlite::Result<StoreState> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let state = if version == SCHEMA_VERSION {
            StoreState::Current
        } else {
            conn.execute_batch(
                "DROP TABLE IF EXISTS entries; DROP TABLE IF EXISTS invalidations;",
            )?;
            if version == 0 {
                StoreState::Current
            } else {
                StoreState::Cleared
            }
        };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                site_id TEXT NOT NULL,
                cache_key TEXT NOT NULL,
                resource_type TEXT,
                resource_id TEXT,
                status INTEGER NOT NULL,
                content_type TEXT,
                etag TEXT,
                last_modified INTEGER,
                body TEXT NOT NULL,
                fetched_at INTEGER NOT NULL,
                fresh_until INTEGER NOT NULL,
                PRIMARY KEY (site_id, cache_key)
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS entries_resource
                ON entries (site_id, resource_type, resource_id);
            CREATE INDEX IF NOT EXISTS entries_expiry ON entries (fresh_until);
            CREATE TABLE IF NOT EXISTS invalidations (
                site_id TEXT NOT NULL,
                resource_type TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                invalidated_at INTEGER NOT NULL,
                PRIMARY KEY (site_id, resource_type, resource_id)
            ) WITHOUT ROWID;",
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(state)
    }

    fn prepare(record: &Record) -> Self::Prepared {
        hearth_schemas::decode_any(&record.value).ok()
    }

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        record: &Record,
        prepared: Self::Prepared,
    ) -> Result<CacheOutcome, ProjectionError> {
        let outcome = match prepared {
            Some(AnyEvent::EhrResponseCached(event)) => store(tx, &event)?,
            Some(AnyEvent::EhrCacheInvalidated(event)) => invalidate(tx, &event)?,
            Some(_) => CacheOutcome::Skipped,
            None => {
                tracing::warn!(
                    offset = record.offset,
                    "skipping an undecodable EHR cache event"
                );
                CacheOutcome::Skipped
            }
        };
        Ok(outcome)
    }
}

fn store(tx: &Transaction<'_>, event: &EhrResponseCached) -> rusqlite::Result<CacheOutcome> {
    let resource_type = event.resource_type.as_deref().unwrap_or_default();
    let resource_id = event.resource_id.as_deref().unwrap_or_default();
    // The newest invalidation that covers this response: of the site, of its type, or of
    // its resource. A search entry is covered by invalidations of any resource of its type.
    let invalidated_at: Option<i64> = tx
        .prepare_cached(
            "SELECT MAX(invalidated_at) FROM invalidations
             WHERE site_id = ?1 AND (resource_type = '' OR (resource_type = ?2
               AND (resource_id = '' OR resource_id = ?3 OR ?3 = '')))",
        )?
        .query_row(params![event.site_id, resource_type, resource_id], |row| {
            row.get(0)
        })?;
    if invalidated_at.is_some_and(|at| at >= event.fetched_at) {
        return Ok(CacheOutcome::Stale);
    }

    // Expired entries go as new ones arrive; event time keeps a replay identical.
    tx.prepare_cached("DELETE FROM entries WHERE fresh_until < ?1")?
        .execute([event.occurred_at])?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO entries (site_id, cache_key, resource_type, resource_id,
            status, content_type, etag, last_modified, body, fetched_at, fresh_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        event.site_id,
        event.cache_key,
        event.resource_type,
        event.resource_id,
        event.status,
        event.content_type,
        event.etag,
        event.last_modified,
        event.body,
        event.fetched_at,
        event.fresh_until,
    ])?;
    Ok(CacheOutcome::Stored)
}

fn invalidate(tx: &Transaction<'_>, event: &EhrCacheInvalidated) -> rusqlite::Result<CacheOutcome> {
    let mut removed = 0;
    match (&event.resource_type, &event.resource_id) {
        (Some(resource_type), Some(resource_id)) => {
            removed += tx
                .prepare_cached(
                    "DELETE FROM entries WHERE site_id = ?1 AND resource_type = ?2
                     AND (resource_id = ?3 OR resource_id IS NULL)",
                )?
                .execute(params![event.site_id, resource_type, resource_id])?;
        }
        (Some(resource_type), None) => {
            removed += tx
                .prepare_cached("DELETE FROM entries WHERE site_id = ?1 AND resource_type = ?2")?
                .execute(params![event.site_id, resource_type])?;
        }
        (None, _) if event.cache_keys.is_empty() => {
            removed += tx
                .prepare_cached("DELETE FROM entries WHERE site_id = ?1")?
                .execute([&event.site_id])?;
        }
        (None, _) => {}
    }
    for key in &event.cache_keys {
        removed += tx
            .prepare_cached("DELETE FROM entries WHERE site_id = ?1 AND cache_key = ?2")?
            .execute(params![event.site_id, key])?;
    }
    if event.resource_type.is_some() || event.cache_keys.is_empty() {
        tx.prepare_cached(
            "INSERT INTO invalidations (site_id, resource_type, resource_id, invalidated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (site_id, resource_type, resource_id)
             DO UPDATE SET invalidated_at = MAX(invalidated_at, excluded.invalidated_at)",
        )?
        .execute(params![
            event.site_id,
            event.resource_type.as_deref().unwrap_or_default(),
            event.resource_id.as_deref().unwrap_or_default(),
            event.occurred_at,
        ])?;
    }
    Ok(CacheOutcome::Invalidated { removed })
}

/// A cached upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<i64>,
    pub body: String,
    pub fetched_at: i64,
}

/// Reads the cache store.
#[derive(Clone)]
pub struct EhrCache {
    pool: ReadPool,
}

impl EhrCache {
    pub fn open(path: &Path) -> Self {
        EhrCache {
            pool: ReadPool::new(path, 16),
        }
    }

    /// Returns the entry of `cache_key` at a site when it is still fresh at `now`
    /// (microseconds since the Unix epoch).
    pub fn lookup(
        &self,
        site_id: &str,
        cache_key: &str,
        now: i64,
    ) -> rusqlite::Result<Option<CachedResponse>> {
        let conn = self.pool.get()?;
        conn.prepare_cached(
            "SELECT status, content_type, etag, last_modified, body, fetched_at FROM entries
             WHERE site_id = ?1 AND cache_key = ?2 AND fresh_until > ?3",
        )?
        .query_row(params![site_id, cache_key, now], |row| {
            Ok(CachedResponse {
                status: row.get::<_, i64>(0)?.clamp(100, 599) as u16,
                content_type: row.get(1)?,
                etag: row.get(2)?,
                last_modified: row.get(3)?,
                body: row.get(4)?,
                fetched_at: row.get(5)?,
            })
        })
        .optional()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(key: &str, resource: (&str, Option<&str>), fetched_at: i64) -> EhrResponseCached {
        EhrResponseCached {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: fetched_at,
            site_id: "north".to_string(),
            cache_key: key.to_string(),
            method: "GET".to_string(),
            upstream_url: "http://ehr.example/fhir/x".to_string(),
            status: 200,
            resource_type: Some(resource.0.to_string()),
            resource_id: resource.1.map(str::to_string),
            version_id: None,
            content_type: Some("application/fhir+json".to_string()),
            etag: None,
            last_modified: None,
            body: "{}".to_string(),
            fetched_at,
            fresh_until: fetched_at + 60_000_000,
            request_id: None,
        }
    }

    fn invalidation(resource_type: Option<&str>, id: Option<&str>, at: i64) -> EhrCacheInvalidated {
        EhrCacheInvalidated {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: at,
            site_id: "north".to_string(),
            resource_type: resource_type.map(str::to_string),
            resource_id: id.map(str::to_string),
            cache_keys: Vec::new(),
            reason: Some("update".to_string()),
        }
    }

    fn keys(conn: &Connection) -> Vec<String> {
        let mut statement = conn
            .prepare("SELECT cache_key FROM entries ORDER BY cache_key")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn store_db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        CacheProjection.migrate(&conn).unwrap();
        conn
    }

    #[test]
    fn invalidation_removes_resource_and_searches() {
        let mut conn = store_db();
        let tx = conn.transaction().unwrap();
        store(&tx, &cached("read-1", ("Patient", Some("1")), 10)).unwrap();
        store(&tx, &cached("read-2", ("Patient", Some("2")), 10)).unwrap();
        store(&tx, &cached("search", ("Patient", None), 10)).unwrap();
        store(&tx, &cached("obs", ("Observation", None), 10)).unwrap();
        let outcome = invalidate(&tx, &invalidation(Some("Patient"), Some("1"), 20)).unwrap();
        assert_eq!(outcome, CacheOutcome::Invalidated { removed: 2 });
        assert_eq!(keys(&tx), vec!["obs", "read-2"]);
    }

    #[test]
    fn response_fetched_before_invalidation_is_stale() {
        let mut conn = store_db();
        let tx = conn.transaction().unwrap();
        invalidate(&tx, &invalidation(Some("Patient"), Some("1"), 20)).unwrap();
        let late = store(&tx, &cached("read-1", ("Patient", Some("1")), 15)).unwrap();
        assert_eq!(late, CacheOutcome::Stale);
        let other = store(&tx, &cached("read-2", ("Patient", Some("2")), 15)).unwrap();
        assert_eq!(
            other,
            CacheOutcome::Stored,
            "another Patient is not covered"
        );
        let search = store(&tx, &cached("search", ("Patient", None), 15)).unwrap();
        assert_eq!(
            search,
            CacheOutcome::Stale,
            "a search of the type is covered"
        );
        let fresh = store(&tx, &cached("read-1", ("Patient", Some("1")), 25)).unwrap();
        assert_eq!(fresh, CacheOutcome::Stored);
    }

    #[test]
    fn site_invalidation_removes_everything() {
        let mut conn = store_db();
        let tx = conn.transaction().unwrap();
        store(&tx, &cached("a", ("Patient", Some("1")), 10)).unwrap();
        store(&tx, &cached("b", ("Observation", None), 10)).unwrap();
        invalidate(&tx, &invalidation(None, None, 20)).unwrap();
        assert!(keys(&tx).is_empty());
        let late = store(&tx, &cached("b", ("Observation", None), 19)).unwrap();
        assert_eq!(late, CacheOutcome::Stale);
    }

    #[test]
    fn expired_entries_are_purged() {
        let mut conn = store_db();
        let tx = conn.transaction().unwrap();
        store(&tx, &cached("old", ("Patient", Some("1")), 10)).unwrap();
        store(&tx, &cached("new", ("Patient", Some("2")), 10 + 61_000_000)).unwrap();
        assert_eq!(keys(&tx), vec!["new"]);
    }
}
