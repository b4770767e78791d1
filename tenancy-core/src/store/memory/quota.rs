use std::sync::atomic::{AtomicU64, Ordering};

use crate::ConcurrentMap;
use crate::tenant::TenantId;
use async_trait::async_trait;
use chrono::Utc;

use crate::limit::{QuotaCharge, QuotaKey};
use crate::plan::Limit;
use crate::store::{QuotaStore, StoreError};

/// How many charges pass between two sweeps of ended windows.
const SWEEP_EVERY: u64 = 4096;

/// Period counters in a concurrent hash map, one entry per tenant, budget and
/// calendar window. Counters of ended windows are dropped as charges go on.
///
/// ```
/// use tenancy_core::store::memory::MemoryQuotaStore;
/// let quotas = MemoryQuotaStore::new();
/// assert_eq!(quotas.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemoryQuotaStore {
    counters: ConcurrentMap<QuotaKey, u64>,
    charges: AtomicU64,
}

impl MemoryQuotaStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many counters it holds.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Drops the counters of windows that have ended.
    pub fn evict_ended(&self) {
        let now = Utc::now();
        self.counters.retain(|key, _| key.window.end > now);
    }
}

#[async_trait]
impl QuotaStore for MemoryQuotaStore {
    async fn charge(
        &self,
        key: &QuotaKey,
        amount: u64,
        limit: Limit,
    ) -> Result<QuotaCharge, StoreError> {
        if self.charges.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.evict_ended();
        }
        let mut used = self.counters.entry(key.clone()).or_insert(0);
        let total = used.saturating_add(amount);
        if limit.allows(total) {
            *used = total;
            Ok(QuotaCharge::Charged { used: total })
        } else {
            Ok(QuotaCharge::Exceeded { used: *used })
        }
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let before = self.counters.len();
        self.counters.retain(|key, _| key.tenant != *tenant);
        Ok(before.saturating_sub(self.counters.len()) as u64)
    }

    async fn used(&self, key: &QuotaKey) -> Result<u64, StoreError> {
        Ok(self.counters.get(key).map(|v| *v).unwrap_or(0))
    }
}
