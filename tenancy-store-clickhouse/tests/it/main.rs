//! Tests against the real ClickHouse server named by
//! `TENANCY_TEST_CLICKHOUSE_URL` (started by `scripts/test.sh`); each test
//! skips when it is unset and uses a database of its own.

mod acceptance;
mod errors;
mod fixture;
mod migrate;
mod outage;
mod proxy;
mod retention;
mod tenant_query;
#[cfg(feature = "tls")]
mod tls;
mod volume;
