//! Stage 4: rate limits. An admitted request takes one cell of each of its
//! buckets (the API key's own limit, the tenant's plan RPS) in one
//! all-or-nothing check of the rate limiter ([`crate::gcra`]); a route with
//! a limit of its own takes a cell of the route bucket once routing has
//! picked it ([`Tenancy::check_route`](crate::Tenancy::check_route)).

use super::{Halt, Wait, now_or_await, store_failure};
use crate::config::FailurePolicy;
use crate::error::ErrorKind;
use crate::key_id::KeyId;
use crate::label::Label;
use crate::limit::{RateCheck, RateLimitKey, RateLimitStatus, RateQuota};
use crate::store::RateLimiter;
use crate::tenant::TenantId;

/// The buckets one request takes a cell of, all of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct Buckets<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// An API key with its own requests-per-second limit.
    pub key: Option<(&'a KeyId, u32)>,
    /// A route with its own limit.
    pub route: Option<(&'a Label, RateQuota)>,
    /// The tenant's requests per second (0: none).
    pub tenant_rps: u32,
}

/// Takes the cells of `buckets`; the status to report, `None` when no
/// bucket applies (or the limiter failed open).
pub async fn take(
    limiter: &dyn RateLimiter,
    on_failure: FailurePolicy,
    buckets: Buckets<'_>,
    wait: Wait,
) -> Result<Option<RateLimitStatus>, Halt> {
    let tenant = buckets.tenant;
    let key = buckets.key.and_then(|(key_id, rps)| {
        RateQuota::per_second(rps).map(|quota| RateCheck {
            key: RateLimitKey::api_key(tenant.clone(), key_id.clone()),
            quota,
        })
    });
    let route = buckets.route.map(|(route, quota)| RateCheck {
        key: RateLimitKey::route(tenant.clone(), route.clone()),
        quota,
    });
    let whole = RateQuota::per_second(buckets.tenant_rps).map(|quota| RateCheck {
        key: RateLimitKey::tenant(tenant.clone()),
        quota,
    });
    // The checks live on the stack: no allocation per request.
    let checks: &[RateCheck] = match (key, route, whole) {
        (None, None, None) => return Ok(None),
        (Some(a), None, None) | (None, Some(a), None) | (None, None, Some(a)) => &[a],
        (Some(a), Some(b), None) | (Some(a), None, Some(b)) | (None, Some(a), Some(b)) => &[a, b],
        (Some(a), Some(b), Some(c)) => &[a, b, c],
    };
    let result = now_or_await!(wait, limiter.check_now(checks), limiter.check(checks));
    match result {
        Ok(decision) if decision.allowed => Ok(Some(decision.status)),
        Ok(decision) => Err(ErrorKind::RateLimited(decision.status).into()),
        Err(e) => match on_failure {
            FailurePolicy::Open => {
                tracing::warn!(error = %e, "rate limiter failed; letting the request through (fail-open)");
                Ok(None)
            }
            FailurePolicy::Closed => Err(store_failure("rate limiter", e).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryRateLimiter;
    use crate::testkit::faults::FailingStore;

    #[tokio::test]
    async fn every_bucket_counts_and_the_tightest_reports() {
        let limiter = MemoryRateLimiter::new();
        let tenant = TenantId::new("acme").unwrap();
        let key = KeyId::new("key_a").unwrap();
        let buckets = Buckets {
            tenant: &tenant,
            key: Some((&key, 2)),
            route: None,
            tenant_rps: 100,
        };
        let first = take(&limiter, FailurePolicy::Closed, buckets, Wait::Never)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.limit, first.remaining), (2, 1));
        take(&limiter, FailurePolicy::Closed, buckets, Wait::Never)
            .await
            .unwrap();
        let refused = take(&limiter, FailurePolicy::Closed, buckets, Wait::Never)
            .await
            .map_err(Halt::into_error)
            .unwrap_err();
        assert_eq!(refused.code(), "rate_limited");
        let none = Buckets {
            key: None,
            tenant_rps: 0,
            ..buckets
        };
        assert_eq!(
            take(&limiter, FailurePolicy::Closed, none, Wait::Never)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_failed_limiter_follows_the_failure_policy_and_cannot_answer_at_once() {
        let limiter = FailingStore::default();
        let tenant = TenantId::new("acme").unwrap();
        let buckets = Buckets {
            tenant: &tenant,
            key: None,
            route: None,
            tenant_rps: 10,
        };
        assert_eq!(
            take(&limiter, FailurePolicy::Open, buckets, Wait::Allowed)
                .await
                .unwrap(),
            None
        );
        let err = take(&limiter, FailurePolicy::Closed, buckets, Wait::Allowed)
            .await
            .map_err(Halt::into_error)
            .unwrap_err();
        assert_eq!(err.code(), "store_unavailable");
        // It has no `check_now`: it can only be awaited, so a run that
        // cannot wait stops, whatever the failure policy.
        let halt = take(&limiter, FailurePolicy::Open, buckets, Wait::Never).await;
        assert!(matches!(halt, Err(Halt::WouldWait)), "{halt:?}");
    }
}
