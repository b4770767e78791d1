//! The Redis acceptance suite on a real Redis Cluster of 3 masters and 3
//! replicas (started by `scripts/test.sh`), through the cluster client.

mod redis_server;

use std::sync::Arc;

use redis_server::unique_prefix;
use tenancy_core::testkit::{services, stores};
use tenancy_store_redis::{RedisOptions, RedisStores};

async fn connect(nodes: &[String], prefix: &str) -> RedisStores {
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    RedisStores::connect_cluster(&nodes, RedisOptions::default().with_key_prefix(prefix))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptance_suite_passes_on_a_cluster() {
    let Some(nodes) = services::redis_cluster_nodes() else {
        return;
    };
    let redis = connect(&nodes, &unique_prefix("cluster")).await;
    redis.health().await.unwrap();
    stores::tenant_store(&redis.tenant_store()).await;
    stores::api_key_store(&redis.api_key_store()).await;
    stores::quota_store(Arc::new(redis.quota_store())).await;
    stores::rate_limiter(Arc::new(redis.rate_limiter())).await;
    stores::team_store(&redis.team_store()).await;
    stores::erasure_of_keys_and_limits(
        &redis.api_key_store(),
        &redis.rate_limiter(),
        &redis.quota_store(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_share_one_cluster() {
    let Some(nodes) = services::redis_cluster_nodes() else {
        return;
    };
    let prefix = unique_prefix("cluster-two");
    let (first, second) = (
        connect(&nodes, &prefix).await,
        connect(&nodes, &prefix).await,
    );
    stores::api_key_count_quota(&[
        Arc::new(first.api_key_store()),
        Arc::new(second.api_key_store()),
    ])
    .await;
    stores::realm_store(&[
        Arc::new(first.realm_store()),
        Arc::new(second.realm_store()),
    ])
    .await;
    stores::member_store(&[
        Arc::new(first.member_store()),
        Arc::new(second.member_store()),
    ])
    .await;
}
