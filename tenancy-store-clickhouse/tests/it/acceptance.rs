//! The store acceptance suite of `tenancy-core`, plus usage counted from
//! concurrent tasks across hour boundaries: on one server and on the
//! cluster of two shards.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tenancy_core::label::Label;
use tenancy_core::metering::UsageRecord;
use tenancy_core::plan::Period;
use tenancy_core::store::UsageMeter;
use tenancy_core::testkit::stores;
use tenancy_core::writer::{BatchConfig, UsageWriter};

use crate::fixture::TestDatabase;

#[tokio::test]
async fn audit_log_passes_the_suite() {
    if let Some(db) = TestDatabase::new("audit_suite").await {
        stores::audit_log(&db.stores.audit_sink(), &db.stores.audit_query()).await;
    }
}

#[tokio::test]
async fn audit_log_passes_the_suite_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("audit_suite").await {
        stores::audit_log(&db.stores.audit_sink(), &db.stores.audit_query()).await;
    }
}

#[tokio::test]
async fn usage_meter_passes_the_suite() {
    if let Some(db) = TestDatabase::new("usage_suite").await {
        stores::usage_meter(&db.stores.usage_meter()).await;
    }
}

#[tokio::test]
async fn usage_meter_passes_the_suite_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("usage_suite").await {
        stores::usage_meter(&db.stores.usage_meter()).await;
    }
}

#[tokio::test]
async fn telemetry_store_passes_the_suite() {
    if let Some(db) = TestDatabase::new("telemetry_suite").await {
        stores::telemetry_store(&db.stores.telemetry_store()).await;
    }
}

#[tokio::test]
async fn telemetry_store_passes_the_suite_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("telemetry_suite").await {
        stores::telemetry_store(&db.stores.telemetry_store()).await;
    }
}

#[tokio::test]
async fn retention_and_erasure_pass_the_suite() {
    if let Some(db) = TestDatabase::new("retention_suite").await {
        retention_on(&db).await;
    }
}

#[tokio::test]
async fn retention_and_erasure_pass_the_suite_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("retention_suite").await {
        retention_on(&db).await;
    }
}

#[tokio::test]
async fn one_sweep_keeps_each_plans_days() {
    if let Some(db) = TestDatabase::new("sweep").await {
        sweep_on(&db).await;
    }
}

#[tokio::test]
async fn one_sweep_keeps_each_plans_days_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("sweep").await {
        sweep_on(&db).await;
    }
}

async fn sweep_on(db: &TestDatabase) {
    let tenancy = tenancy_core::Tenancy::builder(tenancy_core::TenancyConfig::default())
        .audit(
            Arc::new(db.stores.audit_sink()),
            Some(Arc::new(db.stores.audit_query())),
        )
        .usage_meter(Arc::new(db.stores.usage_meter()))
        .build()
        .expect("engine");
    stores::retention_sweep(&tenancy, &db.stores.telemetry_store()).await;
    tenancy.shutdown().await;
}

async fn retention_on(db: &TestDatabase) {
    stores::retention_and_erasure(
        &db.stores.audit_sink(),
        &db.stores.audit_query(),
        &db.stores.usage_meter(),
        &db.stores.telemetry_store(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_from_concurrent_tasks_across_three_hours() {
    if let Some(db) = TestDatabase::new("usage_concurrent").await {
        usage_from_concurrent_tasks(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_from_concurrent_tasks_across_three_hours_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("usage_concurrent").await {
        usage_from_concurrent_tasks(db).await;
    }
}

async fn usage_from_concurrent_tasks(db: TestDatabase) {
    let tenant = stores::unique_tenant("usage");
    let other = stores::unique_tenant("usage");
    let types = ["metric", "log", "trace"].map(|t| Label::new(t).expect("valid"));
    let h0 = Period::Hour
        .window(Utc::now() - chrono::Duration::hours(5))
        .start;
    // Times from the first second of h0 to the last second of h2.
    let at = move |i: u64| h0 + chrono::Duration::seconds((i * 997 % (3 * 3600)) as i64);

    let meter = Arc::new(db.stores.usage_meter());
    let writer = UsageWriter::usage(
        db.stores.usage_meter(),
        BatchConfig::default()
            .max_batch(500)
            .max_delay(std::time::Duration::from_millis(50)),
    );
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (meter, writer, tenant, other, types) = (
            meter.clone(),
            writer.clone(),
            tenant.clone(),
            other.clone(),
            types.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..1500u64 {
                let n = task * 10_000 + i;
                let record = UsageRecord::new(
                    tenant.clone(),
                    types[(n % 3) as usize].clone(),
                    at(n),
                    n % 7 + 1,
                );
                sent.push(record);
            }
            // Half straight through the meter in chunks, half through the
            // batched writer; the other tenant gets one record per chunk.
            for chunk in sent[..750].chunks(50) {
                let mut chunk = chunk.to_vec();
                chunk.push(UsageRecord::new(
                    other.clone(),
                    types[0].clone(),
                    at(0),
                    1_000,
                ));
                meter.record(&chunk).await.expect("record");
            }
            for record in &sent[750..] {
                assert!(writer.try_enqueue(record.clone()), "room in the buffer");
            }
            sent
        }));
    }
    let mut expected: BTreeMap<(DateTime<Utc>, String), u64> = BTreeMap::new();
    for t in tasks {
        for r in t.await.expect("task") {
            *expected
                .entry((r.hour, r.event_type.to_string()))
                .or_default() += r.count;
        }
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.dropped), (8 * 750, 0));
    assert_eq!(
        expected
            .keys()
            .map(|(h, _)| *h)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3,
        "the records span three hours"
    );

    let read = |rows: Vec<UsageRecord>| -> BTreeMap<(DateTime<Utc>, String), u64> {
        rows.into_iter()
            .map(|r| ((r.hour, r.event_type.to_string()), r.count))
            .collect()
    };
    let end = h0 + chrono::Duration::hours(3);
    let got = read(meter.usage(&tenant, h0, end).await.expect("usage"));
    assert_eq!(
        got, expected,
        "sums per hour and type equal what was recorded"
    );

    // Merging the parts changes nothing. `OPTIMIZE … FINAL` does nothing,
    // silently, while a background merge holds the parts: ask again (a few
    // times) until they are one.
    let mut rows_after_merge = 0;
    for _ in 0..50 {
        db.optimize_usage().await;
        rows_after_merge = db.count("usage_hourly", &[tenant.as_str()]).await;
        if rows_after_merge == 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let merged = read(meter.usage(&tenant, h0, end).await.expect("usage"));
    assert_eq!(merged, expected);
    assert_eq!(rows_after_merge, 9, "one row per hour and type once merged");

    // The other tenant's records stay its own.
    let theirs = meter.usage(&other, h0, end).await.expect("usage");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].count, 8 * 15 * 1_000);
    // Hour ranges are half-open.
    let middle = read(
        meter
            .usage(
                &tenant,
                h0 + chrono::Duration::hours(1),
                h0 + chrono::Duration::hours(2),
            )
            .await
            .expect("usage"),
    );
    assert_eq!(middle.len(), 3);
    assert!(
        middle
            .keys()
            .all(|(h, _)| *h == h0 + chrono::Duration::hours(1))
    );
}
