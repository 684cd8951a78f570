//! System-level search (`[base]?_type=A,B&...`): one search over several resource types.
//!
//! Each type parses the parameters on its own, because parameter ids differ per type, so
//! a parameter must be defined for every searched type. A parameter that one of them
//! lacks is unsupported for the whole search: ignored under lenient handling, 400 under
//! strict handling. Without `_type` the search covers every type in the store, so only
//! parameters that every type has (`_id`, `_lastUpdated`, `_tag`, `_profile`,
//! `_security`, `_source`) work. Matches come in storage order across types, or sorted by
//! `_id` or `_lastUpdated`, the only sort keys every type shares.

use std::collections::BTreeSet;

use hearth_fhir_core::resource_types;
use percent_encoding::percent_decode_str;
use rusqlite::Connection;

use super::query::{Filter, SearchQuery, SortField, SortKey};
use super::run::{self, Found, SearchAccess, SearchResults};
use super::sql::{SqlBuilder, VisibilityFor};
use super::{SearchError, include, parse, plan};
use crate::Result;
use crate::read::Repository;

/// The parameter that lists the searched types.
pub const TYPE_PARAMETER: &str = "_type";
const SORT_PARAMETER: &str = "_sort";

/// One parsed system-level search.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemQuery {
    /// The result parameters, paging, includes, and the parameters to repeat in links (with
    /// `_type`). Its `resource_type` is empty and its `filters` unused.
    pub common: SearchQuery,
    /// The types `_type` names, in request order; empty when the search covers every type.
    pub named_types: Vec<String>,
    /// The filters of each searched type; for every type when `named_types` is empty.
    types: Vec<(String, Vec<Filter>)>,
}

impl SystemQuery {
    /// Returns the filters of `resource_type`, parsed for that type.
    pub fn filters(&self, resource_type: &str) -> Option<&[Filter]> {
        self.types
            .iter()
            .find(|(name, _)| name == resource_type)
            .map(|(_, filters)| filters.as_slice())
    }
}

/// Parses the parameters of a system-level search, given as (decoded name, value as
/// received) pairs in request order.
pub fn parse_system(
    pairs: &[(String, String)],
    options: &parse::ParseOptions<'_>,
) -> Result<SystemQuery, SearchError> {
    let mut named_types = Vec::new();
    let mut rest = Vec::with_capacity(pairs.len());
    for (name, raw) in pairs {
        if name != TYPE_PARAMETER {
            rest.push((name.clone(), raw.clone()));
            continue;
        }
        let spaced = raw.replace('+', " ");
        let value = percent_decode_str(&spaced)
            .decode_utf8()
            .map_err(|_| SearchError::invalid(format!("'{raw}' is not percent-encoded UTF-8")))?;
        let listed = value.split(',').map(str::trim).filter(|t| !t.is_empty());
        for resource_type in listed {
            if !resource_types::is_resource_type(resource_type) {
                return Err(SearchError::invalid(format!(
                    "_type names '{resource_type}', which is not a resource type"
                )));
            }
            if !named_types.iter().any(|t| t == resource_type) {
                named_types.push(resource_type.to_owned());
            }
        }
    }
    let searched: Vec<&str> = if named_types.is_empty() {
        resource_types::all().iter().map(String::as_str).collect()
    } else {
        named_types.iter().map(String::as_str).collect()
    };

    // A parameter that some type does not know is left out for every type, so that every
    // type applies the same parameters.
    let mut ignored = BTreeSet::new();
    for resource_type in &searched {
        ignored.extend(parse::parse(resource_type, &rest, options)?.ignored);
    }
    rest.retain(|(name, _)| !ignored.contains(name));

    let mut types = Vec::with_capacity(searched.len());
    let mut common = None;
    for resource_type in &searched {
        let query = parse::parse(resource_type, &rest, options)?;
        types.push((resource_type.to_string(), query.filters.clone()));
        common.get_or_insert(query);
    }
    let mut common = common.unwrap_or_default();
    let by_param = |key: &SortKey| matches!(key.field, SortField::Param { .. });
    if common.sort.iter().any(by_param) {
        if options.strict {
            return Err(SearchError::unsupported(
                "a search of several types sorts by _id and _lastUpdated only",
            ));
        }
        common.sort.clear();
        common.echoed.retain(|(name, _)| name != SORT_PARAMETER);
        ignored.insert(SORT_PARAMETER.to_owned());
    }
    common.resource_type = String::new();
    common.filters = Vec::new();
    common.echoed = echoed_with_types(pairs, &common.echoed);
    common.ignored = pairs
        .iter()
        .filter(|(name, _)| ignored.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(SystemQuery {
        common,
        named_types,
        types,
    })
}

/// Returns the pairs to repeat in links: the `_type` pairs and the pairs each type echoed,
/// in request order.
fn echoed_with_types(
    pairs: &[(String, String)],
    echoed: &[(String, String)],
) -> Vec<(String, String)> {
    let mut remaining = echoed.iter().peekable();
    let mut result = Vec::with_capacity(echoed.len() + 1);
    for pair in pairs {
        if pair.0 == TYPE_PARAMETER {
            result.push(pair.clone());
        } else if remaining.peek() == Some(&pair) {
            result.push(pair.clone());
            remaining.next();
        }
    }
    result
}

impl Repository {
    /// Returns up to `count` matches of a system-level search starting at its cursor, with
    /// the resources its `_include` and `_revinclude` add. Types the caller may not search
    /// are left out.
    pub fn system_search_page(
        &self,
        query: &SystemQuery,
        access: &SearchAccess<'_>,
        count: usize,
    ) -> Result<SearchResults> {
        let conn = self.pool.get()?;
        let types = searched_types(&conn, query, access.search)?;
        let (found, next) = run::page(&conn, &query.common, access.search, count, |builder| {
            push_system_where(builder, query, &types, access.search)
        })?;
        let (included, included_truncated) =
            include::collect(&conn, &query.common, access, &found)?;
        Ok(SearchResults {
            matches: found
                .into_iter()
                .map(|found: Found| found.resource)
                .collect(),
            included,
            included_truncated,
            next,
        })
    }

    /// Counts every match of a system-level search.
    pub fn system_search_count(
        &self,
        query: &SystemQuery,
        access: &SearchAccess<'_>,
    ) -> Result<u64> {
        let conn = self.pool.get()?;
        let types = searched_types(&conn, query, access.search)?;
        run::count_matches(&conn, access.search, |builder| {
            push_system_where(builder, query, &types, access.search)
        })
    }
}

/// Returns the types to search: those named, or else those in the store, less the types
/// the caller may not search.
fn searched_types(
    conn: &Connection,
    query: &SystemQuery,
    visibility: VisibilityFor<'_>,
) -> Result<Vec<String>> {
    let candidates = if query.named_types.is_empty() {
        stored_types(conn)?
    } else {
        query.named_types.clone()
    };
    Ok(candidates
        .into_iter()
        .filter(|resource_type| visibility(resource_type.as_str()).is_some())
        .collect())
}

/// Returns the types that have at least one row in `resources`, each found with one
/// index lookup instead of a scan of every row.
fn stored_types(conn: &Connection) -> Result<Vec<String>> {
    let mut statement = conn.prepare_cached(
        "WITH RECURSIVE present(type) AS (
             SELECT min(type) FROM resources
             UNION ALL
             SELECT (SELECT min(type) FROM resources WHERE type > present.type)
             FROM present WHERE present.type IS NOT NULL
         )
         SELECT type FROM present WHERE type IS NOT NULL",
    )?;
    let types = statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(types)
}

/// Appends the `WHERE` clause of a system-level search: `_id` once for all types, then
/// one alternative per type with that type's filters and visibility.
///
/// When every type has a filter or a patient compartment to find its rows with, SQLite
/// finds each type's rows that way and merges them. Otherwise it walks `resources` in
/// storage order and tests each row against the alternatives.
fn push_system_where(
    builder: &mut SqlBuilder<'_>,
    query: &SystemQuery,
    types: &[String],
    visibility: VisibilityFor<'_>,
) -> Result<()> {
    builder.push(" WHERE r.deleted = 0");
    // `_id` means the same for every type, so the ids can find the rows for all of them.
    let ids = query
        .types
        .first()
        .map(|(_, filters)| filters.iter().filter(|f| matches!(f, Filter::Id(_))))
        .into_iter()
        .flatten();
    for filter in ids {
        builder.push(" AND ");
        builder.filter("", "r", filter)?;
    }
    let branches: Vec<(&str, Vec<Filter>)> = types
        .iter()
        .filter_map(|resource_type| {
            let filters = query.filters(resource_type)?;
            let rest = filters
                .iter()
                .filter(|f| !matches!(f, Filter::Id(_)))
                .cloned()
                .collect();
            Some((resource_type.as_str(), rest))
        })
        .collect();
    let each_has_driver = branches.iter().all(|&(resource_type, ref filters)| {
        plan::has_driver(filters)
            || visibility(resource_type).is_some_and(|v| v.confines_to_patient())
    });

    builder.push(" AND (");
    if branches.is_empty() {
        builder.push("0");
    }
    for (index, (resource_type, filters)) in branches.iter().enumerate() {
        if index > 0 {
            builder.push(" OR ");
        }
        builder.push("(");
        plan::push_branch(builder, resource_type, "r", filters, each_has_driver)?;
        builder.visible(resource_type, "r")?;
        builder.push(")");
    }
    builder.push(")");
    Ok(())
}
