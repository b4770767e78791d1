//! The ClickHouse audit path, in one run:
//!
//! - sustained rows per second into the server through the batched
//!   [`AuditWriter`] (producers keep its buffer full for a fixed time), next
//!   to its baseline: the same events written directly with
//!   `ClickHouseAuditSink::record`, one `INSERT` per batch of the same size;
//! - with criterion, the per-request cost of `try_enqueue` of one event,
//!   accepted and refused (full buffer), next to their baselines: a push
//!   onto a `Vec`, and dropping the event (which a refusal does).
//!
//! ```text
//! cargo bench -p tenancy-benches --bench clickhouse_audit
//! TENANCY_BENCH_CLICKHOUSE_URL=http://127.0.0.1:18123 cargo bench -p tenancy-benches --bench clickhouse_audit
//! ```
//!
//! The server is `TENANCY_BENCH_CLICKHOUSE_URL` (default
//! `http://127.0.0.1:8123`); the bench works in a database of its own and
//! drops it at the end. When nothing answers, it says so and exits. It only
//! runs under `cargo bench`.
//!
//! With `TENANCY_BENCH_CLICKHOUSE_CLUSTER` (a cluster of the servers'
//! `remote_servers`) and `TENANCY_BENCH_CLICKHOUSE_SHARDS` (its shards'
//! URLs, comma-separated), it also writes events of 64 tenants, direct and
//! through the writer, into the tables spread over the shards, next to the
//! same into the first shard alone.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use tenancy_core::audit::{ActorKind, AuditEvent};
use tenancy_core::store::AuditSink;
use tenancy_core::tenant::TenantId;
use tenancy_core::writer::{AuditWriter, BatchConfig};
use tenancy_store_clickhouse::clickhouse::Client;
use tenancy_store_clickhouse::{ClickHouseCluster, ClickHouseStores, tenant_sql};
use tokio::runtime::Runtime;

const URL_VAR: &str = "TENANCY_BENCH_CLICKHOUSE_URL";
const CLUSTER_VAR: &str = "TENANCY_BENCH_CLICKHOUSE_CLUSTER";
const SHARDS_VAR: &str = "TENANCY_BENCH_CLICKHOUSE_SHARDS";
/// Tenants of the cluster comparison: enough to spread over the shards.
const SPREAD_TENANTS: usize = 64;
const DEFAULT_URL: &str = "http://127.0.0.1:8123";
/// How long producers keep the writer busy.
const SUSTAIN: Duration = Duration::from_secs(10);
/// Rows per `INSERT`, for the writer and for its baseline.
const BATCH: usize = 50_000;
/// Producer tasks.
const PRODUCERS: usize = 2;

/// An event like the engine records for an API-key request.
fn event(tenant: &TenantId, n: u64) -> AuditEvent {
    let mut e = AuditEvent::new(
        tenant.clone(),
        "key_01HZX3",
        ActorKind::ApiKey,
        "telemetry.send",
    )
    .resource("/api/v1/telemetry")
    .outcome(202)
    .detail("method", "POST");
    e.request_id = Some(format!("req-{n:016x}"));
    e.client_addr = Some(std::net::IpAddr::from([10, 0, (n >> 8) as u8, n as u8]));
    e
}

/// Rows per second written by the batched writer while producers keep its
/// buffer full for [`SUSTAIN`], shutdown flush included.
async fn writer_rows_per_sec(stores: &ClickHouseStores, tenants: &[TenantId]) -> (f64, u64) {
    let writer = AuditWriter::audit(
        stores.audit_sink(),
        BatchConfig::default()
            .capacity(4 * BATCH)
            .max_batch(BATCH)
            .max_delay(Duration::from_millis(200)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS as u64 {
        let (writer, tenants, stop) = (writer.clone(), tenants.to_vec(), stop.clone());
        producers.push(tokio::spawn(async move {
            let mut n = p << 40;
            while !stop.load(Ordering::Relaxed) {
                // Full buffer: let the writer catch up (refusals are not
                // part of the figure).
                let tenant = &tenants[n as usize % tenants.len()];
                if !writer.try_enqueue(event(tenant, n)) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                n += 1;
                if n % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(SUSTAIN).await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.expect("producer");
    }
    let stats = writer.shutdown().await;
    let elapsed = started.elapsed();
    (stats.written as f64 / elapsed.as_secs_f64(), stats.written)
}

/// Rows per second of `record` of prepared batches of [`BATCH`] events,
/// one after the other, for about [`SUSTAIN`].
async fn direct_rows_per_sec(stores: &ClickHouseStores, tenants: &[TenantId]) -> (f64, u64) {
    let sink = stores.audit_sink();
    let batch: Vec<AuditEvent> = (0..BATCH as u64)
        .map(|n| event(&tenants[n as usize % tenants.len()], n))
        .collect();
    let started = Instant::now();
    let mut rows = 0u64;
    while started.elapsed() < SUSTAIN {
        sink.record(&batch).await.expect("insert");
        rows += BATCH as u64;
    }
    (rows as f64 / started.elapsed().as_secs_f64(), rows)
}

/// The rows of `tenants`, each counted through its own tenant query.
async fn count(stores: &ClickHouseStores, tenants: &[TenantId]) -> u64 {
    let mut rows = 0;
    for tenant in tenants {
        rows += stores
            .tenant_query(tenant)
            .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant}"))
            .fetch_one::<u64>()
            .await
            .expect("count");
    }
    rows
}

/// Direct and batched rows/s of `stores`, checked against what is stored.
fn rows_per_sec(rt: &Runtime, stores: &ClickHouseStores, tenants: &[TenantId]) -> (f64, f64) {
    rt.block_on(stores.migrate()).expect("migrate");
    let (direct, direct_rows) = rt.block_on(direct_rows_per_sec(stores, tenants));
    assert_eq!(rt.block_on(count(stores, tenants)), direct_rows);
    let (written, writer_rows) = rt.block_on(writer_rows_per_sec(stores, tenants));
    assert_eq!(
        rt.block_on(count(stores, tenants)),
        direct_rows + writer_rows
    );
    (direct, written)
}

/// The same events of [`SPREAD_TENANTS`] tenants into the first shard
/// alone and into the tables spread over all shards.
fn cluster(rt: &Runtime, name: &str, shards: &str, database: &str) {
    let shards: Vec<&str> = shards.split(',').map(str::trim).collect();
    let tenants: Vec<TenantId> = (0..SPREAD_TENANTS)
        .map(|n| TenantId::new(format!("bench-{n}")).expect("valid"))
        .collect();
    let one_db = format!("{database}_one");
    let one =
        ClickHouseStores::new(Client::default().with_url(shards[0]), &one_db).expect("valid name");
    let spread_db = format!("{database}_spread");
    let spread = ClickHouseStores::new(Client::default().with_url(shards[0]), &spread_db)
        .expect("valid name")
        .on_cluster(
            ClickHouseCluster::new(
                name,
                shards.iter().map(|url| Client::default().with_url(*url)),
            )
            .expect("valid cluster"),
        );
    let (one_direct, one_writer) = rows_per_sec(rt, &one, &tenants);
    let (spread_direct, spread_writer) = rows_per_sec(rt, &spread, &tenants);
    eprintln!(
        "audit rows/s, {SPREAD_TENANTS} tenants: direct record, one server  {one_direct:>10.0}\n\
         audit rows/s, {SPREAD_TENANTS} tenants: direct record, {} shards    {spread_direct:>10.0} = {:.2} x one server\n\
         audit rows/s, {SPREAD_TENANTS} tenants: batched writer, one server {one_writer:>10.0}\n\
         audit rows/s, {SPREAD_TENANTS} tenants: batched writer, {} shards   {spread_writer:>10.0} = {:.2} x one server",
        shards.len(),
        spread_direct / one_direct,
        shards.len(),
        spread_writer / one_writer,
    );
    for url in &shards {
        drop_database(rt, url, &one_db);
        drop_database(rt, url, &spread_db);
    }
}

fn drop_database(rt: &Runtime, url: &str, database: &str) {
    let dropped = rt.block_on(
        Client::default()
            .with_url(url)
            .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
            .execute(),
    );
    if let Err(e) = dropped {
        eprintln!("clickhouse_audit: could not drop {database} on {url}: {e}");
    }
}

/// The per-request cost of handing one event to the writer.
fn enqueue_cost(c: &mut Criterion, rt: &Runtime, stores: &ClickHouseStores, tenant: &TenantId) {
    let mut group = c.benchmark_group("audit_enqueue");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));

    // Baseline: the cheapest hand-off there is.
    group.bench_function("vec_push", |b| {
        b.iter_batched(
            || (Vec::with_capacity(1), event(tenant, 1)),
            |(mut v, e)| {
                v.push(e);
                v
            },
            BatchSize::SmallInput,
        );
    });

    // Accepted: the buffer has room, the background task writes into
    // ClickHouse meanwhile. Events are built outside the timed part.
    let _guard = rt.enter();
    group.bench_function("try_enqueue_accepted", |b| {
        b.iter_custom(|iters| {
            let writer = AuditWriter::audit(
                stores.audit_sink(),
                BatchConfig::default()
                    .capacity(iters as usize + 1)
                    .max_batch(BATCH)
                    // What is still buffered after the sample is not needed:
                    // stop without writing it.
                    .shutdown_timeout(Duration::ZERO),
            );
            let events: Vec<AuditEvent> = (0..iters).map(|n| event(tenant, n)).collect();
            let started = Instant::now();
            let mut accepted = 0u64;
            for e in events {
                accepted += u64::from(black_box(writer.try_enqueue(e)));
            }
            let elapsed = started.elapsed();
            assert_eq!(accepted, iters, "every event fits");
            rt.block_on(writer.shutdown());
            elapsed
        });
    });

    // Baseline of the refused path: what dropping the event costs.
    group.bench_function("drop_event", |b| {
        b.iter_batched(|| event(tenant, 1), drop, BatchSize::SmallInput);
    });

    // Refused: the buffer is full (the server is gone), the event is
    // dropped and counted.
    let gone = ClickHouseStores::new(Client::default().with_url("http://127.0.0.1:9"), "gone")
        .expect("valid name");
    let full: AuditWriter = AuditWriter::audit(
        gone.audit_sink(),
        BatchConfig::default()
            .capacity(1)
            .shutdown_timeout(Duration::ZERO),
    );
    full.try_enqueue(event(tenant, 0));
    group.bench_function("try_enqueue_full", |b| {
        b.iter_batched(
            || event(tenant, 1),
            |e| full.try_enqueue(e),
            BatchSize::SmallInput,
        );
    });
    group.finish();
    rt.block_on(full.shutdown());
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: this one
    // needs a server and minutes, so it only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("clickhouse_audit: run with `cargo bench`; skipped");
        return;
    }
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let database = format!("tenancy_bench_{}_{nanos}", std::process::id());
    let stores =
        ClickHouseStores::new(Client::default().with_url(&url), &database).expect("valid name");
    let version = match rt.block_on(stores.server_version()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("clickhouse_audit: no ClickHouse at {url} ({e}); set {URL_VAR}");
            return;
        }
    };
    rt.block_on(stores.migrate()).expect("migrate");
    eprintln!("clickhouse_audit: ClickHouse {version} at {url}, database {database}");

    let direct_tenant = TenantId::new("bench-direct").expect("valid");
    let writer_tenant = TenantId::new("bench-writer").expect("valid");
    let (direct, direct_rows) = rt.block_on(direct_rows_per_sec(
        &stores,
        std::slice::from_ref(&direct_tenant),
    ));
    let (written, writer_rows) = rt.block_on(writer_rows_per_sec(
        &stores,
        std::slice::from_ref(&writer_tenant),
    ));
    assert_eq!(rt.block_on(count(&stores, &[direct_tenant])), direct_rows);
    assert_eq!(
        rt.block_on(count(&stores, std::slice::from_ref(&writer_tenant))),
        writer_rows
    );
    eprintln!(
        "audit rows/s: direct record (baseline) {direct:>10.0} ({direct_rows} rows)\n\
         audit rows/s: batched writer           {written:>10.0} ({writer_rows} rows, {PRODUCERS} producers, batches of {BATCH}) = {:.2} x baseline",
        written / direct
    );
    if let (Ok(name), Ok(shards)) = (std::env::var(CLUSTER_VAR), std::env::var(SHARDS_VAR)) {
        cluster(&rt, &name, &shards, &database);
    }

    let mut criterion = Criterion::default().configure_from_args();
    enqueue_cost(&mut criterion, &rt, &stores, &writer_tenant);
    criterion.final_summary();

    drop_database(&rt, &url, &database);
}
