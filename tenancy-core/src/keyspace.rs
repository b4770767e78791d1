//! [`TenantKeyspace`]: store keys scoped to one tenant by construction.
//!
//! Every key starts with the tenant's id in braces, a Redis Cluster hash
//! tag, so one tenant's keys share a slot and multi-key operations on them
//! stay valid in a cluster. Key parts are [`Label`]s: they cannot hold
//! braces, colons or spaces, so no part can forge another tenant's prefix.
//!
//! ```
//! use tenancy_core::keyspace::TenantKeyspace;
//! use tenancy_core::label::Label;
//! use tenancy_core::tenant::TenantId;
//!
//! let keys = TenantKeyspace::new(TenantId::new("acme")?);
//! assert_eq!(keys.cache(&Label::new("dashboards/main")?), "{acme}:cache:dashboards/main");
//! assert_eq!(keys.session(&Label::new("s-42")?), "{acme}:session:s-42");
//! assert!(Label::new("x}:{globex").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::label::Label;
use crate::tenant::TenantId;

/// Builds the store keys of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeyspace {
    tenant: TenantId,
}

impl TenantKeyspace {
    /// The keyspace of `tenant`.
    pub fn new(tenant: TenantId) -> Self {
        Self { tenant }
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// `{tenant}:{kind}:{name}`.
    pub fn key(&self, kind: &Label, name: &Label) -> String {
        format!("{{{}}}:{kind}:{name}", self.tenant)
    }

    /// `{tenant}:cache:{name}`.
    pub fn cache(&self, name: &Label) -> String {
        format!("{{{}}}:cache:{name}", self.tenant)
    }

    /// `{tenant}:session:{id}`.
    pub fn session(&self, id: &Label) -> String {
        format!("{{{}}}:session:{id}", self.tenant)
    }

    /// `{tenant}:budget:{name}`.
    pub fn budget(&self, name: &Label) -> String {
        format!("{{{}}}:budget:{name}", self.tenant)
    }

    /// Whether `key` belongs to this tenant (starts with its hash tag).
    pub fn owns(&self, key: &str) -> bool {
        key.strip_prefix('{')
            .and_then(|rest| rest.strip_prefix(self.tenant.as_str()))
            .is_some_and(|rest| rest.starts_with("}:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A key built in one tenant's keyspace never belongs to another's.
        #[test]
        fn keys_never_cross_tenants(
            a in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
            b in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
            name in "[A-Za-z0-9_./-]{1,40}",
        ) {
            prop_assume!(a != b);
            let ka = TenantKeyspace::new(TenantId::new(&a).unwrap());
            let kb = TenantKeyspace::new(TenantId::new(&b).unwrap());
            let name = Label::new(&name).unwrap();
            for key in [ka.cache(&name), ka.session(&name), ka.budget(&name), ka.key(&name, &name)] {
                prop_assert!(ka.owns(&key));
                prop_assert!(!kb.owns(&key));
            }
        }
    }
}
