//! Where the store tests find their real servers.
//!
//! `scripts/test.sh` starts private Redis and ClickHouse servers and exports
//! their addresses in [`REDIS_URL_VAR`] and [`CLICKHOUSE_URL_VAR`]. Store tests
//! read them at run time with [`redis_url`] and [`clickhouse_url`]:
//!
//! - unset: the test prints a notice and returns early (skips);
//! - unset while [`REQUIRE_SERVICES_VAR`] is set (as `scripts/test.sh` does):
//!   the test panics, so a skipped store test can never pass unnoticed;
//! - set but unreachable: the test fails when it connects.
//!
//! ```
//! if let Some(url) = tenancy_core::testkit::services::redis_url() {
//!     // connect to `url` and run the store test
//!     assert!(url.starts_with("redis://"));
//! }
//! ```

/// Environment variable holding the Redis URL for store tests.
pub const REDIS_URL_VAR: &str = "TENANCY_TEST_REDIS_URL";
/// Environment variable holding the ClickHouse HTTP URL for store tests.
pub const CLICKHOUSE_URL_VAR: &str = "TENANCY_TEST_CLICKHOUSE_URL";
/// Environment variable holding the `rediss://` URL of a Redis that speaks
/// only TLS, with a certificate signed by the CA in [`TLS_CA_VAR`].
pub const REDIS_TLS_URL_VAR: &str = "TENANCY_TEST_REDIS_TLS_URL";
/// Environment variable holding the seed nodes of a Redis Cluster of 3
/// masters and 3 replicas, comma-separated `redis://host:port` URLs.
pub const REDIS_CLUSTER_NODES_VAR: &str = "TENANCY_TEST_REDIS_CLUSTER_NODES";
/// Environment variable holding the seed nodes of a Redis Cluster of 3
/// masters that speaks only TLS, comma-separated `rediss://host:port` URLs,
/// with certificates signed by the CA in [`TLS_CA_VAR`].
pub const REDIS_TLS_CLUSTER_NODES_VAR: &str = "TENANCY_TEST_REDIS_TLS_CLUSTER_NODES";
/// Environment variable holding the `https://` URL of the test ClickHouse,
/// whose certificate the CA in [`TLS_CA_VAR`] signed.
pub const CLICKHOUSE_TLS_URL_VAR: &str = "TENANCY_TEST_CLICKHOUSE_TLS_URL";
/// Environment variable holding the name of a ClickHouse cluster of two
/// shards, as the servers' `remote_servers` configuration names it.
pub const CLICKHOUSE_CLUSTER_VAR: &str = "TENANCY_TEST_CLICKHOUSE_CLUSTER";
/// Environment variable holding the HTTP URLs of that cluster's shards,
/// comma-separated, in the order of `remote_servers`.
pub const CLICKHOUSE_SHARDS_VAR: &str = "TENANCY_TEST_CLICKHOUSE_SHARDS";
/// Environment variable holding the path of the test CA's PEM certificate.
pub const TLS_CA_VAR: &str = "TENANCY_TEST_TLS_CA";
/// Environment variable holding the path of a CA that signed nothing the
/// test servers use: what a client with the wrong CA file trusts.
pub const TLS_OTHER_CA_VAR: &str = "TENANCY_TEST_TLS_OTHER_CA";
/// When set (to anything), store tests refuse to skip.
pub const REQUIRE_SERVICES_VAR: &str = "TENANCY_TEST_REQUIRE_SERVICES";

/// The Redis URL for store tests, or `None` (after printing a notice) when the
/// variable is unset.
///
/// # Panics
///
/// When the variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL_VAR)
}

/// The TLS Redis for store tests: its `rediss://` URL, the test CA's
/// certificate file and a wrong CA's; `None` (after printing a notice) when
/// unset.
///
/// # Panics
///
/// When a variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn redis_tls() -> Option<(String, std::path::PathBuf, std::path::PathBuf)> {
    let url = service_url(REDIS_TLS_URL_VAR)?;
    let ca = service_url(TLS_CA_VAR)?;
    let other = service_url(TLS_OTHER_CA_VAR)?;
    Some((url, ca.into(), other.into()))
}

/// The seed nodes of the test Redis Cluster; `None` (after printing a
/// notice) when unset.
///
/// # Panics
///
/// When the variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn redis_cluster_nodes() -> Option<Vec<String>> {
    let nodes = service_url(REDIS_CLUSTER_NODES_VAR)?;
    Some(nodes.split(',').map(str::to_owned).collect())
}

/// The seed nodes of the test Redis Cluster over TLS and the test CA's
/// certificate file; `None` (after printing a notice) when unset.
///
/// # Panics
///
/// When a variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn redis_tls_cluster() -> Option<(Vec<String>, std::path::PathBuf)> {
    let nodes = service_url(REDIS_TLS_CLUSTER_NODES_VAR)?;
    let ca = service_url(TLS_CA_VAR)?;
    Some((nodes.split(',').map(str::to_owned).collect(), ca.into()))
}

/// The ClickHouse HTTPS endpoint for store tests: its `https://` URL, the
/// test CA's certificate file and a wrong CA's; `None` (after printing a
/// notice) when unset.
///
/// # Panics
///
/// When a variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn clickhouse_tls() -> Option<(String, std::path::PathBuf, std::path::PathBuf)> {
    let url = service_url(CLICKHOUSE_TLS_URL_VAR)?;
    let ca = service_url(TLS_CA_VAR)?;
    let other = service_url(TLS_OTHER_CA_VAR)?;
    Some((url, ca.into(), other.into()))
}

/// The test ClickHouse cluster: its name and its shards' HTTP URLs; `None`
/// (after printing a notice) when unset.
///
/// # Panics
///
/// When a variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn clickhouse_cluster() -> Option<(String, Vec<String>)> {
    let name = service_url(CLICKHOUSE_CLUSTER_VAR)?;
    let shards = service_url(CLICKHOUSE_SHARDS_VAR)?;
    Some((name, shards.split(',').map(str::to_owned).collect()))
}

/// The ClickHouse HTTP URL for store tests, or `None` (after printing a
/// notice) when the variable is unset.
///
/// # Panics
///
/// When the variable is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn clickhouse_url() -> Option<String> {
    service_url(CLICKHOUSE_URL_VAR)
}

/// Reads the service URL in `var`; see the module docs for what happens when
/// it is unset.
///
/// # Panics
///
/// When `var` is unset but [`REQUIRE_SERVICES_VAR`] is set.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os(REQUIRE_SERVICES_VAR).is_some() => {
            panic!("{var} is unset but {REQUIRE_SERVICES_VAR} is set: this store test must run")
        }
        _ => {
            eprintln!("skipping store test: {var} is unset (run scripts/test.sh)");
            None
        }
    }
}
