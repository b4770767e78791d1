use std::collections::BTreeMap;

use crate::ConcurrentMap;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::label::Label;
use crate::metering::UsageRecord;
use crate::store::{StoreError, UsageMeter};
use crate::tenant::TenantId;

/// Hourly usage counts, one ordered map per tenant.
///
/// ```
/// use tenancy_core::store::memory::MemoryUsageMeter;
/// let meter = MemoryUsageMeter::new();
/// # let _ = meter;
/// ```
#[derive(Debug, Default)]
pub struct MemoryUsageMeter {
    counts: ConcurrentMap<TenantId, BTreeMap<(DateTime<Utc>, Label), u64>>,
}

impl MemoryUsageMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl UsageMeter for MemoryUsageMeter {
    fn writes_are_cheap(&self) -> bool {
        true
    }

    async fn record(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        for r in records {
            let mut per_tenant = self.counts.entry(r.tenant_id.clone()).or_default();
            let count = per_tenant
                .entry((r.hour, r.event_type.clone()))
                .or_insert(0);
            *count = count.saturating_add(r.count);
        }
        Ok(())
    }

    async fn usage(
        &self,
        tenant: &TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let Some(per_tenant) = self.counts.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(per_tenant
            .iter()
            .filter(|((hour, _), _)| *hour >= from && *hour < to)
            .map(|((hour, event_type), count)| UsageRecord {
                tenant_id: tenant.clone(),
                hour: *hour,
                event_type: event_type.clone(),
                count: *count,
            })
            .collect())
    }

    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let Some(mut per_tenant) = self.counts.get_mut(tenant) else {
            return Ok(0);
        };
        let had = per_tenant.len();
        per_tenant.retain(|(hour, _), _| *hour >= before);
        Ok((had - per_tenant.len()) as u64)
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(self
            .counts
            .remove(tenant)
            .map_or(0, |(_, rows)| rows.len() as u64))
    }
}
