//! The store traits and their shared [`StoreError`].
//!
//! Each trait is async, `Send + Sync` and object safe, so a deployment picks
//! its stores at start and passes them around as `Arc<dyn …>`. The
//! [`memory`] module holds the in-memory implementations, the embedded
//! default. Every call that reads or changes tenant data names the tenant; no
//! call can reach across tenants.
//!
//! ```
//! use std::sync::Arc;
//! use tenancy_core::store::{TenantStore, memory::MemoryTenantStore};
//! use tenancy_core::tenant::{TenantRecord, TenantId};
//!
//! # tokio_test_block_on(async {
//! let tenants: Arc<dyn TenantStore> = Arc::new(MemoryTenantStore::new());
//! let acme = TenantId::new("acme")?;
//! tenants.insert(TenantRecord::new(acme.clone(), "Acme", "free")).await?;
//! assert_eq!(tenants.get(&acme).await?.unwrap().name, "Acme");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod memory;
pub(crate) mod tenant_cache;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{AuditEvent, AuditFilter};
use crate::credential::{ApiKeyDigest, ApiKeyRecord, KeyId, RealmClaim, TenantRealm};
use crate::limit::{QuotaCharge, QuotaKey, RateCheck, RateDecision};
use crate::member::{Member, RecordId, Team};
use crate::metering::UsageRecord;
use crate::plan::Limit;
use crate::rbac::Role;
use crate::telemetry::{TelemetryEvent, TelemetryFilter};
use crate::tenant::{TenantId, TenantRecord};

pub use crate::error::{BoxError, StoreError};

/// Tenant records.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Adds a tenant; [`StoreError::AlreadyExists`] if the id is taken.
    async fn insert(&self, tenant: TenantRecord) -> Result<(), StoreError>;
    /// The tenant with `id`.
    async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;
    /// Replaces an existing tenant; [`StoreError::NotFound`] if absent.
    async fn update(&self, tenant: TenantRecord) -> Result<(), StoreError>;
    /// Up to `limit` tenants with ids after `after`, in id order.
    async fn list(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError>;
    /// Removes a tenant; whether it existed.
    async fn delete(&self, id: &TenantId) -> Result<bool, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The realms tenants bring ([`TenantRealm`]), by issuer for verification
/// and by tenant for management. An issuer belongs to one tenant at most,
/// and a tenant has one realm at most.
///
/// Verification asks [`find_by_issuer`](Self::find_by_issuer) on every
/// request carrying such a realm's token, so a realm put or removed here
/// counts from the next request on every instance sharing the store.
#[async_trait]
pub trait RealmStore: Send + Sync + 'static {
    /// The realm whose issuer is `issuer`, with the tenant that brought it.
    /// Issuers are compared [normalised](crate::credential::normalize_issuer):
    /// the answer's issuer may differ from `issuer` in case, default port
    /// or trailing `/`, and a verifier compares them exactly.
    async fn find_by_issuer(&self, issuer: &str) -> Result<Option<RealmClaim>, StoreError>;
    /// The realm `tenant` brought.
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantRealm>, StoreError>;
    /// Sets `tenant`'s realm, replacing the one it had (whose issuer is
    /// then free); [`StoreError::AlreadyExists`] when another tenant's
    /// realm has the issuer or a variant of it (compared normalised),
    /// nothing changed. One atomic step: two tenants
    /// claiming one issuer at once, from any instances, never both win.
    async fn put(&self, tenant: &TenantId, realm: TenantRealm) -> Result<(), StoreError>;
    /// Removes `tenant`'s realm; whether it had one.
    async fn remove(&self, tenant: &TenantId) -> Result<bool, StoreError>;
}

/// API keys, by digest for verification and by tenant for management.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Adds a key; [`StoreError::AlreadyExists`] if its id or digest is taken.
    /// By default, [`insert_within_limit`](Self::insert_within_limit) with no
    /// limit.
    async fn insert(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        self.insert_within_limit(key, Limit::Unlimited, Utc::now())
            .await
            .map(|_| ())
    }
    /// Adds a key unless its tenant already has `limit` live keys (neither
    /// revoked nor expired at `now`); `Ok(false)` at the limit, nothing
    /// written. The count and the insert are one atomic step: concurrent
    /// inserts, from any number of instances, never pass the limit together.
    /// A key naming a parent (`parent_key_id`) is added only while the
    /// parent is live, checked in the same step ([`StoreError::NotFound`]
    /// otherwise, nothing written): a revocation of the parent is either
    /// seen here or sees the child.
    async fn insert_within_limit(
        &self,
        key: ApiKeyRecord,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The key whose secret has `digest`, whatever its tenant: the
    /// verification path. The caller checks revocation and expiry. Shared,
    /// so a store that keeps records in memory hands them out without
    /// copying.
    async fn find_by_digest(
        &self,
        digest: &ApiKeyDigest,
    ) -> Result<Option<Arc<ApiKeyRecord>>, StoreError>;
    /// [`find_by_digest`](Self::find_by_digest) answered without waiting,
    /// when the store can (it holds its records in memory); `None` when the
    /// answer needs I/O, and the caller awaits `find_by_digest`. The default
    /// is `None`. The request path asks this first, so an in-memory store
    /// costs a lookup and no future. The engine probes it once when it is
    /// built (with a digest no key has): a store that answers `None` there
    /// is never asked on the request path.
    fn find_by_digest_now(
        &self,
        _digest: &ApiKeyDigest,
    ) -> Option<Result<Option<Arc<ApiKeyRecord>>, StoreError>> {
        None
    }
    /// The key `key_id` of `tenant`; `None` for another tenant's key.
    async fn get(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Every key of `tenant`, revoked ones included, oldest first.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes `key_id` of `tenant` at `at`; `false` if `tenant` has no such
    /// key. Revoking twice keeps the first time.
    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Sets or clears the expiry of `key_id` of `tenant`; `false` if `tenant`
    /// has no such key.
    async fn set_expiry(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;
    /// Records a use of `key_id` of `tenant` at `at`.
    async fn touch(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes every key of `tenant`, revoked ones included, with its
    /// digest (so no secret of it is ever found again); how many there
    /// were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The members of each tenant: users with a role ([`Member`]).
///
/// Every call names the tenant; a member id of another tenant is absent.
/// Ids are unique within a tenant, and so are e-mail addresses (compared by
/// [`Member::email_key`]).
#[async_trait]
pub trait MemberStore: Send + Sync + 'static {
    /// Adds `member` to `tenant` unless it already has `limit` members;
    /// `Ok(false)` at the limit, nothing written.
    /// [`StoreError::AlreadyExists`] when its id or e-mail address is taken
    /// in `tenant`. The count and the insert are one atomic step: concurrent
    /// inserts, from any number of instances, never pass the limit together.
    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        member: Member,
        limit: Limit,
    ) -> Result<bool, StoreError>;
    /// The member `user_id` of `tenant`.
    async fn get(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
    ) -> Result<Option<Member>, StoreError>;
    /// Up to `limit` members of `tenant` with ids after `after`, in id
    /// order (which is creation order, see [`RecordId`]).
    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Member>, StoreError>;
    /// Sets the role of `user_id` of `tenant` to `role` if it is still
    /// `expected`, in one atomic step; `false`, nothing changed, when the
    /// member is gone or its role is no longer `expected`.
    async fn set_role(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
        expected: Role,
        role: Role,
    ) -> Result<bool, StoreError>;
    /// Removes `user_id` of `tenant` if its role is still `role`, in one
    /// atomic step (its e-mail address is then free); `false`, nothing
    /// removed, when the member is gone or its role is no longer `role`.
    /// A caller that checked the role it may remove cannot remove one
    /// promoted meanwhile.
    async fn remove(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
        role: Role,
    ) -> Result<bool, StoreError>;
    /// Removes every member of `tenant`; how many there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The teams of each tenant ([`Team`]).
///
/// Every call names the tenant; a team id of another tenant is absent.
#[async_trait]
pub trait TeamStore: Send + Sync + 'static {
    /// Adds `team` to `tenant` unless it already has `limit` teams;
    /// `Ok(false)` at the limit, nothing written.
    /// [`StoreError::AlreadyExists`] when its id is taken in `tenant`. One
    /// atomic step, as [`MemberStore::insert_within_limit`].
    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        team: Team,
        limit: Limit,
    ) -> Result<bool, StoreError>;
    /// The team `team_id` of `tenant`.
    async fn get(&self, tenant: &TenantId, team_id: &RecordId) -> Result<Option<Team>, StoreError>;
    /// Up to `limit` teams of `tenant` with ids after `after`, in id (and
    /// creation) order.
    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Team>, StoreError>;
    /// Removes `team_id` of `tenant`; whether it was there.
    async fn remove(&self, tenant: &TenantId, team_id: &RecordId) -> Result<bool, StoreError>;
    /// Removes every team of `tenant`; how many there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The telemetry events of each tenant ([`TelemetryEvent`]).
///
/// Every call names the tenant, and reads return that tenant's events
/// only. A store may bound what it keeps per tenant (the in-memory one
/// drops the oldest), so an event appended is not promised forever.
#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// Adds `events` to `tenant`'s (validated by the caller with
    /// [`TelemetryEvent::validate`]); an event without a time is stored with
    /// the time of the call.
    async fn append(&self, tenant: &TenantId, events: &[TelemetryEvent]) -> Result<(), StoreError>;
    /// `tenant`'s events matching `filter`, newest first, each with its
    /// time.
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &TelemetryFilter,
    ) -> Result<Vec<TelemetryEvent>, StoreError>;
    /// Removes `tenant`'s events older than `before` (plan retention); how
    /// many there were. Harmless when repeated.
    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Removes every event of `tenant`; how many there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Rate limits (GCRA).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Checks every bucket in `checks` and takes one cell from each if all
    /// allow. The decision reports the tightest bucket. An empty `checks`
    /// is allowed.
    async fn check(&self, checks: &[RateCheck]) -> Result<RateDecision, StoreError>;
    /// [`check`](Self::check) decided without waiting, when the limiter
    /// can (its buckets are in memory); `None` when the decision needs I/O,
    /// and nothing was taken: the caller awaits `check`. The default is
    /// `None`. The engine probes it once when it is built (with no checks):
    /// a limiter that answers `None` there is never asked on the request
    /// path.
    fn check_now(&self, _checks: &[RateCheck]) -> Option<Result<RateDecision, StoreError>> {
        None
    }
    /// Removes every bucket of `tenant` (its tenant, key and route
    /// buckets); how many there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Period counters for quotas (events per month, any named budget).
#[async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// Adds `amount` to the counter of `key` if the total stays within
    /// `limit`; otherwise charges nothing. Atomic: concurrent charges are
    /// never lost and never pass the limit together.
    async fn charge(
        &self,
        key: &QuotaKey,
        amount: u64,
        limit: Limit,
    ) -> Result<QuotaCharge, StoreError>;
    /// The counter of `key` (zero when never charged).
    async fn used(&self, key: &QuotaKey) -> Result<u64, StoreError>;
    /// Removes every counter of `tenant`, of every budget and period; how
    /// many there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where audit events are written.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Writes a batch of events.
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Writes a batch of events the sink may take out of `events` rather
    /// than copy them, once its write can no longer fail (on an error,
    /// `events` must be left whole, for a retry). What the engine's writer
    /// calls; by default [`record`](Self::record), which suits every sink
    /// that sends events elsewhere. The in-memory log keeps the events it
    /// is given.
    ///
    /// ```
    /// use tenancy_core::audit::{ActorKind, AuditEvent, AuditFilter};
    /// use tenancy_core::store::memory::MemoryAuditLog;
    /// use tenancy_core::store::{AuditQuery, AuditSink};
    /// use tenancy_core::tenant::TenantId;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let log = MemoryAuditLog::new();
    /// let acme = TenantId::new("acme")?;
    /// let mut batch = vec![AuditEvent::new(acme.clone(), "alice", ActorKind::User, "widget.create")];
    /// log.record_taking(&mut batch).await?;
    /// assert!(batch.is_empty(), "kept, not copied");
    /// assert_eq!(log.query(&acme, &AuditFilter::default()).await?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    async fn record_taking(&self, events: &mut Vec<AuditEvent>) -> Result<(), StoreError> {
        self.record(events).await
    }
    /// Whether a write costs next to nothing (the sink keeps events in
    /// memory): then a read first writes out what the engine buffered
    /// ([`Tenancy::catch_up`](crate::Tenancy::catch_up)), so a tenant reads
    /// its own writes. `false` by default: a remote sink is written in
    /// batches on the writer's schedule, and reads see writes within its
    /// flush interval.
    fn writes_are_cheap(&self) -> bool {
        false
    }
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where audit events are read back.
#[async_trait]
pub trait AuditQuery: Send + Sync + 'static {
    /// Events of `tenant` matching `filter`, newest first.
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Removes `tenant`'s events older than `before` (plan retention);
    /// how many there were. Running it twice, or from many instances at
    /// once, does no harm.
    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Removes every event of `tenant`; how many there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
}

/// Hourly usage counts.
#[async_trait]
pub trait UsageMeter: Send + Sync + 'static {
    /// Adds a batch of counts.
    async fn record(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
    /// Whether a write costs next to nothing; see
    /// [`AuditSink::writes_are_cheap`]. `false` by default.
    fn writes_are_cheap(&self) -> bool {
        false
    }
    /// The counts of `tenant` for hours in `[from, to)`, summed per hour and
    /// event type, ordered by hour then event type.
    async fn usage(
        &self,
        tenant: &TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageRecord>, StoreError>;
    /// Removes `tenant`'s counts of hours that start before `before` (plan
    /// retention); how many rows there were. Harmless when repeated.
    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Removes every count of `tenant`; how many rows there were.
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Whether the backend answers.
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
