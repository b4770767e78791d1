//! The people and groups of a tenant: [`Member`]s (users with a role) and
//! [`Team`]s, kept by a [`MemberStore`](crate::store::MemberStore) and a
//! [`TeamStore`](crate::store::TeamStore).
//!
//! Neither record names its tenant: a store keeps each under the tenant it
//! was added to, and every call names that tenant, so no call can reach
//! another tenant's members or teams.
//!
//! Ids are made here ([`RecordId::user`], [`RecordId::team`]): a prefix, the creation time and
//! random bits, so ordering by id is ordering by creation, and stores page
//! by id.
//!
//! ```
//! use tenancy_core::member::{Member, RecordId};
//! use tenancy_core::rbac::Role;
//!
//! let alice = Member::new("alice@acme.example", Role::Operator);
//! assert!(alice.user_id.as_str().starts_with("usr_"));
//! assert_eq!(alice.email_key(), "alice@acme.example");
//! std::thread::sleep(std::time::Duration::from_millis(2));
//! let later = RecordId::user();
//! assert!(later > alice.user_id, "ids sort by creation (to the millisecond)");
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::label::{InvalidLabel, Label};
use crate::rbac::Role;

/// The id of a member or a team: a [`Label`] made of a prefix, the creation
/// time in milliseconds and 32 random bits (`usr_0193a1b2c3d4_9f8e7d6c`).
/// Ids made later sort after ids made earlier (to the millisecond).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(Label);

impl RecordId {
    /// A new member id (`usr_…`).
    ///
    /// ```
    /// let id = tenancy_core::member::RecordId::user();
    /// assert!(id.as_str().starts_with("usr_"));
    /// ```
    pub fn user() -> Self {
        Self::made("usr")
    }

    /// A new team id (`team_…`).
    ///
    /// ```
    /// let id = tenancy_core::member::RecordId::team();
    /// assert!(id.as_str().starts_with("team_"));
    /// ```
    pub fn team() -> Self {
        Self::made("team")
    }

    fn made(prefix: &'static str) -> Self {
        let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
        let mut random = [0u8; 4];
        // Without randomness the time alone still makes a valid id; two made
        // in one millisecond then collide, and the store refuses the second.
        let _ = getrandom::fill(&mut random);
        let text = format!("{prefix}_{millis:012x}_{:08x}", u32::from_be_bytes(random));
        // A constant prefix, hex digits and underscores: always a label.
        Self(Label::new(&text).unwrap_or_else(|_| unreachable!("{text} is a label")))
    }

    /// Validates an id read from a request (a path segment): any [`Label`].
    /// It may name nothing; it can never break out of a store key or query.
    ///
    /// ```
    /// use tenancy_core::member::RecordId;
    /// assert!(RecordId::parse("usr_0193a1b2c3d4_9f8e7d6c").is_ok());
    /// assert!(RecordId::parse("a:{b}").is_err());
    /// ```
    pub fn parse(id: &str) -> Result<Self, InvalidLabel> {
        Label::new(id).map(Self)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user of a tenant, with the role it acts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// Id ([`RecordId`] with prefix `usr`).
    pub user_id: RecordId,
    /// E-mail address; unique within the tenant, ignoring ASCII case.
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Role.
    pub role: Role,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl Member {
    /// A member with a new id, no name, created now.
    pub fn new(email: impl Into<String>, role: Role) -> Self {
        Self {
            user_id: RecordId::user(),
            email: email.into(),
            name: None,
            role,
            created_at: Utc::now(),
        }
    }

    /// What makes the member unique within its tenant: its e-mail address
    /// in ASCII lower case.
    pub fn email_key(&self) -> String {
        self.email.to_ascii_lowercase()
    }
}

/// A team of a tenant: members and an on-call order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Team {
    /// Id ([`RecordId`] with prefix `team`).
    pub team_id: RecordId,
    /// Name.
    pub name: String,
    /// Members (user ids or e-mail addresses).
    #[serde(default)]
    pub members: Vec<String>,
    /// On-call order.
    #[serde(default)]
    pub on_call_rotation: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl Team {
    /// An empty team with a new id, created now.
    ///
    /// ```
    /// let team = tenancy_core::member::Team::new("sre");
    /// assert!(team.team_id.as_str().starts_with("team_"));
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            team_id: RecordId::team(),
            name: name.into(),
            members: Vec::new(),
            on_call_rotation: Vec::new(),
            created_at: Utc::now(),
        }
    }
}
