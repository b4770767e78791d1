//! [`Secret`]: a string that never shows itself in `Debug` or `Display`.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret string (JWT secret, API key pepper). Its `Debug` and `Display`
/// print `[redacted]`; the value is read with [`expose`](Self::expose). It
/// deserializes from a plain string and never serializes.
///
/// ```
/// use tenancy_core::secret::Secret;
/// let s = Secret::new("hunter2-hunter2-hunter2-hunter2!");
/// assert_eq!(format!("{s:?}"), "Secret([redacted])");
/// assert_eq!(s.to_string(), "[redacted]");
/// assert_eq!(s.expose(), "hunter2-hunter2-hunter2-hunter2!");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call it only where the value is used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}
