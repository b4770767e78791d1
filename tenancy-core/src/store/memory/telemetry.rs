//! [`MemoryTelemetryStore`]: each tenant's newest events, bounded by count
//! and by bytes.

use std::collections::VecDeque;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ConcurrentMap;
use crate::store::{StoreError, TelemetryStore};
use crate::telemetry::{TELEMETRY_MAX_LIMIT, TelemetryEvent, TelemetryFilter};
use crate::tenant::TenantId;

/// Events kept per tenant by default (the oldest go first).
pub const DEFAULT_TELEMETRY_EVENTS_PER_TENANT: usize = 10_000;
/// Bytes of events kept per tenant by default, as counted by
/// [`TelemetryEvent::size`] (the oldest go first).
pub const DEFAULT_TELEMETRY_BYTES_PER_TENANT: usize = 4 << 20;

/// One tenant's events, oldest first.
#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<TelemetryEvent>,
    bytes: usize,
}

/// Telemetry in memory: per tenant, the newest events up to a count and a
/// number of bytes, so one tenant's flood costs a bounded amount and never
/// pushes out another tenant's events.
///
/// ```
/// use tenancy_core::store::TelemetryStore;
/// use tenancy_core::store::memory::MemoryTelemetryStore;
/// use tenancy_core::telemetry::{TelemetryEvent, TelemetryFilter};
/// use tenancy_core::tenant::TenantId;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryTelemetryStore::with_capacity(2, 1 << 20);
/// let acme = TenantId::new("acme")?;
/// for value in [1.0, 2.0, 3.0] {
///     store.append(&acme, &[TelemetryEvent::new("metric", "cpu", value)]).await?;
/// }
/// let kept = store.query(&acme, &TelemetryFilter::default()).await?;
/// assert_eq!(kept.iter().map(|e| e.value).collect::<Vec<_>>(), [3.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct MemoryTelemetryStore {
    tenants: ConcurrentMap<TenantId, Ring>,
    max_events: usize,
    max_bytes: usize,
}

impl Default for MemoryTelemetryStore {
    fn default() -> Self {
        Self::with_capacity(
            DEFAULT_TELEMETRY_EVENTS_PER_TENANT,
            DEFAULT_TELEMETRY_BYTES_PER_TENANT,
        )
    }
}

impl MemoryTelemetryStore {
    /// A store keeping [`DEFAULT_TELEMETRY_EVENTS_PER_TENANT`] events and
    /// [`DEFAULT_TELEMETRY_BYTES_PER_TENANT`] bytes per tenant.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store keeping at most `events` events and `bytes` bytes per
    /// tenant.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        Self {
            tenants: ConcurrentMap::default(),
            max_events: events,
            max_bytes: bytes,
        }
    }

    /// The bytes held for `tenant`, as counted by [`TelemetryEvent::size`].
    pub fn bytes_of(&self, tenant: &TenantId) -> usize {
        self.tenants.get(tenant).map_or(0, |ring| ring.bytes)
    }
}

#[async_trait]
impl TelemetryStore for MemoryTelemetryStore {
    async fn append(&self, tenant: &TenantId, events: &[TelemetryEvent]) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut ring = self.tenants.entry(tenant.clone()).or_default();
        for event in events {
            let mut event = event.clone();
            event.timestamp.get_or_insert(now);
            ring.bytes += event.size();
            ring.events.push_back(event);
            while ring.events.len() > self.max_events || ring.bytes > self.max_bytes {
                match ring.events.pop_front() {
                    Some(old) => ring.bytes -= old.size(),
                    None => break,
                }
            }
        }
        Ok(())
    }

    async fn query(
        &self,
        tenant: &TenantId,
        filter: &TelemetryFilter,
    ) -> Result<Vec<TelemetryEvent>, StoreError> {
        let now = Utc::now();
        let Some(ring) = self.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        // References first, so only the page is copied: the newest by time
        // (clients send times of their own, in any order), newest first.
        let mut matching: Vec<&TelemetryEvent> = ring
            .events
            .iter()
            .rev()
            .filter(|e| filter.matches(e, now))
            .collect();
        matching.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
        matching.truncate(filter.limit.min(TELEMETRY_MAX_LIMIT));
        Ok(matching.into_iter().cloned().collect())
    }

    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let Some(mut ring) = self.tenants.get_mut(tenant) else {
            return Ok(0);
        };
        let had = ring.events.len();
        ring.events
            .retain(|e| e.timestamp.is_none_or(|at| at >= before));
        ring.bytes = ring.events.iter().map(TelemetryEvent::size).sum();
        Ok((had - ring.events.len()) as u64)
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(self
            .tenants
            .remove(tenant)
            .map_or(0, |(_, ring)| ring.events.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{MAX_EVENT_NAME_BYTES, MAX_LABEL_VALUE_BYTES};

    fn event(name_bytes: usize, labels: usize) -> TelemetryEvent {
        let mut e = TelemetryEvent::new("metric", "n".repeat(name_bytes), 1.0);
        e.labels = (0..labels)
            .map(|i| (format!("l{i}"), "v".repeat(MAX_LABEL_VALUE_BYTES)))
            .collect();
        e
    }

    #[tokio::test]
    async fn each_tenant_is_bounded_by_bytes_and_by_count() {
        let store = MemoryTelemetryStore::new();
        let big = TenantId::new("big").unwrap();
        let small = TenantId::new("small").unwrap();
        store.append(&small, &[event(1, 0)]).await.unwrap();
        // Large events stop at the bytes.
        for _ in 0..1_000 {
            let batch: Vec<TelemetryEvent> =
                (0..100).map(|_| event(MAX_EVENT_NAME_BYTES, 8)).collect();
            store.append(&big, &batch).await.unwrap();
        }
        let ring = store.tenants.get(&big).unwrap();
        assert!(
            ring.bytes <= DEFAULT_TELEMETRY_BYTES_PER_TENANT,
            "{}",
            ring.bytes
        );
        assert_eq!(
            ring.bytes,
            ring.events.iter().map(TelemetryEvent::size).sum::<usize>()
        );
        assert!(ring.events.len() < DEFAULT_TELEMETRY_EVENTS_PER_TENANT);
        drop(ring);
        // Another tenant's flood pushes out nothing of this one.
        assert_eq!(store.tenants.get(&small).unwrap().events.len(), 1);
        // Small events stop at the count instead.
        let many: Vec<TelemetryEvent> = (0..DEFAULT_TELEMETRY_EVENTS_PER_TENANT + 10)
            .map(|_| event(1, 0))
            .collect();
        store.append(&small, &many).await.unwrap();
        assert_eq!(
            store.tenants.get(&small).unwrap().events.len(),
            DEFAULT_TELEMETRY_EVENTS_PER_TENANT
        );
    }
}
