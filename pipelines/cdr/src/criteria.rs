//! Search criteria of conditional creates, updates, deletes and references.
//!
//! Criteria are a query string such as `identifier=http://hl7.org/fhir/sid/us-npi|123`,
//! matched by the search engine in [`crate::search`] with strict handling: every parameter,
//! modifier and prefix that search supports works here, and an unknown one is an error.

use percent_encoding::percent_decode_str;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::search::{SqlBuilder, parse_filters, push_matching};

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
    let (matching, args) = build_filter(resource_type, &pairs)?;
    let sql = format!(
        "SELECT r.id, r.version FROM resources r WHERE {matching} ORDER BY r.rid LIMIT {limit}"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Splits a query string into decoded (name, raw value) pairs; values stay encoded, as
/// search takes them.
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

/// Builds the conditions that a live resource `r` (a row of `resources`) of
/// `resource_type` meets when it matches (name, encoded value) pairs: pairs are ANDed,
/// comma-separated values ORed. The text starts with the condition SQLite should find the
/// rows with (see [`crate::search::push_matching`]) and has no leading `AND`.
pub fn build_filter(
    resource_type: &str,
    pairs: &[(String, String)],
) -> Result<(String, Vec<SqlValue>), CriteriaError> {
    let invalid = |reason: String| CriteriaError::Invalid {
        criteria: pairs
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&"),
        reason,
    };
    let filters = parse_filters(resource_type, pairs).map_err(|e| invalid(e.to_string()))?;
    let mut builder = SqlBuilder::new(None);
    push_matching(&mut builder, resource_type, "r", &filters, None, false)
        .map_err(|e| invalid(e.to_string()))?;
    Ok((builder.sql, builder.args))
}

fn decode(text: &str) -> Result<String, String> {
    let text = text.replace('+', " ");
    percent_decode_str(&text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("'{text}' is not valid percent-encoded UTF-8"))
}
