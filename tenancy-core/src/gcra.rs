//! GCRA, the generic cell rate algorithm, written once for every limiter of
//! the workspace: the in-memory rate limiter, the pre-authentication
//! throttle, and (as the same arithmetic in Lua, checked against this one by
//! the store acceptance suite) the Redis limiter.
//!
//! A bucket is one number, its theoretical arrival time (TAT): when the
//! bucket would be full again if nothing more arrived. A request takes one
//! cell; it is allowed when the TAT it would leave is at most `burst`
//! emission intervals ahead of now. Time is whatever monotonic unit the
//! caller counts in (nanoseconds in memory, microseconds in Redis), as long
//! as the interval is in the same unit.
//!
//! ```
//! use std::time::Duration;
//! use tenancy_core::gcra::Gcra;
//! use tenancy_core::limit::RateQuota;
//!
//! let gcra = Gcra::nanos(RateQuota::per_second(2).unwrap());
//! let first = gcra.take(0, 0);
//! let second = gcra.take(first.tat, 0);
//! let third = gcra.take(second.tat, 0);
//! assert!(first.allowed && second.allowed && !third.allowed);
//! assert_eq!(second.status.remaining, 0);
//! assert_eq!(third.status.retry_after, Duration::from_millis(500));
//! // Refused requests leave the bucket as it was.
//! assert_eq!(third.tat, second.tat);
//! ```

use std::time::Duration;

use crate::limit::{RateDecision, RateLimitStatus, RateQuota};

/// One bucket's rule: the emission interval and the burst, in a unit of
/// time the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time between two cells at the sustained rate (at least 1).
    interval: u64,
    /// Cells that may be taken at once (at least 1).
    burst: u32,
    /// Nanoseconds per unit, to report durations.
    unit_ns: u64,
}

/// What taking one cell did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Whether the cell was granted.
    pub allowed: bool,
    /// The bucket's TAT afterwards (unchanged when refused).
    pub tat: u64,
    /// What the `RateLimit-*` headers say of this bucket.
    pub status: RateLimitStatus,
}

impl Gcra {
    /// `quota` counted in nanoseconds.
    pub fn nanos(quota: RateQuota) -> Self {
        Self::with_unit(quota, 1)
    }

    /// `quota` counted in microseconds (the Redis limiter's unit).
    pub fn micros(quota: RateQuota) -> Self {
        Self::with_unit(quota, 1_000)
    }

    fn with_unit(quota: RateQuota, unit_ns: u64) -> Self {
        let per_second = u64::from(quota.per_second.get());
        Self {
            interval: (1_000_000_000 / unit_ns / per_second).max(1),
            burst: quota.burst.get(),
            unit_ns,
        }
    }

    /// The emission interval, in the unit.
    pub fn interval(self) -> u64 {
        self.interval
    }

    /// The burst.
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// Takes one cell at `now` from a bucket whose TAT is `tat` (0 for a
    /// bucket never used, or one that has expired).
    pub fn take(self, tat: u64, now: u64) -> Cell {
        let tat = tat.max(now);
        let new_tat = tat.saturating_add(self.interval);
        // Allowed when the new TAT is at most `burst` intervals ahead.
        let horizon = now.saturating_add(self.interval.saturating_mul(u64::from(self.burst)));
        if new_tat <= horizon {
            let remaining = (horizon - new_tat) / self.interval;
            Cell {
                allowed: true,
                tat: new_tat,
                status: RateLimitStatus {
                    limit: self.burst,
                    remaining: u32::try_from(remaining).unwrap_or(u32::MAX).min(self.burst),
                    reset: self.duration(new_tat - now),
                    retry_after: Duration::ZERO,
                },
            }
        } else {
            Cell {
                allowed: false,
                tat,
                status: RateLimitStatus {
                    limit: self.burst,
                    remaining: 0,
                    reset: self.duration(tat - now),
                    retry_after: self.duration(new_tat - horizon),
                },
            }
        }
    }

    fn duration(self, units: u64) -> Duration {
        Duration::from_nanos(units.saturating_mul(self.unit_ns))
    }
}

/// The decision over several buckets: allowed when every one allowed, with
/// the status of the tightest ([`RateLimitStatus::tighter`]). No bucket at
/// all: allowed, with nothing to report.
pub fn decide(cells: impl IntoIterator<Item = (bool, RateLimitStatus)>) -> RateDecision {
    let mut decision = RateDecision {
        allowed: true,
        status: RateLimitStatus::NONE,
    };
    let mut first = true;
    for (allowed, status) in cells {
        decision.allowed &= allowed;
        decision.status = if first {
            status
        } else {
            decision.status.tighter(status)
        };
        first = false;
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn quota(rps: u32, burst: u32) -> RateQuota {
        RateQuota::per_second(rps)
            .unwrap()
            .with_burst(NonZeroU32::new(burst).unwrap())
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let gcra = Gcra::nanos(quota(10, 3));
        let mut tat = 0;
        for remaining in [2, 1, 0] {
            let cell = gcra.take(tat, 1_000);
            assert!(cell.allowed);
            assert_eq!(cell.status.remaining, remaining);
            tat = cell.tat;
        }
        let refused = gcra.take(tat, 1_000);
        assert!(!refused.allowed);
        assert_eq!(refused.tat, tat);
        assert_eq!(refused.status.retry_after, Duration::from_millis(100));
        assert_eq!(refused.status.reset, Duration::from_millis(300));
        // One interval later, one cell is back.
        let later = gcra.take(tat, 1_000 + 100_000_000);
        assert!(later.allowed);
        assert_eq!(later.status.remaining, 0);
    }

    #[test]
    fn an_idle_bucket_is_full_again() {
        let gcra = Gcra::micros(quota(1_000, 5));
        let cell = gcra.take(17, 1_000_000);
        assert!(cell.allowed);
        assert_eq!(cell.status.remaining, 4);
        assert_eq!(cell.tat, 1_000_000 + 1_000);
    }

    #[test]
    fn rates_above_the_unit_clamp_to_one_unit() {
        let gcra = Gcra::micros(quota(u32::MAX, 7));
        assert_eq!(gcra.interval(), 1);
        assert_eq!(gcra.burst(), 7);
    }

    #[test]
    fn the_tightest_bucket_decides() {
        let tight = Gcra::nanos(quota(2, 2)).take(0, 0);
        let roomy = Gcra::nanos(quota(100, 100)).take(0, 0);
        let d = decide([(roomy.allowed, roomy.status), (tight.allowed, tight.status)]);
        assert!(d.allowed);
        assert_eq!(d.status.limit, 2);
        assert_eq!(d.status.remaining, 1);
        let d = decide([(true, roomy.status), (false, tight.status)]);
        assert!(!d.allowed);
        assert!(decide([]).allowed);
    }
}
