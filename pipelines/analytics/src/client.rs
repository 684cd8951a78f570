//! A ClickHouse client for the analytics database, over HTTP.
//!
//! Every statement goes through [`clickhouse::Client::query_raw`], so `?` in SQL text is
//! sent as is. Validation is off: validated inserts use RowBinaryWithNamesAndTypes and
//! send settings that ClickHouse 18.16 rejects. A row struct that does not match its
//! table therefore fails only as a decode or parse error, and a test compares every row
//! struct with `DESCRIBE TABLE`.

use std::time::Duration;

use clickhouse::{Row, RowOwned, RowRead, RowWrite};

use crate::{ClickHouseConfig, Error, Result};

/// Time a query may take before the client gives up. Reports over large ranges are the
/// slowest statements.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Time the server may take to acknowledge an insert after receiving all its rows,
/// materialized views included.
const INSERT_TIMEOUT: Duration = Duration::from_secs(120);

/// A server version, as `version()` returns it, e.g. 18.16.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `MAJOR.MINOR[.PATCH[.BUILD]]`.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let mut parts = text.trim().split('.').map(|part| part.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(ServerVersion {
            major,
            minor,
            patch,
        })
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A client bound to the analytics database.
#[derive(Clone)]
pub struct ClickHouse {
    /// Sends `database=<name>` with every request.
    client: clickhouse::Client,
    /// Sends no database, for statements that must work before the database exists.
    server: clickhouse::Client,
    database: String,
    url: String,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("url", &self.url)
            .field("database", &self.database)
            .finish()
    }
}

impl ClickHouse {
    pub fn new(config: &ClickHouseConfig) -> ClickHouse {
        let mut server = clickhouse::Client::default()
            .with_url(&config.url)
            .with_validation(false);
        if let Some(user) = &config.user {
            server = server.with_user(user);
        }
        if let Some(password) = &config.password {
            server = server.with_password(password);
        }
        ClickHouse {
            client: server.clone().with_database(&config.database),
            server,
            database: config.database.clone(),
            url: config.url.clone(),
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates the analytics database unless it exists.
    pub async fn create_database(&self) -> Result<()> {
        let sql = format!("CREATE DATABASE IF NOT EXISTS {}", self.database);
        timed(self.server.query_raw(&sql).execute()).await
    }

    /// Drops the analytics database and everything in it. Tests use this to clean up.
    pub async fn drop_database(&self) -> Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.database);
        timed(self.server.query_raw(&sql).execute()).await
    }

    /// Returns the server's version.
    pub async fn server_version(&self) -> Result<ServerVersion> {
        #[derive(Row, serde::Deserialize)]
        struct Version {
            version: String,
        }
        let rows: Vec<Version> =
            timed(self.server.query_raw("SELECT version()").fetch_all()).await?;
        let text = rows.first().map(|row| row.version.as_str()).unwrap_or("");
        ServerVersion::parse(text).ok_or_else(|| {
            Error::ClickHouse(clickhouse::error::Error::BadResponse(format!(
                "unexpected server version '{text}'"
            )))
        })
    }

    /// Runs a statement that returns no rows, such as DDL.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        timed(self.client.query_raw(sql).execute()).await
    }

    /// Runs a query and decodes its rows from RowBinary.
    pub async fn fetch_all<T>(&self, sql: &str) -> Result<Vec<T>>
    where
        T: RowOwned + RowRead,
    {
        timed(self.client.query_raw(sql).fetch_all()).await
    }

    /// Runs a query and returns its output in `format`, e.g. `JSONEachRow` or
    /// `CSVWithNames`.
    pub async fn fetch_bytes(&self, sql: &str, format: &str) -> Result<Vec<u8>> {
        let query = self
            .client
            .query_raw(sql)
            .with_setting("output_format_json_quote_64bit_integers", "0");
        timed(async move {
            query
                .fetch_bytes(format)?
                .collect()
                .await
                .map(|b| b.to_vec())
        })
        .await
    }

    /// Inserts `rows` into `table` in one INSERT statement, so they form one part per
    /// partition of the table.
    pub async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<()>
    where
        T: RowOwned + RowWrite,
    {
        let mut insert = self
            .client
            .insert::<T>(table)
            .await?
            .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

async fn timed<T>(future: impl Future<Output = clickhouse::error::Result<T>>) -> Result<T> {
    match tokio::time::timeout(QUERY_TIMEOUT, future).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::ClickHouse(clickhouse::error::Error::TimedOut)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let old = ServerVersion::parse("18.16.1").unwrap();
        let new = ServerVersion::parse("24.8.4.13").unwrap();
        assert_eq!(old.to_string(), "18.16.1");
        assert!(old < new);
        assert_eq!(ServerVersion::parse("19.1").unwrap().patch, 0);
        assert!(ServerVersion::parse("v18").is_none());
    }
}
