//! Where a refusal is written down.
//!
//! - Without a verified credential: the platform security log only, never
//!   a tenant's audit log (anyone can send anything).
//! - With one: an `access.refused` event in the caller's home tenant (never
//!   in the tenant it asked for), for refused writes and for refusals at a
//!   tenant boundary, when that home tenant exists; else the security log
//!   again, so no token can open an audit log for a tenant nobody created.

use chrono::Utc;

use super::Tenancy;
use crate::audit::AuditEvent;
use crate::context::{AuthMethod, Principal, TenantContext};
use crate::error::{ErrorKind, TenancyError};
use crate::pipeline::{Caller, Halt, Wait, now_or_await};
use crate::request::{RequestHead, RequestId};
use crate::tenant::{TenantId, is_safe_method};

/// A refused caller whose credential verified.
pub(crate) struct Who<'a> {
    /// The credential's tenant.
    pub(crate) home: Option<&'a TenantId>,
    /// Who it is.
    pub(crate) principal: &'a Principal,
}

impl<'a> Who<'a> {
    /// The caller of a refused admission; `None` unless it verified.
    pub(crate) fn of_caller(caller: &'a Caller) -> Option<Self> {
        caller.is_verified().then_some(Self {
            home: caller.tenant.as_ref(),
            principal: &caller.principal,
        })
    }

    /// The caller of an admitted request its route refused; `None` for
    /// anonymous callers.
    pub(crate) fn of_context(ctx: &'a TenantContext) -> Option<Self> {
        (!matches!(ctx.auth_method(), AuthMethod::Anonymous)).then_some(Self {
            home: ctx.home_tenant(),
            principal: ctx.principal(),
        })
    }
}

impl Tenancy {
    pub(crate) async fn record_refusal(
        &self,
        head: &RequestHead<'_>,
        request_id: &RequestId,
        who: Option<Who<'_>>,
        err: &TenancyError,
        wait: Wait,
    ) -> Result<(), Halt> {
        let inner = &self.inner;
        let to_security_log = || {
            inner
                .security_log
                .record(head.client_addr(), err.code(), Utc::now());
            Ok(())
        };
        let Some(who) = who else {
            return to_security_log();
        };
        let at_boundary = matches!(
            err.kind(),
            ErrorKind::TenantMismatch | ErrorKind::TenantNotAllowed | ErrorKind::UnknownTenant
        );
        if !inner.config.audit.enabled || (is_safe_method(head.method()) && !at_boundary) {
            return Ok(());
        }
        let tenants = &inner.stores.tenants;
        let home = match who.home {
            Some(home) => {
                let known = now_or_await!(
                    wait,
                    tenants
                        .get_now(home.as_str(), std::time::Instant::now())
                        .map(Ok),
                    tenants.get(home)
                );
                matches!(known, Ok(Some(_))).then_some(home)
            }
            None => None,
        };
        let Some(home) = home else {
            return to_security_log();
        };
        let mut event = AuditEvent::new(
            home.clone(),
            who.principal.subject.as_ref(),
            who.principal.kind,
            "access.refused",
        )
        .resource(head.path())
        .outcome(err.status().as_u16())
        .detail("code", err.code())
        .detail("method", head.method().as_str());
        if let Ok(Some(requested)) = inner.resolver.requested(head)
            && requested != *home
        {
            event = event.detail("requested_tenant", requested.as_str());
        }
        event.request_id = Some(request_id.to_string());
        event.client_addr = head.client_addr();
        self.record_audit(event);
        Ok(())
    }
}
