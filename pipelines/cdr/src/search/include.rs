//! `_include` and `_revinclude`: the resources a page's matches refer to, and the
//! resources that refer to them, each read through the caller's read visibility.
//!
//! The first round applies every include to the matches; each later round applies the
//! `:iterate` ones to the resources the round before added, until a round adds nothing,
//! [`MAX_ROUNDS`] rounds have run, or [`MAX_INCLUDED`] resources were added.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use hearth_fhir_core::resource_types;
use hearth_fhir_core::search_params::{self, ParamType, SearchParam};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use super::query::{Include, SearchQuery};
use super::run::{Found, MAX_INCLUDED, SearchAccess};
use super::sql::{SqlBuilder, VisibilityFor};
use crate::Result;
use crate::params;
use crate::read::{StoredResource, VERSION_COLUMNS, stored_from_row};

/// Most rounds of `:iterate`.
pub const MAX_ROUNDS: usize = 8;

/// Most values bound in one `IN (...)` list; longer lists are split into several queries.
const CHUNK: usize = 500;

/// Returns the resources the includes of `query` add to a page of `matches`, and whether
/// some were left out because there were more than [`MAX_INCLUDED`].
pub(crate) fn collect(
    conn: &Connection,
    query: &SearchQuery,
    access: &SearchAccess<'_>,
    matches: &[Found],
) -> Result<(Vec<StoredResource>, bool)> {
    if query.includes.is_empty() && query.revincludes.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut seen: HashSet<(String, String)> =
        matches.iter().map(|found| key(&found.resource)).collect();
    let mut frontier: Vec<(i64, String, String)> = matches
        .iter()
        .map(|f| {
            (
                f.rid,
                f.resource.resource_type.clone(),
                f.resource.id.clone(),
            )
        })
        .collect();
    let mut included = Vec::new();

    for round in 0..MAX_ROUNDS {
        let applies = |include: &&Include| round == 0 || include.iterate;
        let includes: Vec<&Include> = query.includes.iter().filter(applies).collect();
        let revincludes: Vec<&Include> = query.revincludes.iter().filter(applies).collect();
        if frontier.is_empty() || (includes.is_empty() && revincludes.is_empty()) {
            break;
        }

        let mut added = referenced(conn, access.read, &includes, &frontier, &seen)?;
        added.extend(referring(conn, access.read, &revincludes, &frontier)?);

        frontier.clear();
        for found in added {
            if seen.insert(key(&found.resource)) {
                frontier.push((
                    found.rid,
                    found.resource.resource_type.clone(),
                    found.resource.id.clone(),
                ));
                included.push(found.resource);
            }
        }
        if included.len() > MAX_INCLUDED {
            included.truncate(MAX_INCLUDED);
            return Ok((included, true));
        }
    }
    Ok((included, false))
}

fn key(resource: &StoredResource) -> (String, String) {
    (resource.resource_type.clone(), resource.id.clone())
}

/// Groups (rid, type, id) triples by type.
fn by_type(resources: &[(i64, String, String)]) -> BTreeMap<&str, Vec<(i64, &str)>> {
    let mut groups: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for (rid, resource_type, id) in resources {
        groups
            .entry(resource_type.as_str())
            .or_default()
            .push((*rid, id.as_str()));
    }
    groups
}

/// Returns the ids of the reference parameters of `source_type` that may point at
/// `target_type` (any type when `None`).
fn reference_params(source_type: &str, target_type: Option<&str>) -> Vec<i64> {
    search_params::for_type(source_type)
        .iter()
        .filter(|param| param.param_type == ParamType::Reference)
        .filter(|param| target_type.is_none_or(|target| accepts(param, target)))
        .filter_map(|param| params::id(source_type, &param.code))
        .collect()
}

fn accepts(param: &SearchParam, target_type: &str) -> bool {
    param.targets.is_empty() || param.targets.iter().any(|t| t == target_type)
}

/// `_include`: the resources that the frontier's references point at.
fn referenced(
    conn: &Connection,
    read: VisibilityFor<'_>,
    includes: &[&Include],
    frontier: &[(i64, String, String)],
    seen: &HashSet<(String, String)>,
) -> Result<Vec<Found>> {
    let mut targets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for include in includes {
        for (source_type, sources) in by_type(frontier) {
            if include
                .source_type
                .as_deref()
                .is_some_and(|t| t != source_type)
            {
                continue;
            }
            let param_ids = match &include.param {
                Some(code) => params::id(source_type, code).into_iter().collect(),
                None => reference_params(source_type, include.target_type.as_deref()),
            };
            if param_ids.is_empty() {
                continue;
            }
            let rids: Vec<i64> = sources.iter().map(|(rid, _)| *rid).collect();
            for chunk in rids.chunks(CHUNK) {
                let sql = format!(
                    "SELECT target_type, target_id FROM idx_reference
                     WHERE rid IN ({}) AND param IN ({}) AND target_id <> ''",
                    placeholders(chunk.len()),
                    join_ids(&param_ids)
                );
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(chunk), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (target_type, id) = row?;
                    let wanted = include
                        .target_type
                        .as_deref()
                        .is_none_or(|t| t == target_type);
                    if wanted && !seen.contains(&(target_type.clone(), id.clone())) {
                        targets.entry(target_type).or_default().insert(id);
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    for (target_type, ids) in targets {
        let ids: Vec<SqlValue> = ids.into_iter().map(SqlValue::Text).collect();
        found.extend(fetch(conn, read, &target_type, "r.id", &ids)?);
    }
    Ok(found)
}

/// `_revinclude`: the resources whose references point at the frontier.
fn referring(
    conn: &Connection,
    read: VisibilityFor<'_>,
    revincludes: &[&Include],
    frontier: &[(i64, String, String)],
) -> Result<Vec<Found>> {
    let mut sources: BTreeMap<&'static str, BTreeSet<i64>> = BTreeMap::new();
    for revinclude in revincludes {
        for (target_type, targets) in by_type(frontier) {
            if revinclude
                .target_type
                .as_deref()
                .is_some_and(|t| t != target_type)
            {
                continue;
            }
            let param_ids: Vec<i64> = match (&revinclude.source_type, &revinclude.param) {
                (Some(source_type), Some(code)) => search_params::get(source_type, code)
                    .filter(|param| accepts(param, target_type))
                    .and_then(|_| params::id(source_type, code))
                    .into_iter()
                    .collect(),
                (Some(source_type), None) => reference_params(source_type, Some(target_type)),
                (None, _) => resource_types::all()
                    .iter()
                    .flat_map(|source_type| reference_params(source_type, Some(target_type)))
                    .collect(),
            };
            if param_ids.is_empty() {
                continue;
            }
            let ids: Vec<&str> = targets.iter().map(|(_, id)| *id).collect();
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "SELECT rid, param FROM idx_reference
                     WHERE param IN ({}) AND target_type = ? AND target_id IN ({})",
                    join_ids(&param_ids),
                    placeholders(chunk.len())
                );
                let mut args = vec![SqlValue::Text(target_type.to_owned())];
                args.extend(chunk.iter().map(|id| SqlValue::Text((*id).to_owned())));
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (rid, param) = row?;
                    if let Some((source_type, _)) = params::describe(param) {
                        sources.entry(source_type).or_default().insert(rid);
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    for (source_type, rids) in sources {
        let rids: Vec<SqlValue> = rids.into_iter().map(SqlValue::Integer).collect();
        found.extend(fetch(conn, read, source_type, "r.rid", &rids)?);
    }
    Ok(found)
}

/// Returns the live resources of `resource_type` whose `column` (`r.id` or `r.rid`) is
/// one of `keys` and that the caller may read, in storage order.
fn fetch(
    conn: &Connection,
    read: VisibilityFor<'_>,
    resource_type: &str,
    column: &str,
    keys: &[SqlValue],
) -> Result<Vec<Found>> {
    if read(resource_type).is_none() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let mut builder = SqlBuilder::new(Some(read));
        builder.push(&format!(
            "SELECT {VERSION_COLUMNS}, r.rid FROM resources r JOIN versions v ON v.vid = r.vid
             WHERE r.type = "
        ));
        builder.arg(resource_type.to_owned());
        builder.push(&format!(" AND r.deleted = 0 AND {column} IN ("));
        for (index, value) in chunk.iter().enumerate() {
            if index > 0 {
                builder.push(", ");
            }
            builder.arg(value.clone());
        }
        builder.push(")");
        builder.visible(resource_type, "r")?;
        builder.push(" ORDER BY r.rid");
        let mut statement = conn.prepare_cached(&builder.sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(builder.args), |row| {
            Ok(Found {
                resource: stored_from_row(row)?,
                rid: row.get(6)?,
            })
        })?;
        for row in rows {
            found.push(row?);
        }
    }
    Ok(found)
}

fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

/// Joins parameter ids, which are integers the registry assigned, for inlining in SQL.
fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
