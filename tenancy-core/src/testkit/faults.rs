//! [`FailingStore`]: a store that fails every call, for tests of failure
//! policies and of what reaches clients when a backend is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{AuditEvent, AuditFilter};
use crate::config::TenancyConfig;
use crate::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
use crate::engine::Tenancy;
use crate::limit::{QuotaCharge, QuotaKey, RateCheck, RateDecision};
use crate::metering::UsageRecord;
use crate::plan::Limit;
use crate::store::{
    ApiKeyStore, AuditQuery, AuditSink, QuotaStore, RateLimiter, StoreError, TenantStore,
    UsageMeter,
};
use crate::tenant::{TenantId, TenantRecord};

/// The text every [`FailingStore`] error carries: a connection string with a
/// password, which must never reach a client.
pub const FAILURE_TEXT: &str = "connection refused: redis://:hunter2@10.1.2.3:6379";

/// Implements every store trait; every call fails with
/// [`StoreError::Unavailable`] carrying [`FAILURE_TEXT`], and is counted.
///
/// ```
/// use tenancy_core::store::TenantStore;
/// use tenancy_core::testkit::faults::FailingStore;
/// use tenancy_core::tenant::TenantId;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = FailingStore::default();
/// assert!(store.get(&TenantId::new("acme").unwrap()).await.is_err());
/// assert_eq!(store.calls(), 1);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct FailingStore {
    calls: AtomicU64,
}

impl FailingStore {
    /// An engine over `config` whose every store is `store`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tenancy_core::TenancyConfig;
    /// use tenancy_core::testkit::faults::FailingStore;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(FailingStore::default());
    /// let tenancy = FailingStore::engine(&store, TenancyConfig::default());
    /// assert!(tenancy.health().await.is_err());
    /// # tenancy.shutdown().await;
    /// # });
    /// ```
    pub fn engine(store: &Arc<FailingStore>, config: TenancyConfig) -> Tenancy {
        Tenancy::builder(config)
            .tenant_store(store.clone())
            .api_key_store(store.clone())
            .rate_limiter(store.clone())
            .quota_store(store.clone())
            .audit(store.clone(), Some(store.clone()))
            .usage_meter(store.clone())
            .build()
            .expect("an engine on failing stores")
    }

    /// How many calls it has refused.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn fail<T>(&self) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::unavailable(std::io::Error::other(FAILURE_TEXT)))
    }
}

#[async_trait]
impl TenantStore for FailingStore {
    async fn insert(&self, _: TenantRecord) -> Result<(), StoreError> {
        self.fail()
    }
    async fn get(&self, _: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.fail()
    }
    async fn update(&self, _: TenantRecord) -> Result<(), StoreError> {
        self.fail()
    }
    async fn list(&self, _: Option<&TenantId>, _: usize) -> Result<Vec<TenantRecord>, StoreError> {
        self.fail()
    }
    async fn delete(&self, _: &TenantId) -> Result<bool, StoreError> {
        self.fail()
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.fail()
    }
}

#[async_trait]
impl ApiKeyStore for FailingStore {
    async fn insert(&self, _: ApiKeyRecord) -> Result<(), StoreError> {
        self.fail()
    }
    async fn insert_within_limit(
        &self,
        _: ApiKeyRecord,
        _: Limit,
        _: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.fail()
    }
    async fn find_by_digest(
        &self,
        _: &ApiKeyDigest,
    ) -> Result<Option<std::sync::Arc<ApiKeyRecord>>, StoreError> {
        self.fail()
    }
    async fn get(&self, _: &TenantId, _: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.fail()
    }
    async fn list(&self, _: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.fail()
    }
    async fn revoke(&self, _: &TenantId, _: &KeyId, _: DateTime<Utc>) -> Result<bool, StoreError> {
        self.fail()
    }
    async fn set_expiry(
        &self,
        _: &TenantId,
        _: &KeyId,
        _: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        self.fail()
    }
    async fn touch(&self, _: &TenantId, _: &KeyId, _: DateTime<Utc>) -> Result<(), StoreError> {
        self.fail()
    }
    async fn erase(&self, _: &TenantId) -> Result<u64, StoreError> {
        self.fail()
    }
}

#[async_trait]
impl RateLimiter for FailingStore {
    async fn check(&self, _: &[RateCheck]) -> Result<RateDecision, StoreError> {
        self.fail()
    }
    async fn erase(&self, _: &TenantId) -> Result<u64, StoreError> {
        self.fail()
    }
}

#[async_trait]
impl QuotaStore for FailingStore {
    async fn charge(&self, _: &QuotaKey, _: u64, _: Limit) -> Result<QuotaCharge, StoreError> {
        self.fail()
    }
    async fn erase(&self, _: &TenantId) -> Result<u64, StoreError> {
        self.fail()
    }
    async fn used(&self, _: &QuotaKey) -> Result<u64, StoreError> {
        self.fail()
    }
}

#[async_trait]
impl AuditSink for FailingStore {
    async fn record(&self, _: &[AuditEvent]) -> Result<(), StoreError> {
        self.fail()
    }
}

#[async_trait]
impl AuditQuery for FailingStore {
    async fn query(&self, _: &TenantId, _: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.fail()
    }
    async fn purge_before(&self, _: &TenantId, _: DateTime<Utc>) -> Result<u64, StoreError> {
        self.fail()
    }
    async fn erase(&self, _: &TenantId) -> Result<u64, StoreError> {
        self.fail()
    }
}

#[async_trait]
impl UsageMeter for FailingStore {
    async fn record(&self, _: &[UsageRecord]) -> Result<(), StoreError> {
        self.fail()
    }
    async fn usage(
        &self,
        _: &TenantId,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        self.fail()
    }
    async fn purge_before(&self, _: &TenantId, _: DateTime<Utc>) -> Result<u64, StoreError> {
        self.fail()
    }
    async fn erase(&self, _: &TenantId) -> Result<u64, StoreError> {
        self.fail()
    }
}
