//! [`MemoryMemberStore`] and [`MemoryTeamStore`]: one tenant's records in a
//! map by id, each tenant's map behind its own lock.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use crate::ConcurrentMap;
use crate::member::{Member, RecordId, Team};
use crate::plan::Limit;
use crate::rbac::Role;
use crate::store::{MemberStore, StoreError, TeamStore};
use crate::tenant::TenantId;

/// One tenant's records by id, with the ids of a unique field.
#[derive(Debug)]
struct Rows<T> {
    by_id: BTreeMap<RecordId, T>,
    unique: HashMap<String, RecordId>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
            unique: HashMap::new(),
        }
    }
}

/// Every tenant's rows of one kind. `unique` names the field two rows of a
/// tenant may not share (`None`: ids only).
#[derive(Debug)]
struct Scoped<T> {
    tenants: ConcurrentMap<TenantId, Rows<T>>,
    unique: fn(&T) -> Option<String>,
    id: fn(&T) -> &RecordId,
}

impl<T: Clone> Scoped<T> {
    fn new(id: fn(&T) -> &RecordId, unique: fn(&T) -> Option<String>) -> Self {
        Self {
            tenants: ConcurrentMap::default(),
            unique,
            id,
        }
    }

    /// The count, the uniqueness checks and the insert happen under the
    /// tenant's lock: concurrent inserts cannot pass the limit together.
    fn insert_within_limit(
        &self,
        tenant: &TenantId,
        row: T,
        limit: Limit,
    ) -> Result<bool, StoreError> {
        let mut rows = self.tenants.entry(tenant.clone()).or_default();
        let id = (self.id)(&row).clone();
        let unique = (self.unique)(&row);
        if rows.by_id.contains_key(&id)
            || unique.as_ref().is_some_and(|u| rows.unique.contains_key(u))
        {
            return Err(StoreError::AlreadyExists);
        }
        if !limit.allows(rows.by_id.len() as u64 + 1) {
            return Ok(false);
        }
        if let Some(unique) = unique {
            rows.unique.insert(unique, id.clone());
        }
        rows.by_id.insert(id, row);
        Ok(true)
    }

    fn get(&self, tenant: &TenantId, id: &RecordId) -> Option<T> {
        self.tenants.get(tenant)?.by_id.get(id).cloned()
    }

    fn list(&self, tenant: &TenantId, after: Option<&RecordId>, limit: usize) -> Vec<T> {
        let Some(rows) = self.tenants.get(tenant) else {
            return Vec::new();
        };
        let range = match after {
            Some(after) => rows
                .by_id
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => rows.by_id.range::<RecordId, _>(..),
        };
        range.take(limit).map(|(_, row)| row.clone()).collect()
    }

    fn update(
        &self,
        tenant: &TenantId,
        id: &RecordId,
        change: impl FnOnce(&mut T) -> bool,
    ) -> bool {
        self.tenants
            .get_mut(tenant)
            .and_then(|mut rows| rows.by_id.get_mut(id).map(change))
            .unwrap_or(false)
    }

    /// Removes `id` of `tenant` if `still` holds for it, under the
    /// tenant's lock.
    fn remove_if(&self, tenant: &TenantId, id: &RecordId, still: impl FnOnce(&T) -> bool) -> bool {
        let Some(mut rows) = self.tenants.get_mut(tenant) else {
            return false;
        };
        if !rows.by_id.get(id).is_some_and(still) {
            return false;
        }
        let Some(row) = rows.by_id.remove(id) else {
            return false;
        };
        if let Some(unique) = (self.unique)(&row) {
            rows.unique.remove(&unique);
        }
        true
    }

    fn erase(&self, tenant: &TenantId) -> u64 {
        self.tenants
            .remove(tenant)
            .map_or(0, |(_, rows)| rows.by_id.len() as u64)
    }
}

/// Members in memory: per tenant, a map by id and the e-mail addresses
/// taken.
///
/// ```
/// use tenancy_core::member::Member;
/// use tenancy_core::plan::Limit;
/// use tenancy_core::rbac::Role;
/// use tenancy_core::store::MemberStore;
/// use tenancy_core::store::memory::MemoryMemberStore;
/// use tenancy_core::tenant::TenantId;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryMemberStore::new();
/// let acme = TenantId::new("acme")?;
/// let alice = Member::new("alice@acme.example", Role::Admin);
/// assert!(store.insert_within_limit(&acme, alice.clone(), Limit::Limited(1)).await?);
/// let bob = Member::new("bob@acme.example", Role::Viewer);
/// assert!(!store.insert_within_limit(&acme, bob, Limit::Limited(1)).await?, "at the limit");
/// assert_eq!(store.list(&acme, None, 10).await?, vec![alice.clone()]);
/// assert!(!store.remove(&acme, &alice.user_id, Role::Viewer).await?, "not her role");
/// assert!(store.remove(&acme, &alice.user_id, Role::Admin).await?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct MemoryMemberStore {
    rows: Scoped<Member>,
}

impl Default for MemoryMemberStore {
    fn default() -> Self {
        Self {
            rows: Scoped::new(|m| &m.user_id, |m| Some(m.email_key())),
        }
    }
}

impl MemoryMemberStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl MemberStore for MemoryMemberStore {
    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        member: Member,
        limit: Limit,
    ) -> Result<bool, StoreError> {
        self.rows.insert_within_limit(tenant, member, limit)
    }

    async fn get(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
    ) -> Result<Option<Member>, StoreError> {
        Ok(self.rows.get(tenant, user_id))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Member>, StoreError> {
        Ok(self.rows.list(tenant, after, limit))
    }

    async fn set_role(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
        expected: Role,
        role: Role,
    ) -> Result<bool, StoreError> {
        Ok(self.rows.update(tenant, user_id, |member| {
            let current = member.role == expected;
            if current {
                member.role = role;
            }
            current
        }))
    }

    async fn remove(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
        role: Role,
    ) -> Result<bool, StoreError> {
        Ok(self
            .rows
            .remove_if(tenant, user_id, |member| member.role == role))
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(self.rows.erase(tenant))
    }
}

/// Teams in memory: per tenant, a map by id.
///
/// ```
/// use tenancy_core::member::Team;
/// use tenancy_core::plan::Limit;
/// use tenancy_core::store::TeamStore;
/// use tenancy_core::store::memory::MemoryTeamStore;
/// use tenancy_core::tenant::TenantId;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryTeamStore::new();
/// let acme = TenantId::new("acme")?;
/// let sre = Team::new("sre");
/// assert!(store.insert_within_limit(&acme, sre.clone(), Limit::Unlimited).await?);
/// assert_eq!(store.get(&acme, &sre.team_id).await?, Some(sre.clone()));
/// assert_eq!(store.get(&TenantId::new("globex")?, &sre.team_id).await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct MemoryTeamStore {
    rows: Scoped<Team>,
}

impl Default for MemoryTeamStore {
    fn default() -> Self {
        Self {
            rows: Scoped::new(|t| &t.team_id, |_| None),
        }
    }
}

impl MemoryTeamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TeamStore for MemoryTeamStore {
    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        team: Team,
        limit: Limit,
    ) -> Result<bool, StoreError> {
        self.rows.insert_within_limit(tenant, team, limit)
    }

    async fn get(&self, tenant: &TenantId, team_id: &RecordId) -> Result<Option<Team>, StoreError> {
        Ok(self.rows.get(tenant, team_id))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Team>, StoreError> {
        Ok(self.rows.list(tenant, after, limit))
    }

    async fn remove(&self, tenant: &TenantId, team_id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.rows.remove_if(tenant, team_id, |_| true))
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(self.rows.erase(tenant))
    }
}
