//! Extractors: the admitted request's [`Tenant`], typed role and scope
//! guards, the [`Audit`] handle and the [`Quota`] handle.
//!
//! Each reads what [`TenancyLayer`](crate::TenancyLayer) put in the request
//! extensions and rejects with [`TenancyRejection`].
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tenancy_axum::extract::{Audit, Quota, RequireRole, Tenant, role};
//! use tenancy_axum::TenancyRejection;
//!
//! async fn whoami(Tenant(ctx): Tenant) -> String {
//!     format!("{} in {}", ctx.principal().subject, ctx.tenant_id())
//! }
//!
//! async fn maybe(tenant: Option<Tenant>) -> &'static str {
//!     if tenant.is_some() { "tenant" } else { "no tenant" }
//! }
//!
//! async fn trigger(_: RequireRole<role::Operator>, audit: Audit) -> &'static str {
//!     audit.record("runbook.trigger", Some("restart-db"));
//!     "triggered"
//! }
//!
//! async fn ingest(quota: Quota) -> Result<&'static str, TenancyRejection> {
//!     quota.charge("events", 10).await?;
//!     Ok("accepted")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/maybe", get(maybe))
//!     .route("/trigger", post(trigger))
//!     .route("/ingest", post(ingest));
//! # let _ = app;
//! ```

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use tenancy_core::engine::Admitted;
use tenancy_core::guard;
use tenancy_core::{Tenancy, TenancyError, TenantContext};

use crate::TenancyRejection;

/// The admitted request's tenant context.
///
/// Rejects with `tenant_required` when the layer admitted the request without
/// a tenant, and with an internal error when the layer is not installed. As
/// `Option<Tenant>`, a missing tenant is `None`.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantContext);

fn context(parts: &Parts) -> Result<TenantContext, TenancyError> {
    Admitted::context_of(parts.extensions.get::<Admitted>()).cloned()
}

fn engine(parts: &Parts) -> Result<Tenancy, TenancyError> {
    parts
        .extensions
        .get::<Admitted>()
        .map(|admitted| admitted.tenancy().clone())
        .ok_or_else(|| TenancyError::internal("TenancyLayer is not installed on this route"))
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = TenancyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Tenant(context(parts)?))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Tenant {
    type Rejection = TenancyRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Admitted>()
            .and_then(Admitted::context)
            .cloned()
            .map(Tenant))
    }
}

pub use tenancy_core::guard::{RoleMarker, ScopeMarker, role, scope};

/// The tenant context of a caller whose role is `R::ROLE` or higher;
/// `insufficient_role` otherwise.
#[derive(Debug, Clone)]
pub struct RequireRole<R: RoleMarker>(pub TenantContext, pub PhantomData<R>);

impl<S: Send + Sync, R: RoleMarker> FromRequestParts<S> for RequireRole<R> {
    type Rejection = TenancyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ctx = context(parts)?;
        guard::require_role(&ctx, R::ROLE)?;
        Ok(RequireRole(ctx, PhantomData))
    }
}

/// The tenant context of a caller that is not an API key (roles govern
/// those), or an API key of scope `S::SCOPE` or `full`; `scope_denied`
/// otherwise.
#[derive(Debug, Clone)]
pub struct RequireScope<S: ScopeMarker>(pub TenantContext, pub PhantomData<S>);

impl<St: Send + Sync, S: ScopeMarker> FromRequestParts<St> for RequireScope<S> {
    type Rejection = TenancyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let ctx = context(parts)?;
        guard::require_scope(&ctx, S::SCOPE)?;
        Ok(RequireScope(ctx, PhantomData))
    }
}

/// The request's [`Audit`](tenancy_core::handle::Audit) handle: records
/// domain events with the tenant, actor and request id filled in.
#[derive(Debug, Clone)]
pub struct Audit(pub tenancy_core::handle::Audit);

impl std::ops::Deref for Audit {
    type Target = tenancy_core::handle::Audit;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = TenancyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Audit(tenancy_core::handle::Audit::new(
            engine(parts)?,
            context(parts)?,
        )))
    }
}

/// The request's [`Quota`](tenancy_core::handle::Quota) handle: charges the
/// tenant's plan budgets.
#[derive(Debug, Clone)]
pub struct Quota(pub tenancy_core::handle::Quota);

impl std::ops::Deref for Quota {
    type Target = tenancy_core::handle::Quota;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Quota {
    type Rejection = TenancyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Quota(tenancy_core::handle::Quota::new(
            engine(parts)?,
            context(parts)?,
        )))
    }
}
