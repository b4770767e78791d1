use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ConcurrentMap;
use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditFilter};
use crate::store::{AuditQuery, AuditSink, StoreError};
use crate::tenant::TenantId;

/// Default number of events kept per tenant.
pub const DEFAULT_EVENTS_PER_TENANT: usize = 10_000;

/// A bounded audit log: a ring of the newest events per tenant.
///
/// Each tenant has its own ring, so a busy tenant never pushes another's
/// events out. Events pushed out of a full ring are counted in
/// [`evicted`](Self::evicted).
///
/// ```
/// use tenancy_core::store::memory::MemoryAuditLog;
/// let log = MemoryAuditLog::with_capacity_per_tenant(100);
/// assert_eq!(log.evicted(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryAuditLog {
    rings: ConcurrentMap<TenantId, VecDeque<AuditEvent>>,
    capacity: usize,
    evicted: AtomicU64,
}

impl Default for MemoryAuditLog {
    fn default() -> Self {
        Self::with_capacity_per_tenant(DEFAULT_EVENTS_PER_TENANT)
    }
}

impl MemoryAuditLog {
    /// A log keeping [`DEFAULT_EVENTS_PER_TENANT`] events per tenant.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log keeping `capacity` events per tenant (at least one).
    pub fn with_capacity_per_tenant(capacity: usize) -> Self {
        Self {
            rings: ConcurrentMap::default(),
            capacity: capacity.max(1),
            evicted: AtomicU64::new(0),
        }
    }

    /// How many events were pushed out of full rings.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Holds `event` in its tenant's ring, pushing out the oldest when the
    /// ring is full.
    fn keep(&self, event: AuditEvent) {
        let mut ring = self.rings.entry(event.tenant_id.clone()).or_default();
        if ring.len() == self.capacity {
            ring.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        ring.push_back(event);
    }

    /// How many events are held in all.
    pub fn len(&self) -> usize {
        self.rings.iter().map(|r| r.len()).sum()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl AuditSink for MemoryAuditLog {
    async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        for event in events {
            self.keep(event.clone());
        }
        Ok(())
    }

    fn writes_are_cheap(&self) -> bool {
        true
    }

    async fn record_taking(&self, events: &mut Vec<AuditEvent>) -> Result<(), StoreError> {
        // Nothing here can fail: the events are kept, not copied.
        for event in events.drain(..) {
            self.keep(event);
        }
        Ok(())
    }
}

#[async_trait]
impl AuditQuery for MemoryAuditLog {
    async fn query(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let Some(ring) = self.rings.get(tenant) else {
            return Ok(Vec::new());
        };
        // References first, so only the page is copied.
        let mut events: Vec<&AuditEvent> = ring.iter().filter(|e| filter.matches(e)).collect();
        // Newest first; arrival order breaks ties.
        events.reverse();
        events.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
        events.truncate(filter.limit);
        Ok(events.into_iter().cloned().collect())
    }

    async fn purge_before(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let Some(mut ring) = self.rings.get_mut(tenant) else {
            return Ok(0);
        };
        let had = ring.len();
        ring.retain(|e| e.timestamp >= before);
        Ok((had - ring.len()) as u64)
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        Ok(self
            .rings
            .remove(tenant)
            .map_or(0, |(_, ring)| ring.len() as u64))
    }
}
