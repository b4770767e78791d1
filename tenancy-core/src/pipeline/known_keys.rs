//! API keys known good: the digests of keys that verified within the last
//! minute, so that the failure throttle can serve a good caller from an
//! address another client on it has pushed over its allowance, without a
//! store lookup for anyone else.
//!
//! Only keys that verified are remembered, so an outsider cannot fill the
//! map; it holds at most `capacity` digests (when full, the old ones go
//! first, then everything). A digest found here only lets its request past
//! the throttle: the key is then looked up and checked as any other, so a
//! revocation still counts from the next request.

use crate::ConcurrentMap;
use crate::credential::ApiKeyDigest;

/// How long a key stays known after it verified, in nanoseconds.
const WINDOW_NANOS: i64 = 60_000_000_000;

pub(crate) struct KnownKeys {
    capacity: usize,
    /// When each key last verified, in Unix nanoseconds.
    verified_at: ConcurrentMap<ApiKeyDigest, i64>,
}

impl std::fmt::Debug for KnownKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKeys")
            .field("capacity", &self.capacity)
            .field("len", &self.verified_at.len())
            .finish()
    }
}

impl KnownKeys {
    /// A map of up to `capacity` keys; `None` for 0.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            capacity,
            verified_at: ConcurrentMap::default(),
        })
    }

    /// Remembers that the key of `digest` verified at `now` (written at
    /// most once per half window: a read on the request path otherwise).
    pub(crate) fn verified(&self, digest: &ApiKeyDigest, now: i64) {
        if self
            .verified_at
            .get(digest)
            .is_some_and(|at| now.saturating_sub(*at) < WINDOW_NANOS / 2)
        {
            return;
        }
        if self.verified_at.len() >= self.capacity {
            self.verified_at
                .retain(|_, at| now.saturating_sub(*at) < WINDOW_NANOS);
            if self.verified_at.len() >= self.capacity {
                self.verified_at.clear();
            }
        }
        self.verified_at.insert(*digest, now);
    }

    /// Whether the key of `digest` verified within the window before `now`.
    pub(crate) fn contains(&self, digest: &ApiKeyDigest, now: i64) -> bool {
        self.verified_at
            .get(digest)
            .is_some_and(|at| now.saturating_sub(*at) < WINDOW_NANOS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{ApiKeyHasher, ApiKeySecret, new_key_id};

    fn digest() -> ApiKeyDigest {
        let key = ApiKeySecret::generate("tnk", new_key_id().unwrap()).unwrap();
        ApiKeyHasher::new("tnk", None).digest(key.expose()).unwrap()
    }

    #[test]
    fn a_key_is_known_for_a_minute_after_it_verified() {
        let known = KnownKeys::new(10).unwrap();
        let (a, b) = (digest(), digest());
        known.verified(&a, 1_000);
        assert!(known.contains(&a, 1_000));
        assert!(known.contains(&a, 1_000 + WINDOW_NANOS - 1));
        assert!(!known.contains(&a, 1_000 + WINDOW_NANOS));
        assert!(!known.contains(&b, 1_000), "never verified");
        // Verifying again moves the window.
        known.verified(&a, 1_000 + WINDOW_NANOS);
        assert!(known.contains(&a, 1_000 + WINDOW_NANOS + 10));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let known = KnownKeys::new(4).unwrap();
        let digests: Vec<_> = (0..10).map(|_| digest()).collect();
        for (i, d) in digests.iter().enumerate() {
            known.verified(d, i64::try_from(i).unwrap());
            assert!(known.verified_at.len() <= 4);
        }
        assert!(known.contains(&digests[9], 10), "the newest stays");
        assert!(KnownKeys::new(0).is_none());
    }
}
