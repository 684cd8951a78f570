//! FHIR R4 search over the repository's index tables.
//!
//! [`parse`] turns request parameters into a [`SearchQuery`]; [`Repository::search_page`]
//! and [`Repository::search_count`] run it. Every parameter of the R4 registry with an
//! expression is searchable, by type:
//!
//! - string: starts-with on the normalized value (`:exact`, `:contains`);
//! - token: `code`, `system|code`, `|code`, `system|` (`:not`, `:text`, `:of-type`);
//! - reference: `Type/id`, `id`, absolute URL (`:Type`, `:identifier`), chains and `_has`;
//! - date, number, quantity: the prefixes `eq ne gt lt ge le sa eb ap`;
//! - uri (`:below`, `:above`), composite (`a$b`), and `:missing` on every type.
//!
//! Paging: a search in storage order pages by the `rid` of the last match
//! ([`Cursor::After`]), so a page never repeats or skips a resource that existed when the
//! search started. A sorted search pages by offset ([`Cursor::Offset`]) and orders ties by
//! storage order, so the order is stable while the data does not change.

mod everything;
mod include;
mod parse;
mod plan;
mod query;
mod run;
mod sql;
mod system;
mod values;

#[cfg(test)]
mod tests;

pub use everything::{EverythingCursor, EverythingPage, EverythingRequest};
pub use parse::{PAGE_AFTER, PAGE_OFFSET, ParseOptions, now_micros, parse};
pub use query::*;
pub use run::{MAX_INCLUDED, SearchAccess, SearchResults};
pub use system::{SystemQuery, TYPE_PARAMETER, parse_system};
pub use values::ValueContext;

pub(crate) use parse::parse_filters;
pub(crate) use plan::push_matching;
pub(crate) use sql::SqlBuilder;

/// Why a search request cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A malformed value, or a parameter used in a way that can never work: 400 under any
    /// handling.
    #[error("{0}")]
    Invalid(String),
    /// An unknown parameter or an unsupported modifier: 400 under strict handling,
    /// otherwise ignored.
    #[error("{0}")]
    Unsupported(String),
}

impl SearchError {
    pub fn invalid(message: impl Into<String>) -> Self {
        SearchError::Invalid(message.into())
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        SearchError::Unsupported(message.into())
    }
}

impl From<SearchError> for crate::Error {
    fn from(error: SearchError) -> Self {
        crate::Error::Criteria(crate::CriteriaError::Invalid {
            criteria: "search".to_owned(),
            reason: error.to_string(),
        })
    }
}
