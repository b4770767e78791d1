//! Purges and tenant deletion remove only the named tenant's rows, on one
//! server and on every shard of a cluster.

use std::time::Duration;

use chrono::Utc;
use tenancy_core::audit::{ActorKind, AuditEvent, AuditFilter};
use tenancy_core::label::Label;
use tenancy_core::metering::UsageRecord;
use tenancy_core::store::{AuditQuery, AuditSink, UsageMeter};
use tenancy_core::testkit::stores;

use crate::fixture::TestDatabase;

const MUTATIONS: Duration = Duration::from_secs(60);

#[tokio::test]
async fn purge_and_delete_touch_one_tenant() {
    if let Some(db) = TestDatabase::new("retention").await {
        purge_and_delete(db).await;
    }
}

#[tokio::test]
async fn purge_and_delete_touch_one_tenant_on_a_cluster() {
    if let Some(db) = TestDatabase::sharded("retention").await {
        purge_and_delete(db).await;
    }
}

async fn purge_and_delete(db: TestDatabase) {
    let a = stores::unique_tenant("ret");
    let b = stores::unique_tenant("ret");
    let now = stores::now_millis();
    let days_ago = |d: i64| now - chrono::Duration::days(d);
    let cutoff = days_ago(30);
    let sink = db.stores.audit_sink();
    let mut events = Vec::new();
    for tenant in [&a, &b] {
        for (i, at) in [
            days_ago(400),
            days_ago(40),
            cutoff - chrono::Duration::milliseconds(1),
            cutoff,
            days_ago(10),
            now,
        ]
        .into_iter()
        .enumerate()
        {
            events.push(
                AuditEvent::new(
                    tenant.clone(),
                    "alice",
                    ActorKind::User,
                    format!("step.{i}"),
                )
                .at(at),
            );
        }
    }
    sink.record(&events).await.expect("record");
    let meter = db.stores.usage_meter();
    let metric = Label::new("metric").expect("valid");
    meter
        .record(&[
            UsageRecord::new(a.clone(), metric.clone(), now, 5),
            UsageRecord::new(b.clone(), metric.clone(), now, 7),
        ])
        .await
        .expect("record");

    db.stores.purge_audit(&a, cutoff).await.expect("purge");
    db.stores.wait_for_mutations(MUTATIONS).await.expect("done");
    assert_eq!(db.stores.pending_mutations().await.expect("pending"), 0);
    let query = db.stores.audit_query();
    let kept: Vec<String> = query
        .query(&a, &AuditFilter::default())
        .await
        .expect("query")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        kept,
        ["step.5", "step.4", "step.3"],
        "events before the cutoff are gone, to the millisecond"
    );
    assert_eq!(
        query
            .query(&b, &AuditFilter::default())
            .await
            .expect("query")
            .len(),
        6,
        "the other tenant keeps everything"
    );

    db.stores.delete_tenant(&a).await.expect("delete");
    db.stores.wait_for_mutations(MUTATIONS).await.expect("done");
    assert!(
        query
            .query(&a, &AuditFilter::default())
            .await
            .expect("query")
            .is_empty()
    );
    let end = now + chrono::Duration::hours(1);
    let start = now - chrono::Duration::hours(1);
    assert!(meter.usage(&a, start, end).await.expect("usage").is_empty());
    assert_eq!(db.count("audit_log", &[a.as_str()]).await, 0);
    assert_eq!(db.count("usage_hourly", &[a.as_str()]).await, 0);
    assert_eq!(db.count("audit_log", &[b.as_str()]).await, 6);
    let theirs = meter.usage(&b, start, end).await.expect("usage");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].count, 7);
    // New rows of a deleted tenant are kept: deletion is of what exists.
    sink.record(&[AuditEvent::new(a.clone(), "alice", ActorKind::User, "again").at(Utc::now())])
        .await
        .expect("record");
    assert_eq!(db.count("audit_log", &[a.as_str()]).await, 1);
}
