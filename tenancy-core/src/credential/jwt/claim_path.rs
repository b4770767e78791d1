//! Where in a token's payload a realm reads a claim: [`ClaimPath`], dotted
//! (`realm_access.roles`) or a JSON Pointer (`/https:~1~1example.com~1tenant_id`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest path accepted, in bytes.
pub(crate) const MAX_PATH_BYTES: usize = 256;
/// Most segments a path may have.
const MAX_SEGMENTS: usize = 8;

/// The place of one claim in a token's payload.
///
/// Written dotted (`org.tenant`: the member `tenant` of the member `org`) or,
/// when a claim's own name holds dots or slashes (Auth0's namespaced claims),
/// as a JSON Pointer (RFC 6901) that starts with `/`:
/// `/https:~1~1example.com~1tenant_id` is the top-level member
/// `https://example.com/tenant_id`. At most 8 segments and 256 bytes.
///
/// ```
/// use tenancy_core::credential::ClaimPath;
///
/// let roles: ClaimPath = "resource_access.tenancy-api.roles".parse()?;
/// assert_eq!(roles.as_str(), "resource_access.tenancy-api.roles");
/// assert!(!roles.is_top_level("roles"));
///
/// let namespaced: ClaimPath = "/https:~1~1example.com~1tenant_id".parse()?;
/// let payload = serde_json::json!({ "https://example.com/tenant_id": "acme" });
/// assert_eq!(namespaced.find(&payload), Some(&serde_json::json!("acme")));
///
/// assert!("a..b".parse::<ClaimPath>().is_err());
/// assert!("/bad~2escape".parse::<ClaimPath>().is_err());
/// # Ok::<(), tenancy_core::credential::InvalidClaimPath>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// As written in the configuration.
    text: Box<str>,
    /// The members to step through, unescaped.
    segments: Box<[Box<str>]>,
}

/// Why a claim path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid claim path: {0}")]
pub struct InvalidClaimPath(&'static str);

impl ClaimPath {
    /// A path to the top-level claim `name` (no parsing: dots and slashes
    /// in `name` are part of the name).
    ///
    /// ```
    /// use tenancy_core::credential::ClaimPath;
    ///
    /// let sub = ClaimPath::top_level("sub");
    /// assert!(sub.is_top_level("sub"));
    /// assert_eq!(sub.find(&serde_json::json!({"sub": "alice"})), Some(&serde_json::json!("alice")));
    /// ```
    pub fn top_level(name: &str) -> Self {
        Self {
            text: if name.contains(['.', '/', '~']) || name.is_empty() {
                format!("/{}", name.replace('~', "~0").replace('/', "~1")).into()
            } else {
                name.into()
            },
            segments: Box::new([name.into()]),
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path is the top-level claim `name`.
    pub fn is_top_level(&self, name: &str) -> bool {
        matches!(&*self.segments, [one] if **one == *name)
    }

    /// The value at this path in `payload`, if there is one. Objects are
    /// stepped into by member name, arrays by index.
    pub fn find<'v>(&self, payload: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.segments
            .iter()
            .try_fold(payload, |value, segment| match value {
                serde_json::Value::Object(members) => members.get(&**segment),
                serde_json::Value::Array(items) => segment
                    .parse::<usize>()
                    .ok()
                    .filter(|_| !segment.starts_with('+'))
                    .and_then(|i| items.get(i)),
                _ => None,
            })
    }

    fn parse(text: &str) -> Result<Self, InvalidClaimPath> {
        if text.is_empty() {
            return Err(InvalidClaimPath("empty"));
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(InvalidClaimPath("longer than 256 bytes"));
        }
        let segments: Vec<Box<str>> = if let Some(pointer) = text.strip_prefix('/') {
            pointer
                .split('/')
                .map(unescape_pointer_segment)
                .collect::<Result<_, _>>()?
        } else {
            let segments: Vec<Box<str>> = text.split('.').map(Into::into).collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err(InvalidClaimPath(
                    "a dotted path has no empty segment (use a JSON Pointer, starting with '/', for names with dots)",
                ));
            }
            segments
        };
        if segments.len() > MAX_SEGMENTS {
            return Err(InvalidClaimPath("more than 8 segments"));
        }
        Ok(Self {
            text: text.into(),
            segments: segments.into(),
        })
    }
}

/// One reference token of a JSON Pointer: `~1` is `/`, `~0` is `~`, and no
/// other `~` escape exists.
fn unescape_pointer_segment(segment: &str) -> Result<Box<str>, InvalidClaimPath> {
    if !segment.contains('~') {
        return Ok(segment.into());
    }
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(InvalidClaimPath("'~' must be followed by 0 or 1")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out.into())
}

impl std::str::FromStr for ClaimPath {
    type Err = InvalidClaimPath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ClaimPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ClaimPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(s: &str) -> ClaimPath {
        s.parse().unwrap()
    }

    #[test]
    fn dotted_paths_step_through_objects() {
        let payload = json!({
            "realm_access": { "roles": ["viewer", "admin"] },
            "resource_access": { "tenancy-api": { "roles": ["operator"] } },
            "org": { "tenant": "acme" },
        });
        assert_eq!(
            path("realm_access.roles").find(&payload),
            Some(&json!(["viewer", "admin"]))
        );
        assert_eq!(
            path("resource_access.tenancy-api.roles").find(&payload),
            Some(&json!(["operator"]))
        );
        assert_eq!(path("org.tenant").find(&payload), Some(&json!("acme")));
        assert_eq!(path("org.missing").find(&payload), None);
        assert_eq!(path("org.tenant.deeper").find(&payload), None);
    }

    #[test]
    fn pointers_unescape_and_index_arrays() {
        let payload = json!({
            "https://example.com/tenant_id": "acme",
            "a~b": 1,
            "list": ["x", "y"],
            "": "empty name",
        });
        assert_eq!(
            path("/https:~1~1example.com~1tenant_id").find(&payload),
            Some(&json!("acme"))
        );
        assert_eq!(path("/a~0b").find(&payload), Some(&json!(1)));
        assert_eq!(path("/list/1").find(&payload), Some(&json!("y")));
        assert_eq!(path("list.0").find(&payload), Some(&json!("x")));
        assert_eq!(path("/list/+1").find(&payload), None);
        assert_eq!(path("/list/9").find(&payload), None);
        assert_eq!(path("/").find(&payload), Some(&json!("empty name")));
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in ["", ".a", "a.", "a..b", "/~", "/~2", "/a~"] {
            assert!(bad.parse::<ClaimPath>().is_err(), "{bad:?}");
        }
        assert!("a.b.c.d.e.f.g.h.i".parse::<ClaimPath>().is_err());
        assert!("x".repeat(257).parse::<ClaimPath>().is_err());
        assert!("a.b.c.d.e.f.g.h".parse::<ClaimPath>().is_ok());
    }

    proptest::proptest! {
        /// Whatever a configuration holds, parsing answers without a
        /// panic, and a path that parses reads back as written.
        #[test]
        fn any_text_parses_or_is_refused_and_paths_round_trip(text in ".{0,300}") {
            if let Ok(path) = text.parse::<ClaimPath>() {
                proptest::prop_assert_eq!(path.as_str(), text.as_str());
                proptest::prop_assert!(path.segments.len() <= MAX_SEGMENTS);
                let _ = path.find(&json!({ "a": { "b": [1, "x"] } }));
            }
        }

        /// Any top-level name, dots and slashes included, is found again
        /// through the text it prints as.
        #[test]
        fn top_level_names_are_found_through_their_text(name in "[a-z./~:_-]{1,40}") {
            let path = ClaimPath::top_level(&name);
            let payload = json!({ name.clone(): "here" });
            proptest::prop_assert_eq!(path.find(&payload), Some(&json!("here")));
            if let Ok(reparsed) = path.as_str().parse::<ClaimPath>() {
                proptest::prop_assert_eq!(reparsed.find(&payload), Some(&json!("here")));
            }
        }
    }

    #[test]
    fn top_level_names_keep_their_dots_and_round_trip() {
        let p = ClaimPath::top_level("https://example.com/roles");
        assert_eq!(p.as_str(), "/https:~1~1example.com~1roles");
        assert_eq!(path(p.as_str()), p);
        assert_eq!(ClaimPath::top_level("sub").as_str(), "sub");
        let json = serde_json::to_string(&path("org.tenant")).unwrap();
        assert_eq!(json, "\"org.tenant\"");
        assert_eq!(
            serde_json::from_str::<ClaimPath>(&json).unwrap(),
            path("org.tenant")
        );
        assert!(serde_json::from_str::<ClaimPath>("\"a..b\"").is_err());
    }
}
