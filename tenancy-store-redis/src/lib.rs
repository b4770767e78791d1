//! Redis implementations of the [`tenancy_core`] store traits, so many
//! instances of a service share tenants, API keys, rate limits and quotas.
//!
//! | trait | type |
//! |---|---|
//! | [`TenantStore`](tenancy_core::store::TenantStore) | [`RedisTenantStore`] |
//! | [`ApiKeyStore`](tenancy_core::store::ApiKeyStore) | [`RedisApiKeyStore`] |
//! | [`QuotaStore`](tenancy_core::store::QuotaStore) | [`RedisQuotaStore`] |
//! | [`RateLimiter`](tenancy_core::store::RateLimiter) | [`RedisRateLimiter`] (GCRA, one Lua script per check) |
//! | [`RealmStore`](tenancy_core::store::RealmStore) | [`RedisRealmStore`] |
//! | [`MemberStore`](tenancy_core::store::MemberStore) | [`RedisMemberStore`] |
//! | [`TeamStore`](tenancy_core::store::TeamStore) | [`RedisTeamStore`] |
//!
//! All of them share one connection, [`RedisStores`]: to one server, a
//! `redis` [`ConnectionManager`](redis::aio::ConnectionManager) that
//! pipelines concurrent calls over one multiplexed connection and reconnects
//! by itself when the server comes back
//! ([`connect`](RedisStores::connect)); to a Redis Cluster, the `redis`
//! cluster client, which follows `MOVED` and `ASK` by itself
//! ([`connect_cluster`](RedisStores::connect_cluster)). `rediss://` URLs
//! need the `tls` feature.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use tenancy_core::store::{ApiKeyStore, QuotaStore, RateLimiter, TenantStore};
//! use tenancy_store_redis::{RedisOptions, RedisStores};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = RedisOptions::default()
//!     .with_key_prefix("myapp")
//!     .with_command_timeout(Duration::from_millis(200));
//! let redis = RedisStores::connect("redis://127.0.0.1:6379/", options).await?;
//!
//! let tenants: Arc<dyn TenantStore> = Arc::new(redis.tenant_store());
//! let api_keys: Arc<dyn ApiKeyStore> = Arc::new(redis.api_key_store());
//! let quotas: Arc<dyn QuotaStore> = Arc::new(redis.quota_store());
//! let limiter: Arc<dyn RateLimiter> = Arc::new(redis.rate_limiter());
//!
//! redis.health().await?;
//! # let _ = (tenants, api_keys, quotas, limiter);
//! # Ok(())
//! # }
//! ```
//!
//! # Key layout
//!
//! Every key starts with the prefix (`tenancy` unless
//! [`RedisOptions::with_key_prefix`] says otherwise). Every key that belongs
//! to one tenant carries the tenant's Redis Cluster hash tag `{tenant}`, so
//! one tenant's keys share a slot and every multi-key script stays within
//! it:
//!
//! | key | type | written by |
//! |---|---|---|
//! | `<prefix>:{<tenant>}:tenant` | string, JSON | [`RedisTenantStore`] |
//! | `<prefix>:tenants` | sorted set of ids | [`RedisTenantStore`] (index for paging) |
//! | `<prefix>:apikey:<digest hex>` | hash | [`RedisApiKeyStore`] (lookup by digest) |
//! | `<prefix>:{<tenant>}:apikeys` | hash key id → digest | [`RedisApiKeyStore`] (tenant's index) |
//! | `<prefix>:rl:{<tenant>}:tenant`, `…:key:<id>`, `…:route:<route>` | string, µs | [`RedisRateLimiter`] |
//! | `<prefix>:{<tenant>}:budget:<budget>:<period>:<start>` | integer | [`RedisQuotaStore`] |
//! | `<prefix>:{<tenant>}:members`, `…:members:order`, `…:members:unique` | hash id → JSON, sorted set of ids, hash of e-mail addresses | [`RedisMemberStore`] |
//! | `<prefix>:{<tenant>}:teams`, `…:teams:order` | hash id → JSON, sorted set of ids | [`RedisTeamStore`] |
//!
//! The last two are [`RateLimitKey::to_key_string`](tenancy_core::limit::RateLimitKey::to_key_string)
//! and [`QuotaKey::to_key_string`](tenancy_core::limit::QuotaKey::to_key_string)
//! under the prefix. The two keys without a tenant tag are looked up by
//! themselves: the tenant index, and an API key's record, found by the
//! digest of the secret before its tenant is known.
//!
//! # Failures
//!
//! Every store call has a deadline ([`RedisOptions::command_timeout`],
//! 250 ms by default), the wait for a reconnection included: past it the
//! call returns [`StoreError::Timeout`](tenancy_core::store::StoreError::Timeout).
//! A refused or dropped connection returns
//! [`StoreError::Unavailable`](tenancy_core::store::StoreError::Unavailable).
//! Calls never hang, and the same [`RedisStores`] works again as soon as the
//! server answers. Which of these fail closed or open is the engine's
//! policy. No error or `Debug` output contains the URL's password.
//!
//! Nothing is cached in the process: a revoked API key is refused by every
//! instance on its next request.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api_key;
mod connection;
mod erase;
mod error;
mod keyspace;
mod member;
mod quota;
mod rate_limit;
mod realm;
mod tenant;

pub use api_key::RedisApiKeyStore;
pub use connection::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, RedisOptions, RedisStores,
};
pub use error::RedisStoreError;
pub use member::{RedisMemberStore, RedisTeamStore};
pub use quota::{QUOTA_EXPIRY_MARGIN, RedisQuotaStore};
pub use rate_limit::RedisRateLimiter;
pub use realm::RedisRealmStore;
pub use tenant::RedisTenantStore;

/// The `redis` client this crate is written against.
pub use redis;
