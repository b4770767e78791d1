//! What the request path records, handed to the one writer
//! ([`crate::writer`]): audit events go straight to its buffer; usage counts
//! and key last-use times are first added up per key in maps, which a
//! ticker moves into the writer every `audit.flush_interval_ms`.
//!
//! The request path only ever does a non-blocking enqueue or a map
//! increment: nothing on it waits on a store. What does not fit is dropped
//! and counted by the writer, which is the only place anything is dropped.
//!
//! Metering is fair per tenant: a tenant meters at most
//! [`MAX_EVENT_TYPES_PER_HOUR`] distinct event types per hour (besides the
//! engine's own `requests`); later types
//! of that hour are counted under [`OVERFLOW_EVENT_TYPE`], so no count is
//! lost and one tenant's burst of types can never fill the buffer that
//! every other tenant's usage goes through.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::ConcurrentMap;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::audit::AuditEvent;
use crate::config::AuditConfig;
use crate::key_id::KeyId;
use crate::label::Label;
use crate::metering::UsageRecord;
use crate::store::tenant_cache::CachedTenant;
use crate::store::{ApiKeyStore, AuditSink, UsageMeter};
use crate::tenant::TenantId;
use crate::tenant_metrics::{KEY_USES_DROPPED_TOTAL, TenantMetrics};
use crate::writer::{BatchConfig, BatchWriter, KeyUse};

/// Most distinct event types one tenant meters in one hour.
pub const MAX_EVENT_TYPES_PER_HOUR: usize = 100;
/// The event type that counts a tenant's events past
/// [`MAX_EVENT_TYPES_PER_HOUR`] types in an hour.
pub const OVERFLOW_EVENT_TYPE: &str = "other_types";

type UsageKey = (TenantId, DateTime<Utc>, Label);

/// How long shutdown waits for each writer to write what it holds.
/// How long a key's recorded last use may lag: a key used again within a
/// minute of its recorded (or pending) last use writes nothing.
pub(crate) const LAST_USE_PRECISION: chrono::TimeDelta =
    chrono::TimeDelta::nanoseconds(LAST_USE_PRECISION_NANOS);
/// [`LAST_USE_PRECISION`] in nanoseconds: a minute.
pub(crate) const LAST_USE_PRECISION_NANOS: i64 = 60_000_000_000;

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a flush waits for each writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read waits for the writers to catch up: in-memory sinks take
/// microseconds, so this only bounds a pathological case.
const READ_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

struct Shared {
    usage: ConcurrentMap<UsageKey, u64>,
    usage_cap: usize,
    /// The event types each tenant metered in each hour (unix seconds of
    /// its start), to cap them.
    types_seen: ConcurrentMap<(TenantId, i64), HashSet<Label>>,
    overflow: Label,
    /// The engine's own per-request type, always metered under its name.
    requests: Label,
    /// Key last-use times not yet handed over, by key (key ids are unique
    /// across tenants).
    touches: ConcurrentMap<KeyId, (TenantId, DateTime<Utc>)>,
    audit: BatchWriter<AuditEvent>,
    usage_writer: BatchWriter<UsageRecord>,
    key_uses: BatchWriter<KeyUse>,
    /// Per-tenant metrics, which also count each tenant's requests.
    metrics: TenantMetrics,
}

pub(crate) struct Recorder {
    shared: Arc<Shared>,
    ticker: std::sync::Mutex<Option<JoinHandle<()>>>,
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
    /// Starts the writers and the ticker on the current tokio runtime.
    pub(crate) fn start(
        config: &AuditConfig,
        sinks: Sinks,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let _entered = runtime.enter();
        let interval = Duration::from_millis(config.flush_interval_ms.max(1));
        let batch = BatchConfig::default()
            .capacity(config.buffer_capacity.max(1))
            .max_batch(config.batch_size.max(1))
            .max_delay(interval)
            .shutdown_timeout(SHUTDOWN_TIMEOUT);
        let shared = Arc::new(Shared {
            usage: ConcurrentMap::default(),
            usage_cap: config.buffer_capacity,
            types_seen: ConcurrentMap::default(),
            overflow: sinks.overflow_type.clone(),
            requests: sinks.requests_type.clone(),
            touches: ConcurrentMap::default(),
            audit: BatchWriter::audit(sinks.audit, batch.clone()),
            usage_writer: BatchWriter::usage(sinks.usage, batch.clone()),
            key_uses: BatchWriter::spawn(sinks.api_keys, batch, KEY_USES_DROPPED_TOTAL),
            metrics: TenantMetrics::default(),
        });
        let ticking = Arc::downgrade(&shared);
        let ticker = runtime.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = ticking.upgrade() else {
                    return;
                };
                shared.hand_over();
            }
        });
        Self {
            shared,
            ticker: std::sync::Mutex::new(Some(ticker)),
        }
    }

    /// Records an answered request of `tenant`: its metrics, and one
    /// `requests` event, counted in the tenant's metric handles and metered
    /// in batches (no map write per request).
    pub(crate) fn request_done(
        &self,
        tenant: &CachedTenant,
        status: u16,
        elapsed: Duration,
        unix_secs: i64,
    ) {
        let hour = unix_secs - unix_secs.rem_euclid(3600);
        let id = &tenant.record.id;
        let handles = tenant
            .metrics
            .get_or_init(|| self.shared.metrics.handles(id, hour));
        if let Some((finished, n)) = handles.record(status, elapsed, hour) {
            self.shared.meter_requests(id, finished, n);
        }
    }

    pub(crate) fn audit(&self, event: AuditEvent) {
        self.shared.audit.try_enqueue(event);
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
        // A type not in the map: within the tenant's types of the hour, or
        // counted under the overflow type.
        let event_type = self.admit_type(tenant, hour_ts, event_type);
        let key = (tenant.clone(), hour, event_type.clone());
        if let Some(mut count) = self.shared.usage.get_mut(&key) {
            *count = count.saturating_add(n);
            return;
        }
        if self.shared.usage.len() >= self.shared.usage_cap {
            // No room to add up: the record goes to the writer on its own
            // (which counts it if it has no room either).
            let (tenant_id, hour, event_type) = key;
            self.shared.usage_writer.try_enqueue(UsageRecord {
                tenant_id,
                hour,
                event_type,
                count: n,
            });
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
        let touches = &self.shared.touches;
        // A use already waiting for the next hand-over within the minute is
        // as good as this one (last use is kept to the minute): a read, no
        // write.
        if touches
            .get(key_id)
            .is_some_and(|pending| at - pending.1 < LAST_USE_PRECISION)
        {
            return;
        }
        if touches.len() < self.shared.usage_cap {
            touches.insert(key_id.clone(), (tenant.clone(), at));
        } else {
            self.shared.key_uses.try_enqueue(KeyUse {
                tenant: tenant.clone(),
                key_id: key_id.clone(),
                at,
            });
        }
    }

    pub(crate) fn audit_dropped(&self) -> u64 {
        self.shared.audit.dropped()
    }

    pub(crate) fn usage_dropped(&self) -> u64 {
        self.shared.usage_writer.dropped()
    }

    /// Writes everything recorded so far; returns once it is written (or
    /// dropped).
    pub(crate) async fn flush(&self) {
        self.shared.hand_over();
        let s = &self.shared;
        let _ = tokio::join!(
            s.audit.flush(FLUSH_TIMEOUT),
            s.usage_writer.flush(FLUSH_TIMEOUT),
            s.key_uses.flush(FLUSH_TIMEOUT),
        );
    }

    /// Writes out the audit events and usage recorded so far (not key
    /// last-use times): what a read of the log or usage must see.
    pub(crate) async fn flush_records(&self) {
        self.shared.hand_over();
        let s = &self.shared;
        let _ = tokio::join!(
            s.audit.flush(READ_FLUSH_TIMEOUT),
            s.usage_writer.flush(READ_FLUSH_TIMEOUT),
        );
    }

    /// Writes everything recorded and stops the writers. Later records are
    /// dropped and counted.
    pub(crate) async fn shutdown(&self) {
        let ticker = self.ticker.lock().ok().and_then(|mut t| t.take());
        if let Some(ticker) = ticker {
            ticker.abort();
        }
        self.shared.hand_over();
        let s = &self.shared;
        let _ = tokio::join!(
            s.audit.shutdown(),
            s.usage_writer.shutdown(),
            s.key_uses.shutdown(),
        );
    }
}

impl Shared {
    fn meter_requests(&self, tenant: &TenantId, hour: i64, n: u64) {
        if let Some(hour) = DateTime::from_timestamp(hour, 0) {
            self.usage_writer.try_enqueue(UsageRecord {
                tenant_id: tenant.clone(),
                hour,
                event_type: self.requests.clone(),
                count: n,
            });
        }
    }

    /// Moves the added-up usage and key last-use times into their writers,
    /// and forgets the event types of hours that ended over an hour ago.
    fn hand_over(&self) {
        let now = Utc::now().timestamp();
        let horizon = now - now.rem_euclid(3600) - 3600;
        self.types_seen.retain(|(_, hour), _| *hour >= horizon);
        let keys: Vec<UsageKey> = self.usage.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            if let Some(((tenant_id, hour, event_type), count)) = self.usage.remove(&key) {
                self.usage_writer.try_enqueue(UsageRecord {
                    tenant_id,
                    hour,
                    event_type,
                    count,
                });
            }
        }
        let keys: Vec<KeyId> = self.touches.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            if let Some((key_id, (tenant, at))) = self.touches.remove(&key) {
                self.key_uses.try_enqueue(KeyUse { tenant, key_id, at });
            }
        }
        self.metrics
            .drain(|tenant, hour, n| self.meter_requests(tenant, hour, n));
        // What was added up waited a tick already: out it goes.
        self.usage_writer.write_soon();
        self.key_uses.write_soon();
    }
}
