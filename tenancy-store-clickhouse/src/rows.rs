//! Rows of the tables and their conversions to and from the core types.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::ops::Range;

use chrono::{DateTime, TimeZone, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use tenancy_core::audit::{ActorKind, AuditEvent};
use tenancy_core::label::Label;
use tenancy_core::metering::UsageRecord;
use tenancy_core::store::StoreError;
use tenancy_core::telemetry::TelemetryEvent;
use tenancy_core::tenant::TenantId;

use crate::error::{backend, corrupt};

/// One `audit_log` row, borrowing from its event and its batch's
/// [`AuditBatchText`], for inserts.
#[derive(Debug, Row, Serialize)]
pub(crate) struct AuditRowRef<'a> {
    timestamp: u32,
    millis: u16,
    tenant_id: &'a str,
    actor: &'a str,
    actor_kind: &'static str,
    action: &'a str,
    resource: Option<&'a str>,
    outcome: u16,
    request_id: Option<&'a str>,
    client_addr: Option<&'a str>,
    details: &'a str,
}

/// The text of a batch's rows that its events do not hold as text (client
/// addresses, details as JSON), written one after the other into one buffer:
/// a batch costs one allocation for them instead of two per event.
pub(crate) struct AuditBatchText {
    text: String,
    /// Per event: where its client address and its details are in `text`.
    spans: Vec<(Option<Range<usize>>, Range<usize>)>,
}

impl AuditBatchText {
    /// The text of `events`.
    pub(crate) fn new(events: &[AuditEvent]) -> Result<Self, StoreError> {
        let mut buf = Vec::with_capacity(events.len() * 48);
        let mut spans = Vec::with_capacity(events.len());
        for event in events {
            let addr = event.client_addr.map(|a| {
                let start = buf.len();
                // Writing into a Vec cannot fail.
                let _ = write!(buf, "{a}");
                start..buf.len()
            });
            let start = buf.len();
            serde_json::to_writer(&mut buf, &event.details)
                .map_err(|e| backend(format!("audit details: {e}")))?;
            spans.push((addr, start..buf.len()));
        }
        let text = String::from_utf8(buf).map_err(|_| backend("audit details are not UTF-8"))?;
        Ok(Self { text, spans })
    }

    /// The rows of `events`, which must be the events this text was made
    /// of; [`StoreError::Backend`] when an event's time does not fit a
    /// `DateTime` (1970 to 2106).
    pub(crate) fn rows<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> Result<Vec<AuditRowRef<'a>>, StoreError> {
        debug_assert_eq!(events.len(), self.spans.len());
        events
            .iter()
            .zip(&self.spans)
            .map(|(event, (addr, details))| {
                let (timestamp, millis) = split_millis(event.timestamp)
                    .ok_or_else(|| backend("audit event time outside 1970-2106"))?;
                Ok(AuditRowRef {
                    timestamp,
                    millis,
                    tenant_id: event.tenant_id.as_str(),
                    actor: &event.actor,
                    actor_kind: event.actor_kind.as_str(),
                    action: &event.action,
                    resource: event.resource.as_deref(),
                    outcome: event.outcome,
                    request_id: event.request_id.as_deref(),
                    client_addr: addr.clone().map(|r| &self.text[r]),
                    details: &self.text[details.clone()],
                })
            })
            .collect()
    }
}

/// `query` with the three values of the condition "before `at`" on a
/// table's `timestamp` and `millis` columns bound, in this order:
/// `(timestamp < toDateTime(?) OR (timestamp = toDateTime(?) AND millis < ?))`.
pub(crate) fn bind_before(
    query: clickhouse::query::Query,
    at: DateTime<Utc>,
) -> clickhouse::query::Query {
    let cutoff = ceil_millis(at);
    query
        .bind(cutoff / 1000)
        .bind(cutoff / 1000)
        .bind(cutoff % 1000)
}

/// `(1, "")` for no filter, `(0, value)` for a filter on `value`: the two
/// values bound to `(? = 1 OR column = ?)`.
pub(crate) fn optional(value: Option<&str>) -> (u8, &str) {
    match value {
        Some(v) => (0, v),
        None => (1, ""),
    }
}

/// One `telemetry` row, for inserts and as read back.
#[derive(Debug, Row, Serialize, Deserialize)]
pub(crate) struct TelemetryRow {
    timestamp: u32,
    millis: u16,
    tenant_id: String,
    event_type: String,
    name: String,
    value: f64,
    labels: String,
}

impl TelemetryRow {
    /// The row of `event` of `tenant`, stamped `now` when it has no time;
    /// [`StoreError::Backend`] when its time does not fit a `DateTime`.
    pub(crate) fn new(
        tenant: &TenantId,
        event: &TelemetryEvent,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let (timestamp, millis) = split_millis(event.timestamp.unwrap_or(now))
            .ok_or_else(|| backend("telemetry event time outside 1970-2106"))?;
        Ok(Self {
            timestamp,
            millis,
            tenant_id: tenant.as_str().to_owned(),
            event_type: event.event_type.clone(),
            name: event.name.clone(),
            value: event.value,
            labels: serde_json::to_string(&event.labels)
                .map_err(|e| backend(format!("telemetry labels: {e}")))?,
        })
    }

    /// The event of this row; [`StoreError::Corrupt`] when a column holds
    /// what no event could have written.
    pub(crate) fn into_event(self) -> Result<TelemetryEvent, StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("telemetry row with an invalid {what}"));
        let timestamp = join_millis(self.timestamp, self.millis).ok_or_else(|| bad("time"))?;
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&self.labels).map_err(|_| bad("labels"))?;
        Ok(TelemetryEvent {
            event_type: self.event_type,
            name: self.name,
            value: self.value,
            timestamp: Some(timestamp),
            labels,
        })
    }
}

/// One `audit_log` row as read back.
#[derive(Debug, Row, Deserialize)]
pub(crate) struct AuditRow {
    timestamp: u32,
    millis: u16,
    tenant_id: String,
    actor: String,
    actor_kind: String,
    action: String,
    resource: Option<String>,
    outcome: u16,
    request_id: Option<String>,
    client_addr: Option<String>,
    details: String,
}

impl AuditRow {
    /// The event of this row; [`StoreError::Corrupt`] when a column holds
    /// what no event could have written.
    pub(crate) fn into_event(self) -> Result<AuditEvent, StoreError> {
        let timestamp = join_millis(self.timestamp, self.millis).ok_or_else(|| corrupt("time"))?;
        let tenant_id = TenantId::new(&self.tenant_id).map_err(|_| corrupt("tenant_id"))?;
        let actor_kind = ActorKind::parse(&self.actor_kind).ok_or_else(|| corrupt("actor_kind"))?;
        let client_addr = self
            .client_addr
            .map(|a| a.parse::<IpAddr>())
            .transpose()
            .map_err(|_| corrupt("client_addr"))?;
        let details: BTreeMap<String, String> =
            serde_json::from_str(&self.details).map_err(|_| corrupt("details"))?;
        Ok(AuditEvent {
            timestamp,
            tenant_id,
            actor: self.actor,
            actor_kind,
            action: self.action,
            resource: self.resource,
            outcome: self.outcome,
            request_id: self.request_id,
            client_addr,
            details,
        })
    }
}

/// One `usage_hourly` row, borrowing from its record, for inserts.
#[derive(Debug, Row, Serialize)]
pub(crate) struct UsageRowRef<'a> {
    tenant_id: &'a str,
    hour: u32,
    event_type: &'a str,
    count: u64,
}

impl<'a> UsageRowRef<'a> {
    /// The row of `record`; [`StoreError::Backend`] when its hour does not
    /// fit a `DateTime`.
    pub(crate) fn new(record: &'a UsageRecord) -> Result<Self, StoreError> {
        let hour = u32::try_from(record.hour.timestamp())
            .map_err(|_| backend("usage hour outside 1970-2106"))?;
        Ok(Self {
            tenant_id: record.tenant_id.as_str(),
            hour,
            event_type: record.event_type.as_str(),
            count: record.count,
        })
    }
}

/// One hour and event type of a tenant's usage, summed.
#[derive(Debug, Row, Deserialize)]
pub(crate) struct UsageSumRow {
    hour: u32,
    event_type: String,
    count: u64,
}

impl UsageSumRow {
    /// The record of this row for `tenant`.
    pub(crate) fn into_record(self, tenant: &TenantId) -> Result<UsageRecord, StoreError> {
        let hour = Utc
            .timestamp_opt(i64::from(self.hour), 0)
            .single()
            .ok_or_else(|| corrupt("hour"))?;
        let event_type = Label::new(&self.event_type).map_err(|_| corrupt("event_type"))?;
        Ok(UsageRecord {
            tenant_id: tenant.clone(),
            hour,
            event_type,
            count: self.count,
        })
    }
}

/// Whole seconds since 1970 and the milliseconds within the second, or
/// `None` outside what a `DateTime` holds.
pub(crate) fn split_millis(at: DateTime<Utc>) -> Option<(u32, u16)> {
    let ms = at.timestamp_millis();
    let secs = u32::try_from(ms.div_euclid(1000)).ok()?;
    // rem_euclid(1000) is in 0..1000.
    let millis = ms.rem_euclid(1000) as u16;
    Some((secs, millis))
}

/// The time at `secs` and `millis`.
fn join_millis(secs: u32, millis: u16) -> Option<DateTime<Utc>> {
    if millis >= 1000 {
        return None;
    }
    Utc.timestamp_millis_opt(i64::from(secs) * 1000 + i64::from(millis))
        .single()
}

/// Milliseconds since 1970 of the first whole millisecond at or after `at`,
/// clamped to what the table can hold: for an event time `e` stored in whole
/// milliseconds, `e >= at` exactly when `e_ms >= ceil_millis(at)`, and
/// `e < at` exactly when `e_ms < ceil_millis(at)`.
pub(crate) fn ceil_millis(at: DateTime<Utc>) -> u64 {
    let ms = at.timestamp_millis();
    let ms = if !at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms)
        .unwrap_or(0)
        .min(u64::from(u32::MAX) * 1000 + 999)
}

/// Seconds since 1970 of the first whole second at or after `at`, clamped to
/// what a `DateTime` holds (the same bound for whole-second columns).
pub(crate) fn ceil_secs(at: DateTime<Utc>) -> u32 {
    let secs = at.timestamp();
    let secs = if at.timestamp_subsec_nanos() != 0 {
        secs + 1
    } else {
        secs
    };
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let at = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .expect("valid");
        let (secs, millis) = split_millis(at).expect("in range");
        assert_eq!((secs, millis), (1_700_000_000, 123));
        assert_eq!(join_millis(secs, millis), Some(at));
        assert_eq!(join_millis(secs, 1000), None);
        let before_1970 = Utc.timestamp_millis_opt(-1).single().expect("valid");
        assert_eq!(split_millis(before_1970), None);
    }

    #[test]
    fn ceilings() {
        let whole = Utc.timestamp_millis_opt(5_000).single().expect("valid");
        assert_eq!(ceil_millis(whole), 5_000);
        assert_eq!(ceil_secs(whole), 5);
        let inside = whole + chrono::Duration::nanoseconds(1);
        assert_eq!(ceil_millis(inside), 5_001);
        assert_eq!(ceil_secs(inside), 6);
        let early = Utc.timestamp_opt(-10, 0).single().expect("valid");
        assert_eq!(ceil_millis(early), 0);
        assert_eq!(ceil_secs(early), 0);
    }

    #[test]
    fn events_survive_the_row() {
        let tenant = TenantId::new("acme").expect("valid");
        let at = Utc
            .timestamp_millis_opt(1_700_000_000_007)
            .single()
            .expect("valid");
        let mut event = AuditEvent::new(tenant, "alice", ActorKind::ApiKey, "apikey.create")
            .resource("key_1")
            .outcome(201)
            .at(at)
            .detail("method", "POST")
            .detail("quote", "it's \"fine\"");
        event.client_addr = Some("2001:db8::1".parse().expect("ip"));
        let text = AuditBatchText::new(std::slice::from_ref(&event)).expect("text");
        let rows = text.rows(std::slice::from_ref(&event)).expect("row");
        let r = &rows[0];
        let back = AuditRow {
            timestamp: r.timestamp,
            millis: r.millis,
            tenant_id: r.tenant_id.to_owned(),
            actor: r.actor.to_owned(),
            actor_kind: r.actor_kind.to_owned(),
            action: r.action.to_owned(),
            resource: r.resource.map(str::to_owned),
            outcome: r.outcome,
            request_id: r.request_id.map(str::to_owned),
            client_addr: r.client_addr.map(str::to_owned),
            details: r.details.to_owned(),
        }
        .into_event()
        .expect("event");
        assert_eq!(back, event);
    }
}
