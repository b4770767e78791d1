//! 100,000 audit events enqueued from 8 concurrent tasks, all read back:
//! on one server and on the cluster of two shards.

use std::time::{Duration, Instant};

use tenancy_core::audit::{ActorKind, AuditEvent};
use tenancy_core::testkit::stores;
use tenancy_core::writer::{AuditWriter, BatchConfig};
use tenancy_store_clickhouse::tenant_sql;

use crate::fixture::{TestDatabase, count};

const TASKS: usize = 8;
const PER_TASK: usize = 12_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_events_from_concurrent_tasks() {
    if let Some(db) = TestDatabase::new("volume").await {
        hundred_thousand_events(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_events_from_concurrent_tasks_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("volume").await {
        hundred_thousand_events(db).await;
    }
}

async fn hundred_thousand_events(db: TestDatabase) {
    let writer = AuditWriter::audit(
        db.stores.audit_sink(),
        BatchConfig::default()
            .capacity(TASKS * PER_TASK)
            .max_batch(10_000)
            .max_delay(Duration::from_millis(200)),
    );
    let tenants: Vec<_> = (0..TASKS)
        .map(|_| stores::unique_tenant("volume"))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for tenant in tenants.clone() {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for n in 0..PER_TASK {
                let mut event = AuditEvent::new(
                    tenant.clone(),
                    format!("key_{}", n % 16),
                    ActorKind::ApiKey,
                    "telemetry.send",
                )
                .outcome(202)
                .detail("events", (n % 100).to_string());
                event.request_id = Some(format!("req-{n}"));
                if writer.try_enqueue(event) {
                    accepted += 1;
                }
                if n % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("task");
    }
    let stats = writer.shutdown().await;
    let elapsed = started.elapsed();
    assert_eq!(accepted, TASKS * PER_TASK, "the buffer holds them all");
    assert_eq!(
        (stats.written, stats.dropped, stats.pending),
        ((TASKS * PER_TASK) as u64, 0, 0)
    );

    let names: Vec<&str> = tenants.iter().map(|t| t.as_str()).collect();
    assert_eq!(
        db.count("audit_log", &names).await,
        (TASKS * PER_TASK) as u64
    );
    for tenant in &tenants {
        let own: u64 = db
            .stores
            .tenant_query(tenant)
            .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant}"))
            .fetch_one()
            .await
            .expect("count");
        assert_eq!(
            own, PER_TASK as u64,
            "each tenant sees exactly its own rows"
        );
        // On a cluster, all of them on one shard.
        let mut on_shards = Vec::new();
        for shard in 0..db.shards.len() {
            on_shards.push(count(&db.shard(shard), "audit_log_local", &[tenant.as_str()]).await);
        }
        if !on_shards.is_empty() {
            on_shards.sort_unstable();
            assert_eq!(on_shards, [0, PER_TASK as u64], "{tenant} on one shard");
        }
    }
    eprintln!(
        "100,000 events enqueued and written in {elapsed:?} on {} shard(s)",
        db.shards.len().max(1)
    );
}
