//! Two `Tenancy` instances over one Redis (or one Redis Cluster), as two
//! service replicas would run: a key revoked through one is refused by the
//! other on its next request, a tenant's RPS holds across both together,
//! and a realm a tenant brings counts on both from the next request.

mod redis_server;

use redis_server::unique_prefix;
use tenancy_core::admin::NewApiKey;
use tenancy_core::engine::RequestHead;
use tenancy_core::plan::QuotaOverrides;
use tenancy_core::rbac::ApiKeyScope;
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::testkit::services;
use tenancy_core::{Tenancy, TenancyConfig};
use tenancy_store_redis::{RedisOptions, RedisStores};

async fn instance(url: &str, prefix: &str) -> Tenancy {
    let redis = RedisStores::connect(url, RedisOptions::default().with_key_prefix(prefix))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
    engine(&redis)
}

/// An instance on the test Redis Cluster.
async fn cluster_instance(nodes: &[String], prefix: &str) -> Tenancy {
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let redis =
        RedisStores::connect_cluster(&nodes, RedisOptions::default().with_key_prefix(prefix))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
    engine(&redis)
}

fn engine(redis: &RedisStores) -> Tenancy {
    redis_server::engine(redis, TenancyConfig::default())
}

fn get(key: &str) -> http::request::Parts {
    http::Request::get("/api/v1/metrics/query")
        .header("x-api-key", key)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_tenant_rps_hold_across_instances() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let prefix = unique_prefix("two-instances");
    let first = instance(&url, &prefix).await;
    let second = instance(&url, &prefix).await;
    revocation_and_tenant_rps(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_tenant_rps_hold_across_instances_on_a_cluster() {
    let Some(nodes) = services::redis_cluster_nodes() else {
        return;
    };
    let prefix = unique_prefix("two-instances-cluster");
    let first = cluster_instance(&nodes, &prefix).await;
    let second = cluster_instance(&nodes, &prefix).await;
    revocation_and_tenant_rps(first, second).await;
}

async fn revocation_and_tenant_rps(first: Tenancy, second: Tenancy) {
    let acme = TenantId::new("acme").unwrap();
    let mut tenant = TenantRecord::new(acme.clone(), "Acme", "pro");
    tenant.settings.quota_overrides = QuotaOverrides {
        rps: Some(1),
        ..QuotaOverrides::default()
    };
    first.admin().create_tenant(tenant).await.unwrap();
    let issued = first
        .admin()
        .issue_api_key(
            &acme,
            NewApiKey {
                name: "replicated".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let key = issued.secret.expose().to_owned();

    // The tenant's RPS is 1 (burst 1): across both instances together, the
    // first request passes and the next ones in the same second are refused.
    let mut allowed = 0;
    let mut refused = 0;
    let started = std::time::Instant::now();
    for i in 0..6 {
        let instance = if i % 2 == 0 { &first } else { &second };
        match instance.admit(&RequestHead::from(&get(&key))).await {
            Ok(_) => allowed += 1,
            Err(e) => {
                assert_eq!(e.code(), "rate_limited");
                refused += 1;
            }
        }
    }
    let refill = started.elapsed().as_secs() + 1;
    assert!(
        allowed >= 1 && allowed <= refill,
        "{allowed} allowed across both"
    );
    assert!(refused >= 6 - refill, "{refused} refused");

    // Revoke through the first; the second refuses the key on its next request.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    second
        .admit(&RequestHead::from(&get(&key)))
        .await
        .expect("the key works on the second instance");
    first
        .admin()
        .revoke_api_key(&acme, &issued.record.key_id)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let err = second
        .admit(&RequestHead::from(&get(&key)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_api_key");
    assert!(matches!(
        err.kind(),
        tenancy_core::error::ErrorKind::InvalidApiKey(
            tenancy_core::error::ApiKeyRejection::Revoked
        )
    ));

    first.shutdown().await;
    second.shutdown().await;
}

/// A realm a tenant brings, set through one instance: the other uses it on
/// its next request, and refuses its tokens on the next request once it is
/// removed; an issuer cannot be claimed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_brought_realm_is_added_and_removed_on_both_instances() {
    use jwt_simple::prelude::{Claims, Duration, RS256KeyPair, RSAKeyPairLike};
    use serde_json::json;
    use tenancy_core::config::ClaimsConfig;
    use tenancy_core::credential::TenantRealm;
    use tenancy_core::rbac::Role;
    use tenancy_core::testkit::idp::IdpServer;

    let Some(url) = services::redis_url() else {
        return;
    };
    let prefix = unique_prefix("tenant-realms");
    // Bigcorp's Keycloak runs behind a private CA on the internal network,
    // which the operator allows.
    let (idp, ca) = IdpServer::start_private_tls().await;
    let ca_file = std::env::temp_dir().join(format!("{prefix}-ca.pem"));
    std::fs::write(&ca_file, ca).unwrap();
    let mut config = TenancyConfig::default();
    config.auth.ca_file = Some(ca_file);
    config.egress.allow = tenancy_core::egress::parse_ranges("127.0.0.1").unwrap();
    let connect = || async {
        let options = RedisOptions::default().with_key_prefix(&prefix);
        let redis = RedisStores::connect(&url, options).await.unwrap();
        redis_server::engine(&redis, config.clone())
    };
    let first = connect().await;
    let second = connect().await;
    let (bigcorp, globex) = (
        TenantId::new("bigcorp").unwrap(),
        TenantId::new("globex").unwrap(),
    );
    for id in [&bigcorp, &globex] {
        first
            .admin()
            .create_tenant(TenantRecord::new(id.clone(), id.as_str(), "enterprise"))
            .await
            .unwrap();
    }

    // A token from it as Keycloak shapes them.
    let key = RS256KeyPair::from_pem(include_str!(
        "../../tenancy-core/src/credential/jwt/testdata/rsa_private.pem"
    ))
    .unwrap()
    .with_key_id("bigcorp-2026");
    let jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
    idp.publish_realm("bigcorp", json!({ "keys": [jwk] }));
    let issuer = idp.issuer("bigcorp");
    let claims = Claims::with_custom_claims(
        json!({
            "aud": "tenancy",
            "preferred_username": "dana",
            "realm_access": { "roles": ["offline_access", "tenant-admin"] },
        }),
        Duration::from_mins(10),
    )
    .with_issuer(&issuer)
    .with_subject("4f1b0c2e");
    let token = key.sign(claims).unwrap();
    let request = || {
        http::Request::get("/api/v1/metrics/query")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    };

    // No realm has the issuer yet.
    let err = second
        .admit(&RequestHead::from(&request()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_token");

    let realm = TenantRealm::discovered(&issuer)
        .audience("tenancy")
        .claims(ClaimsConfig {
            tenant: "tenant_id".parse().unwrap(),
            roles: "realm_access.roles".parse().unwrap(),
            subject: "preferred_username".parse().unwrap(),
        });
    first
        .admin()
        .set_tenant_realm(&bigcorp, Some(realm.clone()))
        .await
        .unwrap();
    for instance in [&second, &first] {
        let admitted = instance
            .admit(&RequestHead::from(&request()))
            .await
            .unwrap();
        let ctx = admitted.context().expect("a tenant context");
        assert_eq!(
            (
                ctx.tenant_id().as_str(),
                ctx.role(),
                &*ctx.principal().subject
            ),
            ("bigcorp", Role::Admin, "dana")
        );
    }
    // The issuer is bigcorp's: globex cannot claim it, through either.
    let err = second
        .admin()
        .set_tenant_realm(&globex, Some(realm))
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.status().as_u16()), ("conflict", 409));

    // Removed through the second: the first refuses the same token at once.
    second
        .admin()
        .set_tenant_realm(&bigcorp, None)
        .await
        .unwrap();
    for instance in [&first, &second] {
        let err = instance
            .admit(&RequestHead::from(&request()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_token");
    }
    assert_eq!(second.admin().tenant_realm(&bigcorp).await.unwrap(), None);

    first.shutdown().await;
    second.shutdown().await;
}
