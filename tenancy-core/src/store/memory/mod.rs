//! In-memory implementations of every store trait: the embedded default.
//!
//! They need no set-up and keep nothing across restarts. Each is bounded or
//! evicts what it no longer needs: the limiter drops idle keys, the quota
//! store drops past windows, the audit log keeps a ring per tenant.
//!
//! | trait | type |
//! |---|---|
//! | [`TenantStore`](super::TenantStore) | [`MemoryTenantStore`] |
//! | [`ApiKeyStore`](super::ApiKeyStore) | [`MemoryApiKeyStore`] |
//! | [`RateLimiter`](super::RateLimiter) | [`MemoryRateLimiter`] |
//! | [`QuotaStore`](super::QuotaStore) | [`MemoryQuotaStore`] |
//! | [`RealmStore`](super::RealmStore) | [`MemoryRealmStore`] |
//! | [`AuditSink`](super::AuditSink) + [`AuditQuery`](super::AuditQuery) | [`MemoryAuditLog`] |
//! | [`UsageMeter`](super::UsageMeter) | [`MemoryUsageMeter`] |
//! | [`MemberStore`](super::MemberStore) | [`MemoryMemberStore`] |
//! | [`TeamStore`](super::TeamStore) | [`MemoryTeamStore`] |
//! | [`TelemetryStore`](super::TelemetryStore) | [`MemoryTelemetryStore`] |

mod api_key;
mod audit;
mod member;
mod quota;
mod rate_limit;
mod realm;
mod telemetry;
mod tenant;
mod usage;

pub use api_key::MemoryApiKeyStore;
pub use audit::{DEFAULT_EVENTS_PER_TENANT, MemoryAuditLog};
pub use member::{MemoryMemberStore, MemoryTeamStore};
pub use quota::MemoryQuotaStore;
pub use rate_limit::MemoryRateLimiter;
pub use realm::MemoryRealmStore;
pub use telemetry::{
    DEFAULT_TELEMETRY_BYTES_PER_TENANT, DEFAULT_TELEMETRY_EVENTS_PER_TENANT, MemoryTelemetryStore,
};
pub use tenant::MemoryTenantStore;
pub use usage::MemoryUsageMeter;
