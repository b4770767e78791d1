//! Failure and recovery against a private `redis-server` that the tests
//! kill and restart: every call fails within its deadline while the server
//! is gone, and the same client works again once it is back. Also: a
//! client of a port where nothing listens fails promptly, and no error
//! shows the URL's password.

mod redis_server;

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;
use redis_server::{RedisServer, free_port, unique_prefix};
use tenancy_core::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
use tenancy_core::label::Label;
use tenancy_core::limit::{QuotaKey, RateCheck, RateLimitKey, RateQuota};
use tenancy_core::plan::{Limit, Period};
use tenancy_core::rbac::ApiKeyScope;
use tenancy_core::store::{ApiKeyStore, QuotaStore, RateLimiter, StoreError, TenantStore};
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::testkit::{services, stores::unique_tenant};
use tenancy_store_redis::{RedisOptions, RedisStoreError, RedisStores};

/// A bound far above any deadline: a call that takes longer has hung.
const NO_HANG: Duration = Duration::from_secs(5);
/// How long the same client may take to find a restarted server again.
const RECOVERY: Duration = Duration::from_secs(15);

fn options(tag: &str) -> RedisOptions {
    RedisOptions::default()
        .with_key_prefix(unique_prefix(tag))
        .with_command_timeout(Duration::from_millis(250))
        .with_connect_timeout(Duration::from_millis(500))
}

/// Awaits `call`, failing the test if it takes longer than [`NO_HANG`].
async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(NO_HANG, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {NO_HANG:?}"))
}

fn assert_down<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Timeout) => eprintln!("{what}: Timeout"),
        Err(StoreError::Unavailable(e)) => eprintln!("{what}: Unavailable ({e})"),
        other => {
            panic!("{what} with the server down: expected Timeout or Unavailable, got {other:?}")
        }
    }
}

fn key_record(tenant: &TenantId, n: u8) -> ApiKeyRecord {
    let mut digest = [n; 32];
    for (i, c) in tenant.as_str().bytes().enumerate() {
        digest[i % 32] ^= c.wrapping_add(i as u8);
    }
    ApiKeyRecord::new(
        KeyId::new(format!("k{n}")).expect("valid"),
        tenant.clone(),
        "key",
        ApiKeyScope::Full,
        ApiKeyDigest::from_bytes(digest),
        Utc::now(),
    )
}

/// One call of each store; the first error, if any.
async fn exercise(redis: &RedisStores, tenant: &TenantId, round: u8) -> Result<(), StoreError> {
    let id = TenantId::new(format!("{tenant}-{round}")).expect("valid");
    let tenants = redis.tenant_store();
    tenants
        .insert(TenantRecord::new(id.clone(), "T", "free"))
        .await?;
    assert_eq!(tenants.get(&id).await?.expect("inserted").name, "T");
    let keys = redis.api_key_store();
    let key = key_record(tenant, round);
    keys.insert(key.clone()).await?;
    assert_eq!(
        keys.find_by_digest(&key.digest).await?.as_deref(),
        Some(&key)
    );
    let budget = QuotaKey::new(
        tenant.clone(),
        Label::new("events").expect("valid"),
        Period::Day,
        Utc::now(),
    );
    assert!(
        redis
            .quota_store()
            .charge(&budget, 1, Limit::Unlimited)
            .await?
            .is_charged()
    );
    let check = RateCheck {
        key: RateLimitKey::tenant(tenant.clone()),
        quota: RateQuota::per_second(1000).expect("non-zero"),
    };
    assert!(redis.rate_limiter().check(&[check]).await?.allowed);
    redis.health().await
}

/// Every store call, each of which must fail (and return) while the server
/// is down.
async fn assert_every_call_fails(redis: &RedisStores, tenant: &TenantId) {
    let tenants = redis.tenant_store();
    let keys = redis.api_key_store();
    let quotas = redis.quota_store();
    let limiter = redis.rate_limiter();
    let key = key_record(tenant, 200);
    let budget = QuotaKey::new(
        tenant.clone(),
        Label::new("events").expect("valid"),
        Period::Day,
        Utc::now(),
    );
    let check = RateCheck {
        key: RateLimitKey::tenant(tenant.clone()),
        quota: RateQuota::per_second(10).expect("non-zero"),
    };
    let started = Instant::now();
    assert_down("health", bounded("health", redis.health()).await);
    assert_down(
        "TenantStore::insert",
        bounded(
            "insert",
            tenants.insert(TenantRecord::new(tenant.clone(), "T", "free")),
        )
        .await,
    );
    assert_down(
        "TenantStore::get",
        bounded("get", tenants.get(tenant)).await,
    );
    assert_down(
        "TenantStore::list",
        bounded("list", tenants.list(None, 10)).await,
    );
    assert_down(
        "TenantStore::health",
        bounded("health", TenantStore::health(&tenants)).await,
    );
    assert_down(
        "ApiKeyStore::insert",
        bounded("insert", keys.insert(key.clone())).await,
    );
    assert_down(
        "ApiKeyStore::find_by_digest",
        bounded("find", keys.find_by_digest(&key.digest)).await,
    );
    assert_down(
        "ApiKeyStore::list",
        bounded("list", keys.list(tenant)).await,
    );
    assert_down(
        "ApiKeyStore::revoke",
        bounded("revoke", keys.revoke(tenant, &key.key_id, Utc::now())).await,
    );
    assert_down(
        "QuotaStore::charge",
        bounded("charge", quotas.charge(&budget, 1, Limit::Limited(5))).await,
    );
    assert_down(
        "QuotaStore::used",
        bounded("used", quotas.used(&budget)).await,
    );
    assert_down(
        "RateLimiter::check",
        bounded("check", limiter.check(std::slice::from_ref(&check))).await,
    );
    // Thirteen calls, each bounded by its 250 ms deadline.
    let took = started.elapsed();
    assert!(took < NO_HANG, "the failing calls took {took:?}");
    eprintln!("13 calls failed as they should, in {took:?} together");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_within_their_deadline_and_the_same_client_recovers() {
    if services::redis_url().is_none() {
        return;
    }
    let mut server = RedisServer::start(&[]);
    let redis = RedisStores::connect(&server.url(), options("recover"))
        .await
        .expect("connect to the private server");
    let tenant = unique_tenant("recover");
    exercise(&redis, &tenant, 1).await.expect("works while up");

    server.kill();
    assert_every_call_fails(&redis, &tenant).await;
    // Still down a moment later, after the client's reconnection attempts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_every_call_fails(&redis, &tenant).await;

    server.restart();
    let started = Instant::now();
    let mut round = 2u8;
    let recovered = loop {
        match exercise(&redis, &tenant, round).await {
            Ok(()) => break true,
            Err(StoreError::Timeout | StoreError::Unavailable(_))
                if started.elapsed() < RECOVERY =>
            {
                round += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after the restart: {e:?}"),
        }
    };
    assert!(recovered, "the same client works again after the restart");
    eprintln!(
        "recovered {:?} after the restart, in {} attempts",
        started.elapsed(),
        round - 1
    );
    // And keeps working (the scripts are loaded again by themselves).
    exercise(&redis, &tenant, 250).await.expect("still works");
}

#[tokio::test]
async fn a_client_of_a_dead_port_fails_promptly() {
    if services::redis_url().is_none() {
        return;
    }
    let url = format!("redis://127.0.0.1:{}/", free_port());

    let started = Instant::now();
    let err = bounded("connect", RedisStores::connect(&url, options("dead")))
        .await
        .expect_err("nothing listens there");
    assert!(
        err.is_unavailable() || matches!(err, RedisStoreError::Timeout(_)),
        "{err:?}"
    );
    assert!(matches!(
        StoreError::from(err),
        StoreError::Unavailable(_) | StoreError::Timeout
    ));
    assert!(started.elapsed() < NO_HANG);

    let lazy = RedisStores::connect_lazy(&url, options("dead")).expect("a valid URL");
    assert_every_call_fails(&lazy, &unique_tenant("dead")).await;
}

#[tokio::test]
async fn no_error_shows_the_password() {
    if services::redis_url().is_none() {
        return;
    }
    const PASSWORD: &str = "hunter2-very-secret";
    let shown = |e: &dyn std::error::Error| {
        let mut text = format!("{e} {e:?}");
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        text
    };

    // Nothing listening.
    let dead = format!("redis://user:{PASSWORD}@127.0.0.1:{}/", free_port());
    let err = RedisStores::connect(&dead, options("pw"))
        .await
        .expect_err("nothing listens there");
    assert!(!shown(&err).contains(PASSWORD), "{}", shown(&err));
    let lazy = RedisStores::connect_lazy(&dead, options("pw")).expect("a valid URL");
    assert!(!format!("{lazy:?}").contains(PASSWORD), "{lazy:?}");
    let err = lazy.health().await.expect_err("down");
    assert!(!shown(&err).contains(PASSWORD), "{}", shown(&err));

    // A server that wants another password.
    let server = RedisServer::start(&["--requirepass", "the-right-one"]);
    let wrong = format!("redis://:{PASSWORD}@127.0.0.1:{}/", server.port());
    let err = RedisStores::connect(&wrong, options("pw"))
        .await
        .expect_err("wrong password");
    assert!(!shown(&err).contains(PASSWORD), "{}", shown(&err));
    let err = StoreError::from(err);
    assert!(!shown(&err).contains(PASSWORD), "{}", shown(&err));

    // And the right one works.
    let right = format!("redis://:the-right-one@127.0.0.1:{}/", server.port());
    let redis = RedisStores::connect(&right, options("pw"))
        .await
        .expect("the right password");
    redis.health().await.expect("health");
    assert!(!format!("{redis:?}").contains("the-right-one"));

    // A malformed URL is not repeated either.
    let err = RedisStores::connect_lazy(
        &format!("redis://:{PASSWORD}@127.0.0.1:notaport/"),
        options("pw"),
    )
    .expect_err("bad port");
    assert!(!shown(&err).contains(PASSWORD), "{}", shown(&err));
}

/// With `replica_acks`, a write is acknowledged only once a replica holds
/// it: with the replica up every store works; with it gone, writes fail
/// within their deadline as `Unavailable` ("0 of 1 replicas"), while reads
/// and the rate limiter, which are not waited for, go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_replica_when_asked() {
    if services::redis_url().is_none() {
        return;
    }
    let master = RedisServer::start(&[]);
    let master_port = master.port().to_string();
    let mut replica = RedisServer::start(&["--replicaof", "127.0.0.1", &master_port]);
    let redis = RedisStores::connect(&master.url(), options("replica-acks").with_replica_acks(1))
        .await
        .expect("connect to the private master");
    let tenant = unique_tenant("acks");
    // The replica's first synchronisation can take a moment.
    let started = Instant::now();
    let mut round = 1u8;
    while let Err(e) = exercise(&redis, &tenant, round).await {
        assert!(
            started.elapsed() < RECOVERY,
            "no replica acknowledged: {e:?}"
        );
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    replica.kill();
    let id = TenantId::new(format!("{tenant}-unreplicated")).expect("valid");
    let began = Instant::now();
    let refused = bounded(
        "insert",
        redis
            .tenant_store()
            .insert(TenantRecord::new(id.clone(), "T", "free")),
    )
    .await;
    let took = began.elapsed();
    match refused {
        Err(StoreError::Unavailable(e)) => {
            assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(took < NO_HANG, "{took:?}");
    // The write itself was made: the answer said it may not survive a
    // failover, not that it was undone.
    assert!(redis.tenant_store().get(&id).await.expect("read").is_some());
    let check = RateCheck {
        key: RateLimitKey::tenant(tenant.clone()),
        quota: RateQuota::per_second(1000).expect("non-zero"),
    };
    assert!(
        redis
            .rate_limiter()
            .check(&[check])
            .await
            .expect("not waited for")
            .allowed
    );
    let budget = QuotaKey::new(
        tenant.clone(),
        Label::new("events").expect("valid"),
        Period::Day,
        Utc::now(),
    );
    assert!(matches!(
        redis
            .quota_store()
            .charge(&budget, 1, Limit::Unlimited)
            .await,
        Err(StoreError::Unavailable(_))
    ));

    // A write waiting for the replica holds its own connection, not the
    // one the rate limiter uses: with a 2 s deadline (the WAIT gives up
    // after 1 s), twenty checks are answered while the insert still waits.
    let slow = RedisStores::connect(
        &master.url(),
        options("replica-acks-slow")
            .with_replica_acks(1)
            .with_command_timeout(Duration::from_secs(2)),
    )
    .await
    .expect("connect to the private master");
    let tenants = slow.tenant_store();
    let waiting = tokio::spawn(async move {
        tenants
            .insert(TenantRecord::new(
                unique_tenant("acks-waiting"),
                "T",
                "free",
            ))
            .await
    });
    let limiter = slow.rate_limiter();
    for _ in 0..20 {
        let check = RateCheck {
            key: RateLimitKey::tenant(tenant.clone()),
            quota: RateQuota::per_second(1000).expect("non-zero"),
        };
        assert!(
            limiter
                .check(&[check])
                .await
                .expect("not queued behind WAIT")
                .allowed
        );
    }
    assert!(
        !waiting.is_finished(),
        "the insert still waits for its replica"
    );
    assert!(matches!(
        waiting.await.expect("task"),
        Err(StoreError::Unavailable(_))
    ));
}
