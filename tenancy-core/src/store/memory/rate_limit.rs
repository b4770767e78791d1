use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::ConcurrentMap;
use async_trait::async_trait;

use crate::gcra::{self, Gcra};
use crate::limit::{RateBucket, RateCheck, RateDecision};
use crate::store::{RateLimiter, StoreError};
use crate::tenant::TenantId;

/// Checks between two sweeps of idle buckets.
const SWEEP_EVERY: u64 = 1 << 16;

/// One tenant's buckets: each bucket's TAT, in nanoseconds since the
/// limiter started.
type Buckets = HashMap<RateBucket, u64, foldhash::fast::RandomState>;

/// GCRA rate limiting ([`crate::gcra`]) in process.
///
/// Every bucket belongs to one tenant, and a tenant's buckets sit behind one
/// lock, so a check of several buckets is all-or-nothing: each takes a
/// cell, or none does (as in the Redis limiter). Checks that span tenants
/// lock them in order of tenant id.
///
/// A bucket whose TAT has passed is full again: it holds nothing a fresh
/// bucket would not, and sweeps (every 65,536 checks, and
/// [`evict_idle`](Self::evict_idle)) drop it, so memory follows the number
/// of recently active buckets, not the number ever seen.
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
    tenants: ConcurrentMap<TenantId, Arc<Mutex<Buckets>>>,
    started: Instant,
    checks: AtomicU64,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self {
            tenants: ConcurrentMap::default(),
            started: Instant::now(),
            checks: AtomicU64::new(0),
        }
    }
}

impl MemoryRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many buckets hold state.
    pub fn len(&self) -> usize {
        self.tenants.iter().map(|t| lock(t.value()).len()).sum()
    }

    /// Whether no bucket holds state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every bucket that is full again, and tenants left with none.
    pub fn evict_idle(&self) {
        let now = self.now();
        self.tenants.retain(|_, buckets| {
            // A check holding the tenant's buckets (between looking them up
            // and locking them) keeps them: its cells must not be lost.
            if Arc::strong_count(buckets) > 1 {
                return true;
            }
            let mut buckets = lock(buckets);
            buckets.retain(|_, tat| *tat > now);
            buckets.shrink_to_fit();
            !buckets.is_empty()
        });
        self.tenants.shrink_to_fit();
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn buckets_of(&self, tenant: &TenantId) -> Arc<Mutex<Buckets>> {
        if let Some(b) = self.tenants.get(tenant) {
            return b.clone();
        }
        self.tenants.entry(tenant.clone()).or_default().clone()
    }
}

fn lock(buckets: &Mutex<Buckets>) -> MutexGuard<'_, Buckets> {
    // A panic while holding the lock leaves whole numbers behind: go on.
    buckets.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks of up to this many buckets stage their TATs on the stack.
const INLINE_CHECKS: usize = 4;

/// Takes a cell of every check from `held` (the locked buckets of each
/// tenant the checks name), or none. Several checks of one bucket take one
/// cell each, in order.
fn take_all(
    held: &mut [(&TenantId, MutexGuard<'_, Buckets>)],
    checks: &[RateCheck],
    now: u64,
) -> RateDecision {
    // `held` has every tenant the checks name (the caller builds it from
    // them), so the search always finds one.
    fn slot(held: &[(&TenantId, MutexGuard<'_, Buckets>)], tenant: &TenantId) -> usize {
        let found = held.iter().position(|(t, _)| *t == tenant);
        debug_assert!(found.is_some(), "the buckets of {tenant} are not held");
        found.unwrap_or(0)
    }
    let mut inline = [0u64; INLINE_CHECKS];
    let mut spilled = Vec::new();
    let tats: &mut [u64] = if checks.len() <= INLINE_CHECKS {
        &mut inline[..checks.len()]
    } else {
        spilled.resize(checks.len(), 0);
        &mut spilled
    };
    let mut decision = gcra::decide(std::iter::empty());
    for (i, check) in checks.iter().enumerate() {
        let tat = match checks[..i].iter().rposition(|c| c.key == check.key) {
            Some(j) => tats[j],
            None => held[slot(held, &check.key.tenant)]
                .1
                .get(&check.key.bucket)
                .copied()
                .unwrap_or(0),
        };
        let cell = Gcra::nanos(check.quota).take(tat, now);
        tats[i] = cell.tat;
        decision = if i == 0 {
            gcra::decide([(cell.allowed, cell.status)])
        } else {
            gcra::decide([
                (decision.allowed, decision.status),
                (cell.allowed, cell.status),
            ])
        };
    }
    if decision.allowed {
        for (check, tat) in checks.iter().zip(tats.iter()) {
            let buckets = &mut held[slot(held, &check.key.tenant)].1;
            match buckets.get_mut(&check.key.bucket) {
                Some(stored) => *stored = *tat,
                None => {
                    buckets.insert(check.key.bucket.clone(), *tat);
                }
            }
        }
    }
    decision
}

impl MemoryRateLimiter {
    /// Takes a cell from every bucket of `checks` if all allow: one lock
    /// per tenant, held across the decision.
    fn decide(&self, checks: &[RateCheck]) -> RateDecision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.evict_idle();
        }
        let Some(first) = checks.first() else {
            return gcra::decide(std::iter::empty());
        };
        let now = self.now();
        let tenant = &first.key.tenant;
        if checks.iter().all(|c| c.key.tenant == *tenant) {
            // One tenant, as every request's checks are: one lock.
            let buckets = self.buckets_of(tenant);
            let mut held = [(tenant, lock(&buckets))];
            return take_all(&mut held, checks, now);
        }
        let mut tenants: Vec<&TenantId> = checks.iter().map(|c| &c.key.tenant).collect();
        tenants.sort();
        tenants.dedup();
        let buckets: Vec<_> = tenants.iter().map(|t| self.buckets_of(t)).collect();
        let mut held: Vec<_> = tenants
            .into_iter()
            .zip(buckets.iter().map(|b| lock(b)))
            .collect();
        take_all(&mut held, checks, now)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, checks: &[RateCheck]) -> Result<RateDecision, StoreError> {
        Ok(self.decide(checks))
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(self
            .tenants
            .remove(tenant)
            .map_or(0, |(_, buckets)| lock(&buckets).len() as u64))
    }

    fn check_now(&self, checks: &[RateCheck]) -> Option<Result<RateDecision, StoreError>> {
        Some(Ok(self.decide(checks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::{RateLimitKey, RateQuota};
    use std::time::Duration;

    #[tokio::test]
    async fn a_refused_check_takes_no_cell_from_any_bucket() {
        let tenant = TenantId::new("acme").unwrap();
        let tight = RateCheck {
            key: RateLimitKey::tenant(tenant.clone()),
            quota: RateQuota::per_second(1).unwrap(),
        };
        let roomy = RateCheck {
            key: RateLimitKey::route(tenant, crate::label::Label::new("r").unwrap()),
            quota: RateQuota::per_second(10).unwrap(),
        };
        let limiter = MemoryRateLimiter::new();
        let both = [roomy.clone(), tight.clone()];
        assert!(limiter.check(&both).await.unwrap().allowed);
        for _ in 0..5 {
            assert!(!limiter.check(&both).await.unwrap().allowed);
        }
        // The roomy bucket gave one cell, to the first check only.
        let alone = limiter.check(&[roomy]).await.unwrap();
        assert_eq!(alone.status.remaining, 8);
    }

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
