//! ClickHouse implementations of the [`tenancy_core`] audit and metering
//! stores, for audit logs and usage counts at volume.
//!
//! - [`ClickHouseStores`]: the handle on one database; [`migrate`] creates
//!   the tables (see [`schema`]), on one server or, with
//!   [`ClickHouseCluster`], spread over the shards of a cluster by tenant
//!   (see [`cluster`]);
//! - [`ClickHouseAuditSink`] ([`AuditSink`]) and [`ClickHouseAuditQuery`]
//!   ([`AuditQuery`]): the audit log;
//! - [`ClickHouseUsageMeter`] ([`UsageMeter`]): hourly usage counts;
//! - [`ClickHouseTelemetryStore`] ([`TelemetryStore`](tenancy_core::store::TelemetryStore)):
//!   tenants' telemetry events;
//! - both sinks are [`BatchSink`](tenancy_core::writer::BatchSink)s of the
//!   core's one writer ([`tenancy_core::writer`]), which the engine runs:
//!   hand them to `Tenancy::builder` and it batches, retries and holds
//!   events through an outage;
//! - [`TenantQuery`] and [`tenant_sql!`]: SQL that cannot forget the tenant
//!   (see [`tenant_query`]);
//! - [`purge_audit`] and [`delete_tenant`]: per-tenant retention and deletion;
//! - `https_client` (feature `tls`): a client for `https://` servers, with
//!   a CA file of your own.
//!
//! Errors are [`StoreError`]s: [`StoreError::Unavailable`] when the server
//! cannot be reached, [`StoreError::Timeout`] when the client gave up,
//! [`StoreError::Backend`] otherwise, carrying a [`ClickHouseError`] whose
//! message never holds credentials.
//!
//! The crate works with ClickHouse from 18.16 on (Debian 12's server): it
//! binds values on the client (`?`), avoids types and settings newer
//! servers added, and declares the audit table's `TTL` only where the
//! server supports it (19.6 and later).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use chrono::Utc;
//! use tenancy_core::audit::{ActorKind, AuditEvent, AuditFilter};
//! use tenancy_core::label::Label;
//! use tenancy_core::metering::UsageRecord;
//! use tenancy_core::store::{AuditQuery, UsageMeter};
//! use tenancy_core::tenant::TenantId;
//! use tenancy_store_clickhouse::clickhouse::Client;
//! use tenancy_core::writer::{AuditWriter, BatchConfig, UsageWriter};
//! use tenancy_store_clickhouse::{ClickHouseStores, tenant_sql};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::default().with_url("http://127.0.0.1:8123");
//!     let stores = ClickHouseStores::new(client, "tenancy")?;
//!     stores.migrate().await?;
//!
//!     // Request paths enqueue and never wait; a background task writes
//!     // batches of up to 10,000 events, or every second.
//!     let audit = AuditWriter::audit(stores.audit_sink(), BatchConfig::default());
//!     let usage = UsageWriter::usage(stores.usage_meter(), BatchConfig::default());
//!     let acme = TenantId::new("acme")?;
//!     audit.try_enqueue(
//!         AuditEvent::new(acme.clone(), "alice", ActorKind::User, "runbook.trigger")
//!             .resource("rb-42")
//!             .outcome(202),
//!     );
//!     usage.try_enqueue(UsageRecord::new(acme.clone(), Label::new("metric")?, Utc::now(), 250));
//!
//!     // On the way out, write what is still buffered.
//!     let written = audit.shutdown().await;
//!     usage.shutdown().await;
//!     assert_eq!(written.dropped, 0);
//!
//!     // Reads are bound to one tenant.
//!     let events = stores
//!         .audit_query()
//!         .query(&acme, &AuditFilter::default().actor("alice").limit(20))
//!         .await?;
//!     let hour_ago = Utc::now() - chrono::Duration::hours(1);
//!     let counts = stores.usage_meter().usage(&acme, hour_ago, Utc::now()).await?;
//!     let triggers: u64 = stores
//!         .tenant_query(&acme)
//!         .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant} AND action = ?"))
//!         .bind("runbook.trigger")
//!         .fetch_one()
//!         .await?;
//!     println!("{} events, {} usage rows, {triggers} triggers", events.len(), counts.len());
//!
//!     // Retention: a plan's 30 days, and removal of a departed tenant.
//!     stores.purge_audit(&acme, Utc::now() - chrono::Duration::days(30)).await?;
//!     stores.delete_tenant(&TenantId::new("globex")?).await?;
//!     stores.wait_for_mutations(Duration::from_secs(60)).await?;
//!     Ok(())
//! }
//! ```
//!
//! [`migrate`]: ClickHouseStores::migrate
//! [`purge_audit`]: ClickHouseStores::purge_audit
//! [`delete_tenant`]: ClickHouseStores::delete_tenant
//! [`AuditSink`]: tenancy_core::store::AuditSink
//! [`AuditQuery`]: tenancy_core::store::AuditQuery
//! [`UsageMeter`]: tenancy_core::store::UsageMeter
//! [`StoreError`]: tenancy_core::store::StoreError
//! [`StoreError::Unavailable`]: tenancy_core::store::StoreError::Unavailable
//! [`StoreError::Timeout`]: tenancy_core::store::StoreError::Timeout
//! [`StoreError::Backend`]: tenancy_core::store::StoreError::Backend

#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
pub mod cluster;
mod error;
mod retention;
mod rows;
pub mod schema;
mod stores;
mod telemetry;
pub mod tenant_query;
#[cfg(feature = "tls")]
mod tls;
mod unreadable;
mod usage;

pub use clickhouse;

pub use audit::{ClickHouseAuditQuery, ClickHouseAuditSink};
pub use cluster::{ClickHouseCluster, InvalidCluster};
pub use error::ClickHouseError;
pub use schema::{InvalidServerVersion, Migration, ServerVersion};
pub use stores::{ClickHouseStores, InvalidDatabaseName};
pub use telemetry::{ClickHouseTelemetryStore, ERASE_WAIT};
pub use tenant_query::{TenantQuery, TenantSql};
#[cfg(feature = "tls")]
pub use tls::{TlsSetupError, https_client};
pub use unreadable::ROWS_SKIPPED_TOTAL;
pub use usage::ClickHouseUsageMeter;
