//! Framework-agnostic multi-tenancy: who is calling, for which tenant, with
//! which role, within which limits, and a record of what they did.
//!
//! `tenancy-core` knows no web framework. It holds the model ([`tenant`],
//! [`plan`], [`rbac`], [`context`]), the refusals ([`error`]), the
//! configuration ([`config`]) and the store traits with their in-memory
//! implementations ([`store`]). The `tenancy-axum` and `tenancy-actix`
//! adapters plug it into a web stack; `tenancy-store-redis` and
//! `tenancy-store-clickhouse` implement the stores for many instances and for
//! volume.
//!
//! # Example
//!
//! Configure a deployment, create a tenant in the embedded store, look up its
//! plan and charge its monthly event quota:
//!
//! ```
//! use std::sync::Arc;
//! use chrono::Utc;
//! use tenancy_core::config::TenancyConfig;
//! use tenancy_core::error::{ErrorKind, TenancyError};
//! use tenancy_core::label::Label;
//! use tenancy_core::limit::{QuotaCharge, QuotaKey};
//! use tenancy_core::plan::{EVENTS_BUDGET, Limit};
//! use tenancy_core::rbac::{Permission, Role};
//! use tenancy_core::store::memory::{MemoryQuotaStore, MemoryTenantStore};
//! use tenancy_core::store::{QuotaStore, TenantStore};
//! use tenancy_core::tenant::{TenantRecord, TenantId};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let config = TenancyConfig::from_vars([
//!     ("TENANCY_TENANT_HEADER", "X-Tenant-ID"),
//!     ("TENANCY_DEFAULT_PLAN", "starter"),
//! ])?;
//! let plans = config.plans();
//!
//! // Tenant ids are validated before they reach a store, a key or a log line.
//! assert!(TenantId::new("acme:{evil}").is_err());
//! let acme = TenantId::new("acme")?;
//!
//! let tenants: Arc<dyn TenantStore> = Arc::new(MemoryTenantStore::new());
//! tenants.insert(TenantRecord::new(acme.clone(), "Acme Corp", config.default_plan.clone())).await?;
//! let tenant = tenants.get(&acme).await?.expect("just created");
//! let quotas = &plans.get(&tenant.plan).expect("starter exists").quotas;
//! assert_eq!(quotas.rps, 100);
//!
//! // Roles are ordered; permissions follow from them.
//! assert!(Role::Admin.can(Permission::ManageApiKeys));
//! assert!(!Role::Operator.can(Permission::ReadAudit));
//!
//! // Period quotas follow the UTC calendar.
//! let quotas_store = MemoryQuotaStore::new();
//! let budget = quotas.budget(EVENTS_BUDGET).expect("events budget");
//! let key = QuotaKey::new(acme.clone(), Label::new(EVENTS_BUDGET)?, budget.period, Utc::now());
//! let charge = quotas_store.charge(&key, 1_000, budget.limit).await?;
//! assert_eq!(charge, QuotaCharge::Charged { used: 1_000 });
//! let refused = quotas_store.charge(&key, 60_000_000, budget.limit).await?;
//! assert!(!refused.is_charged());
//!
//! // Refusals carry their status, code, headers and problem body.
//! let err = TenancyError::new(ErrorKind::QuotaExceeded {
//!     budget: EVENTS_BUDGET.into(),
//!     retry_after: Some(key.time_to_reset(Utc::now())),
//! });
//! assert_eq!(err.status(), 429);
//! assert_eq!(err.code(), "quota_exceeded");
//! assert!(err.headers().contains_key("retry-after"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! - `testkit`: the store acceptance suite ([`testkit::stores`]), public so
//!   third-party stores can prove themselves against it.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The concurrent maps of the request path: `DashMap` with foldhash, a fast
/// hasher still seeded at random per map, since keys come from requests.
pub(crate) type ConcurrentMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;

pub mod admin;
pub mod audit;
pub mod client_addr;
pub(crate) mod clock;
pub mod config;
pub mod context;
pub mod credential;
pub mod egress;
pub mod engine;
pub mod error;
pub mod gcra;
pub mod guard;
pub mod handle;
pub mod key_id;
pub mod keyspace;
pub mod label;
pub mod limit;
pub mod member;
pub mod metering;
#[cfg(feature = "openapi")]
#[cfg_attr(docsrs, doc(cfg(feature = "openapi")))]
pub mod openapi;
pub mod pipeline;
pub mod plan;
pub mod rbac;
pub mod request;
pub mod resolve;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub(crate) mod tenant_metrics;
pub mod writer;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use config::TenancyConfig;
pub use context::TenantContext;
pub use engine::{Admission, Tenancy};
pub use error::TenancyError;
