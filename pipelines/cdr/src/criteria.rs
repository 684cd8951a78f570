//! Search criteria of conditional creates, updates, deletes and references.
//!
//! Criteria are a query string such as `identifier=http://hl7.org/fhir/sid/us-npi|123`.
//! Parameters are ANDed and comma-separated values ORed. Supported here: `_id`, and
//! token, reference, string and uri parameters without modifiers, which covers what
//! conditional writes use in practice (identifiers and references).
// NOTE: date, number and quantity parameters and modifiers are rejected in criteria.

use hearth_fhir_core::index::normalize as normalize_string;
use hearth_fhir_core::search_params::{self, ParamType};
use percent_encoding::percent_decode_str;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::params;

#[derive(Debug, thiserror::Error)]
pub enum CriteriaError {
    #[error("invalid search criteria '{criteria}': {reason}")]
    Invalid { criteria: String, reason: String },
    #[error("repository query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Returns up to `limit` live resources of `resource_type` that match `criteria`, as
/// (id, version) pairs ordered by storage order.
pub fn find(
    conn: &Connection,
    resource_type: &str,
    criteria: &str,
    limit: usize,
) -> Result<Vec<(String, i64)>, CriteriaError> {
    let pairs = parse_query(criteria)?;
    if pairs.is_empty() {
        return Err(CriteriaError::Invalid {
            criteria: criteria.to_string(),
            reason: "no search parameters".to_string(),
        });
    }
    let (filter, args) = build_filter(resource_type, &pairs)?;
    let sql = format!(
        "SELECT r.id, r.version FROM resources r WHERE r.type = ? AND r.deleted = 0{filter} ORDER BY r.rid LIMIT {limit}"
    );
    let mut all_args = vec![SqlValue::Text(resource_type.to_string())];
    all_args.extend(args);
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(all_args), |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Splits a query string into decoded (name, raw value) pairs; values stay encoded so
/// that commas inside values can be told from separators.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, CriteriaError> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| CriteriaError::Invalid {
            criteria: query.to_string(),
            reason: format!("'{pair}' has no value"),
        })?;
        let name = decode(name).map_err(|reason| CriteriaError::Invalid {
            criteria: query.to_string(),
            reason,
        })?;
        pairs.push((name, value.to_string()));
    }
    Ok(pairs)
}

/// Most search parameters in one search. SQLite limits the depth of one expression, so a
/// search must stay well below it.
pub const MAX_PARAMETERS: usize = 50;
/// Most comma-separated values of one parameter.
pub const MAX_VALUES: usize = 100;

/// Builds ` AND (...)` conditions on `r.rid` / `r.id` for (name, encoded value) pairs:
/// pairs are ANDed, comma-separated values ORed.
pub fn build_filter(
    resource_type: &str,
    pairs: &[(String, String)],
) -> Result<(String, Vec<SqlValue>), CriteriaError> {
    let mut sql = String::new();
    let mut args = Vec::new();
    if pairs.len() > MAX_PARAMETERS {
        return Err(CriteriaError::Invalid {
            criteria: format!("{} parameters", pairs.len()),
            reason: format!("a search takes at most {MAX_PARAMETERS} parameters"),
        });
    }
    for (name, value) in pairs {
        if value.split(',').count() > MAX_VALUES {
            return Err(CriteriaError::Invalid {
                criteria: name.clone(),
                reason: format!("a parameter takes at most {MAX_VALUES} comma-separated values"),
            });
        }
        let invalid = |reason: String| CriteriaError::Invalid {
            criteria: format!("{name}={value}"),
            reason,
        };
        if name.contains(':') {
            return Err(invalid(format!(
                "the modifier in '{name}' is not supported"
            )));
        }
        let mut alternatives = Vec::new();
        for raw in value.split(',') {
            let value = decode(raw).map_err(&invalid)?;
            let (clause, clause_args) =
                value_clause(resource_type, name, &value).map_err(&invalid)?;
            alternatives.push(clause);
            args.extend(clause_args);
        }
        sql.push_str(" AND (");
        sql.push_str(&alternatives.join(" OR "));
        sql.push(')');
    }
    Ok((sql, args))
}

fn decode(text: &str) -> Result<String, String> {
    let text = text.replace('+', " ");
    percent_decode_str(&text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("'{text}' is not valid percent-encoded UTF-8"))
}

/// One SQL condition on `r.rid` for one value of one parameter.
fn value_clause(
    resource_type: &str,
    name: &str,
    value: &str,
) -> Result<(String, Vec<SqlValue>), String> {
    let text = |s: &str| SqlValue::Text(s.to_string());
    if name == "_id" {
        return Ok(("r.id = ?".to_string(), vec![text(value)]));
    }
    let param = search_params::get(resource_type, name)
        .ok_or_else(|| format!("{resource_type} has no search parameter '{name}'"))?;
    let param_id = SqlValue::Integer(
        params::id(resource_type, name)
            .ok_or_else(|| format!("{resource_type} has no search parameter '{name}'"))?,
    );
    match param.param_type {
        ParamType::Token => match value.split_once('|') {
            Some((system, "")) => Ok((
                "r.rid IN (SELECT rid FROM idx_token WHERE param = ? AND system = ?)".to_string(),
                vec![param_id.clone(), text(system)],
            )),
            Some((system, code)) => Ok((
                "r.rid IN (SELECT rid FROM idx_token WHERE param = ? AND code = ? AND system = ?)"
                    .to_string(),
                vec![param_id.clone(), text(code), text(system)],
            )),
            None => Ok((
                "r.rid IN (SELECT rid FROM idx_token WHERE param = ? AND code = ?)".to_string(),
                vec![param_id.clone(), text(value)],
            )),
        },
        ParamType::Reference => {
            let mut parts = value.rsplitn(2, '/');
            let id = parts.next().unwrap_or_default();
            match parts.next() {
                Some(target_type) if !target_type.contains(':') => Ok((
                    "r.rid IN (SELECT rid FROM idx_reference WHERE param = ? AND target_id = ? AND target_type = ?)"
                        .to_string(),
                    vec![param_id.clone(), text(id), text(target_type)],
                )),
                Some(_) => Ok((
                    "r.rid IN (SELECT rid FROM idx_reference WHERE param = ? AND url = ?)".to_string(),
                    vec![param_id.clone(), text(value)],
                )),
                None => Ok((
                    "r.rid IN (SELECT rid FROM idx_reference WHERE param = ? AND target_id = ?)".to_string(),
                    vec![param_id.clone(), text(id)],
                )),
            }
        }
        ParamType::String => {
            let normalized = normalize_string(value);
            let upper = format!("{normalized}\u{10FFFF}");
            Ok((
                "r.rid IN (SELECT rid FROM idx_string WHERE param = ? AND value >= ? AND value < ?)"
                    .to_string(),
                vec![param_id.clone(), text(&normalized), text(&upper)],
            ))
        }
        ParamType::Uri => Ok((
            "r.rid IN (SELECT rid FROM idx_uri WHERE param = ? AND value = ?)".to_string(),
            vec![param_id.clone(), text(value)],
        )),
        other => Err(format!(
            "parameter '{name}' is of type {other:?}, which conditional criteria do not support"
        )),
    }
}
