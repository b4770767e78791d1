//! Rate limits and period quotas: the keys they count under, the quotas they
//! enforce and the answers they give.
//!
//! Every key names its tenant: a [`RateLimitKey`] or [`QuotaKey`] cannot be
//! built without a [`TenantId`], so no counter is ever shared across tenants
//! by mistake.

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::key_id::KeyId;
use crate::label::Label;
use crate::plan::{Period, PeriodWindow};
use crate::tenant::TenantId;

/// `RateLimit-Limit`.
pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A GCRA rate: a sustained number of requests per second and a burst.
///
/// ```
/// use tenancy_core::limit::RateQuota;
/// let q = RateQuota::per_second(10).unwrap();
/// assert_eq!(q.burst.get(), 10);
/// assert!(RateQuota::per_second(0).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateQuota {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// How many may arrive at once.
    pub burst: NonZeroU32,
}

impl RateQuota {
    /// `rps` per second with a burst of `rps`; `None` for zero.
    pub fn per_second(rps: u32) -> Option<Self> {
        let n = NonZeroU32::new(rps)?;
        Some(Self {
            per_second: n,
            burst: n,
        })
    }

    /// The same rate with another burst.
    pub fn with_burst(self, burst: NonZeroU32) -> Self {
        Self { burst, ..self }
    }

    /// Time between two cells at the sustained rate.
    pub fn emission_interval(self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.per_second.get()))
    }
}

/// What a rate-limit bucket counts inside one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateBucket {
    /// The whole tenant: all its keys and users together.
    Tenant,
    /// One API key.
    ApiKey(KeyId),
    /// One route of the tenant.
    Route(Label),
}

/// The key of one rate-limit bucket; always scoped to a tenant.
///
/// ```
/// use tenancy_core::limit::RateLimitKey;
/// use tenancy_core::tenant::TenantId;
///
/// let key = RateLimitKey::tenant(TenantId::new("acme").unwrap());
/// assert_eq!(key.to_key_string(), "rl:{acme}:tenant");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitKey {
    /// The tenant.
    pub tenant: TenantId,
    /// The bucket inside it.
    pub bucket: RateBucket,
}

impl RateLimitKey {
    /// The tenant-wide bucket.
    pub fn tenant(tenant: TenantId) -> Self {
        Self {
            tenant,
            bucket: RateBucket::Tenant,
        }
    }

    /// The bucket of one API key of `tenant`.
    pub fn api_key(tenant: TenantId, key_id: KeyId) -> Self {
        Self {
            tenant,
            bucket: RateBucket::ApiKey(key_id),
        }
    }

    /// The bucket of one route of `tenant`.
    pub fn route(tenant: TenantId, route: Label) -> Self {
        Self {
            tenant,
            bucket: RateBucket::Route(route),
        }
    }

    /// The store key: `rl:{tenant}:tenant`, `rl:{tenant}:key:{key_id}` or
    /// `rl:{tenant}:route:{route}`. The braces are a Redis Cluster hash tag,
    /// so every bucket of one tenant lives in one slot.
    pub fn to_key_string(&self) -> String {
        match &self.bucket {
            RateBucket::Tenant => format!("rl:{{{}}}:tenant", self.tenant),
            RateBucket::ApiKey(k) => format!("rl:{{{}}}:key:{k}", self.tenant),
            RateBucket::Route(r) => format!("rl:{{{}}}:route:{r}", self.tenant),
        }
    }
}

/// One check of a multi-bucket rate-limit call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateCheck {
    /// The bucket.
    pub key: RateLimitKey,
    /// Its quota.
    pub quota: RateQuota,
}

/// Where a caller stands against its rate limit: what the `RateLimit-*`
/// headers say.
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::limit::RateLimitStatus;
///
/// let s = RateLimitStatus { limit: 10, remaining: 3, reset: Duration::from_millis(700), retry_after: Duration::ZERO };
/// let mut headers = http::HeaderMap::new();
/// s.write_headers(&mut headers);
/// assert_eq!(headers["ratelimit-limit"], "10");
/// assert_eq!(headers["ratelimit-remaining"], "3");
/// assert_eq!(headers["ratelimit-reset"], "1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The burst size of the binding bucket.
    pub limit: u32,
    /// Requests that may still be made at once.
    pub remaining: u32,
    /// Time until the bucket is full again.
    pub reset: Duration,
    /// Time until the next request would be allowed (zero when allowed now).
    pub retry_after: Duration,
}

impl RateLimitStatus {
    /// No bucket was checked: nothing to report.
    pub const NONE: Self = Self {
        limit: 0,
        remaining: 0,
        reset: Duration::ZERO,
        retry_after: Duration::ZERO,
    };

    /// Writes `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
    /// (whole seconds, rounded up).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        self.each_header(|name, value| {
            headers.insert(name.clone(), value);
        });
    }

    /// Passes each `RateLimit-*` header to `set`.
    pub fn each_header(&self, mut set: impl FnMut(&HeaderName, HeaderValue)) {
        set(&RATELIMIT_LIMIT, number_header(u64::from(self.limit)));
        set(
            &RATELIMIT_REMAINING,
            number_header(u64::from(self.remaining)),
        );
        set(&RATELIMIT_RESET, seconds_header(self.reset));
    }

    /// The tighter of two statuses: the one with fewer remaining; a refusal
    /// keeps the longer wait.
    pub fn tighter(self, other: Self) -> Self {
        let mut t = if other.remaining < self.remaining {
            other
        } else {
            self
        };
        t.retry_after = self.retry_after.max(other.retry_after);
        t.reset = if other.remaining == self.remaining {
            self.reset.max(other.reset)
        } else {
            t.reset
        };
        t
    }
}

/// Whole seconds, rounded up, as a header value (`RateLimit-Reset`,
/// `Retry-After`).
pub(crate) fn seconds_header(d: Duration) -> HeaderValue {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    number_header(secs)
}

/// `n` as a header value. Numbers below [`STATIC_NUMBERS`] are slices of
/// one static table of digits, so the `RateLimit-*` headers of every limit
/// below 10,000 per second allocate nothing; larger numbers are formatted.
fn number_header(n: u64) -> HeaderValue {
    // The most common numbers are made once, as header values.
    static SMALL: std::sync::LazyLock<Box<[HeaderValue]>> = std::sync::LazyLock::new(|| {
        (0..SMALL_NUMBERS)
            .filter_map(static_number)
            .map(HeaderValue::from_static)
            .collect()
    });
    if let Some(value) = usize::try_from(n).ok().and_then(|i| SMALL.get(i)) {
        return value.clone();
    }
    match static_number(n) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(n),
    }
}

/// How many numbers [`number_header`] keeps made as header values (40 KB,
/// once per process); the rest below [`STATIC_NUMBERS`] are made from the
/// static digits each time, without allocating.
const SMALL_NUMBERS: u64 = 1024;

/// How many numbers [`DIGITS`] holds: 0 to 9,999.
const STATIC_NUMBERS: u64 = 10_000;

/// 0, 1, …, 9999 written one after the other (38,890 bytes).
static DIGITS: [u8; DIGITS_LEN] = digits();

/// [`DIGITS`] as text, checked once, when the program is compiled.
static DIGITS_TEXT: &str = match std::str::from_utf8(&DIGITS) {
    Ok(text) => text,
    Err(_) => panic!("the digits table is ASCII"),
};

const DIGITS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9000 * 4;

const fn digits() -> [u8; DIGITS_LEN] {
    let mut out = [0u8; DIGITS_LEN];
    let mut n = 0;
    let mut at = 0;
    while n < 10_000 {
        let width = digit_width(n);
        let mut i = 0;
        let mut rest = n;
        while i < width {
            out[at + width - 1 - i] = b'0' + (rest % 10) as u8;
            rest /= 10;
            i += 1;
        }
        at += width;
        n += 1;
    }
    out
}

const fn digit_width(n: usize) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1000 {
        3
    } else {
        4
    }
}

/// The static text of a header value that is a number below 10,000 (as
/// the `RateLimit-*` values mostly are), so that an adapter whose framework
/// has its own header types can make its value without allocating.
///
/// ```
/// use tenancy_core::limit::static_number_text;
/// assert_eq!(static_number_text(b"9999"), Some("9999"));
/// assert_eq!(static_number_text(b"10000"), None);
/// assert_eq!(static_number_text(b"012"), None);
/// assert_eq!(static_number_text(b"abc"), None);
/// ```
pub fn static_number_text(value: &[u8]) -> Option<&'static str> {
    if value.is_empty() || value.len() > 4 || (value.len() > 1 && value[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    static_number(n)
}

/// `n` in decimal as a slice of [`DIGITS_TEXT`], when it is there.
fn static_number(n: u64) -> Option<&'static str> {
    if n >= STATIC_NUMBERS {
        return None;
    }
    let n = usize::try_from(n).ok()?;
    let start = match digit_width(n) {
        1 => n,
        2 => 10 + (n - 10) * 2,
        3 => 190 + (n - 100) * 3,
        _ => 2890 + (n - 1000) * 4,
    };
    DIGITS_TEXT.get(start..start + digit_width(n))
}

/// The answer of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The status to report, of the tightest bucket.
    pub status: RateLimitStatus,
}

/// The key of one period counter: tenant, budget and calendar window.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use tenancy_core::label::Label;
/// use tenancy_core::limit::QuotaKey;
/// use tenancy_core::plan::Period;
/// use tenancy_core::tenant::TenantId;
///
/// let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
/// let key = QuotaKey::new(TenantId::new("acme")?, Label::new("events")?, Period::Month, at);
/// assert_eq!(key.to_key_string(), "{acme}:budget:events:month:1793491200");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    /// The tenant.
    pub tenant: TenantId,
    /// The budget's name.
    pub budget: Label,
    /// The budget's period.
    pub period: Period,
    /// The window that holds the charge.
    pub window: PeriodWindow,
}

impl QuotaKey {
    /// The key of `budget` for `tenant` in the `period` window that holds `at`.
    pub fn new(tenant: TenantId, budget: Label, period: Period, at: DateTime<Utc>) -> Self {
        Self {
            tenant,
            budget,
            period,
            window: period.window(at),
        }
    }

    /// The store key: `{tenant}:budget:{budget}:{period}:{window start, unix s}`.
    pub fn to_key_string(&self) -> String {
        format!(
            "{{{}}}:budget:{}:{}:{}",
            self.tenant,
            self.budget,
            self.period.as_str(),
            self.window.start.timestamp()
        )
    }

    /// Time from `now` until the window ends (zero once it has).
    pub fn time_to_reset(&self, now: DateTime<Utc>) -> Duration {
        (self.window.end - now).to_std().unwrap_or(Duration::ZERO)
    }
}

/// The answer of a quota charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCharge {
    /// Charged; the window's total is now `used`.
    Charged {
        /// Total in the window after the charge.
        used: u64,
    },
    /// Refused: the charge would pass the limit; nothing was charged.
    Exceeded {
        /// Total in the window, unchanged.
        used: u64,
    },
}

impl QuotaCharge {
    /// Whether the charge went through.
    pub fn is_charged(self) -> bool {
        matches!(self, QuotaCharge::Charged { .. })
    }

    /// The window's total after the call.
    pub fn used(self) -> u64 {
        match self {
            QuotaCharge::Charged { used } | QuotaCharge::Exceeded { used } => used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn numbers_are_written_the_same_made_once_or_not() {
        for n in [
            0,
            7,
            9,
            10,
            99,
            100,
            999,
            1000,
            1234,
            9999,
            10_000,
            65_536,
            u64::MAX,
        ] {
            assert_eq!(number_header(n).to_str().unwrap(), n.to_string());
        }
        assert!(static_number(9999).is_some());
        assert!(static_number(10_000).is_none());
        assert_eq!(seconds_header(Duration::from_millis(1001)), "2");
        assert_eq!(seconds_header(Duration::ZERO), "0");
    }

    #[test]
    fn keys_carry_the_tenant_hash_tag() {
        let t = TenantId::new("acme").unwrap();
        let k = RateLimitKey::api_key(t.clone(), KeyId::new("k1").unwrap());
        assert_eq!(k.to_key_string(), "rl:{acme}:key:k1");
        let r = RateLimitKey::route(t.clone(), Label::new("/api/v1/telemetry").unwrap());
        assert_eq!(r.to_key_string(), "rl:{acme}:route:/api/v1/telemetry");
    }

    #[test]
    fn quota_windows_roll_over_with_the_calendar() {
        let t = TenantId::new("acme").unwrap();
        let b = Label::new("events").unwrap();
        let before = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let k1 = QuotaKey::new(t.clone(), b.clone(), Period::Month, before);
        let k2 = QuotaKey::new(t, b, Period::Month, after);
        assert_ne!(k1, k2);
        assert_eq!(k1.time_to_reset(before), Duration::from_secs(1));
        assert_eq!(k1.time_to_reset(after), Duration::ZERO);
    }

    #[test]
    fn tighter_picks_fewest_remaining_and_longest_wait() {
        let a = RateLimitStatus {
            limit: 100,
            remaining: 50,
            reset: Duration::from_secs(1),
            retry_after: Duration::ZERO,
        };
        let b = RateLimitStatus {
            limit: 5,
            remaining: 0,
            reset: Duration::from_secs(2),
            retry_after: Duration::from_millis(300),
        };
        let t = a.tighter(b);
        assert_eq!((t.limit, t.remaining), (5, 0));
        assert_eq!(t.retry_after, Duration::from_millis(300));
        assert_eq!(b.tighter(a), t);
    }
}
