//! Row structs of the raw tables, in the column order of `0001_raw_tables.sql`.
//!
//! Timestamps are seconds since the Unix epoch (ClickHouse `DateTime('UTC')`), enums are
//! the `Enum8` numbers of [`codes`], and missing values are `""` or 0. Each struct's
//! `COLUMNS` lists the ClickHouse name and type of every field; a test compares it with
//! `DESCRIBE TABLE` on a real server, because RowBinary without validation cannot detect
//! a mismatch by itself.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// A raw table that the sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Launches,
    Authorizations,
    TokenGrants,
    ApiCalls,
    Sites,
    Apps,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Launches,
        Table::Authorizations,
        Table::TokenGrants,
        Table::ApiCalls,
        Table::Sites,
        Table::Apps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Launches => "launches",
            Table::Authorizations => "authorizations",
            Table::TokenGrants => "token_grants",
            Table::ApiCalls => "api_calls",
            Table::Sites => "sites",
            Table::Apps => "apps",
        }
    }

    /// Whether the table is partitioned by `toYYYYMM(occurred_at)`. The dimension tables
    /// have one partition.
    pub fn partitioned_by_month(self) -> bool {
        !matches!(self, Table::Sites | Table::Apps)
    }
}

/// A row of a raw table, with what the sink needs to place and deduplicate it.
pub trait AnalyticsRow: clickhouse::RowOwned + clickhouse::RowWrite + Send + Sync {
    const TABLE: Table;
    /// ClickHouse name and type of each column, in field order.
    const COLUMNS: &'static [(&'static str, &'static str)];

    fn occurred_at(&self) -> u32;
    fn log_partition(&self) -> u32;
    fn log_offset(&self) -> u64;

    /// The table partition the row lands in: `toYYYYMM(occurred_at)` for tables
    /// partitioned by month, else 0.
    fn month(&self) -> u32 {
        if Self::TABLE.partitioned_by_month() {
            year_month(self.occurred_at())
        } else {
            0
        }
    }
}

/// `toYYYYMM` of a `DateTime('UTC')` value.
pub fn year_month(seconds: u32) -> u32 {
    let date = time::OffsetDateTime::from_unix_timestamp(i64::from(seconds))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    u32::try_from(date.year()).unwrap_or(0) * 100 + u32::from(u8::from(date.month()))
}

/// Converts microseconds since the epoch to `DateTime` seconds, clamped to its range
/// (1970 to 2106).
pub fn seconds(micros: i64) -> u32 {
    u32::try_from(micros.div_euclid(1_000_000).max(0)).unwrap_or(u32::MAX)
}

macro_rules! analytics_row {
    ($row:ident, $table:expr, [$(($column:literal, $type:literal)),+ $(,)?]) => {
        impl AnalyticsRow for $row {
            const TABLE: Table = $table;
            const COLUMNS: &'static [(&'static str, &'static str)] = &[$(($column, $type)),+];

            fn occurred_at(&self) -> u32 {
                self.occurred_at
            }

            fn log_partition(&self) -> u32 {
                self.log_partition
            }

            fn log_offset(&self) -> u64 {
                self.log_offset
            }
        }
    };
}

/// An EHR launch context (`LaunchCreated`).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct LaunchRow {
    pub occurred_at: u32,
    pub log_partition: u32,
    pub log_offset: u64,
    pub event_id: String,
    pub site_id: String,
    pub client_id: String,
    pub launch_hash: u64,
    pub user_hash: u64,
    pub patient_hash: u64,
    pub encounter_hash: u64,
    pub intent: String,
    pub expires_at: u32,
}

analytics_row!(
    LaunchRow,
    Table::Launches,
    [
        ("occurred_at", "DateTime('UTC')"),
        ("log_partition", "UInt32"),
        ("log_offset", "UInt64"),
        ("event_id", "String"),
        ("site_id", "String"),
        ("client_id", "String"),
        ("launch_hash", "UInt64"),
        ("user_hash", "UInt64"),
        ("patient_hash", "UInt64"),
        ("encounter_hash", "UInt64"),
        ("intent", "String"),
        ("expires_at", "DateTime('UTC')"),
    ]
);

/// An authorization request that was granted or denied.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AuthorizationRow {
    pub occurred_at: u32,
    pub log_partition: u32,
    pub log_offset: u64,
    pub event_id: String,
    pub outcome: i8,
    pub site_id: String,
    pub client_id: String,
    pub grant_id: String,
    pub user_type: i8,
    pub user_hash: u64,
    pub patient_hash: u64,
    pub launch_type: i8,
    pub launch_hash: u64,
    pub scope_requested: String,
    pub scope_granted: String,
    pub refresh_policy: i8,
    pub error: String,
    pub error_description: String,
}

analytics_row!(
    AuthorizationRow,
    Table::Authorizations,
    [
        ("occurred_at", "DateTime('UTC')"),
        ("log_partition", "UInt32"),
        ("log_offset", "UInt64"),
        ("event_id", "String"),
        ("outcome", "Enum8('GRANTED' = 1, 'DENIED' = 2)"),
        ("site_id", "String"),
        ("client_id", "String"),
        ("grant_id", "String"),
        (
            "user_type",
            "Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5)"
        ),
        ("user_hash", "UInt64"),
        ("patient_hash", "UInt64"),
        ("launch_type", "Enum8('STANDALONE' = 1, 'EHR' = 2)"),
        ("launch_hash", "UInt64"),
        ("scope_requested", "String"),
        ("scope_granted", "String"),
        (
            "refresh_policy",
            "Enum8('' = 0, 'NONE' = 1, 'OFFLINE' = 2, 'ONLINE' = 3)"
        ),
        ("error", "String"),
        ("error_description", "String"),
    ]
);

/// An access token issued by the token endpoint, for any grant type.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct TokenGrantRow {
    pub occurred_at: u32,
    pub log_partition: u32,
    pub log_offset: u64,
    pub event_id: String,
    pub site_id: String,
    pub client_id: String,
    pub grant_id: String,
    pub grant_type: i8,
    pub scope: String,
    pub user_type: i8,
    pub user_hash: u64,
    pub patient_hash: u64,
    pub refresh_token_issued: u8,
    pub id_token_issued: u8,
    pub expires_at: u32,
}

analytics_row!(
    TokenGrantRow,
    Table::TokenGrants,
    [
        ("occurred_at", "DateTime('UTC')"),
        ("log_partition", "UInt32"),
        ("log_offset", "UInt64"),
        ("event_id", "String"),
        ("site_id", "String"),
        ("client_id", "String"),
        ("grant_id", "String"),
        (
            "grant_type",
            "Enum8('AUTHORIZATION_CODE' = 1, 'REFRESH_TOKEN' = 2, 'CLIENT_CREDENTIALS' = 3)"
        ),
        ("scope", "String"),
        (
            "user_type",
            "Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5)"
        ),
        ("user_hash", "UInt64"),
        ("patient_hash", "UInt64"),
        ("refresh_token_issued", "UInt8"),
        ("id_token_issued", "UInt8"),
        ("expires_at", "DateTime('UTC')"),
    ]
);

/// One HTTP request (`ApiCall`).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ApiCallRow {
    pub occurred_at: u32,
    pub log_partition: u32,
    pub log_offset: u64,
    pub site_id: String,
    pub backing: i8,
    pub surface: i8,
    pub method: String,
    pub route: String,
    pub interaction: String,
    pub operation: String,
    pub resource_type: String,
    pub status: u16,
    pub error_code: String,
    pub latency_us: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub cache: i8,
    pub upstream_status: u16,
    pub upstream_latency_us: u64,
    pub client_id: String,
    pub grant_id: String,
    pub user_type: i8,
    pub user_hash: u64,
    pub patient_hash: u64,
}

analytics_row!(
    ApiCallRow,
    Table::ApiCalls,
    [
        ("occurred_at", "DateTime('UTC')"),
        ("log_partition", "UInt32"),
        ("log_offset", "UInt64"),
        ("site_id", "String"),
        ("backing", "Enum8('' = 0, 'REPOSITORY' = 1, 'EHR' = 2)"),
        (
            "surface",
            "Enum8('FHIR' = 1, 'AUTH' = 2, 'ADMIN' = 3, 'BULK' = 4, 'CONSOLE' = 5)"
        ),
        ("method", "String"),
        ("route", "String"),
        ("interaction", "String"),
        ("operation", "String"),
        ("resource_type", "String"),
        ("status", "UInt16"),
        ("error_code", "String"),
        ("latency_us", "UInt64"),
        ("request_bytes", "UInt64"),
        ("response_bytes", "UInt64"),
        (
            "cache",
            "Enum8('' = 0, 'HIT' = 1, 'MISS' = 2, 'BYPASS' = 3)"
        ),
        ("upstream_status", "UInt16"),
        ("upstream_latency_us", "UInt64"),
        ("client_id", "String"),
        ("grant_id", "String"),
        (
            "user_type",
            "Enum8('' = 0, 'PATIENT' = 1, 'PRACTITIONER' = 2, 'RELATED_PERSON' = 3, 'SYSTEM' = 4, 'OTHER' = 5)"
        ),
        ("user_hash", "UInt64"),
        ("patient_hash", "UInt64"),
    ]
);

/// A site's registration or update.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct SiteRow {
    pub occurred_at: u32,
    pub log_partition: u32,
    pub log_offset: u64,
    pub site_id: String,
    pub name: String,
    pub backing: i8,
    pub fhir_base_path: String,
}

analytics_row!(
    SiteRow,
    Table::Sites,
    [
        ("occurred_at", "DateTime('UTC')"),
        ("log_partition", "UInt32"),
        ("log_offset", "UInt64"),
        ("site_id", "String"),
        ("name", "String"),
        ("backing", "Enum8('REPOSITORY' = 1, 'EHR' = 2)"),
        ("fhir_base_path", "String"),
    ]
);

/// An app's registration or update.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AppRow {
    pub occurred_at: u32,
    pub log_partition: u32,
    pub log_offset: u64,
    pub client_id: String,
    pub name: String,
    pub vendor: String,
    pub client_type: i8,
}

analytics_row!(
    AppRow,
    Table::Apps,
    [
        ("occurred_at", "DateTime('UTC')"),
        ("log_partition", "UInt32"),
        ("log_offset", "UInt64"),
        ("client_id", "String"),
        ("name", "String"),
        ("vendor", "String"),
        (
            "client_type",
            "Enum8('PUBLIC' = 1, 'CONFIDENTIAL_SYMMETRIC' = 2, 'CONFIDENTIAL_ASYMMETRIC' = 3)"
        ),
    ]
);

/// The `Enum8` numbers of the raw tables' enum columns.
pub mod codes {
    use hearth_schemas::{
        Backing, CacheStatus, ClientType, GrantType, RefreshPolicy, Surface, UserType,
    };

    pub const GRANTED: i8 = 1;
    pub const DENIED: i8 = 2;
    pub const STANDALONE: i8 = 1;
    pub const EHR_LAUNCH: i8 = 2;

    pub fn user_type(user_type: Option<UserType>) -> i8 {
        match user_type {
            None => 0,
            Some(UserType::Patient) => 1,
            Some(UserType::Practitioner) => 2,
            Some(UserType::RelatedPerson) => 3,
            Some(UserType::System) => 4,
            Some(UserType::Other) => 5,
        }
    }

    pub fn backing(backing: Option<Backing>) -> i8 {
        match backing {
            None => 0,
            Some(Backing::Repository) => 1,
            Some(Backing::Ehr) => 2,
        }
    }

    pub fn surface(surface: Surface) -> i8 {
        match surface {
            Surface::Fhir => 1,
            Surface::Auth => 2,
            Surface::Admin => 3,
            Surface::Bulk => 4,
            Surface::Console => 5,
        }
    }

    pub fn cache(cache: Option<CacheStatus>) -> i8 {
        match cache {
            None => 0,
            Some(CacheStatus::Hit) => 1,
            Some(CacheStatus::Miss) => 2,
            Some(CacheStatus::Bypass) => 3,
        }
    }

    pub fn grant_type(grant_type: GrantType) -> i8 {
        match grant_type {
            GrantType::AuthorizationCode => 1,
            GrantType::RefreshToken => 2,
            GrantType::ClientCredentials => 3,
        }
    }

    pub fn refresh_policy(policy: RefreshPolicy) -> i8 {
        match policy {
            RefreshPolicy::None => 1,
            RefreshPolicy::Offline => 2,
            RefreshPolicy::Online => 3,
        }
    }

    pub fn client_type(client_type: ClientType) -> i8 {
        match client_type {
            ClientType::Public => 1,
            ClientType::ConfidentialSymmetric => 2,
            ClientType::ConfidentialAsymmetric => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_columns_match_fields<T: AnalyticsRow>() {
        let columns: Vec<&str> = T::COLUMNS.iter().map(|(name, _)| *name).collect();
        assert_eq!(columns, <T as Row>::COLUMN_NAMES, "{}", T::TABLE.name());
    }

    #[test]
    fn columns_match_fields() {
        assert_columns_match_fields::<LaunchRow>();
        assert_columns_match_fields::<AuthorizationRow>();
        assert_columns_match_fields::<TokenGrantRow>();
        assert_columns_match_fields::<ApiCallRow>();
        assert_columns_match_fields::<SiteRow>();
        assert_columns_match_fields::<AppRow>();
    }

    #[test]
    fn year_month_in_utc() {
        assert_eq!(year_month(0), 197001);
        // 2024-02-29T23:59:59Z and one second later.
        assert_eq!(year_month(1_709_251_199), 202402);
        assert_eq!(year_month(1_709_251_200), 202403);
    }

    #[test]
    fn seconds_clamped_to_datetime() {
        assert_eq!(seconds(-5), 0);
        assert_eq!(seconds(1_500_000), 1);
        assert_eq!(seconds(i64::MAX), u32::MAX);
    }
}
