//! Tenant and API-key administration over the engine's stores: create and
//! update tenants, issue, rotate and revoke keys, and the plan's count
//! quotas. Reach it with [`Tenancy::admin`].
//!
//! ```
//! use tenancy_core::admin::NewApiKey;
//! use tenancy_core::rbac::ApiKeyScope;
//! use tenancy_core::tenant::{TenantId, TenantRecord};
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
//! let admin = tenancy.admin();
//! let acme = TenantId::new("acme")?;
//! admin.create_tenant(TenantRecord::new(acme.clone(), "Acme", "pro")).await?;
//! let key = admin.issue_api_key(&acme, NewApiKey::new("ci").scope(ApiKeyScope::Readonly)).await?;
//! assert_eq!(key.record.scope, ApiKeyScope::Readonly);
//! admin.revoke_api_key(&acme, &key.record.key_id).await?;
//! # tenancy.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::context::{AuthMethod, TenantContext};
use crate::credential::{
    ApiKeyRecord, ApiKeySecret, KeyId, TenantRealm, new_key_id, normalize_issuer, tenant_realm_name,
};
use crate::engine::Tenancy;
use crate::error::{ApiKeyRejection, ErrorKind, TenancyError};
use crate::member::Member;
use crate::pipeline::store_failure;
use crate::plan::{Limit, PlanQuotas};
use crate::rbac::ApiKeyScope;
use crate::store::StoreError;
use crate::store::TelemetryStore;
use crate::tenant::{TenantId, TenantRecord, TenantStatus};

/// A newly issued API key: its stored record and the secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The secret; `Debug` hides it.
    pub secret: ApiKeySecret,
}

/// What a new API key should be. Start from [`NewApiKey::new`] (a
/// read-only key with no limit of its own and no expiry) and change what
/// differs.
///
/// ```
/// use tenancy_core::admin::NewApiKey;
/// use tenancy_core::rbac::ApiKeyScope;
///
/// let new = NewApiKey::new("ingest").scope(ApiKeyScope::Ingestion).rate_limit_rps(50);
/// assert_eq!(new.scope, ApiKeyScope::Ingestion);
/// assert_eq!(new.rate_limit_rps, Some(50));
/// assert_eq!(NewApiKey::default().scope, ApiKeyScope::Readonly);
/// ```
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Display name.
    pub name: String,
    /// Scope (default: read-only).
    pub scope: ApiKeyScope,
    /// Own requests-per-second limit.
    pub rate_limit_rps: Option<u32>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Default for NewApiKey {
    fn default() -> Self {
        Self {
            name: String::new(),
            scope: ApiKeyScope::Readonly,
            rate_limit_rps: None,
            expires_at: None,
        }
    }
}

impl NewApiKey {
    /// A read-only key named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// With `scope`.
    pub fn scope(mut self, scope: ApiKeyScope) -> Self {
        self.scope = scope;
        self
    }

    /// With its own limit of `rps` requests per second.
    pub fn rate_limit_rps(mut self, rps: u32) -> Self {
        self.rate_limit_rps = Some(rps);
        self
    }

    /// Expiring at `at`.
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// A count quota of the plan, checked by [`TenancyAdmin::check_count_quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountQuota {
    /// Live API keys.
    ApiKeys,
    /// Users.
    Users,
}

impl CountQuota {
    fn name(self) -> &'static str {
        match self {
            CountQuota::ApiKeys => "api_keys",
            CountQuota::Users => "users",
        }
    }

    fn limit(self, quotas: &PlanQuotas) -> Limit {
        match self {
            CountQuota::ApiKeys => quotas.api_keys,
            CountQuota::Users => quotas.users,
        }
    }
}

/// What one [`TenancyAdmin::erase_tenant`] removed, per store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Erasure {
    /// The realm it brought (0 or 1).
    pub realm: u64,
    /// API keys, revoked ones included, with their digests.
    pub api_keys: u64,
    /// Rate-limit buckets.
    pub rate_limit_buckets: u64,
    /// Budget counters.
    pub budget_counters: u64,
    /// Members.
    pub members: u64,
    /// Teams.
    pub teams: u64,
    /// Audit events.
    pub audit_events: u64,
    /// Usage rows (hour and event type).
    pub usage_rows: u64,
    /// Telemetry events.
    pub telemetry_events: u64,
}

/// What one [`TenancyAdmin::sweep_retention`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSweep {
    /// Archived tenants erased, having been archived (unchanged) for
    /// longer than their plan's retention, with what went of each.
    pub erased: Vec<(TenantId, Erasure)>,
    /// Tenants whose sweep failed (logged at WARN), tried again next time.
    pub failed: Vec<TenantId>,
    /// Tenants swept.
    pub tenants: u64,
    /// Audit events removed.
    pub audit_events: u64,
    /// Usage rows (hour and event type) removed.
    pub usage_rows: u64,
    /// Telemetry events removed.
    pub telemetry_events: u64,
}

/// Tenant and API-key administration; see the [module docs](self). Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct TenancyAdmin {
    tenancy: Tenancy,
}

impl Tenancy {
    /// Tenant and API-key administration over this engine's stores.
    pub fn admin(&self) -> TenancyAdmin {
        TenancyAdmin {
            tenancy: self.clone(),
        }
    }
}

impl TenancyAdmin {
    fn stores(&self) -> &crate::engine::Stores {
        &self.tenancy.inner.stores
    }

    /// Refuses with `quota_exceeded` when adding one more to `current` would
    /// pass the plan's count quota.
    pub fn check_count_quota(
        &self,
        quotas: &PlanQuotas,
        quota: CountQuota,
        current: u64,
    ) -> Result<(), TenancyError> {
        if quota.limit(quotas).allows(current.saturating_add(1)) {
            Ok(())
        } else {
            Err(ErrorKind::QuotaExceeded {
                budget: quota.name().to_owned(),
                retry_after: None,
            }
            .into())
        }
    }

    /// The quotas of `tenant`'s plan with its overrides applied.
    pub fn quotas_of(&self, tenant: &TenantRecord) -> PlanQuotas {
        let plan = self.stores().tenants.plans().of(tenant);
        plan.quotas.with_overrides(&tenant.settings.quota_overrides)
    }

    /// Creates a tenant; `invalid_request` when its settings do not pass
    /// [`TenantSettings::validate`](crate::tenant::TenantSettings::validate).
    pub async fn create_tenant(&self, tenant: TenantRecord) -> Result<(), TenancyError> {
        tenant
            .settings
            .validate()
            .map_err(TenancyError::invalid_request)?;
        let id = tenant.id.clone();
        match self.tenancy.tenant_store().insert(tenant).await {
            Ok(()) => {
                self.stores().tenants.invalidate(&id);
                Ok(())
            }
            Err(StoreError::AlreadyExists) => {
                Err(ErrorKind::Conflict(format!("tenant {id} already exists")).into())
            }
            Err(e) => Err(store_failure("tenant store", e)),
        }
    }

    /// Replaces a tenant record and drops it from the cache;
    /// `invalid_request` when its settings do not pass
    /// [`TenantSettings::validate`](crate::tenant::TenantSettings::validate).
    pub async fn update_tenant(&self, tenant: TenantRecord) -> Result<(), TenancyError> {
        tenant
            .settings
            .validate()
            .map_err(TenancyError::invalid_request)?;
        let id = tenant.id.clone();
        let result = self.tenancy.tenant_store().update(tenant).await;
        self.stores().tenants.invalidate(&id);
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(ErrorKind::NotFound.into()),
            Err(e) => Err(store_failure("tenant store", e)),
        }
    }

    /// Sets (`Some`) or removes (`None`) the realm `tenant` brings: its own
    /// identity provider, dedicated to it with a role ceiling of `admin`.
    /// It counts from the next request on every instance sharing the realm
    /// store; once removed, its tokens are refused on the next request.
    ///
    /// Removing or replacing a realm (with one that differs in anything)
    /// also revokes the keys its tokens issued, and the keys those issued:
    /// a compromised identity provider leaves nothing behind. Their ids are
    /// returned, for the tenant's audit log; setting the realm it already
    /// has changes nothing.
    ///
    /// Refusals: `not_found` for an unknown tenant; `invalid_request` when
    /// the realm does not pass [`TenantRealm::validate`] or its URL names an
    /// internal address the [egress guard](crate::egress) refuses;
    /// `conflict` when a configured realm (the platform's included) or
    /// another tenant's realm has the issuer, or a variant of it that
    /// differs in case, default port or trailing `/`
    /// ([`crate::credential::normalize_issuer`]).
    ///
    /// ```
    /// use tenancy_core::credential::TenantRealm;
    /// use tenancy_core::member::Member;
    /// use tenancy_core::rbac::Role;
    /// use tenancy_core::tenant::{TenantId, TenantRecord};
    /// use tenancy_core::{Tenancy, TenancyConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let admin = tenancy.admin();
    /// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    /// for id in [&acme, &globex] {
    ///     admin.create_tenant(TenantRecord::new(id.clone(), id.as_str(), "pro")).await?;
    /// }
    /// let realm = TenantRealm::discovered("https://id.acme.example/realms/acme").audience("tenancy");
    /// admin.set_tenant_realm(&acme, Some(realm.clone())).await?;
    /// assert_eq!(admin.tenant_realm(&acme).await?, Some(realm.clone()));
    ///
    /// let taken = admin.set_tenant_realm(&globex, Some(realm)).await.unwrap_err();
    /// assert_eq!(taken.code(), "conflict");
    /// let variant = TenantRealm::discovered("HTTPS://ID.acme.example:443/realms/acme/").audience("x");
    /// let taken = admin.set_tenant_realm(&globex, Some(variant)).await.unwrap_err();
    /// assert_eq!(taken.code(), "conflict");
    ///
    /// let internal = TenantRealm::with_jwks_url("https://id.globex.example", "https://169.254.169.254/keys");
    /// let refused = admin.set_tenant_realm(&globex, Some(internal.audience("x"))).await.unwrap_err();
    /// assert_eq!(refused.code(), "invalid_request");
    ///
    /// admin.set_tenant_realm(&acme, None).await?;
    /// assert_eq!(admin.tenant_realm(&acme).await?, None);
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn set_tenant_realm(
        &self,
        tenant: &TenantId,
        realm: Option<TenantRealm>,
    ) -> Result<Vec<KeyId>, TenancyError> {
        if let Some(realm) = &realm {
            realm.validate().map_err(TenancyError::invalid_request)?;
            let url = realm.jwks_url.as_deref().unwrap_or(&realm.issuer);
            if let Ok(url) = reqwest::Url::parse(url) {
                self.tenancy
                    .config()
                    .egress
                    .guard()
                    .check_url(&url)
                    .map_err(|_| {
                        TenancyError::invalid_request(
                            "the realm's URL names an internal address, which the server does not reach on a tenant's behalf",
                        )
                    })?;
            }
            let issuer = normalize_issuer(&realm.issuer);
            if self
                .tenancy
                .config()
                .realms
                .iter()
                .any(|r| normalize_issuer(&r.issuer) == issuer)
            {
                return Err(
                    ErrorKind::Conflict("a configured realm has this issuer".to_owned()).into(),
                );
            }
        }
        match self.tenancy.tenant_store().get(tenant).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(ErrorKind::NotFound.into()),
            Err(e) => return Err(store_failure("tenant store", e)),
        }
        let store = self.tenancy.realm_store();
        let previous = store
            .get(tenant)
            .await
            .map_err(|e| store_failure("realm store", e))?;
        if previous == realm {
            return Ok(Vec::new());
        }
        // The keys the old realm's tokens issued go before it does (a
        // failure here leaves the realm as it was, so a retry sweeps
        // again), and once more after, for keys issued meanwhile.
        let realm_name = tenant_realm_name(tenant);
        let mut revoked = if previous.is_some() {
            self.revoke_keys_of_realm(tenant, &realm_name).await?
        } else {
            Vec::new()
        };
        let result = match realm {
            Some(realm) => store.put(tenant, realm).await,
            None => store.remove(tenant).await.map(|_| ()),
        };
        match result {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(ErrorKind::Conflict(
                    "another tenant's realm has this issuer".to_owned(),
                )
                .into());
            }
            Err(e) => return Err(store_failure("realm store", e)),
        }
        if previous.is_some() {
            revoked.extend(self.revoke_keys_of_realm(tenant, &realm_name).await?);
        }
        Ok(revoked)
    }

    /// Revokes every live key of `tenant` that a token of `realm` issued
    /// (directly, or through keys it issued); their ids.
    async fn revoke_keys_of_realm(
        &self,
        tenant: &TenantId,
        realm: &str,
    ) -> Result<Vec<KeyId>, TenancyError> {
        let keys = self.keys_of(tenant).await?;
        let mut revoked = Vec::new();
        for key in keys {
            if key.realm.as_deref() != Some(realm)
                || key.revoked_at.is_some()
                || revoked.contains(&key.key_id)
            {
                continue;
            }
            match self.revoke_api_key(tenant, &key.key_id).await {
                Ok(cascaded) => {
                    revoked.push(key.key_id);
                    revoked.extend(cascaded);
                }
                // Gone meanwhile: nothing left to revoke.
                Err(e) if e.code() == "not_found" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// Deletes `tenant`'s record and the realm it brought (its issuer is
    /// free again), and revokes its keys (a tenant created again under the
    /// id starts with none that work); `not_found` when there is no such
    /// tenant. Its members and teams are erased; its audit log and usage
    /// stay where they are.
    ///
    /// ```
    /// use tenancy_core::credential::TenantRealm;
    /// use tenancy_core::member::Member;
    /// use tenancy_core::rbac::Role;
    /// use tenancy_core::tenant::{TenantId, TenantRecord};
    /// use tenancy_core::{Tenancy, TenancyConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let admin = tenancy.admin();
    /// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    /// for id in [&acme, &globex] {
    ///     admin.create_tenant(TenantRecord::new(id.clone(), id.as_str(), "pro")).await?;
    /// }
    /// let realm = TenantRealm::discovered("https://id.acme.example").audience("tenancy");
    /// admin.set_tenant_realm(&acme, Some(realm.clone())).await?;
    /// let record = TenantRecord::new(acme.clone(), "acme", "pro");
    /// admin.add_member(&record, Member::new("a@acme.example", Role::Admin)).await?;
    /// admin.delete_tenant(&acme).await?;
    /// // The issuer is free: nobody's tokens name a deleted tenant's realm.
    /// admin.set_tenant_realm(&globex, Some(realm)).await?;
    /// assert_eq!(admin.delete_tenant(&acme).await.unwrap_err().code(), "not_found");
    /// // Created again, the id has none of the old members.
    /// admin.create_tenant(record).await?;
    /// assert!(tenancy.member_store().list(&acme, None, 10).await?.is_empty());
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn delete_tenant(&self, tenant: &TenantId) -> Result<(), TenancyError> {
        // The realm first: a tenant that is gone never keeps an issuer.
        self.tenancy
            .realm_store()
            .remove(tenant)
            .await
            .map_err(|e| store_failure("realm store", e))?;
        for key in self.keys_of(tenant).await? {
            if key.revoked_at.is_none() {
                self.stores()
                    .api_keys
                    .revoke(tenant, &key.key_id, Utc::now())
                    .await
                    .map_err(|e| store_failure("API key store", e))?;
            }
        }
        // Its people go with it: an id created again starts with none.
        self.stores()
            .members
            .erase(tenant)
            .await
            .map_err(|e| store_failure("member store", e))?;
        self.stores()
            .teams
            .erase(tenant)
            .await
            .map_err(|e| store_failure("team store", e))?;
        let deleted = self
            .tenancy
            .tenant_store()
            .delete(tenant)
            .await
            .map_err(|e| store_failure("tenant store", e));
        self.invalidate_tenant(tenant);
        match deleted? {
            true => Ok(()),
            false => Err(ErrorKind::NotFound.into()),
        }
    }

    /// Erases an archived tenant from every store of the engine, and its
    /// telemetry from `telemetry` when given: its record, its realm (the
    /// issuer is free again), its API keys with their digests, its
    /// rate-limit buckets and budget counters, its members and teams, its
    /// audit events and usage. Says how many of each went.
    ///
    /// `not_found` when there is no such tenant; `conflict` unless it is
    /// archived (archive it first: erasure cannot be undone). Buffered
    /// audit events and usage are written out first, so none lands after
    /// the erasure. The record goes last: should a store fail half way, the
    /// tenant is still there, archived, and erasing it again finishes. The
    /// id may then be created again, as a tenant with nothing of the old
    /// one.
    ///
    /// ```
    /// use tenancy_core::member::Member;
    /// use tenancy_core::rbac::Role;
    /// use tenancy_core::tenant::{TenantId, TenantRecord, TenantStatus};
    /// use tenancy_core::{Tenancy, TenancyConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let admin = tenancy.admin();
    /// let mut acme = TenantRecord::new(TenantId::new("acme")?, "Acme", "pro");
    /// admin.create_tenant(acme.clone()).await?;
    /// admin.add_member(&acme, Member::new("a@acme.example", Role::Admin)).await?;
    /// assert_eq!(admin.erase_tenant(&acme.id, None).await.unwrap_err().code(), "conflict");
    /// acme.status = TenantStatus::Archived;
    /// admin.update_tenant(acme.clone()).await?;
    /// let erased = admin.erase_tenant(&acme.id, None).await?;
    /// assert_eq!(erased.members, 1);
    /// assert!(tenancy.tenant_store().get(&acme.id).await?.is_none());
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn erase_tenant(
        &self,
        tenant: &TenantId,
        telemetry: Option<&dyn TelemetryStore>,
    ) -> Result<Erasure, TenancyError> {
        let record = self
            .tenancy
            .tenant_store()
            .get(tenant)
            .await
            .map_err(|e| store_failure("tenant store", e))?
            .ok_or_else(|| TenancyError::from(ErrorKind::NotFound))?;
        if record.status != TenantStatus::Archived {
            return Err(ErrorKind::Conflict(format!(
                "tenant {tenant} is {}: only an archived tenant is erased",
                record.status.as_str()
            ))
            .into());
        }
        self.tenancy.flush().await;
        let stores = self.stores();
        let mut erased = Erasure {
            realm: u64::from(
                self.tenancy
                    .realm_store()
                    .remove(tenant)
                    .await
                    .map_err(|e| store_failure("realm store", e))?,
            ),
            api_keys: stores
                .api_keys
                .erase(tenant)
                .await
                .map_err(|e| store_failure("API key store", e))?,
            rate_limit_buckets: stores
                .limiter
                .erase(tenant)
                .await
                .map_err(|e| store_failure("rate limiter", e))?,
            budget_counters: stores
                .quotas
                .erase(tenant)
                .await
                .map_err(|e| store_failure("quota store", e))?,
            members: stores
                .members
                .erase(tenant)
                .await
                .map_err(|e| store_failure("member store", e))?,
            teams: stores
                .teams
                .erase(tenant)
                .await
                .map_err(|e| store_failure("team store", e))?,
            usage_rows: stores
                .usage
                .erase(tenant)
                .await
                .map_err(|e| store_failure("usage meter", e))?,
            ..Erasure::default()
        };
        if let Some(log) = &stores.audit_query {
            erased.audit_events = log
                .erase(tenant)
                .await
                .map_err(|e| store_failure("audit log", e))?;
        }
        if let Some(telemetry) = telemetry {
            erased.telemetry_events = telemetry
                .erase(tenant)
                .await
                .map_err(|e| store_failure("telemetry store", e))?;
        }
        // Still archived? Reactivated meanwhile, it keeps its record (and
        // whatever it wrote since); erasing again finishes the job.
        let still = self
            .tenancy
            .tenant_store()
            .get(tenant)
            .await
            .map_err(|e| store_failure("tenant store", e))?;
        if still.is_some_and(|t| t.status != TenantStatus::Archived) {
            return Err(ErrorKind::Conflict(format!(
                "tenant {tenant} was reactivated while it was being erased"
            ))
            .into());
        }
        self.tenancy
            .tenant_store()
            .delete(tenant)
            .await
            .map_err(|e| store_failure("tenant store", e))?;
        self.invalidate_tenant(tenant);
        Ok(erased)
    }

    /// The realm `tenant` brings, if any.
    pub async fn tenant_realm(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<TenantRealm>, TenancyError> {
        self.tenancy
            .realm_store()
            .get(tenant)
            .await
            .map_err(|e| store_failure("realm store", e))
    }

    /// Drops a tenant from the cache, so the next request reads the store.
    pub fn invalidate_tenant(&self, id: &TenantId) {
        self.stores().tenants.invalidate(id);
    }

    /// Issues an API key for `tenant`. The secret is in the result, once.
    ///
    /// This issues exactly what `new` asks for; handlers that issue keys for
    /// a caller use [`issue_api_key_as`](Self::issue_api_key_as), which keeps
    /// a key issued by a key within its parent's grant.
    pub async fn issue_api_key(
        &self,
        tenant: &TenantId,
        new: NewApiKey,
    ) -> Result<IssuedApiKey, TenancyError> {
        self.insert_api_key(tenant, new, None, None, Limit::Unlimited)
            .await
    }

    /// Issues an API key for `tenant` on behalf of `caller`: never with a
    /// scope whose role is above the caller's (`insufficient_role`), and in
    /// another tenant than the caller's only for a super_admin or system
    /// caller that is not an API key (`tenant_mismatch`). Within the
    /// plan's count of live keys (`quota_exceeded` at it; the count and the
    /// insert are one atomic store step, so concurrent issues on any number
    /// of instances never pass it). When the caller is itself an API key,
    /// the new key gets at most its parent's scope (`scope_denied`
    /// otherwise), expiry and own rate limit, records the parent, and is
    /// revoked with it ([`revoke_api_key`](Self::revoke_api_key)).
    ///
    /// ```
    /// use tenancy_core::config::TenancyConfig;
    /// use tenancy_core::admin::NewApiKey;
    /// use tenancy_core::engine::Tenancy;
    /// use tenancy_core::rbac::ApiKeyScope;
    /// use tenancy_core::tenant::{TenantRecord, TenantId};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let acme = TenantId::new("acme")?;
    /// tenancy.admin().create_tenant(TenantRecord::new(acme.clone(), "Acme", "pro")).await?;
    /// let expires_at = Some(chrono::Utc::now() + chrono::Duration::minutes(1));
    /// let new = |scope| NewApiKey::new("ci").scope(scope);
    /// let mut parent = new(ApiKeyScope::Full);
    /// parent.expires_at = expires_at;
    /// let parent = tenancy.admin().issue_api_key(&acme, parent).await?;
    ///
    /// // The parent key calls in; its child expires with it.
    /// let (parts, _) = http::Request::post("/keys")
    ///     .header("x-api-key", parent.secret.expose())
    ///     .body(())?
    ///     .into_parts();
    /// let admission = tenancy.admit(&tenancy_core::engine::RequestHead::from(&parts)).await?;
    /// let ctx = admission.context().unwrap();
    /// let tenant = ctx.tenant().clone();
    /// let child = tenancy.admin().issue_api_key_as(ctx, &tenant, new(ApiKeyScope::Full)).await?;
    /// assert_eq!(child.record.expires_at, expires_at);
    /// assert_eq!(child.record.parent_key_id.as_ref(), Some(&parent.record.key_id));
    ///
    /// // Revoking the parent revokes the child.
    /// let cascaded = tenancy.admin().revoke_api_key(&acme, &parent.record.key_id).await?;
    /// assert_eq!(cascaded, vec![child.record.key_id.clone()]);
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn issue_api_key_as(
        &self,
        caller: &TenantContext,
        tenant: &TenantRecord,
        mut new: NewApiKey,
    ) -> Result<IssuedApiKey, TenancyError> {
        // A key never lands outside its issuer's tenant, unless the issuer
        // is a platform caller (never a key: a key's children stay where
        // revoking it reaches them)…
        let is_key = matches!(caller.auth_method(), AuthMethod::ApiKey { .. });
        if tenant.id != *caller.tenant_id() && (is_key || !caller.role().may_cross_tenants()) {
            return Err(ErrorKind::TenantMismatch.into());
        }
        // …nor grants more than its issuer holds (a key issuer's own scope
        // bounds it below).
        if !is_key && new.scope.role() > caller.role() {
            return Err(ErrorKind::InsufficientRole {
                required: new.scope.role(),
            }
            .into());
        }
        let limit = self.quotas_of(tenant).api_keys;
        let AuthMethod::ApiKey { key_id, scope } = caller.auth_method() else {
            let realm = match caller.auth_method() {
                AuthMethod::Jwt { realm } => Some(std::sync::Arc::clone(realm)),
                _ => None,
            };
            return self
                .insert_api_key(&tenant.id, new, None, realm, limit)
                .await;
        };
        if !scope.covers(new.scope) {
            return Err(ErrorKind::ScopeDenied { scope: *scope }.into());
        }
        let parent = self
            .stores()
            .api_keys
            .get(caller.tenant_id(), key_id)
            .await
            .map_err(|e| store_failure("API key store", e))?
            .ok_or_else(|| {
                TenancyError::from(ErrorKind::InvalidApiKey(ApiKeyRejection::Revoked))
            })?;
        parent
            .check_usable(Utc::now())
            .map_err(|r| TenancyError::from(ErrorKind::InvalidApiKey(r)))?;
        if let Some(until) = parent.expires_at {
            new.expires_at = Some(new.expires_at.map_or(until, |e| e.min(until)));
        }
        if let Some(rps) = parent.rate_limit_rps {
            new.rate_limit_rps = Some(new.rate_limit_rps.map_or(rps, |r| r.min(rps)));
        }
        let child = self
            .insert_api_key(
                &tenant.id,
                new,
                Some(parent.key_id.clone()),
                parent.realm.clone(),
                limit,
            )
            .await?;
        // The store refused a parent already revoked; one revoked while the
        // child was being written is caught here: its revocation either
        // found the child, or finished before this read.
        let parent_now = self
            .stores()
            .api_keys
            .get(caller.tenant_id(), key_id)
            .await
            .map_err(|e| store_failure("API key store", e))?;
        if parent_now.is_none_or(|p| p.check_usable(Utc::now()).is_err()) {
            self.stores()
                .api_keys
                .revoke(&tenant.id, &child.record.key_id, Utc::now())
                .await
                .map_err(|e| store_failure("API key store", e))?;
            return Err(ErrorKind::InvalidApiKey(ApiKeyRejection::Revoked).into());
        }
        Ok(child)
    }

    async fn insert_api_key(
        &self,
        tenant: &TenantId,
        new: NewApiKey,
        parent: Option<KeyId>,
        realm: Option<std::sync::Arc<str>>,
        limit: Limit,
    ) -> Result<IssuedApiKey, TenancyError> {
        let key_id = new_key_id().ok_or_else(|| TenancyError::internal("no OS randomness"))?;
        let secret = ApiKeySecret::generate(
            &self.tenancy.inner.config.auth.api_key_prefix,
            key_id.clone(),
        )
        .ok_or_else(|| TenancyError::internal("no OS randomness"))?;
        let digest = self
            .tenancy
            .inner
            .authenticator
            .hasher()
            .digest(secret.expose())
            .map_err(|_| TenancyError::internal("issued key failed its own format check"))?;
        let mut record = ApiKeyRecord::new(
            key_id,
            tenant.clone(),
            new.name,
            new.scope,
            digest,
            Utc::now(),
        );
        record.rate_limit_rps = new.rate_limit_rps;
        record.expires_at = new.expires_at;
        record.parent_key_id = parent;
        record.realm = realm;
        let inserted = match self
            .stores()
            .api_keys
            .insert_within_limit(record.clone(), limit, record.created_at)
            .await
        {
            Ok(inserted) => inserted,
            // The parent is no longer live.
            Err(StoreError::NotFound) if record.parent_key_id.is_some() => {
                return Err(ErrorKind::InvalidApiKey(ApiKeyRejection::Revoked).into());
            }
            Err(e) => return Err(store_failure("API key store", e)),
        };
        if !inserted {
            return Err(ErrorKind::QuotaExceeded {
                budget: CountQuota::ApiKeys.name().to_owned(),
                retry_after: None,
            }
            .into());
        }
        Ok(IssuedApiKey { record, secret })
    }

    /// Issues a new key with the old one's name, scope, limit, expiry and
    /// parent. The old key keeps working for `grace` (revoked at once when
    /// `None`); keys it issued end with it. The new key takes the old
    /// one's place without counting against the plan's key quota; callers
    /// acting for someone else use
    /// [`rotate_api_key_as`](Self::rotate_api_key_as), which counts it. `not_found` when `tenant` has no
    /// such key, `conflict` when it is revoked or expired (a dead key is
    /// never brought back).
    pub async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        grace: Option<Duration>,
    ) -> Result<IssuedApiKey, TenancyError> {
        self.rotate_within(tenant, key_id, grace, Limit::Unlimited)
            .await
    }

    /// [`rotate_api_key`](Self::rotate_api_key), the new key counted
    /// against `limit` live keys: with a grace period the old key still
    /// counts, so rotations cannot mint keys beyond the limit.
    async fn rotate_within(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        grace: Option<Duration>,
        limit: Limit,
    ) -> Result<IssuedApiKey, TenancyError> {
        let store = &self.stores().api_keys;
        let old = store
            .get(tenant, key_id)
            .await
            .map_err(|e| store_failure("API key store", e))?
            .ok_or_else(|| TenancyError::from(ErrorKind::NotFound))?;
        let now = Utc::now();
        if old.check_usable(now).is_err() {
            return Err(ErrorKind::Conflict(format!(
                "key {key_id} is revoked or expired and cannot be rotated; issue a new key"
            ))
            .into());
        }
        // Counted against a limit with no grace, the old key goes first, so
        // its place is free for the new one (and concurrent rotations
        // cannot each add one).
        let revoked_first = grace.is_none() && matches!(limit, Limit::Limited(_));
        if revoked_first {
            self.revoke_api_key(tenant, key_id).await?;
        }
        let issued = self
            .insert_api_key(
                tenant,
                NewApiKey {
                    name: old.name.to_string(),
                    scope: old.scope,
                    rate_limit_rps: old.rate_limit_rps,
                    expires_at: old.expires_at,
                },
                old.parent_key_id.clone(),
                old.realm.clone(),
                limit,
            )
            .await?;
        match grace.map(|g| chrono::Duration::from_std(g).unwrap_or(chrono::Duration::MAX)) {
            Some(g) => {
                let until = now
                    .checked_add_signed(g)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                let until = old.expires_at.map_or(until, |e| e.min(until));
                store
                    .set_expiry(tenant, key_id, Some(until))
                    .await
                    .map_err(|e| store_failure("API key store", e))?;
                for child in self.descendants(tenant, key_id).await? {
                    if child.expires_at.is_none_or(|e| e > until) {
                        store
                            .set_expiry(tenant, &child.key_id, Some(until))
                            .await
                            .map_err(|e| store_failure("API key store", e))?;
                    }
                }
            }
            None if revoked_first => {}
            None => {
                self.revoke_api_key(tenant, key_id).await?;
            }
        }
        Ok(issued)
    }

    /// The time before which `tenant`'s audit events, usage hours and
    /// telemetry are past its plan's retention (`retention_days`, overrides
    /// included), seen at `now`. Reads never return older rows;
    /// [`sweep_retention`](Self::sweep_retention) removes them.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use tenancy_core::tenant::{TenantId, TenantRecord};
    /// use tenancy_core::{Tenancy, TenancyConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let free = TenantRecord::new(TenantId::new("acme")?, "Acme", "free");
    /// let now = Utc::now();
    /// assert_eq!(tenancy.admin().retention_cutoff(&free, now), now - Duration::days(7));
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn retention_cutoff(&self, tenant: &TenantRecord, now: DateTime<Utc>) -> DateTime<Utc> {
        let days = i64::from(self.quotas_of(tenant).retention_days);
        now.checked_sub_signed(chrono::Duration::days(days))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// One tenant's part of [`sweep_retention`](Self::sweep_retention).
    async fn sweep_tenant(
        &self,
        tenant: &TenantRecord,
        now: DateTime<Utc>,
        telemetry: Option<&dyn TelemetryStore>,
        erase_archived: bool,
        sweep: &mut RetentionSweep,
    ) -> Result<(), TenancyError> {
        let cutoff = self.retention_cutoff(tenant, now);
        // Archived for longer than its plan keeps anything: gone.
        if erase_archived && tenant.status == TenantStatus::Archived && tenant.updated_at < cutoff {
            let erasure = self.erase_tenant(&tenant.id, telemetry).await?;
            sweep.erased.push((tenant.id.clone(), erasure));
            return Ok(());
        }
        if let Some(log) = self.tenancy.audit_query() {
            sweep.audit_events += log
                .purge_before(&tenant.id, cutoff)
                .await
                .map_err(|e| store_failure("audit log", e))?;
        }
        sweep.usage_rows += self
            .tenancy
            .usage_meter()
            .purge_before(&tenant.id, cutoff)
            .await
            .map_err(|e| store_failure("usage meter", e))?;
        if let Some(telemetry) = telemetry {
            sweep.telemetry_events += telemetry
                .purge_before(&tenant.id, cutoff)
                .await
                .map_err(|e| store_failure("telemetry store", e))?;
        }
        Ok(())
    }

    /// Removes, for every tenant, the audit events, usage hours and (when
    /// given) telemetry older than its plan's retention
    /// ([`retention_cutoff`](Self::retention_cutoff)), and says how many of
    /// each went. With `erase_archived`, a tenant archived and left
    /// unchanged for longer than its retention is
    /// [erased](Self::erase_tenant) instead. A plan change counts from the next sweep. Many instances
    /// may sweep at once: a purge finds nothing the other already removed.
    /// A store that fails stops the sweep with its error; the next sweep
    /// starts over.
    pub async fn sweep_retention(
        &self,
        telemetry: Option<&dyn TelemetryStore>,
        erase_archived: bool,
    ) -> Result<RetentionSweep, TenancyError> {
        const PAGE: usize = 500;
        let now = Utc::now();
        let mut sweep = RetentionSweep::default();
        let mut after: Option<TenantId> = None;
        loop {
            let page = self
                .tenancy
                .tenant_store()
                .list(after.as_ref(), PAGE)
                .await
                .map_err(|e| store_failure("tenant store", e))?;
            for tenant in &page {
                // One tenant's failure is logged and skipped: it never stops
                // the sweep of the others, nor hides an erasure already done.
                if let Err(e) = self
                    .sweep_tenant(tenant, now, telemetry, erase_archived, &mut sweep)
                    .await
                {
                    tracing::warn!(tenant = %tenant.id, error = %e, "retention sweep of a tenant failed");
                    sweep.failed.push(tenant.id.clone());
                }
                sweep.tenants += 1;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(sweep)
    }

    /// [`rotate_api_key`](Self::rotate_api_key) on behalf of `caller`, in
    /// its own tenant: `insufficient_role` when the key's scope acts above
    /// the caller's role (its new secret would be more than the caller
    /// holds); a caller that is an API key may rotate only itself and the
    /// keys it issued (`not_found` otherwise), so a key never obtains its
    /// parent's secret. The new key counts against the plan's keys: with a
    /// grace period the old one still counts while it lives
    /// (`quota_exceeded` at the limit); without, the old one is revoked
    /// first.
    pub async fn rotate_api_key_as(
        &self,
        caller: &TenantContext,
        key_id: &KeyId,
        grace: Option<Duration>,
    ) -> Result<IssuedApiKey, TenancyError> {
        let tenant = caller.tenant_id();
        let target = self
            .stores()
            .api_keys
            .get(tenant, key_id)
            .await
            .map_err(|e| store_failure("API key store", e))?
            .ok_or_else(|| TenancyError::from(ErrorKind::NotFound))?;
        if let AuthMethod::ApiKey { key_id: own, .. } = caller.auth_method() {
            let mine = own == key_id
                || self
                    .descendants(tenant, own)
                    .await?
                    .iter()
                    .any(|k| k.key_id == *key_id);
            if !mine {
                return Err(ErrorKind::NotFound.into());
            }
        } else if target.scope.role() > caller.role() {
            return Err(ErrorKind::InsufficientRole {
                required: target.scope.role(),
            }
            .into());
        }
        // While the old key lives out its grace both count, so repeated or
        // concurrent rotations stay within the plan's keys.
        let limit = self.quotas_of(caller.tenant()).api_keys;
        self.rotate_within(tenant, key_id, grace, limit).await
    }

    /// Adds `member` to `tenant` within its plan's user count (overrides
    /// included), counted and added in one step of the member store:
    /// `quota_exceeded` at the limit, `conflict` when its e-mail address is
    /// taken in the tenant.
    ///
    /// ```
    /// use tenancy_core::member::Member;
    /// use tenancy_core::rbac::Role;
    /// use tenancy_core::tenant::{TenantId, TenantRecord};
    /// use tenancy_core::{Tenancy, TenancyConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let acme = TenantRecord::new(TenantId::new("acme")?, "Acme", "free");
    /// tenancy.admin().add_member(&acme, Member::new("a@acme.example", Role::Admin)).await?;
    /// let again = tenancy.admin().add_member(&acme, Member::new("A@acme.example", Role::Viewer)).await;
    /// assert_eq!(again.unwrap_err().code(), "conflict");
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn add_member(
        &self,
        tenant: &TenantRecord,
        member: Member,
    ) -> Result<(), TenancyError> {
        let limit = self.quotas_of(tenant).users;
        let email = member.email.clone();
        match self
            .stores()
            .members
            .insert_within_limit(&tenant.id, member, limit)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(ErrorKind::QuotaExceeded {
                budget: CountQuota::Users.name().to_owned(),
                retry_after: None,
            }
            .into()),
            Err(StoreError::AlreadyExists) => {
                Err(ErrorKind::Conflict(format!("user {email} already exists")).into())
            }
            Err(e) => Err(store_failure("member store", e)),
        }
    }

    /// Revokes `key_id` of `tenant` and every live key it issued, directly
    /// or through other keys; returns the ids of those revoked along with it
    /// (for the audit log). `not_found` for another tenant's key.
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Vec<KeyId>, TenancyError> {
        let store = &self.stores().api_keys;
        let now = Utc::now();
        match store.revoke(tenant, key_id, now).await {
            Ok(true) => {}
            Ok(false) => return Err(ErrorKind::NotFound.into()),
            Err(e) => return Err(store_failure("API key store", e)),
        }
        let mut cascaded = Vec::new();
        for child in self.descendants(tenant, key_id).await? {
            if child.revoked_at.is_none() {
                store
                    .revoke(tenant, &child.key_id, now)
                    .await
                    .map_err(|e| store_failure("API key store", e))?;
                cascaded.push(child.key_id);
            }
        }
        Ok(cascaded)
    }

    /// Every key of `tenant`, revoked ones included.
    async fn keys_of(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, TenancyError> {
        self.stores()
            .api_keys
            .list(tenant)
            .await
            .map_err(|e| store_failure("API key store", e))
    }

    /// The keys `key_id` issued, directly or through other keys.
    async fn descendants(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Vec<ApiKeyRecord>, TenancyError> {
        let keys = self.keys_of(tenant).await?;
        let mut found: Vec<ApiKeyRecord> = Vec::new();
        let mut parents = vec![key_id.clone()];
        while let Some(parent) = parents.pop() {
            for key in &keys {
                if key.parent_key_id.as_ref() == Some(&parent)
                    && !found.iter().any(|f| f.key_id == key.key_id)
                {
                    parents.push(key.key_id.clone());
                    found.push(key.clone());
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::ActorKind;
    use crate::context::Principal;
    use crate::plan::PlanCatalog;
    use crate::rbac::Role;
    use crate::{Tenancy, TenancyConfig};

    fn ctx(tenant: &TenantRecord, role: Role, auth: AuthMethod) -> TenantContext {
        let plan = PlanCatalog::default().get("pro").unwrap().clone();
        TenantContext::new(
            Arc::new(tenant.clone()),
            plan,
            Principal::new("caller", ActorKind::User),
            role,
            auth,
            "req",
        )
    }

    #[tokio::test]
    async fn a_sweep_erases_tenants_archived_past_their_retention_and_no_others() {
        let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
        let admin = tenancy.admin();
        let long_ago = Utc::now() - chrono::Duration::days(8);
        let tenant = |id: &str, status: TenantStatus, updated_at| {
            let mut t = TenantRecord::new(TenantId::new(id).unwrap(), id, "free");
            t.status = status;
            t.updated_at = updated_at;
            t
        };
        // Free keeps 7 days.
        let gone = tenant("gone", TenantStatus::Archived, long_ago);
        let recent = tenant("recent", TenantStatus::Archived, Utc::now());
        let idle = tenant("idle", TenantStatus::Suspended, long_ago);
        for t in [&gone, &recent, &idle] {
            admin.create_tenant(t.clone()).await.unwrap();
            admin
                .add_member(t, Member::new("a@example.com", Role::Admin))
                .await
                .unwrap();
        }
        let kept = admin.sweep_retention(None, false).await.unwrap();
        assert!(kept.erased.is_empty(), "off: nothing erased");
        let sweep = admin.sweep_retention(None, true).await.unwrap();
        assert_eq!(sweep.erased.len(), 1);
        assert_eq!(sweep.erased[0].0, gone.id);
        assert_eq!(sweep.erased[0].1.members, 1);
        assert!(
            tenancy
                .tenant_store()
                .get(&gone.id)
                .await
                .unwrap()
                .is_none()
        );
        for t in [&recent, &idle] {
            assert!(tenancy.tenant_store().get(&t.id).await.unwrap().is_some());
            assert_eq!(
                tenancy
                    .member_store()
                    .list(&t.id, None, 10)
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
        tenancy.shutdown().await;
    }

    #[tokio::test]
    async fn issued_keys_stay_within_their_issuer() {
        let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
        let admin = tenancy.admin();
        let acme = TenantRecord::new(TenantId::new("acme").unwrap(), "Acme", "pro");
        let globex = TenantRecord::new(TenantId::new("globex").unwrap(), "Globex", "pro");
        for t in [&acme, &globex] {
            admin.create_tenant(t.clone()).await.unwrap();
        }
        let jwt = || AuthMethod::Jwt {
            realm: "users".into(),
        };
        let full = || NewApiKey::new("k").scope(ApiKeyScope::Full);
        let refused = |r: Result<IssuedApiKey, TenancyError>| r.unwrap_err().code();

        // Above the issuer's role.
        let viewer = ctx(&acme, Role::Viewer, jwt());
        assert_eq!(
            refused(admin.issue_api_key_as(&viewer, &acme, full()).await),
            "insufficient_role"
        );
        // Into another tenant, by a tenant admin or by a key.
        let acme_admin = ctx(&acme, Role::Admin, jwt());
        assert_eq!(
            refused(admin.issue_api_key_as(&acme_admin, &globex, full()).await),
            "tenant_mismatch"
        );
        let key = ctx(
            &acme,
            Role::Admin,
            AuthMethod::ApiKey {
                key_id: KeyId::new("key_a").unwrap(),
                scope: ApiKeyScope::Full,
            },
        );
        assert_eq!(
            refused(admin.issue_api_key_as(&key, &globex, full()).await),
            "tenant_mismatch"
        );
        // A platform caller may.
        let root = ctx(&acme, Role::SuperAdmin, jwt());
        let issued = admin
            .issue_api_key_as(&root, &globex, full())
            .await
            .unwrap();
        assert_eq!(issued.record.tenant_id, globex.id);
        // Within its role, in its tenant: issued.
        admin
            .issue_api_key_as(&acme_admin, &acme, full())
            .await
            .unwrap();
        tenancy.shutdown().await;
    }

    /// Issue 23, finding 4: a trailing `/` or a change of case registered
    /// a second realm beside the platform's own.
    #[tokio::test]
    async fn a_variant_of_the_platforms_issuer_is_taken() {
        let config = TenancyConfig::builder()
            .jwt_hs256(
                "https://id.platform.example/realms/staff",
                "0123456789abcdef0123456789abcdef",
            )
            .build()
            .unwrap();
        let tenancy = Tenancy::builder(config).build().unwrap();
        let admin = tenancy.admin();
        let acme = TenantId::new("acme").unwrap();
        admin
            .create_tenant(TenantRecord::new(acme.clone(), "Acme", "pro"))
            .await
            .unwrap();
        for variant in [
            "https://id.platform.example/realms/staff",
            "https://id.platform.example/realms/staff/",
            "HTTPS://ID.Platform.Example/realms/staff",
            "https://id.platform.example:443/realms/staff",
        ] {
            let realm = TenantRealm::discovered(variant).audience("tenancy");
            let err = admin
                .set_tenant_realm(&acme, Some(realm))
                .await
                .unwrap_err();
            assert_eq!(err.code(), "conflict", "{variant}");
        }
        // The path keeps its case: another realm of the same host is not
        // the platform's.
        let other =
            TenantRealm::discovered("https://id.platform.example/realms/Staff").audience("tenancy");
        admin.set_tenant_realm(&acme, Some(other)).await.unwrap();
        tenancy.shutdown().await;
    }

    /// Issue 23, finding 4: keys minted through a tenant's realm kept
    /// working after the realm was detached.
    #[tokio::test]
    async fn keys_a_realm_minted_die_when_the_realm_is_detached_or_replaced() {
        let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
        let admin = tenancy.admin();
        let acme = TenantRecord::new(TenantId::new("acme").unwrap(), "Acme", "pro");
        admin.create_tenant(acme.clone()).await.unwrap();
        let first = TenantRealm::discovered("https://id.acme.example").audience("tenancy");
        let second = TenantRealm::discovered("https://id2.acme.example").audience("tenancy");
        admin
            .set_tenant_realm(&acme.id, Some(first.clone()))
            .await
            .unwrap();
        let full = || NewApiKey::new("k").scope(ApiKeyScope::Full);
        let realm_jwt = || AuthMethod::Jwt {
            realm: tenant_realm_name(&acme.id).into(),
        };
        let staff_jwt = || AuthMethod::Jwt {
            realm: "staff".into(),
        };
        // Minted through the realm: directly, and by a key it minted.
        let minted = admin
            .issue_api_key_as(&ctx(&acme, Role::Admin, realm_jwt()), &acme, full())
            .await
            .unwrap();
        assert_eq!(minted.record.realm.as_deref(), Some("tenant:acme"));
        let as_key = AuthMethod::ApiKey {
            key_id: minted.record.key_id.clone(),
            scope: ApiKeyScope::Full,
        };
        let grandchild = admin
            .issue_api_key_as(&ctx(&acme, Role::Admin, as_key), &acme, full())
            .await
            .unwrap();
        assert_eq!(grandchild.record.realm.as_deref(), Some("tenant:acme"));
        // Not minted through it.
        let staff = admin
            .issue_api_key_as(&ctx(&acme, Role::Admin, staff_jwt()), &acme, full())
            .await
            .unwrap();

        // The same realm again changes nothing.
        assert!(
            admin
                .set_tenant_realm(&acme.id, Some(first))
                .await
                .unwrap()
                .is_empty()
        );
        let mut revoked = admin
            .set_tenant_realm(&acme.id, Some(second))
            .await
            .unwrap();
        revoked.sort();
        let mut expected = vec![
            minted.record.key_id.clone(),
            grandchild.record.key_id.clone(),
        ];
        expected.sort();
        assert_eq!(revoked, expected);
        let store = &admin.stores().api_keys;
        for (key, dead) in [(&minted, true), (&grandchild, true), (&staff, false)] {
            let record = store
                .get(&acme.id, &key.record.key_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(record.revoked_at.is_some(), dead, "{}", record.key_id);
        }
        // Detached: the keys the second realm minted go too.
        let again = admin
            .issue_api_key_as(&ctx(&acme, Role::Admin, realm_jwt()), &acme, full())
            .await
            .unwrap();
        assert_eq!(
            admin.set_tenant_realm(&acme.id, None).await.unwrap(),
            vec![again.record.key_id.clone()]
        );
        // A key issued by a revoked key is refused, nothing written.
        let by_dead = AuthMethod::ApiKey {
            key_id: again.record.key_id.clone(),
            scope: ApiKeyScope::Full,
        };
        assert_eq!(
            admin
                .issue_api_key_as(&ctx(&acme, Role::Admin, by_dead), &acme, full())
                .await
                .unwrap_err()
                .code(),
            "invalid_api_key"
        );
        tenancy.shutdown().await;
    }
}
