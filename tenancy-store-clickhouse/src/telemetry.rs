//! Telemetry in ClickHouse: [`ClickHouseTelemetryStore`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clickhouse::Client;
use tenancy_core::store::{StoreError, TelemetryStore};
use tenancy_core::telemetry::{TELEMETRY_MAX_LIMIT, TelemetryEvent, TelemetryFilter};
use tenancy_core::tenant::TenantId;

use crate::error::store_error;
use crate::rows::{TelemetryRow, bind_before, ceil_millis, optional};
use crate::schema::TELEMETRY_TABLE;
use crate::stores::{ClickHouseStores, health};
use crate::tenant_query::TenantQuery;
use crate::tenant_sql;
use crate::unreadable::keep_readable;

/// Telemetry events in the table `telemetry`, one `INSERT` per
/// [`append`](TelemetryStore::append); every read goes through
/// [`TenantQuery`], so it is bound to the tenant it is asked for.
///
/// [`purge_before`](TelemetryStore::purge_before) and
/// [`erase`](TelemetryStore::erase) count the tenant's rows, delete them by
/// a mutation on every shard that holds rows, and wait until the mutations
/// are done (at most [`ERASE_WAIT`]).
#[derive(Clone)]
pub struct ClickHouseTelemetryStore {
    client: Client,
    stores: ClickHouseStores,
}

/// The longest [`erase`](TelemetryStore::erase) waits for its mutations.
pub const ERASE_WAIT: Duration = Duration::from_secs(60);

impl ClickHouseTelemetryStore {
    pub(crate) fn new(client: Client, stores: ClickHouseStores) -> Self {
        Self { client, stores }
    }
}

/// Upper bound of the milliseconds of a stored event time, exclusive.
const END_OF_TIME_MILLIS: u64 = (u32::MAX as u64 + 1) * 1000;

#[async_trait]
impl TelemetryStore for ClickHouseTelemetryStore {
    async fn append(&self, tenant: &TenantId, events: &[TelemetryEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        // Convert everything first: a bad event fails the call before any
        // byte is sent.
        let rows = events
            .iter()
            .map(|e| TelemetryRow::new(tenant, e, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut insert = self
            .client
            .insert::<TelemetryRow>(TELEMETRY_TABLE)
            .await
            .map_err(store_error)?;
        for row in &rows {
            insert.write(row).await.map_err(store_error)?;
        }
        insert.end().await.map_err(store_error)
    }

    async fn query(
        &self,
        tenant: &TenantId,
        filter: &TelemetryFilter,
    ) -> Result<Vec<TelemetryEvent>, StoreError> {
        let limit = filter.limit.min(TELEMETRY_MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let since_ms = filter.since.map_or(0, ceil_millis);
        let until_ms = filter.until.map_or(END_OF_TIME_MILLIS, ceil_millis);
        let (no_name, name) = optional(filter.name.as_deref());
        let (no_type, event_type) = optional(filter.event_type.as_deref());
        let rows = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!(
                "SELECT ?fields FROM telemetry \
                 WHERE {tenant} \
                 AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?) \
                 AND toUInt64(timestamp) * 1000 + millis >= ? \
                 AND toUInt64(timestamp) * 1000 + millis < ? \
                 AND (? = 1 OR name = ?) \
                 AND (? = 1 OR event_type = ?) \
                 ORDER BY timestamp DESC, millis DESC \
                 LIMIT ?"
            ))
            .bind(since_ms / 1000)
            // Whole seconds let the primary index skip granules; the
            // milliseconds decide.
            .bind(until_ms.div_ceil(1000).min(u64::from(u32::MAX)))
            .bind(since_ms)
            .bind(until_ms)
            .bind(no_name)
            .bind(name)
            .bind(no_type)
            .bind(event_type)
            .bind(limit as u64)
            .fetch_all::<TelemetryRow>()
            .await
            .map_err(store_error)?;
        Ok(keep_readable(
            TELEMETRY_TABLE,
            tenant,
            rows.into_iter().map(TelemetryRow::into_event),
        ))
    }

    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let count: u64 = bind_before(
            TenantQuery::new(&self.client, tenant).sql(tenant_sql!(
                "SELECT count() FROM telemetry WHERE {tenant} \
                 AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
            )),
            before,
        )
        .fetch_one()
        .await
        .map_err(store_error)?;
        if count > 0 {
            self.stores.purge_telemetry(tenant, before).await?;
            self.stores.wait_for_mutations(ERASE_WAIT).await?;
        }
        Ok(count)
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let count: u64 = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!("SELECT count() FROM telemetry WHERE {tenant}"))
            .fetch_one()
            .await
            .map_err(store_error)?;
        self.stores.delete_telemetry(tenant).await?;
        self.stores.wait_for_mutations(ERASE_WAIT).await?;
        Ok(count)
    }

    async fn health(&self) -> Result<(), StoreError> {
        health(&self.client).await
    }
}

impl std::fmt::Debug for ClickHouseTelemetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseTelemetryStore")
            .field("database", &self.client.database())
            .finish_non_exhaustive()
    }
}
