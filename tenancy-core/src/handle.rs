//! The handles handlers use on an admitted request: [`Audit`] records
//! domain events, [`Quota`] charges plan budgets. Both carry the request's
//! context, so what they write is always the request's tenant's. The web
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
//! Audit::new(tenancy.clone(), ctx.clone()).record("runbook.trigger", Some("restart-db"));
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

    /// Records a prepared event.
    pub fn record_event(&self, event: AuditEvent) {
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
