//! Who may do what: the five ordered [`Role`]s, the [`Permission`]s each
//! grants, [`RoleAliases`] for role names of other identity providers, and the
//! [`ApiKeyScope`]s of API keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A role. Roles are ordered by level; a higher role may do everything a lower
/// one may.
///
/// | role | level | may |
/// |---|---|---|
/// | viewer | 1 | read metrics, anomalies, RCA results, dashboards |
/// | operator | 2 | viewer + trigger runbooks, acknowledge incidents, send telemetry |
/// | admin | 3 | operator + manage users, API keys, teams, integrations; read audit log and usage |
/// | super_admin | 4 | admin + manage tenants and billing plans; act on another tenant |
/// | system | 5 | internal service-to-service only |
///
/// ```
/// use tenancy_core::rbac::{Permission, Role};
///
/// assert!(Role::Admin > Role::Operator);
/// assert_eq!(Role::SuperAdmin.level(), 4);
/// assert!(Role::Operator.can(Permission::SendTelemetry));
/// assert!(!Role::Viewer.can(Permission::SendTelemetry));
/// assert_eq!("super_admin".parse::<Role>(), Ok(Role::SuperAdmin));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Level 1: read-only.
    Viewer = 1,
    /// Level 2: day-to-day operations.
    Operator = 2,
    /// Level 3: manages one tenant.
    Admin = 3,
    /// Level 4: manages the platform; may act on other tenants.
    SuperAdmin = 4,
    /// Level 5: internal services only.
    System = 5,
}

/// A role name that is neither a role nor a configured alias. It never
/// repeats the refused name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown role name")]
pub struct UnknownRole;

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Admin,
        Role::SuperAdmin,
        Role::System,
    ];

    /// The role's level, 1 (viewer) to 5 (system).
    pub fn level(self) -> u8 {
        self as u8
    }

    /// The canonical name (`viewer`, `operator`, `admin`, `super_admin`, `system`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
            Role::System => "system",
        }
    }

    /// The permissions this role holds, its own and those of every lower role.
    ///
    /// ```
    /// # use tenancy_core::rbac::{Permission, Role};
    /// assert!(Role::Admin.permissions().contains(&Permission::ReadMetrics));
    /// ```
    pub fn permissions(self) -> &'static [Permission] {
        let end = match self {
            Role::Viewer => 4,
            Role::Operator => 7,
            Role::Admin => 13,
            Role::SuperAdmin => 16,
            Role::System => Permission::ALL.len(),
        };
        &Permission::ALL[..end]
    }

    /// Whether this role holds `permission`.
    pub fn can(self, permission: Permission) -> bool {
        self >= permission.minimum_role()
    }

    /// Whether this role may pick a tenant other than its credential's.
    pub fn may_cross_tenants(self) -> bool {
        self >= Role::SuperAdmin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;
    /// Parses a canonical role name only; see [`RoleAliases`] for aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        raw.parse().map_err(|_| {
            serde::de::Error::custom(
                "unknown role: expected viewer, operator, admin, super_admin or system",
            )
        })
    }
}

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Permission {
    /// Read metrics.
    ReadMetrics,
    /// Read anomalies.
    ReadAnomalies,
    /// Read root-cause analysis results.
    ReadRca,
    /// Read dashboards.
    ReadDashboards,
    /// Trigger runbooks.
    TriggerRunbooks,
    /// Acknowledge incidents.
    AckIncidents,
    /// Send telemetry.
    SendTelemetry,
    /// Manage users.
    ManageUsers,
    /// Manage API keys.
    ManageApiKeys,
    /// Manage teams.
    ManageTeams,
    /// Manage integrations.
    ManageIntegrations,
    /// Read the audit log.
    ReadAudit,
    /// Read usage.
    ReadUsage,
    /// Create, change and list tenants.
    ManageTenants,
    /// Manage billing plans.
    ManageBilling,
    /// Act on a tenant other than the credential's (always audited).
    ActAcrossTenants,
    /// Internal service-to-service calls.
    ServiceInternal,
}

impl Permission {
    /// Every permission, ordered by the lowest role that holds it.
    pub const ALL: [Permission; 17] = [
        Permission::ReadMetrics,
        Permission::ReadAnomalies,
        Permission::ReadRca,
        Permission::ReadDashboards,
        Permission::TriggerRunbooks,
        Permission::AckIncidents,
        Permission::SendTelemetry,
        Permission::ManageUsers,
        Permission::ManageApiKeys,
        Permission::ManageTeams,
        Permission::ManageIntegrations,
        Permission::ReadAudit,
        Permission::ReadUsage,
        Permission::ManageTenants,
        Permission::ManageBilling,
        Permission::ActAcrossTenants,
        Permission::ServiceInternal,
    ];

    /// The lowest role that holds this permission.
    ///
    /// ```
    /// # use tenancy_core::rbac::{Permission, Role};
    /// assert_eq!(Permission::ReadAudit.minimum_role(), Role::Admin);
    /// ```
    pub fn minimum_role(self) -> Role {
        use Permission::*;
        match self {
            ReadMetrics | ReadAnomalies | ReadRca | ReadDashboards => Role::Viewer,
            TriggerRunbooks | AckIncidents | SendTelemetry => Role::Operator,
            ManageUsers | ManageApiKeys | ManageTeams | ManageIntegrations | ReadAudit
            | ReadUsage => Role::Admin,
            ManageTenants | ManageBilling | ActAcrossTenants => Role::SuperAdmin,
            ServiceInternal => Role::System,
        }
    }

    /// A stable `resource:verb` name, as shown by APIs.
    pub fn as_str(self) -> &'static str {
        use Permission::*;
        match self {
            ReadMetrics => "metrics:read",
            ReadAnomalies => "anomalies:read",
            ReadRca => "rca:read",
            ReadDashboards => "dashboards:read",
            TriggerRunbooks => "runbooks:trigger",
            AckIncidents => "incidents:ack",
            SendTelemetry => "telemetry:write",
            ManageUsers => "users:manage",
            ManageApiKeys => "apikeys:manage",
            ManageTeams => "teams:manage",
            ManageIntegrations => "integrations:manage",
            ReadAudit => "audit:read",
            ReadUsage => "usage:read",
            ManageTenants => "tenants:manage",
            ManageBilling => "billing:manage",
            ActAcrossTenants => "tenants:act-across",
            ServiceInternal => "service:internal",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Role names from other identity providers, mapped onto [`Role`]s.
///
/// Canonical names always resolve; aliases are matched ignoring ASCII case.
/// `Default` holds the common ones: `tenant-admin` → admin, `devops` →
/// operator, `cpi-admin` → super_admin, `read-only` → viewer.
///
/// ```
/// use tenancy_core::rbac::{Role, RoleAliases};
///
/// let mut aliases = RoleAliases::default();
/// aliases.insert("sre", Role::Operator);
/// assert_eq!(aliases.resolve("SRE"), Some(Role::Operator));
/// assert_eq!(aliases.resolve("tenant-admin"), Some(Role::Admin));
/// assert_eq!(aliases.resolve("viewer"), Some(Role::Viewer));
/// assert_eq!(aliases.resolve("root"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleAliases(BTreeMap<String, Role>);

impl RoleAliases {
    /// No aliases: only canonical names resolve.
    pub fn empty() -> Self {
        Self(BTreeMap::new())
    }

    /// Maps `alias` (any case) to `role`.
    pub fn insert(&mut self, alias: impl Into<String>, role: Role) {
        self.0.insert(alias.into().to_ascii_lowercase(), role);
    }

    /// The role for a canonical name or an alias.
    pub fn resolve(&self, name: &str) -> Option<Role> {
        if let Ok(role) = name.parse() {
            return Some(role);
        }
        if name.len() > 128 {
            return None;
        }
        self.0.get(&name.to_ascii_lowercase()).copied()
    }

    /// Every alias and its role.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Role)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl Default for RoleAliases {
    fn default() -> Self {
        let mut a = Self::empty();
        a.insert("tenant-admin", Role::Admin);
        a.insert("devops", Role::Operator);
        a.insert("cpi-admin", Role::SuperAdmin);
        a.insert("read-only", Role::Viewer);
        a
    }
}

/// What an API key may do inside its tenant.
///
/// | scope | allows | acts as |
/// |---|---|---|
/// | `ingestion` | only the configured ingestion routes (default `POST /api/v1/telemetry`) | operator |
/// | `readonly` | `GET`, `HEAD`, `OPTIONS` | viewer |
/// | `full` | everything in the key's tenant | admin (never super_admin) |
///
/// ```
/// use http::Method;
/// use tenancy_core::rbac::{ApiKeyScope, Role};
///
/// assert!(ApiKeyScope::Readonly.permits(&Method::GET, false));
/// assert!(!ApiKeyScope::Readonly.permits(&Method::POST, false));
/// assert!(ApiKeyScope::Ingestion.permits(&Method::POST, true));
/// assert!(!ApiKeyScope::Ingestion.permits(&Method::GET, false));
/// assert_eq!(ApiKeyScope::Full.role(), Role::Admin);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyScope {
    /// Ingestion routes only.
    Ingestion,
    /// Safe methods only.
    Readonly,
    /// Everything in the key's tenant, as admin.
    Full,
}

impl ApiKeyScope {
    /// Whether a request with `method` may proceed; `ingestion_route` tells
    /// whether the route is one of the configured ingestion routes.
    pub fn permits(self, method: &http::Method, ingestion_route: bool) -> bool {
        match self {
            ApiKeyScope::Ingestion => ingestion_route,
            ApiKeyScope::Readonly => crate::tenant::is_safe_method(method),
            ApiKeyScope::Full => true,
        }
    }

    /// Whether a key of this scope may grant `other` to a key it issues:
    /// `full` grants any scope, the others only themselves.
    ///
    /// ```
    /// use tenancy_core::rbac::ApiKeyScope;
    /// assert!(ApiKeyScope::Full.covers(ApiKeyScope::Readonly));
    /// assert!(!ApiKeyScope::Readonly.covers(ApiKeyScope::Full));
    /// assert!(!ApiKeyScope::Ingestion.covers(ApiKeyScope::Readonly));
    /// ```
    pub fn covers(self, other: ApiKeyScope) -> bool {
        self == ApiKeyScope::Full || self == other
    }

    /// The role a key of this scope acts as.
    pub fn role(self) -> Role {
        match self {
            ApiKeyScope::Ingestion => Role::Operator,
            ApiKeyScope::Readonly => Role::Viewer,
            ApiKeyScope::Full => Role::Admin,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::Ingestion => "ingestion",
            ApiKeyScope::Readonly => "readonly",
            ApiKeyScope::Full => "full",
        }
    }
}

impl fmt::Display for ApiKeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiKeyScope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingestion" => Ok(Self::Ingestion),
            "readonly" => Ok(Self::Readonly),
            "full" => Ok(Self::Full),
            _ => Err(UnknownScope),
        }
    }
}

/// A scope name other than `ingestion`, `readonly` or `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown API key scope: expected ingestion, readonly or full")]
pub struct UnknownScope;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roles_are_ordered_by_level() {
        for pair in Role::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
            assert_eq!(pair[0].level() + 1, pair[1].level());
        }
        assert_eq!(Role::Viewer.level(), 1);
        assert_eq!(Role::System.level(), 5);
    }

    #[test]
    fn permission_table_matches_the_design() {
        use Permission::*;
        let expect: [(Role, &[Permission]); 5] = [
            (
                Role::Viewer,
                &[ReadMetrics, ReadAnomalies, ReadRca, ReadDashboards],
            ),
            (
                Role::Operator,
                &[TriggerRunbooks, AckIncidents, SendTelemetry],
            ),
            (
                Role::Admin,
                &[
                    ManageUsers,
                    ManageApiKeys,
                    ManageTeams,
                    ManageIntegrations,
                    ReadAudit,
                    ReadUsage,
                ],
            ),
            (
                Role::SuperAdmin,
                &[ManageTenants, ManageBilling, ActAcrossTenants],
            ),
            (Role::System, &[ServiceInternal]),
        ];
        for (role, own) in expect {
            for p in own {
                assert_eq!(p.minimum_role(), role, "{p}");
                assert!(role.can(*p));
                for lower in Role::ALL.iter().filter(|r| **r < role) {
                    assert!(!lower.can(*p), "{lower} must not {p}");
                }
            }
        }
    }

    #[test]
    fn permissions_list_agrees_with_can() {
        for role in Role::ALL {
            for p in Permission::ALL {
                assert_eq!(role.permissions().contains(&p), role.can(p), "{role} {p}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), r);
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }

    #[test]
    fn only_super_admin_and_system_cross_tenants() {
        let crossers: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.may_cross_tenants())
            .collect();
        assert_eq!(crossers, [Role::SuperAdmin, Role::System]);
    }

    #[test]
    fn scopes_never_reach_super_admin() {
        for s in [
            ApiKeyScope::Ingestion,
            ApiKeyScope::Readonly,
            ApiKeyScope::Full,
        ] {
            assert!(s.role() <= Role::Admin);
            assert_eq!(s.as_str().parse::<ApiKeyScope>(), Ok(s));
        }
    }

    proptest! {
        #[test]
        fn ordering_is_level_ordering(a in 0usize..5, b in 0usize..5) {
            let (ra, rb) = (Role::ALL[a], Role::ALL[b]);
            prop_assert_eq!(ra.cmp(&rb), ra.level().cmp(&rb.level()));
            // a higher role holds every permission of a lower one
            if ra >= rb {
                for p in rb.permissions() {
                    prop_assert!(ra.can(*p));
                }
            }
        }
    }
}
