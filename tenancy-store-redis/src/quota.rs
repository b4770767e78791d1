//! [`RedisQuotaStore`].

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use tenancy_core::limit::{QuotaCharge, QuotaKey};
use tenancy_core::plan::Limit;
use tenancy_core::store::{QuotaStore, StoreError};

use crate::RedisStores;

static CHARGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/quota_charge.lua")));

/// How long a counter outlives its window, so an instance whose clock runs
/// a little behind still finds it.
pub const QUOTA_EXPIRY_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Period counters in Redis, one string per tenant, budget and calendar
/// window at `<prefix>:{<tenant>}:budget:<budget>:<period>:<window start>`
/// (the key of [`QuotaKey::to_key_string`] under the prefix).
///
/// A charge is one Lua script, so concurrent charges from any number of
/// instances are never lost and never pass the limit together:
///
/// - with [`Limit::Limited`], it adds the amount only if the total stays
///   within the limit ([`QuotaCharge::Charged`] with the new total), and
///   otherwise charges nothing ([`QuotaCharge::Exceeded`] with the total as
///   it was);
/// - with [`Limit::Unlimited`], it always adds;
/// - it then sets the counter to expire at the window's end plus
///   [`QUOTA_EXPIRY_MARGIN`], so past windows clean themselves up.
///
/// Totals are exact; the limit comparison inside the script uses Lua
/// numbers, exact up to 2^53.
///
/// ```no_run
/// use std::sync::Arc;
/// use chrono::Utc;
/// use tenancy_core::label::Label;
/// use tenancy_core::limit::QuotaKey;
/// use tenancy_core::plan::{Limit, Period};
/// use tenancy_core::store::QuotaStore;
/// use tenancy_core::tenant::TenantId;
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let quotas: Arc<dyn QuotaStore> = Arc::new(redis.quota_store());
/// let key = QuotaKey::new(TenantId::new("acme")?, Label::new("events")?, Period::Month, Utc::now());
/// let charge = quotas.charge(&key, 250, Limit::Limited(1_000_000)).await?;
/// assert!(charge.is_charged());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisQuotaStore {
    redis: RedisStores,
}

impl RedisQuotaStore {
    /// The quota store on `redis`'s connection (also
    /// [`RedisStores::quota_store`]).
    pub fn new(redis: RedisStores) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl QuotaStore for RedisQuotaStore {
    async fn erase(&self, tenant: &tenancy_core::tenant::TenantId) -> Result<u64, StoreError> {
        crate::erase::delete_matching(
            &self.redis,
            tenant,
            &self.redis.keys().quota_pattern(tenant),
        )
        .await
    }

    async fn charge(
        &self,
        key: &QuotaKey,
        amount: u64,
        limit: Limit,
    ) -> Result<QuotaCharge, StoreError> {
        let expire_at = (key.window.end + QUOTA_EXPIRY_MARGIN).timestamp_millis();
        let limit = limit.get().map(|l| l.to_string()).unwrap_or_default();
        let (charged, used): (i64, u64) = self
            .redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let counter = self.redis.keys().quota(key);
                let charge: (i64, u64) = CHARGE
                    .key(&counter)
                    .arg(amount)
                    .arg(limit)
                    .arg(expire_at)
                    .invoke_async(&mut conn)
                    .await?;
                if charge.0 == 1 {
                    self.redis.replicated(&mut conn, &[&counter]).await?;
                }
                Ok(charge)
            })
            .await?;
        Ok(if charged == 1 {
            QuotaCharge::Charged { used }
        } else {
            QuotaCharge::Exceeded { used }
        })
    }

    async fn used(&self, key: &QuotaKey) -> Result<u64, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let used: Option<u64> = conn.get(self.redis.keys().quota(key)).await?;
                Ok(used.unwrap_or(0))
            })
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.health().await
    }
}
