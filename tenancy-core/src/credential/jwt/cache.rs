//! The verified-token cache: repeats of a token cost a hash of its
//! signature and one comparison of the rest, whatever the algorithm.
//!
//! Entries are found by the first bytes of the signature (signatures are
//! unpredictable, so that spreads them as well as the whole token would)
//! and hold the whole token; a hit needs the whole token to be equal, so a
//! reused signature on an edited payload never hits. Only tokens that
//! verified are ever inserted. An entry is not served after `exp` + leeway.
//! When full, expired entries go first, then everything.

use std::fmt;

use crate::ConcurrentMap;

use super::VerifiedToken;

/// Bytes of the signature segment that place an entry.
const KEY_LEN: usize = 24;

/// The first [`KEY_LEN`] bytes of a signature segment, zero-padded.
fn key(signature: &str) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    let n = signature.len().min(KEY_LEN);
    key[..n].copy_from_slice(&signature.as_bytes()[..n]);
    key
}

pub(super) struct TokenCache {
    capacity: usize,
    entries: ConcurrentMap<[u8; KEY_LEN], Entry>,
}

struct Entry {
    whole: Box<str>,
    token: VerifiedToken,
    valid_until: i64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache of up to `capacity` tokens; `None` for 0.
    pub(super) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            capacity,
            entries: ConcurrentMap::default(),
        })
    }

    /// What `token` (whose signature segment is `signature`) verified to,
    /// if cached and still valid at `now`.
    pub(super) fn get(&self, token: &str, signature: &str, now: i64) -> Option<VerifiedToken> {
        let entry = self.entries.get(&key(signature))?;
        (now <= entry.valid_until && *entry.whole == *token).then(|| entry.token.clone())
    }

    /// Remembers a token that verified, until `valid_until`.
    pub(super) fn insert(
        &self,
        whole: &str,
        signature: &str,
        token: &VerifiedToken,
        valid_until: i64,
        now: i64,
    ) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.valid_until >= now);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(
            key(signature),
            Entry {
                whole: whole.into(),
                token: token.clone(),
                valid_until,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
