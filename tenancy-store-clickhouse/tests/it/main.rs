//! Tests against the real ClickHouse server named by
//! `TENANCY_TEST_CLICKHOUSE_URL`, and the cluster of two shards named by
//! `TENANCY_TEST_CLICKHOUSE_CLUSTER` and `TENANCY_TEST_CLICKHOUSE_SHARDS`
//! (all started by `scripts/test.sh`); each test skips when its variables
//! are unset and uses a database of its own.

mod acceptance;
mod cluster;
mod errors;
mod fixture;
mod migrate;
mod outage;
mod proxy;
mod retention;
mod tenant_query;
#[cfg(feature = "tls")]
mod tls;
mod unreadable;
mod volume;
