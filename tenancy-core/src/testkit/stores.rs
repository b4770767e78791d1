//! The store acceptance suite: one async function per store trait, each
//! asserting the behaviour every implementation must have. A store passes
//! when its function returns; a failure panics with what went wrong.
//!
//! Every function makes its own tenants with unique ids, so the suite can run
//! against a store that other tests share. Each covers tenant isolation
//! (reads name a tenant and never return another's rows); the quota and
//! limiter functions cover concurrency; the API key function covers expiry
//! and revocation; the quota function covers period rollover.
//!
//! ```
//! use std::sync::Arc;
//! use tenancy_core::store::memory::*;
//! use tenancy_core::testkit::stores;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! stores::tenant_store(&MemoryTenantStore::new()).await;
//! stores::realm_store(&[Arc::new(MemoryRealmStore::new())]).await;
//! stores::api_key_store(&MemoryApiKeyStore::new()).await;
//! stores::quota_store(Arc::new(MemoryQuotaStore::new())).await;
//! stores::rate_limiter(Arc::new(MemoryRateLimiter::new())).await;
//! let log = MemoryAuditLog::new();
//! stores::audit_log(&log, &log).await;
//! stores::usage_meter(&MemoryUsageMeter::new()).await;
//! stores::member_store(&[Arc::new(MemoryMemberStore::new())]).await;
//! stores::team_store(&MemoryTeamStore::new()).await;
//! stores::telemetry_store(&MemoryTelemetryStore::new()).await;
//! let log = MemoryAuditLog::new();
//! stores::retention_and_erasure(&log, &log, &MemoryUsageMeter::new(), &MemoryTelemetryStore::new()).await;
//! stores::erasure_of_keys_and_limits(&MemoryApiKeyStore::new(), &MemoryRateLimiter::new(), &MemoryQuotaStore::new()).await;
//! # });
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use crate::audit::{ActorKind, AuditEvent, AuditFilter};
use crate::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
use crate::label::Label;
use crate::limit::{QuotaCharge, QuotaKey, RateCheck, RateLimitKey, RateQuota};
use crate::metering::UsageRecord;
use crate::plan::{Limit, Period};
use crate::store::{
    ApiKeyStore, AuditQuery, AuditSink, QuotaStore, RateLimiter, StoreError, TenantStore,
    UsageMeter,
};
use crate::tenant::{TenantId, TenantRecord, TenantStatus};

/// A tenant id no other call in this process (or, by its time stamp, in
/// another run) has returned, starting with `tag`.
///
/// ```
/// let a = tenancy_core::testkit::stores::unique_tenant("t");
/// let b = tenancy_core::testkit::stores::unique_tenant("t");
/// assert_ne!(a, b);
/// ```
pub fn unique_tenant(tag: &str) -> TenantId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    TenantId::new(format!("{tag}-{nanos:x}-{n}-{}", std::process::id()))
        .expect("unique tenant ids are valid slugs")
}

/// `now`, rounded down to whole milliseconds (the precision every store keeps).
pub fn now_millis() -> DateTime<Utc> {
    let ms = Utc::now().timestamp_millis();
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

fn digest(seed: &str) -> ApiKeyDigest {
    // Any 32 distinct bytes will do: the suite tests storage, not hashing.
    let mut bytes = [0u8; 32];
    for (i, b) in seed.bytes().enumerate() {
        bytes[i % 32] = bytes[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    bytes[31] ^= seed.len() as u8;
    ApiKeyDigest::from_bytes(bytes)
}

/// The [`TenantStore`] contract.
pub async fn tenant_store(store: &dyn TenantStore) {
    let a = unique_tenant("ts");
    let b = TenantId::new(format!("{a}-b")).expect("valid");
    let c = TenantId::new(format!("{a}-c")).expect("valid");

    assert!(
        store.get(&a).await.expect("get").is_none(),
        "fresh id must be absent"
    );

    let mut tenant_a = TenantRecord::new(a.clone(), "Alpha", "free");
    tenant_a.contact_email = Some("ops@alpha.example".into());
    tenant_a.settings.features.insert("beta".into(), true);
    tenant_a.created_at = now_millis();
    tenant_a.updated_at = tenant_a.created_at;
    store.insert(tenant_a.clone()).await.expect("insert");
    assert!(
        matches!(
            store.insert(tenant_a.clone()).await,
            Err(StoreError::AlreadyExists)
        ),
        "a second insert of the same id must fail with AlreadyExists"
    );
    assert_eq!(store.get(&a).await.expect("get"), Some(tenant_a.clone()));

    let tenant_b = TenantRecord::new(b.clone(), "Beta", "pro");
    store.insert(tenant_b.clone()).await.expect("insert b");
    let got_b = store.get(&b).await.expect("get b").expect("b present");
    assert_eq!(got_b.name, "Beta");
    assert_eq!(got_b.plan, "pro");
    assert_eq!(store.get(&a).await.expect("get").expect("a").name, "Alpha");

    let mut changed = tenant_a.clone();
    changed.status = TenantStatus::Suspended;
    changed.plan = "starter".into();
    store.update(changed.clone()).await.expect("update");
    assert_eq!(store.get(&a).await.expect("get"), Some(changed));
    assert_eq!(
        store.get(&b).await.expect("get").expect("b").status,
        TenantStatus::Active
    );
    assert!(
        matches!(
            store
                .update(TenantRecord::new(c.clone(), "Gamma", "free"))
                .await,
            Err(StoreError::NotFound)
        ),
        "update of a missing tenant must fail with NotFound"
    );
    assert!(
        store.get(&c).await.expect("get").is_none(),
        "update must not create"
    );

    store
        .insert(TenantRecord::new(c.clone(), "Gamma", "free"))
        .await
        .expect("insert c");
    let ours = |list: Vec<TenantRecord>| -> Vec<TenantId> {
        list.into_iter()
            .map(|t| t.id)
            .filter(|id| id.as_str().starts_with(a.as_str()))
            .collect()
    };
    let all = ours(store.list(None, 100_000).await.expect("list"));
    assert_eq!(
        all,
        [a.clone(), b.clone(), c.clone()],
        "list is in id order"
    );
    let page = store.list(Some(&a), 2).await.expect("list page");
    assert_eq!(page.len(), 2);
    assert_eq!(
        ours(page),
        [b.clone(), c.clone()],
        "paging continues after `after`"
    );

    assert!(store.delete(&b).await.expect("delete"));
    assert!(!store.delete(&b).await.expect("delete again"));
    assert!(store.get(&b).await.expect("get").is_none());
    assert!(
        store.get(&a).await.expect("get").is_some(),
        "delete touches one tenant"
    );
    for id in [a, c] {
        store.delete(&id).await.expect("cleanup");
    }
}

/// The [`ApiKeyStore`] contract, with expiry and revocation.
pub async fn api_key_store(store: &dyn ApiKeyStore) {
    let a = unique_tenant("keys");
    let b = unique_tenant("keys");
    let now = now_millis();
    let key = |tenant: &TenantId, id: &str| {
        let mut k = ApiKeyRecord::new(
            KeyId::new(id).expect("valid"),
            tenant.clone(),
            format!("key {id}"),
            crate::rbac::ApiKeyScope::Full,
            digest(&format!("{tenant}/{id}")),
            now,
        );
        k.rate_limit_rps = Some(7);
        k
    };
    let a1 = key(&a, "a1");
    let mut a2 = key(&a, "a2");
    a2.scope = crate::rbac::ApiKeyScope::Ingestion;
    a2.created_at = now + chrono::Duration::milliseconds(1);
    let b1 = key(&b, "b1");
    for k in [&a1, &a2, &b1] {
        store.insert(k.clone()).await.expect("insert");
    }

    assert_eq!(
        store
            .find_by_digest(&a1.digest)
            .await
            .expect("find")
            .as_deref(),
        Some(&a1)
    );
    assert_eq!(
        store
            .find_by_digest(&b1.digest)
            .await
            .expect("find")
            .as_deref(),
        Some(&b1)
    );
    assert!(
        store
            .find_by_digest(&digest("no such key"))
            .await
            .expect("find")
            .is_none()
    );

    let mut dup_id = key(&a, "a1");
    dup_id.digest = digest("another secret");
    assert!(
        matches!(store.insert(dup_id).await, Err(StoreError::AlreadyExists)),
        "a key id is unique within its tenant"
    );
    let mut dup_digest = key(&a, "a3");
    dup_digest.digest = a1.digest;
    assert!(
        matches!(
            store.insert(dup_digest).await,
            Err(StoreError::AlreadyExists)
        ),
        "a digest is unique"
    );
    assert!(
        store
            .get(&a, &KeyId::new("a3").expect("valid"))
            .await
            .expect("get")
            .is_none()
    );

    // Isolation: management calls never reach another tenant's keys.
    assert_eq!(
        store.get(&a, &a1.key_id).await.expect("get"),
        Some(a1.clone())
    );
    assert!(store.get(&b, &a1.key_id).await.expect("get").is_none());
    let listed: Vec<KeyId> = store
        .list(&a)
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(
        listed,
        [a1.key_id.clone(), a2.key_id.clone()],
        "oldest first, own keys only"
    );
    let listed_b = store.list(&b).await.expect("list b");
    assert_eq!(listed_b, std::slice::from_ref(&b1));
    assert!(
        !store.revoke(&b, &a1.key_id, now).await.expect("revoke"),
        "cross-tenant revoke"
    );
    assert!(
        !store
            .set_expiry(&b, &a1.key_id, Some(now))
            .await
            .expect("expiry")
    );
    let untouched = store
        .find_by_digest(&a1.digest)
        .await
        .expect("find")
        .expect("a1");
    assert_eq!(untouched.revoked_at, None);
    assert_eq!(untouched.expires_at, None);

    // Revocation: visible on the verification path, first time kept.
    let revoked_at = now + chrono::Duration::milliseconds(5);
    assert!(
        store
            .revoke(&a, &a1.key_id, revoked_at)
            .await
            .expect("revoke")
    );
    assert!(
        store
            .revoke(&a, &a1.key_id, revoked_at + chrono::Duration::seconds(9))
            .await
            .expect("revoke again")
    );
    let revoked = store
        .find_by_digest(&a1.digest)
        .await
        .expect("find")
        .expect("a1");
    assert_eq!(revoked.revoked_at, Some(revoked_at));
    assert_eq!(
        revoked.check_usable(revoked_at),
        Err(crate::error::ApiKeyRejection::Revoked)
    );
    assert!(
        revoked.check_usable(now).is_ok(),
        "usable before its revocation time"
    );

    // Expiry.
    let expires = now + chrono::Duration::seconds(60);
    assert!(
        store
            .set_expiry(&a, &a2.key_id, Some(expires))
            .await
            .expect("expiry")
    );
    let got = store
        .find_by_digest(&a2.digest)
        .await
        .expect("find")
        .expect("a2");
    assert_eq!(got.expires_at, Some(expires));
    assert!(got.check_usable(now).is_ok());
    assert_eq!(
        got.check_usable(expires),
        Err(crate::error::ApiKeyRejection::Expired)
    );
    assert!(
        store
            .set_expiry(&a, &a2.key_id, None)
            .await
            .expect("clear expiry")
    );
    assert_eq!(
        store
            .get(&a, &a2.key_id)
            .await
            .expect("get")
            .expect("a2")
            .expires_at,
        None
    );

    // A key issued by a key is added only while its parent is live, in the
    // same step, and remembers the realm whose token began the line.
    let mut orphan = key(&a, "a4");
    orphan.parent_key_id = Some(a1.key_id.clone());
    assert!(
        matches!(
            store.insert(orphan.clone()).await,
            Err(StoreError::NotFound)
        ),
        "a revoked parent issues nothing"
    );
    assert!(
        store.get(&a, &orphan.key_id).await.expect("get").is_none(),
        "nothing written"
    );
    let mut stray = key(&b, "b2");
    stray.parent_key_id = Some(a2.key_id.clone());
    assert!(
        matches!(store.insert(stray).await, Err(StoreError::NotFound)),
        "a parent in another tenant is no parent"
    );
    let mut child = key(&a, "a5");
    child.parent_key_id = Some(a2.key_id.clone());
    child.realm = Some("tenant:acme".into());
    store.insert(child.clone()).await.expect("a live parent");
    assert_eq!(
        store.get(&a, &child.key_id).await.expect("get"),
        Some(child.clone())
    );

    // Last use.
    let used = now + chrono::Duration::milliseconds(42);
    store.touch(&a, &a2.key_id, used).await.expect("touch");
    store
        .touch(&b, &a2.key_id, used)
        .await
        .expect("touch of another tenant's key is a no-op");
    assert_eq!(
        store
            .get(&a, &a2.key_id)
            .await
            .expect("get")
            .expect("a2")
            .last_used_at,
        Some(used)
    );
    assert_eq!(
        store
            .get(&b, &b1.key_id)
            .await
            .expect("get")
            .expect("b1")
            .last_used_at,
        None
    );
}

/// The key-count contract of [`ApiKeyStore::insert_within_limit`]: 50
/// concurrent inserts, spread over `stores` (one store, or several clients
/// of one backend, as instances would be), leave exactly the limit of live
/// keys; revoked and expired keys free their place; other tenants are
/// untouched.
pub async fn api_key_count_quota(stores: &[Arc<dyn ApiKeyStore>]) {
    const LIMIT: u64 = 20;
    let tenant = unique_tenant("quota-keys");
    let other = unique_tenant("quota-keys");
    let now = now_millis();
    let key = |tenant: &TenantId, id: String, expires_at: Option<DateTime<Utc>>| {
        let mut k = ApiKeyRecord::new(
            KeyId::new(&id).expect("valid"),
            tenant.clone(),
            id.clone(),
            crate::rbac::ApiKeyScope::Full,
            digest(&format!("{tenant}/{id}")),
            now,
        );
        k.expires_at = expires_at;
        k
    };
    // An expired key does not count.
    let stale = key(
        &tenant,
        "stale".into(),
        Some(now - chrono::Duration::seconds(1)),
    );
    assert!(
        stores[0]
            .insert_within_limit(stale, crate::plan::Limit::Limited(LIMIT), now)
            .await
            .expect("insert")
    );
    let tasks = (0..50).map(|i| {
        let store = Arc::clone(&stores[i % stores.len()]);
        let record = key(
            &tenant,
            format!("k{i}"),
            Some(now + chrono::Duration::hours(1)),
        );
        tokio::spawn(async move {
            store
                .insert_within_limit(record, crate::plan::Limit::Limited(LIMIT), now)
                .await
                .expect("insert within limit")
        })
    });
    let mut inserted = 0;
    for task in tasks {
        if task.await.expect("task") {
            inserted += 1;
        }
    }
    assert_eq!(inserted, LIMIT, "exactly the limit, never more");
    let live = |keys: Vec<ApiKeyRecord>| keys.iter().filter(|k| k.is_live(now)).count() as u64;
    assert_eq!(live(stores[0].list(&tenant).await.expect("list")), LIMIT);

    // Full: one more is refused and nothing is written.
    let refused = key(&tenant, "over".into(), None);
    assert!(
        !stores[0]
            .insert_within_limit(refused.clone(), crate::plan::Limit::Limited(LIMIT), now)
            .await
            .expect("insert")
    );
    assert!(
        stores[0]
            .find_by_digest(&refused.digest)
            .await
            .expect("find")
            .is_none()
    );
    // Another tenant has its own count.
    assert!(
        stores[0]
            .insert_within_limit(
                key(&other, "o1".into(), None),
                crate::plan::Limit::Limited(1),
                now
            )
            .await
            .expect("insert")
    );
    // A revocation frees a place.
    let first = stores[0].list(&tenant).await.expect("list");
    let victim = first.iter().find(|k| k.is_live(now)).expect("a live key");
    assert!(
        stores[0]
            .revoke(&tenant, &victim.key_id, now)
            .await
            .expect("revoke")
    );
    assert!(
        stores[stores.len() - 1]
            .insert_within_limit(refused, crate::plan::Limit::Limited(LIMIT), now)
            .await
            .expect("insert")
    );
    // An expiry moved into the past frees a place too.
    let victim = stores[0]
        .list(&tenant)
        .await
        .expect("list")
        .into_iter()
        .find(|k| k.is_live(now))
        .expect("a live key");
    assert!(
        stores[0]
            .set_expiry(
                &tenant,
                &victim.key_id,
                Some(now - chrono::Duration::seconds(1))
            )
            .await
            .expect("expiry")
    );
    assert!(
        stores[0]
            .insert_within_limit(
                key(&tenant, "last".into(), None),
                crate::plan::Limit::Limited(LIMIT),
                now
            )
            .await
            .expect("insert")
    );
    assert!(
        !stores[0]
            .insert_within_limit(
                key(&tenant, "after".into(), None),
                crate::plan::Limit::Limited(LIMIT),
                now
            )
            .await
            .expect("insert")
    );
}

/// A [`RealmStore`](crate::store::RealmStore): each issuer belongs to one
/// tenant, a tenant's new realm frees the issuer of its old one, removal
/// frees it too, and of many tenants claiming one issuer at once through
/// `stores` (one per instance), exactly one wins.
pub async fn realm_store(stores: &[Arc<dyn crate::store::RealmStore>]) {
    use crate::credential::TenantRealm;
    let store = &stores[0];
    let (a, b) = (unique_tenant("realm"), unique_tenant("realm"));
    let issuer = |name: &str| format!("https://id.example.com/realms/{name}-{a}");
    let first = TenantRealm::discovered(issuer("first"));
    assert_eq!(
        store.find_by_issuer(&first.issuer).await.expect("find"),
        None
    );
    assert_eq!(store.get(&a).await.expect("get"), None);
    assert!(!store.remove(&a).await.expect("remove"));

    store.put(&a, first.clone()).await.expect("put");
    let claim = store
        .find_by_issuer(&first.issuer)
        .await
        .expect("find")
        .expect("claimed");
    assert_eq!((&claim.tenant, &claim.realm), (&a, &first));
    assert_eq!(store.get(&a).await.expect("get"), Some(first.clone()));
    // Putting the same issuer again (a changed mapping) is the owner's right.
    let mut changed = first.clone();
    changed.audience = vec!["api".into()];
    store.put(&a, changed.clone()).await.expect("put again");
    assert_eq!(store.get(&a).await.expect("get"), Some(changed));
    // Another tenant cannot take it; nothing of either changes.
    assert!(matches!(
        store.put(&b, first.clone()).await,
        Err(crate::store::StoreError::AlreadyExists)
    ));
    assert_eq!(store.get(&b).await.expect("get"), None);
    let owner = store
        .find_by_issuer(&first.issuer)
        .await
        .expect("find")
        .expect("claimed")
        .tenant;
    assert_eq!(owner, a);
    // Issuers are compared normalised: a variant of a taken issuer (case of
    // scheme and host, default port, trailing slash) is taken too, and
    // finds the realm, whose own issuer a verifier then compares exactly.
    let variant = first
        .issuer
        .replacen("https://id.example.com", "HTTPS://ID.Example.com:443", 1)
        + "/";
    assert!(matches!(
        store
            .put(&b, TenantRealm::discovered(variant.clone()))
            .await,
        Err(crate::store::StoreError::AlreadyExists)
    ));
    let found = store
        .find_by_issuer(&variant)
        .await
        .expect("find")
        .expect("found by a variant");
    assert_eq!((&found.tenant, &found.realm.issuer), (&a, &first.issuer));
    // A new realm frees the old issuer, which another tenant may then take.
    let second = TenantRealm::with_jwks_url(issuer("second"), "https://id.example.com/certs");
    store.put(&a, second.clone()).await.expect("put second");
    assert_eq!(
        store.find_by_issuer(&first.issuer).await.expect("find"),
        None
    );
    store
        .put(&b, first.clone())
        .await
        .expect("b takes the freed issuer");
    assert_eq!(store.get(&a).await.expect("get"), Some(second.clone()));
    // Removal frees the issuer.
    assert!(store.remove(&a).await.expect("remove"));
    assert_eq!(
        store.find_by_issuer(&second.issuer).await.expect("find"),
        None
    );
    assert_eq!(store.get(&a).await.expect("get"), None);
    assert!(store.remove(&b).await.expect("remove b"));

    // A race for one issuer, across instances: exactly one tenant wins.
    let contested = TenantRealm::discovered(issuer("contested"));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&stores[i % stores.len()]);
            let tenant = unique_tenant("racer");
            let realm = contested.clone();
            tokio::spawn(async move { store.put(&tenant, realm).await.is_ok().then_some(tenant) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(tenant) = task.await.expect("task") {
            winners.push(tenant);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let claim = store
        .find_by_issuer(&contested.issuer)
        .await
        .expect("find")
        .expect("claimed");
    assert_eq!(claim.tenant, winners[0]);
    assert!(store.remove(&winners[0]).await.expect("remove winner"));
}

/// The [`QuotaStore`] contract: limits, isolation, period rollover, and no
/// lost increment under 16 concurrent tasks.
pub async fn quota_store(store: Arc<dyn QuotaStore>) {
    let a = unique_tenant("quota");
    let b = unique_tenant("quota");
    let events = Label::new("events").expect("valid");
    let now = Utc::now();
    let key_a = QuotaKey::new(a.clone(), events.clone(), Period::Month, now);
    let key_b = QuotaKey::new(b.clone(), events.clone(), Period::Month, now);

    assert_eq!(store.used(&key_a).await.expect("used"), 0);
    let limit = Limit::Limited(5);
    assert_eq!(
        store.charge(&key_a, 3, limit).await.expect("charge"),
        QuotaCharge::Charged { used: 3 }
    );
    assert_eq!(
        store.charge(&key_a, 2, limit).await.expect("charge"),
        QuotaCharge::Charged { used: 5 }
    );
    assert_eq!(
        store.charge(&key_a, 1, limit).await.expect("charge"),
        QuotaCharge::Exceeded { used: 5 },
        "a charge past the limit is refused"
    );
    assert_eq!(
        store.used(&key_a).await.expect("used"),
        5,
        "a refused charge charges nothing"
    );
    assert_eq!(
        store.used(&key_b).await.expect("used"),
        0,
        "tenants never share a counter"
    );
    assert_eq!(
        store.charge(&key_b, 1, limit).await.expect("charge"),
        QuotaCharge::Charged { used: 1 }
    );
    assert_eq!(
        store
            .charge(&key_a, 1_000_000, Limit::Unlimited)
            .await
            .expect("charge"),
        QuotaCharge::Charged { used: 1_000_005 }
    );

    // Rollover: the next window starts from zero; the current one is kept.
    let tokens = Label::new("tokens").expect("valid");
    let this_hour = QuotaKey::new(a.clone(), tokens.clone(), Period::Hour, now);
    let next_hour = QuotaKey::new(
        a.clone(),
        tokens.clone(),
        Period::Hour,
        this_hour.window.end,
    );
    assert_ne!(this_hour, next_hour);
    assert!(
        store
            .charge(&this_hour, 10, Limit::Limited(10))
            .await
            .expect("charge")
            .is_charged()
    );
    assert!(
        !store
            .charge(&this_hour, 1, Limit::Limited(10))
            .await
            .expect("charge")
            .is_charged()
    );
    assert_eq!(
        store
            .charge(&next_hour, 4, Limit::Limited(10))
            .await
            .expect("charge"),
        QuotaCharge::Charged { used: 4 }
    );
    assert_eq!(store.used(&this_hour).await.expect("used"), 10);

    // Concurrency: 16 tasks x 100 increments, none lost; and a shared limit
    // is never passed together.
    let counter = QuotaKey::new(
        a.clone(),
        Label::new("concurrent").expect("valid"),
        Period::Day,
        now,
    );
    let capped = QuotaKey::new(
        b.clone(),
        Label::new("capped").expect("valid"),
        Period::Day,
        now,
    );
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let (counter, capped) = (counter.clone(), capped.clone());
        tasks.push(tokio::spawn(async move {
            let mut charged = 0u64;
            for _ in 0..100 {
                store
                    .charge(&counter, 1, Limit::Unlimited)
                    .await
                    .expect("charge");
                if store
                    .charge(&capped, 1, Limit::Limited(1000))
                    .await
                    .expect("charge")
                    .is_charged()
                {
                    charged += 1;
                }
            }
            charged
        }));
    }
    let mut charged = 0;
    for t in tasks {
        charged += t.await.expect("task");
    }
    assert_eq!(
        store.used(&counter).await.expect("used"),
        1600,
        "no increment is lost"
    );
    assert_eq!(charged, 1000, "exactly the limit is charged");
    assert_eq!(store.used(&capped).await.expect("used"), 1000);
}

fn rate_key(tenant: &TenantId) -> RateLimitKey {
    RateLimitKey::tenant(tenant.clone())
}

/// The [`RateLimiter`] contract: bursts, refusals with a retry time, isolation,
/// multi-bucket checks and concurrent callers.
pub async fn rate_limiter(limiter: Arc<dyn RateLimiter>) {
    let a = unique_tenant("rl");
    let b = unique_tenant("rl");
    let five = RateQuota::per_second(5).expect("non-zero");
    let check_a = RateCheck {
        key: rate_key(&a),
        quota: five,
    };

    let started = Instant::now();
    for i in 0..5u32 {
        let d = limiter
            .check(std::slice::from_ref(&check_a))
            .await
            .expect("check");
        assert!(d.allowed, "cell {i} of a burst of 5 must pass");
        assert_eq!(d.status.limit, 5);
        assert!(
            d.status.remaining <= 4 - i + u32::from(started.elapsed() > Duration::from_millis(150))
        );
    }
    let refused = limiter
        .check(std::slice::from_ref(&check_a))
        .await
        .expect("check");
    if started.elapsed() < Duration::from_millis(150) {
        assert!(
            !refused.allowed,
            "the 6th cell within the burst window is refused"
        );
        assert_eq!(refused.status.remaining, 0);
        assert!(refused.status.retry_after > Duration::ZERO);
        assert!(refused.status.retry_after <= Duration::from_millis(200));
        assert!(refused.status.reset >= refused.status.retry_after);
    }

    // Isolation: another tenant's bucket is untouched.
    let check_b = RateCheck {
        key: rate_key(&b),
        quota: five,
    };
    let d = limiter
        .check(std::slice::from_ref(&check_b))
        .await
        .expect("check");
    assert!(d.allowed);
    assert_eq!(d.status.remaining, 4);

    // Multi-bucket: a tight key bucket inside a roomy tenant bucket.
    let c = unique_tenant("rl");
    let slow = RateQuota::per_second(1)
        .expect("non-zero")
        .with_burst(NonZeroU32::new(2).expect("2"));
    let roomy = RateQuota::per_second(1000).expect("non-zero");
    let pair = [
        RateCheck {
            key: RateLimitKey::api_key(c.clone(), KeyId::new("k").expect("valid")),
            quota: slow,
        },
        RateCheck {
            key: rate_key(&c),
            quota: roomy,
        },
    ];
    assert!(limiter.check(&pair).await.expect("check").allowed);
    let second = limiter.check(&pair).await.expect("check");
    assert!(second.allowed);
    assert_eq!(
        second.status.limit, 2,
        "the status reports the tightest bucket"
    );
    let third = limiter.check(&pair).await.expect("check");
    assert!(!third.allowed, "the key bucket binds");
    assert!(third.status.retry_after > Duration::ZERO);
    assert!(limiter.check(&[]).await.expect("empty check").allowed);

    // All or nothing: a refused check takes no cell from the buckets that
    // had room, whatever their order.
    let e = unique_tenant("rl");
    let ten = RateQuota::per_second(1)
        .expect("non-zero")
        .with_burst(NonZeroU32::new(10).expect("10"));
    let one = RateQuota::per_second(1).expect("non-zero");
    let tenant_then_key = [
        RateCheck {
            key: rate_key(&e),
            quota: ten,
        },
        RateCheck {
            key: RateLimitKey::api_key(e.clone(), KeyId::new("k").expect("valid")),
            quota: one,
        },
    ];
    let started = Instant::now();
    assert!(
        limiter
            .check(&tenant_then_key)
            .await
            .expect("check")
            .allowed
    );
    for _ in 0..4 {
        limiter.check(&tenant_then_key).await.expect("check");
    }
    let alone = limiter.check(&tenant_then_key[..1]).await.expect("check");
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            alone.status.remaining, 8,
            "refused checks took cells from the tenant bucket"
        );
    }

    // Concurrency: 16 tasks racing for a burst of 50 at 1/s.
    let d = unique_tenant("rl");
    let fifty = RateQuota::per_second(1)
        .expect("non-zero")
        .with_burst(NonZeroU32::new(50).expect("50"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let limiter = limiter.clone();
        let check = RateCheck {
            key: rate_key(&d),
            quota: fifty,
        };
        tasks.push(tokio::spawn(async move {
            let mut allowed = 0u64;
            for _ in 0..10 {
                if limiter
                    .check(std::slice::from_ref(&check))
                    .await
                    .expect("check")
                    .allowed
                {
                    allowed += 1;
                }
            }
            allowed
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.expect("task");
    }
    let refill = started.elapsed().as_secs() + 1;
    assert!(allowed >= 50, "the whole burst is granted ({allowed})");
    assert!(
        allowed <= 50 + refill,
        "no more than the burst plus refill ({allowed})"
    );
}

/// Two limiter clients over one backend share one budget (for stores that
/// share state across instances).
pub async fn rate_limiter_shared(first: Arc<dyn RateLimiter>, second: Arc<dyn RateLimiter>) {
    let t = unique_tenant("rl-shared");
    let quota = RateQuota::per_second(1)
        .expect("non-zero")
        .with_burst(NonZeroU32::new(10).expect("10"));
    let check = [RateCheck {
        key: rate_key(&t),
        quota,
    }];
    let started = Instant::now();
    let mut allowed = 0u64;
    for i in 0..20 {
        let limiter = if i % 2 == 0 { &first } else { &second };
        if limiter.check(&check).await.expect("check").allowed {
            allowed += 1;
        }
    }
    let refill = started.elapsed().as_secs() + 1;
    assert!(allowed >= 10, "the burst is granted ({allowed})");
    assert!(
        allowed <= 10 + refill,
        "two clients share one budget ({allowed})"
    );
}

fn event(tenant: &TenantId, actor: &str, action: &str, at: DateTime<Utc>) -> AuditEvent {
    let mut e = AuditEvent::new(tenant.clone(), actor, ActorKind::User, action)
        .resource(format!("res-{action}"))
        .outcome(201)
        .at(at)
        .detail("method", "POST");
    e.request_id = Some(format!("req-{}", at.timestamp_millis()));
    e.client_addr = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    e
}

/// The [`AuditSink`] and [`AuditQuery`] contract: every field kept, newest
/// first, filters, and isolation.
pub async fn audit_log(sink: &dyn AuditSink, query: &dyn AuditQuery) {
    let a = unique_tenant("audit");
    let b = unique_tenant("audit");
    let t0 = now_millis() - chrono::Duration::minutes(10);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let mut api_key_event = event(&a, "key_1", "telemetry.send", at(4));
    api_key_event.actor_kind = ActorKind::ApiKey;
    api_key_event.client_addr = Some("2001:db8::1".parse().expect("ip"));
    api_key_event.resource = None;
    api_key_event.request_id = None;
    let events_a = vec![
        event(&a, "alice", "apikey.create", at(1)),
        event(&a, "bob", "apikey.revoke", at(2)),
        event(&a, "alice", "user.create", at(3)),
        api_key_event,
    ];
    let events_b = vec![event(&b, "alice", "apikey.create", at(2))];
    sink.record(&events_a[..2]).await.expect("record");
    sink.record(&events_b).await.expect("record");
    sink.record(&events_a[2..]).await.expect("record");

    let all = query
        .query(&a, &AuditFilter::default())
        .await
        .expect("query");
    let mut newest_first = events_a.clone();
    newest_first.reverse();
    assert_eq!(
        all, newest_first,
        "every field is kept, newest first, own tenant only"
    );

    let alice = query
        .query(&a, &AuditFilter::default().actor("alice"))
        .await
        .expect("query");
    assert_eq!(alice, [events_a[2].clone(), events_a[0].clone()]);
    let creates = query
        .query(&a, &AuditFilter::default().action("apikey.create"))
        .await
        .expect("query");
    assert_eq!(
        creates,
        [events_a[0].clone()],
        "filters never reach another tenant"
    );
    let window = query
        .query(&a, &AuditFilter::default().since(at(2)).until(at(4)))
        .await
        .expect("query");
    assert_eq!(
        window,
        [events_a[2].clone(), events_a[1].clone()],
        "since inclusive, until exclusive"
    );
    let limited = query
        .query(&a, &AuditFilter::default().limit(1))
        .await
        .expect("query");
    assert_eq!(limited, [events_a[3].clone()]);

    assert_eq!(
        query
            .query(&b, &AuditFilter::default())
            .await
            .expect("query"),
        events_b
    );
    let nobody = unique_tenant("audit");
    assert!(
        query
            .query(&nobody, &AuditFilter::default())
            .await
            .expect("query")
            .is_empty()
    );
}

/// The [`UsageMeter`] contract: sums per hour and event type, hour
/// boundaries, ranges and isolation.
pub async fn usage_meter(meter: &dyn UsageMeter) {
    let a = unique_tenant("usage");
    let b = unique_tenant("usage");
    let metric = Label::new("metric").expect("valid");
    let log = Label::new("log").expect("valid");
    let h1 = Period::Hour
        .window(Utc::now() - chrono::Duration::hours(3))
        .start;
    let h2 = h1 + chrono::Duration::hours(1);
    let last_second_of_h1 = h2 - chrono::Duration::seconds(1);
    meter
        .record(&[
            UsageRecord::new(a.clone(), metric.clone(), h1, 5),
            UsageRecord::new(a.clone(), metric.clone(), last_second_of_h1, 3),
            UsageRecord::new(
                a.clone(),
                log.clone(),
                h1 + chrono::Duration::minutes(30),
                2,
            ),
            UsageRecord::new(b.clone(), metric.clone(), h1, 100),
        ])
        .await
        .expect("record");
    meter
        .record(&[UsageRecord::new(a.clone(), metric.clone(), h2, 1)])
        .await
        .expect("record");

    let end = h2 + chrono::Duration::hours(1);
    let rows: Vec<(DateTime<Utc>, String, u64)> = meter
        .usage(&a, h1, end)
        .await
        .expect("usage")
        .into_iter()
        .map(|r| {
            assert_eq!(r.tenant_id, a, "rows of the asked tenant only");
            (r.hour, r.event_type.to_string(), r.count)
        })
        .collect();
    assert_eq!(
        rows,
        [
            (h1, "log".to_owned(), 2),
            (h1, "metric".to_owned(), 8),
            (h2, "metric".to_owned(), 1),
        ],
        "summed per hour and type, ordered by hour then type"
    );
    let second_hour = meter.usage(&a, h2, end).await.expect("usage");
    assert_eq!(second_hour.len(), 1);
    assert_eq!(second_hour[0].count, 1);
    let b_rows = meter.usage(&b, h1, end).await.expect("usage");
    assert_eq!(b_rows.len(), 1);
    assert_eq!(b_rows[0].count, 100);
    assert!(
        meter
            .usage(&unique_tenant("usage"), h1, end)
            .await
            .expect("usage")
            .is_empty()
    );
}

/// A [`MemberStore`](crate::store::MemberStore): tenants are apart, ids and
/// e-mail addresses (ignoring ASCII case) are unique within a tenant, pages
/// follow creation order, role changes and removals are compare-and-set,
/// removal frees the address, erasure empties the tenant only; and 50 concurrent inserts
/// through `stores` (one per instance) leave exactly the limit.
pub async fn member_store(stores: &[Arc<dyn crate::store::MemberStore>]) {
    use crate::member::{Member, RecordId};
    use crate::rbac::Role;

    let store = &stores[0];
    let a = unique_tenant("members");
    let b = unique_tenant("members");
    let member = |email: &str, role| {
        let mut m = Member::new(email, role);
        m.created_at = now_millis();
        m
    };
    let alice = member("alice@example.com", Role::Admin);
    assert!(
        store
            .insert_within_limit(&a, alice.clone(), Limit::Unlimited)
            .await
            .expect("insert")
    );
    assert_eq!(
        store.get(&a, &alice.user_id).await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(
        store.get(&b, &alice.user_id).await.expect("get"),
        None,
        "another tenant's member is absent"
    );
    // The same address, in another case: refused in a, free in b.
    let shouting = member("ALICE@Example.COM", Role::Viewer);
    assert!(
        matches!(
            store
                .insert_within_limit(&a, shouting.clone(), Limit::Unlimited)
                .await,
            Err(StoreError::AlreadyExists)
        ),
        "an e-mail address is unique within its tenant, ignoring ASCII case"
    );
    let mut same_id = member("other@example.com", Role::Viewer);
    same_id.user_id = alice.user_id.clone();
    assert!(matches!(
        store
            .insert_within_limit(&a, same_id, Limit::Unlimited)
            .await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(
        store
            .insert_within_limit(&b, shouting.clone(), Limit::Unlimited)
            .await
            .expect("insert in b")
    );

    // Pages in creation order.
    let mut made = vec![alice.clone()];
    for i in 0..4 {
        // Ids made in one millisecond order by their random part: wait one.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let m = member(&format!("user{i}@example.com"), Role::Operator);
        assert!(
            store
                .insert_within_limit(&a, m.clone(), Limit::Unlimited)
                .await
                .expect("insert")
        );
        made.push(m);
    }
    let first = store.list(&a, None, 2).await.expect("list");
    assert_eq!(first, made[..2]);
    let rest = store
        .list(&a, Some(&first[1].user_id), 10)
        .await
        .expect("list");
    assert_eq!(rest, made[2..]);
    assert_eq!(store.list(&b, None, 10).await.expect("list"), [shouting]);

    // Role changes are compare-and-set.
    assert!(
        store
            .set_role(&a, &alice.user_id, Role::Admin, Role::Viewer)
            .await
            .expect("set role")
    );
    assert!(
        !store
            .set_role(&a, &alice.user_id, Role::Admin, Role::Operator)
            .await
            .expect("set role"),
        "a stale expected role changes nothing"
    );
    assert_eq!(
        store
            .get(&a, &alice.user_id)
            .await
            .expect("get")
            .map(|m| m.role),
        Some(Role::Viewer)
    );
    assert!(
        !store
            .set_role(&b, &alice.user_id, Role::Viewer, Role::Admin)
            .await
            .expect("set role"),
        "another tenant's member cannot be changed"
    );
    assert!(
        !store
            .set_role(&a, &RecordId::user(), Role::Viewer, Role::Admin)
            .await
            .expect("set role")
    );

    // Removal frees the address; another tenant's id removes nothing, and
    // nor does a role that is no longer the member's.
    assert!(
        !store
            .remove(&b, &alice.user_id, Role::Viewer)
            .await
            .expect("remove elsewhere")
    );
    assert!(
        !store
            .remove(&a, &alice.user_id, Role::Admin)
            .await
            .expect("remove with a stale role")
    );
    assert!(store.get(&a, &alice.user_id).await.expect("get").is_some());
    assert!(
        store
            .remove(&a, &alice.user_id, Role::Viewer)
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove(&a, &alice.user_id, Role::Viewer)
            .await
            .expect("remove")
    );
    assert!(store.get(&a, &alice.user_id).await.expect("get").is_none());
    assert!(
        store
            .insert_within_limit(
                &a,
                member("Alice@example.com", Role::Viewer),
                Limit::Unlimited
            )
            .await
            .expect("the address is free again")
    );

    // Erasure empties one tenant.
    assert_eq!(store.erase(&a).await.expect("erase"), 5);
    assert!(store.list(&a, None, 10).await.expect("list").is_empty());
    assert_eq!(store.list(&b, None, 10).await.expect("list").len(), 1);
    assert_eq!(store.erase(&a).await.expect("erase"), 0);
    assert!(
        store
            .insert_within_limit(
                &a,
                member("alice@example.com", Role::Viewer),
                Limit::Unlimited
            )
            .await
            .expect("an erased tenant starts afresh")
    );

    // The count quota: exactly the limit, from every instance at once.
    const LIMIT: u64 = 20;
    let c = unique_tenant("members-quota");
    let tasks = (0..50).map(|i| {
        let store = Arc::clone(&stores[i % stores.len()]);
        let c = c.clone();
        tokio::spawn(async move {
            store
                .insert_within_limit(
                    &c,
                    Member::new(format!("u{i}@example.com"), Role::Viewer),
                    Limit::Limited(LIMIT),
                )
                .await
                .expect("insert within limit")
        })
    });
    let mut inserted = 0;
    for task in tasks {
        if task.await.expect("task") {
            inserted += 1;
        }
    }
    assert_eq!(inserted, LIMIT, "exactly the limit, never more");
    let all = store.list(&c, None, 100).await.expect("list");
    assert_eq!(all.len() as u64, LIMIT);
    // A removal frees a place.
    assert!(
        store
            .remove(&c, &all[0].user_id, Role::Viewer)
            .await
            .expect("remove")
    );
    assert!(
        stores[stores.len() - 1]
            .insert_within_limit(
                &c,
                Member::new("late@example.com", Role::Viewer),
                Limit::Limited(LIMIT)
            )
            .await
            .expect("insert")
    );
}

/// A [`TeamStore`](crate::store::TeamStore): tenants are apart, ids are
/// unique within a tenant, pages follow creation order, the limit holds,
/// removal and erasure touch one tenant only.
pub async fn team_store(store: &dyn crate::store::TeamStore) {
    use crate::member::Team;

    let a = unique_tenant("teams");
    let b = unique_tenant("teams");
    let team = |name: &str| {
        let mut t = Team::new(name);
        t.members = vec!["alice@example.com".into(), "usr_1".into()];
        t.on_call_rotation = vec!["usr_1".into()];
        t.created_at = now_millis();
        t
    };
    let mut made = Vec::new();
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = team(&format!("team {i}"));
        assert!(
            store
                .insert_within_limit(&a, t.clone(), Limit::Limited(3))
                .await
                .expect("insert")
        );
        made.push(t);
    }
    assert!(
        !store
            .insert_within_limit(&a, team("fourth"), Limit::Limited(3))
            .await
            .expect("insert"),
        "at the limit, nothing written"
    );
    assert_eq!(store.list(&a, None, 10).await.expect("list"), made);
    assert!(matches!(
        store
            .insert_within_limit(&a, made[0].clone(), Limit::Unlimited)
            .await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get(&a, &made[1].team_id).await.expect("get"),
        Some(made[1].clone())
    );
    assert_eq!(store.get(&b, &made[1].team_id).await.expect("get"), None);
    assert!(store.list(&b, None, 10).await.expect("list").is_empty());
    let page = store
        .list(&a, Some(&made[0].team_id), 1)
        .await
        .expect("list");
    assert_eq!(page, made[1..2]);

    // A team of the same id in another tenant is its own.
    assert!(
        store
            .insert_within_limit(&b, made[0].clone(), Limit::Unlimited)
            .await
            .expect("insert in b")
    );
    assert!(!store.remove(&b, &made[1].team_id).await.expect("remove"));
    assert!(store.remove(&a, &made[1].team_id).await.expect("remove"));
    assert!(
        store
            .get(&a, &made[1].team_id)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(store.erase(&a).await.expect("erase"), 2);
    assert!(store.list(&a, None, 10).await.expect("list").is_empty());
    assert_eq!(store.list(&b, None, 10).await.expect("list").len(), 1);
}

/// A [`TelemetryStore`](crate::store::TelemetryStore): events come back
/// newest first with their times (to the millisecond) and labels, filtered
/// by name, type and time, limited, and only the asked tenant's; erasure
/// empties one tenant.
pub async fn telemetry_store(store: &dyn crate::store::TelemetryStore) {
    use crate::telemetry::{TelemetryEvent, TelemetryFilter};

    let a = unique_tenant("telemetry");
    let b = unique_tenant("telemetry");
    let start = now_millis() - chrono::Duration::minutes(10);
    let event = |event_type: &str, name: &str, value: f64, minute: i64| {
        let mut e = TelemetryEvent::new(event_type, name, value);
        e.timestamp = Some(start + chrono::Duration::minutes(minute));
        e.labels.insert("host".into(), format!("h{minute}"));
        e
    };
    let written = [
        event("metric", "cpu", 0.5, 0),
        event("metric", "mem", 1024.0, 1),
        event("log", "cpu", 1.0, 2),
        event("metric", "cpu", 0.75, 3),
    ];
    store.append(&a, &written).await.expect("append");
    store
        .append(&b, &[event("metric", "cpu", 99.0, 4)])
        .await
        .expect("append b");

    let all = store
        .query(&a, &TelemetryFilter::default())
        .await
        .expect("query");
    let newest_first: Vec<TelemetryEvent> = written.iter().rev().cloned().collect();
    assert_eq!(all, newest_first, "newest first, times and labels kept");
    let cpu = store
        .query(&a, &TelemetryFilter::default().name("cpu"))
        .await
        .expect("query");
    assert_eq!(
        cpu.iter().map(|e| e.value).collect::<Vec<_>>(),
        [0.75, 1.0, 0.5]
    );
    let cpu_metrics = store
        .query(
            &a,
            &TelemetryFilter::default().name("cpu").event_type("metric"),
        )
        .await
        .expect("query");
    assert_eq!(
        cpu_metrics.iter().map(|e| e.value).collect::<Vec<_>>(),
        [0.75, 0.5]
    );
    let mut recent = TelemetryFilter::default().limit(10);
    recent.since = Some(start + chrono::Duration::minutes(2));
    assert_eq!(store.query(&a, &recent).await.expect("query").len(), 2);
    let older = TelemetryFilter {
        until: Some(start + chrono::Duration::minutes(2)),
        ..TelemetryFilter::default()
    };
    assert_eq!(
        store.query(&a, &older).await.expect("query"),
        newest_first[2..],
        "until is exclusive"
    );
    assert_eq!(
        store
            .query(&a, &TelemetryFilter::default().limit(1))
            .await
            .expect("query"),
        newest_first[..1]
    );
    let other = store
        .query(&b, &TelemetryFilter::default())
        .await
        .expect("query");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].value, 99.0);

    // An event without a time is stored with the time of the call.
    let c = unique_tenant("telemetry");
    let before = now_millis();
    store
        .append(&c, &[TelemetryEvent::new("metric", "untimed", 1.0)])
        .await
        .expect("append");
    let stamped = store
        .query(&c, &TelemetryFilter::default())
        .await
        .expect("query");
    let at = stamped[0].timestamp.expect("a time");
    assert!(
        at >= before && at <= Utc::now() + chrono::Duration::seconds(1),
        "{at}"
    );

    assert_eq!(store.erase(&a).await.expect("erase"), 4);
    assert!(
        store
            .query(&a, &TelemetryFilter::default())
            .await
            .expect("query")
            .is_empty()
    );
    assert_eq!(
        store
            .query(&b, &TelemetryFilter::default())
            .await
            .expect("query")
            .len(),
        1
    );
}

/// Retention and erasure over the time-ordered stores: a purge removes one
/// tenant's rows older than the cutoff (and says how many), younger rows and
/// other tenants' rows stay, a second purge finds nothing; erasure removes
/// all of one tenant's rows. Stores that delete in the background (such as
/// ClickHouse mutations) must have finished when the call returns.
pub async fn retention_and_erasure(
    sink: &dyn AuditSink,
    query: &dyn AuditQuery,
    meter: &dyn UsageMeter,
    telemetry: &dyn crate::store::TelemetryStore,
) {
    use crate::telemetry::{TelemetryEvent, TelemetryFilter};

    let a = unique_tenant("retention");
    let b = unique_tenant("retention");
    let now = now_millis();
    let old = now - chrono::Duration::days(40);
    let young = now - chrono::Duration::days(1);
    let cutoff = now - chrono::Duration::days(30);
    let metric = Label::new("metric").expect("valid");
    let hour = |at: DateTime<Utc>| Period::Hour.window(at).start;
    for tenant in [&a, &b] {
        sink.record(&[
            event(tenant, "old", "widget.create", old),
            event(tenant, "young", "widget.create", young),
        ])
        .await
        .expect("record");
        meter
            .record(&[
                UsageRecord::new(tenant.clone(), metric.clone(), hour(old), 5),
                UsageRecord::new(tenant.clone(), metric.clone(), hour(young), 7),
            ])
            .await
            .expect("record usage");
        let at = |t| {
            let mut e = TelemetryEvent::new("metric", "cpu", 1.0);
            e.timestamp = Some(t);
            e
        };
        telemetry
            .append(tenant, &[at(old), at(young)])
            .await
            .expect("append");
    }
    let everything = AuditFilter::default().limit(100);
    let span = (
        now - chrono::Duration::days(60),
        now + chrono::Duration::hours(1),
    );

    assert_eq!(query.purge_before(&a, cutoff).await.expect("purge"), 1);
    assert_eq!(meter.purge_before(&a, cutoff).await.expect("purge"), 1);
    assert_eq!(telemetry.purge_before(&a, cutoff).await.expect("purge"), 1);
    let actors: Vec<String> = query
        .query(&a, &everything)
        .await
        .expect("query")
        .into_iter()
        .map(|e| e.actor)
        .collect();
    assert_eq!(
        actors,
        ["young"],
        "the old row is gone, the young one stays"
    );
    let hours: Vec<u64> = meter
        .usage(&a, span.0, span.1)
        .await
        .expect("usage")
        .into_iter()
        .map(|r| r.count)
        .collect();
    assert_eq!(hours, [7]);
    let kept = telemetry
        .query(&a, &TelemetryFilter::default())
        .await
        .expect("query");
    assert_eq!(
        kept.iter().map(|e| e.timestamp).collect::<Vec<_>>(),
        [Some(young)]
    );
    // Another tenant's old rows are its own business.
    assert_eq!(query.query(&b, &everything).await.expect("query").len(), 2);
    assert_eq!(
        meter.usage(&b, span.0, span.1).await.expect("usage").len(),
        2
    );
    assert_eq!(
        telemetry
            .query(&b, &TelemetryFilter::default())
            .await
            .expect("query")
            .len(),
        2
    );
    // A second sweep finds nothing to do.
    assert_eq!(query.purge_before(&a, cutoff).await.expect("purge"), 0);
    assert_eq!(meter.purge_before(&a, cutoff).await.expect("purge"), 0);
    assert_eq!(telemetry.purge_before(&a, cutoff).await.expect("purge"), 0);

    // Erasure: everything of b, nothing of a.
    assert_eq!(query.erase(&b).await.expect("erase"), 2);
    assert_eq!(meter.erase(&b).await.expect("erase"), 2);
    assert_eq!(telemetry.erase(&b).await.expect("erase"), 2);
    assert!(
        query
            .query(&b, &everything)
            .await
            .expect("query")
            .is_empty()
    );
    assert!(
        meter
            .usage(&b, span.0, span.1)
            .await
            .expect("usage")
            .is_empty()
    );
    assert!(
        telemetry
            .query(&b, &TelemetryFilter::default())
            .await
            .expect("query")
            .is_empty()
    );
    assert_eq!(query.query(&a, &everything).await.expect("query").len(), 1);
}

/// Erasure of a tenant's keys, rate-limit buckets and budget counters: all
/// of one tenant's go (a key's digest finds nothing, an emptied bucket
/// starts full, a counter starts at zero), another tenant's stay.
pub async fn erasure_of_keys_and_limits(
    keys: &dyn ApiKeyStore,
    limiter: &dyn RateLimiter,
    quotas: &dyn QuotaStore,
) {
    let a = unique_tenant("erase");
    let b = unique_tenant("erase");
    let now = now_millis();
    let key = |tenant: &TenantId, id: &str| {
        ApiKeyRecord::new(
            KeyId::new(id).expect("valid"),
            tenant.clone(),
            id,
            crate::rbac::ApiKeyScope::Full,
            digest(&format!("{tenant}/{id}")),
            now,
        )
    };
    let (a1, a2, b1) = (key(&a, "k1"), key(&a, "k2"), key(&b, "k1"));
    for k in [&a1, &a2, &b1] {
        keys.insert(k.clone()).await.expect("insert");
    }
    keys.revoke(&a, &a2.key_id, now).await.expect("revoke");
    let one = RateQuota::per_second(1).expect("non-zero");
    let checks = |t: &TenantId| {
        [
            RateCheck {
                key: rate_key(t),
                quota: one,
            },
            RateCheck {
                key: RateLimitKey::api_key(t.clone(), a1.key_id.clone()),
                quota: one,
            },
        ]
    };
    let events = Label::new("events").expect("valid");
    let counter = |t: &TenantId| QuotaKey::new(t.clone(), events.clone(), Period::Month, now);
    for t in [&a, &b] {
        assert!(limiter.check(&checks(t)).await.expect("check").allowed);
        assert!(!limiter.check(&checks(t)).await.expect("check").allowed);
        quotas
            .charge(&counter(t), 5, Limit::Unlimited)
            .await
            .expect("charge");
    }

    assert_eq!(
        keys.erase(&a).await.expect("erase keys"),
        2,
        "revoked ones too"
    );
    assert!(limiter.erase(&a).await.expect("erase buckets") >= 1);
    assert!(quotas.erase(&a).await.expect("erase counters") >= 1);

    for k in [&a1, &a2] {
        assert!(
            keys.find_by_digest(&k.digest)
                .await
                .expect("find")
                .is_none()
        );
    }
    assert!(keys.list(&a).await.expect("list").is_empty());
    assert!(keys.get(&a, &a1.key_id).await.expect("get").is_none());
    assert!(
        keys.find_by_digest(&b1.digest)
            .await
            .expect("find")
            .is_some()
    );
    assert!(
        limiter.check(&checks(&a)).await.expect("check").allowed,
        "an erased bucket starts full"
    );
    assert!(
        !limiter.check(&checks(&b)).await.expect("check").allowed,
        "another tenant's bucket is untouched"
    );
    assert_eq!(quotas.used(&counter(&a)).await.expect("used"), 0);
    assert_eq!(quotas.used(&counter(&b)).await.expect("used"), 5);
    assert_eq!(keys.erase(&a).await.expect("erase keys"), 0);
}

/// One retention sweep of `tenancy` (built over the stores under test) and
/// `telemetry`: a tenant on the `free` plan (7 days) with audit events,
/// usage and telemetry 10 days and 1 day old, all written through the
/// stores, keeps only the younger ones; a tenant on `pro` (90 days) keeps
/// both.
pub async fn retention_sweep(
    tenancy: &crate::Tenancy,
    telemetry: &dyn crate::store::TelemetryStore,
) {
    use crate::telemetry::{TelemetryEvent, TelemetryFilter};
    use crate::tenant::TenantRecord;

    let admin = tenancy.admin();
    let free = unique_tenant("sweep");
    let pro = unique_tenant("sweep");
    admin
        .create_tenant(TenantRecord::new(free.clone(), "Free", "free"))
        .await
        .expect("create");
    admin
        .create_tenant(TenantRecord::new(pro.clone(), "Pro", "pro"))
        .await
        .expect("create");
    let now = now_millis();
    let (old, young) = (
        now - chrono::Duration::days(10),
        now - chrono::Duration::days(1),
    );
    let metric = Label::new("metric").expect("valid");
    for tenant in [&free, &pro] {
        for at in [old, young] {
            tenancy.record_audit(event(tenant, "someone", "widget.create", at));
            let mut e = TelemetryEvent::new("metric", "cpu", 1.0);
            e.timestamp = Some(at);
            telemetry.append(tenant, &[e]).await.expect("append");
        }
        tenancy
            .usage_meter()
            .record(&[
                UsageRecord::new(
                    tenant.clone(),
                    metric.clone(),
                    Period::Hour.window(old).start,
                    1,
                ),
                UsageRecord::new(
                    tenant.clone(),
                    metric.clone(),
                    Period::Hour.window(young).start,
                    1,
                ),
            ])
            .await
            .expect("record usage");
    }
    tenancy.flush().await;

    let sweep = admin
        .sweep_retention(Some(telemetry), true)
        .await
        .expect("sweep");
    assert!(sweep.audit_events >= 1, "{sweep:?}");
    assert!(sweep.usage_rows >= 1, "{sweep:?}");
    assert!(sweep.telemetry_events >= 1, "{sweep:?}");

    let log = tenancy.audit_query().expect("a queryable log");
    let span = (
        now - chrono::Duration::days(30),
        now + chrono::Duration::hours(1),
    );
    for (tenant, kept) in [(&free, 1), (&pro, 2)] {
        let events = log
            .query(tenant, &AuditFilter::default().limit(100))
            .await
            .expect("query");
        assert_eq!(events.len(), kept, "{tenant}: audit");
        let usage = tenancy
            .usage_meter()
            .usage(tenant, span.0, span.1)
            .await
            .expect("usage");
        assert_eq!(usage.len(), kept, "{tenant}: usage");
        let events = telemetry
            .query(tenant, &TelemetryFilter::default())
            .await
            .expect("query");
        assert_eq!(events.len(), kept, "{tenant}: telemetry");
    }
    let young_only = log
        .query(&free, &AuditFilter::default())
        .await
        .expect("query");
    assert_eq!(young_only[0].timestamp, young, "the younger row stays");
}
