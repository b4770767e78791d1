//! The store acceptance suite of `tenancy_core::testkit` against the Redis
//! server named by `TENANCY_TEST_REDIS_URL`, each test under its own key
//! prefix; and a key-level check that tenant data carries the tenant's hash
//! tag.

mod redis_server;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use redis_server::unique_prefix;
use tenancy_core::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
use tenancy_core::label::Label;
use tenancy_core::limit::{QuotaKey, RateCheck, RateLimitKey, RateQuota};
use tenancy_core::plan::{Limit, Period};
use tenancy_core::rbac::ApiKeyScope;
use tenancy_core::store::{ApiKeyStore, QuotaStore, RateLimiter, TenantStore};
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::testkit::{services, stores};
use tenancy_store_redis::redis::{self, AsyncCommands};
use tenancy_store_redis::{RedisOptions, RedisStores};

async fn connect(url: &str, prefix: &str) -> RedisStores {
    RedisStores::connect(url, RedisOptions::default().with_key_prefix(prefix))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
}

#[tokio::test]
async fn tenant_store() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let redis = connect(&url, &unique_prefix("tenants")).await;
    stores::tenant_store(&redis.tenant_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_store_across_instances() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let prefix = unique_prefix("realms");
    let first = connect(&url, &prefix).await;
    let second = connect(&url, &prefix).await;
    stores::realm_store(&[
        Arc::new(first.realm_store()),
        Arc::new(second.realm_store()),
    ])
    .await;
}

#[tokio::test]
async fn api_key_store() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let redis = connect(&url, &unique_prefix("apikeys")).await;
    stores::api_key_store(&redis.api_key_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_count_quota_across_instances() {
    let Some(url) = services::redis_url() else {
        return;
    };
    // Two connections with one prefix: two instances of one deployment.
    let prefix = unique_prefix("keyquota");
    let first = connect(&url, &prefix).await;
    let second = connect(&url, &prefix).await;
    stores::api_key_count_quota(&[
        Arc::new(first.api_key_store()),
        Arc::new(second.api_key_store()),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_store_across_instances() {
    let Some(url) = services::redis_url() else {
        return;
    };
    // Two connections with one prefix: two instances of one deployment.
    let prefix = unique_prefix("members");
    let first = connect(&url, &prefix).await;
    let second = connect(&url, &prefix).await;
    stores::member_store(&[
        Arc::new(first.member_store()),
        Arc::new(second.member_store()),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_of_keys_and_limits() {
    let Some(url) = services::redis_url() else {
        return;
    };
    // A prefix with glob characters: erasure's patterns must not widen.
    let redis = connect(&url, &unique_prefix("erase*[x]?")).await;
    stores::erasure_of_keys_and_limits(
        &redis.api_key_store(),
        &redis.rate_limiter(),
        &redis.quota_store(),
    )
    .await;
}

#[tokio::test]
async fn team_store() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let redis = connect(&url, &unique_prefix("teams")).await;
    stores::team_store(&redis.team_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_store() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let redis = connect(&url, &unique_prefix("quota")).await;
    stores::quota_store(Arc::new(redis.quota_store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let redis = connect(&url, &unique_prefix("rl")).await;
    stores::rate_limiter(Arc::new(redis.rate_limiter())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_separately_connected_limiters_share_one_budget() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let prefix = unique_prefix("rl-shared");
    let first = connect(&url, &prefix).await;
    let second = connect(&url, &prefix).await;
    stores::rate_limiter_shared(
        Arc::new(first.rate_limiter()),
        Arc::new(second.rate_limiter()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_multi_bucket_check_takes_nothing() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let redis = connect(&url, &unique_prefix("rl-atomic")).await;
    let limiter = redis.rate_limiter();
    let t = stores::unique_tenant("atomic");
    let one = RateQuota::per_second(1).expect("non-zero");
    let roomy = RateQuota::per_second(1000).expect("non-zero");
    let key = RateLimitKey::api_key(t.clone(), KeyId::new("k").expect("valid"));
    let tenant = RateLimitKey::tenant(t.clone());
    let pair = [
        RateCheck {
            key: tenant.clone(),
            quota: roomy,
        },
        RateCheck { key, quota: one },
    ];
    assert!(limiter.check(&pair).await.expect("check").allowed);
    for _ in 0..5 {
        let refused = limiter.check(&pair).await.expect("check");
        assert!(!refused.allowed, "the key bucket (1/s) binds");
        assert_eq!(refused.status.limit, 1);
    }
    // The tenant bucket (burst 1000) took one cell, for the one allowed
    // call: the five refused calls took none.
    let alone = limiter
        .check(&[RateCheck {
            key: tenant,
            quota: roomy,
        }])
        .await
        .expect("check");
    assert!(alone.allowed);
    assert!(
        alone.status.remaining >= 997,
        "refused calls took no cell from the roomy bucket ({})",
        alone.status.remaining
    );
}

/// Every tenant-scoped operation writes keys with the tenant's hash tag
/// only; the two untagged kinds are the tenant index and API key records
/// (found by digest), whose `tenant` field names their tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_key_carries_its_tenant_hash_tag() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let prefix = unique_prefix("keyspace");
    let redis = connect(&url, &prefix).await;

    // The whole suite under this prefix, then one tenant's operations.
    stores::tenant_store(&redis.tenant_store()).await;
    stores::api_key_store(&redis.api_key_store()).await;
    stores::quota_store(Arc::new(redis.quota_store())).await;
    stores::rate_limiter(Arc::new(redis.rate_limiter())).await;
    let t = stores::unique_tenant("tagged");
    write_everything_for(&redis, &t).await;

    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys = scan(&mut conn, &format!("{prefix}:*")).await;
    assert!(!keys.is_empty());
    let mut tags: HashMap<String, usize> = HashMap::new();
    for key in &keys {
        let rest = key
            .strip_prefix(&format!("{prefix}:"))
            .expect("prefixed key");
        if rest == "tenants" {
            continue;
        }
        if let Some(hex) = rest.strip_prefix("apikey:") {
            assert!(ApiKeyDigest::from_hex(hex).is_some(), "digest key {key}");
            let owner: String = conn.hget(key, "tenant").await.expect("HGET");
            TenantId::new(&owner).expect("an API key record names its tenant");
            assert!(!key.contains('{'), "{key}");
            continue;
        }
        let tag = hash_tag(rest).unwrap_or_else(|| panic!("no hash tag in {key}"));
        TenantId::new(tag).unwrap_or_else(|_| panic!("the tag of {key} is not a tenant id"));
        assert!(
            rest.starts_with('{') || rest.starts_with("rl:{"),
            "the tag leads the key: {key}"
        );
        *tags.entry(tag.to_owned()).or_default() += 1;
    }
    // The one tenant's keys: record, key index, two rate buckets, a quota.
    assert_eq!(tags.get(t.as_str()), Some(&5), "keys of {t}: {keys:?}");
    let ours: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(&format!("{{{t}}}")))
        .collect();
    for key in &ours {
        assert_eq!(
            hash_tag(key).expect("tag"),
            t.as_str(),
            "one slot per tenant"
        );
    }
}

/// The hash tag of `key`, as Redis Cluster reads it: the text between the
/// first `{` and the next `}`, if not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

async fn scan(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

async fn write_everything_for(redis: &RedisStores, t: &TenantId) {
    redis
        .tenant_store()
        .insert(TenantRecord::new(t.clone(), "Tagged", "free"))
        .await
        .expect("insert tenant");
    // A digest of this tenant's own, so reruns never collide.
    let mut digest = [0u8; 32];
    for (i, c) in t.as_str().bytes().enumerate() {
        digest[i % 32] ^= c.wrapping_add(i as u8);
    }
    let key = ApiKeyRecord::new(
        KeyId::new("k1").expect("valid"),
        t.clone(),
        "ci",
        ApiKeyScope::Full,
        ApiKeyDigest::from_bytes(digest),
        Utc::now(),
    );
    let keys = redis.api_key_store();
    keys.insert(key.clone()).await.expect("insert key");
    keys.revoke(t, &key.key_id, Utc::now())
        .await
        .expect("revoke");
    let limiter = redis.rate_limiter();
    let quota = RateQuota::per_second(10).expect("non-zero");
    limiter
        .check(&[
            RateCheck {
                key: RateLimitKey::tenant(t.clone()),
                quota,
            },
            RateCheck {
                key: RateLimitKey::api_key(t.clone(), key.key_id.clone()),
                quota,
            },
        ])
        .await
        .expect("check");
    let budget = QuotaKey::new(
        t.clone(),
        Label::new("events").expect("valid"),
        Period::Month,
        Utc::now(),
    );
    redis
        .quota_store()
        .charge(&budget, 1, Limit::Limited(10))
        .await
        .expect("charge");
}
