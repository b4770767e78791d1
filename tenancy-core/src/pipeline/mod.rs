//! The stages a request goes through, in order, each a small unit with its
//! own tests. [`Tenancy::admit`](crate::Tenancy::admit) runs them;
//! nothing here keeps state of its own.
//!
//! 1. [`authenticate`]: the credential becomes a [`Caller`] (JWT realms, API
//!    keys, or the configured anonymous role), or a refusal.
//! 2. [`tenant`]: the tenant sources and the credential name one tenant,
//!    which must exist.
//! 3. [`gate`]: the tenant's status, the caller's home tenant when it acts on
//!    another, the API key's scope.
//! 4. [`rate`]: the rate buckets of the key and the tenant, in one
//!    all-or-nothing check.
//!
//! The admitted request's [`TenantContext`](crate::context::TenantContext)
//! is then built from the caller, the tenant and its plan. A route's own
//! policy ([`RoutePolicy`](crate::engine::RoutePolicy): minimum role, route
//! bucket) runs after admission, once routing has picked the route, through
//! the same [`gate::role`] and [`rate::take`]
//! ([`Tenancy::check_route`](crate::Tenancy::check_route)); a request it
//! refuses has taken its cells of the key and tenant buckets, as with
//! stacked limiters.

pub mod authenticate;
pub mod gate;
mod known_keys;
pub mod rate;
pub mod tenant;

use chrono::{DateTime, Utc};

use crate::context::{AuthMethod, Principal};
use crate::error::{ErrorKind, TenancyError};
use crate::key_id::KeyId;
use crate::rbac::Role;
use crate::tenant::TenantId;

/// Who a request's credential says it is, before resolution.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The credential's tenant (its home); `None` for anonymous callers.
    pub tenant: Option<TenantId>,
    /// Who it is.
    pub principal: Principal,
    /// Its role.
    pub role: Role,
    /// How it authenticated.
    pub auth: AuthMethod,
    /// The API key it presented, if any.
    pub key: Option<PresentedKey>,
}

impl Caller {
    /// Whether the credential was verified (anything but anonymous).
    pub fn is_verified(&self) -> bool {
        !matches!(self.auth, AuthMethod::Anonymous)
    }
}

/// What the request path needs of a verified API key.
#[derive(Debug, Clone)]
pub struct PresentedKey {
    /// Its id.
    pub key_id: KeyId,
    /// Its own requests-per-second limit.
    pub rate_limit_rps: Option<u32>,
    /// When its last use was recorded.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A store failed: the failure is logged here, and the client gets only
/// `store_unavailable` (its text never reaches an answer).
/// Whether a stage may wait on a store.
///
/// Admission first runs with [`Wait::Never`]: every store call asks the
/// store's `*_now` method (in-memory stores, cache hits), so a request that
/// needs no I/O is admitted without a future to box. A store that would
/// have to be awaited stops the run with [`Halt::WouldWait`] before
/// anything changed (the rate buckets are the last store a request
/// touches), and the adapter awaits the run again with [`Wait::Allowed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Await stores that cannot answer at once.
    Allowed,
    /// Stop with [`Halt::WouldWait`] instead.
    Never,
}

/// Why a stage stopped.
#[derive(Debug)]
pub enum Halt {
    /// The request is refused.
    Refused(TenancyError),
    /// A store would have to be awaited ([`Wait::Never`]); nothing was
    /// changed.
    WouldWait,
}

impl From<TenancyError> for Halt {
    fn from(e: TenancyError) -> Self {
        Halt::Refused(e)
    }
}

impl From<ErrorKind> for Halt {
    fn from(kind: ErrorKind) -> Self {
        Halt::Refused(kind.into())
    }
}

impl Halt {
    /// The refusal; `WouldWait` (a run that could not wait) reads as an
    /// internal error, which only a run with [`Wait::Never`] can meet.
    pub fn into_error(self) -> TenancyError {
        match self {
            Halt::Refused(e) => e,
            Halt::WouldWait => TenancyError::internal("a store had to be awaited"),
        }
    }
}

/// A store's answer: from its `*_now` method when it has one at once, else
/// awaited when `$wait` allows, else the stage stops with
/// [`Halt::WouldWait`].
macro_rules! now_or_await {
    ($wait:expr, $now:expr, $later:expr) => {
        match $now {
            Some(answer) => answer,
            None if $wait == $crate::pipeline::Wait::Allowed => $later.await,
            None => return Err($crate::pipeline::Halt::WouldWait),
        }
    };
}
pub(crate) use now_or_await;

pub(crate) fn store_failure(
    store: &'static str,
    e: crate::store::StoreError,
) -> crate::error::TenancyError {
    tracing::error!(store, error = %e, "store failed");
    crate::error::TenancyError::from(e)
}
