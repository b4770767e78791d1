//! [`KeyId`]: the public id of an API key, which stores, rate-limit buckets
//! and audit events name. Apart from [`crate::credential`] (which re-exports
//! it), so that naming a key needs nothing of how keys are checked.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The public id of an API key: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
///
/// ```
/// use tenancy_core::credential::KeyId;
/// assert!(KeyId::new("key_01hx").is_ok());
/// assert!(KeyId::new("a:b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

/// A string that is not a valid [`KeyId`]. It never repeats the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidKeyId;

/// The longest key id, in bytes.
pub const KEY_ID_MAX_LEN: usize = 64;

impl KeyId {
    /// Validates `id`.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidKeyId> {
        let id = id.as_ref();
        let ok = !id.is_empty()
            && id.len() <= KEY_ID_MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(Arc::from(id)))
        } else {
            Err(InvalidKeyId)
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string (a reference-count bump).
    pub fn to_arc(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl std::str::FromStr for KeyId {
    type Err = InvalidKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", &*self.0)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        KeyId::new(&*raw).map_err(serde::de::Error::custom)
    }
}
