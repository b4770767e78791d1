//! [`ClickHouseStores`]: one handle on a ClickHouse database, from which the
//! stores, writers and tenant-bound queries of this crate are made.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::Client;
use tenancy_core::store::StoreError;
use tenancy_core::tenant::TenantId;

use crate::audit::{ClickHouseAuditQuery, ClickHouseAuditSink};
use crate::cluster::ClickHouseCluster;
use crate::error::store_error;
use crate::retention::{self, Tables};
use crate::schema::{self, Migration, ServerVersion, is_plain_identifier};
use crate::telemetry::ClickHouseTelemetryStore;
use crate::tenant_query::TenantQuery;
use crate::usage::ClickHouseUsageMeter;

/// The tables of this crate in one ClickHouse database, on one server or
/// spread over the shards of a cluster ([`on_cluster`](Self::on_cluster)).
///
/// Cheap to clone: clones share the client's connection pool.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tenancy_store_clickhouse::{ClickHouseStores, clickhouse::Client};
///
/// let client = Client::default()
///     .with_url("http://127.0.0.1:8123")
///     .with_user("tenancy")
///     .with_password("secret");
/// let stores = ClickHouseStores::new(client, "tenancy")?;
/// stores.migrate().await?;
/// stores.health().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClickHouseStores {
    /// Bound to the stores' database.
    client: Client,
    /// Bound to `system`, which always exists: for `CREATE DATABASE` and
    /// `system.mutations`.
    admin: Client,
    database: Arc<str>,
    /// `None` on one server.
    cluster: Option<Arc<Shards>>,
}

/// The shards of a cluster, as the stores use them.
struct Shards {
    name: Box<str>,
    /// Bound to the stores' database: for mutations of the local tables.
    clients: Vec<Client>,
    /// Bound to `system`: for `CREATE DATABASE` and `system.mutations`.
    admins: Vec<Client>,
}

/// A database name that is not a plain identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidDatabaseName;

impl fmt::Display for InvalidDatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a database name must be 1 to 64 characters of A-Z, a-z, 0-9 and '_', not starting with a digit")
    }
}

impl std::error::Error for InvalidDatabaseName {}

impl ClickHouseStores {
    /// The stores in `database` over `client` (URL, user, password,
    /// compression and settings as configured on it).
    ///
    /// Row validation is switched off on the client: it needs the
    /// `RowBinaryWithNamesAndTypes` format, which servers before 23.x lack,
    /// and the rows of this crate match the tables its own
    /// [`migrate`](Self::migrate) creates.
    pub fn new(client: Client, database: &str) -> Result<Self, InvalidDatabaseName> {
        if !is_plain_identifier(database) {
            return Err(InvalidDatabaseName);
        }
        let client = client.with_validation(false);
        Ok(Self {
            admin: client.clone().with_database("system"),
            client: client.with_database(database),
            database: Arc::from(database),
            cluster: None,
        })
    }

    /// The same stores with the tables spread over the shards of `cluster`,
    /// one tenant's rows on one shard; see [`cluster`](crate::cluster).
    ///
    /// The client given to [`new`](Self::new) takes every read and write:
    /// it talks to a node of the cluster (or a balancer over them), which
    /// holds the `Distributed` tables. Its inserts wait until every shard
    /// has stored its rows (`insert_distributed_sync = 1`).
    pub fn on_cluster(self, cluster: ClickHouseCluster) -> Self {
        let shards: Vec<Client> = cluster
            .shards
            .into_iter()
            .map(|shard| shard.with_validation(false))
            .collect();
        Self {
            client: self.client.with_setting("insert_distributed_sync", "1"),
            cluster: Some(Arc::new(Shards {
                name: cluster.name,
                clients: shards
                    .iter()
                    .map(|shard| shard.clone().with_database(&*self.database))
                    .collect(),
                admins: shards
                    .into_iter()
                    .map(|shard| shard.with_database("system"))
                    .collect(),
            })),
            ..self
        }
    }

    /// The database holding the tables.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The name of the cluster the tables are spread over, if any.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref().map(|shards| &*shards.name)
    }

    /// Creates the database and the tables if they do not exist; safe to
    /// run from many instances at once, and on every start. See
    /// [`schema`](crate::schema) for the tables, and
    /// [`cluster`](crate::cluster) for what is created on a cluster.
    pub async fn migrate(&self) -> Result<Migration, StoreError> {
        match &self.cluster {
            None => schema::migrate(&self.admin, &self.database).await,
            Some(shards) => {
                schema::migrate_cluster(&self.admin, &shards.admins, &self.database, &shards.name)
                    .await
            }
        }
    }

    /// The server's version.
    pub async fn server_version(&self) -> Result<ServerVersion, StoreError> {
        schema::server_version(&self.admin).await
    }

    /// Whether the server, and on a cluster every shard, answers
    /// `SELECT 1`.
    pub async fn health(&self) -> Result<(), StoreError> {
        health(&self.client).await?;
        for shard in self.cluster.iter().flat_map(|shards| &shards.clients) {
            health(shard).await?;
        }
        Ok(())
    }

    /// The client bound to the stores' database (reads and inserts).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The audit sink: one `INSERT` per call.
    pub fn audit_sink(&self) -> ClickHouseAuditSink {
        ClickHouseAuditSink::new(self.client.clone())
    }

    /// The audit query: one tenant's events, newest first.
    pub fn audit_query(&self) -> ClickHouseAuditQuery {
        ClickHouseAuditQuery::new(self.clone())
    }

    /// The usage meter: one `INSERT` per call, sums on read.
    pub fn usage_meter(&self) -> ClickHouseUsageMeter {
        ClickHouseUsageMeter::new(self.clone())
    }

    /// The telemetry store: one `INSERT` per call, reads bound to one
    /// tenant.
    pub fn telemetry_store(&self) -> ClickHouseTelemetryStore {
        ClickHouseTelemetryStore::new(self.client.clone(), self.clone())
    }

    /// Queries bound to `tenant`; see [`TenantQuery`].
    pub fn tenant_query(&self, tenant: &TenantId) -> TenantQuery {
        TenantQuery::new(&self.client, tenant)
    }

    /// Deletes `tenant`'s audit events older than `older_than` (a
    /// mutation: see [`wait_for_mutations`](Self::wait_for_mutations)).
    /// The per-tenant retention of a plan, and the only retention on
    /// servers without table `TTL`.
    pub async fn purge_audit(
        &self,
        tenant: &TenantId,
        older_than: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::purge_audit(client, tables, tenant, older_than).await?;
        }
        Ok(())
    }

    /// Deletes every audit event, usage count and telemetry event of
    /// `tenant` (mutations:
    /// see [`wait_for_mutations`](Self::wait_for_mutations)).
    pub async fn delete_tenant(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::delete_tenant(client, tables, tenant).await?;
            retention::delete_telemetry(client, tables, tenant).await?;
        }
        Ok(())
    }

    /// Deletes `tenant`'s telemetry events older than `older_than` (a
    /// mutation: see [`wait_for_mutations`](Self::wait_for_mutations)).
    pub async fn purge_telemetry(
        &self,
        tenant: &TenantId,
        older_than: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::purge_telemetry(client, tables, tenant, older_than).await?;
        }
        Ok(())
    }

    /// Deletes `tenant`'s usage counts of hours starting before `before` (a
    /// mutation: see [`wait_for_mutations`](Self::wait_for_mutations)).
    pub async fn purge_usage(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::purge_usage(client, tables, tenant, before).await?;
        }
        Ok(())
    }

    /// Deletes every audit event of `tenant` (a mutation).
    pub(crate) async fn delete_audit(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::delete_audit(client, tables, tenant).await?;
        }
        Ok(())
    }

    /// Deletes every usage count of `tenant` (a mutation).
    pub(crate) async fn delete_usage(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::delete_usage(client, tables, tenant).await?;
        }
        Ok(())
    }

    /// Deletes every telemetry event of `tenant` (mutations: see
    /// [`wait_for_mutations`](Self::wait_for_mutations)).
    pub async fn delete_telemetry(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let (tables, clients) = self.mutated();
        for client in clients {
            retention::delete_telemetry(client, tables, tenant).await?;
        }
        Ok(())
    }

    /// How many mutations of the database are still running (on all
    /// shards of a cluster).
    pub async fn pending_mutations(&self) -> Result<u64, StoreError> {
        retention::pending_mutations_on(self.admins(), &self.database).await
    }

    /// Waits until every mutation of the database (on all shards of a
    /// cluster) is done, polling `system.mutations`;
    /// [`StoreError::Timeout`] after `timeout`.
    pub async fn wait_for_mutations(&self, timeout: Duration) -> Result<(), StoreError> {
        retention::wait_for_mutations(self.admins(), &self.database, timeout).await
    }

    /// The tables mutations rewrite, and the clients that reach them.
    fn mutated(&self) -> (Tables, &[Client]) {
        match &self.cluster {
            None => (Tables::Shared, std::slice::from_ref(&self.client)),
            Some(shards) => (Tables::Local, &shards.clients),
        }
    }

    /// The clients, bound to `system`, of the servers holding rows.
    fn admins(&self) -> &[Client] {
        match &self.cluster {
            None => std::slice::from_ref(&self.admin),
            Some(shards) => &shards.admins,
        }
    }
}

impl fmt::Debug for ClickHouseStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client is left out: it may hold credentials.
        f.debug_struct("ClickHouseStores")
            .field("database", &self.database)
            .field("cluster", &self.cluster())
            .finish_non_exhaustive()
    }
}

/// `SELECT 1` over `client`.
pub(crate) async fn health(client: &Client) -> Result<(), StoreError> {
    client
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .map(drop)
        .map_err(store_error)
}
