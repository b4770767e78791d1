//! [`TenantContext`]: everything a handler needs to know about an admitted
//! request: the tenant, who is calling, with which role and scope, on which
//! plan, how they authenticated, and the request id.

use std::sync::Arc;

use crate::audit::ActorKind;
use crate::key_id::KeyId;
use crate::plan::{Plan, PlanQuotas};
use crate::rbac::{ApiKeyScope, Permission, Role};
use crate::request::RequestId;
use crate::store::tenant_cache::CachedTenant;
use crate::tenant::{TenantId, TenantRecord};

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A JWT from the named realm.
    Jwt {
        /// The realm's name.
        realm: Arc<str>,
    },
    /// An API key.
    ApiKey {
        /// The key's public id.
        key_id: KeyId,
        /// The key's scope.
        scope: ApiKeyScope,
    },
    /// No credential (tenancy without authentication, e.g. a header tenant).
    Anonymous,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The subject: JWT `sub`, API key id, or `anonymous`.
    pub subject: Arc<str>,
    /// What kind of principal it is.
    pub kind: ActorKind,
}

impl Principal {
    /// A principal of `kind` named `subject`.
    pub fn new(subject: impl Into<Arc<str>>, kind: ActorKind) -> Self {
        Self {
            subject: subject.into(),
            kind,
        }
    }

    /// The anonymous principal.
    pub fn anonymous() -> Self {
        static ANONYMOUS: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| Arc::from("anonymous"));
        Self::new(ANONYMOUS.clone(), ActorKind::Anonymous)
    }
}

/// The admitted request's tenant and caller. Cheap to clone (a few
/// reference counts, no allocation): the adapters put it in the request
/// extensions.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::context::{AuthMethod, Principal, TenantContext};
/// use tenancy_core::audit::ActorKind;
/// use tenancy_core::plan::PlanCatalog;
/// use tenancy_core::rbac::{Permission, Role};
/// use tenancy_core::tenant::{TenantRecord, TenantId};
///
/// let tenant = TenantRecord::new(TenantId::new("acme")?, "Acme", "free");
/// let plan = PlanCatalog::default().get("free").unwrap().clone();
/// let ctx = TenantContext::new(
///     Arc::new(tenant), plan, Principal::new("alice", ActorKind::User),
///     Role::Operator, AuthMethod::Jwt { realm: "users".into() }, "req-1",
/// );
/// assert_eq!(ctx.tenant_id().as_str(), "acme");
/// assert!(ctx.can(Permission::SendTelemetry));
/// assert!(!ctx.can(Permission::ReadAudit));
/// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
/// ```
#[derive(Debug, Clone)]
pub struct TenantContext {
    inner: ContextInner,
}

/// Everything a context holds; the engine builds contexts from it in one
/// step.
#[derive(Debug, Clone)]
pub(crate) struct ContextInner {
    /// The tenant record with its plan and quotas, as the tenant cache
    /// holds them.
    pub(crate) tenant: Arc<CachedTenant>,
    pub(crate) principal: Principal,
    pub(crate) role: Role,
    pub(crate) auth: AuthMethod,
    pub(crate) request_id: RequestId,
    pub(crate) cross_tenant: bool,
    pub(crate) home_tenant: Option<TenantId>,
    pub(crate) client_addr: Option<std::net::IpAddr>,
}

impl TenantContext {
    /// A context for `principal` acting as `role` on `tenant`, for the
    /// request `request_id` (kept when it is a well-formed request id: up
    /// to 128 letters, digits and `-_.:`; else empty).
    pub fn new(
        tenant: Arc<TenantRecord>,
        plan: Arc<Plan>,
        principal: Principal,
        role: Role,
        auth: AuthMethod,
        request_id: &str,
    ) -> Self {
        let quotas = Arc::new(plan.quotas.with_overrides(&tenant.settings.quota_overrides));
        Self {
            inner: ContextInner {
                tenant: Arc::new(CachedTenant::new(tenant, plan, quotas)),
                principal,
                role,
                auth,
                request_id: RequestId::new(request_id).unwrap_or_default(),
                cross_tenant: false,
                home_tenant: None,
                client_addr: None,
            },
        }
    }

    /// A context of everything in `inner`.
    pub(crate) fn from_inner(inner: ContextInner) -> Self {
        Self { inner }
    }

    /// Marks the context as a super_admin or system caller acting on a
    /// tenant other than its credential's.
    pub fn with_cross_tenant(mut self, cross: bool) -> Self {
        self.inner.cross_tenant = cross;
        self
    }

    /// Records the tenant of the caller's credential, when it has one.
    pub fn with_home_tenant(mut self, home: Option<TenantId>) -> Self {
        self.inner.home_tenant = home;
        self
    }

    /// The tenant of the caller's credential (its home), when it has one:
    /// the context's tenant, unless the caller acts across tenants.
    pub fn home_tenant(&self) -> Option<&TenantId> {
        self.inner.home_tenant.as_ref()
    }

    /// Records the client's address, for audit events.
    pub fn with_client_addr(mut self, addr: Option<std::net::IpAddr>) -> Self {
        self.inner.client_addr = addr;
        self
    }

    /// The client's address, when the adapter knew it.
    pub fn client_addr(&self) -> Option<std::net::IpAddr> {
        self.inner.client_addr
    }

    /// The tenant's id.
    pub fn tenant_id(&self) -> &TenantId {
        &self.inner.tenant.record.id
    }

    /// The tenant record.
    pub fn tenant(&self) -> &Arc<TenantRecord> {
        &self.inner.tenant.record
    }

    /// The tenant's plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.inner.tenant.plan
    }

    /// The plan's quotas with the tenant's overrides applied.
    pub fn quotas(&self) -> &PlanQuotas {
        &self.inner.tenant.quotas
    }

    /// The tenant as the cache holds it (with its metric handles).
    pub(crate) fn cached_tenant(&self) -> &CachedTenant {
        &self.inner.tenant
    }

    /// Who is calling.
    pub fn principal(&self) -> &Principal {
        &self.inner.principal
    }

    /// The caller's effective role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// The API key scope, when the caller used an API key.
    pub fn scope(&self) -> Option<ApiKeyScope> {
        match &self.inner.auth {
            AuthMethod::ApiKey { scope, .. } => Some(*scope),
            _ => None,
        }
    }

    /// How the caller authenticated.
    pub fn auth_method(&self) -> &AuthMethod {
        &self.inner.auth
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        self.inner.request_id.as_str()
    }

    /// The request id, as the answer's `x-request-id` carries it.
    pub(crate) fn id(&self) -> &RequestId {
        &self.inner.request_id
    }

    /// Whether a super_admin or system caller selected a tenant other than
    /// its credential's.
    pub fn is_cross_tenant(&self) -> bool {
        self.inner.cross_tenant
    }

    /// Store keys scoped to this tenant.
    pub fn keyspace(&self) -> crate::keyspace::TenantKeyspace {
        crate::keyspace::TenantKeyspace::new(self.tenant_id().clone())
    }

    /// Whether the caller's role holds `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        self.inner.role.can(permission)
    }
}
