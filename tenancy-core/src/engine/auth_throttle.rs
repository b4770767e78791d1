//! The pre-authentication throttle: failed authentications are counted per
//! client address with GCRA ([`crate::gcra`]); an address over
//! its allowance is answered `429 rate_limited` before its credential is
//! looked at, so a flood of guessed keys or forged tokens costs no store
//! lookup and no signature check.
//!
//! Memory is bounded: IPv6 addresses count per /64 (one host's whole
//! allocation), at most `max_addresses` addresses hold state, and an address
//! whose bucket is full again is idle and swept away. Past the cap (after a
//! sweep), failures of addresses not yet tracked are counted in
//! `tenancy_auth_throttle_untracked_total` but not throttled: an attacker
//! with more addresses than the cap must never be able to lock out callers
//! whose authentications succeed, which any shared bucket would allow.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::num::NonZeroU32;

use crate::ConcurrentMap;

use super::security_log::network_of;
use crate::config::FailureThrottleConfig;
use crate::gcra::Gcra;
use crate::limit::RateQuota;

/// The key an address counts under: IPv4 as is, IPv6 by its /64.
type AddressKey = IpAddr;

/// Failures not throttled because `max_addresses` addresses hold state.
pub const AUTH_THROTTLE_UNTRACKED_TOTAL: &str = "tenancy_auth_throttle_untracked_total";

/// Longest time between two sweeps of idle addresses.
const SWEEP_INTERVAL_NS: u64 = 10_000_000_000;

pub(crate) struct AuthThrottle {
    /// Failures per second and burst, counted in nanoseconds.
    gcra: Gcra,
    /// Theoretical arrival time of each address's next failure, in
    /// nanoseconds since `started`; idle once it is in the past.
    tats: ConcurrentMap<AddressKey, u64>,
    /// Addresses over their allowance, until when. Empty but under attack,
    /// so the check on every request is one atomic load.
    blocked: ConcurrentMap<AddressKey, u64>,
    blocked_len: AtomicUsize,
    max_addresses: usize,
    started: Instant,
    last_sweep: AtomicU64,
}

impl AuthThrottle {
    /// `None` when the throttle is turned off.
    pub(crate) fn new(config: &FailureThrottleConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let quota =
            RateQuota::per_second(config.per_second)?.with_burst(NonZeroU32::new(config.burst)?);
        Some(Self {
            gcra: Gcra::nanos(quota),
            tats: ConcurrentMap::default(),
            blocked: ConcurrentMap::default(),
            blocked_len: AtomicUsize::new(0),
            max_addresses: config.max_addresses.max(1),
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
        })
    }

    /// How long `addr` must wait before its credentials are looked at again;
    /// `None` when it may go on.
    pub(crate) fn check(&self, addr: IpAddr) -> Option<Duration> {
        if self.blocked_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let key = network_of(addr);
        let until = *self.blocked.get(&key)?;
        let now = self.now();
        if until > now {
            return Some(Duration::from_nanos(until - now));
        }
        if self.blocked.remove_if(&key, |_, u| *u <= now).is_some() {
            self.blocked_len.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    /// Counts one failed authentication of `addr`.
    pub(crate) fn failed(&self, addr: IpAddr) {
        let now = self.now();
        self.sweep_if_due(now);
        let key = network_of(addr);
        if !self.tats.contains_key(&key) && self.tats.len() >= self.max_addresses {
            metrics::counter!(AUTH_THROTTLE_UNTRACKED_TOTAL).increment(1);
            return;
        }
        let wait = {
            let mut tat = self.tats.entry(key).or_insert(0);
            *tat = self.gcra.take(*tat, now).tat;
            // How long until one more failure would be counted.
            self.gcra.take(*tat, now).status.retry_after
        };
        let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        if wait > 0 && self.blocked.insert(key, now.saturating_add(wait)).is_none() {
            self.blocked_len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Addresses holding state (failure buckets and blocks).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tats.len() + self.blocked.len()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops idle addresses when the cap is reached or the last sweep is
    /// old enough. One caller sweeps; the others go on.
    fn sweep_if_due(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        let due =
            now.saturating_sub(last) >= SWEEP_INTERVAL_NS || self.tats.len() >= self.max_addresses;
        if !due
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.tats.retain(|_, tat| *tat > now);
        self.tats.shrink_to_fit();
        self.blocked.retain(|_, until| *until > now);
        self.blocked.shrink_to_fit();
        self.blocked_len
            .store(self.blocked.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_second: u32, burst: u32, max_addresses: usize) -> AuthThrottle {
        AuthThrottle::new(&FailureThrottleConfig {
            enabled: true,
            per_second,
            burst,
            max_addresses,
        })
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_of_failures_then_a_wait() {
        let t = throttle(10, 50, 100);
        let a = ip("192.0.2.1");
        for i in 0..49 {
            t.failed(a);
            assert_eq!(t.check(a), None, "failure {i} is within the burst");
        }
        t.failed(a);
        let wait = t.check(a).expect("the 50th failure uses the burst up");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Other addresses are untouched.
        assert_eq!(t.check(ip("192.0.2.2")), None);
        std::thread::sleep(wait + Duration::from_millis(5));
        assert_eq!(t.check(a), None, "one more failure may be tried");
        t.failed(a);
        assert!(t.check(a).is_some(), "and only one");
    }

    #[test]
    fn an_ended_block_is_forgotten_on_the_next_check() {
        let t = throttle(1000, 1, 100);
        let a = ip("192.0.2.1");
        t.failed(a);
        t.failed(a);
        assert!(t.check(a).is_some());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.check(a), None);
        assert_eq!(t.blocked.len(), 0);
        assert_eq!(
            t.blocked_len.load(Ordering::Relaxed),
            0,
            "back on the fast path"
        );
    }

    #[test]
    fn failures_while_blocked_do_not_lengthen_the_block() {
        let t = throttle(10, 5, 100);
        let a = ip("192.0.2.1");
        for _ in 0..20 {
            t.failed(a);
        }
        let wait = t.check(a).expect("blocked");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(t.check(a), None);
    }

    #[test]
    fn idle_addresses_make_room_for_new_ones() {
        let t = throttle(100, 2, 64);
        for i in 0..64u32 {
            t.failed(IpAddr::from(i.to_be_bytes()));
        }
        std::thread::sleep(Duration::from_millis(50));
        let newcomer = ip("198.51.100.9");
        for _ in 0..3 {
            t.failed(newcomer);
        }
        assert!(
            t.check(newcomer).is_some(),
            "tracked once idle ones are swept"
        );
    }

    #[test]
    fn a_person_mistyping_never_meets_it() {
        let t = throttle(10, 50, 100);
        let a = ip("192.0.2.1");
        for _ in 0..20 {
            t.failed(a);
        }
        assert_eq!(t.check(a), None);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = throttle(10, 2, 100);
        t.failed(ip("2001:db8::1"));
        t.failed(ip("2001:db8::2:1"));
        assert!(t.check(ip("2001:db8::ffff")).is_some());
        assert_eq!(t.check(ip("2001:db8:0:1::1")), None);
        t.failed(ip("::ffff:192.0.2.9"));
        t.failed(ip("192.0.2.9"));
        assert!(t.check(ip("192.0.2.9")).is_some());
    }

    #[test]
    fn memory_stays_bounded_and_nobody_else_is_locked_out() {
        let t = throttle(1, 2, 64);
        for i in 0..10_000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            t.failed(addr);
            t.failed(addr);
        }
        assert!(t.len() <= 2 * 64, "{} entries hold state", t.len());
        // Addresses tracked before the cap are throttled…
        assert!(t.check(IpAddr::from(1u32.to_be_bytes())).is_some());
        // …and an address that never failed is never refused.
        assert_eq!(t.check(ip("198.51.100.7")), None);
    }
}
