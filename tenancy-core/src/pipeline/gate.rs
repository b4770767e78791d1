//! Stage 3: what may pass once the caller and the tenant are known.
//!
//! - the tenant's status: suspended tenants are read-only, archived ones
//!   refuse everything ([`TenantStatus::admits`]);
//! - a caller acting on another tenant needs a home tenant in good standing:
//!   archiving or suspending it stops its identities everywhere;
//! - an API key's scope must cover the request;
//! - the caller's role must reach the route's minimum (once routing has
//!   picked the route: [`Tenancy::check_route`](crate::Tenancy::check_route)).

use http::Method;

use super::{Caller, Halt, Wait, now_or_await, store_failure};
use crate::config::RouteSpec;
use crate::context::AuthMethod;
use crate::error::{ErrorKind, TenancyError};
use crate::rbac::Role;
use crate::request::RequestHead;
use crate::store::tenant_cache::TenantCache;
use crate::tenant::{TenantId, TenantRecord, TenantStatus};

/// Refuses `method` on `tenant` unless its status admits it.
pub fn status(tenant: &TenantRecord, method: &Method) -> Result<(), TenancyError> {
    if tenant.status.admits(method) {
        Ok(())
    } else {
        Err(refusal(tenant.status).into())
    }
}

/// The refusal for a tenant in `status`.
fn refusal(status: TenantStatus) -> ErrorKind {
    match status {
        TenantStatus::Archived => ErrorKind::TenantArchived,
        TenantStatus::Suspended | TenantStatus::Active => ErrorKind::TenantSuspended,
    }
}

/// Refuses a cross-tenant caller whose home tenant is missing or not active.
pub(crate) async fn home_active(
    tenants: &TenantCache,
    home: Option<&TenantId>,
    wait: Wait,
) -> Result<(), Halt> {
    let Some(home) = home else {
        return Err(ErrorKind::TenantMismatch.into());
    };
    match now_or_await!(
        wait,
        tenants
            .get_now(home.as_str(), std::time::Instant::now())
            .map(Ok),
        tenants.get(home)
    ) {
        Ok(Some(t)) if t.record.status == TenantStatus::Active => Ok(()),
        Ok(Some(t)) => Err(refusal(t.record.status).into()),
        Ok(None) => Err(ErrorKind::UnknownTenant.into()),
        Err(e) => Err(store_failure("tenant store", e).into()),
    }
}

/// Refuses an API key whose scope does not cover `head` (ingestion keys
/// reach only `ingestion_routes`).
pub fn scope(
    caller: &Caller,
    head: &RequestHead<'_>,
    ingestion_routes: &[RouteSpec],
) -> Result<(), TenancyError> {
    let AuthMethod::ApiKey { scope, .. } = &caller.auth else {
        return Ok(());
    };
    let ingestion = ingestion_routes
        .iter()
        .any(|r| r.matches(head.method(), head.path()));
    if scope.permits(head.method(), ingestion) {
        Ok(())
    } else {
        Err(ErrorKind::ScopeDenied { scope: *scope }.into())
    }
}

/// Refuses `role` below `required`.
pub fn role(role: Role, required: Option<Role>) -> Result<(), TenancyError> {
    match required {
        Some(required) if role < required => Err(ErrorKind::InsufficientRole { required }.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantId;

    fn tenant(status: TenantStatus) -> TenantRecord {
        let mut t = TenantRecord::new(TenantId::new("acme").unwrap(), "Acme", "free");
        t.status = status;
        t
    }

    #[test]
    fn status_table() {
        let cases = [
            (TenantStatus::Active, Method::POST, None),
            (TenantStatus::Suspended, Method::GET, None),
            (
                TenantStatus::Suspended,
                Method::POST,
                Some("tenant_suspended"),
            ),
            (TenantStatus::Archived, Method::GET, Some("tenant_archived")),
        ];
        for (s, method, code) in cases {
            let got = status(&tenant(s), &method).err().map(|e| e.code());
            assert_eq!(got, code, "{s:?} {method}");
        }
    }

    #[test]
    fn roles_below_the_minimum_are_refused() {
        assert!(role(Role::Viewer, None).is_ok());
        assert!(role(Role::Admin, Some(Role::Admin)).is_ok());
        let err = role(Role::Operator, Some(Role::Admin)).unwrap_err();
        assert_eq!(err.code(), "insufficient_role");
    }
}
