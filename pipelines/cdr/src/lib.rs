//! The clinical data repository: a SQLite projection of the `hearth.resources` topic.
//!
//! [`RepositoryProjection`] applies each `ResourceTransaction` event in log order, deciding
//! conditional creates, conditional updates and `If-Match` checks as it goes, so every
//! replica that replays the log reaches the same state and the same answers. A transaction
//! or load is applied all or nothing; a batch entry by entry. Reads go through
//! [`Repository`], which uses pooled read-only connections.

mod apply;
mod body;
mod criteria;
mod export_page;
mod history;
mod index_composite;
mod index_store;
mod outcome;
mod params;
mod prepare;
mod read;
pub mod schema;
pub mod search;
mod time_format;
mod visibility;
mod write;

pub use apply::RepositoryProjection;
pub use criteria::CriteriaError;
pub use export_page::{ExportPage, ExportRow, PageLimit};
pub use history::{HistoryPage, HistoryScope};
pub use outcome::{EntryOutcome, Rejection, TransactionOutcome};
pub use prepare::PreparedEvent;
pub use read::{Repository, SearchPage, StoredResource, VersionAction};
pub use time_format::{format_instant, parse_instant};
pub use visibility::{Alternative, Visibility};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Criteria(#[from] CriteriaError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
