//! The audit log: [`AuditEvent`] (who did what to which resource of which
//! tenant, and how it ended) and [`AuditFilter`] for reading it back.
//!
//! # Field sizes
//!
//! Events are cut to these sizes when they are recorded
//! ([`AuditEvent::bounded`]), so no request can make one event large: a
//! longer value is cut at a character boundary and ends in `…`.
//!
//! | field | at most |
//! |---|---|
//! | `actor` | [`MAX_ACTOR_BYTES`] bytes |
//! | `action` | [`MAX_ACTION_BYTES`] bytes |
//! | `resource` | [`MAX_RESOURCE_BYTES`] bytes |
//! | `request_id` | [`MAX_ACTION_BYTES`] bytes |
//! | `details` | [`MAX_DETAILS`] entries, keys of [`MAX_DETAIL_KEY_BYTES`] and values of [`MAX_DETAIL_VALUE_BYTES`] bytes |

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::request::prefix_within;
use crate::tenant::TenantId;

/// What kind of principal acted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
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
        Self::new_at(Utc::now(), tenant_id, actor, actor_kind, action)
    }

    /// [`new`](Self::new), at `timestamp` (no clock read).
    pub(crate) fn new_at(
        timestamp: DateTime<Utc>,
        tenant_id: TenantId,
        actor: impl Into<String>,
        actor_kind: ActorKind,
        action: impl Into<String>,
    ) -> Self {
        Self {
            timestamp,
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

/// Longest `actor` of a recorded event, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;
/// Longest `action` (and `request_id`) of a recorded event, in bytes.
pub const MAX_ACTION_BYTES: usize = 128;
/// Longest `resource` of a recorded event, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 512;
/// Most `details` entries of a recorded event (the first ones by key).
pub const MAX_DETAILS: usize = 16;
/// Longest detail key, in bytes.
pub const MAX_DETAIL_KEY_BYTES: usize = 64;
/// Longest detail value, in bytes.
pub const MAX_DETAIL_VALUE_BYTES: usize = 512;

impl AuditEvent {
    /// The event with every field cut to its documented size (see the
    /// [module docs](self)); what fits is left as it is.
    ///
    /// ```
    /// use tenancy_core::audit::{ActorKind, AuditEvent, MAX_RESOURCE_BYTES};
    /// use tenancy_core::tenant::TenantId;
    ///
    /// let event = AuditEvent::new(TenantId::new("acme")?, "alice", ActorKind::User, "http.post")
    ///     .resource("/x/".repeat(3000))
    ///     .bounded();
    /// let resource = event.resource.unwrap();
    /// assert!(resource.len() <= MAX_RESOURCE_BYTES && resource.ends_with('…'));
    /// assert_eq!(event.actor, "alice");
    /// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
    /// ```
    pub fn bounded(mut self) -> Self {
        cut(&mut self.actor, MAX_ACTOR_BYTES);
        cut(&mut self.action, MAX_ACTION_BYTES);
        if let Some(resource) = &mut self.resource {
            cut(resource, MAX_RESOURCE_BYTES);
        }
        if let Some(id) = &mut self.request_id {
            cut(id, MAX_ACTION_BYTES);
        }
        let oversized = self.details.len() > MAX_DETAILS
            || self
                .details
                .iter()
                .any(|(k, v)| k.len() > MAX_DETAIL_KEY_BYTES || v.len() > MAX_DETAIL_VALUE_BYTES);
        if oversized {
            self.details = std::mem::take(&mut self.details)
                .into_iter()
                .take(MAX_DETAILS)
                .map(|(mut k, mut v)| {
                    cut(&mut k, MAX_DETAIL_KEY_BYTES);
                    cut(&mut v, MAX_DETAIL_VALUE_BYTES);
                    (k, v)
                })
                .collect();
        }
        self
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary, ending in `…`.
fn cut(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    const ELLIPSIS: &str = "…";
    let end = prefix_within(s, max.saturating_sub(ELLIPSIS.len())).len();
    s.truncate(end);
    s.push_str(ELLIPSIS);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bounded_events_fit_their_caps(
            actor in ".{0,400}",
            resource in ".{0,800}",
            details in prop::collection::btree_map(".{0,100}", ".{0,700}", 0..40),
        ) {
            let mut event = AuditEvent::new(TenantId::new("acme").unwrap(), actor.clone(), ActorKind::User, "a")
                .resource(resource.clone());
            event.details = details;
            let event = event.bounded();
            prop_assert!(event.actor.len() <= MAX_ACTOR_BYTES);
            prop_assert!(event.resource.as_ref().unwrap().len() <= MAX_RESOURCE_BYTES);
            prop_assert!(event.details.len() <= MAX_DETAILS);
            for (k, v) in &event.details {
                prop_assert!(k.len() <= MAX_DETAIL_KEY_BYTES && v.len() <= MAX_DETAIL_VALUE_BYTES);
            }
            if actor.len() <= MAX_ACTOR_BYTES {
                prop_assert_eq!(&event.actor, &actor);
            } else {
                prop_assert!(actor.starts_with(event.actor.trim_end_matches('…')));
            }
        }
    }
}
