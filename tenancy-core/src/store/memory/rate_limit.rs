use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};

use crate::limit::{RateCheck, RateDecision, RateLimitKey, RateLimitStatus, RateQuota};
use crate::store::{RateLimiter, StoreError};

type KeyedGovernor = Governor<
    RateLimitKey,
    DashMapStateStore<RateLimitKey>,
    QuantaClock,
    StateInformationMiddleware,
>;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 1 << 16;

/// GCRA rate limiting with [`governor`]'s keyed limiter, one per distinct
/// quota, evicting idle keys.
///
/// A key is idle once its bucket has been full again for one emission
/// interval: it then holds nothing a fresh key would not, and is dropped. Sweeps run every 65,536 checks and on
/// [`evict_idle`](Self::evict_idle), so memory follows the number of recently
/// active keys, not the number ever seen.
///
/// Buckets of one call are checked in order and the walk stops at the first
/// refusal; a bucket checked before the refusing one has taken its cell.
/// (The Redis limiter checks all buckets atomically.)
///
/// ```
/// use tenancy_core::limit::{RateCheck, RateLimitKey, RateQuota};
/// use tenancy_core::store::{RateLimiter, memory::MemoryRateLimiter};
/// use tenancy_core::tenant::TenantId;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter = MemoryRateLimiter::new();
/// let check = RateCheck {
///     key: RateLimitKey::tenant(TenantId::new("acme").unwrap()),
///     quota: RateQuota::per_second(2).unwrap(),
/// };
/// assert!(limiter.check(&[check.clone()]).await.unwrap().allowed);
/// assert!(limiter.check(&[check.clone()]).await.unwrap().allowed);
/// let third = limiter.check(&[check]).await.unwrap();
/// assert!(!third.allowed);
/// assert!(third.status.retry_after > std::time::Duration::ZERO);
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryRateLimiter {
    limiters: DashMap<RateQuota, Arc<KeyedGovernor>>,
    clock: QuantaClock,
    checks: AtomicU64,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self {
            limiters: DashMap::new(),
            clock: QuantaClock::default(),
            checks: AtomicU64::new(0),
        }
    }
}

impl MemoryRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys hold state.
    pub fn len(&self) -> usize {
        self.limiters.iter().map(|l| l.len()).sum()
    }

    /// Whether no key holds state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key whose bucket is full again, and frees the memory.
    pub fn evict_idle(&self) {
        for limiter in self.limiters.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn limiter(&self, quota: RateQuota) -> Arc<KeyedGovernor> {
        if let Some(l) = self.limiters.get(&quota) {
            return l.clone();
        }
        self.limiters
            .entry(quota)
            .or_insert_with(|| {
                let q = Quota::per_second(quota.per_second).allow_burst(quota.burst);
                Arc::new(
                    Governor::dashmap_with_clock(q, self.clock.clone())
                        .with_middleware::<StateInformationMiddleware>(),
                )
            })
            .clone()
    }

    fn check_one(&self, check: &RateCheck) -> RateDecision {
        let limiter = self.limiter(check.quota);
        let burst = check.quota.burst.get();
        let interval = check.quota.emission_interval();
        match limiter.check_key(&check.key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                RateDecision {
                    allowed: true,
                    status: RateLimitStatus {
                        limit: burst,
                        remaining,
                        reset: interval * burst.saturating_sub(remaining),
                        retry_after: Duration::ZERO,
                    },
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                RateDecision {
                    allowed: false,
                    status: RateLimitStatus {
                        limit: burst,
                        remaining: 0,
                        reset: (interval * burst).max(retry_after),
                        retry_after,
                    },
                }
            }
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, checks: &[RateCheck]) -> Result<RateDecision, StoreError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.evict_idle();
        }
        let mut decision: Option<RateDecision> = None;
        for check in checks {
            let one = self.check_one(check);
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
            status: RateLimitStatus {
                limit: 0,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantId;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_keys_are_evicted_at_one_million_keys() {
        let limiter = MemoryRateLimiter::new();
        // A bucket of one cell at 1000/s is full again 1 ms after its use.
        let quota = RateQuota::per_second(1000)
            .unwrap()
            .with_burst(std::num::NonZeroU32::MIN);
        let tenant = TenantId::new("acme").unwrap();
        let mut peak = 0;
        for i in 0..1_000_000u32 {
            let key = RateLimitKey::route(
                tenant.clone(),
                crate::label::Label::new(format!("r{i}")).unwrap(),
            );
            let d = limiter.check(&[RateCheck { key, quota }]).await.unwrap();
            assert!(d.allowed);
            if i % 50_000 == 0 {
                peak = peak.max(limiter.len());
            }
        }
        peak = peak.max(limiter.len());
        // Sweeps every 65,536 checks keep the map far below the keys seen.
        assert!(peak < 300_000, "peak {peak}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        limiter.evict_idle();
        assert_eq!(limiter.len(), 0);
    }
}
