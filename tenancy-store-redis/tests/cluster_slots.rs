//! The whole acceptance suite against a private `redis-server` in cluster
//! mode that owns every slot. Such a node refuses, with `CROSSSLOT`, any
//! command or script whose keys hash to different slots, so the suite
//! passing shows that every multi-key operation stays within one slot (one
//! tenant's hash tag), as Redis Cluster requires.

mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::{RedisServer, unique_prefix};
use tenancy_core::testkit::{services, stores};
use tenancy_store_redis::redis;
use tenancy_store_redis::{RedisOptions, RedisStores};

/// Starts a one-node cluster and waits until it serves every slot.
async fn one_node_cluster() -> RedisServer {
    let server = RedisServer::start(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let mut conn = redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut conn)
        .await
        .expect("CLUSTER ADDSLOTSRANGE");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER INFO");
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not come up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The node refuses keys of different slots in one command.
    let cross: Result<(), _> = redis::cmd("MSET")
        .arg("{a}x")
        .arg(1)
        .arg("{b}x")
        .arg(1)
        .query_async(&mut conn)
        .await;
    assert!(cross.is_err(), "a cluster node refuses cross-slot commands");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_a_cluster_node() {
    if services::redis_url().is_none() {
        return;
    }
    let server = one_node_cluster().await;
    let prefix = unique_prefix("cluster");
    let url = server.url();
    let connect = || {
        RedisStores::connect(
            &url,
            RedisOptions::default().with_key_prefix(prefix.clone()),
        )
    };
    let redis = connect().await.expect("connect");
    stores::tenant_store(&redis.tenant_store()).await;
    stores::api_key_store(&redis.api_key_store()).await;
    stores::api_key_count_quota(&[Arc::new(redis.api_key_store())]).await;
    stores::quota_store(Arc::new(redis.quota_store())).await;
    stores::rate_limiter(Arc::new(redis.rate_limiter())).await;
    stores::team_store(&redis.team_store()).await;
    stores::erasure_of_keys_and_limits(
        &redis.api_key_store(),
        &redis.rate_limiter(),
        &redis.quota_store(),
    )
    .await;
    let second = connect().await.expect("connect");
    stores::member_store(&[
        Arc::new(redis.member_store()),
        Arc::new(second.member_store()),
    ])
    .await;
    stores::rate_limiter_shared(
        Arc::new(redis.rate_limiter()),
        Arc::new(second.rate_limiter()),
    )
    .await;
}
