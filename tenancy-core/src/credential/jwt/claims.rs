//! The claims a token carries: [`JwtClaims`] for issuing, and the borrowed
//! shapes the verifier reads headers and payloads into.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TenancyError;
use crate::secret::Secret;

/// The claims of a tenancy token, for issuing one (the reference server's
/// `token` command, tests, benches) or reading one back.
///
/// `aud` is written as a string when it holds one audience, as an array when
/// it holds more, and left out when empty; both forms are read back.
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::credential::JwtClaims;
///
/// let claims = JwtClaims::new("tenancy-dev", "alice", "admin", Duration::from_secs(3600))
///     .with_tenant("acme")
///     .with_audience("api");
/// assert_eq!(claims.exp - claims.iat, 3600);
/// let json = serde_json::to_value(&claims)?;
/// assert_eq!(json["tenant_id"], "acme");
/// assert_eq!(json["aud"], "api");
/// assert!(json.get("nbf").is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaims {
    /// The subject: who the token speaks for.
    pub sub: String,
    /// The tenant; required from shared realms, optional from dedicated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// A role name or an alias of one.
    pub role: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, in seconds since the Unix epoch.
    pub iat: i64,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The issuer; it picks the realm.
    pub iss: String,
    /// The audiences; empty when the token names none.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_audience",
        deserialize_with = "deserialize_audience"
    )]
    pub aud: Vec<String>,
}

impl JwtClaims {
    /// Claims issued now by `issuer` for `subject` with `role`, expiring after
    /// `ttl`; no tenant and no audience.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        role: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        let now = unix_now();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Self {
            sub: subject.into(),
            tenant_id: None,
            role: role.into(),
            exp: now.saturating_add(ttl),
            iat: now,
            nbf: None,
            iss: issuer.into(),
            aud: Vec::new(),
        }
    }

    /// Sets the `tenant_id` claim.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant.into());
        self
    }

    /// Adds an audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.aud.push(audience.into());
        self
    }
}

fn serialize_audience<S: Serializer>(aud: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => serializer.serialize_str(one),
        many => many.serialize(serializer),
    }
}

fn deserialize_audience<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    Ok(
        match Option::<RawAudience<'de>>::deserialize(deserializer)? {
            None => Vec::new(),
            Some(RawAudience::One(one)) => vec![one.0.into_owned()],
            Some(RawAudience::Many(many)) => many.into_iter().map(|s| s.0.into_owned()).collect(),
        },
    )
}

/// Signs `claims` with HS256 and `secret`: a compact JWT whose header is
/// `{"typ":"JWT","alg":"HS256"}`.
///
/// Meant for development realms, tests and benches; production realms
/// usually verify tokens an identity provider signed.
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::credential::{JwtClaims, encode_hs256};
/// use tenancy_core::secret::Secret;
///
/// let secret = Secret::new("0123456789abcdef0123456789abcdef");
/// let claims = JwtClaims::new("tenancy-dev", "alice", "viewer", Duration::from_secs(60))
///     .with_tenant("acme");
/// let token = encode_hs256(&secret, &claims)?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok::<(), tenancy_core::error::TenancyError>(())
/// ```
pub fn encode_hs256(secret: &Secret, claims: &JwtClaims) -> Result<String, TenancyError> {
    use base64::Engine as _;
    let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = serde_json::to_vec(claims)
        .map_err(|e| TenancyError::internal(format!("cannot encode the claims: {e}")))?;
    let mut token = b64.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    token.push('.');
    b64.encode_string(payload, &mut token);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes());
    let signature = (super::keys::PROVIDER.signer_factory)(&jsonwebtoken::Algorithm::HS256, &key)
        .and_then(|signer| signer.try_sign(token.as_bytes()).map_err(Into::into))
        .map_err(|e| TenancyError::internal(format!("cannot sign the token: {e}")))?;
    token.push('.');
    b64.encode_string(signature, &mut token);
    Ok(token)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A JSON string borrowed from the input where it has no escapes.
pub(super) struct Str<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// The `aud` claim: one string or an array of strings.
pub(super) enum RawAudience<'a> {
    One(Str<'a>),
    Many(Vec<Str<'a>>),
}

impl RawAudience<'_> {
    pub(super) fn contains_any(&self, accepted: &[Box<str>]) -> bool {
        let hit = |s: &Str<'_>| accepted.iter().any(|a| **a == *s.0);
        match self {
            RawAudience::One(one) => hit(one),
            RawAudience::Many(many) => many.iter().any(hit),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawAudience<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudVisitor;
        impl<'de> Visitor<'de> for AudVisitor {
            type Value = RawAudience<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawAudience::One(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawAudience::One(Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(RawAudience::One(Str(Cow::Owned(v))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(s) = seq.next_element::<Str<'de>>()? {
                    many.push(s);
                }
                Ok(RawAudience::Many(many))
            }
        }
        deserializer.deserialize_any(AudVisitor)
    }
}

/// A NumericDate (RFC 7519): an integer or a fraction of seconds, read as
/// whole seconds (fractions rounded down, out-of-range values saturated).
/// `null` reads as absent.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct DateVisitor;
    impl Visitor<'_> for DateVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds since the Unix epoch")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() {
                // `as` saturates at the bounds of i64.
                Ok(Some(v.floor() as i64))
            } else {
                Err(E::custom("not a finite number"))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(DateVisitor)
}

/// The JOSE header fields the verifier reads. `jwk`, `jku`, `x5u`, `x5c`
/// and the like are ignored: keys come from the realm, never the token.
#[derive(Deserialize)]
pub(super) struct RawHeader<'a> {
    #[serde(borrow)]
    pub(super) alg: Str<'a>,
    #[serde(borrow, default)]
    pub(super) kid: Option<Str<'a>>,
    /// Critical extensions: none are understood, so any refuses the token.
    #[serde(default)]
    pub(super) crit: Option<IgnoredAny>,
}

/// A claim a realm maps to the tenant, the roles or the subject, of
/// whatever type the token gave it; the verifier decides what it accepts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// An array; its strings, in order (other elements dropped).
    Strs(Vec<Cow<'a, str>>),
    /// Anything else.
    Other,
}

impl<'a> Claim<'a> {
    /// The claim of a payload read as a whole (a realm with mapped claims).
    pub(super) fn from_value(value: &'a serde_json::Value) -> Self {
        match value {
            serde_json::Value::String(s) => Claim::Str(Cow::Borrowed(s)),
            serde_json::Value::Array(items) => Claim::Strs(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(Cow::Borrowed))
                    .collect(),
            ),
            _ => Claim::Other,
        }
    }

    /// The string, if the claim is one.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Claim::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Claim<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimVisitor;
        impl<'de> Visitor<'de> for ClaimVisitor {
            type Value = Claim<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Claim::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Claim::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Claim::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut strs = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(16));
                while let Some(item) = seq.next_element::<Claim<'de>>()? {
                    if let Claim::Str(s) = item {
                        strs.push(s);
                    }
                }
                Ok(Claim::Strs(strs))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Claim::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Claim::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Claim::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Claim::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Claim::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Claim::Other)
            }
        }
        deserializer.deserialize_any(ClaimVisitor)
    }
}

/// The payload fields the verifier reads; every one is optional here so a
/// missing claim gives `Claims`, not `Malformed`, and the mapped ones take
/// any type, so a realm that reads its claims elsewhere is not refused for
/// what these hold.
#[derive(Deserialize)]
pub(super) struct RawClaims<'a> {
    #[serde(borrow, default)]
    pub(super) sub: Option<Claim<'a>>,
    #[serde(borrow, default)]
    pub(super) tenant_id: Option<Claim<'a>>,
    #[serde(borrow, default)]
    pub(super) role: Option<Claim<'a>>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(super) exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(super) nbf: Option<i64>,
    #[serde(borrow, default)]
    pub(super) iss: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(super) aud: Option<RawAudience<'a>>,
}

/// Why a decoded segment could not be read.
pub(super) enum ParseFailure {
    /// Not a JSON object.
    NotJson,
    /// A JSON object whose fields have the wrong types or repeat.
    BadFields,
}

/// Parses a JSON object into `T`, telling a non-object (or non-JSON) input
/// from an object with bad fields.
pub(super) fn parse_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ParseFailure> {
    // Structs also deserialize from arrays; only an object is a JOSE segment.
    let starts_with_brace = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !starts_with_brace {
        return Err(ParseFailure::NotJson);
    }
    serde_json::from_slice(bytes).map_err(|_| {
        if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
            ParseFailure::BadFields
        } else {
            ParseFailure::NotJson
        }
    })
}
