//! Hourly usage counts in ClickHouse: [`ClickHouseUsageMeter`].

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clickhouse::Client;
use tenancy_core::metering::UsageRecord;
use tenancy_core::store::{StoreError, UsageMeter};
use tenancy_core::tenant::TenantId;

use crate::error::store_error;
use crate::rows::{UsageRowRef, UsageSumRow, ceil_secs};
use crate::schema::USAGE_TABLE;
use crate::stores::{ClickHouseStores, health};
use crate::tenant_query::TenantQuery;
use crate::tenant_sql;
use crate::unreadable::keep_readable;

/// Hourly usage counts in `usage_hourly`, a `SummingMergeTree`.
///
/// [`record`](UsageMeter::record) writes the records it is given in one
/// `INSERT`; [`usage`](UsageMeter::usage) sums per hour and event type, as
/// ClickHouse merges rows of the same key only eventually. Request paths
/// enqueue into a [`UsageWriter`](tenancy_core::writer::UsageWriter) instead, which adds up
/// records of the same tenant, hour and type before writing.
///
/// [`purge_before`](UsageMeter::purge_before) and
/// [`erase`](UsageMeter::erase) count the rows, delete them by mutation on
/// every shard that holds rows, and wait until the mutations are done.
#[derive(Clone)]
pub struct ClickHouseUsageMeter {
    client: Client,
    stores: ClickHouseStores,
}

impl ClickHouseUsageMeter {
    /// A meter over the database of `stores`.
    pub(crate) fn new(stores: ClickHouseStores) -> Self {
        Self {
            client: stores.client().clone(),
            stores,
        }
    }

    async fn insert(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = records
            .iter()
            .map(UsageRowRef::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut insert = self
            .client
            .insert::<UsageRowRef<'_>>(USAGE_TABLE)
            .await
            .map_err(store_error)?;
        for row in &rows {
            insert.write(row).await.map_err(store_error)?;
        }
        insert.end().await.map_err(store_error)
    }
}

#[async_trait]
impl UsageMeter for ClickHouseUsageMeter {
    async fn record(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        self.insert(records).await
    }

    async fn usage(
        &self,
        tenant: &TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        // Hours are whole seconds, so `hour >= from` is `hour >= ceil(from)`
        // and `hour < to` is `hour < ceil(to)`.
        let rows = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!(
                "SELECT hour, event_type, sum(count) AS count FROM usage_hourly \
                 WHERE {tenant} AND hour >= toDateTime(?) AND hour < toDateTime(?) \
                 GROUP BY hour, event_type \
                 ORDER BY hour, event_type"
            ))
            .bind(ceil_secs(from))
            .bind(ceil_secs(to))
            .fetch_all::<UsageSumRow>()
            .await
            .map_err(store_error)?;
        Ok(keep_readable(
            USAGE_TABLE,
            tenant,
            rows.into_iter().map(|r| r.into_record(tenant)),
        ))
    }

    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let count: u64 = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!(
                "SELECT count() FROM usage_hourly WHERE {tenant} AND hour < toDateTime(?)"
            ))
            .bind(ceil_secs(before))
            .fetch_one()
            .await
            .map_err(store_error)?;
        if count > 0 {
            self.stores.purge_usage(tenant, before).await?;
            self.stores.wait_for_mutations(crate::ERASE_WAIT).await?;
        }
        Ok(count)
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let count: u64 = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!(
                "SELECT count() FROM usage_hourly WHERE {tenant}"
            ))
            .fetch_one()
            .await
            .map_err(store_error)?;
        self.stores.delete_usage(tenant).await?;
        self.stores.wait_for_mutations(crate::ERASE_WAIT).await?;
        Ok(count)
    }

    async fn health(&self) -> Result<(), StoreError> {
        health(&self.client).await
    }
}

#[async_trait]
impl tenancy_core::writer::BatchSink<UsageRecord> for ClickHouseUsageMeter {
    /// Adds up the records of the same tenant, hour and event type, then
    /// writes one row for each.
    async fn write_batch(&self, batch: &mut Vec<UsageRecord>) -> Result<(), StoreError> {
        let mut sums: HashMap<(&TenantId, DateTime<Utc>, &str), u64> = HashMap::new();
        for r in batch.iter() {
            let sum = sums
                .entry((&r.tenant_id, r.hour, r.event_type.as_str()))
                .or_insert(0);
            *sum = sum.saturating_add(r.count);
        }
        if sums.len() == batch.len() {
            return self.insert(batch).await;
        }
        let summed: Vec<UsageRecord> = batch
            .iter()
            .filter_map(|r| {
                let key = (&r.tenant_id, r.hour, r.event_type.as_str());
                sums.remove(&key)
                    .map(|count| UsageRecord { count, ..r.clone() })
            })
            .collect();
        self.insert(&summed).await
    }
}

impl std::fmt::Debug for ClickHouseUsageMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseUsageMeter")
            .field("database", &self.client.database())
            .finish_non_exhaustive()
    }
}
