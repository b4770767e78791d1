//! Two `Tenancy` instances over one Redis, as two service replicas would
//! run: a key revoked through one is refused by the other on its next
//! request, and a tenant's RPS holds across both together.

mod redis_server;

use std::sync::Arc;

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
    Tenancy::builder(TenancyConfig::default())
        .tenant_store(Arc::new(redis.tenant_store()))
        .api_key_store(Arc::new(redis.api_key_store()))
        .rate_limiter(Arc::new(redis.rate_limiter()))
        .quota_store(Arc::new(redis.quota_store()))
        .build()
        .unwrap()
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
