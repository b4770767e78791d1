use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::credential::{RealmClaim, TenantRealm, normalize_issuer};
use crate::store::{RealmStore, StoreError};
use crate::tenant::TenantId;

/// Tenants' realms in two maps under one lock, so a claim on an issuer and
/// the tenant's own entry change together. Issuers are filed
/// [normalised](normalize_issuer), so a variant of a taken issuer is taken.
///
/// ```
/// use tenancy_core::credential::TenantRealm;
/// use tenancy_core::store::RealmStore;
/// use tenancy_core::store::memory::MemoryRealmStore;
/// use tenancy_core::tenant::TenantId;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryRealmStore::new();
/// let issuer = "https://id.acme.example/realms/acme";
/// store.put(&TenantId::new("acme")?, TenantRealm::discovered(issuer)).await?;
/// assert_eq!(store.find_by_issuer(issuer).await?.unwrap().tenant.as_str(), "acme");
/// // The issuer is taken.
/// assert!(store.put(&TenantId::new("globex")?, TenantRealm::discovered(issuer)).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemoryRealmStore {
    maps: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    by_issuer: HashMap<String, RealmClaim>,
    issuer_of: HashMap<TenantId, String>,
}

impl MemoryRealmStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl RealmStore for MemoryRealmStore {
    async fn find_by_issuer(&self, issuer: &str) -> Result<Option<RealmClaim>, StoreError> {
        Ok(self
            .maps()
            .by_issuer
            .get(&normalize_issuer(issuer))
            .cloned())
    }

    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantRealm>, StoreError> {
        let maps = self.maps();
        Ok(maps
            .issuer_of
            .get(tenant)
            .and_then(|issuer| maps.by_issuer.get(issuer))
            .map(|claim| claim.realm.clone()))
    }

    async fn put(&self, tenant: &TenantId, realm: TenantRealm) -> Result<(), StoreError> {
        let issuer = normalize_issuer(&realm.issuer);
        let mut maps = self.maps();
        if maps
            .by_issuer
            .get(&issuer)
            .is_some_and(|claim| claim.tenant != *tenant)
        {
            return Err(StoreError::AlreadyExists);
        }
        if let Some(previous) = maps.issuer_of.insert(tenant.clone(), issuer.clone()) {
            maps.by_issuer.remove(&previous);
        }
        maps.by_issuer.insert(
            issuer,
            RealmClaim {
                tenant: tenant.clone(),
                realm,
            },
        );
        Ok(())
    }

    async fn remove(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let mut maps = self.maps();
        match maps.issuer_of.remove(tenant) {
            Some(issuer) => {
                maps.by_issuer.remove(&issuer);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
