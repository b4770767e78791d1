//! The request path's clock: one monotonic read per request, and the wall
//! time worked out from it.
//!
//! Reading the wall clock and turning it into a calendar date costs more
//! than the rest of admitting an anonymous request's bookkeeping, and most
//! requests need only the hour (metering) or nothing at all. So the engine
//! reads [`Instant::now`] once per request and adds it to the wall time of
//! an anchor instant; the anchor's wall time is read again at most once a
//! second, so a step of the system clock shows within a second and the
//! drift between the two clocks (at most a few hundred parts per million)
//! never adds up.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// How often the wall time of the anchor is read again.
const RESYNC_NANOS: i64 = 1_000_000_000;

/// A monotonic anchor and its wall time.
#[derive(Debug)]
pub(crate) struct Clock {
    anchor: Instant,
    /// Unix nanoseconds at `anchor`, as last read.
    wall_at_anchor: AtomicI64,
    /// Nanoseconds after `anchor` of the last read of the wall clock.
    synced_at: AtomicI64,
}

/// One reading of the [`Clock`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// The monotonic instant: latencies and cache ages.
    pub(crate) instant: Instant,
    /// Unix time in nanoseconds.
    pub(crate) unix_nanos: i64,
}

impl Now {
    /// The wall time as a calendar date (the one costly step: call it only
    /// where a date is needed).
    pub(crate) fn utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.unix_nanos)
    }

    /// Unix time in whole seconds.
    pub(crate) fn unix_secs(&self) -> i64 {
        self.unix_nanos.div_euclid(1_000_000_000)
    }
}

impl Clock {
    pub(crate) fn new() -> Self {
        let anchor = Instant::now();
        Self {
            anchor,
            wall_at_anchor: AtomicI64::new(unix_nanos_now()),
            synced_at: AtomicI64::new(0),
        }
    }

    /// Now.
    pub(crate) fn now(&self) -> Now {
        let instant = Instant::now();
        let since = nanos(instant.duration_since(self.anchor));
        if since - self.synced_at.load(Ordering::Relaxed) >= RESYNC_NANOS {
            self.synced_at.store(since, Ordering::Relaxed);
            self.wall_at_anchor
                .store(unix_nanos_now().saturating_sub(since), Ordering::Relaxed);
        }
        Now {
            instant,
            unix_nanos: self
                .wall_at_anchor
                .load(Ordering::Relaxed)
                .saturating_add(since),
        }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn unix_nanos_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => nanos(d),
        Err(e) => nanos(e.duration()).saturating_neg(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_the_wall_clock() {
        let clock = Clock::new();
        let now = clock.now();
        let wall = Utc::now();
        let apart = (wall - now.utc()).num_milliseconds().abs();
        assert!(apart < 1_000, "{apart} ms apart");
        assert_eq!(now.unix_secs(), now.utc().timestamp());
        let later = clock.now();
        assert!(later.unix_nanos >= now.unix_nanos);
        assert!(later.instant >= now.instant);
    }

    #[test]
    fn a_changed_wall_time_shows_at_the_next_resync() {
        let clock = Clock::new();
        // As if the system clock had been stepped back an hour since.
        clock
            .wall_at_anchor
            .fetch_sub(3_600_000_000_000, Ordering::Relaxed);
        clock.synced_at.store(-RESYNC_NANOS, Ordering::Relaxed);
        let now = clock.now();
        let apart = (Utc::now() - now.utc()).num_milliseconds().abs();
        assert!(apart < 1_000, "{apart} ms apart");
    }
}
