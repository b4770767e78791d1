//! The audit log: [`AuditEvent`] (who did what to which resource of which
//! tenant, and how it ended) and [`AuditFilter`] for reading it back.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::tenant::TenantId;

/// What kind of principal acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A user, by JWT.
    User,
    /// An API key.
    ApiKey,
    /// An internal service (system role).
    Service,
    /// Nobody authenticated (refused authentications).
    Anonymous,
}

impl ActorKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "api_key",
            ActorKind::Service => "service",
            ActorKind::Anonymous => "anonymous",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::User, Self::ApiKey, Self::Service, Self::Anonymous]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// One audit record.
///
/// ```
/// use tenancy_core::audit::{ActorKind, AuditEvent};
/// use tenancy_core::tenant::TenantId;
///
/// let event = AuditEvent::new(TenantId::new("acme")?, "alice", ActorKind::User, "apikey.revoke")
///     .resource("key_123")
///     .outcome(204);
/// assert_eq!(event.resource.as_deref(), Some("key_123"));
/// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The tenant acted on.
    pub tenant_id: TenantId,
    /// Who acted: a subject, a key id, or `anonymous`.
    pub actor: String,
    /// What kind of principal acted.
    pub actor_kind: ActorKind,
    /// What was done, e.g. `tenant.create`, `http.post`, `auth.refused`.
    pub action: String,
    /// What it was done to.
    pub resource: Option<String>,
    /// The HTTP status of the answer.
    pub outcome: u16,
    /// The request id.
    pub request_id: Option<String>,
    /// The client address.
    pub client_addr: Option<IpAddr>,
    /// Further details.
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    /// An event now, with outcome 200 and nothing else set.
    pub fn new(
        tenant_id: TenantId,
        actor: impl Into<String>,
        actor_kind: ActorKind,
        action: impl Into<String>,
    ) -> Self {
        Self {
            timestamp: Utc::now(),
            tenant_id,
            actor: actor.into(),
            actor_kind,
            action: action.into(),
            resource: None,
            outcome: 200,
            request_id: None,
            client_addr: None,
            details: BTreeMap::new(),
        }
    }

    /// Sets the resource.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sets the outcome status.
    pub fn outcome(mut self, status: u16) -> Self {
        self.outcome = status;
        self
    }

    /// Sets the timestamp.
    pub fn at(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Adds a detail.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// Which events of one tenant to read, newest first.
///
/// ```
/// use tenancy_core::audit::AuditFilter;
/// let f = AuditFilter::default().actor("alice").limit(10);
/// assert_eq!(f.limit, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many.
    pub limit: usize,
}

/// Default and largest page of [`AuditFilter::limit`].
pub const AUDIT_DEFAULT_LIMIT: usize = 100;
/// Largest page of [`AuditFilter::limit`].
pub const AUDIT_MAX_LIMIT: usize = 10_000;

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            actor: None,
            action: None,
            since: None,
            until: None,
            limit: AUDIT_DEFAULT_LIMIT,
        }
    }
}

impl AuditFilter {
    /// Only `actor`.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Only `action`.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Only at or after `since`.
    pub fn since(mut self, since: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self
    }

    /// Only before `until`.
    pub fn until(mut self, until: DateTime<Utc>) -> Self {
        self.until = Some(until);
        self
    }

    /// At most `limit` (capped at [`AUDIT_MAX_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(AUDIT_MAX_LIMIT);
        self
    }

    /// Whether `event` passes the filter (the tenant is checked by the store).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == event.actor)
            && self.action.as_ref().is_none_or(|a| *a == event.action)
            && self.since.is_none_or(|s| event.timestamp >= s)
            && self.until.is_none_or(|u| event.timestamp < u)
    }
}
