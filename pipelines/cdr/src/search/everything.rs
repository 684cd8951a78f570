//! `Patient/{id}/$everything`: the Patient, every resource in its compartment, and the
//! Practitioners, Organizations, Locations, Medications and Devices those refer to.
//!
//! Results come in groups, one per resource type in a fixed order (the Patient, the
//! compartment's types by name, then the referenced types), each in storage order, so a
//! cursor is a group and the `rid` of the last resource returned from it.

use std::fmt;
use std::str::FromStr;

use hearth_fhir_core::{resource_types, search_params};

use super::sql::{SqlBuilder, VisibilityFor};
use crate::Result;
use crate::params;
use crate::read::{Repository, StoredResource, VERSION_COLUMNS, stored_from_row};

/// Types outside the Patient compartment that `$everything` returns when a resource in the
/// compartment refers to them.
const REFERENCED_TYPES: &[&str] = &[
    "Device",
    "Location",
    "Medication",
    "Organization",
    "Practitioner",
    "PractitionerRole",
];

/// Where a `$everything` page starts: after resource `after` of group `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EverythingCursor {
    pub group: usize,
    pub after: i64,
}

impl fmt::Display for EverythingCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.group, self.after)
    }
}

impl FromStr for EverythingCursor {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (group, after) = text.split_once('.').ok_or(())?;
        Ok(EverythingCursor {
            group: group.parse().map_err(|_| ())?,
            after: after.parse().map_err(|_| ())?,
        })
    }
}

/// The parameters of a `$everything` request.
#[derive(Debug, Clone, Copy)]
pub struct EverythingRequest<'a> {
    pub patient: &'a str,
    /// `_since`: only resources last updated at or after this instant (microseconds since
    /// the Unix epoch).
    pub since: Option<i64>,
    /// `_type`: only resources of these types.
    pub types: Option<&'a [String]>,
}

/// One page of `$everything`.
#[derive(Debug, Clone, PartialEq)]
pub struct EverythingPage {
    pub resources: Vec<StoredResource>,
    pub next: Option<EverythingCursor>,
}

#[derive(Clone, Copy)]
enum Group {
    Patient,
    Compartment(&'static str),
    Referenced(&'static str),
}

impl Group {
    fn resource_type(self) -> &'static str {
        match self {
            Group::Patient => "Patient",
            Group::Compartment(resource_type) | Group::Referenced(resource_type) => resource_type,
        }
    }
}

/// Returns every group in result order.
fn groups() -> Vec<Group> {
    let mut groups = vec![Group::Patient];
    for resource_type in resource_types::all() {
        let in_compartment = !search_params::compartment_params(resource_type).is_empty();
        if in_compartment && resource_type != "Patient" {
            groups.push(Group::Compartment(resource_type.as_str()));
        }
    }
    groups.extend(REFERENCED_TYPES.iter().map(|t| Group::Referenced(t)));
    groups
}

impl Repository {
    /// Returns up to `count` resources of `$everything` from `cursor` on, each readable
    /// under `read`.
    pub fn everything_page(
        &self,
        request: &EverythingRequest<'_>,
        read: VisibilityFor<'_>,
        count: usize,
        cursor: Option<EverythingCursor>,
    ) -> Result<EverythingPage> {
        let conn = self.pool.get()?;
        let start = cursor.unwrap_or(EverythingCursor { group: 0, after: 0 });
        let mut resources = Vec::with_capacity(count.min(1024));
        for (index, group) in groups().into_iter().enumerate().skip(start.group) {
            if !wanted(request, group) {
                continue;
            }
            let after = if index == start.group { start.after } else { 0 };
            let room = count - resources.len();
            let mut builder = SqlBuilder::new(Some(read));
            builder.push(&format!(
                "SELECT {VERSION_COLUMNS}, r.rid FROM resources r JOIN versions v ON v.vid = r.vid"
            ));
            push_where(&mut builder, request, group)?;
            builder.push(" AND r.rid > ");
            builder.arg(after);
            builder.push(" ORDER BY r.rid LIMIT ");
            builder.arg(room as i64 + 1);

            let mut statement = conn.prepare_cached(&builder.sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(builder.args), |row| {
                Ok((stored_from_row(row)?, row.get::<_, i64>(6)?))
            })?;
            let mut last = after;
            for row in rows {
                let (resource, rid) = row?;
                if resources.len() == count {
                    let next = EverythingCursor {
                        group: index,
                        after: last,
                    };
                    return Ok(EverythingPage {
                        resources,
                        next: Some(next),
                    });
                }
                resources.push(resource);
                last = rid;
            }
        }
        Ok(EverythingPage {
            resources,
            next: None,
        })
    }

    /// Counts every resource of `$everything` readable under `read`.
    pub fn everything_count(
        &self,
        request: &EverythingRequest<'_>,
        read: VisibilityFor<'_>,
    ) -> Result<u64> {
        let conn = self.pool.get()?;
        let mut total = 0;
        for group in groups() {
            if !wanted(request, group) {
                continue;
            }
            let mut builder = SqlBuilder::new(Some(read));
            builder.push("SELECT count(*) FROM resources r");
            push_where(&mut builder, request, group)?;
            let count: i64 = conn
                .prepare_cached(&builder.sql)?
                .query_row(rusqlite::params_from_iter(builder.args), |row| row.get(0))?;
            total += count as u64;
        }
        Ok(total)
    }
}

fn wanted(request: &EverythingRequest<'_>, group: Group) -> bool {
    request
        .types
        .is_none_or(|types| types.iter().any(|t| t == group.resource_type()))
}

/// Appends the `WHERE` clause of one group.
fn push_where(
    builder: &mut SqlBuilder<'_>,
    request: &EverythingRequest<'_>,
    group: Group,
) -> Result<()> {
    let resource_type = group.resource_type();
    builder.push(" WHERE r.type = ");
    builder.arg(resource_type.to_owned());
    builder.push(" AND r.deleted = 0 AND ");
    match group {
        Group::Patient | Group::Compartment(_) => {
            builder.compartment(resource_type, "r", request.patient);
        }
        Group::Referenced(_) => {
            builder.push("r.id IN (SELECT target_id FROM idx_reference WHERE target_type = ");
            builder.arg(resource_type.to_owned());
            builder.push(" AND rid IN (SELECT rid FROM idx_reference WHERE param IN (");
            builder.push(&compartment_param_ids());
            builder.push(") AND target_type = 'Patient' AND target_id = ");
            builder.arg(request.patient.to_owned());
            builder.push("))");
        }
    }
    if let Some(since) = request.since {
        builder.push(" AND r.last_updated >= ");
        builder.arg(since);
    }
    builder.visible(resource_type, "r")?;
    Ok(())
}

/// Returns the ids of every parameter that puts a resource in a Patient's compartment,
/// joined for inlining in SQL.
fn compartment_param_ids() -> String {
    let mut ids = Vec::new();
    for resource_type in resource_types::all() {
        for code in search_params::compartment_params(resource_type) {
            if resource_type != "Patient"
                && let Some(id) = params::id(resource_type, code)
            {
                ids.push(id.to_string());
            }
        }
    }
    ids.join(", ")
}
