//! A TTL cache of tenant records in front of the tenant store, with negative
//! caching of unknown tenants and explicit invalidation. Each record is
//! cached with its plan and effective quotas, worked out once per fetch
//! rather than once per request.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::ConcurrentMap;
use crate::tenant_metrics::TenantHandles;

use crate::plan::{Plan, PlanCatalog, PlanQuotas};
use crate::store::{StoreError, TenantStore};
use crate::tenant::{TenantId, TenantRecord};

/// A tenant record with its plan and the plan's quotas with the tenant's
/// overrides applied.
#[derive(Debug)]
pub(crate) struct CachedTenant {
    pub(crate) record: Arc<TenantRecord>,
    pub(crate) plan: Arc<Plan>,
    pub(crate) quotas: Arc<PlanQuotas>,
    /// The tenant's metric handles, looked up on its first request.
    pub(crate) metrics: OnceLock<Arc<TenantHandles>>,
}

impl CachedTenant {
    pub(crate) fn new(record: Arc<TenantRecord>, plan: Arc<Plan>, quotas: Arc<PlanQuotas>) -> Self {
        Self {
            record,
            plan,
            quotas,
            metrics: OnceLock::new(),
        }
    }
}

/// Where tenants' plans come from: the catalog, and the plan of tenants
/// whose plan the catalog lacks.
pub(crate) struct Plans {
    pub(crate) catalog: PlanCatalog,
    pub(crate) default: Arc<Plan>,
}

impl Plans {
    /// The plan of `tenant` (the default plan when the catalog lacks it).
    pub(crate) fn of(&self, tenant: &TenantRecord) -> Arc<Plan> {
        self.catalog.get(&tenant.plan).cloned().unwrap_or_else(|| {
            tracing::warn!(tenant_id = %tenant.id, "tenant's plan is not in the catalog; using the default plan");
            self.default.clone()
        })
    }

    fn cached(&self, record: TenantRecord) -> CachedTenant {
        let plan = self.of(&record);
        let quotas = Arc::new(plan.quotas.with_overrides(&record.settings.quota_overrides));
        CachedTenant::new(Arc::new(record), plan, quotas)
    }
}

/// Most tenant records held; past this the cache drops expired records,
/// then all records.
pub(crate) const MAX_TENANTS: usize = 100_000;
/// Most unknown ids held (negative entries, named by callers); past this
/// the cache drops unknown ids only, never a real tenant's record.
pub(crate) const MAX_UNKNOWN: usize = 10_000;

#[derive(Debug, Clone)]
struct Entry {
    tenant: Arc<CachedTenant>,
    fetched: Instant,
}

pub(crate) struct TenantCache {
    store: Arc<dyn TenantStore>,
    plans: Plans,
    entries: ConcurrentMap<TenantId, Entry>,
    /// Unknown ids, when fetched: kept apart so that probing random ids
    /// never pushes real tenants out.
    unknown: ConcurrentMap<TenantId, Instant>,
    ttl: Duration,
}

impl TenantCache {
    pub(crate) fn new(store: Arc<dyn TenantStore>, ttl: Duration, plans: Plans) -> Self {
        Self {
            store,
            plans,
            entries: ConcurrentMap::default(),
            unknown: ConcurrentMap::default(),
            ttl,
        }
    }

    /// The tenant, from the cache while fresh, else from the store. Unknown
    /// tenants are cached too, so probing random ids costs one store call
    /// per id per TTL at most.
    pub(crate) async fn get(&self, id: &TenantId) -> Result<Option<Arc<CachedTenant>>, StoreError> {
        if let Some(cached) = self.get_now(id.as_str(), Instant::now()) {
            return Ok(cached);
        }
        let tenant = self
            .store
            .get(id)
            .await?
            .map(|record| Arc::new(self.plans.cached(record)));
        if self.ttl > Duration::ZERO {
            match &tenant {
                Some(found) => {
                    self.unknown.remove(id);
                    if self.entries.len() >= MAX_TENANTS {
                        let ttl = self.ttl;
                        self.entries.retain(|_, e| e.fetched.elapsed() < ttl);
                        if self.entries.len() >= MAX_TENANTS {
                            self.entries.clear();
                        }
                    }
                    self.entries.insert(
                        id.clone(),
                        Entry {
                            tenant: found.clone(),
                            fetched: Instant::now(),
                        },
                    );
                }
                None => {
                    self.entries.remove(id);
                    if self.unknown.len() >= MAX_UNKNOWN {
                        let ttl = self.ttl;
                        self.unknown.retain(|_, fetched| fetched.elapsed() < ttl);
                        if self.unknown.len() >= MAX_UNKNOWN {
                            self.unknown.clear();
                        }
                    }
                    self.unknown.insert(id.clone(), Instant::now());
                }
            }
        }
        Ok(tenant)
    }

    /// The tenant while the cache holds it fresh (`Some(None)`: known to be
    /// unknown); `None` when it must be fetched with [`get`](Self::get).
    /// `id` need not be valid (an invalid one is not held); `now` is the
    /// request's clock reading.
    pub(crate) fn get_now(&self, id: &str, now: Instant) -> Option<Option<Arc<CachedTenant>>> {
        if self.ttl == Duration::ZERO {
            return None;
        }
        let fresh = |fetched: Instant| now.saturating_duration_since(fetched) < self.ttl;
        if let Some(entry) = self.entries.get(id)
            && fresh(entry.fetched)
        {
            return Some(Some(entry.tenant.clone()));
        }
        if let Some(fetched) = self.unknown.get(id)
            && fresh(*fetched)
        {
            return Some(None);
        }
        None
    }

    pub(crate) fn invalidate(&self, id: &TenantId) {
        self.entries.remove(id);
        self.unknown.remove(id);
    }

    pub(crate) fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
    }

    pub(crate) fn plans(&self) -> &Plans {
        &self.plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryTenantStore;

    #[tokio::test]
    async fn probing_unknown_ids_never_pushes_out_real_tenants() {
        let store = Arc::new(MemoryTenantStore::new());
        let acme = TenantId::new("acme").unwrap();
        store
            .insert(TenantRecord::new(acme.clone(), "Acme", "pro"))
            .await
            .unwrap();
        let catalog = PlanCatalog::default();
        let default = catalog.get("free").unwrap().clone();
        let cache = TenantCache::new(
            store.clone(),
            Duration::from_secs(60),
            Plans { catalog, default },
        );
        assert!(cache.get(&acme).await.unwrap().is_some());
        for i in 0..(MAX_UNKNOWN + 500) {
            let id = TenantId::new(format!("probe-{i}")).unwrap();
            assert!(cache.get(&id).await.unwrap().is_none());
        }
        assert!(cache.unknown.len() <= MAX_UNKNOWN);
        // acme is still served from the cache: the store no longer has it,
        // and the cache answers anyway.
        store.delete(&acme).await.unwrap();
        assert!(cache.get(&acme).await.unwrap().is_some());
    }
}
