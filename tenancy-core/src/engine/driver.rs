//! The admission lifecycle the adapters drive: [`Tenancy::admit`] runs the
//! [stages](crate::pipeline) on a [`RequestHead`]; the [`Admission`] it
//! returns writes the answer's headers and records how the request ended
//! ([`Admission::finish`]), or, if the answer never comes (the client went
//! away, the handler panicked), records that when it is dropped. An adapter
//! cannot skip a step: the admission finishes itself.
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
//! let (parts, _) = http::Request::get("/api/v1/things")
//!     .header("x-tenant-id", "acme")
//!     .body(())?
//!     .into_parts();
//! let admission = tenancy.admit(&RequestHead::from(&parts)).await?;
//! assert_eq!(admission.context().unwrap().tenant_id().as_str(), "acme");
//! let mut headers = http::HeaderMap::new();
//! admission.finish(http::StatusCode::OK, |name, value| {
//!     headers.insert(name.clone(), value);
//! });
//! assert_eq!(headers["ratelimit-limit"], "10");
//! assert!(headers.contains_key("x-request-id"));
//! # tenancy.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use tracing::Level;

use super::Tenancy;
use super::recorder::LAST_USE_PRECISION_NANOS;
use super::refusal::Who;
use crate::clock::Now;
use crate::context::{ContextInner, TenantContext};
use crate::error::{ErrorKind, TenancyError};
use crate::limit::RateLimitStatus;
use crate::pipeline::{self, Caller, Halt, Wait, gate, rate};
use crate::request::{
    REQUEST_ID_HEADER, RequestHead, RequestId, RoutePolicy, loggable, prefix_within,
};
use crate::tenant::is_safe_method;
use crate::tenant_metrics::TenantMetrics;

/// What a route's policy decided ([`Tenancy::check_route`]). Route layers
/// put it in the response extensions, and the tenancy layer passes it to
/// [`Admission::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteVerdict {
    /// Allowed, with the route bucket's status when it has a limit.
    Allowed(Option<RateLimitStatus>),
    /// Refused (and the refusal written down).
    Refused,
}

impl RouteVerdict {
    /// This verdict over the `inner` one of a policy nested inside it: a
    /// refusal stands, else the tighter route status is reported.
    ///
    /// ```
    /// use tenancy_core::engine::RouteVerdict;
    /// assert_eq!(RouteVerdict::Allowed(None).merge(Some(RouteVerdict::Refused)), RouteVerdict::Refused);
    /// assert_eq!(RouteVerdict::Allowed(None).merge(None), RouteVerdict::Allowed(None));
    /// ```
    pub fn merge(self, inner: Option<RouteVerdict>) -> RouteVerdict {
        match (self, inner) {
            (RouteVerdict::Refused, _) | (_, Some(RouteVerdict::Refused)) => RouteVerdict::Refused,
            (RouteVerdict::Allowed(Some(outer)), Some(RouteVerdict::Allowed(Some(inner)))) => {
                RouteVerdict::Allowed(Some(outer.tighter(inner)))
            }
            (RouteVerdict::Allowed(outer), Some(RouteVerdict::Allowed(inner))) => {
                RouteVerdict::Allowed(outer.or(inner))
            }
            (allowed, None) => allowed,
        }
    }
}

/// What an adapter leaves in an admitted request's extensions, as one
/// value: the engine, and the context when the request has a tenant. The
/// extractors and route policies read it.
///
/// ```
/// use tenancy_core::engine::Admitted;
///
/// // No tenancy middleware ran: an internal error, not a client's fault.
/// let err = Admitted::context_of(None).unwrap_err();
/// assert_eq!(err.code(), "internal_error");
/// ```
#[derive(Debug, Clone)]
pub struct Admitted {
    tenancy: Tenancy,
    context: Option<TenantContext>,
}

impl Admitted {
    /// The engine that admitted the request.
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// The context; `None` for a request admitted without a tenant.
    pub fn context(&self) -> Option<&TenantContext> {
        self.context.as_ref()
    }

    /// The context of a request whose extensions held `admitted`:
    /// `tenant_required` when it was admitted without a tenant, an internal
    /// error when no tenancy middleware ran at all.
    pub fn context_of(admitted: Option<&Admitted>) -> Result<&TenantContext, TenancyError> {
        match admitted {
            Some(Admitted {
                context: Some(ctx), ..
            }) => Ok(ctx),
            Some(Admitted { tenancy, .. }) => {
                let r = &tenancy.config().resolution;
                Err(TenancyError::tenant_required(
                    r.tenant_header.clone(),
                    r.query_param.clone(),
                ))
            }
            None => Err(TenancyError::internal(
                "the tenancy middleware is not installed on this route",
            )),
        }
    }
}

/// How much of an admitted request's path is kept for its audit event and
/// log line: the event's limit and one character more.
const KEPT_PATH_BYTES: usize = crate::audit::MAX_RESOURCE_BYTES + 4;

/// The status a request is recorded with when its answer never came.
pub const CLIENT_CLOSED: u16 = 499;

/// An admitted request: its context (when it has a tenant), the rate-limit
/// status to report, and what is recorded when it ends.
///
/// Finish it with [`finish`](Self::finish) once the answer is known; an
/// admission dropped unfinished is recorded with status 499 (the client
/// closed the request).
pub struct Admission {
    tenancy: Tenancy,
    subject: Subject,
    rate_limit: Option<RateLimitStatus>,
    method: Method,
    /// The path, kept for the audit event of a state-changing request and
    /// for the request log when it is on.
    path: Option<Box<str>>,
    /// Whether the request is audited when it ends.
    audit_write: bool,
    /// When it was admitted.
    admitted: Now,
    /// The span the handler runs in ([`Admission::span`]), boxed: it is
    /// there only while something listens at `DEBUG`, and the admission
    /// moves with the answer's future.
    span: Option<Box<tracing::Span>>,
    finished: bool,
}

/// Who an admission is for.
enum Subject {
    /// A request with a tenant: its context, which holds the request id.
    Tenant(TenantContext),
    /// A request without one (or not yet admitted): its request id.
    NoTenant(RequestId),
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("context", &self.context())
            .field("rate_limit", &self.rate_limit)
            .field("request_id", self.id())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// The context; `None` for tenant-less requests.
    pub fn context(&self) -> Option<&TenantContext> {
        match &self.subject {
            Subject::Tenant(ctx) => Some(ctx),
            Subject::NoTenant(_) => None,
        }
    }

    /// The rate-limit status to report on the answer.
    pub fn rate_limit(&self) -> Option<&RateLimitStatus> {
        self.rate_limit.as_ref()
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        self.id().as_str()
    }

    /// What the adapter puts in the request's extensions.
    pub fn admitted(&self) -> Admitted {
        Admitted {
            tenancy: self.tenancy.clone(),
            context: self.context().cloned(),
        }
    }

    fn id(&self) -> &RequestId {
        match &self.subject {
            Subject::Tenant(ctx) => ctx.id(),
            Subject::NoTenant(id) => id,
        }
    }

    /// The request id, taken out (the context or the refusal keeps it).
    fn take_id(&mut self) -> RequestId {
        match &mut self.subject {
            Subject::Tenant(ctx) => ctx.id().clone(),
            Subject::NoTenant(id) => std::mem::take(id),
        }
    }

    /// Takes in what the route's policy decided ([`Tenancy::check_route`]):
    /// a route limit tighter than the admission's is reported instead. A
    /// refusal answers like the pipeline's refusals: with its own headers
    /// only, and a refused write is not audited again (its refusal was).
    pub fn apply(&mut self, verdict: RouteVerdict) {
        match verdict {
            RouteVerdict::Allowed(Some(status)) => {
                self.rate_limit = Some(match self.rate_limit {
                    Some(own) => own.tighter(status),
                    None => status,
                });
            }
            RouteVerdict::Allowed(None) => {}
            RouteVerdict::Refused => {
                self.rate_limit = None;
                self.audit_write = false;
            }
        }
    }

    /// The `DEBUG` tracing span the handler runs in, with the tenant,
    /// principal and request id; `None` when nothing listened at `DEBUG`
    /// when it was admitted (tower-http's `TraceLayer` makes its spans at
    /// `DEBUG` too: a service logging at `INFO` pays nothing for it).
    pub fn span(&self) -> Option<&tracing::Span> {
        self.span.as_deref()
    }

    /// Enters the admission's span (if any) until the guard drops: an
    /// adapter holds it while it calls and polls the handler.
    pub fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        self.span.as_deref().map(tracing::Span::enter)
    }

    fn make_span(&self) -> Option<Box<tracing::Span>> {
        if !tracing::level_enabled!(Level::DEBUG) {
            return None;
        }
        let span = match &self.subject {
            Subject::Tenant(ctx) => tracing::debug_span!(
                "tenancy",
                tenant_id = %ctx.tenant_id(),
                principal = %ctx.principal().subject,
                request_id = %ctx.id(),
            ),
            Subject::NoTenant(id) => tracing::debug_span!("tenancy", request_id = %id),
        };
        Some(Box::new(span)).filter(|span| !span.is_disabled())
    }

    /// Ends the request answered with `status`: passes the answer's headers
    /// (`RateLimit-*`, `x-request-id`) to `set_header`, and records the
    /// request (per-tenant metrics, usage metering, and an audit event when
    /// it changed state).
    pub fn finish(
        mut self,
        status: StatusCode,
        mut set_header: impl FnMut(&HeaderName, HeaderValue),
    ) {
        if let Some(limit) = &self.rate_limit {
            limit.each_header(&mut set_header);
        }
        if let Some(id) = self.id().to_header_value() {
            set_header(&REQUEST_ID_HEADER, id);
        }
        self.record(status.as_u16());
    }

    fn record(&mut self, status: u16) {
        self.finished = true;
        let Subject::Tenant(ctx) = &self.subject else {
            return;
        };
        let elapsed = self.admitted.instant.elapsed();
        // Metered in the hour it was admitted.
        let inner = &self.tenancy.inner;
        inner.recorder.request_done(
            ctx.cached_tenant(),
            status,
            elapsed,
            self.admitted.unix_secs(),
        );
        let path = self.path.as_deref().unwrap_or_default();
        tracing::debug!(
            target: REQUEST_LOG,
            tenant_id = %ctx.tenant_id(),
            principal = %ctx.principal().subject,
            method = %self.method,
            path = %loggable(path),
            status,
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            request_id = %ctx.id(),
            "request",
        );
        if self.audit_write {
            let now = self.admitted.utc()
                + chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::zero());
            let mut event = self
                .tenancy
                .audit_event_at(ctx, http_action(&self.method), now)
                .outcome(status);
            // The path kept for this event moves into it: one copy in all.
            event.resource = self.path.take().map(String::from);
            self.tenancy.record_audit(event);
        }
    }
}

/// The target of the one event per request (`DEBUG`): tenant, principal,
/// method, path (its first 256 bytes: a caller's path never floods the
/// log), status, latency and request id of every admitted request, and the
/// code of every refusal. Turn it on with
/// `RUST_LOG=tenancy::request=debug`.
pub const REQUEST_LOG: &str = "tenancy::request";

/// A refused request: why, and the request id its answer carries.
///
/// It reads as the [`TenancyError`] it holds (`Deref`), and converts into
/// it with `?`.
#[derive(Debug)]
pub struct Refusal {
    error: TenancyError,
    request_id: Option<RequestId>,
}

impl Refusal {
    fn new(error: TenancyError, request_id: RequestId, head: &RequestHead<'_>) -> Self {
        tracing::debug!(
            target: REQUEST_LOG,
            method = %head.method(),
            path = %loggable(head.path()),
            status = error.status().as_u16(),
            code = %error.code(),
            request_id = %request_id,
            "refused",
        );
        Self {
            error,
            request_id: Some(request_id),
        }
    }

    /// Why the request was refused.
    pub fn error(&self) -> &TenancyError {
        &self.error
    }

    /// The request id; `None` for a request refused before it got one
    /// (one the adapter could not read).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().map(RequestId::as_str)
    }

    /// The refusal's problem answer, with the request id in `x-request-id`.
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        let mut response = self.error.to_response();
        if let Some(id) = self
            .request_id
            .as_ref()
            .and_then(RequestId::to_header_value)
        {
            response.headers_mut().insert(REQUEST_ID_HEADER.clone(), id);
        }
        response
    }
}

impl std::ops::Deref for Refusal {
    type Target = TenancyError;

    fn deref(&self) -> &TenancyError {
        &self.error
    }
}

impl From<TenancyError> for Refusal {
    /// A refusal before admission began (no request id).
    fn from(error: TenancyError) -> Self {
        Self {
            error,
            request_id: None,
        }
    }
}

impl From<Refusal> for TenancyError {
    fn from(refusal: Refusal) -> Self {
        refusal.error
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.finished {
            self.record(CLIENT_CLOSED);
        }
    }
}

fn http_action(method: &Method) -> &'static str {
    match *method {
        Method::POST => "http.post",
        Method::PUT => "http.put",
        Method::PATCH => "http.patch",
        Method::DELETE => "http.delete",
        Method::GET => "http.get",
        Method::HEAD => "http.head",
        Method::OPTIONS => "http.options",
        _ => "http.other",
    }
}

impl Tenancy {
    /// Admits or refuses a request, given its head: authenticate, resolve,
    /// gate, limit ([`crate::pipeline`]). Every refusal is counted and
    /// written down (the security log or the caller's home tenant's audit
    /// log).
    ///
    /// An adapter asks [`admit_now`](Self::admit_now) first, and awaits
    /// this only when that could not answer.
    pub async fn admit(&self, head: &RequestHead<'_>) -> Result<Admission, Refusal> {
        match self.admit_in(head, Wait::Allowed).await {
            Some(result) => result,
            None => Err(Refusal::from(Halt::WouldWait.into_error())),
        }
    }

    /// [`admit`](Self::admit) without waiting: the answer when every store
    /// the request needs answers at once (the in-memory stores, the tenant
    /// cache, the verified-token cache), else `None`, with nothing changed:
    /// then await [`admit`](Self::admit). The adapters' fast path: no future
    /// to box.
    ///
    /// ```
    /// use tenancy_core::engine::{RequestHead, Tenancy};
    /// use tenancy_core::rbac::Role;
    /// use tenancy_core::tenant::{TenantId, TenantRecord};
    /// use tenancy_core::TenancyConfig;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = TenancyConfig::builder().anonymous_role(Role::Viewer).build()?;
    /// let tenancy = Tenancy::builder(config).build()?;
    /// tenancy.admin().create_tenant(TenantRecord::new(TenantId::new("acme")?, "Acme", "free")).await?;
    ///
    /// let (parts, _) = http::Request::get("/").header("x-tenant-id", "acme").body(())?.into_parts();
    /// let head = RequestHead::from(&parts);
    /// let admission = match tenancy.admit_now(&head) {
    ///     Some(answer) => answer?,
    ///     None => tenancy.admit(&head).await?,
    /// };
    /// assert_eq!(admission.context().unwrap().tenant_id().as_str(), "acme");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn admit_now(&self, head: &RequestHead<'_>) -> Option<Result<Admission, Refusal>> {
        // A store that never answers at once would stop the run after the
        // work before it (the key's digest, the tenant, the gates): skip
        // the run, so that work is not done twice.
        let inner = &self.inner;
        let stores = &inner.stores;
        if (inner.config.limits.enabled && !stores.limiter_answers_now)
            || (!stores.keys_answer_now && inner.authenticator.presents_api_key(head))
        {
            return None;
        }
        // A run that cannot wait awaits nothing pending: one poll ends it.
        let run = std::pin::pin!(self.admit_in(head, Wait::Never));
        match run.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(answer) => answer,
            std::task::Poll::Pending => None,
        }
    }

    /// Runs admission; `None` when `wait` is [`Wait::Never`] and a store
    /// would have to be awaited (nothing was changed).
    async fn admit_in(
        &self,
        head: &RequestHead<'_>,
        wait: Wait,
    ) -> Option<Result<Admission, Refusal>> {
        let inner = &self.inner;
        let admitted = inner.clock.now();
        let head = &self.with_client(head);
        let request_id = inner.request_ids.for_request(head);
        let client_addr = head.client_addr();
        if let Some(err) = self.throttled(client_addr)
            && !inner.authenticator.is_known_good(head, admitted)
        {
            TenantMetrics::refused(err.code());
            inner
                .security_log
                .record(client_addr, err.code(), admitted.utc());
            return Some(Err(Refusal::new(err, request_id, head)));
        }
        let mut admission = Admission {
            tenancy: self.clone(),
            subject: Subject::NoTenant(request_id),
            rate_limit: None,
            method: head.method().clone(),
            path: None,
            audit_write: false,
            admitted,
            span: None,
            // Nothing to record until it is admitted.
            finished: true,
        };
        match self.run_pipeline(head, &mut admission, wait).await {
            Ok(()) => {
                admission.finished = false;
                admission.audit_write =
                    !is_safe_method(head.method()) && inner.config.audit.enabled;
                if admission.audit_write || tracing::enabled!(target: REQUEST_LOG, Level::DEBUG) {
                    // The caller chooses the path's length: keep only what
                    // the event and the log line can hold (a path cut here
                    // is still longer than the event's limit, so the event
                    // still marks it cut).
                    let kept = prefix_within(head.path(), KEPT_PATH_BYTES);
                    admission.path = Some(kept.into());
                }
                admission.span = admission.make_span();
                Some(Ok(admission))
            }
            Err((Halt::WouldWait, _)) => None,
            Err((Halt::Refused(err), caller)) => {
                // Writing the refusal down is the one step that may read a
                // store: it goes first, so a run that cannot wait stops
                // before anything is counted.
                let who = caller.as_ref().and_then(Who::of_caller);
                if let Err(Halt::WouldWait) = self
                    .record_refusal(head, admission.id(), who, &err, wait)
                    .await
                {
                    return None;
                }
                TenantMetrics::refused(err.code());
                // A failed authentication, or a store failure answered to a
                // bearer token nobody verified: forged tokens naming a realm
                // whose keys cannot be fetched cost a fetch attempt each. An
                // API key store that is down is not the caller's doing.
                let failed = err.status() == StatusCode::UNAUTHORIZED
                    || (err.status() == StatusCode::SERVICE_UNAVAILABLE
                        && caller.is_none()
                        && !inner.authenticator.presents_api_key(head));
                if failed && let (Some(throttle), Some(addr)) = (&inner.throttle, client_addr) {
                    throttle.failed(addr);
                }
                Some(Err(Refusal::new(err, admission.take_id(), head)))
            }
        }
    }

    async fn run_pipeline(
        &self,
        head: &RequestHead<'_>,
        admission: &mut Admission,
        wait: Wait,
    ) -> Result<(), (Halt, Option<Caller>)> {
        let inner = &self.inner;
        let stores = &inner.stores;
        let caller = inner
            .authenticator
            .authenticate(
                head,
                stores.api_keys.as_ref(),
                stores.realms.as_ref(),
                admission.admitted,
                wait,
            )
            .await
            .map_err(|e| (e, None))?;
        let checked = async {
            let Some(resolution) = pipeline::tenant::resolve(
                &inner.resolver,
                &stores.tenants,
                head,
                &caller,
                admission.admitted.instant,
                wait,
            )
            .await?
            else {
                return Ok(None);
            };
            gate::status(&resolution.tenant.record, head.method())?;
            if resolution.cross_tenant {
                gate::home_active(&stores.tenants, caller.tenant.as_ref(), wait).await?;
            }
            gate::scope(&caller, head, &inner.config.limits.ingestion_routes)?;
            if inner.config.limits.enabled {
                let buckets = rate::Buckets {
                    tenant: &resolution.tenant.record.id,
                    key: caller
                        .key
                        .as_ref()
                        .and_then(|k| Some((&k.key_id, k.rate_limit_rps?))),
                    route: None,
                    tenant_rps: resolution.tenant.quotas.rps,
                };
                admission.rate_limit = rate::take(
                    stores.limiter.as_ref(),
                    inner.config.limits.on_store_failure,
                    buckets,
                    wait,
                )
                .await?;
            }
            // The rate buckets were the last store: nothing below waits.
            Ok(Some(resolution))
        };
        let resolution = match checked.await {
            Ok(resolution) => resolution,
            Err(e) => return Err((e, Some(caller))),
        };
        if let Some(key) = &caller.key
            && let Some(tenant) = &caller.tenant
            && key.last_used_at.is_none_or(|at| {
                at.timestamp_nanos_opt().is_none_or(|at| {
                    admission.admitted.unix_nanos.saturating_sub(at) >= LAST_USE_PRECISION_NANOS
                })
            })
        {
            inner
                .recorder
                .touch(tenant, &key.key_id, admission.admitted.utc());
        }
        let Some(resolution) = resolution else {
            return Ok(());
        };
        let ctx = self.context(caller, resolution, admission, head);
        if ctx.is_cross_tenant() {
            let event = self
                .audit_event_at(&ctx, "tenant.cross_access", admission.admitted.utc())
                .resource(head.path())
                .detail(
                    "home_tenant",
                    ctx.home_tenant().map(|t| t.as_str()).unwrap_or_default(),
                );
            self.record_audit(event);
        }
        admission.subject = Subject::Tenant(ctx);
        Ok(())
    }

    /// The context of an admitted request.
    fn context(
        &self,
        caller: Caller,
        resolution: pipeline::tenant::Resolution,
        admission: &mut Admission,
        head: &RequestHead<'_>,
    ) -> TenantContext {
        TenantContext::from_inner(ContextInner {
            tenant: resolution.tenant,
            principal: caller.principal,
            role: caller.role,
            auth: caller.auth,
            request_id: admission.take_id(),
            cross_tenant: resolution.cross_tenant,
            home_tenant: caller.tenant,
            client_addr: head.client_addr(),
        })
    }

    /// Applies a route's policy to an admitted request: its minimum role,
    /// then its rate limit. A refusal is counted and written down like the
    /// pipeline's; an allowed route limit returns the status to report. Pass
    /// the outcome to [`Admission::apply`] as a [`RouteVerdict`].
    pub async fn check_route(
        &self,
        ctx: &TenantContext,
        head: &RequestHead<'_>,
        policy: &RoutePolicy,
    ) -> Result<Option<RateLimitStatus>, TenancyError> {
        let inner = &self.inner;
        // The client as admission found it, behind proxies too.
        let head = &head.with_client_addr(ctx.client_addr().or(head.client_addr()));
        let checked = async {
            gate::role(ctx.role(), policy.min_role)?;
            let Some((route, quota)) = &policy.rate_limit else {
                return Ok(None);
            };
            if !inner.config.limits.enabled {
                return Ok(None);
            }
            let buckets = rate::Buckets {
                tenant: ctx.tenant_id(),
                key: None,
                route: Some((route, *quota)),
                tenant_rps: 0,
            };
            rate::take(
                inner.stores.limiter.as_ref(),
                inner.config.limits.on_store_failure,
                buckets,
                Wait::Allowed,
            )
            .await
            .map_err(Halt::into_error)
        };
        match checked.await {
            Ok(status) => Ok(status),
            Err(err) => {
                TenantMetrics::refused(err.code());
                // Waiting is allowed: it cannot stop.
                let _ = self
                    .record_refusal(head, ctx.id(), Who::of_context(ctx), &err, Wait::Allowed)
                    .await;
                Err(err)
            }
        }
    }

    /// What a route layer runs: `policy` for a request whose extensions
    /// held `admitted` (no context: the refusal [`Admitted::context_of`]
    /// gives).
    pub async fn check_route_of(
        admitted: Option<&Admitted>,
        head: &RequestHead<'_>,
        policy: &RoutePolicy,
    ) -> Result<RouteVerdict, TenancyError> {
        let ctx = Admitted::context_of(admitted)?;
        let tenancy = admitted.map(Admitted::tenancy).ok_or_else(|| {
            TenancyError::internal("the tenancy middleware is not installed on this route")
        })?;
        tenancy
            .check_route(ctx, head, policy)
            .await
            .map(RouteVerdict::Allowed)
    }

    /// `head` with the client's address in place of the peer's: the
    /// rightmost untrusted hop of the forwarding header when the peer is a
    /// trusted proxy ([`TrustedProxies`](crate::client_addr::TrustedProxies)).
    /// Warns once when the throttle is on and the adapter passes no
    /// address (an axum server started without `ConnectInfo`).
    pub(crate) fn with_client<'h>(&self, head: &RequestHead<'h>) -> RequestHead<'h> {
        let inner = &self.inner;
        if head.client_addr().is_none() {
            if inner.throttle.is_some()
                && !inner.warned_no_client_addr.load(Ordering::Relaxed)
                && !inner.warned_no_client_addr.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    "requests reach tenancy without a client address: failed authentications are not throttled, and the audit and security logs name no address. With axum, serve with `into_make_service_with_connect_info::<SocketAddr>()`"
                );
            }
            return *head;
        }
        if inner.trusted_proxies.is_empty() {
            return *head;
        }
        head.with_client_addr(inner.trusted_proxies.client_addr(head))
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
}
