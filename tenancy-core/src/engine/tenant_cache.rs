//! A TTL cache of tenant records in front of the tenant store, with negative
//! caching of unknown tenants and explicit invalidation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::store::{StoreError, TenantStore};
use crate::tenant::{Tenant, TenantId};

/// Most entries held; past this the cache drops expired entries, then all.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    tenant: Option<Arc<Tenant>>,
    fetched: Instant,
}

pub(crate) struct TenantCache {
    store: Arc<dyn TenantStore>,
    entries: DashMap<TenantId, Entry>,
    ttl: Duration,
}

impl TenantCache {
    pub(crate) fn new(store: Arc<dyn TenantStore>, ttl: Duration) -> Self {
        Self {
            store,
            entries: DashMap::new(),
            ttl,
        }
    }

    /// The tenant, from the cache while fresh, else from the store. Unknown
    /// tenants are cached too, so probing random ids costs one store call
    /// per id per TTL at most.
    pub(crate) async fn get(&self, id: &TenantId) -> Result<Option<Arc<Tenant>>, StoreError> {
        if self.ttl > Duration::ZERO
            && let Some(entry) = self.entries.get(id)
            && entry.fetched.elapsed() < self.ttl
        {
            return Ok(entry.tenant.clone());
        }
        let tenant = self.store.get(id).await?.map(Arc::new);
        if self.ttl > Duration::ZERO {
            if self.entries.len() >= MAX_ENTRIES {
                let ttl = self.ttl;
                self.entries.retain(|_, e| e.fetched.elapsed() < ttl);
                if self.entries.len() >= MAX_ENTRIES {
                    self.entries.clear();
                }
            }
            self.entries.insert(
                id.clone(),
                Entry {
                    tenant: tenant.clone(),
                    fetched: Instant::now(),
                },
            );
        }
        Ok(tenant)
    }

    pub(crate) fn invalidate(&self, id: &TenantId) {
        self.entries.remove(id);
    }

    pub(crate) fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
    }
}
