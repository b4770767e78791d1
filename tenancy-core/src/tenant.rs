//! Tenants: the validated [`TenantId`], the [`TenantRecord`] record, its
//! [`TenantStatus`] lifecycle and its [`TenantSettings`].

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::plan::QuotaOverrides;

/// Longest tenant id accepted, in bytes (a DNS label).
pub const TENANT_ID_MAX_LEN: usize = 63;

/// A validated tenant id: a lowercase slug `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
///
/// A `TenantId` can only be built through validation, so every key, query and
/// log line that takes one is safe by construction: no colon, brace, space,
/// quote or non-ASCII byte can reach them. Cloning is a reference-count bump.
///
/// ```
/// use tenancy_core::tenant::TenantId;
///
/// let id: TenantId = "acme-corp".parse()?;
/// assert_eq!(id.as_str(), "acme-corp");
/// assert!(TenantId::new("Acme").is_err());
/// assert!(TenantId::new("a:b").is_err());
/// assert!(TenantId::new("-acme").is_err());
/// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

/// Why a string is not a valid [`TenantId`].
///
/// The error never repeats the refused input, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTenantId {
    /// The id is empty.
    #[error("tenant id is empty")]
    Empty,
    /// The id is longer than [`TENANT_ID_MAX_LEN`] bytes.
    #[error("tenant id is longer than {TENANT_ID_MAX_LEN} characters")]
    TooLong,
    /// The id holds a character other than `a-z`, `0-9` or `-`.
    #[error("tenant id may hold only lowercase letters, digits and '-'")]
    InvalidCharacter,
    /// The id starts or ends with `-`.
    #[error("tenant id must start and end with a letter or digit")]
    EdgeHyphen,
}

impl TenantId {
    /// Validates `id` as a tenant slug.
    ///
    /// ```
    /// # use tenancy_core::tenant::{TenantId, InvalidTenantId};
    /// assert_eq!(TenantId::new(""), Err(InvalidTenantId::Empty));
    /// assert!(TenantId::new("t1").is_ok());
    /// ```
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidTenantId> {
        let id = id.as_ref();
        validate_slug(id)?;
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string slice.
    ///
    /// ```
    /// # use tenancy_core::tenant::TenantId;
    /// assert_eq!(TenantId::new("acme").unwrap().as_str(), "acme");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated tenant id held inline: what a request names, looked up
/// without allocating (a [`TenantId`] is made only when one is kept).
#[derive(Clone, Copy)]
pub(crate) struct TenantIdText {
    len: u8,
    bytes: [u8; TENANT_ID_MAX_LEN],
}

impl TenantIdText {
    /// `id` when it is a valid tenant id.
    pub(crate) fn new(id: &str) -> Result<Self, InvalidTenantId> {
        validate_slug(id)?;
        let mut bytes = [0; TENANT_ID_MAX_LEN];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Ok(Self {
            len: u8::try_from(id.len()).map_err(|_| InvalidTenantId::TooLong)?,
            bytes,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Validated ASCII.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The id, kept.
    pub(crate) fn to_id(self) -> TenantId {
        TenantId(Arc::from(self.as_str()))
    }
}

fn validate_slug(id: &str) -> Result<(), InvalidTenantId> {
    let bytes = id.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(InvalidTenantId::Empty);
    };
    if bytes.len() > TENANT_ID_MAX_LEN {
        return Err(InvalidTenantId::TooLong);
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err(InvalidTenantId::InvalidCharacter);
    }
    if *first == b'-' || *last == b'-' {
        return Err(InvalidTenantId::EdgeHyphen);
    }
    Ok(())
}

impl FromStr for TenantId {
    type Err = InvalidTenantId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        TenantId::new(&*raw).map_err(serde::de::Error::custom)
    }
}

/// Where a tenant is in its lifecycle.
///
/// | status | tenant-scoped requests |
/// |---|---|
/// | `active` | everything |
/// | `suspended` | read-only: safe methods (`GET`, `HEAD`, `OPTIONS`) |
/// | `archived` | nothing; the data is kept for audit |
///
/// ```
/// use http::Method;
/// use tenancy_core::tenant::TenantStatus;
///
/// assert!(TenantStatus::Suspended.admits(&Method::GET));
/// assert!(!TenantStatus::Suspended.admits(&Method::POST));
/// assert!(!TenantStatus::Archived.admits(&Method::GET));
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Full access.
    #[default]
    Active,
    /// Read-only access.
    Suspended,
    /// No access.
    Archived,
}

impl TenantStatus {
    /// Whether a tenant-scoped request with `method` may proceed.
    pub fn admits(self, method: &http::Method) -> bool {
        match self {
            TenantStatus::Active => true,
            TenantStatus::Suspended => is_safe_method(method),
            TenantStatus::Archived => false,
        }
    }

    /// The lowercase name used in config, JSON and stores.
    ///
    /// ```
    /// # use tenancy_core::tenant::TenantStatus;
    /// assert_eq!(TenantStatus::Archived.as_str(), "archived");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Archived => "archived",
        }
    }
}

/// `GET`, `HEAD` and `OPTIONS`: the methods that change nothing.
///
/// ```
/// # use tenancy_core::tenant::is_safe_method;
/// assert!(is_safe_method(&http::Method::HEAD));
/// assert!(!is_safe_method(&http::Method::DELETE));
/// ```
pub fn is_safe_method(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Where a tenant wants to be told about incidents and limits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationSettings {
    /// E-mail addresses.
    pub emails: Vec<String>,
    /// A webhook URL.
    pub webhook_url: Option<String>,
    /// A chat channel name.
    pub slack_channel: Option<String>,
}

/// Per-tenant settings: quota overrides on top of the plan, feature flags and
/// notification settings.
///
/// ```
/// use tenancy_core::tenant::TenantSettings;
///
/// let settings: TenantSettings = serde_json::from_str(
///     r#"{"features": {"beta-ui": true}, "quota_overrides": {"rps": 50}}"#,
/// )?;
/// assert!(settings.feature("beta-ui"));
/// assert!(!settings.feature("other"));
/// assert_eq!(settings.quota_overrides.rps, Some(50));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// Quota values that replace the plan's for this tenant.
    pub quota_overrides: QuotaOverrides,
    /// Feature flags by name.
    pub features: BTreeMap<String, bool>,
    /// Notification settings.
    pub notifications: NotificationSettings,
}

/// Most feature flags, notification e-mails and budget overrides a tenant's
/// settings may hold.
pub const MAX_SETTINGS_ENTRIES: usize = 64;
/// Longest notification value (e-mail, webhook URL, channel), in bytes.
pub const MAX_SETTING_BYTES: usize = 512;

impl TenantSettings {
    /// Checks what a caller may put into settings: quota overrides that
    /// limit something (`rps` at least 1), budget and feature names that are
    /// [`Label`](crate::label::Label)s, and at most [`MAX_SETTINGS_ENTRIES`]
    /// entries of each kind, each value at most [`MAX_SETTING_BYTES`]. The
    /// message names the field.
    ///
    /// ```
    /// use tenancy_core::tenant::TenantSettings;
    ///
    /// let zero: TenantSettings = serde_json::from_str(r#"{"quota_overrides": {"rps": 0}}"#)?;
    /// assert!(zero.validate().unwrap_err().contains("rps"));
    /// let odd: TenantSettings = serde_json::from_str(
    ///     r#"{"quota_overrides": {"budgets": {"a:{b}": {"limit": 1, "period": "day"}}}}"#,
    /// )?;
    /// assert!(odd.validate().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        let o = &self.quota_overrides;
        if o.rps == Some(0) {
            return Err("quota_overrides.rps must be at least 1".to_owned());
        }
        if o.retention_days
            .is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d))
        {
            return Err(format!(
                "quota_overrides.retention_days must be 1 to {MAX_RETENTION_DAYS}"
            ));
        }
        let n = &self.notifications;
        if o.budgets.len() > MAX_SETTINGS_ENTRIES
            || self.features.len() > MAX_SETTINGS_ENTRIES
            || n.emails.len() > MAX_SETTINGS_ENTRIES
        {
            return Err(format!(
                "settings hold at most {MAX_SETTINGS_ENTRIES} budgets, features and e-mails each"
            ));
        }
        if let Some(name) = o
            .budgets
            .keys()
            .find(|b| crate::label::Label::new(b).is_err())
        {
            return Err(format!(
                "quota_overrides.budgets: {:?} is not a label",
                name.chars().take(64).collect::<String>()
            ));
        }
        if let Some(name) = self
            .features
            .keys()
            .find(|f| crate::label::Label::new(f).is_err())
        {
            return Err(format!(
                "features: {:?} is not a label",
                name.chars().take(64).collect::<String>()
            ));
        }
        let values = n
            .emails
            .iter()
            .chain(&n.webhook_url)
            .chain(&n.slack_channel);
        if values.into_iter().any(|v| v.len() > MAX_SETTING_BYTES) {
            return Err(format!(
                "notifications: values are at most {MAX_SETTING_BYTES} bytes"
            ));
        }
        Ok(())
    }

    /// Whether the feature flag `name` is on (off when absent).
    pub fn feature(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }
}

/// The longest retention a tenant's override may set, in days (ten years):
/// a retention is also how long an archived tenant waits before erasure.
pub const MAX_RETENTION_DAYS: u32 = 3_650;

/// The longest tenant description, in bytes.
pub const TENANT_DESCRIPTION_MAX_BYTES: usize = 1024;

/// A tenant record, as the [`TenantStore`](crate::store::TenantStore) keeps it.
///
/// ```
/// use tenancy_core::tenant::{TenantRecord, TenantId, TenantStatus};
///
/// let tenant = TenantRecord::new(TenantId::new("acme")?, "Acme Corp", "pro");
/// assert_eq!(tenant.status, TenantStatus::Active);
/// assert_eq!(tenant.plan, "pro");
/// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The immutable id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Name of the tenant's plan in the [`PlanCatalog`](crate::plan::PlanCatalog).
    pub plan: String,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Settings.
    #[serde(default)]
    pub settings: TenantSettings,
    /// Contact address.
    #[serde(default)]
    pub contact_email: Option<String>,
    /// What the tenant is, in a sentence or two (at most
    /// [`TENANT_DESCRIPTION_MAX_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the tenant was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl TenantRecord {
    /// An active tenant created now, with default settings.
    pub fn new(id: TenantId, name: impl Into<String>, plan: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            id,
            name: name.into(),
            plan: plan.into(),
            status: TenantStatus::Active,
            settings: TenantSettings::default(),
            contact_email: None,
            description: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_edge_lengths() {
        assert!(TenantId::new("a").is_ok());
        assert!(TenantId::new("0").is_ok());
        assert!(TenantId::new("a".repeat(63)).is_ok());
        assert_eq!(TenantId::new("a".repeat(64)), Err(InvalidTenantId::TooLong));
        assert_eq!(
            TenantId::new(format!("a{}a", "-".repeat(61))).map(|t| t.as_str().len()),
            Ok(63)
        );
    }

    #[test]
    fn refuses_named_bad_inputs() {
        for bad in [
            "", " ", "a b", "a:b", "{a}", "a}", "'a'", "\"a\"", "A", "acmE", "é", "ünï", "a_b",
            "a.b", "a/b", "-a", "a-", "-", "a\n", "a\0", "日本",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn error_does_not_echo_input() {
        let err = TenantId::new("evil{x}").unwrap_err().to_string();
        assert!(!err.contains("evil"));
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantId>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"Acme\"").is_err());
    }

    #[test]
    fn status_gates_methods() {
        use http::Method;
        for m in [Method::GET, Method::POST, Method::DELETE, Method::PATCH] {
            assert!(TenantStatus::Active.admits(&m));
            assert!(!TenantStatus::Archived.admits(&m));
        }
        assert!(TenantStatus::Suspended.admits(&Method::OPTIONS));
        assert!(!TenantStatus::Suspended.admits(&Method::PUT));
    }

    fn reference(s: &str) -> bool {
        let b = s.as_bytes();
        let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match b.len() {
            0 => false,
            1 => ok_char(&b[0]),
            n if n <= 63 => {
                ok_char(&b[0]) && ok_char(&b[n - 1]) && b.iter().all(|c| ok_char(c) || *c == b'-')
            }
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn accepts_every_valid_slug(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            let id = TenantId::new(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn agrees_with_reference_on_any_string(s in any::<String>()) {
            prop_assert_eq!(TenantId::new(&s).is_ok(), reference(&s));
        }

        #[test]
        fn agrees_with_reference_on_near_slugs(s in "[a-zA-Z0-9 :{}'\"_.\\-é]{0,70}") {
            prop_assert_eq!(TenantId::new(&s).is_ok(), reference(&s));
        }

        #[test]
        fn refuses_any_forbidden_byte(prefix in "[a-z]{1,5}", bad in "[^a-z0-9-]", suffix in "[a-z]{1,5}") {
            let s = format!("{prefix}{bad}{suffix}");
            prop_assert!(TenantId::new(&s).is_err());
        }

        #[test]
        fn refuses_overlong(s in "[a-z]{64,200}") {
            prop_assert_eq!(TenantId::new(&s), Err(InvalidTenantId::TooLong));
        }
    }
}
