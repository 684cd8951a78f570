//! Applying `ResourceTransaction` events to the repository.
//!
//! Each event is applied in three steps. First every entry is resolved to the resource it
//! writes: conditional creates, updates and deletes run their criteria, and `fullUrl`s are
//! mapped to `Type/id`. Then the references inside the resources are rewritten: bundle
//! placeholders through that map, conditional references by searching, and for loads
//! placeholders of resources stored earlier by their id. Last, versions and index rows are
//! written. All decisions read only the repository and the event, so a replay decides the
//! same way. Work that needs no repository (decoding, parsing, extracting index rows) is
//! done beforehand by [`crate::prepare`], off the writer thread, where it can be.

use std::collections::{HashMap, HashSet};

use hearth_fhir_core::reference::{LocalBases, ReferenceKind, classify, rewrite_references};
use hearth_log::Record;
use hearth_projection::{Error as ProjectionError, Projection, StoreState};
use hearth_schemas::{ResourceAction, ResourceOperation, ResourceTransaction, TransactionKind};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::criteria::{self, CriteriaError};
use crate::index_store::IndexBatch;
use crate::outcome::{EntryOutcome, Rejection, TransactionOutcome};
use crate::prepare::{self, PreparedEntry, PreparedEvent};
use crate::schema;
use crate::write::{NextIds, stage, write_staged};

/// Action codes stored in `versions.action`.
pub(crate) const ACTION_CREATE: i64 = 0;
pub(crate) const ACTION_UPDATE: i64 = 1;
pub(crate) const ACTION_DELETE: i64 = 2;

/// The repository projection of `hearth.resources`.
#[derive(Debug, Default)]
pub struct RepositoryProjection {
    /// The server's FHIR bases: an absolute reference under one of them is indexed as a
    /// reference to a resource of the repository, any other only by its URL.
    bases: LocalBases,
}

impl RepositoryProjection {
    /// Returns the projection of a server whose FHIR bases are `bases`. The default has
    /// none, so every absolute reference is indexed only by its URL.
    pub fn new(bases: LocalBases) -> Self {
        RepositoryProjection { bases }
    }
}

impl Projection for RepositoryProjection {
    type Outcome = TransactionOutcome;
    type Prepared = PreparedEvent;

    fn name(&self) -> &'static str {
        "repository"
    }

    fn migrate(&mut self, conn: &Connection) -> rusqlite::Result<StoreState> {
        if schema::migrate(conn, &self.bases)? {
            Ok(StoreState::Cleared)
        } else {
            Ok(StoreState::Current)
        }
    }

    fn prepare(record: &Record) -> PreparedEvent {
        prepare::prepare(record)
    }

    fn apply(
        &mut self,
        tx: &Transaction<'_>,
        record: &Record,
        prepared: PreparedEvent,
    ) -> Result<TransactionOutcome, ProjectionError> {
        let mut decoded = match prepared.decoded {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(offset = record.offset, %error, "skipping an undecodable resource event");
                return Ok(TransactionOutcome::Undecodable(error));
            }
        };
        apply_event(tx, &decoded.event, &mut decoded.entries, &self.bases)
            .map_err(|e| ProjectionError::Store(e.to_string()))
    }
}

/// The `meta.lastUpdated` of every version an event writes: its time, truncated to the
/// millisecond that FHIR instants show.
pub(crate) fn last_updated(event: &ResourceTransaction) -> i64 {
    event.occurred_at - event.occurred_at.rem_euclid(1000)
}

/// Why applying an entry stopped: a decision to reject, or a failing store.
#[derive(Debug)]
pub(crate) enum Failure {
    Reject(Rejection),
    Store(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Store(error)
    }
}

impl From<Rejection> for Failure {
    fn from(rejection: Rejection) -> Self {
        Failure::Reject(rejection)
    }
}

impl From<CriteriaError> for Failure {
    fn from(error: CriteriaError) -> Self {
        match error {
            CriteriaError::Sqlite(e) => Failure::Store(e),
            other => Failure::Reject(Rejection::new(400, "invalid", other.to_string())),
        }
    }
}

/// Applies `event`, using the prepared work in `prepared` (one slot per entry) where it
/// fits the decisions.
///
/// Every rejection is decided before the first write of the entries it covers (see
/// [`apply_entries`]), so a rejected transaction or batch entry leaves nothing to roll
/// back, and no savepoint is needed. A store error fails the runner's whole batch.
pub(crate) fn apply_event(
    conn: &Connection,
    event: &ResourceTransaction,
    prepared: &mut [Option<PreparedEntry>],
    bases: &LocalBases,
) -> rusqlite::Result<TransactionOutcome> {
    let last_updated = last_updated(event);
    let all_or_nothing = !matches!(event.kind, TransactionKind::Batch);
    if all_or_nothing {
        let indexed: Vec<(usize, &ResourceOperation)> = event.entries.iter().enumerate().collect();
        match apply_entries(conn, event, &indexed, prepared, last_updated, bases) {
            Ok(outcomes) => Ok(TransactionOutcome::Applied(outcomes)),
            Err(Failure::Reject(rejection)) => Ok(TransactionOutcome::Rejected(rejection)),
            Err(Failure::Store(error)) => Err(error),
        }
    } else {
        let mut outcomes = Vec::with_capacity(event.entries.len());
        for (index, entry) in event.entries.iter().enumerate() {
            match apply_entries(
                conn,
                event,
                &[(index, entry)],
                prepared,
                last_updated,
                bases,
            ) {
                Ok(mut done) => outcomes.append(&mut done),
                Err(Failure::Reject(rejection)) => {
                    outcomes.push(EntryOutcome {
                        status: rejection.status,
                        resource_type: entry.resource_type.clone(),
                        id: entry.id.clone().unwrap_or_default(),
                        version: 0,
                        last_updated,
                        rejection: Some(rejection.at(index)),
                    });
                }
                Err(Failure::Store(error)) => return Err(error),
            }
        }
        Ok(TransactionOutcome::Applied(outcomes))
    }
}

/// The row of a stored resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    pub rid: i64,
    pub version: i64,
    pub vid: i64,
    pub deleted: bool,
}

pub(crate) fn find_current(
    conn: &Connection,
    resource_type: &str,
    id: &str,
) -> rusqlite::Result<Option<Current>> {
    conn.prepare_cached(
        "SELECT rid, version, vid, deleted FROM resources WHERE type = ?1 AND id = ?2",
    )?
    .query_row(params![resource_type, id], |row| {
        Ok(Current {
            rid: row.get(0)?,
            version: row.get(1)?,
            vid: row.get(2)?,
            deleted: row.get::<_, i64>(3)? != 0,
        })
    })
    .optional()
}

/// What step one decided for an entry.
pub(crate) enum Plan {
    Write {
        resource: Resource,
        current: Option<Current>,
    },
    Delete {
        current: Current,
    },
    /// Nothing to write: a conditional create that matched, or a delete of nothing.
    Nothing {
        status: u16,
        version: i64,
    },
}

/// The resource an entry writes: parsed by the writer, or prepared ahead of it.
pub(crate) enum Resource {
    Parsed(Value),
    Prepared(PreparedEntry),
}

pub(crate) struct Planned {
    pub index: usize,
    pub resource_type: String,
    pub id: String,
    pub plan: Plan,
}

fn apply_entries(
    conn: &Connection,
    event: &ResourceTransaction,
    entries: &[(usize, &ResourceOperation)],
    prepared: &mut [Option<PreparedEntry>],
    last_updated: i64,
    bases: &LocalBases,
) -> Result<Vec<EntryOutcome>, Failure> {
    let mut planned = Vec::with_capacity(entries.len());
    let mut full_urls: HashMap<&str, String> = HashMap::new();
    let mut identities: HashSet<(String, String)> = HashSet::new();
    for (index, entry) in entries {
        let prepared = prepared.get_mut(*index).and_then(Option::take);
        let plan = plan_entry(conn, entry, prepared).map_err(|f| at_entry(f, *index))?;
        if !matches!(plan.plan, Plan::Nothing { .. })
            && !identities.insert((plan.resource_type.clone(), plan.id.clone()))
        {
            let message = format!(
                "{}/{} is written by more than one entry of the transaction",
                plan.resource_type, plan.id
            );
            return Err(Rejection::new(400, "invalid", message).at(*index).into());
        }
        if let Some(url) = entry.full_url.as_deref() {
            full_urls.insert(url, format!("{}/{}", plan.resource_type, plan.id));
        }
        planned.push(Planned {
            index: *index,
            ..plan
        });
    }

    for item in &mut planned {
        // A prepared resource had its references resolved from the same event already.
        if let Plan::Write {
            resource: Resource::Parsed(resource),
            ..
        } = &mut item.plan
        {
            resolve_references(conn, resource, &full_urls, event.kind)
                .map_err(|f| at_entry(f, item.index))?;
        }
    }

    let mut staged = Vec::with_capacity(planned.len());
    for item in planned {
        let index = item.index;
        staged.push(stage(item, last_updated, bases).map_err(|f| at_entry(f, index))?);
    }

    // Nothing was written so far, and from here on only a store error can stop the entries.
    // Old index rows go as each entry is written, and the new ones are inserted together
    // at the end. No row removed belongs to another entry, because an event writes each
    // resource once.
    let mut ids = NextIds::load(conn)?;
    let mut index_rows = IndexBatch::default();
    let mut outcomes = Vec::with_capacity(staged.len());
    for item in staged {
        outcomes.push(write_staged(
            conn,
            &mut ids,
            &mut index_rows,
            item,
            last_updated,
            bases,
        )?);
    }
    index_rows.insert(conn)?;
    Ok(outcomes)
}

fn at_entry(failure: Failure, index: usize) -> Failure {
    match failure {
        Failure::Reject(rejection) => Failure::Reject(rejection.at(index)),
        store => store,
    }
}

/// Step one for a single entry: which resource it writes and whether that is allowed.
fn plan_entry(
    conn: &Connection,
    entry: &ResourceOperation,
    prepared: Option<PreparedEntry>,
) -> Result<Planned, Failure> {
    let resource_type = entry.resource_type.clone();
    let mut id = entry.id.clone();

    let criteria = match entry.action {
        ResourceAction::Create => entry.if_none_exist.as_deref(),
        ResourceAction::Update | ResourceAction::Delete => entry.criteria.as_deref(),
        ResourceAction::Patch => None,
    };
    if let Some(criteria) = criteria {
        let matches = criteria::find(conn, &resource_type, criteria, 2)?;
        match (matches.as_slice(), entry.action) {
            ([], ResourceAction::Delete) => {
                return Ok(nothing(resource_type, String::new(), 204, 0));
            }
            ([], _) => {}
            ([(found_id, version)], ResourceAction::Create) => {
                return Ok(nothing(resource_type, found_id.clone(), 200, *version));
            }
            ([(found_id, _)], _) => id = Some(found_id.clone()),
            _ => {
                let message =
                    format!("the criteria '{criteria}' match more than one {resource_type}");
                return Err(Rejection::new(412, "multiple-matches", message).into());
            }
        }
    }

    let Some(id) = id else {
        return Err(Rejection::new(400, "required", "the entry has no resource id").into());
    };
    let current = find_current(conn, &resource_type, &id)?;
    check_if_match(entry.if_match.as_deref(), current, &resource_type, &id)?;

    let plan = match entry.action {
        ResourceAction::Create if current.is_some_and(|c| !c.deleted) => {
            let message = format!("{resource_type}/{id} exists already");
            return Err(Rejection::new(409, "duplicate", message).into());
        }
        ResourceAction::Create | ResourceAction::Update => {
            let resource = match prepared {
                Some(prepared) => Resource::Prepared(prepared),
                None => Resource::Parsed(parse_resource(entry)?),
            };
            Plan::Write { resource, current }
        }
        ResourceAction::Delete => match current {
            Some(current) if !current.deleted => Plan::Delete { current },
            Some(current) => Plan::Nothing {
                status: 204,
                version: current.version,
            },
            None => Plan::Nothing {
                status: 204,
                version: 0,
            },
        },
        ResourceAction::Patch => match current {
            Some(current) if !current.deleted => {
                let patched = apply_patch(conn, entry, current, &resource_type, &id)?;
                Plan::Write {
                    resource: Resource::Parsed(patched),
                    current: Some(current),
                }
            }
            _ => {
                let message =
                    format!("{resource_type}/{id} does not exist, so it cannot be patched");
                return Err(Rejection::new(404, "not-found", message).into());
            }
        },
    };
    Ok(Planned {
        index: 0,
        resource_type,
        id,
        plan,
    })
}

/// Applies the entry's JSON Patch (RFC 6902) to the current version. The patched resource
/// must keep its type and id; `meta.versionId` and `meta.lastUpdated` are set afterwards as
/// for any write.
fn apply_patch(
    conn: &Connection,
    entry: &ResourceOperation,
    current: Current,
    resource_type: &str,
    id: &str,
) -> Result<Value, Failure> {
    let Some(text) = entry.resource.as_deref() else {
        return Err(Rejection::new(400, "required", "the entry has no JSON Patch document").into());
    };
    let patch: json_patch::Patch = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            400,
            "invalid",
            format!("the JSON Patch document is not valid: {e}"),
        )
    })?;
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT body FROM versions WHERE vid = ?1")?
        .query_row([current.vid], |row| row.get(0))
        .optional()?
        .flatten();
    let Some(stored) = stored else {
        let message = format!("{resource_type}/{id} has no stored content to patch");
        return Err(Rejection::new(404, "not-found", message).into());
    };
    let mut resource: Value = serde_json::from_str(&crate::body::decompress(&stored)?)
        .map_err(|e| Failure::Store(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    json_patch::patch(&mut resource, &patch).map_err(|e| {
        Rejection::new(
            422,
            "processing",
            format!("the JSON Patch cannot be applied: {e}"),
        )
    })?;
    let kept_type = resource.get("resourceType").and_then(Value::as_str) == Some(resource_type);
    let kept_id = resource
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(|patched| patched == id);
    if !kept_type || !kept_id {
        let message = "a JSON Patch may not change the resource's type or id";
        return Err(Rejection::new(422, "processing", message).into());
    }
    // The patched resource must pass the same structural check as a created or updated
    // one, or a patch could store what a PUT of the same content is refused.
    hearth_fhir_core::validate::validate(&resource).map_err(|invalid| {
        Rejection::new(
            422,
            "processing",
            format!("the patched resource is not valid: {invalid}"),
        )
    })?;
    Ok(resource)
}

fn nothing(resource_type: String, id: String, status: u16, version: i64) -> Planned {
    Planned {
        index: 0,
        resource_type,
        id,
        plan: Plan::Nothing { status, version },
    }
}

fn check_if_match(
    if_match: Option<&str>,
    current: Option<Current>,
    resource_type: &str,
    id: &str,
) -> Result<(), Failure> {
    let Some(expected) = if_match else {
        return Ok(());
    };
    let live = current.filter(|c| !c.deleted);
    match live {
        Some(current) if current.version.to_string() == expected => Ok(()),
        Some(current) => {
            let message = format!(
                "{resource_type}/{id} is at version {}, not {expected}",
                current.version
            );
            Err(Rejection::new(412, "conflict", message).into())
        }
        None => {
            let message =
                format!("{resource_type}/{id} does not exist, so version {expected} cannot match");
            Err(Rejection::new(412, "conflict", message).into())
        }
    }
}

fn parse_resource(entry: &ResourceOperation) -> Result<Value, Failure> {
    let Some(text) = entry.resource.as_deref() else {
        return Err(Rejection::new(400, "required", "the entry has no resource").into());
    };
    let resource: Value = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            400,
            "invalid",
            format!("the resource is not valid JSON: {e}"),
        )
    })?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(entry.resource_type.as_str()) {
        let message = format!("the resource is not a {}", entry.resource_type);
        return Err(Rejection::new(400, "invalid", message).into());
    }
    Ok(resource)
}

/// Step two: rewrites placeholders and conditional references to `Type/id`.
fn resolve_references(
    conn: &Connection,
    resource: &mut Value,
    full_urls: &HashMap<&str, String>,
    kind: TransactionKind,
) -> Result<(), Failure> {
    rewrite_references(resource, &mut |reference: &mut String| {
        if let Some(target) = full_urls.get(reference.as_str()) {
            *reference = target.clone();
            return Ok(());
        }
        match classify(reference) {
            ReferenceKind::Placeholder(url) => {
                let target = match kind {
                    TransactionKind::Load => find_by_id(conn, url.trim_start_matches("urn:uuid:"))?,
                    _ => None,
                };
                match target {
                    Some(target) => {
                        *reference = target;
                        Ok(())
                    }
                    None => {
                        let message = format!(
                            "reference {url} matches no entry of the bundle and no stored resource"
                        );
                        Err(Rejection::new(400, "not-found", message).into())
                    }
                }
            }
            ReferenceKind::Conditional {
                resource_type,
                query,
            } => {
                let matches = criteria::find(conn, resource_type, query, 2)?;
                match matches.as_slice() {
                    [(id, _)] => {
                        *reference = format!("{resource_type}/{id}");
                        Ok(())
                    }
                    [] => {
                        let message =
                            format!("conditional reference {reference} matches no resource");
                        Err(Rejection::new(400, "not-found", message).into())
                    }
                    _ => {
                        let message = format!(
                            "conditional reference {reference} matches more than one resource"
                        );
                        Err(Rejection::new(412, "multiple-matches", message).into())
                    }
                }
            }
            _ => Ok(()),
        }
    })
}

/// Finds the one live resource of any type with this id, as `Type/id`.
pub(crate) fn find_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    let mut statement =
        conn.prepare_cached("SELECT type FROM resources WHERE id = ?1 AND deleted = 0 LIMIT 2")?;
    let types: Vec<String> = statement
        .query_map([id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    match types.as_slice() {
        [resource_type] => Ok(Some(format!("{resource_type}/{id}"))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
