//! The stores over TLS (`rediss://`, feature `tls`) against the Redis that
//! `scripts/test.sh` starts with a throw-away CA: the acceptance suite
//! passes, and a wrong or missing CA, a plain connection to the TLS port or
//! an attempt to turn certificate checks off is refused, never downgraded;
//! the same on the Redis Cluster over TLS, with `rediss://` seed nodes.
#![cfg(feature = "tls")]

mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use redis_server::unique_prefix;
use tenancy_core::testkit::{services, stores};
use tenancy_store_redis::{RedisOptions, RedisStoreError, RedisStores};

fn options(tag: &str) -> RedisOptions {
    RedisOptions::default()
        .with_key_prefix(unique_prefix(tag))
        .with_connect_timeout(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptance_suite_passes_over_tls() {
    let Some((url, ca, _)) = services::redis_tls() else {
        return;
    };
    let connect = |tag: &str| {
        let options = options(tag).with_ca_cert(&ca);
        let url = url.clone();
        async move {
            RedisStores::connect(&url, options)
                .await
                .unwrap_or_else(|e| panic!("TLS connect: {e}"))
        }
    };
    let redis = connect("tls-tenants").await;
    redis.health().await.unwrap();
    stores::tenant_store(&redis.tenant_store()).await;
    stores::api_key_store(&connect("tls-keys").await.api_key_store()).await;
    let prefix = unique_prefix("tls-realms");
    let mut realm_stores: Vec<Arc<dyn tenancy_core::store::RealmStore>> = Vec::new();
    for _ in 0..2 {
        let options = RedisOptions::default()
            .with_key_prefix(&prefix)
            .with_ca_cert(&ca);
        let redis = RedisStores::connect(&url, options).await.unwrap();
        realm_stores.push(Arc::new(redis.realm_store()));
    }
    stores::realm_store(&realm_stores).await;
    stores::quota_store(Arc::new(connect("tls-quota").await.quota_store())).await;
    stores::rate_limiter(Arc::new(connect("tls-rate").await.rate_limiter())).await;
    let members = connect("tls-members").await;
    stores::member_store(&[Arc::new(members.member_store())]).await;
    stores::team_store(&connect("tls-teams").await.team_store()).await;
    let erased = connect("tls-erase").await;
    stores::erasure_of_keys_and_limits(
        &erased.api_key_store(),
        &erased.rate_limiter(),
        &erased.quota_store(),
    )
    .await;
}

#[tokio::test]
async fn a_wrong_ca_a_missing_one_or_plain_text_is_refused() {
    let Some((url, ca, other_ca)) = services::redis_tls() else {
        return;
    };
    let refused = |result: Result<RedisStores, RedisStoreError>| match result {
        Ok(_) => panic!("connected"),
        Err(e) => e.to_string(),
    };

    // A CA that did not sign the server's certificate, or none (the
    // system's roots do not know the test CA): the handshake fails, and
    // says why.
    for options in [
        options("wrong-ca").with_ca_cert(&other_ca),
        options("no-ca"),
    ] {
        let error = refused(RedisStores::connect(&url, options).await);
        assert!(
            error.contains("certificate") || error.contains("UnknownIssuer"),
            "{error}"
        );
    }
    // Plain text to the TLS port gets no answer: no silent fallback.
    let plain = url.replacen("rediss://", "redis://", 1);
    refused(RedisStores::connect(&plain, options("plain")).await);
    // Certificate checks cannot be turned off.
    let insecure = format!("{url}#insecure");
    let error =
        refused(RedisStores::connect(&insecure, options("insecure").with_ca_cert(&ca)).await);
    assert!(
        error.contains("certificate checks cannot be turned off"),
        "{error}"
    );
    // A CA file that is not one, or a CA for a plain URL, is a settings error.
    let not_a_ca =
        std::env::temp_dir().join(format!("tenancy-not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&not_a_ca, "hello").unwrap();
    assert!(matches!(
        RedisStores::connect(&url, options("bad-ca").with_ca_cert(&not_a_ca)).await,
        Err(RedisStoreError::InvalidCaCert(_))
    ));
    assert!(matches!(
        RedisStores::connect(&plain, options("ca-plain").with_ca_cert(&ca)).await,
        Err(RedisStoreError::InvalidOptions(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acceptance_suite_passes_on_a_cluster_over_tls() {
    let Some((nodes, ca)) = services::redis_tls_cluster() else {
        return;
    };
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let connect = |prefix: String| {
        let options = RedisOptions::default()
            .with_key_prefix(prefix)
            .with_connect_timeout(Duration::from_secs(2))
            .with_ca_cert(&ca);
        let nodes = nodes.clone();
        async move {
            RedisStores::connect_cluster(&nodes, options)
                .await
                .unwrap_or_else(|e| panic!("TLS cluster connect: {e}"))
        }
    };
    let redis = connect(unique_prefix("tls-cluster-tenants")).await;
    redis.health().await.unwrap();
    stores::tenant_store(&redis.tenant_store()).await;
    stores::api_key_store(
        &connect(unique_prefix("tls-cluster-keys"))
            .await
            .api_key_store(),
    )
    .await;
    let prefix = unique_prefix("tls-cluster-realms");
    let mut realm_stores: Vec<Arc<dyn tenancy_core::store::RealmStore>> = Vec::new();
    for _ in 0..2 {
        realm_stores.push(Arc::new(connect(prefix.clone()).await.realm_store()));
    }
    stores::realm_store(&realm_stores).await;
    stores::quota_store(Arc::new(
        connect(unique_prefix("tls-cluster-quota"))
            .await
            .quota_store(),
    ))
    .await;
    stores::rate_limiter(Arc::new(
        connect(unique_prefix("tls-cluster-rate"))
            .await
            .rate_limiter(),
    ))
    .await;

    // The wrong CA, or plain text to the TLS nodes, is refused.
    let other = RedisOptions::default()
        .with_connect_timeout(Duration::from_secs(2))
        .with_ca_cert(services::redis_tls().expect("configured").2);
    let error = RedisStores::connect_cluster(&nodes, other)
        .await
        .expect_err("the wrong CA is refused");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    let plain: Vec<String> = nodes
        .iter()
        .map(|n| n.replacen("rediss://", "redis://", 1))
        .collect();
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    let plain_options = RedisOptions::default().with_connect_timeout(Duration::from_secs(2));
    assert!(
        RedisStores::connect_cluster(&plain, plain_options)
            .await
            .is_err(),
        "plain text to the TLS nodes is refused"
    );
}
