//! Stage 2: the request's tenant sources and the caller's credential name
//! one tenant ([`crate::resolve`]), which must exist.

use std::sync::Arc;

use super::{Caller, Halt, Wait, now_or_await, store_failure};
use crate::error::ErrorKind;
use crate::request::RequestHead;
use crate::resolve::{Resolved, TenantResolver};
use crate::store::tenant_cache::{CachedTenant, TenantCache};

/// The tenant a request acts on.
#[derive(Debug, Clone)]
pub(crate) struct Resolution {
    /// Its record, plan and quotas.
    pub(crate) tenant: Arc<CachedTenant>,
    /// Whether a super_admin or system caller acts on a tenant other than
    /// its credential's.
    pub(crate) cross_tenant: bool,
}

/// The tenant `head` acts on for `caller`; `None` when it names none and
/// none is required.
pub(crate) async fn resolve(
    resolver: &TenantResolver,
    tenants: &TenantCache,
    head: &RequestHead<'_>,
    caller: &Caller,
    wait: Wait,
) -> Result<Option<Resolution>, Halt> {
    let credential = caller.tenant.as_ref().map(|t| (t, caller.role));
    let (id, cross_tenant) = match resolver.resolve(head, credential)? {
        Resolved::Tenant { id, cross_tenant } => (id, cross_tenant),
        Resolved::NoTenant => return Ok(None),
    };
    match now_or_await!(wait, tenants.get_now(&id).map(Ok), tenants.get(&id)) {
        Ok(Some(tenant)) => Ok(Some(Resolution {
            tenant,
            cross_tenant,
        })),
        Ok(None) => Err(ErrorKind::UnknownTenant.into()),
        Err(e) => Err(store_failure("tenant store", e).into()),
    }
}
