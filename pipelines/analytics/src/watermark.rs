//! The highest log offset stored in each table partition, per log partition.
//!
//! The sink writes each table's rows of one month in one INSERT, which ClickHouse stores
//! as one part: all rows or none. Within a table partition the rows of a log partition
//! arrive in offset order, so what ClickHouse holds of them is always a prefix, and
//! "offset at or below the stored maximum" tells exactly which records are stored. The
//! sink skips those, so replaying the log, or a crash between an insert and the offset
//! commit, adds no row twice and the materialized views never see a duplicate.
//!
//! NOTE: the maxima live in memory and are reloaded only at start and after a failed
//! insert, so two sinks sharing a Kafka group can insert a row twice after a partition
//! moves from one to the other.

use std::collections::HashMap;

use crate::Result;
use crate::client::ClickHouse;
use crate::rows::{AnalyticsRow, Table};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Watermarks {
    /// Highest stored offset by table, month (0 for unpartitioned tables) and log
    /// partition.
    max: HashMap<(Table, u32, u32), u64>,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct WatermarkRow {
    month: u32,
    log_partition: u32,
    max_offset: u64,
}

impl Watermarks {
    /// Reads the stored maxima of every raw table.
    pub(crate) async fn load(client: &ClickHouse) -> Result<Watermarks> {
        let mut watermarks = Watermarks::default();
        for table in Table::ALL {
            let month = if table.partitioned_by_month() {
                "toUInt32(toYYYYMM(occurred_at))"
            } else {
                "toUInt32(0)"
            };
            let sql = format!(
                "SELECT {month} AS month, log_partition, max(log_offset) AS max_offset \
                 FROM {} GROUP BY month, log_partition",
                table.name()
            );
            let rows: Vec<WatermarkRow> = client.fetch_all(&sql).await?;
            for row in rows {
                watermarks
                    .max
                    .insert((table, row.month, row.log_partition), row.max_offset);
            }
        }
        Ok(watermarks)
    }

    /// Returns whether ClickHouse already stores `row`, whose table partition is `month`
    /// (as [`AnalyticsRow::month`] returns it).
    pub(crate) fn is_stored<T: AnalyticsRow>(&self, month: u32, row: &T) -> bool {
        self.max
            .get(&(T::TABLE, month, row.log_partition()))
            .is_some_and(|max| row.log_offset() <= *max)
    }

    /// Records that ClickHouse acknowledged `rows`, all of the table partition `month`.
    pub(crate) fn advance<T: AnalyticsRow>(&mut self, month: u32, rows: &[T]) {
        // Nearly every batch comes from one log partition, so the maxima are gathered in
        // a short list before the map is updated once per partition.
        let mut maxima: Vec<(u32, u64)> = Vec::new();
        for row in rows {
            let partition = row.log_partition();
            match maxima.iter_mut().find(|(seen, _)| *seen == partition) {
                Some((_, max)) => *max = (*max).max(row.log_offset()),
                None => maxima.push((partition, row.log_offset())),
            }
        }
        for (partition, offset) in maxima {
            let max = self.max.entry((T::TABLE, month, partition)).or_insert(0);
            *max = (*max).max(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::SiteRow;

    fn site(partition: u32, offset: u64) -> SiteRow {
        SiteRow {
            occurred_at: 1_700_000_000,
            log_partition: partition,
            log_offset: offset,
            site_id: "main".to_string(),
            name: String::new(),
            backing: 1,
            fhir_base_path: "/fhir".to_string(),
        }
    }

    #[test]
    fn stored_up_to_the_maximum() {
        let mut watermarks = Watermarks::default();
        assert!(!watermarks.is_stored(0, &site(0, 0)));
        watermarks.advance(0, &[site(0, 3), site(0, 7), site(1, 1)]);
        assert!(watermarks.is_stored(0, &site(0, 0)));
        assert!(watermarks.is_stored(0, &site(0, 7)));
        assert!(!watermarks.is_stored(0, &site(0, 8)));
        assert!(watermarks.is_stored(0, &site(1, 1)));
        assert!(
            !watermarks.is_stored(0, &site(1, 2)),
            "partitions are separate"
        );
        assert!(
            !watermarks.is_stored(202_603, &site(0, 0)),
            "months are separate"
        );
    }
}
