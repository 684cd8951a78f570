//! Usage analytics in ClickHouse.
//!
//! The [`sink`] reads `hearth.auth` and `hearth.api` as a consumer group and writes one
//! row per launch, authorization, token grant and API call into raw tables. Materialized
//! views keep hourly and daily rollups of them. The tables and views come from the numbered SQL
//! files under `infra/clickhouse/migrations`, which [`migrate`] applies. [`reports`]
//! holds the queries behind `hearth analytics report` and `GET /admin/analytics/...`.
//!
//! No token, secret or resource body reaches ClickHouse. User, patient, encounter and
//! launch identifiers are stored only as keyed hashes ([`pseudonym`]).

pub mod admin;
pub mod client;
pub mod config;
mod convert;
mod error;
pub mod migrate;
pub mod pseudonym;
pub mod reports;
pub mod rows;
pub mod sink;
mod sql;
mod watermark;

pub use client::ClickHouse;
pub use config::{ClickHouseArgs, ClickHouseConfig, ClickHouseFile};
pub use error::{Error, Result};
pub use sink::{SinkHandle, SinkOptions, SinkSummary};

/// Name of the consumer group the sink commits its log offsets under.
pub const CONSUMER_GROUP: &str = "hearth-analytics";
