//! The in-memory stores pass the store acceptance suite.

use std::sync::Arc;

use tenancy_core::store::memory::{
    MemoryApiKeyStore, MemoryAuditLog, MemoryMemberStore, MemoryQuotaStore, MemoryRateLimiter,
    MemoryRealmStore, MemoryTeamStore, MemoryTelemetryStore, MemoryTenantStore, MemoryUsageMeter,
};
use tenancy_core::testkit::stores;

#[tokio::test]
async fn tenant_store() {
    stores::tenant_store(&MemoryTenantStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realm_store() {
    stores::realm_store(&[Arc::new(MemoryRealmStore::new())]).await;
}

#[tokio::test]
async fn api_key_store() {
    stores::api_key_store(&MemoryApiKeyStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_key_count_quota() {
    stores::api_key_count_quota(&[Arc::new(MemoryApiKeyStore::new())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_store() {
    stores::quota_store(Arc::new(MemoryQuotaStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limiter() {
    stores::rate_limiter(Arc::new(MemoryRateLimiter::new())).await;
}

#[tokio::test]
async fn rate_limiter_shared_state() {
    // One in-memory limiter shared by two handles is the single-process case
    // of two clients over one backend.
    let limiter = Arc::new(MemoryRateLimiter::new());
    stores::rate_limiter_shared(limiter.clone(), limiter).await;
}

#[tokio::test]
async fn audit_log() {
    let log = MemoryAuditLog::new();
    stores::audit_log(&log, &log).await;
}

#[tokio::test]
async fn audit_ring_is_bounded_per_tenant() {
    use tenancy_core::audit::{ActorKind, AuditEvent, AuditFilter};
    use tenancy_core::store::{AuditQuery, AuditSink};
    let log = MemoryAuditLog::with_capacity_per_tenant(3);
    let busy = stores::unique_tenant("busy");
    let quiet = stores::unique_tenant("quiet");
    log.record(&[AuditEvent::new(quiet.clone(), "q", ActorKind::User, "x")])
        .await
        .unwrap();
    let burst: Vec<AuditEvent> = (0..10)
        .map(|i| AuditEvent::new(busy.clone(), format!("a{i}"), ActorKind::User, "x"))
        .collect();
    log.record(&burst).await.unwrap();
    assert_eq!(log.evicted(), 7);
    assert_eq!(
        log.query(&busy, &AuditFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        log.query(&quiet, &AuditFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn usage_meter() {
    stores::usage_meter(&MemoryUsageMeter::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_store() {
    let store: Arc<dyn tenancy_core::store::MemberStore> = Arc::new(MemoryMemberStore::new());
    stores::member_store(&[store.clone(), store]).await;
}

#[tokio::test]
async fn team_store() {
    stores::team_store(&MemoryTeamStore::new()).await;
}

#[tokio::test]
async fn telemetry_store() {
    stores::telemetry_store(&MemoryTelemetryStore::new()).await;
}

#[tokio::test]
async fn retention_and_erasure() {
    let log = MemoryAuditLog::new();
    stores::retention_and_erasure(
        &log,
        &log,
        &MemoryUsageMeter::new(),
        &MemoryTelemetryStore::new(),
    )
    .await;
}

#[tokio::test]
async fn erasure_of_keys_and_limits() {
    stores::erasure_of_keys_and_limits(
        &MemoryApiKeyStore::new(),
        &MemoryRateLimiter::new(),
        &MemoryQuotaStore::new(),
    )
    .await;
}

#[tokio::test]
async fn retention_sweep() {
    let tenancy = tenancy_core::Tenancy::builder(tenancy_core::TenancyConfig::default())
        .build()
        .unwrap();
    stores::retention_sweep(&tenancy, &MemoryTelemetryStore::new()).await;
    tenancy.shutdown().await;
}
