//! Typed guards shared by the web adapters: roles and API key scopes as
//! types (for extractors such as `RequireRole<role::Admin>`), the checks
//! behind them, and the refusal for a request that has no tenant context.
//!
//! ```
//! use tenancy_core::guard::{RoleMarker, role};
//! use tenancy_core::rbac::Role;
//!
//! fn minimum<R: RoleMarker>() -> Role {
//!     R::ROLE
//! }
//! assert_eq!(minimum::<role::Operator>(), Role::Operator);
//! ```

use crate::context::TenantContext;
use crate::error::{ErrorKind, TenancyError};
use crate::rbac::{ApiKeyScope, Role};

/// A role as a type.
pub trait RoleMarker: Send + Sync + 'static {
    /// The role.
    const ROLE: Role;
}

/// Role markers.
pub mod role {
    use super::{Role, RoleMarker};

    macro_rules! markers {
        ($($(#[$doc:meta])* $name:ident => $role:expr;)*) => {$(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RoleMarker for $name {
                const ROLE: Role = $role;
            }
        )*};
    }

    markers! {
        /// `viewer` or higher.
        Viewer => Role::Viewer;
        /// `operator` or higher.
        Operator => Role::Operator;
        /// `admin` or higher.
        Admin => Role::Admin;
        /// `super_admin` or higher.
        SuperAdmin => Role::SuperAdmin;
        /// `system` only.
        System => Role::System;
    }
}

/// An API key scope as a type.
pub trait ScopeMarker: Send + Sync + 'static {
    /// The scope.
    const SCOPE: ApiKeyScope;
}

/// Scope markers.
pub mod scope {
    use super::{ApiKeyScope, ScopeMarker};

    macro_rules! markers {
        ($($(#[$doc:meta])* $name:ident => $scope:expr;)*) => {$(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl ScopeMarker for $name {
                const SCOPE: ApiKeyScope = $scope;
            }
        )*};
    }

    markers! {
        /// Ingestion keys (and full keys).
        Ingestion => ApiKeyScope::Ingestion;
        /// Read-only keys (and full keys).
        Readonly => ApiKeyScope::Readonly;
        /// Full keys only.
        Full => ApiKeyScope::Full;
    }
}

/// `insufficient_role` unless `ctx`'s role is `role` or higher.
///
/// ```
/// # use tenancy_core::guard::require_role;
/// # use tenancy_core::rbac::Role;
/// # fn check(ctx: &tenancy_core::TenantContext) -> Result<(), tenancy_core::TenancyError> {
/// require_role(ctx, Role::Admin)?;
/// # Ok(()) }
/// ```
pub fn require_role(ctx: &TenantContext, role: Role) -> Result<(), TenancyError> {
    if ctx.role() < role {
        return Err(ErrorKind::InsufficientRole { required: role }.into());
    }
    Ok(())
}

/// `scope_denied` when `ctx` is an API key whose scope is neither `scope`
/// nor `full`. Callers that are not API keys pass: roles govern them.
pub fn require_scope(ctx: &TenantContext, scope: ApiKeyScope) -> Result<(), TenancyError> {
    match ctx.scope() {
        Some(own) if own != scope && own != ApiKeyScope::Full => {
            Err(ErrorKind::ScopeDenied { scope: own }.into())
        }
        _ => Ok(()),
    }
}
