//! Per-tenant request metrics through the `metrics` facade, with handles
//! cached per tenant so the request path registers nothing.

use std::sync::Arc;
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

struct Handles {
    requests: Counter,
    errors: Counter,
    latency: Histogram,
}

#[derive(Default)]
pub(crate) struct TenantMetrics {
    handles: ConcurrentMap<TenantId, Arc<Handles>>,
}

impl TenantMetrics {
    pub(crate) fn record(&self, tenant: &TenantId, status: u16, elapsed: Duration) {
        let handles = match self.handles.get(tenant) {
            Some(h) => h.clone(),
            None => self
                .handles
                .entry(tenant.clone())
                .or_insert_with(|| {
                    let label = tenant.to_string();
                    Arc::new(Handles {
                        requests: metrics::counter!(REQUESTS_TOTAL, "tenant" => label.clone()),
                        errors: metrics::counter!(ERRORS_TOTAL, "tenant" => label.clone()),
                        latency: metrics::histogram!(REQUEST_DURATION, "tenant" => label),
                    })
                })
                .clone(),
        };
        handles.requests.increment(1);
        if status >= 500 {
            handles.errors.increment(1);
        }
        handles.latency.record(elapsed.as_secs_f64());
    }

    pub(crate) fn refused(code: &'static str) {
        metrics::counter!(REFUSALS_TOTAL, "code" => code).increment(1);
    }
}
