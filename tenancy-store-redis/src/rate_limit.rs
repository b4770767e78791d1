//! [`RedisRateLimiter`].

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use tenancy_core::gcra::{self, Gcra};
use tenancy_core::limit::{RateCheck, RateDecision, RateLimitStatus, RateQuota};
use tenancy_core::store::{RateLimiter, StoreError};

use crate::RedisStores;
use crate::error::RedisStoreError;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(RedisRateLimiter::SCRIPT));

/// A distributed GCRA rate limiter: one Lua script, one round trip per check.
///
/// Each bucket is one string at `<prefix>:rl:{<tenant>}:…` (the key of
/// [`RateLimitKey::to_key_string`](tenancy_core::limit::RateLimitKey::to_key_string)
/// under the prefix) holding its theoretical arrival time in microseconds.
///
/// One [`check`](RateLimiter::check) runs [`SCRIPT`](Self::SCRIPT) once
/// (`EVALSHA`, loaded again by itself after a server restart) over all the
/// call's buckets of one tenant, atomically: the call is allowed only if
/// every bucket allows it, and then each takes one cell; otherwise none
/// does. Time is the server's (`TIME`), so instances with skewed clocks
/// share one budget exactly. A bucket expires once it would be full again,
/// so idle keys cost nothing.
///
/// The decision reports the tightest bucket, as
/// [`RateLimitStatus::tighter`] picks it: `limit` is its burst, `remaining`
/// the cells it still has, `reset` the time until it is full again and
/// `retry_after` (refusals only) the time until one more cell is allowed.
///
/// The buckets of one tenant share a Redis Cluster slot. Should one call
/// name buckets of several tenants, each tenant's buckets are checked in
/// one script, tenant after tenant, stopping at the first refusal (as the
/// in-memory limiter does bucket by bucket).
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_core::limit::{RateCheck, RateLimitKey, RateQuota};
/// use tenancy_core::store::RateLimiter;
/// use tenancy_core::tenant::TenantId;
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let limiter: Arc<dyn RateLimiter> = Arc::new(redis.rate_limiter());
/// let check = RateCheck {
///     key: RateLimitKey::tenant(TenantId::new("acme")?),
///     quota: RateQuota::per_second(100).unwrap(),
/// };
/// let decision = limiter.check(&[check]).await?;
/// println!("allowed: {}, remaining: {}", decision.allowed, decision.status.remaining);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    redis: RedisStores,
}

impl RedisRateLimiter {
    /// The Lua source of the check.
    ///
    /// `KEYS[i]` are the bucket keys; `ARGV[2i-1]` and `ARGV[2i]` are bucket
    /// `i`'s emission interval in whole microseconds (at least 1) and its
    /// burst. It returns the integers `allowed` (1 or 0), then for each
    /// bucket `allowed, remaining, reset_us, retry_after_us`.
    pub const SCRIPT: &'static str = include_str!("lua/gcra.lua");

    /// The limiter on `redis`'s connection (also
    /// [`RedisStores::rate_limiter`]).
    pub fn new(redis: RedisStores) -> Self {
        Self { redis }
    }

    /// The `ARGV` pair of [`SCRIPT`](Self::SCRIPT) for `quota`: emission
    /// interval in microseconds and burst.
    pub fn script_args(quota: RateQuota) -> [u64; 2] {
        let gcra = Gcra::micros(quota);
        [gcra.interval(), u64::from(gcra.burst())]
    }

    /// Checks `checks` (all of one tenant) in one script.
    async fn check_group(&self, checks: &[&RateCheck]) -> Result<RateDecision, StoreError> {
        let keys = self.redis.keys();
        let reply: Vec<i64> = self
            .redis
            .run(async {
                let mut conn = self.redis.conn();
                let mut call = GCRA.prepare_invoke();
                for check in checks {
                    call.key(keys.rate(&check.key));
                }
                for check in checks {
                    call.arg(&Self::script_args(check.quota)[..]);
                }
                Ok(call.invoke_async(&mut conn).await?)
            })
            .await?;
        decode(checks, &reply).map_err(StoreError::from)
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// The decision in the script's reply.
fn decode(checks: &[&RateCheck], reply: &[i64]) -> Result<RateDecision, RedisStoreError> {
    if reply.len() != 1 + 4 * checks.len() {
        return Err(RedisStoreError::Corrupt(
            "unexpected reply from the rate-limit script".into(),
        ));
    }
    let buckets = checks.iter().zip(reply[1..].chunks_exact(4));
    let decision = gcra::decide(buckets.map(|(check, bucket)| {
        let burst = check.quota.burst.get();
        let status = RateLimitStatus {
            limit: burst,
            remaining: u32::try_from(bucket[1].max(0)).unwrap_or(burst).min(burst),
            reset: micros(bucket[2]),
            retry_after: micros(bucket[3]),
        };
        (bucket[0] == 1, status)
    }));
    // The script commits only when every bucket allowed; its first number
    // says whether it did.
    Ok(RateDecision {
        allowed: reply[0] == 1 && decision.allowed,
        status: decision.status,
    })
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn erase(&self, tenant: &tenancy_core::tenant::TenantId) -> Result<u64, StoreError> {
        crate::erase::delete_matching(&self.redis, tenant, &self.redis.keys().rate_pattern(tenant))
            .await
    }

    async fn check(&self, checks: &[RateCheck]) -> Result<RateDecision, StoreError> {
        // Group by tenant, in order of first appearance: one script each.
        let mut groups: Vec<Vec<&RateCheck>> = Vec::new();
        for check in checks {
            match groups
                .iter_mut()
                .find(|g| g[0].key.tenant == check.key.tenant)
            {
                Some(group) => group.push(check),
                None => groups.push(vec![check]),
            }
        }
        let mut decision: Option<RateDecision> = None;
        for group in &groups {
            let one = self.check_group(group).await?;
            let status = match decision {
                Some(d) => d.status.tighter(one.status),
                None => one.status,
            };
            decision = Some(RateDecision {
                allowed: one.allowed,
                status,
            });
            if !one.allowed {
                break;
            }
        }
        Ok(decision.unwrap_or(RateDecision {
            allowed: true,
            status: RateLimitStatus::NONE,
        }))
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use tenancy_core::limit::RateLimitKey;
    use tenancy_core::tenant::TenantId;

    #[test]
    fn script_args_are_whole_microseconds() {
        let q = RateQuota::per_second(3).unwrap();
        assert_eq!(RedisRateLimiter::script_args(q), [333_333, 3]);
        let fast = RateQuota::per_second(u32::MAX)
            .unwrap()
            .with_burst(NonZeroU32::new(7).unwrap());
        assert_eq!(RedisRateLimiter::script_args(fast), [1, 7]);
    }

    #[test]
    fn decode_reports_the_tightest_bucket() {
        let t = TenantId::new("acme").unwrap();
        let tight = RateCheck {
            key: RateLimitKey::tenant(t.clone()),
            quota: RateQuota::per_second(2).unwrap(),
        };
        let roomy = RateCheck {
            key: RateLimitKey::tenant(t),
            quota: RateQuota::per_second(100).unwrap(),
        };
        let d = decode(
            &[&tight, &roomy],
            &[0, 0, 0, 900_000, 400_000, 1, 98, 20_000, 0],
        )
        .unwrap();
        assert!(!d.allowed);
        assert_eq!(d.status.limit, 2);
        assert_eq!(d.status.remaining, 0);
        assert_eq!(d.status.retry_after, Duration::from_millis(400));
        assert!(decode(&[&tight], &[1]).is_err());
    }
}
