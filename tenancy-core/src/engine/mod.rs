//! [`Tenancy`]: the cloneable handle that composes the request
//! [stages](crate::pipeline) and owns the stores. The web adapters call
//! [`Tenancy::admit`] and finish the [`Admission`] it returns
//! ([`driver`]); handlers reach the audit log, metering and quotas through
//! it; tenant and API-key administration is [`Tenancy::admin`].
//!
//! # Bounded state
//!
//! Every map or buffer whose keys come from requests has a cap and an
//! eviction rule, and no rule ever evicts a real tenant's data to make room
//! for an outsider's:
//!
//! | state | keyed by | cap | when full |
//! |---|---|---|---|
//! | failure throttle | client address (IPv6 per /64) | `auth.failure_throttle.max_addresses` (100,000) | idle addresses are swept (every 10 s and at the cap); past the cap new addresses go untracked (counted in [`AUTH_THROTTLE_UNTRACKED_TOTAL`]) rather than share a bucket that could lock out good callers |
//! | security log | client address × refusal code | [`SECURITY_LOG_CAPACITY`] rows | rows idle for [`SECURITY_LOG_RETENTION`] go; then the code's row without an address counts the rest |
//! | tenant cache: records | tenant id of an existing tenant | 100,000 | expired records, then all records (refetched on use) |
//! | tenant cache: unknown ids | any valid tenant id a caller names | 10,000 | expired ids, then all unknown ids; never a record |
//! | verified-token cache | a token whose signature verified | `auth.token_cache_capacity` (10,000) | expired tokens, then all |
//! | JWK sets | configured realm | one set per realm, 1 MiB per fetch | replaced by the next fetch (at most one per 30 s per realm) |
//! | rate-limit buckets (memory) | tenant, key id or route of admitted requests | idle buckets swept every 65,536 checks | — |
//! | per-tenant metrics | tenant of an admitted request (it exists) | one handle set per tenant | refusal metrics are labelled by code, never by a caller's value |
//! | usage counts, added up | tenant × hour × event type | [`MAX_EVENT_TYPES_PER_HOUR`] types per tenant and hour, `audit.buffer_capacity` entries | later types count under [`OVERFLOW_EVENT_TYPE`]; past the whole cap, a record goes to the usage writer on its own |
//! | key last-use times, added up | key found by digest (at most one write a minute per key) | `audit.buffer_capacity` | the time goes to the key-use writer on its own |
//! | the writers ([`crate::writer`]: audit, usage, key use) | — | `audit.buffer_capacity` items each, audit events cut to the sizes of [`crate::audit`] | dropped and counted ([`AUDIT_DROPPED_TOTAL`], [`USAGE_DROPPED_TOTAL`], [`KEY_USES_DROPPED_TOTAL`]): the only place anything is dropped |
//! | in-memory audit log | tenant (only existing tenants' events are recorded) | 10,000 events per tenant | oldest first |
//!
//! ```
//! use tenancy_core::engine::{RequestHead, Tenancy};
//! use tenancy_core::rbac::Role;
//! use tenancy_core::tenant::{TenantId, TenantRecord};
//! use tenancy_core::TenancyConfig;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = TenancyConfig::builder().anonymous_role(Role::Viewer).build()?;
//! let tenancy = Tenancy::builder(config).build()?;
//! tenancy.admin().create_tenant(TenantRecord::new(TenantId::new("acme")?, "Acme", "free")).await?;
//!
//! let (parts, _) = http::Request::get("/").header("x-tenant-id", "nobody").body(())?.into_parts();
//! let refused = tenancy.admit(&RequestHead::from(&parts)).await.unwrap_err();
//! assert_eq!(refused.code(), "unknown_tenant");
//! tenancy.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod auth_throttle;
mod builder;
pub mod driver;
mod recorder;
mod refusal;
mod security_log;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use self::auth_throttle::AUTH_THROTTLE_UNTRACKED_TOTAL;
use self::auth_throttle::AuthThrottle;
pub use self::builder::TenancyBuilder;
pub use self::driver::{Admission, Admitted, CLIENT_CLOSED, REQUEST_LOG, Refusal, RouteVerdict};
use self::recorder::Recorder;
pub use self::recorder::{MAX_EVENT_TYPES_PER_HOUR, OVERFLOW_EVENT_TYPE};
use self::security_log::SecurityLog;
pub use self::security_log::{
    SECURITY_LOG_CAPACITY, SECURITY_LOG_RETENTION, SECURITY_REFUSALS_TOTAL, SecurityLogEntry,
};
use crate::audit::AuditEvent;
use crate::config::{FailurePolicy, TenancyConfig};
use crate::context::TenantContext;
use crate::error::{ErrorKind, TenancyError};
use crate::label::Label;
use crate::limit::{QuotaCharge, QuotaKey};
use crate::pipeline::authenticate::Authenticator;
use crate::pipeline::store_failure;
use crate::plan::PlanCatalog;
use crate::request::RequestIds;
pub use crate::request::{ExcludedPaths, REQUEST_ID_HEADER, RequestHead, RoutePolicy};
use crate::resolve::TenantResolver;
use crate::store::tenant_cache::TenantCache;
use crate::store::{
    ApiKeyStore, AuditQuery, AuditSink, MemberStore, QuotaStore, RateLimiter, RealmStore,
    TeamStore, TenantStore, UsageMeter,
};
pub use crate::tenant_metrics::{
    AUDIT_DROPPED_TOTAL, ERRORS_TOTAL, KEY_USES_DROPPED_TOTAL, REFUSALS_TOTAL, REQUEST_DURATION,
    REQUESTS_TOTAL, USAGE_DROPPED_TOTAL,
};

/// The usage event type metered for every admitted request.
pub const REQUESTS_EVENT: &str = "requests";

pub(crate) struct Stores {
    pub(crate) tenants: TenantCache,
    pub(crate) api_keys: Arc<dyn ApiKeyStore>,
    pub(crate) realms: Arc<dyn RealmStore>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) quotas: Arc<dyn QuotaStore>,
    pub(crate) audit_query: Option<Arc<dyn AuditQuery>>,
    pub(crate) usage: Arc<dyn UsageMeter>,
    pub(crate) audit_sink: Arc<dyn AuditSink>,
    pub(crate) members: Arc<dyn MemberStore>,
    /// Whether the audit sink and usage meter write for next to nothing,
    /// so reads first write out what is buffered.
    pub(crate) reads_catch_up: bool,
    pub(crate) teams: Arc<dyn TeamStore>,
    /// Whether the key store answers lookups at once (its
    /// `find_by_digest_now` answered the probe at build).
    pub(crate) keys_answer_now: bool,
    /// Whether the rate limiter decides at once (its `check_now` answered
    /// the probe at build).
    pub(crate) limiter_answers_now: bool,
}

pub(crate) struct Inner {
    pub(crate) config: TenancyConfig,
    pub(crate) resolver: TenantResolver,
    pub(crate) authenticator: Authenticator,
    pub(crate) stores: Stores,
    pub(crate) recorder: Recorder,
    pub(crate) request_ids: RequestIds,
    pub(crate) clock: crate::clock::Clock,
    pub(crate) throttle: Option<AuthThrottle>,
    pub(crate) security_log: SecurityLog,
    /// Whose forwarding header names the client.
    pub(crate) trusted_proxies: crate::client_addr::TrustedProxies,
    /// Whether the throttle's "no client address" warning was written.
    pub(crate) warned_no_client_addr: std::sync::atomic::AtomicBool,
}

/// The multi-tenancy engine. Cheap to clone: one reference count.
///
/// Build it with [`Tenancy::builder`]; stores default to the in-memory ones.
/// The builder spawns the background task that writes audit events, usage
/// and API key last-use times, so it must run inside a tokio runtime; call
/// [`shutdown`](Self::shutdown) to write what is buffered before exit.
#[derive(Clone)]
pub struct Tenancy {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// A builder over `config`, with in-memory stores until told otherwise.
    pub fn builder(config: TenancyConfig) -> TenancyBuilder {
        TenancyBuilder::new(config)
    }

    /// The configuration.
    pub fn config(&self) -> &TenancyConfig {
        &self.inner.config
    }

    /// The plan catalog.
    pub fn plans(&self) -> &PlanCatalog {
        &self.inner.stores.tenants.plans().catalog
    }

    /// The tenant store.
    pub fn tenant_store(&self) -> &Arc<dyn TenantStore> {
        self.inner.stores.tenants.store()
    }

    /// The API key store.
    pub fn api_key_store(&self) -> &Arc<dyn ApiKeyStore> {
        &self.inner.stores.api_keys
    }

    /// The store of the realms tenants bring.
    pub fn realm_store(&self) -> &Arc<dyn RealmStore> {
        &self.inner.stores.realms
    }

    /// Where audit events are read back, when the sink supports it.
    pub fn audit_query(&self) -> Option<&Arc<dyn AuditQuery>> {
        self.inner.stores.audit_query.as_ref()
    }

    /// The usage meter.
    pub fn usage_meter(&self) -> &Arc<dyn UsageMeter> {
        &self.inner.stores.usage
    }

    /// The store of tenants' members.
    pub fn member_store(&self) -> &Arc<dyn MemberStore> {
        &self.inner.stores.members
    }

    /// The store of tenants' teams.
    pub fn team_store(&self) -> &Arc<dyn TeamStore> {
        &self.inner.stores.teams
    }

    /// How many audit events were dropped (buffer full, or the sink failed
    /// after retries).
    pub fn audit_dropped(&self) -> u64 {
        self.inner.recorder.audit_dropped()
    }

    /// How many usage records were dropped.
    pub fn usage_dropped(&self) -> u64 {
        self.inner.recorder.usage_dropped()
    }

    /// The platform security log: refusals of callers without a verified
    /// credential, per client address and reason, most refused first. They
    /// never go to a tenant's audit log.
    pub fn security_log(&self) -> Vec<SecurityLogEntry> {
        self.inner.security_log.entries()
    }

    /// An audit event for `ctx`'s caller and tenant, with the request id;
    /// set the resource and outcome, then pass it to
    /// [`record_audit`](Self::record_audit).
    pub fn audit_event(&self, ctx: &TenantContext, action: impl Into<String>) -> AuditEvent {
        self.audit_event_at(ctx, action, Utc::now())
    }

    /// [`audit_event`](Self::audit_event) at `at`.
    pub(crate) fn audit_event_at(
        &self,
        ctx: &TenantContext,
        action: impl Into<String>,
        at: DateTime<Utc>,
    ) -> AuditEvent {
        let mut event = AuditEvent::new_at(
            at,
            ctx.tenant_id().clone(),
            ctx.principal().subject.as_ref(),
            ctx.principal().kind,
            action,
        );
        event.request_id = Some(ctx.request_id().to_owned());
        event.client_addr = ctx.client_addr();
        event
    }

    /// Queues an audit event without waiting, its fields cut to the
    /// documented sizes ([`AuditEvent::bounded`]). If the buffer is full the
    /// event is dropped and counted ([`audit_dropped`](Self::audit_dropped)).
    /// With audit turned off (`audit.enabled = false`) it does nothing.
    pub fn record_audit(&self, event: AuditEvent) {
        if self.inner.config.audit.enabled {
            self.inner.recorder.audit(event.bounded());
        }
    }

    /// Meters `count` events of `event_type` for `ctx`'s tenant, this hour.
    pub fn meter(&self, ctx: &TenantContext, event_type: &Label, count: u64) {
        self.inner
            .recorder
            .meter(ctx.tenant_id(), event_type, Utc::now(), count);
    }

    /// Charges `amount` to the budget `budget` of `ctx`'s plan (`events` for
    /// events per month, or a named budget). Over quota: `quota_exceeded`
    /// with `Retry-After` until the calendar period resets.
    pub async fn charge(
        &self,
        ctx: &TenantContext,
        budget: &str,
        amount: u64,
    ) -> Result<QuotaCharge, TenancyError> {
        let plan_budget = ctx
            .quotas()
            .budget(budget)
            .ok_or_else(|| TenancyError::internal(format!("the plan has no budget {budget:?}")))?;
        let label = Label::new(budget)
            .map_err(|_| TenancyError::internal("budget names must be labels"))?;
        let now = Utc::now();
        let key = QuotaKey::new(ctx.tenant_id().clone(), label, plan_budget.period, now);
        match self
            .inner
            .stores
            .quotas
            .charge(&key, amount, plan_budget.limit)
            .await
        {
            Ok(charge @ QuotaCharge::Charged { .. }) => Ok(charge),
            Ok(QuotaCharge::Exceeded { .. }) => Err(ErrorKind::QuotaExceeded {
                budget: budget.to_owned(),
                retry_after: Some(key.time_to_reset(now)),
            }
            .into()),
            Err(e) => match self.inner.config.limits.on_store_failure {
                FailurePolicy::Open => {
                    tracing::warn!(error = %e, "quota store failed; charge let through (fail-open)");
                    Ok(QuotaCharge::Charged { used: 0 })
                }
                FailurePolicy::Closed => Err(store_failure("quota store", e)),
            },
        }
    }

    /// Checks every store's health.
    pub async fn health(&self) -> Result<(), TenancyError> {
        let s = &self.inner.stores;
        let checks = [
            ("tenant store", s.tenants.store().health().await),
            ("API key store", s.api_keys.health().await),
            ("rate limiter", s.limiter.health().await),
            ("quota store", s.quotas.health().await),
            ("audit sink", s.audit_sink.health().await),
            ("usage meter", s.usage.health().await),
            ("member store", s.members.health().await),
            ("team store", s.teams.health().await),
        ];
        for (store, result) in checks {
            if let Err(e) = result {
                return Err(store_failure(store, e));
            }
        }
        Ok(())
    }

    /// Before a read of the audit log or usage: when the sinks keep their
    /// rows in memory (writes cost next to nothing), writes out what is
    /// buffered (waiting at most a second), so a tenant reads the writes it
    /// made before the read. With
    /// remote sinks it does nothing: reads see writes within the writer's
    /// flush interval (`audit.flush_interval_ms`), and no read can make the
    /// writer send every tenant's buffered rows at once.
    pub async fn catch_up(&self) {
        if self.inner.stores.reads_catch_up {
            self.inner.recorder.flush_records().await;
        }
    }

    /// Writes everything buffered (audit, usage, key last-use) and returns
    /// once it is written.
    pub async fn flush(&self) {
        self.inner.recorder.flush().await;
    }

    /// Writes everything buffered and stops the background writer. Audit
    /// events recorded afterwards are dropped and counted.
    pub async fn shutdown(&self) {
        self.inner.recorder.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
