//! The one writer of the workspace: request paths hand items (audit events,
//! usage records, key last-use times) to a bounded in-process buffer without
//! waiting; a background task writes them in batches to a [`BatchSink`],
//! which supplies only "write this batch". The engine runs one writer per
//! kind of item; the stores (in memory, Redis, ClickHouse) are sinks.
//!
//! [`BatchWriter::try_enqueue`] never waits and never fails loudly: an item
//! either fits in the buffer or is dropped and counted. The buffer holds at
//! most [`BatchConfig::capacity`] items, counting the batches being written,
//! so a writer's memory is bounded whatever happens to the server.
//!
//! The background task writes a batch when it holds
//! [`max_batch`](BatchConfig::max_batch) items or when the oldest has waited
//! [`max_delay`](BatchConfig::max_delay), with up to
//! [`max_in_flight`](BatchConfig::max_in_flight) writes at once (so one
//! batch is prepared and sent while the server stores another; batches may
//! land out of order). A failed write is retried with
//! exponential backoff (and jitter) while the buffer keeps accepting items
//! until it is full:
//!
//! - while the server is unreachable or slow ([`StoreError::Unavailable`],
//!   [`StoreError::Timeout`]) the batch is retried until it is written;
//! - any other failure (the server refuses the rows) is retried
//!   [`max_attempts`](BatchConfig::max_attempts) times, then the batch is
//!   dropped and counted.
//!
//! [`BatchWriter::shutdown`] stops accepting items and writes everything
//! still held, giving up (and counting) what cannot be written within
//! [`shutdown_timeout`](BatchConfig::shutdown_timeout).
//!
//! Everything dropped is counted in [`BatchWriter::dropped`] and in a
//! [`metrics`] counter ([`AUDIT_DROPPED_METRIC`] for audit writers,
//! [`USAGE_DROPPED_METRIC`] for usage writers). Once a writer is idle, every
//! item offered to it was either written or dropped:
//! `offered == stats.written + stats.dropped`.
//!
//! Delivery is at least once: when a connection breaks after the server
//! stored a batch but before it answered, the retry stores it again (at
//! most the batches in flight at the break).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::audit::AuditEvent;
use crate::metering::UsageRecord;
use crate::store::{AuditSink, StoreError, UsageMeter};
use async_trait::async_trait;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub use crate::tenant_metrics::{
    AUDIT_DROPPED_TOTAL as AUDIT_DROPPED_METRIC, USAGE_DROPPED_TOTAL as USAGE_DROPPED_METRIC,
};

/// Where a [`BatchWriter`] writes its batches: all a store supplies.
///
/// Implemented by any `Arc<dyn AuditSink>`, `Arc<dyn UsageMeter>` and
/// `Arc<dyn ApiKeyStore>` (key last-use times), and by the ClickHouse
/// store's sinks directly.
#[async_trait]
pub trait BatchSink<T>: Send + Sync + 'static {
    /// Writes `batch` in one go. [`StoreError::Unavailable`] and
    /// [`StoreError::Timeout`] mean "try again later"; other errors are
    /// retried a few times only.
    ///
    /// A sink that keeps the items themselves (in memory) may take them out
    /// of `batch` instead of copying them, once its write can no longer
    /// fail: on an error, `batch` must still hold every item, for the
    /// retry. What is left after a success is dropped.
    async fn write_batch(&self, batch: &mut Vec<T>) -> Result<(), StoreError>;
}

#[async_trait]
impl BatchSink<AuditEvent> for Arc<dyn AuditSink> {
    async fn write_batch(&self, batch: &mut Vec<AuditEvent>) -> Result<(), StoreError> {
        self.record_taking(batch).await
    }
}

#[async_trait]
impl BatchSink<UsageRecord> for Arc<dyn UsageMeter> {
    async fn write_batch(&self, batch: &mut Vec<UsageRecord>) -> Result<(), StoreError> {
        self.record(batch).await
    }
}

/// A key's last use, written by a [`BatchWriter`] into the API key store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key's tenant.
    pub tenant: crate::tenant::TenantId,
    /// The key.
    pub key_id: crate::key_id::KeyId,
    /// When it was used.
    pub at: chrono::DateTime<chrono::Utc>,
}

#[async_trait]
impl BatchSink<KeyUse> for Arc<dyn crate::store::ApiKeyStore> {
    async fn write_batch(&self, batch: &mut Vec<KeyUse>) -> Result<(), StoreError> {
        for used in batch.iter() {
            self.touch(&used.tenant, &used.key_id, used.at).await?;
        }
        Ok(())
    }
}

/// Sizes and times of a [`BatchWriter`].
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::writer::BatchConfig;
///
/// let config = BatchConfig::default()
///     .capacity(50_000)
///     .max_batch(5_000)
///     .max_delay(Duration::from_millis(500));
/// assert_eq!(config.get_capacity(), 50_000);
/// ```
#[derive(Debug, Clone)]
pub struct BatchConfig {
    capacity: usize,
    max_batch: usize,
    max_delay: Duration,
    write_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    max_attempts: u32,
    max_in_flight: usize,
    shutdown_timeout: Duration,
}

impl Default for BatchConfig {
    /// 100,000 items held, batches of up to 10,000 or 1 s, 2 writes at a
    /// time, 30 s per write, backoff from 100 ms to 10 s, 5 attempts for
    /// refused batches, 30 s to shut down.
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_batch: 10_000,
            max_delay: Duration::from_secs(1),
            write_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_attempts: 5,
            max_in_flight: 2,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl BatchConfig {
    /// Most items held at once, the batch being written included (at
    /// least 1). Items offered beyond it are dropped.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Most items per write (at least 1): the size trigger.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Longest an item waits for its batch to fill: the time trigger.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Longest one write may take before it counts as a timeout.
    pub fn write_timeout(mut self, write_timeout: Duration) -> Self {
        self.write_timeout = write_timeout;
        self
    }

    /// First and largest pause between retries; the pause doubles after
    /// each failure.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Attempts at a batch the server refuses before it is dropped (at
    /// least 1). Batches that fail because the server is unreachable are
    /// retried until shutdown.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Most batches written at once (at least 1). With 2, the next batch is
    /// prepared and sent while the server stores the previous one.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }

    /// Longest [`BatchWriter::shutdown`] keeps trying to write what is held.
    pub fn shutdown_timeout(mut self, shutdown_timeout: Duration) -> Self {
        self.shutdown_timeout = shutdown_timeout;
        self
    }

    /// The configured [`capacity`](Self::capacity).
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }

    /// The configured [`max_batch`](Self::max_batch).
    pub fn get_max_batch(&self) -> usize {
        self.max_batch
    }
}

/// Counts of a [`BatchWriter`], read with [`BatchWriter::stats`].
///
/// The counters are read one after the other, so a snapshot taken while
/// items flow may be off by what moved in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriterStats {
    /// Items written.
    pub written: u64,
    /// Items dropped: offered to a full or closed buffer, or in a batch that
    /// was given up.
    pub dropped: u64,
    /// Items held: buffered or being written.
    pub pending: usize,
    /// Write attempts that failed (each retry of a batch counts).
    pub failed_writes: u64,
}

/// A bounded, non-blocking, batching writer; see the [module docs](self).
///
/// Cloning shares the buffer and the background task.
///
/// ```
/// use std::sync::Arc;
/// use tenancy_core::audit::{ActorKind, AuditEvent};
/// use tenancy_core::store::AuditSink;
/// use tenancy_core::store::memory::MemoryAuditLog;
/// use tenancy_core::tenant::TenantId;
/// use tenancy_core::writer::{AuditWriter, BatchConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let log = Arc::new(MemoryAuditLog::new());
/// let sink: Arc<dyn AuditSink> = log.clone();
/// let writer = AuditWriter::audit(sink, BatchConfig::default());
/// let acme = TenantId::new("acme").unwrap();
/// // On the request path: never waits.
/// writer.try_enqueue(AuditEvent::new(acme, "alice", ActorKind::User, "incident.ack"));
/// // On the way out: writes what is left.
/// let stats = writer.shutdown().await;
/// assert_eq!((stats.written, stats.pending), (1, 0));
/// assert_eq!(log.len(), 1);
/// # });
/// ```
pub struct BatchWriter<T> {
    handle: Arc<Handle<T>>,
}

/// Audit events, batched into an audit sink.
pub type AuditWriter = BatchWriter<AuditEvent>;
/// Usage records, batched into a usage meter.
pub type UsageWriter = BatchWriter<UsageRecord>;

/// What the handles own: dropping the last one tells the background task
/// (through `closing`) to write what is left and stop.
struct Handle<T> {
    shared: Arc<Shared<T>>,
    closing: watch::Sender<Option<Instant>>,
    task: Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

/// What the handles, the background task and its writes share.
struct Shared<T> {
    queue: StdMutex<Queue<T>>,
    /// Wakes the background task: first item, or enough for a batch.
    wake: Notify,
    /// Set by [`BatchWriter::write_soon`] and [`BatchWriter::flush`]: the
    /// batch being filled goes out without waiting for its delay.
    urgent: AtomicBool,
    capacity: usize,
    rejected: AtomicU64,
    abandoned: AtomicU64,
    written: AtomicU64,
    failed_writes: AtomicU64,
    dropped_metric: &'static str,
}

/// The buffer. One short lock per item; no task is woken per item.
struct Queue<T> {
    items: VecDeque<T>,
    /// Items the background task took and has not written or dropped yet.
    taken: usize,
    /// No more items are accepted.
    closed: bool,
    /// Wake the background task when `items` reaches this length.
    wake_at: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // The queue holds no invariant a panic elsewhere could break.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn drop_items(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(self.dropped_metric).increment(n);
    }

    /// Moves every buffered item into `staging` (empty), in constant time so
    /// producers never wait behind a big batch, and sets when to wake the
    /// background task: at the next item when it waits for the first of a
    /// batch, once the `room` left in its batch is buffered otherwise.
    /// `false` when nothing was buffered and the buffer is closed.
    fn take_all(&self, staging: &mut VecDeque<T>, room: usize, first: bool) -> bool {
        debug_assert!(staging.is_empty());
        let mut queue = self.lock();
        if queue.items.is_empty() && queue.closed {
            return false;
        }
        std::mem::swap(&mut queue.items, staging);
        let got = staging.len();
        queue.taken += got;
        queue.wake_at = match room.checked_sub(got) {
            Some(0) | None => usize::MAX,
            Some(_) if got == 0 && first => 1,
            Some(rest) => rest,
        };
        true
    }

    /// Takes `n` written or dropped items off the held count.
    fn release(&self, n: usize) {
        self.lock().taken -= n;
    }

    fn close(&self) {
        self.lock().closed = true;
    }
}

impl<T> Clone for BatchWriter<T> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
        }
    }
}

impl BatchWriter<AuditEvent> {
    /// An audit writer into `target`, counting drops in
    /// [`AUDIT_DROPPED_METRIC`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn audit(target: impl BatchSink<AuditEvent>, config: BatchConfig) -> Self {
        Self::spawn(target, config, AUDIT_DROPPED_METRIC)
    }
}

impl BatchWriter<UsageRecord> {
    /// A usage writer into `target`, counting drops in
    /// [`USAGE_DROPPED_METRIC`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn usage(target: impl BatchSink<UsageRecord>, config: BatchConfig) -> Self {
        Self::spawn(target, config, USAGE_DROPPED_METRIC)
    }
}

impl<T: Send + Sync + 'static> BatchWriter<T> {
    /// A writer into `target` whose background task runs on the current
    /// Tokio runtime; drops are counted in the [`metrics`] counter
    /// `dropped_metric`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn(
        target: impl BatchSink<T>,
        config: BatchConfig,
        dropped_metric: &'static str,
    ) -> Self {
        let (closing, closing_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            queue: StdMutex::new(Queue {
                items: VecDeque::new(),
                taken: 0,
                closed: false,
                wake_at: 1,
            }),
            wake: Notify::new(),
            capacity: config.capacity,
            rejected: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            urgent: AtomicBool::new(false),
            written: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            dropped_metric,
        });
        let shutdown_timeout = config.shutdown_timeout;
        let flusher = Flusher {
            shared: shared.clone(),
            staging: VecDeque::new(),
            target: Arc::new(target),
            config: Arc::new(config),
            closing: closing_rx,
            deadline: None,
            in_flight: JoinSet::new(),
        };
        let task = tokio::spawn(flusher.run());
        Self {
            handle: Arc::new(Handle {
                shared,
                closing,
                task: Mutex::new(Some(task)),
                shutdown_timeout,
            }),
        }
    }

    /// Hands `item` to the writer without waiting for the server or the
    /// background task (one short lock, no `await`): `true` when it was
    /// buffered, `false` when it was dropped (the buffer is full or the
    /// writer shut down) and counted.
    pub fn try_enqueue(&self, item: T) -> bool {
        let shared = &*self.handle.shared;
        let mut queue = shared.lock();
        if queue.closed || queue.items.len() + queue.taken >= shared.capacity {
            drop(queue);
            shared.drop_items(&shared.rejected, 1);
            return false;
        }
        queue.items.push_back(item);
        let wake = queue.items.len() == queue.wake_at;
        drop(queue);
        if wake {
            shared.wake.notify_one();
        }
        true
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        let shared = &self.handle.shared;
        shared.rejected.load(Ordering::Relaxed) + shared.abandoned.load(Ordering::Relaxed)
    }

    /// Items held: buffered or being written.
    pub fn pending(&self) -> usize {
        let queue = self.handle.shared.lock();
        queue.items.len() + queue.taken
    }

    /// Most items held at once.
    pub fn capacity(&self) -> usize {
        self.handle.shared.capacity
    }

    /// All counters.
    pub fn stats(&self) -> WriterStats {
        let shared = &self.handle.shared;
        WriterStats {
            written: shared.written.load(Ordering::Relaxed),
            dropped: self.dropped(),
            pending: self.pending(),
            failed_writes: shared.failed_writes.load(Ordering::Relaxed),
        }
    }

    /// Asks the background task to write what it holds now, without
    /// waiting for its delay; returns at once.
    pub fn write_soon(&self) {
        self.handle.shared.urgent.store(true, Ordering::Release);
        self.handle.shared.wake.notify_one();
    }

    /// Waits until everything held when called has been written or
    /// dropped, or `timeout` passes; `true` when nothing is held any more.
    /// The background task is woken, so it does not wait for its delay.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.write_soon();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops accepting items, writes everything held and waits for the
    /// background task to end. What cannot be written within the
    /// [`shutdown_timeout`](BatchConfig::shutdown_timeout) is dropped and
    /// counted. Later calls (and calls on clones) wait for the same end.
    pub async fn shutdown(&self) -> WriterStats {
        let mut task = self.handle.task.lock().await;
        if let Some(running) = task.take() {
            let deadline = Instant::now() + self.handle.shutdown_timeout;
            // Refuse new items at once, not when the task gets to it.
            self.handle.shared.close();
            self.handle.closing.send_replace(Some(deadline));
            if let Err(e) = running.await {
                tracing::error!(error = %e, "batch writer task failed");
            }
        }
        drop(task);
        self.stats()
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for BatchWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriter")
            .field("capacity", &self.capacity())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The background task of a [`BatchWriter`]: forms batches and hands each
/// to a [`BatchWrite`] task, at most
/// [`max_in_flight`](BatchConfig::max_in_flight) at a time.
struct Flusher<T, F> {
    shared: Arc<Shared<T>>,
    /// Items taken from the buffer, not yet in a batch.
    staging: VecDeque<T>,
    target: Arc<F>,
    config: Arc<BatchConfig>,
    closing: watch::Receiver<Option<Instant>>,
    /// Set once the writer shuts down (or every handle is gone): stop
    /// waiting for batches to fill, and give up on what is not written by
    /// then.
    deadline: Option<Instant>,
    in_flight: JoinSet<()>,
}

impl<T: Send + Sync + 'static, F: BatchSink<T>> Flusher<T, F> {
    async fn run(mut self) {
        loop {
            let mut batch = Vec::with_capacity(self.config.max_batch.min(16_384));
            if !self.first(&mut batch).await {
                break;
            }
            self.fill(&mut batch).await;
            self.free_slot().await;
            let write = BatchWrite {
                shared: self.shared.clone(),
                target: self.target.clone(),
                config: self.config.clone(),
                closing: self.closing.clone(),
                deadline: self.deadline,
                rng: seed(),
            };
            self.in_flight.spawn(write.run(batch));
        }
        while let Some(done) = self.in_flight.join_next().await {
            log_join(done);
        }
    }

    /// Stops accepting items and sets the time to give up by.
    fn begin_closing(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.shared.close();
        // Whatever the task waits for now, the buffer is final.
        self.shared.wake.notify_one();
    }

    /// Moves buffered items into `batch` until it is full or nothing is
    /// buffered, then sets when to be woken for more. `false` once the
    /// buffer is closed and nothing is left.
    fn draw(&mut self, batch: &mut Vec<T>) -> bool {
        loop {
            let room = self.config.max_batch - batch.len();
            if room == 0 {
                return true;
            }
            if self.staging.is_empty() {
                if !self
                    .shared
                    .take_all(&mut self.staging, room, batch.is_empty())
                {
                    return false;
                }
                if self.staging.is_empty() {
                    return true;
                }
            }
            let n = room.min(self.staging.len());
            batch.extend(self.staging.drain(..n));
        }
    }

    /// Waits for the first items of a batch; `false` once the buffer is
    /// closed and empty.
    async fn first(&mut self, batch: &mut Vec<T>) -> bool {
        loop {
            if !self.draw(batch) {
                return !batch.is_empty();
            }
            if !batch.is_empty() {
                return true;
            }
            tokio::select! {
                () = self.shared.wake.notified() => {}
                d = closing(&mut self.closing, self.config.shutdown_timeout),
                    if self.deadline.is_none() => self.begin_closing(d),
            }
        }
    }

    /// Adds to `batch` until it is full, `max_delay` has passed, or the
    /// writer shuts down (then only what is already buffered).
    async fn fill(&mut self, batch: &mut Vec<T>) {
        let flush_at = Instant::now() + self.config.max_delay;
        while self.draw(batch) && batch.len() < self.config.max_batch && self.deadline.is_none() {
            if self.shared.urgent.swap(false, Ordering::AcqRel) {
                break;
            }
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep_until(flush_at) => {
                    self.draw(batch);
                    break;
                }
                d = closing(&mut self.closing, self.config.shutdown_timeout) => self.begin_closing(d),
            }
        }
        // Until the next batch starts, items need not wake anybody.
        self.shared.lock().wake_at = usize::MAX;
    }

    /// Waits until fewer than `max_in_flight` writes run.
    async fn free_slot(&mut self) {
        while self.in_flight.len() >= self.config.max_in_flight {
            tokio::select! {
                Some(done) = self.in_flight.join_next() => log_join(done),
                d = closing(&mut self.closing, self.config.shutdown_timeout),
                    if self.deadline.is_none() => self.begin_closing(d),
            }
        }
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "batch write task failed");
    }
}

/// One batch being written, retried with backoff.
struct BatchWrite<T, F> {
    shared: Arc<Shared<T>>,
    target: Arc<F>,
    config: Arc<BatchConfig>,
    closing: watch::Receiver<Option<Instant>>,
    deadline: Option<Instant>,
    rng: u64,
}

impl<T: Send + Sync + 'static, F: BatchSink<T>> BatchWrite<T, F> {
    /// Writes `batch`, retrying with backoff; counts it as written or
    /// dropped and releases its room in the buffer.
    async fn run(mut self, mut batch: Vec<T>) {
        let n = batch.len();
        let mut attempts = 0u32;
        let mut pause = self.config.backoff_initial;
        loop {
            let budget = match self.deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(self.config.write_timeout),
                None => self.config.write_timeout,
            };
            let result = if budget.is_zero() {
                Err(StoreError::Timeout)
            } else {
                tokio::time::timeout(budget, self.target.write_batch(&mut batch))
                    .await
                    .unwrap_or(Err(StoreError::Timeout))
            };
            let error = match result {
                Ok(()) => {
                    self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => e,
            };
            attempts += 1;
            self.shared.failed_writes.fetch_add(1, Ordering::Relaxed);
            let transient = matches!(error, StoreError::Unavailable(_) | StoreError::Timeout);
            let past_deadline = self.deadline.is_some_and(|d| Instant::now() >= d);
            if past_deadline || (!transient && attempts >= self.config.max_attempts) {
                tracing::error!(
                    error = %error, rows = n, attempts,
                    "batch writer gave up on a batch; its rows are dropped"
                );
                self.shared.drop_items(&self.shared.abandoned, n as u64);
                break;
            }
            if attempts == 1 {
                tracing::warn!(error = %error, rows = n, "batch write failed; retrying with backoff");
            } else {
                tracing::debug!(error = %error, rows = n, attempts, "batch write failed again");
            }
            let mut wake = Instant::now() + self.jitter(pause);
            if let Some(d) = self.deadline {
                wake = wake.min(d);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                // Shutting down: try again at once, then until the deadline.
                d = closing(&mut self.closing, self.config.shutdown_timeout),
                    if self.deadline.is_none() => self.deadline = Some(d),
            }
            pause = pause.saturating_mul(2).min(self.config.backoff_max);
        }
        // The items leave the buffer only now, so they count against the
        // capacity while they are retried.
        drop(batch);
        self.shared.release(n);
    }

    /// `pause` scaled by a random factor in [0.5, 1).
    fn jitter(&mut self, pause: Duration) -> Duration {
        // xorshift64: plenty for spreading retries of many instances.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        pause.mul_f64(0.5 + fraction / 2.0)
    }
}

/// Resolves, with the time to give up by, when the writer starts shutting
/// down or every handle is gone.
async fn closing(
    signal: &mut watch::Receiver<Option<Instant>>,
    shutdown_timeout: Duration,
) -> Instant {
    let asked = match signal.wait_for(Option::is_some).await {
        Ok(value) => *value,
        // Every handle is gone: nobody can call shutdown any more.
        Err(_) => None,
    };
    asked.unwrap_or_else(|| Instant::now() + shutdown_timeout)
}

/// A non-zero seed for the jitter, different per writer and per process.
fn seed() -> u64 {
    static WRITERS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = WRITERS.fetch_add(1, Ordering::Relaxed);
    (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ActorKind, AuditFilter};
    use crate::store::AuditQuery;
    use crate::store::memory::MemoryAuditLog;
    use crate::tenant::TenantId;

    fn event(tenant: &TenantId, n: usize) -> AuditEvent {
        AuditEvent::new(
            tenant.clone(),
            format!("actor-{n}"),
            ActorKind::User,
            "test.write",
        )
    }

    fn memory() -> (Arc<MemoryAuditLog>, Arc<dyn AuditSink>) {
        let log = Arc::new(MemoryAuditLog::with_capacity_per_tenant(1_000_000));
        let sink: Arc<dyn AuditSink> = log.clone();
        (log, sink)
    }

    async fn until(mut done: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition reached in time");
    }

    #[tokio::test]
    async fn size_trigger_then_shutdown_writes_the_rest() {
        let (log, sink) = memory();
        let tenant = TenantId::new("acme").expect("valid");
        let writer = AuditWriter::audit(
            sink,
            BatchConfig::default()
                .max_batch(10)
                .max_delay(Duration::from_secs(3600)),
        );
        for n in 0..25 {
            assert!(writer.try_enqueue(event(&tenant, n)));
        }
        // Two full batches go out at once; five wait for the time trigger.
        until(|| log.len() == 20).await;
        assert_eq!(writer.pending(), 5);
        let stats = writer.shutdown().await;
        assert_eq!((stats.written, stats.dropped, stats.pending), (25, 0, 0));
        let kept = log
            .query(&tenant, &AuditFilter::default().limit(100))
            .await
            .expect("query");
        assert_eq!(kept.len(), 25);
        assert!(
            !writer.try_enqueue(event(&tenant, 99)),
            "closed after shutdown"
        );
        assert_eq!(writer.dropped(), 1);
        assert_eq!(writer.shutdown().await.written, 25, "shutdown twice");
    }

    #[tokio::test]
    async fn a_flush_does_not_wait_for_the_delay() {
        let (log, sink) = memory();
        let writer = AuditWriter::audit(
            sink,
            BatchConfig::default().max_delay(Duration::from_secs(60)),
        );
        let tenant = TenantId::new("acme").expect("valid");
        writer.try_enqueue(event(&tenant, 1));
        assert!(
            writer.flush(Duration::from_secs(5)).await,
            "flushed well before the delay"
        );
        assert_eq!(log.len(), 1);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn time_trigger() {
        let (log, sink) = memory();
        let writer = AuditWriter::audit(
            sink,
            BatchConfig::default().max_delay(Duration::from_millis(20)),
        );
        writer.try_enqueue(event(&TenantId::new("acme").expect("valid"), 1));
        until(|| log.len() == 1).await;
        until(|| writer.pending() == 0).await;
        assert_eq!(writer.stats().written, 1);
    }

    #[tokio::test]
    async fn the_buffer_is_bounded() {
        let (_log, sink) = memory();
        // The background task cannot run before this test yields, so
        // everything beyond the capacity is refused.
        let writer = AuditWriter::audit(sink, BatchConfig::default().capacity(100));
        let tenant = TenantId::new("acme").expect("valid");
        let accepted = (0..250)
            .filter(|&n| writer.try_enqueue(event(&tenant, n)))
            .count();
        assert_eq!(accepted, 100);
        assert_eq!(writer.dropped(), 150);
        let stats = writer.shutdown().await;
        assert_eq!((stats.written, stats.dropped), (100, 150));
    }

    #[tokio::test]
    async fn dropping_every_handle_still_writes() {
        let (log, sink) = memory();
        let writer = AuditWriter::audit(
            sink,
            BatchConfig::default().max_delay(Duration::from_secs(3600)),
        );
        let tenant = TenantId::new("acme").expect("valid");
        writer.try_enqueue(event(&tenant, 1));
        writer.clone().try_enqueue(event(&tenant, 2));
        drop(writer);
        until(|| log.len() == 2).await;
    }
}
