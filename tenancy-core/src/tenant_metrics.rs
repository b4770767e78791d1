//! Per-tenant request metrics through the `metrics` facade, with handles
//! cached per tenant so the request path registers nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::ConcurrentMap;
use metrics::{Counter, Histogram};

use crate::tenant::TenantId;

/// Requests answered, by tenant.
pub const REQUESTS_TOTAL: &str = "tenancy_requests_total";
/// Requests answered with a 5xx status, by tenant.
pub const ERRORS_TOTAL: &str = "tenancy_errors_total";
/// Request latency in seconds, by tenant.
pub const REQUEST_DURATION: &str = "tenancy_request_duration_seconds";
/// Requests refused by the pipeline, by code.
pub const REFUSALS_TOTAL: &str = "tenancy_refusals_total";
/// Audit events dropped because the buffer was full or the sink failed.
pub const AUDIT_DROPPED_TOTAL: &str = "tenancy_audit_dropped_total";
/// Usage records dropped because the buffer was full or the meter failed.
pub const USAGE_DROPPED_TOTAL: &str = "tenancy_usage_dropped_total";
/// API key last-use times dropped because the buffer was full or the key
/// store failed.
pub const KEY_USES_DROPPED_TOTAL: &str = "tenancy_key_uses_dropped_total";

/// One tenant's metric handles and its requests not yet metered.
pub(crate) struct TenantHandles {
    requests: Counter,
    errors: Counter,
    latency: Histogram,
    hour: AtomicI64,
    pending: AtomicU64,
}

impl std::fmt::Debug for TenantHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHandles")
            .field("hour", &self.hour)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl TenantHandles {
    /// Counts a request answered with `status` after `elapsed` in the UTC
    /// hour starting at `hour`; when it is the first of a new hour, returns
    /// the hour before and its count, to be metered.
    pub(crate) fn record(&self, status: u16, elapsed: Duration, hour: i64) -> Option<(i64, u64)> {
        self.requests.increment(1);
        if status >= 500 {
            self.errors.increment(1);
        }
        self.latency.record(elapsed.as_secs_f64());
        let counted = self.hour.load(Ordering::Relaxed);
        let finished = (hour > counted
            && self
                .hour
                .compare_exchange(counted, hour, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok())
        .then(|| (counted, self.pending.swap(0, Ordering::AcqRel)))
        .filter(|(_, n)| *n > 0);
        self.pending.fetch_add(1, Ordering::AcqRel);
        finished
    }
}

#[derive(Default)]
pub(crate) struct TenantMetrics {
    handles: ConcurrentMap<TenantId, Arc<TenantHandles>>,
}

impl TenantMetrics {
    /// The handles of `tenant`, registered on its first request.
    pub(crate) fn handles(&self, tenant: &TenantId, hour: i64) -> Arc<TenantHandles> {
        if let Some(h) = self.handles.get(tenant) {
            return h.clone();
        }
        self.handles
            .entry(tenant.clone())
            .or_insert_with(|| {
                let label = tenant.to_string();
                Arc::new(TenantHandles {
                    requests: metrics::counter!(REQUESTS_TOTAL, "tenant" => label.clone()),
                    errors: metrics::counter!(ERRORS_TOTAL, "tenant" => label.clone()),
                    latency: metrics::histogram!(REQUEST_DURATION, "tenant" => label),
                    hour: AtomicI64::new(hour),
                    pending: AtomicU64::new(0),
                })
            })
            .clone()
    }

    pub(crate) fn drain(&self, mut take: impl FnMut(&TenantId, i64, u64)) {
        for entry in self.handles.iter() {
            let n = entry.pending.swap(0, Ordering::AcqRel);
            if n > 0 {
                take(entry.key(), entry.hour.load(Ordering::Relaxed), n);
            }
        }
    }

    pub(crate) fn refused(code: &'static str) {
        metrics::counter!(REFUSALS_TOTAL, "code" => code).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_per_hour_and_drained() {
        let metrics = TenantMetrics::default();
        let acme = TenantId::new("acme").unwrap();
        let ok = Duration::from_millis(1);
        let handles = metrics.handles(&acme, 3600);
        assert_eq!(handles.record(200, ok, 3600), None);
        assert_eq!(metrics.handles(&acme, 3600).record(500, ok, 3600), None);
        // The next hour hands the last one's count back, to be metered.
        assert_eq!(handles.record(200, ok, 7200), Some((3600, 2)));
        let mut drained = Vec::new();
        metrics.drain(|t, hour, n| drained.push((t.clone(), hour, n)));
        assert_eq!(drained, vec![(acme.clone(), 7200, 1)]);
        metrics.drain(|_, _, _| panic!("nothing left"));
    }
}
