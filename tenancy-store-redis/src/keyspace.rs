//! Where every record lives: the one place that spells out key names.

use tenancy_core::credential::ApiKeyDigest;
use tenancy_core::limit::{QuotaKey, RateLimitKey};
use tenancy_core::tenant::TenantId;

/// Key names under one prefix. Every key that belongs to a tenant carries
/// the tenant's hash tag `{tenant}`, so a tenant's keys share one Redis
/// Cluster slot and scripts over several of them stay within it.
#[derive(Debug, Clone)]
pub(crate) struct Keyspace {
    prefix: String,
}

impl Keyspace {
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{<tenant>}:tenant`: the tenant record (JSON).
    pub(crate) fn tenant(&self, id: &TenantId) -> String {
        format!("{}:{{{id}}}:tenant", self.prefix)
    }

    /// `<prefix>:tenants`: sorted set of every tenant id (score 0, so
    /// ordered by id).
    pub(crate) fn tenant_index(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    /// `<prefix>:apikey:<digest hex>`: an API key record (hash).
    /// Issuer -> the claim of the tenant realm with that issuer.
    pub(crate) fn realms_by_issuer(&self) -> String {
        format!("{}:{{realms}}:by-issuer", self.prefix)
    }

    /// Tenant id -> the issuer of its realm (same slot as
    /// [`realms_by_issuer`](Self::realms_by_issuer)).
    pub(crate) fn realm_issuers(&self) -> String {
        format!("{}:{{realms}}:issuer-of", self.prefix)
    }

    pub(crate) fn api_key(&self, digest: &ApiKeyDigest) -> String {
        format!("{}:apikey:{}", self.prefix, digest.to_hex())
    }

    /// `<prefix>:{<tenant>}:apikeys`: hash of the tenant's key ids to their
    /// digests.
    pub(crate) fn api_key_index(&self, tenant: &TenantId) -> String {
        format!("{}:{{{tenant}}}:apikeys", self.prefix)
    }

    /// `<prefix>:{<tenant>}:apikeys:live`: hash of the tenant's live key ids
    /// to their expiry in unix milliseconds (0 for none), counted against
    /// the plan's key quota.
    pub(crate) fn api_key_live(&self, tenant: &TenantId) -> String {
        format!("{}:{{{tenant}}}:apikeys:live", self.prefix)
    }

    /// `<prefix>:{<tenant>}:<name>`: a tenant's collection of records
    /// `name` (`members`, `teams`), a hash of id to JSON; its paging order
    /// and unique keys are this key plus `:order` and `:unique`.
    pub(crate) fn collection(&self, tenant: &TenantId, name: &str) -> String {
        format!("{}:{{{tenant}}}:{name}", self.prefix)
    }

    /// The `MATCH` pattern of every rate-limit bucket of `tenant`.
    pub(crate) fn rate_pattern(&self, tenant: &TenantId) -> String {
        format!(
            "{}:rl:{{{tenant}}}:*",
            crate::erase::escape_glob(&self.prefix)
        )
    }

    /// The `MATCH` pattern of every budget counter of `tenant`.
    pub(crate) fn quota_pattern(&self, tenant: &TenantId) -> String {
        format!(
            "{}:{{{tenant}}}:budget:*",
            crate::erase::escape_glob(&self.prefix)
        )
    }

    /// `<prefix>:rl:{<tenant>}:…`: a rate-limit bucket.
    pub(crate) fn rate(&self, key: &RateLimitKey) -> String {
        format!("{}:{}", self.prefix, key.to_key_string())
    }

    /// `<prefix>:{<tenant>}:budget:…`: a quota counter.
    pub(crate) fn quota(&self, key: &QuotaKey) -> String {
        format!("{}:{}", self.prefix, key.to_key_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_core::credential::KeyId;

    #[test]
    fn tenant_keys_carry_the_hash_tag() {
        let keys = Keyspace::new("tenancy".into());
        let t = TenantId::new("acme").unwrap();
        assert_eq!(keys.tenant(&t), "tenancy:{acme}:tenant");
        assert_eq!(keys.api_key_index(&t), "tenancy:{acme}:apikeys");
        assert_eq!(
            keys.rate(&RateLimitKey::api_key(t.clone(), KeyId::new("k1").unwrap())),
            "tenancy:rl:{acme}:key:k1"
        );
        assert_eq!(keys.tenant_index(), "tenancy:tenants");
        assert_eq!(keys.collection(&t, "members"), "tenancy:{acme}:members");
        assert_eq!(
            keys.api_key(&ApiKeyDigest::from_bytes([0xab; 32])),
            format!("tenancy:apikey:{}", "ab".repeat(32))
        );
    }
}
