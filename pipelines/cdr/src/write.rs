//! Step three of applying an event: storing versions and their index rows.

use hearth_fhir_core::reference::LocalBases;
use rusqlite::{Connection, params};
use serde_json::Value;

use crate::apply::{
    ACTION_CREATE, ACTION_DELETE, ACTION_UPDATE, Current, Failure, Plan, Planned, Resource,
};
use crate::body;
use crate::index_store::{self, IndexBatch, IndexEntries};
use crate::outcome::{EntryOutcome, Rejection};
use crate::prepare::PreparedEntry;
use crate::time_format::format_instant;

/// The row ids of the next new resource and of the next version. SQLite would pick the same
/// ones, one past the largest in use. Choosing them here lets a new resource's row be
/// written once, with its version id, instead of inserted and then updated.
pub(crate) struct NextIds {
    rid: i64,
    vid: i64,
}

impl NextIds {
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let max = |sql: &str| {
            conn.prepare_cached(sql)?
                .query_row([], |row| row.get::<_, Option<i64>>(0))
                .map(Option::unwrap_or_default)
        };
        Ok(NextIds {
            rid: max("SELECT max(rid) FROM resources")? + 1,
            vid: max("SELECT max(vid) FROM versions")? + 1,
        })
    }
}

/// An entry ready to be written: its plan with the JSON and index rows of a new version
/// computed, so that writing it can fail only in the store.
pub(crate) struct Staged {
    resource_type: String,
    id: String,
    step: Step,
}

enum Step {
    Nothing {
        status: u16,
        version: i64,
    },
    Write {
        current: Option<Current>,
        version: i64,
        /// The compressed JSON.
        body: Vec<u8>,
        index: IndexEntries,
    },
    Delete {
        current: Current,
    },
}

/// Computes what an entry's plan writes. Rejects a resource that cannot be serialized.
pub(crate) fn stage(
    item: Planned,
    last_updated: i64,
    bases: &LocalBases,
) -> Result<Staged, Failure> {
    let Planned {
        resource_type,
        id,
        plan,
        ..
    } = item;
    let step = match plan {
        Plan::Nothing { status, version } => Step::Nothing { status, version },
        Plan::Write { resource, current } => {
            let version = current.map_or(1, |c| c.version + 1);
            let (body, index) =
                stored_form(resource, &resource_type, &id, version, last_updated, bases)?;
            Step::Write {
                current,
                version,
                body,
                index,
            }
        }
        Plan::Delete { current } => Step::Delete { current },
    };
    Ok(Staged {
        resource_type,
        id,
        step,
    })
}

/// Stores the version a staged entry calls for, and adds its index rows to `index_rows`
/// for the caller to insert.
pub(crate) fn write_staged(
    conn: &Connection,
    ids: &mut NextIds,
    index_rows: &mut IndexBatch,
    item: Staged,
    last_updated: i64,
    bases: &LocalBases,
) -> rusqlite::Result<EntryOutcome> {
    let Staged {
        resource_type,
        id,
        step,
    } = item;
    let (status, version) = match step {
        Step::Nothing { status, version } => (status, version),
        Step::Write {
            current,
            version,
            body,
            index,
        } => {
            let action = if current.is_some_and(|c| !c.deleted) {
                ACTION_UPDATE
            } else {
                ACTION_CREATE
            };
            if let Some(current) = current {
                index_store::remove_version(conn, bases, &resource_type, current.rid, current.vid)?;
            }
            let version_row = VersionRow {
                version,
                last_updated,
                action,
                body: Some(&body),
            };
            let rid = store_version(conn, ids, &resource_type, &id, current, version_row)?;
            index_rows.add(index, rid);
            let status = if action == ACTION_UPDATE { 200 } else { 201 };
            (status, version)
        }
        Step::Delete { current } => {
            let version = current.version + 1;
            index_store::remove_version(conn, bases, &resource_type, current.rid, current.vid)?;
            let version_row = VersionRow {
                version,
                last_updated,
                action: ACTION_DELETE,
                body: None,
            };
            store_version(conn, ids, &resource_type, &id, Some(current), version_row)?;
            (204, version)
        }
    };
    Ok(EntryOutcome {
        status,
        resource_type,
        id,
        version,
        last_updated,
        rejection: None,
    })
}

/// Returns the compressed JSON to store for `version` of the resource and its index rows.
/// A prepared resource is used as it is when it is the first version, which it was
/// prepared as.
fn stored_form(
    resource: Resource,
    resource_type: &str,
    id: &str,
    version: i64,
    last_updated: i64,
    bases: &LocalBases,
) -> Result<(Vec<u8>, IndexEntries), Failure> {
    let cannot_store = |e: serde_json::Error| {
        Rejection::new(400, "invalid", format!("cannot store the resource: {e}"))
    };
    let mut resource = match resource {
        Resource::Prepared(PreparedEntry { body, index }) if version == 1 => {
            return Ok((body, IndexEntries::from_rows(resource_type, *index, bases)));
        }
        // The prepared JSON is the resource with its references resolved, so parsing it
        // gives the same value the writer would have built.
        Resource::Prepared(prepared) => {
            let json = body::decompress(&prepared.body)?;
            serde_json::from_str(&json).map_err(cannot_store)?
        }
        Resource::Parsed(resource) => resource,
    };
    set_identity(&mut resource, id, version, last_updated);
    let json = serde_json::to_string(&resource).map_err(cannot_store)?;
    let index = IndexEntries::extract(resource_type, &resource, bases);
    Ok((body::compress(&json), index))
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`.
pub(crate) fn set_identity(resource: &mut Value, id: &str, version: i64, last_updated: i64) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    object.insert("id".to_string(), Value::String(id.to_string()));
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(serde_json::Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".to_string(), Value::String(version.to_string()));
        meta.insert(
            "lastUpdated".to_string(),
            Value::String(format_instant(last_updated)),
        );
    }
}

/// The `versions` row of a new version.
struct VersionRow<'a> {
    version: i64,
    last_updated: i64,
    action: i64,
    /// The compressed JSON; `None` for a deletion.
    body: Option<&'a [u8]>,
}

/// Writes a version and points the resource's row at it, creating that row for a new
/// resource. Returns the resource's row id.
fn store_version(
    conn: &Connection,
    ids: &mut NextIds,
    resource_type: &str,
    id: &str,
    current: Option<Current>,
    row: VersionRow<'_>,
) -> rusqlite::Result<i64> {
    let deleted = i64::from(row.action == ACTION_DELETE);
    let vid = ids.vid;
    let rid = match current {
        Some(current) => {
            conn.prepare_cached(
                "UPDATE resources SET version = ?2, vid = ?3, deleted = ?4, last_updated = ?5
                 WHERE rid = ?1",
            )?
            .execute(params![
                current.rid,
                row.version,
                vid,
                deleted,
                row.last_updated
            ])?;
            current.rid
        }
        None => {
            let rid = ids.rid;
            conn.prepare_cached(
                "INSERT INTO resources (rid, type, id, version, vid, deleted, last_updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                rid,
                resource_type,
                id,
                row.version,
                vid,
                deleted,
                row.last_updated
            ])?;
            ids.rid += 1;
            rid
        }
    };
    conn.prepare_cached(
        "INSERT INTO versions (vid, rid, version, last_updated, action, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        vid,
        rid,
        row.version,
        row.last_updated,
        row.action,
        row.body
    ])?;
    ids.vid += 1;
    Ok(rid)
}
