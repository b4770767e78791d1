use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ApiKeyRejection;
use crate::key_id::KeyId;
use crate::rbac::ApiKeyScope;
use crate::tenant::TenantId;

/// The SHA-256 digest (or HMAC-SHA-256 with a pepper) of an API key secret:
/// the only form in which a key is stored and looked up.
///
/// Shown as lowercase hex; `Debug` shows only the first bytes.
///
/// ```
/// use tenancy_core::credential::ApiKeyDigest;
/// let d = ApiKeyDigest::from_bytes([0xab; 32]);
/// assert_eq!(d.to_hex().len(), 64);
/// assert_eq!(ApiKeyDigest::from_hex(&d.to_hex()), Some(d));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyDigest([u8; 32]);

impl ApiKeyDigest {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses 64 hex characters.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyDigest({}…)", &self.to_hex()[..8])
    }
}

impl Serialize for ApiKeyDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ApiKeyDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ApiKeyDigest::from_hex(&raw).ok_or_else(|| serde::de::Error::custom("bad key digest"))
    }
}

/// A stored API key: everything but the secret, which is never kept.
///
/// ```
/// use chrono::{Duration, Utc};
/// use tenancy_core::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
/// use tenancy_core::rbac::ApiKeyScope;
/// use tenancy_core::tenant::TenantId;
///
/// let now = Utc::now();
/// let mut key = ApiKeyRecord::new(
///     KeyId::new("k1")?, TenantId::new("acme")?, "ci", ApiKeyScope::Ingestion,
///     ApiKeyDigest::from_bytes([7; 32]), now,
/// );
/// assert!(key.check_usable(now).is_ok());
/// key.expires_at = Some(now - Duration::seconds(1));
/// assert!(key.check_usable(now).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id.
    pub key_id: KeyId,
    /// The key's tenant.
    pub tenant_id: TenantId,
    /// Display name (shared, so copies of the record allocate nothing).
    pub name: Arc<str>,
    /// What the key may do.
    pub scope: ApiKeyScope,
    /// Digest of the secret.
    pub digest: ApiKeyDigest,
    /// Per-key requests per second, on top of the tenant's.
    #[serde(default)]
    pub rate_limit_rps: Option<u32>,
    /// When the key stops working.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was revoked.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the key was issued.
    pub created_at: DateTime<Utc>,
    /// When the key was last used (updated lazily).
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that issued this one, when a key did: this key never has
    /// more scope or a later expiry than it, and is revoked with it.
    #[serde(default)]
    pub parent_key_id: Option<KeyId>,
    /// The realm whose token issued this key, directly or through the keys
    /// it issued (a realm's name: `tenant:<id>` for the realm a tenant
    /// brought). Detaching or replacing a tenant's realm revokes the keys
    /// its tokens issued: the answer to a compromised identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<Arc<str>>,
}

impl ApiKeyRecord {
    /// A live key with no expiry and no own rate limit.
    pub fn new(
        key_id: KeyId,
        tenant_id: TenantId,
        name: impl Into<Arc<str>>,
        scope: ApiKeyScope,
        digest: ApiKeyDigest,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            key_id,
            tenant_id,
            name: name.into(),
            scope,
            digest,
            rate_limit_rps: None,
            expires_at: None,
            revoked_at: None,
            created_at,
            last_used_at: None,
            parent_key_id: None,
            realm: None,
        }
    }

    /// Whether the key may be used at `now`: not revoked, not expired.
    pub fn check_usable(&self, now: DateTime<Utc>) -> Result<(), ApiKeyRejection> {
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(ApiKeyRejection::Revoked);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiKeyRejection::Expired);
        }
        Ok(())
    }

    /// Whether the key counts against the plan's key quota at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.check_usable(now).is_ok()
    }
}
