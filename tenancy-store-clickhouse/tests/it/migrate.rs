//! The migration: idempotent, safe from many instances at once, and fitted
//! to the server's version.

use tenancy_store_clickhouse::schema::{AUDIT_TABLE, TELEMETRY_TABLE, USAGE_TABLE};

use crate::fixture::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_agree() {
    let Some(url) = tenancy_core::testkit::services::clickhouse_url() else {
        return;
    };
    let db = TestDatabase::unmigrated(&url, "migrate");
    let mut runs = Vec::new();
    for _ in 0..8 {
        // Each as a separate instance would: its own client.
        let stores = TestDatabase::stores_at(&url, &db.name);
        runs.push(tokio::spawn(async move { stores.migrate().await }));
    }
    let mut reports = Vec::new();
    for run in runs {
        reports.push(run.await.expect("task").expect("migrate"));
    }
    let again = db.stores.migrate().await.expect("migrate again");
    assert!(reports.iter().all(|r| *r == again));
    assert_eq!(again.audit_ttl, again.server_version.supports_table_ttl());

    let tables: Vec<String> = db
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&db.name)
        .fetch_all()
        .await
        .expect("tables");
    assert_eq!(tables, [AUDIT_TABLE, TELEMETRY_TABLE, USAGE_TABLE]);

    let (audit_engine, audit_key): (String, String) = db
        .client()
        .query("SELECT engine, sorting_key FROM system.tables WHERE database = ? AND name = ?")
        .bind(&db.name)
        .bind(AUDIT_TABLE)
        .fetch_one()
        .await
        .expect("audit_log");
    assert_eq!(
        (audit_engine.as_str(), audit_key.as_str()),
        ("MergeTree", "tenant_id, timestamp")
    );
    let create: String = db
        .client()
        .query("SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?")
        .bind(&db.name)
        .bind(AUDIT_TABLE)
        .fetch_one()
        .await
        .expect("create query");
    assert!(create.contains("PARTITION BY toYYYYMM(timestamp)"));
    assert_eq!(create.contains("TTL"), again.audit_ttl);

    let usage_engine: String = db
        .client()
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
        .bind(&db.name)
        .bind(USAGE_TABLE)
        .fetch_one()
        .await
        .expect("usage_hourly");
    assert!(
        usage_engine.starts_with("SummingMergeTree(count)"),
        "{usage_engine}"
    );
    assert!(usage_engine.contains("ORDER BY (tenant_id, hour, event_type)"));
}
