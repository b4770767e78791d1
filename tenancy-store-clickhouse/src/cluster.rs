//! [`ClickHouseCluster`]: the shards of a ClickHouse cluster that the
//! tables of this crate are spread over.
//!
//! On a cluster, [`ClickHouseStores::migrate`](crate::ClickHouseStores::migrate)
//! creates on every shard the tables of [`schema`](crate::schema) under the
//! names [`AUDIT_LOCAL_TABLE`](crate::schema::AUDIT_LOCAL_TABLE) and
//! [`USAGE_LOCAL_TABLE`](crate::schema::USAGE_LOCAL_TABLE), and under the
//! usual names `Distributed` tables over them, sharded by
//! `cityHash64(tenant_id)`: every row of one tenant lives on one shard, so a
//! tenant's reads touch one shard's primary index, and tenants spread
//! evenly.
//!
//! - **Writes** go to the `Distributed` tables with
//!   `insert_distributed_sync = 1`: ClickHouse routes each row to its
//!   shard, and the `INSERT` returns once every shard has stored its rows.
//!   An acknowledged batch is on its shard, not in a queue on the node that
//!   took it; a shard that is down fails the batch, and the writer retries
//!   it whole. The shards that did store their rows keep them, so a batch
//!   retried after a partial failure reaches them twice: on a cluster,
//!   delivery through a shard outage is at least once (audit events can be
//!   duplicated, usage over-counted), where one server's is exactly once.
//! - **Reads** go to the `Distributed` tables too, through the same
//!   tenant-bound queries as on one server.
//! - **Retention and deletion** run their mutations on the local tables of
//!   every shard, since `Distributed` tables take no mutations.
//!
//! The cluster is the one named in the servers' `remote_servers`
//! configuration; [`migrate`](crate::ClickHouseStores::migrate) checks that
//! it has as many shards as given here. `ON CLUSTER` DDL needs ZooKeeper,
//! so the migration connects to each shard itself. Each shard is one
//! server: replicated shards (`ReplicatedMergeTree`) are not created.

use std::fmt;

use clickhouse::Client;

use crate::schema::is_plain_identifier;

/// A named ClickHouse cluster and a client for each of its shards (in any
/// order).
///
/// ```
/// use tenancy_store_clickhouse::{ClickHouseCluster, ClickHouseStores, clickhouse::Client};
///
/// let shard = |url: &str| Client::default().with_url(url);
/// let cluster = ClickHouseCluster::new(
///     "tenancy",
///     [shard("http://ch-1:8123"), shard("http://ch-2:8123")],
/// )?;
/// assert_eq!(cluster.shards(), 2);
/// // Any node of the cluster, or a balancer over them, takes the queries.
/// let stores = ClickHouseStores::new(shard("http://ch-1:8123"), "tenancy")?.on_cluster(cluster);
/// assert_eq!(stores.cluster(), Some("tenancy"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ClickHouseCluster {
    pub(crate) name: Box<str>,
    pub(crate) shards: Vec<Client>,
}

impl ClickHouseCluster {
    /// The cluster `name` with one client per shard (URL, user, password
    /// as configured on each).
    pub fn new(
        name: &str,
        shards: impl IntoIterator<Item = Client>,
    ) -> Result<Self, InvalidCluster> {
        if !is_plain_identifier(name) {
            return Err(InvalidCluster::Name);
        }
        let shards: Vec<Client> = shards.into_iter().collect();
        if shards.is_empty() {
            return Err(InvalidCluster::NoShards);
        }
        Ok(Self {
            name: name.into(),
            shards,
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many shards it has.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

impl fmt::Debug for ClickHouseCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The clients are left out: they may hold credentials.
        f.debug_struct("ClickHouseCluster")
            .field("name", &self.name)
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Why [`ClickHouseCluster::new`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidCluster {
    /// The name is not 1 to 64 characters of `A-Z`, `a-z`, `0-9` and `_`,
    /// not starting with a digit.
    Name,
    /// No shard was given.
    NoShards,
}

impl fmt::Display for InvalidCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Name => "a cluster name must be 1 to 64 characters of A-Z, a-z, 0-9 and '_', not starting with a digit",
            Self::NoShards => "a cluster needs at least one shard",
        })
    }
}

impl std::error::Error for InvalidCluster {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shards_are_checked() {
        let one = || [Client::default()];
        assert_eq!(
            ClickHouseCluster::new("a-b", one()).err(),
            Some(InvalidCluster::Name)
        );
        assert_eq!(
            ClickHouseCluster::new("", one()).err(),
            Some(InvalidCluster::Name)
        );
        assert_eq!(
            ClickHouseCluster::new("c", []).err(),
            Some(InvalidCluster::NoShards)
        );
        let cluster = ClickHouseCluster::new("tenancy_shards", one()).expect("valid");
        assert_eq!((cluster.name(), cluster.shards()), ("tenancy_shards", 1));
        assert_eq!(
            format!("{cluster:?}"),
            "ClickHouseCluster { name: \"tenancy_shards\", shards: 1 }"
        );
    }
}
