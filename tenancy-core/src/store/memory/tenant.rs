use crate::ConcurrentMap;
use async_trait::async_trait;
use dashmap::mapref::entry::Entry;

use crate::store::{StoreError, TenantStore};
use crate::tenant::{TenantId, TenantRecord};

/// Tenants in a concurrent hash map.
///
/// ```
/// use tenancy_core::store::memory::MemoryTenantStore;
/// let store = MemoryTenantStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemoryTenantStore {
    tenants: ConcurrentMap<TenantId, TenantRecord>,
}

impl MemoryTenantStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tenants it holds.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

#[async_trait]
impl TenantStore for MemoryTenantStore {
    async fn insert(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        match self.tenants.entry(tenant.id.clone()) {
            Entry::Occupied(_) => Err(StoreError::AlreadyExists),
            Entry::Vacant(slot) => {
                slot.insert(tenant);
                Ok(())
            }
        }
    }

    async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self.tenants.get(id).map(|t| t.clone()))
    }

    async fn update(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        match self.tenants.get_mut(&tenant.id) {
            Some(mut slot) => {
                *slot = tenant;
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn list(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let mut ids: Vec<TenantId> = self
            .tenants
            .iter()
            .map(|e| e.key().clone())
            .filter(|id| after.is_none_or(|a| id > a))
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        Ok(ids
            .iter()
            .filter_map(|id| self.tenants.get(id).map(|t| t.clone()))
            .collect())
    }

    async fn delete(&self, id: &TenantId) -> Result<bool, StoreError> {
        Ok(self.tenants.remove(id).is_some())
    }
}
