//! Running a parsed search: the page of matches in order, and the count of all matches.

use rusqlite::Connection;

use super::query::{Cursor, SearchQuery, SortField, SortKey, Table};
use super::sql::{SqlBuilder, VisibilityFor};
use super::{include, plan};
use crate::Result;
use crate::read::{Repository, StoredResource, VERSION_COLUMNS, stored_from_row};

/// Most resources `_include` and `_revinclude` add to one page, so that a page stays a
/// bounded size; the rest are left out and [`SearchResults::included_truncated`] is set.
pub const MAX_INCLUDED: usize = 1000;

/// What a search may read, and where.
#[derive(Clone, Copy)]
pub struct SearchAccess<'a> {
    /// What the caller may search of each type: the searched type, and the types that
    /// chains and `_has` read.
    pub search: VisibilityFor<'a>,
    /// What the caller may read of each type: resources that `_include` and
    /// `_revinclude` add. Types it cannot read are left out.
    pub read: VisibilityFor<'a>,
    /// The id of the Patient whose compartment the search is confined to
    /// (`Patient/{id}/{type}`).
    pub compartment: Option<&'a str>,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    pub matches: Vec<StoredResource>,
    /// Resources added by `_include` and `_revinclude`, each once and none of them a
    /// match.
    pub included: Vec<StoredResource>,
    /// Whether `_include` or `_revinclude` found more than [`MAX_INCLUDED`] resources.
    pub included_truncated: bool,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

/// A match with its storage position.
pub(crate) struct Found {
    pub rid: i64,
    pub resource: StoredResource,
}

impl Repository {
    /// Returns up to `count` matches of `query` starting at its cursor, with the resources
    /// its `_include` and `_revinclude` add.
    pub fn search_page(
        &self,
        query: &SearchQuery,
        access: &SearchAccess<'_>,
        count: usize,
    ) -> Result<SearchResults> {
        let conn = self.pool.get()?;
        let (found, next) = page(&conn, query, access.search, count, |builder| {
            push_where(builder, query, access)
        })?;
        let (included, included_truncated) = include::collect(&conn, query, access, &found)?;
        Ok(SearchResults {
            matches: found.into_iter().map(|f| f.resource).collect(),
            included,
            included_truncated,
            next,
        })
    }

    /// Counts every match of `query`, whatever its cursor and `_count`.
    pub fn search_count(&self, query: &SearchQuery, access: &SearchAccess<'_>) -> Result<u64> {
        let conn = self.pool.get()?;
        count_matches(&conn, access.search, |builder| {
            push_where(builder, query, access)
        })
    }
}

#[cfg(test)]
impl Repository {
    /// Returns the lines of SQLite's query plan for a page of `query`.
    pub(crate) fn explain_page(
        &self,
        query: &SearchQuery,
        access: &SearchAccess<'_>,
    ) -> Vec<String> {
        let (builder, _) = page_statement(query, access.search, 10, |builder| {
            push_where(builder, query, access)
        })
        .unwrap();
        let conn = self.pool.get().unwrap();
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", builder.sql))
            .unwrap();
        statement
            .query_map(rusqlite::params_from_iter(builder.args), |row| row.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }
}

/// Counts the rows of `resources` that the `WHERE` clause from `push_where` selects.
pub(crate) fn count_matches<'v>(
    conn: &Connection,
    visibility: VisibilityFor<'v>,
    push_where: impl Fn(&mut SqlBuilder<'v>) -> Result<()>,
) -> Result<u64> {
    let mut builder = SqlBuilder::new(Some(visibility));
    builder.push("SELECT count(*) FROM resources r");
    push_where(&mut builder)?;
    let count: i64 = conn
        .prepare_cached(&builder.sql)?
        .query_row(rusqlite::params_from_iter(builder.args), |row| row.get(0))?;
    Ok(count as u64)
}

/// Appends the `WHERE` clause every match meets.
fn push_where(
    builder: &mut SqlBuilder<'_>,
    query: &SearchQuery,
    access: &SearchAccess<'_>,
) -> Result<()> {
    let resource_type = query.resource_type.as_str();
    let confined = (access.search)(resource_type).is_some_and(|v| v.confines_to_patient());
    builder.push(" WHERE ");
    plan::push_matching(
        builder,
        resource_type,
        "r",
        &query.filters,
        access.compartment,
        confined,
    )?;
    builder.visible(resource_type, "r")?;
    Ok(())
}

/// How one sort key orders rows.
enum SortExpression {
    /// A column or a column of a joined table, with no arguments.
    Column(String),
    /// A subquery per row, through the table's index by resource.
    PerResource {
        table: Table,
        column: &'static str,
        aggregate: &'static str,
        param: i64,
    },
}

/// Returns up to `count` rows that the `WHERE` clause from `push_where` selects, in the
/// order and from the cursor of `query`, and the cursor of the next page.
pub(crate) fn page<'v>(
    conn: &Connection,
    query: &SearchQuery,
    visibility: VisibilityFor<'v>,
    count: usize,
    push_where: impl Fn(&mut SqlBuilder<'v>) -> Result<()>,
) -> Result<(Vec<Found>, Option<Cursor>)> {
    let (builder, offset) = page_statement(query, visibility, count, push_where)?;
    let sorted = !query.sort.is_empty();
    let mut statement = conn.prepare_cached(&builder.sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(builder.args), |row| {
        Ok(Found {
            resource: stored_from_row(row)?,
            rid: row.get(6)?,
        })
    })?;
    let mut found = Vec::with_capacity(count.min(1024));
    let mut has_more = false;
    for row in rows {
        let row = row?;
        if found.len() == count {
            has_more = true;
            break;
        }
        found.push(row);
    }
    let next = match (
        has_more,
        sorted || matches!(query.cursor, Some(Cursor::Offset(_))),
    ) {
        (false, _) => None,
        (true, true) => Some(Cursor::Offset(offset + count)),
        (true, false) => found.last().map(|last| Cursor::After(last.rid)),
    };
    Ok((found, next))
}

/// Builds the statement of one page (with one row more than `count`, to tell whether
/// another page follows) and returns it with the page's offset.
pub(crate) fn page_statement<'v>(
    query: &SearchQuery,
    visibility: VisibilityFor<'v>,
    count: usize,
    push_where: impl Fn(&mut SqlBuilder<'v>) -> Result<()>,
) -> Result<(SqlBuilder<'v>, usize)> {
    let mut builder = SqlBuilder::new(Some(visibility));
    builder.push(&format!(
        "SELECT {VERSION_COLUMNS}, r.rid FROM resources r JOIN versions v ON v.vid = r.vid"
    ));
    let expressions: Vec<(SortExpression, bool)> = query
        .sort
        .iter()
        .map(|key| (sort_expression(&mut builder, key), key.descending))
        .collect();
    push_where(&mut builder)?;

    let sorted = !query.sort.is_empty();
    let offset = match query.cursor {
        Some(Cursor::After(after)) if !sorted => {
            builder.push(" AND r.rid > ");
            builder.arg(after);
            0
        }
        Some(Cursor::Offset(offset)) => offset,
        Some(Cursor::After(_)) | None => 0,
    };

    builder.push(" ORDER BY ");
    for (expression, descending) in &expressions {
        match expression {
            SortExpression::Column(column) => builder.push(column),
            SortExpression::PerResource {
                table,
                column,
                aggregate,
                param,
            } => {
                builder.push(&format!(
                    "(SELECT {aggregate}({column}) FROM {} WHERE rid = r.rid AND param = ",
                    table.name()
                ));
                builder.arg(*param);
                builder.push(")");
            }
        }
        let direction = if *descending { "DESC" } else { "ASC" };
        builder.push(&format!(" {direction} NULLS LAST, "));
    }
    builder.push("r.rid LIMIT ");
    builder.arg(count as i64 + 1);
    builder.push(" OFFSET ");
    builder.arg(offset as i64);
    Ok((builder, offset))
}

/// Returns how `key` orders rows, appending a join to `builder` when the key needs one.
/// Ascending keys compare a resource's smallest value and descending keys its largest,
/// and resources without a value come last either way.
fn sort_expression(builder: &mut SqlBuilder<'_>, key: &SortKey) -> SortExpression {
    let (table, param) = match key.field {
        SortField::Id => return SortExpression::Column("r.id".to_owned()),
        SortField::LastUpdated => return SortExpression::Column("r.last_updated".to_owned()),
        SortField::Param { table, param } => (table, param),
    };
    let aggregate = if key.descending { "max" } else { "min" };
    let column = match table {
        Table::Date if key.descending => "high",
        Table::Date => "low",
        Table::Token => "code",
        Table::Reference => {
            "CASE WHEN target_id = '' THEN url ELSE target_type || '/' || target_id END"
        }
        Table::String | Table::Number | Table::Quantity | Table::Uri | Table::Composite => "value",
    };
    if table.has_resource_index() {
        return SortExpression::PerResource {
            table,
            column,
            aggregate,
            param,
        };
    }
    // Without an index by resource, one pass over the parameter's rows is cheaper than a
    // scan of them per resource.
    let alias = builder.alias();
    builder.push(&format!(
        " LEFT JOIN (SELECT rid, {aggregate}({column}) AS sort_value FROM {} WHERE param = ",
        table.name()
    ));
    builder.arg(param);
    builder.push(&format!(" GROUP BY rid) {alias} ON {alias}.rid = r.rid"));
    SortExpression::Column(format!("{alias}.sort_value"))
}
