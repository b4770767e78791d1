use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ConcurrentMap;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::mapref::entry::Entry;

use crate::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
use crate::plan::Limit;
use crate::store::{ApiKeyStore, StoreError};
use crate::tenant::TenantId;

/// API keys by digest, with a per-tenant index.
///
/// Verification is one hash-map lookup by digest, whether the key exists or
/// not. Management calls go through the tenant's index, so they never see
/// another tenant's keys.
///
/// ```
/// use tenancy_core::store::memory::MemoryApiKeyStore;
/// let keys = MemoryApiKeyStore::new();
/// assert_eq!(keys.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemoryApiKeyStore {
    by_digest: ConcurrentMap<ApiKeyDigest, Arc<ApiKeyRecord>>,
    by_tenant: ConcurrentMap<TenantId, BTreeMap<KeyId, ApiKeyDigest>>,
}

impl MemoryApiKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys it holds, revoked ones included.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn digest_of(&self, tenant: &TenantId, key_id: &KeyId) -> Option<ApiKeyDigest> {
        self.by_tenant
            .get(tenant)
            .and_then(|index| index.get(key_id).copied())
    }

    fn update<F: FnOnce(&mut ApiKeyRecord)>(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        change: F,
    ) -> bool {
        // The tenant's index stays read-locked through the change, so an
        // insert checking a parent (under the index's write lock) sees the
        // change whole or not at all.
        let Some(index) = self.by_tenant.get(tenant) else {
            return false;
        };
        let Some(digest) = index.get(key_id).copied() else {
            return false;
        };
        match self.by_digest.get_mut(&digest) {
            Some(mut record) if record.tenant_id == *tenant => {
                change(Arc::make_mut(&mut record));
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeyStore {
    async fn insert_within_limit(
        &self,
        key: ApiKeyRecord,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Lock order: tenant index, then digest map (as everywhere here).
        // The tenant's index stays locked from the count to the insert.
        let mut index = self.by_tenant.entry(key.tenant_id.clone()).or_default();
        if index.contains_key(&key.key_id) {
            return Err(StoreError::AlreadyExists);
        }
        // A key issued by a key: its parent must be live now, checked under
        // the lock a revocation takes too.
        if let Some(parent) = &key.parent_key_id {
            let live = index
                .get(parent)
                .and_then(|d| self.by_digest.get(d))
                .is_some_and(|r| {
                    r.tenant_id == key.tenant_id
                        && r.revoked_at.is_none()
                        && r.expires_at.is_none_or(|at| at > now)
                });
            if !live {
                return Err(StoreError::NotFound);
            }
        }
        if let Limit::Limited(max) = limit {
            let live = index
                .values()
                .filter(|d| {
                    self.by_digest
                        .get(*d)
                        .is_some_and(|r| r.tenant_id == key.tenant_id && r.is_live(now))
                })
                .count() as u64;
            if live >= max {
                return Ok(false);
            }
        }
        match self.by_digest.entry(key.digest) {
            Entry::Occupied(_) => Err(StoreError::AlreadyExists),
            Entry::Vacant(slot) => {
                index.insert(key.key_id.clone(), key.digest);
                slot.insert(Arc::new(key));
                Ok(true)
            }
        }
    }

    async fn find_by_digest(
        &self,
        digest: &ApiKeyDigest,
    ) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        Ok(self.by_digest.get(digest).map(|r| Arc::clone(&r)))
    }

    fn find_by_digest_now(
        &self,
        digest: &ApiKeyDigest,
    ) -> Option<Result<Option<Arc<ApiKeyRecord>>, StoreError>> {
        Some(Ok(self.by_digest.get(digest).map(|r| Arc::clone(&r))))
    }

    async fn get(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(digest) = self.digest_of(tenant, key_id) else {
            return Ok(None);
        };
        Ok(self
            .by_digest
            .get(&digest)
            .filter(|r| r.tenant_id == *tenant)
            .map(|r| ApiKeyRecord::clone(&r)))
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let Some((_, keys)) = self.by_tenant.remove(tenant) else {
            return Ok(0);
        };
        for digest in keys.values() {
            self.by_digest.remove(digest);
        }
        Ok(keys.len() as u64)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let digests: Vec<ApiKeyDigest> = self
            .by_tenant
            .get(tenant)
            .map(|index| index.values().copied().collect())
            .unwrap_or_default();
        let mut keys: Vec<ApiKeyRecord> = digests
            .iter()
            .filter_map(|d| self.by_digest.get(d).map(|r| ApiKeyRecord::clone(&r)))
            .filter(|r| r.tenant_id == *tenant)
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.update(tenant, key_id, |r| {
            r.revoked_at.get_or_insert(at);
        }))
    }

    async fn set_expiry(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        Ok(self.update(tenant, key_id, |r| r.expires_at = expires_at))
    }

    async fn touch(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update(tenant, key_id, |r| {
            if r.last_used_at.is_none_or(|prev| prev < at) {
                r.last_used_at = Some(at);
            }
        });
        Ok(())
    }
}
