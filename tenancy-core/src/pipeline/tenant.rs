//! Stage 2: the request's tenant sources and the caller's credential name
//! one tenant ([`crate::resolve`]), which must exist.

use std::sync::Arc;
use std::time::Instant;

use super::{Caller, Halt, Wait, now_or_await, store_failure};
use crate::error::ErrorKind;
use crate::request::RequestHead;
use crate::resolve::TenantResolver;
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
    now: Instant,
    wait: Wait,
) -> Result<Option<Resolution>, Halt> {
    let credential = caller.tenant.as_ref().map(|t| (t, caller.role));
    let Some((named, cross_tenant)) = resolver.resolve_named(head, credential)? else {
        return Ok(None);
    };
    // Looked up by name; an id is made only when the store is asked.
    match now_or_await!(
        wait,
        tenants.get_now(named.as_str(), now).map(Ok),
        tenants.get(&named.to_id())
    ) {
        Ok(Some(tenant)) => Ok(Some(Resolution {
            tenant,
            cross_tenant,
        })),
        Ok(None) => Err(ErrorKind::UnknownTenant.into()),
        Err(e) => Err(store_failure("tenant store", e).into()),
    }
}
