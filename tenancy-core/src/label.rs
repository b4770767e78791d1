//! [`Label`]: a validated short name for budgets, event types, routes and
//! audit actions, safe to put in a store key, a query or a metric label.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest label accepted, in bytes.
pub const LABEL_MAX_LEN: usize = 128;

/// A validated name of 1 to 128 characters from `A-Z a-z 0-9 _ . - /`.
///
/// Braces, colons, spaces, quotes and non-ASCII are refused, so a label can
/// never break out of a store key's tenant hash tag or a query.
///
/// ```
/// use tenancy_core::label::Label;
///
/// assert!(Label::new("llm_tokens").is_ok());
/// assert!(Label::new("tenant.create").is_ok());
/// assert!(Label::new("a:{b}").is_err());
/// assert!(Label::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(Arc<str>);

/// A string that is not a valid [`Label`]. It never repeats the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a name must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', '-' or '/'")]
pub struct InvalidLabel;

impl Label {
    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidLabel> {
        let name = name.as_ref();
        let ok = !name.is_empty()
            && name.len() <= LABEL_MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
        if ok {
            Ok(Self(Arc::from(name)))
        } else {
            Err(InvalidLabel)
        }
    }

    /// The label as a string slice.
    ///
    /// ```
    /// # use tenancy_core::label::Label;
    /// assert_eq!(Label::new("events").unwrap().as_str(), "events");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Label {
    type Err = InvalidLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", &*self.0)
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Label::new(&*raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn accepts_the_alphabet(s in "[A-Za-z0-9_./-]{1,128}") {
            prop_assert!(Label::new(&s).is_ok());
        }

        #[test]
        fn refuses_anything_else(a in "[a-z]{0,4}", bad in "[^A-Za-z0-9_./-]", b in "[a-z]{0,4}") {
            let s = format!("{a}{bad}{b}");
            prop_assert!(Label::new(&s).is_err());
        }
    }

    #[test]
    fn refuses_overlong() {
        assert!(Label::new("a".repeat(129)).is_err());
        assert!(Label::new("a".repeat(128)).is_ok());
    }
}
