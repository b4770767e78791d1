//! Usage metering: counts by tenant, UTC hour and event type.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::label::Label;
use crate::plan::Period;
use crate::tenant::TenantId;

/// A count of events of one type for one tenant in one UTC hour.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use tenancy_core::label::Label;
/// use tenancy_core::metering::UsageRecord;
/// use tenancy_core::tenant::TenantId;
///
/// let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 42, 7).unwrap();
/// let r = UsageRecord::new(TenantId::new("acme")?, Label::new("metric")?, at, 5);
/// assert_eq!(r.hour, Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Start of the UTC hour.
    pub hour: DateTime<Utc>,
    /// The event type.
    pub event_type: Label,
    /// How many.
    pub count: u64,
}

impl UsageRecord {
    /// `count` events of `event_type` at `at`, filed under the hour holding `at`.
    pub fn new(tenant_id: TenantId, event_type: Label, at: DateTime<Utc>, count: u64) -> Self {
        Self {
            tenant_id,
            hour: Period::Hour.window(at).start,
            event_type,
            count,
        }
    }
}
