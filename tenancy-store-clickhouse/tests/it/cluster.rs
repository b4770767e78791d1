//! The tables spread over the test cluster of two shards: what the
//! migration creates where, where one tenant's rows land, and clusters the
//! servers do not know.

use tenancy_core::audit::{ActorKind, AuditEvent};
use tenancy_core::store::{AuditSink, StoreError};
use tenancy_core::testkit::{services, stores};
use tenancy_store_clickhouse::clickhouse::Client;
use tenancy_store_clickhouse::schema::{
    AUDIT_LOCAL_TABLE, AUDIT_TABLE, TELEMETRY_LOCAL_TABLE, TELEMETRY_TABLE, USAGE_LOCAL_TABLE,
    USAGE_TABLE,
};
use tenancy_store_clickhouse::{ClickHouseCluster, tenant_sql};

use crate::fixture::{TestDatabase, count};

/// `(name, engine)` of every table of the database, by name.
async fn tables(client: &Client, database: &str) -> Vec<(String, String)> {
    client
        .query("SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name")
        .bind(database)
        .fetch_all()
        .await
        .expect("tables")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_create_local_and_distributed_tables_on_every_shard() {
    let Some(db) = TestDatabase::unmigrated_sharded("cluster_migrate") else {
        return;
    };
    let (cluster, shards) = services::clickhouse_cluster().expect("configured");
    let mut runs = Vec::new();
    for _ in 0..4 {
        let stores = TestDatabase::sharded_stores(&cluster, &shards, &db.name);
        runs.push(tokio::spawn(async move { stores.migrate().await }));
    }
    for run in runs {
        let migration = run.await.expect("task").expect("migrate");
        assert_eq!(migration.shards, 2);
    }
    let again = db.stores.migrate().await.expect("migrate again");
    assert_eq!(
        (again.shards, again.audit_ttl),
        (2, again.server_version.supports_table_ttl())
    );
    assert_eq!(db.stores.cluster(), Some(cluster.as_str()));

    for shard in 0..2 {
        let found = tables(&db.shard(shard), &db.name).await;
        let found: Vec<(&str, &str)> = found
            .iter()
            .map(|(name, engine)| (name.as_str(), engine.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (AUDIT_TABLE, "Distributed"),
                (AUDIT_LOCAL_TABLE, "MergeTree"),
                (TELEMETRY_TABLE, "Distributed"),
                (TELEMETRY_LOCAL_TABLE, "MergeTree"),
                (USAGE_TABLE, "Distributed"),
                (USAGE_LOCAL_TABLE, "SummingMergeTree"),
            ],
            "shard {shard}"
        );
        let sharding: String = db
            .shard(shard)
            .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
            .bind(&db.name)
            .bind(AUDIT_TABLE)
            .fetch_one()
            .await
            .expect("engine");
        assert!(
            sharding.contains("cityHash64(tenant_id)") && sharding.contains(&cluster),
            "{sharding}"
        );
    }
}

#[tokio::test]
async fn each_tenant_lives_on_one_shard_and_tenants_spread_over_both() {
    let Some(db) = TestDatabase::sharded("cluster_spread").await else {
        return;
    };
    // With 64 tenants, all on one shard would happen once in 2^63 runs.
    let tenants: Vec<_> = (0..64).map(|_| stores::unique_tenant("spread")).collect();
    let mut events = Vec::new();
    for tenant in &tenants {
        for n in 0..3 {
            events.push(AuditEvent::new(
                tenant.clone(),
                "alice",
                ActorKind::User,
                format!("step.{n}"),
            ));
        }
    }
    db.stores
        .audit_sink()
        .record(&events)
        .await
        .expect("record");

    // Any node takes the queries: here the second shard, which is not the
    // node the rows were written through.
    let (cluster, shards) = services::clickhouse_cluster().expect("configured");
    let through_second =
        TestDatabase::sharded_stores(&cluster, &[shards[1].clone(), shards[0].clone()], &db.name);
    let mut per_shard = [0usize; 2];
    for tenant in &tenants {
        let mut here = Vec::new();
        for (shard, tally) in per_shard.iter_mut().enumerate() {
            let n = count(&db.shard(shard), AUDIT_LOCAL_TABLE, &[tenant.as_str()]).await;
            if n > 0 {
                *tally += 1;
            }
            here.push(n);
        }
        here.sort_unstable();
        assert_eq!(here, [0, 3], "all of {tenant}'s rows on one shard");
        for stores in [&db.stores, &through_second] {
            let seen: u64 = stores
                .tenant_query(tenant)
                .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant}"))
                .fetch_one()
                .await
                .expect("count");
            assert_eq!(seen, 3, "{tenant} sees its own rows, from any node");
        }
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "tenants spread over both shards: {per_shard:?}"
    );
}

#[tokio::test]
async fn a_cluster_the_servers_do_not_know_as_given_is_refused() {
    let Some((cluster, shards)) = services::clickhouse_cluster() else {
        return;
    };
    let one = |url: &str| Client::default().with_url(url);
    for (name, given, expected) in [
        (cluster.as_str(), vec![one(&shards[0])], "has 2 shards"),
        (
            "no_such_cluster",
            vec![one(&shards[0]), one(&shards[1])],
            "has 0 shards",
        ),
    ] {
        let db = TestDatabase::unmigrated(&shards[0], "cluster_refused");
        let stores = TestDatabase::stores_at(&shards[0], &db.name)
            .on_cluster(ClickHouseCluster::new(name, given).expect("valid"));
        match stores.migrate().await {
            Err(StoreError::Backend(e)) => {
                assert!(e.to_string().contains(expected), "{e}");
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
        for url in &shards {
            let databases: u64 = one(url)
                .with_validation(false)
                .query("SELECT count() FROM system.databases WHERE name = ?")
                .bind(&db.name)
                .fetch_one()
                .await
                .expect("databases");
            assert_eq!(databases, 0, "nothing is created on {url}");
        }
    }
}
