//! [`Tenancy`]: the cloneable handle that runs the request pipeline. The web
//! adapters only call it.
//!
//! [`Tenancy::admit`] decides, in this order:
//!
//! 1. **Authenticate**: `Authorization: Bearer <jwt>` or `X-API-Key: <key>`
//!    (names configurable). A present but bad credential is refused; it never
//!    falls through to anonymous. No credential: `unauthenticated`, unless an
//!    anonymous role is configured.
//! 2. **Resolve the tenant** ([`crate::resolve`]); unknown tenants are refused.
//! 3. **Gate by tenant status**: suspended is read-only, archived refuses all.
//! 4. **Gate by scope and role**: API key scopes, and the route's minimum role
//!    ([`RoutePolicy`], attached by the adapters as a request extension).
//! 5. **Rate limit**: per key and per tenant (GCRA).
//! 6. **Context**: the [`TenantContext`] of the admitted request.
//!
//! [`Tenancy::complete`] then records the answer: an audit event for every
//! state-changing request, usage metering and per-tenant metrics. Quotas are
//! charged by handlers through [`Tenancy::charge`], since only they know how
//! much a request consumes.
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
//! | usage buffer | tenant × hour × event type | [`MAX_EVENT_TYPES_PER_HOUR`] types per tenant and hour, `audit.buffer_capacity` entries | later types count under [`OVERFLOW_EVENT_TYPE`]; past the whole cap, dropped and counted |
//! | audit buffer | — | `audit.buffer_capacity` events, each cut to the sizes of [`crate::audit`] | dropped and counted |
//! | key last-use buffer | key found by digest | `audit.buffer_capacity` | skipped until the next flush |
//! | in-memory audit log | tenant (only existing tenants' events are recorded) | 10,000 events per tenant | oldest first |
//!
//! ```
//! use std::time::Duration;
//! use tenancy_core::config::TenancyConfig;
//! use tenancy_core::engine::Tenancy;
//! use tenancy_core::rbac::Role;
//! use tenancy_core::tenant::{Tenant, TenantId};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = TenancyConfig::builder().anonymous_role(Role::Viewer).build()?;
//! let tenancy = Tenancy::builder(config).build()?;
//! tenancy.create_tenant(Tenant::new(TenantId::new("acme")?, "Acme", "free")).await?;
//!
//! let (parts, _) = http::Request::get("/api/v1/metrics/query")
//!     .header("x-tenant-id", "acme")
//!     .body(())?
//!     .into_parts();
//! let admission = tenancy.admit(&parts).await?;
//! assert_eq!(admission.context().unwrap().tenant_id().as_str(), "acme");
//! tenancy.complete(&admission, http::StatusCode::OK, Duration::from_micros(40));
//!
//! let (parts, _) = http::Request::get("/").header("x-tenant-id", "nobody").body(())?.into_parts();
//! assert_eq!(tenancy.admit(&parts).await.unwrap_err().code(), "unknown_tenant");
//! tenancy.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod auth_throttle;
pub(crate) mod metrics;
mod recorder;
mod security_log;
mod tenant_cache;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub use self::auth_throttle::AUTH_THROTTLE_UNTRACKED_TOTAL;
use self::auth_throttle::AuthThrottle;
use self::metrics::TenantMetrics;
pub use self::metrics::{
    AUDIT_DROPPED_TOTAL, ERRORS_TOTAL, REFUSALS_TOTAL, REQUEST_DURATION, REQUESTS_TOTAL,
    USAGE_DROPPED_TOTAL,
};
pub use self::recorder::{MAX_EVENT_TYPES_PER_HOUR, OVERFLOW_EVENT_TYPE};
use self::recorder::{Recorder, Sinks};
use self::security_log::SecurityLog;
pub use self::security_log::{
    SECURITY_LOG_CAPACITY, SECURITY_LOG_RETENTION, SECURITY_REFUSALS_TOTAL, SecurityLogEntry,
};
use self::tenant_cache::TenantCache;
use crate::audit::{ActorKind, AuditEvent};
use crate::config::{ConfigError, FailurePolicy, RouteSpec, TenancyConfig};
use crate::context::{AuthMethod, Principal, TenantContext};
use crate::credential::{ApiKeyHasher, ApiKeyRecord, ApiKeySecret, JwtVerifier, KeyId, new_key_id};
use crate::error::{ApiKeyRejection, ErrorKind, TenancyError, TokenRejection};
use crate::label::Label;
use crate::limit::{QuotaCharge, QuotaKey, RateCheck, RateLimitKey, RateLimitStatus, RateQuota};
use crate::plan::{Limit, Plan, PlanCatalog, PlanQuotas};
use crate::rbac::{ApiKeyScope, Role};
use crate::resolve::{CustomSource, Resolved, TenantResolver};
use crate::store::memory::{
    MemoryApiKeyStore, MemoryAuditLog, MemoryQuotaStore, MemoryRateLimiter, MemoryTenantStore,
    MemoryUsageMeter,
};
use crate::store::{
    ApiKeyStore, AuditQuery, AuditSink, QuotaStore, RateLimiter, StoreError, TenantStore,
    UsageMeter,
};
use crate::tenant::{Tenant, TenantId, TenantStatus, is_safe_method};

/// The usage event type metered for every admitted request.
pub const REQUESTS_EVENT: &str = "requests";

/// The client's address, for audit events. Adapters put it in the request
/// extensions before calling [`Tenancy::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Paths the web adapters exempt from tenancy (health, metrics): a path
/// matches when it is one of them or lies below one. Cheap to clone.
///
/// ```
/// use tenancy_core::engine::ExcludedPaths;
/// let paths = ExcludedPaths::default().with("/healthz").with("/metrics/");
/// assert!(paths.contains("/healthz"));
/// assert!(paths.contains("/metrics/tenants"));
/// assert!(!paths.contains("/healthzz"));
/// assert!(!paths.contains("/api/v1/tenants"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExcludedPaths(Arc<[Box<str>]>);

impl ExcludedPaths {
    /// These paths and `path` (a trailing `/` is ignored).
    pub fn with(self, path: impl Into<String>) -> Self {
        let mut paths: Vec<Box<str>> = self.0.iter().cloned().collect();
        paths.push(path.into().trim_end_matches('/').into());
        Self(Arc::from(paths))
    }

    /// Whether `path` is excluded.
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| {
            path.strip_prefix(p.as_ref())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// What a route demands beyond the tenancy defaults. Adapters attach it as a
/// request extension; [`Tenancy::admit`] reads it.
///
/// ```
/// use tenancy_core::engine::RoutePolicy;
/// use tenancy_core::rbac::Role;
///
/// let policy = RoutePolicy::min_role(Role::Admin);
/// assert_eq!(policy.min_role, Some(Role::Admin));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The lowest role that may call the route.
    pub min_role: Option<Role>,
    /// A per-route rate limit, counted per tenant.
    pub rate_limit: Option<(Label, RateQuota)>,
    /// Skip tenancy entirely (health, metrics): no resolution, no store call.
    pub exempt: bool,
}

impl RoutePolicy {
    /// A policy requiring `role` or higher.
    pub fn min_role(role: Role) -> Self {
        Self {
            min_role: Some(role),
            ..Self::default()
        }
    }

    /// A policy exempting the route from tenancy.
    pub fn exempt() -> Self {
        Self {
            exempt: true,
            ..Self::default()
        }
    }
}

/// The result of admitting a request: its context (when it has a tenant),
/// the rate-limit status to report, and what [`Tenancy::complete`] needs.
#[derive(Debug, Clone)]
pub struct Admission {
    context: Option<TenantContext>,
    rate_limit: Option<RateLimitStatus>,
    method: Method,
    path: Option<Box<str>>,
    client_addr: Option<IpAddr>,
    request_id: Arc<str>,
}

impl Admission {
    /// The context; `None` for exempt routes and tenant-less requests.
    pub fn context(&self) -> Option<&TenantContext> {
        self.context.as_ref()
    }

    /// The rate-limit status to report on the answer.
    pub fn rate_limit(&self) -> Option<&RateLimitStatus> {
        self.rate_limit.as_ref()
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Writes the `RateLimit-*` headers into an answer's headers.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if let Some(status) = &self.rate_limit {
            status.write_headers(headers);
        }
    }

    /// A tracing span with the tenant, principal and request id.
    pub fn span(&self) -> tracing::Span {
        match &self.context {
            Some(ctx) => tracing::info_span!(
                "tenancy",
                tenant_id = %ctx.tenant_id(),
                principal = %ctx.principal().subject,
                request_id = %self.request_id,
            ),
            None => tracing::info_span!("tenancy", request_id = %self.request_id),
        }
    }
}

/// A newly issued API key: its stored record and the secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The secret; `Debug` hides it.
    pub secret: ApiKeySecret,
}

/// What a new API key should be.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Display name.
    pub name: String,
    /// Scope.
    pub scope: ApiKeyScope,
    /// Own requests-per-second limit.
    pub rate_limit_rps: Option<u32>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A count quota of the plan, checked by [`Tenancy::check_count_quota`].
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

struct Stores {
    tenants: TenantCache,
    api_keys: Arc<dyn ApiKeyStore>,
    limiter: Arc<dyn RateLimiter>,
    quotas: Arc<dyn QuotaStore>,
    audit_query: Option<Arc<dyn AuditQuery>>,
    usage: Arc<dyn UsageMeter>,
    audit_sink: Arc<dyn AuditSink>,
}

struct Inner {
    config: TenancyConfig,
    plans: PlanCatalog,
    default_plan: Arc<Plan>,
    resolver: TenantResolver,
    jwt: JwtVerifier,
    hasher: ApiKeyHasher,
    bearer_header: HeaderName,
    api_key_header: HeaderName,
    stores: Stores,
    recorder: Recorder,
    metrics: TenantMetrics,
    requests_event: Label,
    request_ids: RequestIds,
    throttle: Option<AuthThrottle>,
    security_log: SecurityLog,
}

/// The multi-tenancy engine. Cheap to clone: one reference count.
///
/// Build it with [`Tenancy::builder`]; stores default to the in-memory ones.
/// The builder spawns the background task that writes audit events, usage
/// and API key last-use times, so it must run inside a tokio runtime; call
/// [`shutdown`](Self::shutdown) to write what is buffered before exit.
#[derive(Clone)]
pub struct Tenancy {
    inner: Arc<Inner>,
}

impl fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Tenancy`].
pub struct TenancyBuilder {
    config: TenancyConfig,
    tenants: Option<Arc<dyn TenantStore>>,
    api_keys: Option<Arc<dyn ApiKeyStore>>,
    limiter: Option<Arc<dyn RateLimiter>>,
    quotas: Option<Arc<dyn QuotaStore>>,
    audit_sink: Option<Arc<dyn AuditSink>>,
    audit_query: Option<Arc<dyn AuditQuery>>,
    usage: Option<Arc<dyn UsageMeter>>,
    custom_sources: Vec<CustomSource>,
    tenant_cache_ttl: Duration,
}

impl fmt::Debug for TenancyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenancyBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TenancyBuilder {
    /// The tenant store (default: in memory).
    pub fn tenant_store(mut self, store: Arc<dyn TenantStore>) -> Self {
        self.tenants = Some(store);
        self
    }

    /// The API key store (default: in memory).
    pub fn api_key_store(mut self, store: Arc<dyn ApiKeyStore>) -> Self {
        self.api_keys = Some(store);
        self
    }

    /// The rate limiter (default: in memory).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The quota store (default: in memory).
    pub fn quota_store(mut self, store: Arc<dyn QuotaStore>) -> Self {
        self.quotas = Some(store);
        self
    }

    /// Where audit events go, and where they are read back (default: one
    /// in-memory log for both).
    pub fn audit(mut self, sink: Arc<dyn AuditSink>, query: Option<Arc<dyn AuditQuery>>) -> Self {
        self.audit_sink = Some(sink);
        self.audit_query = query;
        self
    }

    /// The usage meter (default: in memory).
    pub fn usage_meter(mut self, meter: Arc<dyn UsageMeter>) -> Self {
        self.usage = Some(meter);
        self
    }

    /// Adds a tenant source of your own, tried after the configured ones.
    ///
    /// ```
    /// # use tenancy_core::{config::TenancyConfig, engine::Tenancy};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default())
    ///     .tenant_source(|parts: &http::request::Parts| {
    ///         parts.headers.get("x-org")?.to_str().ok().map(str::to_owned)
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # tenancy.shutdown().await;
    /// # });
    /// ```
    pub fn tenant_source<F>(mut self, source: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.custom_sources.push(Arc::new(source));
        self
    }

    /// How long tenant records (and unknown ids) are cached (default 5 s;
    /// zero turns the cache off).
    pub fn tenant_cache_ttl(mut self, ttl: Duration) -> Self {
        self.tenant_cache_ttl = ttl;
        self
    }

    /// Validates the configuration, loads the JWT keys and starts the
    /// background writer on the current tokio runtime.
    pub fn build(self) -> Result<Tenancy, ConfigError> {
        let config = self.config;
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new("runtime", "Tenancy must be built inside a tokio runtime")
        })?;
        let plans = config.plans();
        let default_plan = plans
            .get(&config.default_plan)
            .cloned()
            .ok_or_else(|| ConfigError::new("default_plan", "names no plan"))?;
        let mut resolver = TenantResolver::from_config(&config.resolution)?;
        for source in self.custom_sources {
            resolver = resolver.with_source(source);
        }
        let jwt = JwtVerifier::from_config(&config)?;
        let hasher = ApiKeyHasher::new(
            config.auth.api_key_prefix.clone(),
            config.auth.api_key_pepper.as_ref(),
        );
        let header = |name: &str, key: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(key, "is not a valid HTTP header name"))
        };
        let bearer_header = header(&config.auth.bearer_header, "auth.bearer_header")?;
        let api_key_header = header(&config.auth.api_key_header, "auth.api_key_header")?;

        let api_keys = self
            .api_keys
            .unwrap_or_else(|| Arc::new(MemoryApiKeyStore::new()));
        let (audit_sink, audit_query) = match self.audit_sink {
            Some(sink) => (sink, self.audit_query),
            None => {
                let log = Arc::new(MemoryAuditLog::new());
                let query: Arc<dyn AuditQuery> = log.clone();
                (log as Arc<dyn AuditSink>, Some(query))
            }
        };
        let usage = self
            .usage
            .unwrap_or_else(|| Arc::new(MemoryUsageMeter::new()));
        let requests_event = Label::new(REQUESTS_EVENT)
            .map_err(|_| ConfigError::new("engine", "the requests event type is not a label"))?;
        let recorder = Recorder::start(
            &config.audit,
            Sinks {
                overflow_type: Label::new(OVERFLOW_EVENT_TYPE).map_err(|_| {
                    ConfigError::new("engine", "the overflow event type is not a label")
                })?,
                requests_type: requests_event.clone(),
                audit: audit_sink.clone(),
                usage: usage.clone(),
                api_keys: api_keys.clone(),
            },
            &runtime,
        );
        let stores = Stores {
            tenants: TenantCache::new(
                self.tenants
                    .unwrap_or_else(|| Arc::new(MemoryTenantStore::new())),
                self.tenant_cache_ttl,
            ),
            api_keys,
            limiter: self
                .limiter
                .unwrap_or_else(|| Arc::new(MemoryRateLimiter::new())),
            quotas: self
                .quotas
                .unwrap_or_else(|| Arc::new(MemoryQuotaStore::new())),
            audit_query,
            usage,
            audit_sink,
        };
        Ok(Tenancy {
            inner: Arc::new(Inner {
                plans,
                default_plan,
                resolver,
                jwt,
                hasher,
                bearer_header,
                api_key_header,
                stores,
                recorder,
                metrics: TenantMetrics::default(),
                requests_event,
                request_ids: RequestIds::new(),
                throttle: AuthThrottle::new(&config.auth.failure_throttle),
                security_log: SecurityLog::default(),
                config,
            }),
        })
    }
}

/// Who a request's credential says it is, before resolution.
struct Caller {
    tenant: Option<TenantId>,
    principal: Principal,
    role: Role,
    auth: AuthMethod,
    key_rps: Option<(KeyId, u32)>,
}

impl Tenancy {
    /// A builder over `config`, with in-memory stores until told otherwise.
    pub fn builder(config: TenancyConfig) -> TenancyBuilder {
        TenancyBuilder {
            config,
            tenants: None,
            api_keys: None,
            limiter: None,
            quotas: None,
            audit_sink: None,
            audit_query: None,
            usage: None,
            custom_sources: Vec::new(),
            tenant_cache_ttl: Duration::from_secs(5),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TenancyConfig {
        &self.inner.config
    }

    /// The plan catalog.
    pub fn plans(&self) -> &PlanCatalog {
        &self.inner.plans
    }

    /// The tenant store.
    pub fn tenant_store(&self) -> &Arc<dyn TenantStore> {
        self.inner.stores.tenants.store()
    }

    /// The API key store.
    pub fn api_key_store(&self) -> &Arc<dyn ApiKeyStore> {
        &self.inner.stores.api_keys
    }

    /// Where audit events are read back, when the sink supports it.
    pub fn audit_query(&self) -> Option<&Arc<dyn AuditQuery>> {
        self.inner.stores.audit_query.as_ref()
    }

    /// The usage meter.
    pub fn usage_meter(&self) -> &Arc<dyn UsageMeter> {
        &self.inner.stores.usage
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

    /// Admits or refuses a request, given its head. See the module docs for
    /// the order of the checks.
    pub async fn admit(&self, parts: &Parts) -> Result<Admission, TenancyError> {
        let policy = parts.extensions.get::<RoutePolicy>();
        let request_id = self.inner.request_ids.for_request(parts);
        let client_addr = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let mut admission = Admission {
            context: None,
            rate_limit: None,
            method: parts.method.clone(),
            path: (!is_safe_method(&parts.method)).then(|| parts.uri.path().into()),
            client_addr,
            request_id,
        };
        if policy.is_some_and(|p| p.exempt) {
            return Ok(admission);
        }
        if let Some(err) = self.throttled(client_addr) {
            TenantMetrics::refused(err.code());
            self.inner
                .security_log
                .record(client_addr, err.code(), Utc::now());
            return Err(err);
        }
        match self.decide(parts, policy, &mut admission).await {
            Ok(()) => Ok(admission),
            Err((err, caller)) => {
                TenantMetrics::refused(err.code());
                if err.status() == StatusCode::UNAUTHORIZED
                    && let (Some(throttle), Some(addr)) = (&self.inner.throttle, client_addr)
                {
                    throttle.failed(addr);
                }
                self.log_refusal(parts, &admission, caller.as_ref(), &err)
                    .await;
                Err(err)
            }
        }
    }

    /// `rate_limited` when the client's address is over its allowance of
    /// failed authentications.
    fn throttled(&self, client_addr: Option<IpAddr>) -> Option<TenancyError> {
        let throttle = self.inner.throttle.as_ref()?;
        let wait = throttle.check(client_addr?)?;
        Some(
            ErrorKind::RateLimited(RateLimitStatus {
                limit: self.inner.config.auth.failure_throttle.burst,
                remaining: 0,
                reset: wait,
                retry_after: wait,
            })
            .into(),
        )
    }

    /// The platform security log: refusals of callers without a verified
    /// credential, per client address and reason, most refused first. They
    /// never go to a tenant's audit log.
    pub fn security_log(&self) -> Vec<SecurityLogEntry> {
        self.inner.security_log.entries()
    }

    async fn decide(
        &self,
        parts: &Parts,
        policy: Option<&RoutePolicy>,
        admission: &mut Admission,
    ) -> Result<(), (TenancyError, Option<Caller>)> {
        let caller = self.authenticate(parts).await.map_err(|e| (e, None))?;
        let fail = |e: TenancyError, caller: Caller| Err((e, Some(caller)));

        let credential = caller.tenant.as_ref().map(|t| (t, caller.role));
        let (tenant_id, cross_tenant) = match self.inner.resolver.resolve(parts, credential) {
            Ok(Resolved::Tenant { id, cross_tenant }) => (id, cross_tenant),
            Ok(Resolved::NoTenant) => return Ok(()),
            Err(e) => return fail(e, caller),
        };
        let tenant = match self.inner.stores.tenants.get(&tenant_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return fail(ErrorKind::UnknownTenant.into(), caller),
            Err(e) => return fail(self.store_failure("tenant store", e), caller),
        };
        match tenant.status {
            TenantStatus::Archived => return fail(ErrorKind::TenantArchived.into(), caller),
            TenantStatus::Suspended if !is_safe_method(&parts.method) => {
                return fail(ErrorKind::TenantSuspended.into(), caller);
            }
            _ => {}
        }
        // Acting on another tenant needs a home tenant in good standing:
        // archiving or suspending it stops its identities everywhere.
        if cross_tenant && let Err(e) = self.check_home_active(caller.tenant.as_ref()).await {
            return fail(e, caller);
        }
        if let AuthMethod::ApiKey { scope, .. } = &caller.auth {
            let ingestion = self.is_ingestion_route(&parts.method, parts.uri.path());
            if !scope.permits(&parts.method, ingestion) {
                return fail(ErrorKind::ScopeDenied { scope: *scope }.into(), caller);
            }
        }
        if let Some(required) = policy.and_then(|p| p.min_role)
            && caller.role < required
        {
            return fail(ErrorKind::InsufficientRole { required }.into(), caller);
        }

        let plan = self
            .inner
            .plans
            .get(&tenant.plan)
            .cloned()
            .unwrap_or_else(|| {
                tracing::warn!(tenant_id = %tenant.id, "tenant's plan is not in the catalog; using the default plan");
                self.inner.default_plan.clone()
            });
        let context = TenantContext::new(
            tenant,
            plan,
            caller.principal.clone(),
            caller.role,
            caller.auth.clone(),
            admission.request_id.clone(),
        )
        .with_cross_tenant(cross_tenant)
        .with_client_addr(admission.client_addr);

        if self.inner.config.limits.enabled {
            match self
                .rate_limit(&context, caller.key_rps.as_ref(), policy)
                .await
            {
                Ok(status) => admission.rate_limit = status,
                Err(e) => return fail(e, caller),
            }
        }
        if cross_tenant {
            let event = self
                .audit_event(&context, "tenant.cross_access")
                .resource(parts.uri.path())
                .detail(
                    "home_tenant",
                    caller
                        .tenant
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                );
            self.record_audit(with_addr(event, admission.client_addr));
        }
        admission.context = Some(context);
        Ok(())
    }

    async fn check_home_active(&self, home: Option<&TenantId>) -> Result<(), TenancyError> {
        let Some(home) = home else {
            return Err(ErrorKind::TenantMismatch.into());
        };
        match self.inner.stores.tenants.get(home).await {
            Ok(Some(t)) => match t.status {
                TenantStatus::Active => Ok(()),
                TenantStatus::Suspended => Err(ErrorKind::TenantSuspended.into()),
                TenantStatus::Archived => Err(ErrorKind::TenantArchived.into()),
            },
            Ok(None) => Err(ErrorKind::UnknownTenant.into()),
            Err(e) => Err(self.store_failure("tenant store", e)),
        }
    }

    async fn authenticate(&self, parts: &Parts) -> Result<Caller, TenancyError> {
        if let Some(value) = parts.headers.get(&self.inner.api_key_header) {
            let presented = value.to_str().map_err(|_| {
                TenancyError::from(ErrorKind::InvalidApiKey(ApiKeyRejection::Malformed))
            })?;
            return self.authenticate_api_key(presented).await;
        }
        if let Some(value) = parts.headers.get(&self.inner.bearer_header) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or_else(|| {
                    TenancyError::from(ErrorKind::InvalidToken(TokenRejection::Malformed))
                })?;
            let verified = self.inner.jwt.verify(token).await?;
            let kind = if verified.role == Role::System {
                ActorKind::Service
            } else {
                ActorKind::User
            };
            return Ok(Caller {
                tenant: Some(verified.tenant),
                principal: Principal::new(verified.subject, kind),
                role: verified.role,
                auth: AuthMethod::Jwt {
                    realm: verified.realm,
                },
                key_rps: None,
            });
        }
        match self.inner.config.auth.anonymous_role {
            Some(role) => Ok(Caller {
                tenant: None,
                principal: Principal::anonymous(),
                role,
                auth: AuthMethod::Anonymous,
                key_rps: None,
            }),
            None => Err(ErrorKind::Unauthenticated.into()),
        }
    }

    async fn authenticate_api_key(&self, presented: &str) -> Result<Caller, TenancyError> {
        let reject = |r| TenancyError::from(ErrorKind::InvalidApiKey(r));
        let digest = self.inner.hasher.digest(presented).map_err(reject)?;
        // Read the clock before the lookup, so a key that is found and one
        // that is not cost the same up to the answer.
        let now = Utc::now();
        let record = self
            .inner
            .stores
            .api_keys
            .find_by_digest(&digest)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "API key store failed; refusing (authentication fails closed)");
                TenancyError::from(e)
            })?
            .ok_or_else(|| reject(ApiKeyRejection::Unknown))?;
        record.check_usable(now).map_err(reject)?;
        self.inner
            .recorder
            .touch(&record.tenant_id, &record.key_id, now);
        Ok(Caller {
            principal: Principal::new(record.key_id.to_arc(), ActorKind::ApiKey),
            role: record.scope.role(),
            auth: AuthMethod::ApiKey {
                key_id: record.key_id.clone(),
                scope: record.scope,
            },
            key_rps: record
                .rate_limit_rps
                .map(|rps| (record.key_id.clone(), rps)),
            tenant: Some(record.tenant_id.clone()),
        })
    }

    async fn rate_limit(
        &self,
        ctx: &TenantContext,
        key_rps: Option<&(KeyId, u32)>,
        policy: Option<&RoutePolicy>,
    ) -> Result<Option<RateLimitStatus>, TenancyError> {
        let tenant = ctx.tenant_id();
        let key_check = key_rps.and_then(|(key_id, rps)| {
            RateQuota::per_second(*rps).map(|quota| RateCheck {
                key: RateLimitKey::api_key(tenant.clone(), key_id.clone()),
                quota,
            })
        });
        let route_check = policy
            .and_then(|p| p.rate_limit.as_ref())
            .map(|(route, quota)| RateCheck {
                key: RateLimitKey::route(tenant.clone(), route.clone()),
                quota: *quota,
            });
        let tenant_check = RateQuota::per_second(ctx.quotas().rps).map(|quota| RateCheck {
            key: RateLimitKey::tenant(tenant.clone()),
            quota,
        });
        // The checks live on the stack: no allocation per request.
        let limiter = &self.inner.stores.limiter;
        let result = match (key_check, route_check, tenant_check) {
            (None, None, None) => return Ok(None),
            (Some(a), None, None) | (None, Some(a), None) | (None, None, Some(a)) => {
                limiter.check(&[a]).await
            }
            (Some(a), Some(b), None) | (Some(a), None, Some(b)) | (None, Some(a), Some(b)) => {
                limiter.check(&[a, b]).await
            }
            (Some(a), Some(b), Some(c)) => limiter.check(&[a, b, c]).await,
        };
        match result {
            Ok(decision) if decision.allowed => Ok(Some(decision.status)),
            Ok(decision) => Err(ErrorKind::RateLimited(decision.status).into()),
            Err(e) => match self.inner.config.limits.on_store_failure {
                FailurePolicy::Open => {
                    tracing::warn!(error = %e, "rate limiter failed; letting the request through (fail-open)");
                    Ok(None)
                }
                FailurePolicy::Closed => Err(self.store_failure("rate limiter", e)),
            },
        }
    }

    fn store_failure(&self, store: &'static str, e: StoreError) -> TenancyError {
        tracing::error!(store, error = %e, "store failed");
        TenancyError::from(e)
    }

    fn is_ingestion_route(&self, method: &Method, path: &str) -> bool {
        self.inner
            .config
            .limits
            .ingestion_routes
            .iter()
            .any(|r: &RouteSpec| r.matches(method, path))
    }

    /// Where a refusal is written down. Without a verified credential: the
    /// platform security log only, never a tenant's audit log. With one: an
    /// audit event in the caller's home tenant (never in the tenant it
    /// asked for) for refused writes and for refusals at a tenant boundary,
    /// when that home tenant exists (else the security log again, so no
    /// token can open an audit log for a tenant nobody created).
    async fn log_refusal(
        &self,
        parts: &Parts,
        admission: &Admission,
        caller: Option<&Caller>,
        err: &TenancyError,
    ) {
        let verified = caller.filter(|c| !matches!(c.auth, AuthMethod::Anonymous));
        let Some(caller) = verified else {
            self.inner
                .security_log
                .record(admission.client_addr, err.code(), Utc::now());
            return;
        };
        let at_boundary = matches!(
            err.kind(),
            ErrorKind::TenantMismatch | ErrorKind::TenantNotAllowed | ErrorKind::UnknownTenant
        );
        if !self.inner.config.audit.enabled || (is_safe_method(&parts.method) && !at_boundary) {
            return;
        }
        let home = match &caller.tenant {
            Some(home) if matches!(self.inner.stores.tenants.get(home).await, Ok(Some(_))) => {
                home.clone()
            }
            _ => {
                self.inner
                    .security_log
                    .record(admission.client_addr, err.code(), Utc::now());
                return;
            }
        };
        let mut event = AuditEvent::new(
            home.clone(),
            caller.principal.subject.as_ref(),
            caller.principal.kind,
            "access.refused",
        )
        .resource(parts.uri.path())
        .outcome(err.status().as_u16())
        .detail("code", err.code())
        .detail("method", parts.method.as_str());
        if let Ok(Some(requested)) = self.inner.resolver.requested(parts)
            && requested != home
        {
            event = event.detail("requested_tenant", requested.as_str());
        }
        event.request_id = Some(admission.request_id.to_string());
        self.record_audit(with_addr(event, admission.client_addr));
    }

    /// Records how an admitted request ended: per-tenant metrics, usage
    /// metering, and an audit event when it changed state.
    pub fn complete(&self, admission: &Admission, status: StatusCode, elapsed: Duration) {
        let Some(ctx) = &admission.context else {
            return;
        };
        let now = Utc::now();
        self.inner
            .metrics
            .record(ctx.tenant_id(), status.as_u16(), elapsed);
        self.inner
            .recorder
            .meter(ctx.tenant_id(), &self.inner.requests_event, now, 1);
        if let Some(path) = admission
            .path
            .as_ref()
            .filter(|_| self.inner.config.audit.enabled)
        {
            let mut event = self
                .audit_event(ctx, http_action(&admission.method))
                .resource(path.as_ref())
                .outcome(status.as_u16())
                .at(now);
            event.client_addr = admission.client_addr;
            self.record_audit(event);
        }
    }

    /// An audit event for `ctx`'s caller and tenant, with the request id;
    /// set the resource and outcome, then pass it to
    /// [`record_audit`](Self::record_audit).
    pub fn audit_event(&self, ctx: &TenantContext, action: impl Into<String>) -> AuditEvent {
        let mut event = AuditEvent::new(
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
                FailurePolicy::Closed => Err(self.store_failure("quota store", e)),
            },
        }
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
    pub fn quotas_of(&self, tenant: &Tenant) -> PlanQuotas {
        let plan = self
            .inner
            .plans
            .get(&tenant.plan)
            .unwrap_or(&self.inner.default_plan);
        plan.quotas.with_overrides(&tenant.settings.quota_overrides)
    }

    /// Creates a tenant; `invalid_request` when its settings do not pass
    /// [`TenantSettings::validate`](crate::tenant::TenantSettings::validate).
    pub async fn create_tenant(&self, tenant: Tenant) -> Result<(), TenancyError> {
        tenant
            .settings
            .validate()
            .map_err(TenancyError::invalid_request)?;
        let id = tenant.id.clone();
        match self.tenant_store().insert(tenant).await {
            Ok(()) => {
                self.inner.stores.tenants.invalidate(&id);
                Ok(())
            }
            Err(StoreError::AlreadyExists) => {
                Err(ErrorKind::Conflict(format!("tenant {id} already exists")).into())
            }
            Err(e) => Err(self.store_failure("tenant store", e)),
        }
    }

    /// Replaces a tenant record and drops it from the cache;
    /// `invalid_request` when its settings do not pass
    /// [`TenantSettings::validate`](crate::tenant::TenantSettings::validate).
    pub async fn update_tenant(&self, tenant: Tenant) -> Result<(), TenancyError> {
        tenant
            .settings
            .validate()
            .map_err(TenancyError::invalid_request)?;
        let id = tenant.id.clone();
        let result = self.tenant_store().update(tenant).await;
        self.inner.stores.tenants.invalidate(&id);
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(ErrorKind::NotFound.into()),
            Err(e) => Err(self.store_failure("tenant store", e)),
        }
    }

    /// Drops a tenant from the cache, so the next request reads the store.
    pub fn invalidate_tenant(&self, id: &TenantId) {
        self.inner.stores.tenants.invalidate(id);
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
        self.insert_api_key(tenant, new, None, Limit::Unlimited)
            .await
    }

    /// Issues an API key for `tenant` on behalf of `caller`, within the
    /// plan's count of live keys (`quota_exceeded` at it; the count and the
    /// insert are one atomic store step, so concurrent issues on any number
    /// of instances never pass it). When the caller is itself an API key,
    /// the new key gets at most its parent's scope (`scope_denied`
    /// otherwise), expiry and own rate limit, records the parent, and is
    /// revoked with it ([`revoke_api_key`](Self::revoke_api_key)).
    ///
    /// ```
    /// use tenancy_core::config::TenancyConfig;
    /// use tenancy_core::engine::{NewApiKey, Tenancy};
    /// use tenancy_core::rbac::ApiKeyScope;
    /// use tenancy_core::tenant::{Tenant, TenantId};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
    /// let acme = TenantId::new("acme")?;
    /// tenancy.create_tenant(Tenant::new(acme.clone(), "Acme", "pro")).await?;
    /// let expires_at = Some(chrono::Utc::now() + chrono::Duration::minutes(1));
    /// let new = |scope| NewApiKey { name: "ci".into(), scope, rate_limit_rps: None, expires_at: None };
    /// let mut parent = new(ApiKeyScope::Full);
    /// parent.expires_at = expires_at;
    /// let parent = tenancy.issue_api_key(&acme, parent).await?;
    ///
    /// // The parent key calls in; its child expires with it.
    /// let (parts, _) = http::Request::post("/keys")
    ///     .header("x-api-key", parent.secret.expose())
    ///     .body(())?
    ///     .into_parts();
    /// let admission = tenancy.admit(&parts).await?;
    /// let ctx = admission.context().unwrap();
    /// let tenant = ctx.tenant().clone();
    /// let child = tenancy.issue_api_key_as(ctx, &tenant, new(ApiKeyScope::Full)).await?;
    /// assert_eq!(child.record.expires_at, expires_at);
    /// assert_eq!(child.record.parent_key_id.as_ref(), Some(&parent.record.key_id));
    ///
    /// // Revoking the parent revokes the child.
    /// let cascaded = tenancy.revoke_api_key(&acme, &parent.record.key_id).await?;
    /// assert_eq!(cascaded, vec![child.record.key_id.clone()]);
    /// # tenancy.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn issue_api_key_as(
        &self,
        caller: &TenantContext,
        tenant: &Tenant,
        mut new: NewApiKey,
    ) -> Result<IssuedApiKey, TenancyError> {
        let limit = self.quotas_of(tenant).api_keys;
        let AuthMethod::ApiKey { key_id, scope } = caller.auth_method() else {
            return self.insert_api_key(&tenant.id, new, None, limit).await;
        };
        if !scope.covers(new.scope) {
            return Err(ErrorKind::ScopeDenied { scope: *scope }.into());
        }
        let parent = self
            .inner
            .stores
            .api_keys
            .get(caller.tenant_id(), key_id)
            .await
            .map_err(|e| self.store_failure("API key store", e))?
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
        self.insert_api_key(&tenant.id, new, Some(parent.key_id.clone()), limit)
            .await
    }

    async fn insert_api_key(
        &self,
        tenant: &TenantId,
        new: NewApiKey,
        parent: Option<KeyId>,
        limit: Limit,
    ) -> Result<IssuedApiKey, TenancyError> {
        let key_id = new_key_id().ok_or_else(|| TenancyError::internal("no OS randomness"))?;
        let secret = ApiKeySecret::generate(&self.inner.config.auth.api_key_prefix, key_id.clone())
            .ok_or_else(|| TenancyError::internal("no OS randomness"))?;
        let digest = self
            .inner
            .hasher
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
        let inserted = self
            .inner
            .stores
            .api_keys
            .insert_within_limit(record.clone(), limit, record.created_at)
            .await
            .map_err(|e| self.store_failure("API key store", e))?;
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
    /// `None`); keys it issued end with it. `not_found` when `tenant` has no
    /// such key, `conflict` when it is revoked or expired (a dead key is
    /// never brought back).
    pub async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        grace: Option<Duration>,
    ) -> Result<IssuedApiKey, TenancyError> {
        let store = &self.inner.stores.api_keys;
        let old = store
            .get(tenant, key_id)
            .await
            .map_err(|e| self.store_failure("API key store", e))?
            .ok_or_else(|| TenancyError::from(ErrorKind::NotFound))?;
        let now = Utc::now();
        if old.check_usable(now).is_err() {
            return Err(ErrorKind::Conflict(format!(
                "key {key_id} is revoked or expired and cannot be rotated; issue a new key"
            ))
            .into());
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
                // It takes the old key's place.
                Limit::Unlimited,
            )
            .await?;
        match grace.and_then(|g| chrono::Duration::from_std(g).ok()) {
            Some(g) => {
                let until = now + g;
                let until = old.expires_at.map_or(until, |e| e.min(until));
                store
                    .set_expiry(tenant, key_id, Some(until))
                    .await
                    .map_err(|e| self.store_failure("API key store", e))?;
                for child in self.descendants(tenant, key_id).await? {
                    if child.expires_at.is_none_or(|e| e > until) {
                        store
                            .set_expiry(tenant, &child.key_id, Some(until))
                            .await
                            .map_err(|e| self.store_failure("API key store", e))?;
                    }
                }
            }
            None => {
                self.revoke_api_key(tenant, key_id).await?;
            }
        }
        Ok(issued)
    }

    /// Revokes `key_id` of `tenant` and every live key it issued, directly
    /// or through other keys; returns the ids of those revoked along with it
    /// (for the audit log). `not_found` for another tenant's key.
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Vec<KeyId>, TenancyError> {
        let store = &self.inner.stores.api_keys;
        let now = Utc::now();
        match store.revoke(tenant, key_id, now).await {
            Ok(true) => {}
            Ok(false) => return Err(ErrorKind::NotFound.into()),
            Err(e) => return Err(self.store_failure("API key store", e)),
        }
        let mut cascaded = Vec::new();
        for child in self.descendants(tenant, key_id).await? {
            if child.revoked_at.is_none() {
                store
                    .revoke(tenant, &child.key_id, now)
                    .await
                    .map_err(|e| self.store_failure("API key store", e))?;
                cascaded.push(child.key_id);
            }
        }
        Ok(cascaded)
    }

    /// The keys `key_id` issued, directly or through other keys.
    async fn descendants(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Vec<ApiKeyRecord>, TenancyError> {
        let keys = self
            .inner
            .stores
            .api_keys
            .list(tenant)
            .await
            .map_err(|e| self.store_failure("API key store", e))?;
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
        ];
        for (store, result) in checks {
            if let Err(e) = result {
                return Err(self.store_failure(store, e));
            }
        }
        Ok(())
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

fn http_action(method: &Method) -> String {
    format!("http.{}", method.as_str().to_ascii_lowercase())
}

fn with_addr(mut event: AuditEvent, addr: Option<IpAddr>) -> AuditEvent {
    event.client_addr = addr;
    event
}

/// Request ids: the client's `X-Request-Id` when it is short and printable,
/// else a process prefix and a counter.
struct RequestIds {
    prefix: u32,
    counter: AtomicU64,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 4];
        let _ = getrandom::fill(&mut seed);
        Self {
            prefix: u32::from_be_bytes(seed),
            counter: AtomicU64::new(0),
        }
    }

    fn for_request(&self, parts: &Parts) -> Arc<str> {
        if let Some(id) = parts.headers.get(&REQUEST_ID).and_then(valid_request_id) {
            return Arc::from(id);
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // `{prefix:08x}-{n:x}` formatted on the stack: one allocation.
        let mut buf = [0u8; 8 + 1 + 16];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{:08x}-{n:x}", self.prefix));
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        Arc::from(std::str::from_utf8(&buf[..len]).unwrap_or("request"))
    }
}

fn valid_request_id(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then_some(s)
}

#[cfg(test)]
mod tests;
