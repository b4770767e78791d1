//! Realms that tenants bring: [`TenantRealm`], an enterprise tenant's own
//! identity provider, set at run time through the
//! [`RealmStore`](crate::store::RealmStore) and dedicated to that tenant;
//! and the verifier's cache of the ones in use.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::cache::TokenCache;
use super::fetch::{KeyClient, KeyUrl, PlainHttp};
use super::remote::{JwksTiming, RemoteKeys, RemoteSource};
use super::{Realm, RealmKeys};
use crate::ConcurrentMap;
use crate::config::{ClaimsConfig, ConfigError};
use crate::egress::EgressGuard;
use crate::rbac::Role;
use crate::tenant::TenantId;

/// Longest issuer accepted, in bytes.
const MAX_ISSUER_BYTES: usize = 512;
/// Most audiences a tenant realm may list.
const MAX_AUDIENCES: usize = 16;
/// Tokens cached per tenant realm.
const TOKENS_PER_REALM: usize = 1_000;

/// A tenant's own identity provider: its issuer, where its keys are, and
/// where its tokens carry the tenant, the roles and the subject.
///
/// Such a realm is dedicated to its tenant by construction (a token naming
/// another tenant is refused), its role ceiling is `admin`, and it may
/// issue neither `super_admin` nor `system`. Its keys come from OIDC
/// discovery of its issuer or from one JWK set URL, `https` only, fetched
/// through the [egress guard](crate::egress) (no internal address unless
/// the operator allows it, no proxy, no redirect). It must name the
/// audience its tokens carry (RFC 8725, section 3.9): a tenant's identity
/// provider issues tokens for many services, and only those meant for this
/// one may pass.
///
/// ```
/// use tenancy_core::credential::TenantRealm;
///
/// let realm = TenantRealm::discovered("https://id.bigcorp.example/realms/bigcorp")
///     .audience("tenancy");
/// assert!(realm.validate().is_ok());
///
/// let mut bad = realm.clone();
/// bad.jwks_url = Some("https://id.bigcorp.example/certs".into());
/// assert!(bad.validate().is_err()); // discovery or a JWK set URL, not both
///
/// let plain = TenantRealm::with_jwks_url("https://id.bigcorp.example", "http://127.0.0.1:6379/")
///     .audience("tenancy");
/// assert!(plain.validate().is_err()); // https only
/// assert!(TenantRealm::discovered("https://id.bigcorp.example").validate().is_err()); // no audience
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRealm {
    /// The `iss` its tokens carry; no other realm may have it.
    pub issuer: String,
    /// Whether its keys are found through OIDC discovery of `issuer`.
    #[serde(default)]
    pub discovery: bool,
    /// The URL of its JWK set, when not discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Accepted audiences: a token's `aud` must hold one. At least one is
    /// required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Where its tokens carry the tenant, the roles and the subject.
    #[serde(default)]
    pub claims: ClaimsConfig,
}

impl TenantRealm {
    /// A realm whose keys are found through OIDC discovery of `issuer`.
    pub fn discovered(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            discovery: true,
            jwks_url: None,
            audience: Vec::new(),
            claims: ClaimsConfig::default(),
        }
    }

    /// A realm whose keys are the JWK set at `jwks_url`.
    pub fn with_jwks_url(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            discovery: false,
            jwks_url: Some(jwks_url.into()),
            audience: Vec::new(),
            claims: ClaimsConfig::default(),
        }
    }

    /// Accepts tokens whose `aud` holds `audience` (besides any accepted
    /// already).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// Reads the tenant, the roles and the subject where `claims` says.
    pub fn claims(mut self, claims: ClaimsConfig) -> Self {
        self.claims = claims;
        self
    }

    /// Checks what a caller set: the issuer (1 to 512 visible characters),
    /// exactly one of `discovery` and `jwks_url`, an `https` URL (the
    /// scheme in any case), 1 to 16 audiences of 1 to 256 characters. The
    /// message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let issuer = &self.issuer;
        if issuer.is_empty()
            || issuer.len() > MAX_ISSUER_BYTES
            || !issuer.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("issuer must be 1 to 512 visible ASCII characters".to_owned());
        }
        match (self.discovery, &self.jwks_url) {
            (true, None) => KeyUrl::discovery(issuer, PlainHttp::Never)
                .map(|_| ())
                .map_err(|e| format!("issuer: {e}")),
            (false, Some(url)) => KeyUrl::parse(url, PlainHttp::Never)
                .map(|_| ())
                .map_err(|e| format!("jwks_url: {e}")),
            _ => Err("set discovery = true or a jwks_url, not both".to_owned()),
        }?;
        if self.audience.is_empty()
            || self.audience.len() > MAX_AUDIENCES
            || self.audience.iter().any(|a| a.is_empty() || a.len() > 256)
        {
            return Err(
                "audience: 1 to 16, each 1 to 256 characters (a tenant realm names the audience its tokens carry)"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// An issuer as realms are told apart: scheme and host lowercase, the
/// default port (443, 80) and a trailing `/` dropped. Two issuers that
/// differ only there name one identity provider, so they may not belong to
/// two realms; a token's `iss` must still equal its realm's issuer exactly.
/// An issuer that is not an `http(s)` URL loses its trailing `/` only.
///
/// ```
/// use tenancy_core::credential::normalize_issuer;
///
/// let one = normalize_issuer("https://id.acme.example/realms/acme");
/// assert_eq!(normalize_issuer("HTTPS://ID.Acme.example:443/realms/acme/"), one);
/// assert_ne!(normalize_issuer("https://id.acme.example/realms/ACME"), one); // paths keep their case
/// assert_eq!(normalize_issuer("tenancy-dev/"), "tenancy-dev");
/// ```
pub fn normalize_issuer(issuer: &str) -> String {
    let trimmed = issuer.trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return trimmed.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return trimmed.to_owned(),
    };
    let (authority, path) = rest
        .find(['/', '?', '#'])
        .map_or((rest, ""), |i| rest.split_at(i));
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    format!("{scheme}://{authority}{path}")
}

/// The name of the realm `tenant` brought, as verified tokens
/// ([`VerifiedToken::realm`](super::VerifiedToken::realm)) and the keys
/// they issue ([`ApiKeyRecord::realm`](crate::credential::ApiKeyRecord::realm))
/// carry it: `tenant:<id>`.
///
/// ```
/// use tenancy_core::credential::tenant_realm_name;
/// use tenancy_core::tenant::TenantId;
///
/// assert_eq!(tenant_realm_name(&TenantId::new("acme")?), "tenant:acme");
/// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
/// ```
pub fn tenant_realm_name(tenant: &TenantId) -> String {
    format!("tenant:{tenant}")
}

/// A tenant realm with the tenant that brought it, as a
/// [`RealmStore`](crate::store::RealmStore) finds it by issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealmClaim {
    /// The tenant the realm is dedicated to.
    pub tenant: TenantId,
    /// The realm.
    pub realm: TenantRealm,
}

/// A tenant realm as the verifier uses it: built once per configuration,
/// with its own keys and its own verified tokens.
pub(super) struct InUse {
    pub(super) claim: RealmClaim,
    pub(super) realm: Realm,
    pub(super) cache: Option<TokenCache>,
}

/// The tenant realms this verifier has used, by tenant. An entry is found
/// only through a store answer naming its tenant and configuration, so a
/// realm removed or changed in the store is never used again, whatever is
/// here.
pub(super) struct TenantRealms {
    by_tenant: ConcurrentMap<TenantId, Arc<InUse>>,
    /// The same realms by issuer, for [`is_cached`](Self::is_cached) alone:
    /// whatever it finds, the token is then verified as any other.
    by_issuer: ConcurrentMap<Box<str>, Arc<InUse>>,
    /// The key client of tenant realms (the system's roots and
    /// `auth.ca_file`): built at start when there is a CA file to read, so
    /// a bad one is a configuration error; else on first use.
    client: OnceLock<Result<KeyClient, String>>,
    /// Where tenant realms' keys may be fetched from.
    guard: EgressGuard,
    timing: JwksTiming,
    cache_tokens: bool,
}

impl std::fmt::Debug for TenantRealms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRealms")
            .field("in_use", &self.by_tenant.len())
            .finish()
    }
}

impl TenantRealms {
    /// No realm in use yet; `ca_file` (`auth.ca_file`) is read now. Keys
    /// are fetched only where `guard` permits.
    pub(super) fn new(
        ca_file: Option<&std::path::Path>,
        guard: EgressGuard,
        timing: JwksTiming,
        cache_tokens: bool,
    ) -> Result<Self, ConfigError> {
        let client = OnceLock::new();
        if let Some(file) = ca_file {
            let built = KeyClient::guarded(&[file], timing.timeout, guard.clone())
                .map_err(|(_, e)| ConfigError::new("auth.ca_file", e))?;
            let _ = client.set(Ok(built));
        }
        Ok(Self {
            by_tenant: ConcurrentMap::default(),
            by_issuer: ConcurrentMap::default(),
            client,
            guard,
            timing,
            cache_tokens,
        })
    }

    /// The realm `claim` describes, built now unless the one in use has
    /// the same configuration.
    pub(super) fn in_use(&self, claim: RealmClaim) -> Result<Arc<InUse>, String> {
        if let Some(current) = self.by_tenant.get(&claim.tenant)
            && current.claim == claim
        {
            return Ok(Arc::clone(&current));
        }
        // A realm stored before today's rules (plain http, no audience) is
        // not used.
        claim.realm.validate()?;
        let client = self
            .client
            .get_or_init(|| {
                KeyClient::guarded(&[], self.timing.timeout, self.guard.clone()).map_err(|(_, e)| e)
            })
            .clone()?;
        let source = if claim.realm.discovery {
            RemoteSource::discovery(&claim.realm.issuer, PlainHttp::Never)?
        } else {
            let url = claim.realm.jwks_url.as_deref().unwrap_or_default();
            RemoteSource::jwks(KeyUrl::parse(url, PlainHttp::Never)?, None, None)
        };
        let realm = Realm {
            name: Arc::from(tenant_realm_name(&claim.tenant)),
            issuer: claim.realm.issuer.as_str().into(),
            audience: claim
                .realm
                .audience
                .iter()
                .map(|a| a.as_str().into())
                .collect(),
            tenant: Some(claim.tenant.clone()),
            services: false,
            platform: false,
            ceiling: Role::Admin,
            mapping: (!claim.realm.claims.is_default()).then(|| claim.realm.claims.clone()),
            keys: RealmKeys::Remote(Box::new(RemoteKeys::new(
                Vec::new(),
                vec![source],
                client,
                self.timing,
            ))),
        };
        let in_use = Arc::new(InUse {
            cache: if self.cache_tokens {
                TokenCache::new(TOKENS_PER_REALM)
            } else {
                None
            },
            realm,
            claim,
        });
        if let Some(previous) = self
            .by_tenant
            .insert(in_use.claim.tenant.clone(), Arc::clone(&in_use))
        {
            // Only its own entry: another tenant may hold the issuer now.
            self.by_issuer
                .remove_if(&*previous.realm.issuer, |_, held| {
                    Arc::ptr_eq(held, &previous)
                });
        }
        self.by_issuer
            .insert(in_use.realm.issuer.clone(), Arc::clone(&in_use));
        Ok(in_use)
    }

    /// Whether `token` (whose `iss` is `issuer` and whose signature segment
    /// is `signature`) is in the verified-token cache of the tenant realm
    /// in use for `issuer`, at `now`.
    pub(super) fn is_cached(&self, issuer: &str, token: &str, signature: &str, now: i64) -> bool {
        self.by_issuer.get(issuer).is_some_and(|in_use| {
            in_use
                .cache
                .as_ref()
                .is_some_and(|cache| cache.get(token, signature, now).is_some())
        })
    }
}
