//! The tables of this crate and the migration that creates them.
//!
//! The tables are shared by all tenants and keyed by `tenant_id` first, so
//! one tenant's rows are stored together and every tenant-scoped read or
//! delete uses the primary index.
//!
//! `audit_log` (`MergeTree`, partitioned by month, sorted by
//! `(tenant_id, timestamp)`):
//!
//! | column | type | holds |
//! |---|---|---|
//! | `timestamp` | `DateTime('UTC')` | whole seconds of the event time |
//! | `millis` | `UInt16` | milliseconds within that second (0–999) |
//! | `tenant_id` | `String` | the tenant |
//! | `actor` | `String` | subject, key id or `anonymous` |
//! | `actor_kind` | `String` | `user`, `api_key`, `service`, `anonymous` |
//! | `action` | `String` | what was done |
//! | `resource` | `Nullable(String)` | what it was done to |
//! | `outcome` | `UInt16` | HTTP status |
//! | `request_id` | `Nullable(String)` | request id |
//! | `client_addr` | `Nullable(String)` | client IP address, as text |
//! | `details` | `String` | further details, a JSON object of strings |
//!
//! `usage_hourly` (`SummingMergeTree(count)`, partitioned by month, sorted
//! by `(tenant_id, hour, event_type)`): `tenant_id String`,
//! `hour DateTime('UTC')`, `event_type String`, `count UInt64`. Rows of the
//! same key are summed when parts merge, which happens lazily, so reads
//! always `sum(count)`.
//!
//! `telemetry` (`MergeTree`, partitioned by month, sorted by
//! `(tenant_id, timestamp)`): `timestamp DateTime('UTC')`, `millis UInt16`,
//! `tenant_id String`, `event_type String`, `name String`, `value Float64`,
//! `labels String` (a JSON object of strings).
//!
//! The column types are chosen to work from ClickHouse 18.16 on: it has no
//! `DateTime64` (hence the separate `millis` column), no `Map` (hence JSON in
//! a `String`) and no `IPv6` type. Servers from 19.6 on also get a table
//! `TTL` of [`AUDIT_TTL_DAYS`] on `audit_log`; on older servers
//! [`ClickHouseStores::purge_audit`](crate::ClickHouseStores::purge_audit)
//! is the way to expire events.
//!
//! On a [cluster](crate::cluster), each shard holds these tables as
//! [`AUDIT_LOCAL_TABLE`], [`USAGE_LOCAL_TABLE`] and
//! [`TELEMETRY_LOCAL_TABLE`], and `audit_log`, `usage_hourly` and
//! `telemetry` are `Distributed` tables over them, with the same columns.

use std::fmt;
use std::str::FromStr;

use clickhouse::Client;
use tenancy_core::store::StoreError;

use crate::error::{backend, store_error};

/// Name of the audit table.
pub const AUDIT_TABLE: &str = "audit_log";
/// Name of the usage table.
pub const USAGE_TABLE: &str = "usage_hourly";
/// Name of the telemetry table.
pub const TELEMETRY_TABLE: &str = "telemetry";
/// Name of the telemetry table on each shard of a cluster.
pub const TELEMETRY_LOCAL_TABLE: &str = "telemetry_local";
/// Name of the audit table on each shard of a cluster.
pub const AUDIT_LOCAL_TABLE: &str = "audit_log_local";
/// Name of the usage table on each shard of a cluster.
pub const USAGE_LOCAL_TABLE: &str = "usage_hourly_local";
/// Days an audit event is kept by the table `TTL` (servers from 19.6 on).
pub const AUDIT_TTL_DAYS: u32 = 365;

/// The first server version with table `TTL` on `MergeTree`.
const TTL_SINCE: ServerVersion = ServerVersion {
    major: 19,
    minor: 6,
    patch: 0,
};

/// The version a ClickHouse server reports in `SELECT version()`.
///
/// ```
/// use tenancy_store_clickhouse::ServerVersion;
///
/// let old: ServerVersion = "18.16.1".parse()?;
/// assert!(!old.supports_table_ttl());
/// assert!("24.8.4.13".parse::<ServerVersion>()?.supports_table_ttl());
/// # Ok::<(), tenancy_store_clickhouse::InvalidServerVersion>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// First component (year-based from 2019 on).
    pub major: u32,
    /// Second component.
    pub minor: u32,
    /// Third component.
    pub patch: u32,
}

impl ServerVersion {
    /// Whether `MergeTree` tables accept a `TTL` clause (19.6 and later).
    pub fn supports_table_ttl(self) -> bool {
        self >= TTL_SINCE
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `major.minor[.patch[…]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidServerVersion;

impl fmt::Display for InvalidServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a server version must look like 18.16.1")
    }
}

impl std::error::Error for InvalidServerVersion {}

impl FromStr for ServerVersion {
    type Err = InvalidServerVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('.').map(|p| p.parse::<u32>());
        let mut next = |required: bool| match parts.next() {
            Some(Ok(n)) => Ok(n),
            None if !required => Ok(0),
            _ => Err(InvalidServerVersion),
        };
        Ok(Self {
            major: next(true)?,
            minor: next(true)?,
            patch: next(false)?,
        })
    }
}

/// What [`ClickHouseStores::migrate`](crate::ClickHouseStores::migrate) found
/// and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// The server's version.
    pub server_version: ServerVersion,
    /// Whether the `CREATE TABLE` of `audit_log` carries the `TTL`: on
    /// servers from 19.6 on. A table created before a server upgrade keeps
    /// its definition (`IF NOT EXISTS` changes nothing); give it the `TTL`
    /// with `ALTER TABLE audit_log MODIFY TTL timestamp + INTERVAL 365 DAY`.
    /// On a cluster: whether every shard's local table carries it.
    pub audit_ttl: bool,
    /// How many shards the tables are spread over: 1 on one server.
    pub shards: usize,
}

/// ClickHouse's "already exists" exception codes: concurrent `IF NOT EXISTS`
/// creations may still report them on some versions.
const ALREADY_EXISTS_CODES: [&str; 2] = ["Code: 57,", "Code: 82,"];

/// The server's version.
pub(crate) async fn server_version(client: &Client) -> Result<ServerVersion, StoreError> {
    let text = client
        .query("SELECT version()")
        .fetch_one::<String>()
        .await
        .map_err(store_error)?;
    text.parse()
        .map_err(|_| backend(format!("unexpected server version {text:?}")))
}

/// `CREATE DATABASE` and every `CREATE TABLE`, each `IF NOT EXISTS`.
///
/// `admin` must not name the database (it may not exist yet); `database` is
/// a validated identifier.
pub(crate) async fn migrate(admin: &Client, database: &str) -> Result<Migration, StoreError> {
    let server_version = server_version(admin).await?;
    let audit_ttl = server_version.supports_table_ttl();
    let statements = [
        create_database(database),
        create_table(
            database,
            AUDIT_TABLE,
            AUDIT_COLUMNS,
            &audit_engine(audit_ttl),
        ),
        create_table(database, USAGE_TABLE, USAGE_COLUMNS, USAGE_ENGINE),
        create_table(
            database,
            TELEMETRY_TABLE,
            TELEMETRY_COLUMNS,
            TELEMETRY_ENGINE,
        ),
    ];
    for sql in &statements {
        execute_ddl(admin, sql).await?;
    }
    Ok(Migration {
        server_version,
        audit_ttl,
        shards: 1,
    })
}

/// The migration on `cluster`: on every shard the database, the local
/// tables and the `Distributed` tables over them; on `entry` (the node the
/// queries go to, which need not be a shard) the database and the
/// `Distributed` tables. Each statement is `IF NOT EXISTS`.
///
/// `entry` and `shards` must not name the database; `database` and
/// `cluster` are validated identifiers.
pub(crate) async fn migrate_cluster(
    entry: &Client,
    shards: &[Client],
    database: &str,
    cluster: &str,
) -> Result<Migration, StoreError> {
    let server_version = server_version(entry).await?;
    let configured: u64 = entry
        .query("SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await
        .map_err(store_error)?;
    if configured != shards.len() as u64 {
        return Err(backend(format!(
            "cluster {cluster:?} has {configured} shards in the server's remote_servers, \
             and {} were given",
            shards.len()
        )));
    }
    let mut audit_ttl = true;
    for shard in shards {
        audit_ttl &= self::server_version(shard).await?.supports_table_ttl();
    }
    let distributed = [
        create_table(
            database,
            AUDIT_TABLE,
            AUDIT_COLUMNS,
            &distributed_engine(cluster, database, AUDIT_LOCAL_TABLE),
        ),
        create_table(
            database,
            USAGE_TABLE,
            USAGE_COLUMNS,
            &distributed_engine(cluster, database, USAGE_LOCAL_TABLE),
        ),
        create_table(
            database,
            TELEMETRY_TABLE,
            TELEMETRY_COLUMNS,
            &distributed_engine(cluster, database, TELEMETRY_LOCAL_TABLE),
        ),
    ];
    let local = [
        create_table(
            database,
            AUDIT_LOCAL_TABLE,
            AUDIT_COLUMNS,
            &audit_engine(audit_ttl),
        ),
        create_table(database, USAGE_LOCAL_TABLE, USAGE_COLUMNS, USAGE_ENGINE),
        create_table(
            database,
            TELEMETRY_LOCAL_TABLE,
            TELEMETRY_COLUMNS,
            TELEMETRY_ENGINE,
        ),
    ];
    for shard in shards {
        execute_ddl(shard, &create_database(database)).await?;
        for sql in local.iter().chain(&distributed) {
            execute_ddl(shard, sql).await?;
        }
    }
    execute_ddl(entry, &create_database(database)).await?;
    for sql in &distributed {
        execute_ddl(entry, sql).await?;
    }
    Ok(Migration {
        server_version,
        audit_ttl,
        shards: shards.len(),
    })
}

async fn execute_ddl(client: &Client, sql: &str) -> Result<(), StoreError> {
    match client.query(sql).execute().await {
        Ok(()) => Ok(()),
        Err(clickhouse::error::Error::BadResponse(message))
            if ALREADY_EXISTS_CODES.iter().any(|c| message.contains(c)) =>
        {
            Ok(())
        }
        Err(e) => Err(store_error(e)),
    }
}

/// The columns of the audit table.
const AUDIT_COLUMNS: &str = "\
    timestamp DateTime('UTC'), \
    millis UInt16, \
    tenant_id String, \
    actor String, \
    actor_kind String, \
    action String, \
    resource Nullable(String), \
    outcome UInt16, \
    request_id Nullable(String), \
    client_addr Nullable(String), \
    details String";

/// The columns of the usage table.
const USAGE_COLUMNS: &str = "\
    tenant_id String, \
    hour DateTime('UTC'), \
    event_type String, \
    count UInt64";

/// The columns of the telemetry table.
const TELEMETRY_COLUMNS: &str = "\
    timestamp DateTime('UTC'), \
    millis UInt16, \
    tenant_id String, \
    event_type String, \
    name String, \
    value Float64, \
    labels String";

/// The engine of the telemetry table where its rows are stored.
const TELEMETRY_ENGINE: &str = "MergeTree \
    PARTITION BY toYYYYMM(timestamp) \
    ORDER BY (tenant_id, timestamp)";

/// The engine of the usage table where its rows are stored.
const USAGE_ENGINE: &str = "SummingMergeTree(count) \
    PARTITION BY toYYYYMM(hour) \
    ORDER BY (tenant_id, hour, event_type)";

fn create_database(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS `{database}`")
}

fn create_table(database: &str, table: &str, columns: &str, engine: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({columns}) ENGINE = {engine}")
}

/// The engine of the audit table where its rows are stored, with a `TTL`
/// when `ttl` is set.
fn audit_engine(ttl: bool) -> String {
    let ttl = if ttl {
        format!(" TTL timestamp + INTERVAL {AUDIT_TTL_DAYS} DAY")
    } else {
        String::new()
    };
    format!("MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (tenant_id, timestamp){ttl}")
}

/// A `Distributed` engine over `local` on every shard of `cluster`, one
/// tenant's rows on one shard.
fn distributed_engine(cluster: &str, database: &str, local: &str) -> String {
    format!("Distributed(`{cluster}`, `{database}`, `{local}`, cityHash64(tenant_id))")
}

/// Whether `name` is a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most
/// 64 bytes), safe to quote with backticks.
pub(crate) fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_gate_ttl() {
        let v: ServerVersion = "18.16.1".parse().expect("valid");
        assert_eq!(
            v,
            ServerVersion {
                major: 18,
                minor: 16,
                patch: 1
            }
        );
        assert!(!v.supports_table_ttl());
        assert!(
            !"19.5.9"
                .parse::<ServerVersion>()
                .expect("valid")
                .supports_table_ttl()
        );
        assert!(
            "19.6"
                .parse::<ServerVersion>()
                .expect("valid")
                .supports_table_ttl()
        );
        assert!(
            "25.3.2.1"
                .parse::<ServerVersion>()
                .expect("valid")
                .supports_table_ttl()
        );
        assert!("".parse::<ServerVersion>().is_err());
        assert!("19".parse::<ServerVersion>().is_err());
        assert!("19.x".parse::<ServerVersion>().is_err());
    }

    #[test]
    fn ttl_only_when_asked() {
        assert!(!audit_engine(false).contains("TTL"));
        assert!(audit_engine(true).ends_with("TTL timestamp + INTERVAL 365 DAY"));
    }

    #[test]
    fn distributed_tables_shard_by_tenant() {
        assert_eq!(
            create_table(
                "db",
                AUDIT_TABLE,
                "tenant_id String",
                &distributed_engine("c", "db", AUDIT_LOCAL_TABLE)
            ),
            "CREATE TABLE IF NOT EXISTS `db`.`audit_log` (tenant_id String) \
             ENGINE = Distributed(`c`, `db`, `audit_log_local`, cityHash64(tenant_id))"
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_plain_identifier("tenancy"));
        assert!(is_plain_identifier("_t1"));
        assert!(!is_plain_identifier("1t"));
        assert!(!is_plain_identifier("a`b"));
        assert!(!is_plain_identifier("a.b"));
        assert!(!is_plain_identifier(""));
    }
}
