//! [`TenancyBuilder`]: the stores, extra tenant sources and cache settings
//! of a [`Tenancy`], validated into one at [`build`](TenancyBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::auth_throttle::AuthThrottle;
use super::recorder::{OVERFLOW_EVENT_TYPE, Recorder, Sinks};
use super::security_log::SecurityLog;
use super::{Inner, REQUESTS_EVENT, Stores, Tenancy};
use crate::config::{ConfigError, TenancyConfig};
use crate::credential::ApiKeyDigest;
use crate::label::Label;
use crate::pipeline::authenticate::Authenticator;
use crate::request::RequestIds;
use crate::resolve::{CustomSource, TenantResolver, TenantSourceFn};
use crate::store::memory::{
    MemoryApiKeyStore, MemoryAuditLog, MemoryMemberStore, MemoryQuotaStore, MemoryRateLimiter,
    MemoryRealmStore, MemoryTeamStore, MemoryTenantStore, MemoryUsageMeter,
};
use crate::store::tenant_cache::{Plans, TenantCache};
use crate::store::{
    ApiKeyStore, AuditQuery, AuditSink, MemberStore, QuotaStore, RateLimiter, RealmStore,
    TeamStore, TenantStore, UsageMeter,
};

/// Builds a [`Tenancy`]; stores default to the in-memory ones.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::store::memory::MemoryTenantStore;
/// use tenancy_core::{Tenancy, TenancyConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let tenancy = Tenancy::builder(TenancyConfig::default())
///     .tenant_store(Arc::new(MemoryTenantStore::new()))
///     .tenant_cache_ttl(std::time::Duration::from_secs(1))
///     .build()?;
/// # tenancy.shutdown().await;
/// # Ok::<(), tenancy_core::config::ConfigError>(())
/// # }).unwrap();
/// ```
pub struct TenancyBuilder {
    config: TenancyConfig,
    tenants: Option<Arc<dyn TenantStore>>,
    api_keys: Option<Arc<dyn ApiKeyStore>>,
    realms: Option<Arc<dyn RealmStore>>,
    limiter: Option<Arc<dyn RateLimiter>>,
    quotas: Option<Arc<dyn QuotaStore>>,
    audit_sink: Option<Arc<dyn AuditSink>>,
    audit_query: Option<Arc<dyn AuditQuery>>,
    usage: Option<Arc<dyn UsageMeter>>,
    members: Option<Arc<dyn MemberStore>>,
    teams: Option<Arc<dyn TeamStore>>,
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
    pub(super) fn new(config: TenancyConfig) -> Self {
        Self {
            config,
            tenants: None,
            api_keys: None,
            realms: None,
            limiter: None,
            quotas: None,
            audit_sink: None,
            audit_query: None,
            usage: None,
            members: None,
            teams: None,
            custom_sources: Vec::new(),
            tenant_cache_ttl: Duration::from_secs(5),
        }
    }

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

    /// The store of the realms tenants bring (default: in memory).
    pub fn realm_store(mut self, store: Arc<dyn RealmStore>) -> Self {
        self.realms = Some(store);
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

    /// The store of tenants' members (default: in memory).
    pub fn member_store(mut self, store: Arc<dyn MemberStore>) -> Self {
        self.members = Some(store);
        self
    }

    /// The store of tenants' teams (default: in memory).
    pub fn team_store(mut self, store: Arc<dyn TeamStore>) -> Self {
        self.teams = Some(store);
        self
    }

    /// Adds a tenant source of your own (a closure or a
    /// [`TenantSourceFn`]), tried after the configured ones.
    ///
    /// ```
    /// # use tenancy_core::{config::TenancyConfig, engine::{RequestHead, Tenancy}};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tenancy = Tenancy::builder(TenancyConfig::default())
    ///     .tenant_source(|head: &RequestHead<'_>| {
    ///         head.header_str(&http::HeaderName::from_static("x-org")).map(str::to_owned)
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # tenancy.shutdown().await;
    /// # });
    /// ```
    pub fn tenant_source(mut self, source: impl TenantSourceFn) -> Self {
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
        let catalog = config.plans();
        let default_plan = catalog
            .get(&config.default_plan)
            .cloned()
            .ok_or_else(|| ConfigError::new("default_plan", "names no plan"))?;
        let plans = Plans {
            catalog,
            default: default_plan,
        };
        let mut resolver = TenantResolver::from_config(&config.resolution)?;
        for source in self.custom_sources {
            resolver = resolver.with_source(source);
        }
        let authenticator = Authenticator::from_config(&config)?;
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
        let label = |name: &str| {
            Label::new(name).map_err(|_| ConfigError::new("engine", "an event type is not a label"))
        };
        let requests_event = label(REQUESTS_EVENT)?;
        let recorder = Recorder::start(
            &config.audit,
            Sinks {
                overflow_type: label(OVERFLOW_EVENT_TYPE)?,
                requests_type: requests_event.clone(),
                audit: audit_sink.clone(),
                usage: usage.clone(),
                api_keys: api_keys.clone(),
            },
            &runtime,
        );
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(MemoryRateLimiter::new()));
        // Probed once: a store that cannot answer at once is never tried
        // without waiting, so a request through it is not run twice.
        let keys_answer_now = api_keys
            .find_by_digest_now(&ApiKeyDigest::from_bytes([0; 32]))
            .is_some();
        let limiter_answers_now = limiter.check_now(&[]).is_some();
        let reads_catch_up = audit_sink.writes_are_cheap() && usage.writes_are_cheap();
        let stores = Stores {
            tenants: TenantCache::new(
                self.tenants
                    .unwrap_or_else(|| Arc::new(MemoryTenantStore::new())),
                self.tenant_cache_ttl,
                plans,
            ),
            api_keys,
            realms: self
                .realms
                .unwrap_or_else(|| Arc::new(MemoryRealmStore::new())),
            limiter,
            quotas: self
                .quotas
                .unwrap_or_else(|| Arc::new(MemoryQuotaStore::new())),
            audit_query,
            usage,
            audit_sink,
            reads_catch_up,
            members: self
                .members
                .unwrap_or_else(|| Arc::new(MemoryMemberStore::new())),
            teams: self
                .teams
                .unwrap_or_else(|| Arc::new(MemoryTeamStore::new())),
            keys_answer_now,
            limiter_answers_now,
        };
        Ok(Tenancy {
            inner: Arc::new(Inner {
                resolver,
                authenticator,
                stores,
                recorder,
                request_ids: RequestIds::new(),
                clock: crate::clock::Clock::new(),
                throttle: AuthThrottle::new(&config.auth.failure_throttle),
                security_log: SecurityLog::default(),
                trusted_proxies: config.network.trusted_proxies(),
                warned_no_client_addr: std::sync::atomic::AtomicBool::new(false),
                config,
            }),
        })
    }
}
