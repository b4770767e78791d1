//! Server outages, made real by a proxy between the client and the server
//! that refuses and closes connections: nothing that fits in the buffer is
//! lost, and everything else is counted as dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tenancy_core::audit::{ActorKind, AuditEvent};
use tenancy_core::tenant::TenantId;
use tenancy_core::testkit::stores;
use tenancy_core::writer::{AuditWriter, BatchConfig};

use crate::fixture::TestDatabase;
use crate::proxy::Proxy;

fn event(tenant: &TenantId, n: u64) -> AuditEvent {
    AuditEvent::new(
        tenant.clone(),
        format!("actor-{}", n % 10),
        ActorKind::User,
        "outage.test",
    )
    .detail("n", n.to_string())
}

/// Offers `count` events from `tasks` concurrent tasks; how many were accepted.
async fn offer(writer: &AuditWriter, tenant: &TenantId, tasks: u64, count: u64) -> u64 {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (writer, tenant) = (writer.clone(), tenant.clone());
        handles.push(tokio::spawn(async move {
            let mut accepted = 0;
            for n in (t..count).step_by(tasks as usize) {
                accepted += u64::from(writer.try_enqueue(event(&tenant, n)));
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for h in handles {
        accepted += h.await.expect("task");
    }
    accepted
}

async fn until_idle(writer: &AuditWriter, within: Duration) {
    let started = Instant::now();
    while writer.pending() > 0 {
        assert!(
            started.elapsed() < within,
            "writer still holds {} events",
            writer.pending()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_loses_nothing_that_fits_and_counts_the_rest() {
    let Some(db) = TestDatabase::new("outage").await else {
        return;
    };
    let proxy = Proxy::start(&db.url).await;
    let stores = TestDatabase::stores_at(&proxy.url(), &db.name);
    const CAPACITY: u64 = 2_000;
    let writer = AuditWriter::audit(
        stores.audit_sink(),
        BatchConfig::default()
            .capacity(CAPACITY as usize)
            .max_batch(500)
            .max_delay(Duration::from_millis(20))
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .write_timeout(Duration::from_secs(5)),
    );
    let tenant = stores::unique_tenant("outage");

    // Up: everything goes through.
    let before = offer(&writer, &tenant, 4, 1_500).await;
    assert_eq!(before, 1_500);
    until_idle(&writer, Duration::from_secs(30)).await;
    assert_eq!(db.count("audit_log", &[tenant.as_str()]).await, 1_500);

    // Down: the buffer fills to exactly its capacity; the rest is dropped.
    proxy.cut();
    let offered_down = 5_000;
    let accepted_down = offer(&writer, &tenant, 4, offered_down).await;
    assert_eq!(
        accepted_down, CAPACITY,
        "the buffer holds exactly its capacity"
    );
    assert_eq!(
        writer.dropped(),
        offered_down - CAPACITY,
        "what did not fit is counted"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let during = writer.stats();
    assert!(during.failed_writes >= 2, "retried while down: {during:?}");
    assert_eq!(
        during.pending as u64, CAPACITY,
        "nothing given up while down"
    );
    assert_eq!(during.written, 1_500);
    assert_eq!(db.count("audit_log", &[tenant.as_str()]).await, 1_500);

    // Back: the held events are written, new ones flow again.
    proxy.restore().await;
    until_idle(&writer, Duration::from_secs(30)).await;
    let after = offer(&writer, &tenant, 4, 1_000).await;
    assert_eq!(after, 1_000);
    let stats = writer.shutdown().await;

    let offered = 1_500 + offered_down + 1_000;
    let rows = db.count("audit_log", &[tenant.as_str()]).await;
    eprintln!(
        "outage: offered {offered}, written {}, dropped {}, failed writes {}, rows {rows}",
        stats.written, stats.dropped, stats.failed_writes
    );
    assert_eq!(stats.dropped, offered_down - CAPACITY);
    assert_eq!(
        stats.written + stats.dropped,
        offered,
        "every event written or counted"
    );
    assert_eq!(
        rows,
        offered - stats.dropped,
        "rows read back = enqueued - dropped"
    );
    assert_eq!(rows, stats.written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_mid_stream() {
    let Some(db) = TestDatabase::new("outage_stream").await else {
        return;
    };
    let proxy = Proxy::start(&db.url).await;
    let stores = TestDatabase::stores_at(&proxy.url(), &db.name);
    const MAX_BATCH: u64 = 500;
    const MAX_IN_FLIGHT: u64 = 2;
    let writer = AuditWriter::audit(
        stores.audit_sink(),
        BatchConfig::default()
            .capacity(1_000)
            .max_batch(MAX_BATCH as usize)
            .max_in_flight(MAX_IN_FLIGHT as usize)
            .max_delay(Duration::from_millis(10))
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .write_timeout(Duration::from_secs(5)),
    );
    let tenant = stores::unique_tenant("stream");

    // Two producers at a steady pace, about 2,000 events/s in all: more
    // than the buffer holds for the length of the cut.
    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for p in 0..2u64 {
        let (writer, tenant, stop, offered) = (
            writer.clone(),
            tenant.clone(),
            stop.clone(),
            offered.clone(),
        );
        producers.push(tokio::spawn(async move {
            let mut n = p;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                writer.try_enqueue(event(&tenant, n));
                offered.fetch_add(1, Ordering::Relaxed);
                n += 2;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = writer.stats();
    proxy.restore().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.expect("producer");
    }
    let stats = writer.shutdown().await;
    let offered = offered.load(Ordering::Relaxed);
    let rows = db.count("audit_log", &[tenant.as_str()]).await;
    eprintln!(
        "mid-stream outage: offered {offered}, written {}, dropped {}, failed writes {}, rows {rows}",
        stats.written, stats.dropped, stats.failed_writes
    );
    assert!(during.failed_writes > 0, "the cut was felt: {during:?}");
    assert!(stats.dropped > 0, "the outage outlasted the buffer");
    assert_eq!(stats.pending, 0);
    assert_eq!(
        stats.written + stats.dropped,
        offered,
        "every event written or counted"
    );
    assert!(rows >= stats.written, "nothing written was lost");
    // At least once: a batch stored just as its connection was cut is
    // written again by the retry.
    assert!(
        rows - stats.written <= MAX_IN_FLIGHT * MAX_BATCH,
        "at most the batches in flight at the cut are stored twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_outage_gives_up_in_time() {
    let Some(db) = TestDatabase::new("outage_shutdown").await else {
        return;
    };
    let proxy = Proxy::start(&db.url).await;
    let stores = TestDatabase::stores_at(&proxy.url(), &db.name);
    let writer = AuditWriter::audit(
        stores.audit_sink(),
        BatchConfig::default()
            .max_delay(Duration::from_millis(10))
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .shutdown_timeout(Duration::from_millis(500)),
    );
    let tenant = stores::unique_tenant("gone");
    proxy.cut();
    assert_eq!(offer(&writer, &tenant, 2, 100).await, 100);
    let started = Instant::now();
    let stats = writer.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((stats.written, stats.dropped, stats.pending), (0, 100, 0));
    proxy.restore().await;
    assert_eq!(db.count("audit_log", &[tenant.as_str()]).await, 0);
}
