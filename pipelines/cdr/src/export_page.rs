//! The page query of Bulk Data exports: current versions of one type in storage order,
//! narrowed by the caller's scopes, a patient's compartment and `_typeFilter` queries.
//!
//! Filters are parsed by [`crate::search::parse`] and become SQL through the search
//! engine's builder, so an export filter matches what the same FHIR search matches, and
//! chains and `_has` inside a filter see only what the caller may search.

use crate::Result;
use crate::body;
use crate::read::Repository;
use crate::search::{Filter, SearchAccess, SqlBuilder};

/// One resource of an export page, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    /// Storage position, the paging cursor.
    pub rid: i64,
    pub id: String,
    pub version: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    /// The current version's JSON with `id` and `meta` set.
    pub json: String,
}

/// How much one export page holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub rows: usize,
    /// Bytes of resource JSON; the page ends with the resource that reaches this.
    pub bytes: usize,
}

/// One page of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportPage {
    pub rows: Vec<ExportRow>,
    /// The cursor of the next page, when there may be one.
    pub next_after: Option<i64>,
}

impl Repository {
    /// Returns live resources of `resource_type` after the storage position `after`, in
    /// storage order, as many as `limit` allows. A resource is on the page when the caller may search it
    /// (`access.search`), it is in the compartment of `access.compartment` when one is set,
    /// and it matches every filter of at least one of `alternatives`; no alternatives
    /// match every resource.
    pub fn export_page(
        &self,
        resource_type: &str,
        alternatives: &[Vec<Filter>],
        access: &SearchAccess<'_>,
        limit: PageLimit,
        after: Option<i64>,
    ) -> Result<ExportPage> {
        let count = limit.rows.max(1);
        let mut builder = SqlBuilder::new(Some(access.search));
        builder.push(
            "SELECT r.rid, r.id, v.version, v.last_updated, v.body \
             FROM resources r JOIN versions v ON v.vid = r.vid WHERE r.type = ",
        );
        builder.arg(resource_type.to_owned());
        builder.push(" AND r.rid > ");
        builder.arg(after.unwrap_or(0));
        builder.push(" AND r.deleted = 0");
        if let Some(patient) = access.compartment {
            builder.push(" AND ");
            builder.compartment(resource_type, "r", patient);
        }
        push_alternatives(&mut builder, resource_type, alternatives)?;
        builder.visible(resource_type, "r")?;
        builder.push(" ORDER BY r.rid LIMIT ");
        builder.arg(count as i64);

        let mut page = Vec::with_capacity(count.min(4096));
        let mut read = 0;
        let mut bytes = 0;
        let mut last_rid = None;
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(&builder.sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(builder.args))?;
        while let Some(row) = rows.next()? {
            read += 1;
            let rid = row.get(0)?;
            last_rid = Some(rid);
            // A live resource always has a body; a row without one is skipped.
            let Some(body) = row
                .get_ref(4)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?
            else {
                continue;
            };
            let json = body::decompress(body)?;
            bytes += json.len();
            page.push(ExportRow {
                rid,
                id: row.get(1)?,
                version: row.get(2)?,
                last_updated: row.get(3)?,
                json,
            });
            if bytes >= limit.bytes {
                break;
            }
        }
        // A page cut short by its byte limit, or a full one, may be followed by more; the
        // next query finds out.
        let next_after = if read == count || bytes >= limit.bytes {
            last_rid
        } else {
            None
        };
        Ok(ExportPage {
            rows: page,
            next_after,
        })
    }
}

impl Repository {
    /// Returns the ids of the Patients whose compartment contains the resource at storage
    /// position `rid`, by the same compartment parameters as the export's compartment
    /// condition. A Patient is in its own compartment only, so `id` is its one patient.
    pub fn compartment_patients(
        &self,
        resource_type: &str,
        rid: i64,
        id: &str,
    ) -> Result<Vec<String>> {
        if resource_type == "Patient" {
            return Ok(vec![id.to_string()]);
        }
        let params: Vec<String> =
            hearth_fhir_core::search_params::compartment_params(resource_type)
                .iter()
                .filter_map(|code| crate::params::id(resource_type, code))
                .map(|param| param.to_string())
                .collect();
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT target_id FROM idx_reference \
             WHERE rid = ?1 AND param IN ({}) AND target_type = 'Patient' AND target_id <> ''",
            params.join(", ")
        );
        let conn = self.pool.get()?;
        let mut statement = conn.prepare_cached(&sql)?;
        let patients = statement
            .query_map([rid], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(patients)
    }
}

/// Appends ` AND ((a1 AND a2) OR (b1) ...)`, or nothing when there are no alternatives.
fn push_alternatives(
    builder: &mut SqlBuilder<'_>,
    resource_type: &str,
    alternatives: &[Vec<Filter>],
) -> Result<()> {
    if alternatives.is_empty() {
        return Ok(());
    }
    builder.push(" AND (");
    for (index, filters) in alternatives.iter().enumerate() {
        if index > 0 {
            builder.push(" OR ");
        }
        builder.push("(1");
        // Checks of the rows the walk in storage order reads, as scope restrictions are,
        // so that no filter becomes the set SQLite starts from.
        for filter in filters {
            builder.push(" AND ");
            builder.check(resource_type, "r", filter)?;
        }
        builder.push(")");
    }
    builder.push(")");
    Ok(())
}
