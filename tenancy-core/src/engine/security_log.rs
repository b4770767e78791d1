//! The platform security log: refusals of callers without a verified
//! credential, aggregated per client address and reason.
//!
//! Such refusals never write into a tenant's audit log: whoever sends them
//! is nobody's verified identity, and the tenant they name (if any) is
//! attacker-chosen. Here they cost one counter each, in a table of at most
//! [`SECURITY_LOG_CAPACITY`] rows. When the table is full, rows not seen for
//! [`SECURITY_LOG_RETENTION`] are dropped; if it is still full, the refusal
//! is counted in the reason's row without an address (`client_addr: None`),
//! so a flood from many addresses bends the table but never grows it.

use std::net::IpAddr;
use std::time::Duration;

use crate::ConcurrentMap;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Refusals of unverified callers, by reason (the problem code).
pub const SECURITY_REFUSALS_TOTAL: &str = "tenancy_security_refusals_total";

/// Most rows the security log holds.
pub const SECURITY_LOG_CAPACITY: usize = 10_000;

/// How long a row stays once the table is full and it is not seen again.
pub const SECURITY_LOG_RETENTION: Duration = Duration::from_secs(3600);

/// One row of the security log: how often one address was refused for one
/// reason, and when.
///
/// ```
/// use tenancy_core::engine::SecurityLogEntry;
/// # let entry = SecurityLogEntry { client_addr: None, reason: "unauthenticated", count: 2,
/// #     first_seen: chrono::Utc::now(), last_seen: chrono::Utc::now() };
/// assert_eq!(entry.reason, "unauthenticated");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityLogEntry {
    /// The client address (IPv6 by its /64); `None` for refusals without an
    /// address, or counted after the table filled up.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub client_addr: Option<IpAddr>,
    /// The problem code of the refusal.
    pub reason: &'static str,
    /// How many refusals.
    pub count: u64,
    /// The first one.
    pub first_seen: DateTime<Utc>,
    /// The latest one.
    pub last_seen: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    count: u64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

type RowKey = (Option<IpAddr>, &'static str);

#[derive(Default)]
pub(crate) struct SecurityLog {
    rows: ConcurrentMap<RowKey, Row>,
}

impl SecurityLog {
    /// Counts one refusal of `addr` for `reason` at `now`.
    pub(crate) fn record(&self, addr: Option<IpAddr>, reason: &'static str, now: DateTime<Utc>) {
        metrics::counter!(SECURITY_REFUSALS_TOTAL, "reason" => reason).increment(1);
        let addr = addr.map(network_of);
        let mut key = (addr, reason);
        if !self.rows.contains_key(&key) && self.rows.len() >= SECURITY_LOG_CAPACITY {
            let horizon =
                now - chrono::Duration::from_std(SECURITY_LOG_RETENTION).unwrap_or_default();
            self.rows.retain(|_, row| row.last_seen >= horizon);
            if self.rows.len() >= SECURITY_LOG_CAPACITY {
                key = (None, reason);
            }
        }
        self.rows
            .entry(key)
            .and_modify(|row| {
                row.count = row.count.saturating_add(1);
                row.last_seen = now;
            })
            .or_insert(Row {
                count: 1,
                first_seen: now,
                last_seen: now,
            });
    }

    /// The rows, most refused first.
    pub(crate) fn entries(&self) -> Vec<SecurityLogEntry> {
        let mut entries: Vec<SecurityLogEntry> = self
            .rows
            .iter()
            .map(|e| SecurityLogEntry {
                client_addr: e.key().0,
                reason: e.key().1,
                count: e.count,
                first_seen: e.first_seen,
                last_seen: e.last_seen,
            })
            .collect();
        entries.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
        entries
    }
}

/// IPv6 addresses by their /64, so one host cannot spread over 2^64 rows;
/// IPv4 (and IPv4-mapped IPv6) addresses as they are.
pub(crate) fn network_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_aggregate_per_address_and_reason() {
        let log = SecurityLog::default();
        let now = Utc::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            log.record(Some(a), "unauthenticated", now);
        }
        log.record(Some(a), "invalid_api_key", now);
        log.record(None, "unauthenticated", now);
        let entries = log.entries();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            (entries[0].client_addr, entries[0].reason, entries[0].count),
            (Some(a), "unauthenticated", 3)
        );
    }

    #[test]
    fn a_flood_from_many_addresses_never_grows_the_table() {
        let log = SecurityLog::default();
        let now = Utc::now();
        for i in 0..(SECURITY_LOG_CAPACITY as u32 + 5_000) {
            log.record(Some(IpAddr::from(i.to_be_bytes())), "invalid_token", now);
        }
        let entries = log.entries();
        assert_eq!(entries.len(), SECURITY_LOG_CAPACITY + 1);
        let overflow = entries.iter().find(|e| e.client_addr.is_none()).unwrap();
        assert_eq!(overflow.count, 5_000);
        // Once rows are old, new addresses get rows of their own again.
        let later = now + chrono::Duration::hours(2);
        log.record(
            Some("198.51.100.1".parse().unwrap()),
            "invalid_token",
            later,
        );
        assert!(log.entries().len() <= 2);
    }

    #[test]
    fn ipv6_rows_are_per_64() {
        let log = SecurityLog::default();
        let now = Utc::now();
        log.record(Some("2001:db8::1".parse().unwrap()), "unauthenticated", now);
        log.record(Some("2001:db8::2".parse().unwrap()), "unauthenticated", now);
        let entries = log.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].client_addr, Some("2001:db8::".parse().unwrap()));
    }
}
