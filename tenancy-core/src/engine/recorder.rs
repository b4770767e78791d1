//! The bounded, non-blocking buffers behind audit, metering and API key
//! last-use times, drained in batches by one background task.
//!
//! The request path only ever does a `try_send` or a map increment: nothing
//! on it waits on a store. Anything that does not fit, or that a store
//! refuses after retries, is dropped and counted.
//!
//! Metering is fair per tenant: a tenant meters at most
//! [`MAX_EVENT_TYPES_PER_HOUR`] distinct event types per hour (besides the
//! engine's own `requests`); later types
//! of that hour are counted under [`OVERFLOW_EVENT_TYPE`], so no count is
//! lost and one tenant's burst of types can never fill the buffer that
//! every other tenant's usage goes through.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ConcurrentMap;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::audit::AuditEvent;
use crate::config::AuditConfig;
use crate::credential::KeyId;
use crate::engine::metrics::{AUDIT_DROPPED_TOTAL, USAGE_DROPPED_TOTAL};
use crate::label::Label;
use crate::metering::UsageRecord;
use crate::store::{ApiKeyStore, AuditSink, UsageMeter};
use crate::tenant::TenantId;

/// Attempts per batch before it is dropped.
const WRITE_ATTEMPTS: u32 = 3;

/// Most distinct event types one tenant meters in one hour.
pub const MAX_EVENT_TYPES_PER_HOUR: usize = 100;
/// The event type that counts a tenant's events past
/// [`MAX_EVENT_TYPES_PER_HOUR`] types in an hour.
pub const OVERFLOW_EVENT_TYPE: &str = "other_types";

type UsageKey = (TenantId, DateTime<Utc>, Label);

/// Counters of what the buffers dropped.
#[derive(Debug, Default)]
pub(crate) struct DropCounters {
    audit: AtomicU64,
    usage: AtomicU64,
}

struct Shared {
    usage: ConcurrentMap<UsageKey, u64>,
    usage_cap: usize,
    /// The event types each tenant metered in each hour (unix seconds of
    /// its start), to cap them.
    types_seen: ConcurrentMap<(TenantId, i64), HashSet<Label>>,
    overflow: Label,
    /// The engine's own per-request type, always metered under its name.
    requests: Label,
    touches: ConcurrentMap<(TenantId, KeyId), DateTime<Utc>>,
    drops: DropCounters,
}

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct Recorder {
    audit_tx: mpsc::Sender<AuditEvent>,
    control_tx: mpsc::Sender<Control>,
    shared: Arc<Shared>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Sinks {
    /// The [`OVERFLOW_EVENT_TYPE`] label.
    pub(crate) overflow_type: Label,
    /// The engine's per-request event type, outside the cap.
    pub(crate) requests_type: Label,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) usage: Arc<dyn UsageMeter>,
    pub(crate) api_keys: Arc<dyn ApiKeyStore>,
}

impl Recorder {
    /// Starts the background task on the current tokio runtime.
    pub(crate) fn start(
        config: &AuditConfig,
        sinks: Sinks,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (audit_tx, audit_rx) = mpsc::channel(config.buffer_capacity);
        let (control_tx, control_rx) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            usage: ConcurrentMap::default(),
            usage_cap: config.buffer_capacity,
            types_seen: ConcurrentMap::default(),
            overflow: sinks.overflow_type.clone(),
            requests: sinks.requests_type.clone(),
            touches: ConcurrentMap::default(),
            drops: DropCounters::default(),
        });
        let worker = Worker {
            audit_rx,
            control_rx,
            shared: shared.clone(),
            sinks,
            batch_size: config.batch_size,
            interval: Duration::from_millis(config.flush_interval_ms),
        };
        let task = runtime.spawn(worker.run());
        Self {
            audit_tx,
            control_tx,
            shared,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    pub(crate) fn audit(&self, event: AuditEvent) {
        if self.audit_tx.try_send(event).is_err() {
            self.shared.drops.audit.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(AUDIT_DROPPED_TOTAL).increment(1);
        }
    }

    pub(crate) fn meter(&self, tenant: &TenantId, event_type: &Label, at: DateTime<Utc>, n: u64) {
        // The UTC hour by arithmetic: no calendar work on the request path.
        let ts = at.timestamp();
        let hour_ts = ts - ts.rem_euclid(3600);
        let hour = DateTime::from_timestamp(hour_ts, 0).unwrap_or(at);
        let key = (tenant.clone(), hour, event_type.clone());
        if let Some(mut count) = self.shared.usage.get_mut(&key) {
            *count = count.saturating_add(n);
            return;
        }
        // A type not in the buffer: within the tenant's types of the hour,
        // or counted under the overflow type.
        let event_type = self.admit_type(tenant, hour_ts, event_type);
        let key = (tenant.clone(), hour, event_type.clone());
        if let Some(mut count) = self.shared.usage.get_mut(&key) {
            *count = count.saturating_add(n);
            return;
        }
        if self.shared.usage.len() >= self.shared.usage_cap {
            self.shared.drops.usage.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(USAGE_DROPPED_TOTAL).increment(1);
            return;
        }
        *self.shared.usage.entry(key).or_insert(0) += n;
    }

    /// `event_type` when `tenant` metered it this hour or has room for
    /// another type, else the overflow type.
    fn admit_type<'a>(&'a self, tenant: &TenantId, hour: i64, event_type: &'a Label) -> &'a Label {
        if *event_type == self.shared.requests {
            return event_type;
        }
        let mut seen = self
            .shared
            .types_seen
            .entry((tenant.clone(), hour))
            .or_default();
        if seen.contains(event_type) {
            return event_type;
        }
        if seen.len() < MAX_EVENT_TYPES_PER_HOUR {
            seen.insert(event_type.clone());
            return event_type;
        }
        &self.shared.overflow
    }

    pub(crate) fn touch(&self, tenant: &TenantId, key_id: &KeyId, at: DateTime<Utc>) {
        if self.shared.touches.len() < self.shared.usage_cap {
            self.shared
                .touches
                .insert((tenant.clone(), key_id.clone()), at);
        }
    }

    pub(crate) fn audit_dropped(&self) -> u64 {
        self.shared.drops.audit.load(Ordering::Relaxed)
    }

    pub(crate) fn usage_dropped(&self) -> u64 {
        self.shared.drops.usage.load(Ordering::Relaxed)
    }

    /// Writes everything buffered so far; returns once it is written (or
    /// dropped after retries).
    pub(crate) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.control_tx.send(Control::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes everything buffered and stops the task. Later events are
    /// dropped and counted.
    pub(crate) async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        if self.control_tx.send(Control::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

struct Worker {
    audit_rx: mpsc::Receiver<AuditEvent>,
    control_rx: mpsc::Receiver<Control>,
    shared: Arc<Shared>,
    sinks: Sinks,
    batch_size: usize,
    interval: Duration,
}

impl Worker {
    async fn run(mut self) {
        let mut batch: Vec<AuditEvent> = Vec::with_capacity(self.batch_size);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = self.audit_rx.recv_many(&mut batch, self.batch_size) => {
                    if n == 0 {
                        self.write_all(&mut batch).await;
                        return;
                    }
                    if batch.len() >= self.batch_size {
                        self.write_audit(&mut batch).await;
                    }
                }
                _ = tick.tick() => self.write_all(&mut batch).await,
                control = self.control_rx.recv() => {
                    while let Ok(event) = self.audit_rx.try_recv() {
                        batch.push(event);
                        if batch.len() >= self.batch_size {
                            self.write_audit(&mut batch).await;
                        }
                    }
                    self.write_all(&mut batch).await;
                    match control {
                        Some(Control::Flush(ack)) => { let _ = ack.send(()); }
                        Some(Control::Shutdown(ack)) => { let _ = ack.send(()); return; }
                        None => return,
                    }
                }
            }
        }
    }

    async fn write_all(&self, batch: &mut Vec<AuditEvent>) {
        self.write_audit(batch).await;
        self.write_usage().await;
        self.write_touches().await;
    }

    async fn write_audit(&self, batch: &mut Vec<AuditEvent>) {
        if batch.is_empty() {
            return;
        }
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.sinks.audit.record(batch).await {
                Ok(()) => {
                    batch.clear();
                    return;
                }
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "audit write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, dropped = batch.len(), "audit write failed; batch dropped");
                }
            }
        }
        let dropped = batch.len() as u64;
        self.shared
            .drops
            .audit
            .fetch_add(dropped, Ordering::Relaxed);
        metrics::counter!(AUDIT_DROPPED_TOTAL).increment(dropped);
        batch.clear();
    }

    async fn write_usage(&self) {
        // Hours that ended more than an hour ago take no new events.
        let now = Utc::now().timestamp();
        let horizon = now - now.rem_euclid(3600) - 3600;
        self.shared
            .types_seen
            .retain(|(_, hour), _| *hour >= horizon);
        let keys: Vec<UsageKey> = self.shared.usage.iter().map(|e| e.key().clone()).collect();
        if keys.is_empty() {
            return;
        }
        let records: Vec<UsageRecord> = keys
            .into_iter()
            .filter_map(|key| self.shared.usage.remove(&key))
            .map(|((tenant_id, hour, event_type), count)| UsageRecord {
                tenant_id,
                hour,
                event_type,
                count,
            })
            .collect();
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.sinks.usage.record(&records).await {
                Ok(()) => return,
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "usage write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => tracing::error!(error = %e, "usage write failed; records dropped"),
            }
        }
        let dropped = records.len() as u64;
        self.shared
            .drops
            .usage
            .fetch_add(dropped, Ordering::Relaxed);
        metrics::counter!(USAGE_DROPPED_TOTAL).increment(dropped);
    }

    async fn write_touches(&self) {
        let keys: Vec<(TenantId, KeyId)> = self
            .shared
            .touches
            .iter()
            .map(|e| e.key().clone())
            .collect();
        for key in keys {
            if let Some(((tenant, key_id), at)) = self.shared.touches.remove(&key)
                && let Err(e) = self.sinks.api_keys.touch(&tenant, &key_id, at).await
            {
                tracing::debug!(error = %e, "API key last-use update failed");
            }
        }
    }
}
