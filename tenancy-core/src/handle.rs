//! The handles handlers use on an admitted request: [`Audit`] records
//! domain events, [`Quota`] charges plan budgets. Both carry the request's
//! context, and write only to the request's tenant. The web
//! adapters hand them out as extractors.
//!
//! ```
//! use tenancy_core::handle::{Audit, Quota};
//! use tenancy_core::engine::RequestHead;
//! use tenancy_core::rbac::Role;
//! use tenancy_core::tenant::{TenantId, TenantRecord};
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = TenancyConfig::builder().anonymous_role(Role::Operator).build()?;
//! let tenancy = Tenancy::builder(config).build()?;
//! tenancy.admin().create_tenant(TenantRecord::new(TenantId::new("acme")?, "Acme", "free")).await?;
//! let (parts, _) = http::Request::post("/runbooks/restart").header("x-tenant-id", "acme").body(())?.into_parts();
//! let admission = tenancy.admit(&RequestHead::from(&parts)).await?;
//! let ctx = admission.context().unwrap().clone();
//!
//! let audit = Audit::new(tenancy.clone(), ctx.clone());
//! audit.record("runbook.trigger", Some("restart-db"));
//! // An event naming another tenant still lands in the request's.
//! let mut event = audit.event("runbook.trigger");
//! event.tenant_id = TenantId::new("globex")?;
//! audit.record_event(event);
//! let charged = Quota::new(tenancy.clone(), ctx).charge("events", 10).await?;
//! assert_eq!(charged, tenancy_core::limit::QuotaCharge::Charged { used: 10 });
//! # tenancy.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use crate::audit::AuditEvent;
use crate::context::TenantContext;
use crate::engine::Tenancy;
use crate::error::TenancyError;
use crate::limit::QuotaCharge;
use crate::tenant::TenantId;

/// Records domain events with the request's tenant, actor and request id
/// filled in. Recording never waits and never fails the request; an event
/// recorded before the handler refuses is kept.
#[derive(Debug, Clone)]
pub struct Audit {
    tenancy: Tenancy,
    ctx: TenantContext,
}

impl Audit {
    /// The handle of the request whose context is `ctx`.
    pub fn new(tenancy: Tenancy, ctx: TenantContext) -> Self {
        Self { tenancy, ctx }
    }

    /// An event for `action`, ready for more fields; pass it to
    /// [`record_event`](Self::record_event).
    pub fn event(&self, action: impl Into<String>) -> AuditEvent {
        self.tenancy.audit_event(&self.ctx, action)
    }

    /// Records `action` on `resource`.
    pub fn record(&self, action: impl Into<String>, resource: Option<&str>) {
        let mut event = self.event(action);
        event.resource = resource.map(str::to_owned);
        self.record_event(event);
    }

    /// Records a prepared event, in the request's tenant whatever tenant
    /// the event names: a handler cannot write into another tenant's log.
    pub fn record_event(&self, mut event: AuditEvent) {
        if event.tenant_id != *self.ctx.tenant_id() {
            event.tenant_id = self.ctx.tenant_id().clone();
        }
        self.tenancy.record_audit(event);
    }

    /// Records a prepared event in `tenant`'s log: the log of the tenant
    /// an action changed, when a platform caller (super_admin, system)
    /// changed another tenant. For any other caller, the request's tenant,
    /// as [`record_event`](Self::record_event).
    pub fn record_for(&self, tenant: &TenantId, mut event: AuditEvent) {
        event.tenant_id = if self.ctx.role().may_cross_tenants() {
            tenant.clone()
        } else {
            self.ctx.tenant_id().clone()
        };
        self.tenancy.record_audit(event);
    }
}

/// Charges the tenant's plan budgets from a handler.
#[derive(Debug, Clone)]
pub struct Quota {
    tenancy: Tenancy,
    ctx: TenantContext,
}

impl Quota {
    /// The handle of the request whose context is `ctx`.
    pub fn new(tenancy: Tenancy, ctx: TenantContext) -> Self {
        Self { tenancy, ctx }
    }

    /// Charges `amount` to `budget` (`events`, or a named budget of the
    /// plan); `quota_exceeded` with `Retry-After` when it would pass the
    /// limit.
    pub async fn charge(&self, budget: &str, amount: u64) -> Result<QuotaCharge, TenancyError> {
        self.tenancy.charge(&self.ctx, budget, amount).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditFilter;
    use crate::engine::RequestHead;
    use crate::rbac::Role;
    use crate::tenant::{TenantId, TenantRecord};
    use crate::{Tenancy, TenancyConfig};

    #[tokio::test]
    async fn a_handler_cannot_write_into_another_tenants_log() {
        let config = TenancyConfig::builder()
            .anonymous_role(Role::Operator)
            .build()
            .unwrap();
        let tenancy = Tenancy::builder(config).build().unwrap();
        let (acme, globex) = (
            TenantId::new("acme").unwrap(),
            TenantId::new("globex").unwrap(),
        );
        for id in [&acme, &globex] {
            let record = TenantRecord::new(id.clone(), id.as_str(), "free");
            tenancy.admin().create_tenant(record).await.unwrap();
        }
        let (parts, ()) = http::Request::get("/")
            .header("x-tenant-id", "acme")
            .body(())
            .unwrap()
            .into_parts();
        let admission = tenancy.admit(&RequestHead::from(&parts)).await.unwrap();
        let audit = Audit::new(tenancy.clone(), admission.context().unwrap().clone());
        let mut event = audit.event("widget.delete");
        event.tenant_id = globex.clone();
        audit.record_event(event);
        admission.finish(http::StatusCode::OK, |_, _| {});
        tenancy.flush().await;
        let query = tenancy.audit_query().unwrap();
        let filter = AuditFilter::default().action("widget.delete");
        assert_eq!(query.query(&acme, &filter).await.unwrap().len(), 1);
        assert!(query.query(&globex, &filter).await.unwrap().is_empty());
        tenancy.shutdown().await;
    }
}
