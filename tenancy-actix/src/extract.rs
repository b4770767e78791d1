//! Extractors: the admitted request's [`Tenant`], typed role and scope
//! guards, the [`Audit`] handle and the [`Quota`] handle.
//!
//! Each reads what [`TenancyMiddleware`](crate::TenancyMiddleware) put in
//! the request extensions and rejects with [`TenancyRejection`].
//!
//! `Option<Tenant>` is actix-web's own `Option<T: FromRequest>`: a missing
//! tenant is `None`. A malformed or refused tenant never gets that far: the
//! middleware answers it before any extractor runs, so it stays an error.
//!
//! ```
//! use actix_web::{App, web};
//! use tenancy_actix::extract::{Audit, Quota, RequireRole, Tenant, role};
//! use tenancy_actix::TenancyRejection;
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
//! let app = App::new()
//!     .route("/whoami", web::get().to(whoami))
//!     .route("/maybe", web::get().to(maybe))
//!     .route("/trigger", web::post().to(trigger))
//!     .route("/ingest", web::post().to(ingest));
//! # let _ = app;
//! ```

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenancy_core::engine::Admitted;
use tenancy_core::guard;
use tenancy_core::{Tenancy, TenancyError, TenantContext};

use crate::TenancyRejection;

const NOT_INSTALLED: &str = "TenancyMiddleware is not installed on this route";

/// The admitted request's tenant context.
///
/// Rejects with `tenant_required` when the middleware admitted the request
/// without a tenant, and with an internal error when the middleware is not
/// installed. As `Option<Tenant>`, a missing tenant is `None`.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantContext);

fn context(req: &HttpRequest) -> Result<TenantContext, TenancyError> {
    Admitted::context_of(req.extensions().get::<Admitted>()).cloned()
}

fn engine(req: &HttpRequest) -> Result<Tenancy, TenancyError> {
    req.extensions()
        .get::<Admitted>()
        .map(|admitted| admitted.tenancy().clone())
        .ok_or_else(|| TenancyError::internal(NOT_INSTALLED))
}

fn extracted<T>(result: Result<T, TenancyError>) -> Ready<Result<T, TenancyRejection>> {
    ready(result.map_err(TenancyRejection))
}

impl FromRequest for Tenant {
    type Error = TenancyRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extracted(context(req).map(Tenant))
    }
}

pub use tenancy_core::guard::{RoleMarker, ScopeMarker, role, scope};

/// The tenant context of a caller whose role is `R::ROLE` or higher;
/// `insufficient_role` otherwise.
#[derive(Debug, Clone)]
pub struct RequireRole<R: RoleMarker>(pub TenantContext, pub PhantomData<R>);

impl<R: RoleMarker> FromRequest for RequireRole<R> {
    type Error = TenancyRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extracted(context(req).and_then(|ctx| {
            guard::require_role(&ctx, R::ROLE)?;
            Ok(RequireRole(ctx, PhantomData))
        }))
    }
}

/// The tenant context of a caller that is not an API key (roles govern
/// those), or an API key of scope `S::SCOPE` or `full`; `scope_denied`
/// otherwise.
#[derive(Debug, Clone)]
pub struct RequireScope<S: ScopeMarker>(pub TenantContext, pub PhantomData<S>);

impl<S: ScopeMarker> FromRequest for RequireScope<S> {
    type Error = TenancyRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extracted(context(req).and_then(|ctx| {
            guard::require_scope(&ctx, S::SCOPE)?;
            Ok(RequireScope(ctx, PhantomData))
        }))
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

impl FromRequest for Audit {
    type Error = TenancyRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let handle = || {
            Ok(tenancy_core::handle::Audit::new(
                engine(req)?,
                context(req)?,
            ))
        };
        extracted(handle().map(Audit))
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

impl FromRequest for Quota {
    type Error = TenancyRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let handle = || {
            Ok(tenancy_core::handle::Quota::new(
                engine(req)?,
                context(req)?,
            ))
        };
        extracted(handle().map(Quota))
    }
}
