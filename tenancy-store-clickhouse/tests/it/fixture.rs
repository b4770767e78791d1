//! One fresh database per test, dropped when the test ends (even when it
//! fails).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenancy_core::testkit::services;
use tenancy_store_clickhouse::clickhouse::Client;
use tenancy_store_clickhouse::{ClickHouseCluster, ClickHouseStores};

/// A database of its own for one test.
pub(crate) struct TestDatabase {
    /// The server's HTTP URL (on a cluster: the first shard's, which takes
    /// the queries).
    pub(crate) url: String,
    /// The database's name.
    pub(crate) name: String,
    /// The stores in it, connected directly to the server.
    pub(crate) stores: ClickHouseStores,
    /// On a cluster, the shards' HTTP URLs; empty on one server.
    pub(crate) shards: Vec<String>,
}

impl TestDatabase {
    /// A fresh, migrated database, or `None` (skip) when no server is
    /// configured.
    pub(crate) async fn new(tag: &str) -> Option<Self> {
        let url = services::clickhouse_url()?;
        let db = Self::unmigrated(&url, tag);
        db.stores
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("cannot migrate on {url}: {e}"));
        Some(db)
    }

    /// A fresh database migrated on the test cluster of two shards, or
    /// `None` (skip) when no cluster is configured.
    pub(crate) async fn sharded(tag: &str) -> Option<Self> {
        let db = Self::unmigrated_sharded(tag)?;
        db.stores
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("cannot migrate on the cluster {:?}: {e}", db.shards));
        Some(db)
    }

    /// A database name reserved for this test on the test cluster; nothing
    /// is created.
    pub(crate) fn unmigrated_sharded(tag: &str) -> Option<Self> {
        let (cluster, shards) = services::clickhouse_cluster()?;
        let mut db = Self::unmigrated(&shards[0], tag);
        db.stores = Self::sharded_stores(&cluster, &shards, &db.name);
        db.shards = shards;
        Some(db)
    }

    /// Stores in `database` spread over `cluster`, queried through the first
    /// shard.
    pub(crate) fn sharded_stores(
        cluster: &str,
        shards: &[String],
        database: &str,
    ) -> ClickHouseStores {
        let cluster = ClickHouseCluster::new(
            cluster,
            shards.iter().map(|url| Client::default().with_url(url)),
        )
        .expect("valid cluster");
        Self::stores_at(&shards[0], database).on_cluster(cluster)
    }

    /// A database name reserved for this test on `url`; nothing is created.
    pub(crate) fn unmigrated(url: &str, tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let name = format!(
            "tenancy_test_{tag}_{}_{nanos}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let stores = Self::stores_at(url, &name);
        Self {
            url: url.to_owned(),
            name,
            stores,
            shards: Vec::new(),
        }
    }

    /// Stores in `database` reached through `url` (for example a proxy).
    pub(crate) fn stores_at(url: &str, database: &str) -> ClickHouseStores {
        ClickHouseStores::new(Client::default().with_url(url), database).expect("valid name")
    }

    /// A client bound to this database, connected directly.
    pub(crate) fn client(&self) -> Client {
        Client::default()
            .with_url(&self.url)
            .with_validation(false)
            .with_database(&self.name)
    }

    /// A client bound to this database on shard `index` of the cluster.
    pub(crate) fn shard(&self, index: usize) -> Client {
        Client::default()
            .with_url(&self.shards[index])
            .with_validation(false)
            .with_database(&self.name)
    }

    /// `OPTIMIZE TABLE … FINAL` of the usage table: on one server, or of
    /// the local table on every shard.
    pub(crate) async fn optimize_usage(&self) {
        if self.shards.is_empty() {
            optimize(&self.client(), "usage_hourly").await;
        }
        for shard in 0..self.shards.len() {
            optimize(&self.shard(shard), "usage_hourly_local").await;
        }
    }

    /// `SELECT count()` of `table` for the given tenants.
    pub(crate) async fn count(&self, table: &str, tenants: &[&str]) -> u64 {
        count(&self.client(), table, tenants).await
    }
}

/// `SELECT count()` of `table` through `client` for the given tenants.
pub(crate) async fn count(client: &Client, table: &str, tenants: &[&str]) -> u64 {
    client
        .query("SELECT count() FROM ? WHERE has(?, tenant_id)")
        .bind(tenancy_store_clickhouse::clickhouse::sql::Identifier(table))
        .bind(tenants)
        .fetch_one::<u64>()
        .await
        .expect("count")
}

async fn optimize(client: &Client, table: &str) {
    client
        .query("OPTIMIZE TABLE ? FINAL")
        .bind(tenancy_store_clickhouse::clickhouse::sql::Identifier(table))
        .execute()
        .await
        .expect("optimize");
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Blocking and runtime-free, so it also runs while a failed test
        // unwinds.
        let drop = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        for url in std::iter::once(&self.url).chain(&self.shards) {
            if let Err(e) = post(url, &drop) {
                eprintln!("could not drop test database {} on {url}: {e}", self.name);
            }
        }
    }
}

/// POSTs `sql` to the HTTP interface at `url` (plain `http://host:port`).
fn post(url: &str, sql: &str) -> std::io::Result<()> {
    let authority = url
        .trim_start_matches("http://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(response))
    }
}
