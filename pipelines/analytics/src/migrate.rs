//! The analytics schema: numbered SQL files under `infra/clickhouse/migrations`, embedded
//! in the binary and applied in order.
//!
//! `schema_migrations` records each applied file with a SHA-256 of its text, so applying
//! is idempotent and a file changed after it was applied is reported instead of being
//! applied again. Every statement uses `IF NOT EXISTS`, so a run that stopped halfway can
//! simply be repeated. A file whose header has a line
//! `-- min_server_version: MAJOR.MINOR` is applied only on servers of that version or
//! later, and is tried again after an upgrade; every other file must run on ClickHouse
//! 18.16, the version Debian 12 ships.

use sha2::{Digest, Sha256};

use crate::client::{ClickHouse, ServerVersion};
use crate::{Error, Result};

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number that starts the file name.
    pub version: u32,
    /// The file name, e.g. `0001_raw_tables.sql`.
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! embedded_migrations {
    ($($file:literal),+ $(,)?) => {
        &[$((
            $file,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/../../infra/clickhouse/migrations/", $file
            )),
        )),+]
    };
}

/// Every migration file, in order. A test fails when a file in the directory is missing
/// here.
static FILES: &[(&str, &str)] = embedded_migrations![
    "0001_raw_tables.sql",
    "0002_usage_hourly.sql",
    "0003_latency_hourly.sql",
    "0004_status_hourly.sql",
    "0005_usage_daily.sql",
    "0006_latency_daily.sql",
    "0007_latency_digest_hourly.sql",
    "0008_app_usage_hourly.sql",
    "0009_usage_hourly_by_app.sql",
    "0010_usage_presence.sql",
];

/// Returns the embedded migrations in order of their version.
pub fn migrations() -> Vec<Migration> {
    let mut migrations: Vec<Migration> = FILES
        .iter()
        .map(|(name, sql)| Migration {
            version: version_of(name),
            name,
            sql,
        })
        .collect();
    migrations.sort_by_key(|migration| migration.version);
    migrations
}

fn version_of(name: &str) -> u32 {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| unreachable!("a test checks that every file name starts with digits"))
}

impl Migration {
    /// The SHA-256 of the file's text, as lower-case hex.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The oldest server version the file runs on, from its `-- min_server_version:` line.
    pub fn min_server_version(&self) -> Option<ServerVersion> {
        self.sql.lines().find_map(|line| {
            let value = line.trim().strip_prefix("--")?.trim();
            ServerVersion::parse(value.strip_prefix("min_server_version:")?)
        })
    }

    /// The statements of the file: the text between semicolons that end a line, without
    /// comment lines.
    pub fn statements(&self) -> Vec<String> {
        let mut statements = Vec::new();
        let mut current = String::new();
        for line in self.sql.lines() {
            if line.trim_start().starts_with("--") {
                continue;
            }
            let trimmed = line.trim_end();
            match trimmed.strip_suffix(';') {
                Some(last) => {
                    current.push_str(last);
                    if !current.trim().is_empty() {
                        statements.push(current.trim().to_string());
                    }
                    current.clear();
                }
                None => {
                    current.push_str(trimmed);
                    current.push('\n');
                }
            }
        }
        if !current.trim().is_empty() {
            statements.push(current.trim().to_string());
        }
        statements
    }
}

/// What a run of [`migrate`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub server_version: Option<ServerVersion>,
    /// Files applied by this run.
    pub applied: Vec<String>,
    /// Files applied before this run.
    pub already_applied: Vec<String>,
    /// Files left out because the server is older than they need.
    pub skipped: Vec<String>,
}

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC'),
    hearth_version String
)
ENGINE = MergeTree()
ORDER BY version";

#[derive(clickhouse::Row, serde::Deserialize)]
struct AppliedRow {
    version: u32,
    name: String,
    checksum: String,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct RecordRow {
    version: u32,
    name: String,
    checksum: String,
    applied_at: u32,
    hearth_version: String,
}

/// Creates the database and applies every migration that is not applied yet.
pub async fn migrate(client: &ClickHouse) -> Result<MigrationReport> {
    client.create_database().await?;
    client.execute(CREATE_MIGRATIONS_TABLE).await?;
    let server_version = client.server_version().await?;
    let applied: Vec<AppliedRow> = client
        .fetch_all(
            "SELECT version, any(name), any(checksum) FROM schema_migrations GROUP BY version",
        )
        .await?;

    let mut report = MigrationReport {
        server_version: Some(server_version),
        ..MigrationReport::default()
    };
    for migration in migrations() {
        if let Some(row) = applied.iter().find(|row| row.version == migration.version) {
            if row.checksum != migration.checksum() {
                return Err(Error::Migration {
                    name: migration.name.to_string(),
                    reason: format!(
                        "the file changed after it was applied as {} (checksum {} in \
                         schema_migrations, {} now); restore the file and add a new \
                         migration for the change",
                        row.name,
                        row.checksum,
                        migration.checksum()
                    ),
                });
            }
            report.already_applied.push(migration.name.to_string());
            continue;
        }
        if let Some(required) = migration.min_server_version()
            && server_version < required
        {
            tracing::info!(migration = migration.name, %server_version, %required, "skipping a migration that needs a newer ClickHouse");
            report.skipped.push(migration.name.to_string());
            continue;
        }
        apply(client, &migration).await?;
        report.applied.push(migration.name.to_string());
    }
    Ok(report)
}

async fn apply(client: &ClickHouse, migration: &Migration) -> Result<()> {
    tracing::info!(
        migration = migration.name,
        database = client.database(),
        "applying a ClickHouse migration"
    );
    for statement in migration.statements() {
        client
            .execute(&statement)
            .await
            .map_err(|error| Error::Migration {
                name: migration.name.to_string(),
                reason: error.to_string(),
            })?;
    }
    let record = RecordRow {
        version: migration.version,
        name: migration.name.to_string(),
        checksum: migration.checksum(),
        applied_at: u32::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0),
        hearth_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    client.insert("schema_migrations", &[record]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_embedded() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/clickhouse/migrations"
        );
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = migrations().iter().map(|m| m.name.to_string()).collect();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn versions_are_unique_and_start_the_name() {
        let migrations = migrations();
        for pair in migrations.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "{} and {}",
                pair[0].name,
                pair[1].name
            );
        }
        for migration in &migrations {
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version))
            );
        }
    }

    #[test]
    fn statements_split_at_line_end_semicolons() {
        let migration = Migration {
            version: 1,
            name: "0001_x.sql",
            sql: "-- a comment; not a statement\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n-- min_server_version: 19.1\nSELECT 'a;b';\n",
        };
        assert_eq!(
            migration.statements(),
            vec![
                "CREATE TABLE a (x UInt8)\nENGINE = Memory".to_string(),
                "SELECT 'a;b'".to_string()
            ]
        );
        assert_eq!(migration.min_server_version(), ServerVersion::parse("19.1"));
    }

    #[test]
    fn shipped_migrations_run_on_18_16() {
        for migration in migrations() {
            assert_eq!(migration.min_server_version(), None, "{}", migration.name);
            assert!(!migration.statements().is_empty(), "{}", migration.name);
        }
    }
}
