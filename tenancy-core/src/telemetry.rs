//! Telemetry: the events a tenant's services send ([`TelemetryEvent`]),
//! their limits, and how they are read back ([`TelemetryFilter`]). A
//! [`TelemetryStore`](crate::store::TelemetryStore) keeps them per tenant.
//!
//! ```
//! use tenancy_core::telemetry::TelemetryEvent;
//!
//! let event: TelemetryEvent =
//!     serde_json::from_str(r#"{"type":"metric","name":"cpu","value":0.5,"labels":{"host":"a"}}"#)?;
//! assert_eq!(event.validate()?.as_str(), "metric");
//! let bad: TelemetryEvent = serde_json::from_str(r#"{"type":"a:{b}","name":"cpu","value":1}"#)?;
//! assert_eq!(bad.validate().unwrap_err().code(), "invalid_request");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::TenancyError;
use crate::label::Label;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 256;
/// Most labels on one event.
pub const MAX_EVENT_LABELS: usize = 32;
/// Longest label value, in bytes (label names are [`Label`]s).
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// How old an event's time may be, in days (a year and a month: the
/// longest plan retention with room to spare).
pub const MAX_EVENT_AGE_DAYS: i64 = 400;
/// How far ahead of the receiving clock an event's time may be, in
/// seconds.
pub const MAX_EVENT_SKEW_SECS: i64 = 3_600;
/// The most events one [`TelemetryFilter`] asks for.
pub const TELEMETRY_MAX_LIMIT: usize = 10_000;

/// One telemetry event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TelemetryEvent {
    /// Event type (`metric`, `log`, …); metered by it.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = Label))]
    pub event_type: String,
    /// Name, 1 to 256 bytes.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub name: String,
    /// Value, a finite number.
    pub value: f64,
    /// When it happened (the time it was received when absent).
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    /// At most 32 labels: names are labels, values at most 256 bytes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<Label, String>))]
    pub labels: BTreeMap<String, String>,
}

impl TelemetryEvent {
    /// An event of `event_type` named `name` with `value`, no time and no
    /// labels.
    pub fn new(event_type: impl Into<String>, name: impl Into<String>, value: f64) -> Self {
        Self {
            event_type: event_type.into(),
            name: name.into(),
            value,
            timestamp: None,
            labels: BTreeMap::new(),
        }
    }

    /// What the event weighs in a store that bounds bytes: its strings plus
    /// a fixed overhead.
    pub fn size(&self) -> usize {
        64 + self.event_type.len()
            + self.name.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| 32 + k.len() + v.len())
                .sum::<usize>()
    }

    /// The event's type, when the event is one a store may keep;
    /// `invalid_request` for a type or label name that is not a [`Label`],
    /// an empty or over-long name or label value, too many labels, a value
    /// that is not finite, or a time more than [`MAX_EVENT_AGE_DAYS`] old
    /// or [`MAX_EVENT_SKEW_SECS`] ahead (which would scatter a shared
    /// table over years of partitions).
    pub fn validate(&self) -> Result<Label, TenancyError> {
        let event_type = label(&self.event_type, "event type")?;
        if self.name.is_empty() || self.name.len() > MAX_EVENT_NAME_BYTES {
            return Err(TenancyError::invalid_request(format!(
                "event names are 1 to {MAX_EVENT_NAME_BYTES} bytes"
            )));
        }
        if self.labels.len() > MAX_EVENT_LABELS {
            return Err(TenancyError::invalid_request(format!(
                "events carry at most {MAX_EVENT_LABELS} labels"
            )));
        }
        for (key, value) in &self.labels {
            label(key, "label name")?;
            if value.len() > MAX_LABEL_VALUE_BYTES {
                return Err(TenancyError::invalid_request(format!(
                    "label values are at most {MAX_LABEL_VALUE_BYTES} bytes"
                )));
            }
        }
        if !self.value.is_finite() {
            return Err(TenancyError::invalid_request("event values must be finite"));
        }
        if let Some(at) = self.timestamp {
            let now = Utc::now();
            if at < now - chrono::Duration::days(MAX_EVENT_AGE_DAYS)
                || at > now + chrono::Duration::seconds(MAX_EVENT_SKEW_SECS)
            {
                return Err(TenancyError::invalid_request(format!(
                    "event times are at most {MAX_EVENT_AGE_DAYS} days old and \
                     {MAX_EVENT_SKEW_SECS} seconds ahead"
                )));
            }
        }
        Ok(event_type)
    }
}

fn label(value: &str, what: &str) -> Result<Label, TenancyError> {
    Label::new(value).map_err(|e| TenancyError::invalid_request(format!("{what}: {e}")))
}

/// Which of a tenant's events a read returns: newest first, at most
/// `limit` (capped at [`TELEMETRY_MAX_LIMIT`]).
///
/// ```
/// use tenancy_core::telemetry::TelemetryFilter;
/// let filter = TelemetryFilter::default().name("cpu").limit(10);
/// assert_eq!(filter.name.as_deref(), Some("cpu"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryFilter {
    /// Only events with this name.
    pub name: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time (pages back in time).
    pub until: Option<DateTime<Utc>>,
    /// At most this many events (100 by default).
    pub limit: usize,
}

impl Default for TelemetryFilter {
    fn default() -> Self {
        Self {
            name: None,
            event_type: None,
            since: None,
            until: None,
            limit: 100,
        }
    }
}

impl TelemetryFilter {
    /// Only events named `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only events of type `event_type`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Whether `event` passes the filter (its time is checked against
    /// `since` and `until` with `now` standing in for a missing one).
    pub fn matches(&self, event: &TelemetryEvent, now: DateTime<Utc>) -> bool {
        self.name.as_ref().is_none_or(|n| *n == event.name)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| *t == event.event_type)
            && self
                .since
                .is_none_or(|since| event.timestamp.unwrap_or(now) >= since)
            && self
                .until
                .is_none_or(|until| event.timestamp.unwrap_or(now) < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_far_from_now_are_refused() {
        let mut event = TelemetryEvent::new("metric", "cpu", 1.0);
        let now = Utc::now();
        for ok in [now, now - chrono::Duration::days(MAX_EVENT_AGE_DAYS - 1)] {
            event.timestamp = Some(ok);
            assert!(event.validate().is_ok(), "{ok}");
        }
        for bad in [
            now - chrono::Duration::days(MAX_EVENT_AGE_DAYS + 1),
            now + chrono::Duration::seconds(MAX_EVENT_SKEW_SECS + 60),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ] {
            event.timestamp = Some(bad);
            assert_eq!(
                event.validate().unwrap_err().code(),
                "invalid_request",
                "{bad}"
            );
        }
    }
}
