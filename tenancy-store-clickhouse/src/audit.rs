//! The audit log in ClickHouse: [`ClickHouseAuditSink`] writes events,
//! [`ClickHouseAuditQuery`] reads one tenant's events back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clickhouse::Client;
use tenancy_core::audit::{AUDIT_MAX_LIMIT, AuditEvent, AuditFilter};
use tenancy_core::store::{AuditQuery, AuditSink, StoreError};
use tenancy_core::tenant::TenantId;

use crate::error::store_error;
use crate::rows::{AuditBatchText, AuditRow, AuditRowRef, bind_before, ceil_millis, optional};
use crate::schema::AUDIT_TABLE;
use crate::stores::{ClickHouseStores, health};
use crate::tenant_query::TenantQuery;
use crate::tenant_sql;
use crate::unreadable::keep_readable;

/// Writes audit events into `audit_log`, one `INSERT` per
/// [`record`](AuditSink::record) call.
///
/// This is the direct path: the caller waits for ClickHouse. Request paths
/// enqueue into an [`AuditWriter`](tenancy_core::writer::AuditWriter) instead, which batches
/// events and writes them through this sink in the background.
///
/// Events are written at least once: a batch whose answer was lost (the
/// connection dropped after the server stored it) and is then retried is
/// stored twice.
#[derive(Clone)]
pub struct ClickHouseAuditSink {
    client: Client,
}

impl ClickHouseAuditSink {
    /// A sink over `client`, which names the database.
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    async fn insert(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Convert everything first: a bad event fails the batch before any
        // byte is sent.
        let text = AuditBatchText::new(events)?;
        let rows = text.rows(events)?;
        let mut insert = self
            .client
            .insert::<AuditRowRef<'_>>(AUDIT_TABLE)
            .await
            .map_err(store_error)?;
        for row in &rows {
            insert.write(row).await.map_err(store_error)?;
        }
        insert.end().await.map_err(store_error)
    }
}

#[async_trait]
impl AuditSink for ClickHouseAuditSink {
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.insert(events).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        health(&self.client).await
    }
}

#[async_trait]
impl tenancy_core::writer::BatchSink<AuditEvent> for ClickHouseAuditSink {
    async fn write_batch(&self, batch: &mut Vec<AuditEvent>) -> Result<(), StoreError> {
        self.insert(batch).await
    }
}

impl std::fmt::Debug for ClickHouseAuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseAuditSink")
            .field("database", &self.client.database())
            .finish_non_exhaustive()
    }
}

/// Reads one tenant's audit events, newest first.
///
/// Every query goes through [`TenantQuery`], so it is bound to the tenant
/// it is asked for. Events with the same millisecond come back in no
/// particular order.
///
/// [`purge_before`](AuditQuery::purge_before) and
/// [`erase`](AuditQuery::erase) count the rows, delete them by mutation on
/// every shard that holds rows, and wait until the mutations are done (at
/// most [`ERASE_WAIT`](crate::ERASE_WAIT)).
#[derive(Clone)]
pub struct ClickHouseAuditQuery {
    client: Client,
    stores: ClickHouseStores,
}

impl ClickHouseAuditQuery {
    /// Queries over the database of `stores`.
    pub(crate) fn new(stores: ClickHouseStores) -> Self {
        Self {
            client: stores.client().clone(),
            stores,
        }
    }
}

/// Upper bound of the milliseconds of a stored event time, exclusive.
const END_OF_TIME_MILLIS: u64 = (u32::MAX as u64 + 1) * 1000;

#[async_trait]
impl AuditQuery for ClickHouseAuditQuery {
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = filter.limit.min(AUDIT_MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let since_ms = filter.since.map_or(0, ceil_millis);
        let until_ms = filter.until.map_or(END_OF_TIME_MILLIS, ceil_millis);
        // Whole-second bounds let the primary index skip granules; the
        // millisecond bounds decide.
        let since_secs = since_ms / 1000;
        let until_secs = until_ms.div_ceil(1000).min(u64::from(u32::MAX));
        let (no_actor, actor) = optional(filter.actor.as_deref());
        let (no_action, action) = optional(filter.action.as_deref());
        let rows = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!(
                "SELECT ?fields FROM audit_log \
                 WHERE {tenant} \
                 AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?) \
                 AND toUInt64(timestamp) * 1000 + millis >= ? \
                 AND toUInt64(timestamp) * 1000 + millis < ? \
                 AND (? = 1 OR actor = ?) \
                 AND (? = 1 OR action = ?) \
                 ORDER BY timestamp DESC, millis DESC \
                 LIMIT ?"
            ))
            .bind(since_secs)
            .bind(until_secs)
            .bind(since_ms)
            .bind(until_ms)
            .bind(no_actor)
            .bind(actor)
            .bind(no_action)
            .bind(action)
            .bind(limit as u64)
            .fetch_all::<AuditRow>()
            .await
            .map_err(store_error)?;
        Ok(keep_readable(
            AUDIT_TABLE,
            tenant,
            rows.into_iter().map(AuditRow::into_event),
        ))
    }

    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let count: u64 = bind_before(
            TenantQuery::new(&self.client, tenant).sql(tenant_sql!(
                "SELECT count() FROM audit_log WHERE {tenant} \
                 AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
            )),
            before,
        )
        .fetch_one()
        .await
        .map_err(store_error)?;
        if count > 0 {
            self.stores.purge_audit(tenant, before).await?;
            self.stores.wait_for_mutations(crate::ERASE_WAIT).await?;
        }
        Ok(count)
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let count: u64 = TenantQuery::new(&self.client, tenant)
            .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant}"))
            .fetch_one()
            .await
            .map_err(store_error)?;
        self.stores.delete_audit(tenant).await?;
        self.stores.wait_for_mutations(crate::ERASE_WAIT).await?;
        Ok(count)
    }
}

impl std::fmt::Debug for ClickHouseAuditQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseAuditQuery")
            .field("database", &self.client.database())
            .finish_non_exhaustive()
    }
}
