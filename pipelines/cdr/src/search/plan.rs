//! The query plan of a search: SQLite finds the matches from the index rows of the most
//! selective filter, or by walking the resources of the type in storage order.
//!
//! Left to itself, SQLite's planner walks `resources` of the type in storage order for
//! every search with `ORDER BY r.rid`, because that order needs no sort, and it builds
//! the full set of every filter's matching index rows before the walk. A search for one
//! patient's Observations of one code since a date then reads every Observation and every
//! date of every Observation.
//!
//! Here the filter that is likely to match the fewest rows (the driver) is written as
//! `r.rid IN (...)`, and the type condition as `+r.type = ?`, so SQLite starts from the
//! driver's index rows. Every other filter becomes a check of the rows found (see
//! [`SqlBuilder::check`]). Without a driver, the walk in storage order stays, which suits
//! filters that match many rows: it stops after the page is full.

use super::SearchError;
use super::query::{Filter, Matcher, StringMode, UriMode};
use super::sql::SqlBuilder;

/// Appends the conditions every live match of `filters` meets on `alias`, a row of
/// `resources` of `resource_type`, without a leading `AND`. `compartment` confines the
/// matches to a Patient's compartment. `confined` is true when conditions appended after
/// these (scope restrictions) confine the matches to a patient's compartment, which SQLite
/// may then use to find them.
pub(crate) fn push_matching(
    builder: &mut SqlBuilder<'_>,
    resource_type: &str,
    alias: &str,
    filters: &[Filter],
    compartment: Option<&str>,
    confined: bool,
) -> Result<(), SearchError> {
    let driver = driver(filters);
    let walk = driver.is_none() && compartment.is_none() && !confined;
    push_conditions(
        builder,
        resource_type,
        alias,
        filters,
        compartment,
        driver,
        walk,
    )
}

/// Appends the conditions of one type's alternative in a search of several types, like
/// [`push_matching`]. With `use_driver`, the alternative's most selective filter is
/// written so that SQLite may find its rows with it. SQLite merges the rows of the
/// alternatives only when it can find the rows of each, so the caller sets it only when
/// every alternative has such a filter or a patient compartment. Otherwise every
/// condition checks the rows of a walk over all resources.
pub(crate) fn push_branch(
    builder: &mut SqlBuilder<'_>,
    resource_type: &str,
    alias: &str,
    filters: &[Filter],
    use_driver: bool,
) -> Result<(), SearchError> {
    let driver = if use_driver { driver(filters) } else { None };
    push_conditions(builder, resource_type, alias, filters, None, driver, false)
}

/// Returns whether one of `filters` is selective enough to find the matches with.
pub(crate) fn has_driver(filters: &[Filter]) -> bool {
    driver(filters).is_some()
}

/// Appends the driver (the filter at position `driver`), the compartment, the type, and
/// the other filters as checks. `walk` lets SQLite walk the type's index.
fn push_conditions(
    builder: &mut SqlBuilder<'_>,
    resource_type: &str,
    alias: &str,
    filters: &[Filter],
    compartment: Option<&str>,
    driver: Option<usize>,
    walk: bool,
) -> Result<(), SearchError> {
    if let Some(index) = driver {
        builder.filter(resource_type, alias, &filters[index])?;
        builder.push(" AND ");
    }
    if let Some(patient) = compartment {
        builder.compartment(resource_type, alias, patient);
        builder.push(" AND ");
    }
    // The unary `+` keeps SQLite from walking the type's index when something more
    // selective can find the rows.
    let plus = if walk { "" } else { "+" };
    builder.push(&format!("{plus}{alias}.type = "));
    builder.arg(resource_type.to_owned());
    builder.push(&format!(" AND {alias}.deleted = 0"));
    for (index, filter) in filters.iter().enumerate() {
        if Some(index) == driver {
            continue;
        }
        builder.push(" AND ");
        builder.check(resource_type, alias, filter)?;
    }
    Ok(())
}

/// Returns the position of the filter to find the matches with, if any filter is likely
/// to match few enough rows: the one with the lowest [`selectivity`], the first of equals.
fn driver(filters: &[Filter]) -> Option<usize> {
    filters
        .iter()
        .enumerate()
        .filter_map(|(index, filter)| selectivity(filter).map(|rank| (rank, index)))
        .min()
        .map(|(_, index)| index)
}

/// Ranks how few rows a filter is likely to match without looking at the data, lowest
/// first. Returns `None` for filters that should never find the rows.
///
/// Exact ids and references to one resource match a handful of rows. A coded value
/// matches more, and more still without its system (`status=final`). Filters on a table
/// without an index by resource (number, quantity, uri, composite) and chains are ranked
/// next: their set of rows is built in full even as a check, so starting from it costs
/// nothing extra. Dates, prefixes of strings, negations and `:missing` match large parts
/// of a type and are checked row by row instead.
// NOTE: the rank comes from the kind of filter, not from statistics of the data, so a
// code that most resources carry (`category=vital-signs`) can still be chosen.
fn selectivity(filter: &Filter) -> Option<u8> {
    match filter {
        Filter::Id(_) => Some(0),
        Filter::Param {
            negated: false,
            matcher,
            ..
        } => matcher_selectivity(matcher),
        Filter::Param { negated: true, .. } => None,
        Filter::Missing { table, missing, .. } => {
            (!missing && !table.has_resource_index()).then_some(4)
        }
        Filter::Chain { .. } | Filter::Has { .. } => Some(4),
        Filter::Any(_) => None,
    }
}

fn matcher_selectivity(matcher: &Matcher) -> Option<u8> {
    let rank = match matcher {
        Matcher::Reference(values) => {
            if values.iter().all(|v| v.id.is_some() || v.url.is_some()) {
                1
            } else {
                return None;
            }
        }
        Matcher::Token(values) | Matcher::ReferenceIdentifier(values) => {
            if values
                .iter()
                .all(|v| v.system.is_some() && v.code.is_some())
            {
                2
            } else if values.iter().all(|v| v.code.is_some()) {
                3
            } else {
                return None;
            }
        }
        Matcher::String(StringMode::Exact, _) => 2,
        Matcher::Uri(UriMode::Exact, _) => 2,
        Matcher::String(StringMode::StartsWith, values) => {
            // One or two letters start a large share of all names.
            if values.iter().all(|v| v.chars().count() >= 3) {
                5
            } else {
                return None;
            }
        }
        Matcher::String(StringMode::Contains, _) | Matcher::TokenText(_) | Matcher::Date(_) => {
            return None;
        }
        Matcher::OfType(_)
        | Matcher::Number(_)
        | Matcher::Quantity(_)
        | Matcher::Uri(..)
        | Matcher::Composite(_) => 4,
    };
    Some(rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::{DateValue, Prefix, ReferenceValue, TokenValue};
    use hearth_fhir_core::datetime::DateRange;

    fn token(system: Option<&str>, code: Option<&str>) -> Filter {
        Filter::Param {
            param: 1,
            matcher: Matcher::Token(vec![TokenValue {
                system: system.map(str::to_owned),
                code: code.map(str::to_owned),
            }]),
            negated: false,
        }
    }

    fn reference(id: &str) -> Filter {
        Filter::Param {
            param: 2,
            matcher: Matcher::Reference(vec![ReferenceValue {
                target_type: Some("Patient".to_owned()),
                id: Some(id.to_owned()),
                url: None,
            }]),
            negated: false,
        }
    }

    fn date() -> Filter {
        Filter::Param {
            param: 3,
            matcher: Matcher::Date(vec![DateValue {
                prefix: Prefix::Ge,
                range: DateRange { low: 0, high: 1 },
            }]),
            negated: false,
        }
    }

    #[test]
    fn reference_drives_before_code_and_date() {
        let filters = [
            token(Some("http://loinc.org"), Some("1")),
            date(),
            reference("p"),
        ];
        assert_eq!(driver(&filters), Some(2));
    }

    #[test]
    fn coded_token_drives_before_bare_code() {
        let filters = [token(None, Some("final")), token(Some("s"), Some("1"))];
        assert_eq!(driver(&filters), Some(1));
    }

    #[test]
    fn dates_and_negations_never_drive() {
        let mut negated = token(Some("s"), Some("1"));
        if let Filter::Param { negated: flag, .. } = &mut negated {
            *flag = true;
        }
        assert_eq!(driver(&[date(), negated, token(Some("s"), None)]), None);
    }

    #[test]
    fn walk_without_driver_uses_type_index() {
        let mut builder = SqlBuilder::new(None);
        push_matching(&mut builder, "Observation", "r", &[date()], None, false).unwrap();
        assert!(builder.sql.starts_with("r.type = ?"), "{}", builder.sql);
        assert!(
            builder
                .sql
                .contains("EXISTS (SELECT 1 FROM idx_date WHERE rid = r.rid")
        );
    }

    #[test]
    fn driver_comes_first_and_type_is_not_indexed() {
        let mut builder = SqlBuilder::new(None);
        let filters = [date(), reference("p")];
        push_matching(&mut builder, "Observation", "r", &filters, None, false).unwrap();
        assert!(
            builder
                .sql
                .starts_with("r.rid IN (SELECT rid FROM idx_reference"),
            "{}",
            builder.sql
        );
        assert!(builder.sql.contains("+r.type = ?"), "{}", builder.sql);
    }
}
