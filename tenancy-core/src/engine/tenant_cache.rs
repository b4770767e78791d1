//! A TTL cache of tenant records in front of the tenant store, with negative
//! caching of unknown tenants and explicit invalidation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ConcurrentMap;

use crate::store::{StoreError, TenantStore};
use crate::tenant::{TenantId, TenantRecord};

/// Most tenant records held; past this the cache drops expired records,
/// then all records.
pub(crate) const MAX_TENANTS: usize = 100_000;
/// Most unknown ids held (negative entries, named by callers); past this
/// the cache drops unknown ids only, never a real tenant's record.
pub(crate) const MAX_UNKNOWN: usize = 10_000;

#[derive(Debug, Clone)]
struct Entry {
    tenant: Arc<TenantRecord>,
    fetched: Instant,
}

pub(crate) struct TenantCache {
    store: Arc<dyn TenantStore>,
    entries: ConcurrentMap<TenantId, Entry>,
    /// Unknown ids, when fetched: kept apart so that probing random ids
    /// never pushes real tenants out.
    unknown: ConcurrentMap<TenantId, Instant>,
    ttl: Duration,
}

impl TenantCache {
    pub(crate) fn new(store: Arc<dyn TenantStore>, ttl: Duration) -> Self {
        Self {
            store,
            entries: ConcurrentMap::default(),
            unknown: ConcurrentMap::default(),
            ttl,
        }
    }

    /// The tenant, from the cache while fresh, else from the store. Unknown
    /// tenants are cached too, so probing random ids costs one store call
    /// per id per TTL at most.
    pub(crate) async fn get(&self, id: &TenantId) -> Result<Option<Arc<TenantRecord>>, StoreError> {
        if self.ttl > Duration::ZERO {
            if let Some(entry) = self.entries.get(id)
                && entry.fetched.elapsed() < self.ttl
            {
                return Ok(Some(entry.tenant.clone()));
            }
            if let Some(fetched) = self.unknown.get(id)
                && fetched.elapsed() < self.ttl
            {
                return Ok(None);
            }
        }
        let tenant = self.store.get(id).await?.map(Arc::new);
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

    pub(crate) fn invalidate(&self, id: &TenantId) {
        self.entries.remove(id);
        self.unknown.remove(id);
    }

    pub(crate) fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
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
        let cache = TenantCache::new(store.clone(), Duration::from_secs(60));
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
