//! Per-tenant retention and deletion, as `ALTER TABLE … DELETE` mutations.
//!
//! ClickHouse runs mutations in the background: the `ALTER` returns once the
//! mutation is queued, and the rows disappear when it has rewritten the
//! affected parts. [`wait_for_mutations`] polls `system.mutations` until
//! they are done (ClickHouse 18.16 has no `mutations_sync` setting).

use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::Client;
use tenancy_core::store::StoreError;
use tenancy_core::tenant::TenantId;

use crate::error::store_error;
use crate::rows::ceil_millis;
use crate::tenant_query::TenantQuery;
use crate::tenant_sql;

/// How often [`wait_for_mutations`] looks.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Queues the deletion of `tenant`'s audit events older than `older_than`.
pub(crate) async fn purge_audit(
    client: &Client,
    tenant: &TenantId,
    older_than: DateTime<Utc>,
) -> Result<(), StoreError> {
    let cutoff = ceil_millis(older_than);
    let secs = cutoff / 1000;
    let millis = cutoff % 1000;
    TenantQuery::new(client, tenant)
        .sql(tenant_sql!(
            "ALTER TABLE audit_log DELETE WHERE {tenant} \
             AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
        ))
        .bind(secs)
        .bind(secs)
        .bind(millis)
        .execute()
        .await
        .map_err(store_error)
}

/// Queues the deletion of every row of `tenant` in both tables.
pub(crate) async fn delete_tenant(client: &Client, tenant: &TenantId) -> Result<(), StoreError> {
    let scoped = TenantQuery::new(client, tenant);
    scoped
        .sql(tenant_sql!("ALTER TABLE audit_log DELETE WHERE {tenant}"))
        .execute()
        .await
        .map_err(store_error)?;
    scoped
        .sql(tenant_sql!(
            "ALTER TABLE usage_hourly DELETE WHERE {tenant}"
        ))
        .execute()
        .await
        .map_err(store_error)
}

/// How many mutations of `database` are not done yet.
pub(crate) async fn pending_mutations(admin: &Client, database: &str) -> Result<u64, StoreError> {
    admin
        .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
        .bind(database)
        .fetch_one::<u64>()
        .await
        .map_err(store_error)
}

/// Waits until every mutation of `database` is done;
/// [`StoreError::Timeout`] after `timeout`.
pub(crate) async fn wait_for_mutations(
    admin: &Client,
    database: &str,
    timeout: Duration,
) -> Result<(), StoreError> {
    let give_up = tokio::time::Instant::now() + timeout;
    loop {
        if pending_mutations(admin, database).await? == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() + POLL_EVERY > give_up {
            return Err(StoreError::Timeout);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
