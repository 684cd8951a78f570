//! One batch on its way from log records to ClickHouse rows.

use std::collections::{BTreeMap, HashSet};

use hearth_log::Record;
use hearth_schemas::AnyEvent;

use crate::client::ClickHouse;
use crate::convert::{Converted, Converter, GrantUser, Position};
use crate::rows::{
    AnalyticsRow, ApiCallRow, AppRow, AuthorizationRow, LaunchRow, SiteRow, TokenGrantRow,
};
use crate::sink::dedup::RecentEvents;
use crate::sql::quote_list;
use crate::watermark::Watermarks;
use crate::{Error, Result};

/// Event types that become rows; records of other types are not decoded.
const STORED_EVENTS: &[&str] = &[
    "hearth.events.LaunchCreated",
    "hearth.events.AuthorizationGranted",
    "hearth.events.AuthorizationDenied",
    "hearth.events.TokenIssued",
    "hearth.events.TokenRefreshed",
    "hearth.events.ApiCall",
    "hearth.events.SiteRegistered",
    "hearth.events.SiteUpdated",
    "hearth.events.AppRegistered",
    "hearth.events.AppUpdated",
];

/// A decoded event and where its record is.
pub(crate) struct Decoded {
    pub at: Position,
    pub event: AnyEvent,
}

/// Decodes the records that analytics stores, `hearth.auth` records first so a site's
/// registration and a grant's authorization come before the calls and refreshes that
/// need them. Returns the events and the number of repeated event ids dropped. A record
/// that no known schema wrote stops the batch with [`Error::Schema`].
pub(crate) fn decode(records: &[Record], recent: &mut RecentEvents) -> Result<(Vec<Decoded>, u64)> {
    let is_auth = |record: &&Record| record.topic.ends_with(hearth_log::topics::AUTH);
    let auth = records.iter().filter(is_auth);
    let other = records.iter().filter(|record| !is_auth(record));
    let mut decoded = Vec::with_capacity(records.len());
    let mut duplicates = 0;
    for record in auth.chain(other) {
        let schema_error = |source| Error::Schema {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            source,
        };
        let name = hearth_schemas::event_name(&record.value).map_err(schema_error)?;
        if !STORED_EVENTS.contains(&name) {
            continue;
        }
        let event = hearth_schemas::decode_any(&record.value).map_err(schema_error)?;
        if !recent.first_seen(event.event_id()) {
            duplicates += 1;
            continue;
        }
        decoded.push(Decoded {
            at: Position {
                partition: record.partition,
                offset: record.offset,
            },
            event,
        });
    }
    Ok((decoded, duplicates))
}

/// Grants refreshed in the batch whose users the converter does not know, and that no
/// earlier event of the batch introduces.
pub(crate) fn unknown_grants(decoded: &[Decoded], converter: &Converter) -> Vec<String> {
    let mut introduced = HashSet::new();
    let mut missing = Vec::new();
    for item in decoded {
        match &item.event {
            AnyEvent::AuthorizationGranted(event) => {
                introduced.insert(event.grant_id.as_str());
            }
            AnyEvent::TokenIssued(event) => {
                if let Some(grant_id) = &event.grant_id {
                    introduced.insert(grant_id.as_str());
                }
            }
            AnyEvent::TokenRefreshed(event) => {
                let id = event.grant_id.as_str();
                if !introduced.contains(id)
                    && !converter.knows_grant(id)
                    && !missing.iter().any(|m: &String| m == id)
                {
                    missing.push(id.to_string());
                }
            }
            _ => {}
        }
    }
    missing
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct GrantUserRow {
    grant_id: String,
    user_type: i8,
    user_hash: u64,
    patient_hash: u64,
}

/// Reads the users of grants from their first tokens in `token_grants`.
pub(crate) async fn load_grants(
    client: &ClickHouse,
    grant_ids: &[String],
) -> Result<Vec<(String, GrantUser)>> {
    let mut found = Vec::new();
    for chunk in grant_ids.chunks(1000) {
        let sql = format!(
            "SELECT grant_id, argMin(toInt8(user_type), log_offset), \
             argMin(user_hash, log_offset), argMin(patient_hash, log_offset) \
             FROM token_grants WHERE grant_type = 'AUTHORIZATION_CODE' AND grant_id IN {} \
             GROUP BY grant_id",
            quote_list(chunk.iter().map(String::as_str))
        );
        let rows: Vec<GrantUserRow> = client.fetch_all(&sql).await?;
        found.extend(rows.into_iter().map(|row| {
            let user = GrantUser {
                user_type: row.user_type,
                user_hash: row.user_hash,
                patient_hash: row.patient_hash,
            };
            (row.grant_id, user)
        }));
    }
    Ok(found)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct BackingRow {
    site_id: String,
    backing: i8,
}

/// Reads the backing of every site from its latest stored registration.
pub(crate) async fn load_backings(client: &ClickHouse) -> Result<Vec<(String, i8)>> {
    let sql = "SELECT site_id, argMax(toInt8(backing), log_offset) AS backing \
               FROM sites GROUP BY site_id";
    let rows: Vec<BackingRow> = client.fetch_all(sql).await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.site_id, row.backing))
        .collect())
}

/// Converts the events of a batch into rows grouped by table and month.
pub(crate) fn convert(decoded: Vec<Decoded>, converter: &mut Converter) -> PendingRows {
    let mut pending = PendingRows::default();
    // Sizing the vector of API calls up front saves copying its rows as it grows.
    pending.api_calls.capacity = decoded
        .iter()
        .filter(|item| matches!(item.event, AnyEvent::ApiCall(_)))
        .count();
    for item in decoded {
        if let Some(row) = converter.convert(item.at, item.event) {
            pending.push(row);
        }
    }
    pending
}

/// Rows of one table waiting for ClickHouse, by month.
struct Pending<T> {
    by_month: BTreeMap<u32, Vec<T>>,
    /// Rows to reserve for a month's vector when the month's first row arrives.
    capacity: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            by_month: BTreeMap::new(),
            capacity: 0,
        }
    }
}

impl<T: AnalyticsRow> Pending<T> {
    fn push(&mut self, row: T) {
        let capacity = self.capacity;
        self.by_month
            .entry(row.month())
            .or_insert_with(|| Vec::with_capacity(capacity))
            .push(row);
    }

    fn remove_stored(&mut self, watermarks: &Watermarks) -> u64 {
        let mut removed = 0;
        for (&month, rows) in &mut self.by_month {
            let before = rows.len();
            rows.retain(|row| !watermarks.is_stored(month, row));
            removed += (before - rows.len()) as u64;
        }
        self.by_month.retain(|_, rows| !rows.is_empty());
        removed
    }

    /// Inserts each month's rows in one statement and forgets them once acknowledged,
    /// so a retry after an error sends only what is left. Adds the rows acknowledged to
    /// `written`, also when a later insert fails.
    async fn write(
        &mut self,
        client: &ClickHouse,
        watermarks: &mut Watermarks,
        written: &mut u64,
    ) -> Result<()> {
        while let Some(entry) = self.by_month.first_entry() {
            let month = *entry.key();
            let rows = entry.get();
            // NOTE: ClickHouse writes the raw table's part before the views' parts, so a
            // view insert that fails, or a server crash in between, leaves that rollup
            // short while the watermark counts the rows as stored.
            client.insert(T::TABLE.name(), rows).await?;
            watermarks.advance(month, rows);
            *written += rows.len() as u64;
            entry.remove();
        }
        Ok(())
    }
}

/// Rows of every raw table waiting for ClickHouse.
#[derive(Default)]
pub(crate) struct PendingRows {
    launches: Pending<LaunchRow>,
    authorizations: Pending<AuthorizationRow>,
    token_grants: Pending<TokenGrantRow>,
    api_calls: Pending<ApiCallRow>,
    sites: Pending<SiteRow>,
    apps: Pending<AppRow>,
}

impl PendingRows {
    fn push(&mut self, row: Converted) {
        match row {
            Converted::Launch(row) => self.launches.push(row),
            Converted::Authorization(row) => self.authorizations.push(row),
            Converted::TokenGrant(row) => self.token_grants.push(row),
            Converted::ApiCall(row) => self.api_calls.push(row),
            Converted::Site(row) => self.sites.push(row),
            Converted::App(row) => self.apps.push(row),
        }
    }

    /// Drops rows that ClickHouse holds already and returns how many.
    pub(crate) fn remove_stored(&mut self, watermarks: &Watermarks) -> u64 {
        self.launches.remove_stored(watermarks)
            + self.authorizations.remove_stored(watermarks)
            + self.token_grants.remove_stored(watermarks)
            + self.api_calls.remove_stored(watermarks)
            + self.sites.remove_stored(watermarks)
            + self.apps.remove_stored(watermarks)
    }

    /// Writes every table's rows, adding the number of rows acknowledged to `written`.
    pub(crate) async fn write(
        &mut self,
        client: &ClickHouse,
        watermarks: &mut Watermarks,
        written: &mut u64,
    ) -> Result<()> {
        self.sites.write(client, watermarks, written).await?;
        self.apps.write(client, watermarks, written).await?;
        self.launches.write(client, watermarks, written).await?;
        self.authorizations
            .write(client, watermarks, written)
            .await?;
        self.token_grants.write(client, watermarks, written).await?;
        self.api_calls.write(client, watermarks, written).await
    }
}
