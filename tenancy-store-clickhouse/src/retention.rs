//! Per-tenant retention and deletion, as `ALTER TABLE … DELETE` mutations.
//!
//! ClickHouse runs mutations in the background: the `ALTER` returns once the
//! mutation is queued, and the rows disappear when it has rewritten the
//! affected parts. [`wait_for_mutations`] polls `system.mutations` until
//! they are done (ClickHouse 18.16 has no `mutations_sync` setting).
//!
//! On a cluster the mutations run on each shard's local tables: a
//! `Distributed` table takes none.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::Client;
use tenancy_core::store::StoreError;
use tenancy_core::tenant::TenantId;

use crate::error::store_error;
use crate::rows::bind_before;
use crate::tenant_query::{TenantQuery, TenantSql};
use crate::tenant_sql;

/// How often [`wait_for_mutations`] looks.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Which tables hold the rows a mutation rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tables {
    /// The tables themselves (`audit_log`, …), on one server.
    Shared,
    /// Their local tables (`audit_log_local`, …), on a shard.
    Local,
}

impl Tables {
    fn purge_audit(self) -> TenantSql {
        match self {
            Self::Shared => tenant_sql!(
                "ALTER TABLE audit_log DELETE WHERE {tenant} \
                 AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
            ),
            Self::Local => tenant_sql!(
                "ALTER TABLE audit_log_local DELETE WHERE {tenant} \
                 AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
            ),
        }
    }

    fn purge_telemetry(self) -> TenantSql {
        match self {
            Self::Shared => tenant_sql!(
                "ALTER TABLE telemetry DELETE WHERE {tenant} \
                 AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
            ),
            Self::Local => tenant_sql!(
                "ALTER TABLE telemetry_local DELETE WHERE {tenant} \
                 AND (timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))"
            ),
        }
    }

    fn purge_usage(self) -> TenantSql {
        match self {
            Self::Shared => {
                tenant_sql!(
                    "ALTER TABLE usage_hourly DELETE WHERE {tenant} AND hour < toDateTime(?)"
                )
            }
            Self::Local => tenant_sql!(
                "ALTER TABLE usage_hourly_local DELETE WHERE {tenant} AND hour < toDateTime(?)"
            ),
        }
    }

    fn delete_audit(self) -> TenantSql {
        match self {
            Self::Shared => tenant_sql!("ALTER TABLE audit_log DELETE WHERE {tenant}"),
            Self::Local => tenant_sql!("ALTER TABLE audit_log_local DELETE WHERE {tenant}"),
        }
    }

    fn delete_telemetry(self) -> TenantSql {
        match self {
            Self::Shared => tenant_sql!("ALTER TABLE telemetry DELETE WHERE {tenant}"),
            Self::Local => tenant_sql!("ALTER TABLE telemetry_local DELETE WHERE {tenant}"),
        }
    }

    fn delete_usage(self) -> TenantSql {
        match self {
            Self::Shared => tenant_sql!("ALTER TABLE usage_hourly DELETE WHERE {tenant}"),
            Self::Local => tenant_sql!("ALTER TABLE usage_hourly_local DELETE WHERE {tenant}"),
        }
    }
}

/// Queues the deletion of `tenant`'s audit events older than `older_than`.
pub(crate) async fn purge_audit(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
    older_than: DateTime<Utc>,
) -> Result<(), StoreError> {
    purge_timed(client, tables.purge_audit(), tenant, older_than).await
}

/// Queues the deletion of `tenant`'s telemetry events older than
/// `older_than`.
pub(crate) async fn purge_telemetry(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
    older_than: DateTime<Utc>,
) -> Result<(), StoreError> {
    purge_timed(client, tables.purge_telemetry(), tenant, older_than).await
}

/// Runs `sql`, a delete of rows whose `timestamp` and `millis` are before
/// `older_than`.
async fn purge_timed(
    client: &Client,
    sql: TenantSql,
    tenant: &TenantId,
    older_than: DateTime<Utc>,
) -> Result<(), StoreError> {
    bind_before(TenantQuery::new(client, tenant).sql(sql), older_than)
        .execute()
        .await
        .map_err(store_error)
}

/// Queues the deletion of `tenant`'s usage counts of hours starting before
/// `before`.
pub(crate) async fn purge_usage(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
    before: DateTime<Utc>,
) -> Result<(), StoreError> {
    TenantQuery::new(client, tenant)
        .sql(tables.purge_usage())
        .bind(crate::rows::ceil_secs(before))
        .execute()
        .await
        .map_err(store_error)
}

/// Queues the deletion of every audit event of `tenant`.
pub(crate) async fn delete_audit(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    TenantQuery::new(client, tenant)
        .sql(tables.delete_audit())
        .execute()
        .await
        .map_err(store_error)
}

/// Queues the deletion of every usage count of `tenant`.
pub(crate) async fn delete_usage(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    TenantQuery::new(client, tenant)
        .sql(tables.delete_usage())
        .execute()
        .await
        .map_err(store_error)
}

/// Queues the deletion of every row of `tenant` in the audit and usage
/// tables.
pub(crate) async fn delete_tenant(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    delete_audit(client, tables, tenant).await?;
    delete_usage(client, tables, tenant).await
}

/// Queues the deletion of every telemetry event of `tenant`.
pub(crate) async fn delete_telemetry(
    client: &Client,
    tables: Tables,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    TenantQuery::new(client, tenant)
        .sql(tables.delete_telemetry())
        .execute()
        .await
        .map_err(store_error)
}

/// How many mutations of `database` are not done yet.
async fn pending_mutations(admin: &Client, database: &str) -> Result<u64, StoreError> {
    admin
        .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
        .bind(database)
        .fetch_one::<u64>()
        .await
        .map_err(store_error)
}

/// How many mutations of `database` are not done yet on all of `admins`.
pub(crate) async fn pending_mutations_on(
    admins: &[Client],
    database: &str,
) -> Result<u64, StoreError> {
    let mut pending = 0;
    for admin in admins {
        pending += pending_mutations(admin, database).await?;
    }
    Ok(pending)
}

/// Waits until every mutation of `database` on all of `admins` is done;
/// [`StoreError::Timeout`] after `timeout`.
pub(crate) async fn wait_for_mutations(
    admins: &[Client],
    database: &str,
    timeout: Duration,
) -> Result<(), StoreError> {
    let give_up = tokio::time::Instant::now() + timeout;
    loop {
        if pending_mutations_on(admins, database).await? == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() + POLL_EVERY > give_up {
            return Err(StoreError::Timeout);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
