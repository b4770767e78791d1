//! JWT verification over the configured realms: [`JwtVerifier`],
//! [`VerifiedToken`], and [`JwtClaims`] with [`encode_hs256`] for issuing
//! development tokens.

mod cache;
mod claim_path;
#[cfg(feature = "openapi")]
pub(crate) use claim_path::MAX_PATH_BYTES;
mod claims;
mod fetch;
#[cfg(test)]
mod idp_tests;
mod keys;
mod remote;
mod tenant_realm;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use claim_path::{ClaimPath, InvalidClaimPath};
pub use claims::{JwtClaims, encode_hs256};
pub use tenant_realm::{RealmClaim, TenantRealm, normalize_issuer, tenant_realm_name};

use self::cache::TokenCache;
use self::claims::{Claim, ParseFailure, RawClaims, RawHeader, parse_object, unix_now};
use self::fetch::{KeyClient, KeyUrl, PlainHttp};
use self::keys::{KeyMiss, KeySet, VerifyKey, parse_algorithm, parse_jwks};
use self::remote::{JwksTiming, RefreshReason, RemoteKeys, RemoteSource};
use self::tenant_realm::{InUse, TenantRealms};
use crate::config::{ClaimsConfig, ConfigError, JwtAlgorithm, RealmKeyConfig, TenancyConfig};
use crate::error::{ErrorKind, TenancyError, TokenRejection};
use crate::rbac::{Role, RoleAliases};
use crate::store::{RealmStore, StoreError};
use crate::tenant::TenantId;

/// Longest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Decoded headers up to this size are decoded on the stack.
const HEADER_STACK: usize = 256;
/// Decoded payloads up to this size are decoded on the stack.
const PAYLOAD_STACK: usize = 1024;

/// What a verified token says: who, for which tenant, with which role, from
/// which realm, until when.
///
/// Cloning bumps reference counts only.
///
/// ```
/// # use std::sync::Arc;
/// use tenancy_core::credential::VerifiedToken;
/// use tenancy_core::rbac::Role;
/// use tenancy_core::tenant::TenantId;
///
/// let token = VerifiedToken {
///     realm: Arc::from("staff"),
///     subject: Arc::from("alice"),
///     tenant: TenantId::new("acme")?,
///     role: Role::Operator,
///     expires_at: 1_900_000_000,
///     services: false,
/// };
/// assert!(token.role >= Role::Viewer);
/// # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The realm's name.
    pub realm: Arc<str>,
    /// The `sub` claim.
    pub subject: Arc<str>,
    /// The tenant: the `tenant_id` claim, or a dedicated realm's tenant.
    pub tenant: TenantId,
    /// The role, after alias mapping.
    pub role: Role,
    /// The `exp` claim, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// Whether the realm is marked for services.
    pub services: bool,
}

/// Verifies bearer tokens against the configured realms.
///
/// Cheap to clone (one reference count), `Send + Sync`; its `Debug` names
/// realms, issuers, key ids and algorithms, never a secret.
///
/// A verifier holds every realm of a [`TenancyConfig`]: its issuer,
/// its keys, whether it is shared by many tenants or dedicated to one, and
/// whether it may speak for services. [`verify`](Self::verify) turns a bearer
/// token into a [`VerifiedToken`] or refuses it with `invalid_token` or
/// `token_expired`. `jsonwebtoken` (aws-lc-rs backend) does the
/// cryptography.
///
/// The rules, in the order they apply:
///
/// 1. Longer than 8 KiB, not three segments, not base64url, not JSON
///    objects, or a `crit` header: `Malformed`, before any cryptography.
/// 2. The header's `alg` must be one of HS256/384/512, RS256/384/512,
///    ES256/384 or EdDSA (`none` and the rest: `Algorithm`).
/// 3. The `iss` claim picks the realm (`Issuer` when no realm has it); the
///    token is verified with that realm's keys only, so a token from one
///    realm is never valid in another.
/// 4. The key: with a `kid` that a key has, that key only, and `alg` must
///    be its algorithm; otherwise the first three keys whose algorithm is
///    `alg` (`Algorithm` when there are none). Each key is fixed to one
///    algorithm; a JWK must name its `alg`. A wrong signature is
///    `Signature`.
/// 5. `exp` is required (`Claims`); past `exp` + leeway, or before `nbf` −
///    leeway: `token_expired`.
/// 6. When the realm lists audiences, `aud` must hold one (`Audience`).
/// 7. The subject and the roles are required, read where the realm's
///    [`ClaimsConfig`] says (`sub` and `role` by default; a dotted path or a
///    JSON Pointer otherwise). The roles claim is a name or an array of
///    names; each goes through the role aliases, unknown names are ignored,
///    and the highest known role wins (`Claims` when none is known); a role
///    above the realm's ceiling
///    ([`RealmConfig::role_ceiling`](crate::config::RealmConfig::role_ceiling):
///    `admin` unless the realm is the platform's or a services realm),
///    `super_admin` from a realm not marked `platform`, and `system` from a
///    realm not marked `services` are refused (`Realm`).
/// 8. The tenant claim (`tenant_id` by default), when present, must be a
///    string. Shared realm: it is required and must be a valid tenant id
///    (`Claims`). Dedicated realm: it may be left out, and must otherwise
///    be the realm's tenant (`Realm`).
///
/// JWK sets behind a URL (`jwks_url`, or the `jwks_uri` of the realm's OIDC
/// discovery document, whose `issuer` must equal the realm's exactly) are
/// fetched on the first token of their realm, refreshed when a token names
/// an unknown `kid` or the set is older than 15 minutes, at most once per 30
/// seconds per realm, one fetch in flight at a time. Fetches use `reqwest`
/// with rustls: the system's roots plus `auth.ca_file` and the realm's
/// `ca_file`, the usual proxy variables, 5 seconds, at most 1 MiB, no
/// redirects. Plain `http` is accepted for loopback hosts only, unless the
/// key (or, for discovery, the realm) sets `allow_http`, and never for a
/// `jwks_uri` that an `https` discovery document names. Symmetric (`oct`)
/// keys are never taken from a JWK set, and a set of more than 64 keys is
/// refused whole (the realm keeps the keys it last fetched). When a realm's
/// keys were never fetched, its tokens are refused with `store_unavailable`
/// (fail closed) and the reason is logged at `WARN`, once while it repeats.
///
/// The realms tenants bring ([`TenantRealm`]) are fetched the same way,
/// `https` only, through the [egress guard](crate::egress): no internal
/// address unless `egress.allow` includes it, checked on the address each
/// connection is made to, and no proxy.
///
/// # What a token costs before it is known
///
/// Verification runs on the caller's task, without `spawn_blocking`, and
/// is bounded instead: a token is checked against at most three keys (its
/// `kid`'s alone when it names one a key has; a `kid` no key has asks for
/// one rate-limited refresh and one more pass, so at most six checks), each
/// one public-key operation of a key the realm's JWK set holds (RSA of 2048 to 8192 bits,
/// P-256, P-384 or Ed25519): at most a few hundred microseconds of one core
/// for the largest RSA keys, tens for the rest; JWK sets hold at most 64
/// keys, and tokens at most 8 KiB. An address whose tokens keep failing is
/// throttled before any of this
/// ([`FailureThrottleConfig`](crate::config::FailureThrottleConfig)), and a
/// token that verified once is a cache lookup from then on.
///
/// Verified tokens are cached (`auth.token_cache_capacity`, 0 turns the
/// cache off) until `exp` + leeway, matched on the whole token, so repeats of
/// an RS256 or ES256 token cost about what a cache lookup costs. A cached
/// token stays accepted until then even if its key leaves a JWK set.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::config::TenancyConfig;
/// use tenancy_core::credential::{JwtClaims, JwtVerifier, encode_hs256};
/// use tenancy_core::rbac::Role;
/// use tenancy_core::secret::Secret;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let secret = "0123456789abcdef0123456789abcdef";
/// let config = TenancyConfig::builder().jwt_hs256("tenancy-dev", secret).build()?;
/// let verifier = JwtVerifier::from_config(&config)?;
///
/// let claims = JwtClaims::new("tenancy-dev", "alice", "tenant-admin", Duration::from_secs(600))
///     .with_tenant("acme");
/// let token = encode_hs256(&Secret::new(secret), &claims)?;
///
/// let verified = verifier.verify(&token).await?;
/// assert_eq!(verified.tenant.as_str(), "acme");
/// assert_eq!(verified.role, Role::Admin); // through the default alias
/// assert_eq!(&*verified.subject, "alice");
///
/// let refused = verifier.verify("not.a.token").await.unwrap_err();
/// assert_eq!(refused.code(), "invalid_token");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    realms: Vec<Realm>,
    by_issuer: HashMap<Box<str>, usize>,
    aliases: RoleAliases,
    leeway: i64,
    cache: Option<TokenCache>,
    /// The realms tenants brought, as last found in the realm store.
    tenant_realms: TenantRealms,
}

struct Realm {
    name: Arc<str>,
    issuer: Box<str>,
    audience: Box<[Box<str>]>,
    tenant: Option<TenantId>,
    services: bool,
    platform: bool,
    ceiling: Role,
    /// Where the tenant, roles and subject are; `None`: the default names,
    /// read with the registered claims in one pass.
    mapping: Option<ClaimsConfig>,
    keys: RealmKeys,
}

impl fmt::Debug for Realm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Realm")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant", &self.tenant)
            .field("services", &self.services)
            .field("platform", &self.platform)
            .field("ceiling", &self.ceiling)
            .field("mapping", &self.mapping)
            .field("keys", &self.keys)
            .finish()
    }
}

#[derive(Debug)]
enum RealmKeys {
    /// Secrets, PEM keys and JWK set files, read at start.
    Fixed(KeySet),
    /// At least one JWK set URL.
    Remote(Box<RemoteKeys>),
}

/// Why [`Inner::check`] stopped.
enum Fail {
    Refused(TenancyError),
    /// The realm's keys must be fetched first (the index of a configured
    /// realm; `None` for the tenant realm being checked).
    NeedKeys(Option<usize>, RefreshReason),
    /// No configured realm has this issuer; a tenant's realm may.
    Foreign(Box<str>),
}

/// What [`JwtVerifier::check_now`] could not finish without waiting.
pub(crate) enum Pending {
    /// The token is refused.
    Refused(TenancyError),
    /// A configured realm's keys must be fetched: await
    /// [`JwtVerifier::verify`].
    Fetch,
    /// No configured realm has the token's issuer: await
    /// [`JwtVerifier::verify_in_tenant_realm`] with it.
    Foreign(Box<str>),
}

impl From<TokenRejection> for Fail {
    fn from(r: TokenRejection) -> Self {
        Fail::Refused(invalid(r))
    }
}

impl From<TenancyError> for Fail {
    fn from(e: TenancyError) -> Self {
        Fail::Refused(e)
    }
}

fn invalid(r: TokenRejection) -> TenancyError {
    TenancyError::new(ErrorKind::InvalidToken(r))
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("realms", &self.inner.realms)
            .field("leeway_secs", &self.inner.leeway)
            .field("cache", &self.inner.cache)
            .finish()
    }
}

impl JwtVerifier {
    /// Builds the realms of `config` (`realms`, `role_aliases`,
    /// `auth.leeway_secs`, `auth.token_cache_capacity`).
    ///
    /// PEM files and JWK set files are read now; a refusal names the key,
    /// e.g. `realms[0].keys[1].public_key_file`. JWK set URLs are checked
    /// now and fetched on the first token of their realm.
    ///
    /// ```
    /// use tenancy_core::config::{JwtAlgorithm, RealmConfig, RealmKeyConfig, TenancyConfig};
    /// use tenancy_core::credential::JwtVerifier;
    ///
    /// let mut realm = RealmConfig::hs256("staff", "https://id.example.com", "0123456789abcdef0123456789abcdef");
    /// realm.keys.push(RealmKeyConfig {
    ///     algorithm: Some(JwtAlgorithm::RS256),
    ///     public_key_file: Some("/no/such/key.pem".into()),
    ///     ..RealmKeyConfig::default()
    /// });
    /// let config = TenancyConfig::builder().realm(realm).build()?;
    /// let err = JwtVerifier::from_config(&config).unwrap_err();
    /// assert_eq!(err.key(), "realms[0].keys[1].public_key_file");
    /// # Ok::<(), tenancy_core::config::ConfigError>(())
    /// ```
    pub fn from_config(config: &TenancyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Self::from_validated(config)
    }

    /// [`from_config`](Self::from_config) of a config already validated
    /// (the engine's builder validates it once, for every part).
    pub(crate) fn from_validated(config: &TenancyConfig) -> Result<Self, ConfigError> {
        Self::build(config, JwksTiming::default())
    }

    fn build(config: &TenancyConfig, timing: JwksTiming) -> Result<Self, ConfigError> {
        let mut realms = Vec::with_capacity(config.realms.len());
        let mut by_issuer = HashMap::with_capacity(config.realms.len());
        for (i, realm) in config.realms.iter().enumerate() {
            let mut fixed = Vec::new();
            let mut sources = Vec::new();
            for (j, key) in realm.keys.iter().enumerate() {
                load_key(
                    key,
                    &format!("realms[{i}].keys[{j}]"),
                    &mut fixed,
                    &mut sources,
                )?;
            }
            if realm.discovery {
                sources.push(
                    RemoteSource::discovery(&realm.issuer, PlainHttp::allowed_if(realm.allow_http))
                        .map_err(|m| ConfigError::new(format!("realms[{i}].issuer"), m))?,
                );
            }
            let keys = if sources.is_empty() {
                RealmKeys::Fixed(KeySet::new(fixed))
            } else {
                let client = key_client(config, i, timing.timeout)?;
                RealmKeys::Remote(Box::new(RemoteKeys::new(fixed, sources, client, timing)))
            };
            by_issuer.insert(realm.issuer.as_str().into(), realms.len());
            realms.push(Realm {
                name: Arc::from(realm.name.as_str()),
                issuer: realm.issuer.as_str().into(),
                audience: realm.audience.iter().map(|a| a.as_str().into()).collect(),
                tenant: realm.tenant.clone(),
                services: realm.services,
                platform: realm.platform,
                ceiling: realm.role_ceiling(),
                mapping: (!realm.claims.is_default()).then(|| realm.claims.clone()),
                keys,
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                realms,
                by_issuer,
                aliases: config.role_aliases.clone(),
                leeway: i64::try_from(config.auth.leeway_secs).unwrap_or(i64::MAX),
                cache: TokenCache::new(config.auth.token_cache_capacity),
                tenant_realms: TenantRealms::new(
                    config.auth.ca_file.as_deref(),
                    config.egress.guard(),
                    timing,
                    config.auth.token_cache_capacity > 0,
                )?,
            }),
        })
    }

    /// Whether no realm is configured (every token would be refused).
    ///
    /// ```
    /// use tenancy_core::config::TenancyConfig;
    /// use tenancy_core::credential::JwtVerifier;
    ///
    /// let verifier = JwtVerifier::from_config(&TenancyConfig::default())?;
    /// assert!(verifier.is_empty());
    /// # Ok::<(), tenancy_core::config::ConfigError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.realms.is_empty()
    }

    /// Verifies a compact JWT (without the `Bearer ` prefix).
    ///
    /// Refusals are `invalid_token` (with the [`TokenRejection`] reason in
    /// [`ErrorKind::InvalidToken`]) or `token_expired`; `store_unavailable`
    /// when the realm's JWK set could never be fetched. The only wait is a
    /// JWK set fetch; everything else runs without yielding.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenancy_core::config::{RealmConfig, TenancyConfig};
    /// use tenancy_core::credential::{JwtClaims, JwtVerifier, encode_hs256};
    /// use tenancy_core::error::{ErrorKind, TokenRejection};
    /// use tenancy_core::secret::Secret;
    /// use tenancy_core::tenant::TenantId;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let secret = "0123456789abcdef0123456789abcdef";
    /// let acme = TenantId::new("acme")?;
    /// let realm = RealmConfig::hs256("acme", "https://id.acme.example", secret).dedicated_to(acme);
    /// let verifier = JwtVerifier::from_config(&TenancyConfig::builder().realm(realm).build()?)?;
    ///
    /// // A dedicated realm's tokens may leave the tenant out…
    /// let claims = JwtClaims::new("https://id.acme.example", "bob", "viewer", Duration::from_secs(60));
    /// let token = encode_hs256(&Secret::new(secret), &claims)?;
    /// assert_eq!(verifier.verify(&token).await?.tenant.as_str(), "acme");
    ///
    /// // …but never name another one.
    /// let token = encode_hs256(&Secret::new(secret), &claims.with_tenant("globex"))?;
    /// let err = verifier.verify(&token).await.unwrap_err();
    /// assert!(matches!(err.kind(), ErrorKind::InvalidToken(TokenRejection::Realm)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TenancyError> {
        let (index, reason) = match self.inner.check(token, unix_now(), true) {
            Ok(verified) => return Ok(verified),
            Err(Fail::Refused(e)) => return Err(e),
            Err(Fail::Foreign(_)) | Err(Fail::NeedKeys(None, _)) => {
                return Err(invalid(TokenRejection::Issuer));
            }
            Err(Fail::NeedKeys(Some(index), reason)) => (index, reason),
        };
        self.verify_after_fetch(token, index, reason).await
    }

    /// [`verify`](Self::verify) without waiting: `None` when the token's
    /// realm must fetch its JWK set first (then await `verify`). Every
    /// other token, valid or not, is answered here.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenancy_core::config::{RealmConfig, TenancyConfig};
    /// use tenancy_core::credential::{JwtClaims, JwtVerifier, encode_hs256};
    /// use tenancy_core::secret::Secret;
    ///
    /// let secret = "0123456789abcdef0123456789abcdef";
    /// let realm = RealmConfig::hs256("staff", "https://id.example.com", secret);
    /// let verifier = JwtVerifier::from_config(&TenancyConfig::builder().realm(realm).build()?)?;
    /// let claims = JwtClaims::new("https://id.example.com", "bob", "viewer", Duration::from_secs(60))
    ///     .with_tenant("acme");
    /// let token = encode_hs256(&Secret::new(secret), &claims)?;
    /// let verified = verifier.verify_now(&token).expect("no key to fetch")?;
    /// assert_eq!(verified.tenant.as_str(), "acme");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_now(&self, token: &str) -> Option<Result<VerifiedToken, TenancyError>> {
        match self.check_now(token) {
            Ok(verified) => Some(Ok(verified)),
            Err(Pending::Refused(e)) => Some(Err(e)),
            Err(Pending::Foreign(_)) => Some(Err(invalid(TokenRejection::Issuer))),
            Err(Pending::Fetch) => None,
        }
    }

    /// Whether `token` verified a moment ago and is still in a
    /// verified-token cache (the configured realms', or that of the tenant
    /// realm its `iss` names): no signature is checked, no key fetched, no
    /// store read. The failure throttle serves such a token from an address
    /// over its allowance; the token is then verified as any other.
    pub(crate) fn is_known(&self, token: &str) -> bool {
        if token.len() > MAX_TOKEN_LEN {
            return false;
        }
        let Some((signed, signature)) = token.rsplit_once('.') else {
            return false;
        };
        let now = unix_now();
        if let Some(cache) = &self.inner.cache
            && cache.get(token, signature, now).is_some()
        {
            return true;
        }
        let Some((_, payload64)) = signed.split_once('.') else {
            return false;
        };
        let mut stack = [0u8; PAYLOAD_STACK];
        let mut heap = Vec::new();
        let Some(payload_json) = decode_segment(payload64, &mut stack, &mut heap) else {
            return false;
        };
        let Ok(claims) = parse_object::<RawClaims<'_>>(payload_json) else {
            return false;
        };
        claims.iss.as_ref().is_some_and(|issuer| {
            self.inner
                .tenant_realms
                .is_cached(&issuer.0, token, signature, now)
        })
    }

    /// [`verify_now`](Self::verify_now) telling apart a token whose issuer
    /// no configured realm has, which a tenant's realm may have.
    pub(crate) fn check_now(&self, token: &str) -> Result<VerifiedToken, Pending> {
        match self.inner.check(token, unix_now(), true) {
            Ok(verified) => Ok(verified),
            Err(Fail::Refused(e)) => Err(Pending::Refused(e)),
            Err(Fail::Foreign(issuer)) => Err(Pending::Foreign(issuer)),
            Err(Fail::NeedKeys(..)) => Err(Pending::Fetch),
        }
    }

    /// Verifies a token whose issuer no configured realm has, against the
    /// realm a tenant brought with that issuer, as `realms` has it now: a
    /// realm removed or changed there is never used again. `Issuer` when no
    /// tenant has the issuer; `store_unavailable` when the store fails.
    pub(crate) async fn verify_in_tenant_realm(
        &self,
        token: &str,
        issuer: &str,
        realms: &dyn RealmStore,
    ) -> Result<VerifiedToken, TenancyError> {
        let claim = match realms.find_by_issuer(issuer).await {
            Ok(Some(claim)) if claim.realm.issuer == issuer => claim,
            Ok(_) => return Err(invalid(TokenRejection::Issuer)),
            Err(e) => return Err(crate::pipeline::store_failure("realm store", e)),
        };
        let tenant = claim.tenant.clone();
        let inner = &self.inner;
        // A realm reaches the store only through `TenantRealm::validate`,
        // so this fails only if the TLS set-up does; at `DEBUG`, since any
        // caller can name the issuer as often as it likes.
        let in_use = inner.tenant_realms.in_use(claim).map_err(|e| {
            tracing::debug!(tenant_id = %tenant, error = %e, "a tenant's realm cannot be used");
            invalid(TokenRejection::Issuer)
        })?;
        let reason = match inner.check_in(token, unix_now(), true, &in_use) {
            Ok(verified) => return Ok(verified),
            Err(Fail::Refused(e)) => return Err(e),
            Err(Fail::NeedKeys(_, reason)) => reason,
            Err(Fail::Foreign(_)) => return Err(invalid(TokenRejection::Issuer)),
        };
        if let RealmKeys::Remote(remote) = &in_use.realm.keys {
            Box::pin(remote.refresh(&in_use.realm.name, reason)).await;
        }
        match inner.check_in(token, unix_now(), false, &in_use) {
            Ok(verified) => Ok(verified),
            Err(Fail::Refused(e)) => Err(e),
            Err(_) => Err(invalid(TokenRejection::Signature)),
        }
    }

    /// The rest of [`verify`](Self::verify) once `check` asked for the
    /// keys of realm `index`.
    async fn verify_after_fetch(
        &self,
        token: &str,
        index: usize,
        reason: RefreshReason,
    ) -> Result<VerifiedToken, TenancyError> {
        let realm = &self.inner.realms[index];
        if let RealmKeys::Remote(remote) = &realm.keys {
            // Boxed: the fetch is rare and its state would otherwise make
            // every `verify` future large.
            Box::pin(remote.refresh(&realm.name, reason)).await;
        }
        match self.inner.check(token, unix_now(), false) {
            Ok(verified) => Ok(verified),
            Err(Fail::Refused(e)) => Err(e),
            Err(Fail::Foreign(_)) => Err(invalid(TokenRejection::Issuer)),
            Err(Fail::NeedKeys(..)) => Err(invalid(TokenRejection::Signature)),
        }
    }
}

/// Parses a JWK set as a `jwks_file` or `jwks_url` would be: how many
/// signing keys it yields. For the fuzz targets only.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn parse_jwk_set_for_fuzzing(bytes: &[u8]) -> Result<usize, String> {
    parse_jwks(bytes, None, None).map(|keys| keys.len())
}

/// The key client of realm `index`: the system's roots plus
/// `auth.ca_file` and the realm's `ca_file`.
fn key_client(
    config: &TenancyConfig,
    index: usize,
    timeout: std::time::Duration,
) -> Result<KeyClient, ConfigError> {
    let realm = &config.realms[index];
    let files: Vec<(String, &std::path::Path)> = [
        ("auth.ca_file".to_owned(), config.auth.ca_file.as_deref()),
        (format!("realms[{index}].ca_file"), realm.ca_file.as_deref()),
    ]
    .into_iter()
    .filter_map(|(key, file)| Some((key, file?)))
    .collect();
    let paths: Vec<&std::path::Path> = files.iter().map(|(_, f)| *f).collect();
    KeyClient::new(&paths, timeout).map_err(|(i, message)| {
        let key = files
            .get(i)
            .map_or_else(|| format!("realms[{index}]"), |(k, _)| k.clone());
        ConfigError::new(key, message)
    })
}

fn load_key(
    config: &RealmKeyConfig,
    path: &str,
    fixed: &mut Vec<Arc<VerifyKey>>,
    sources: &mut Vec<RemoteSource>,
) -> Result<(), ConfigError> {
    let kid = config.kid.as_deref();
    let algorithm = || {
        config.algorithm.ok_or_else(|| {
            ConfigError::new(
                format!("{path}.algorithm"),
                "required: each key is fixed to one algorithm",
            )
        })
    };
    let read = |field: &str, file: &std::path::Path| {
        std::fs::read(file).map_err(|e| {
            ConfigError::new(
                format!("{path}.{field}"),
                format!("cannot read {}: {e}", file.display()),
            )
        })
    };
    if let Some(secret) = &config.secret {
        fixed.push(Arc::new(VerifyKey::hmac(
            kid,
            algorithm()?,
            secret.expose().as_bytes(),
        )));
    } else if let Some(pem) = &config.public_key_pem {
        let key = VerifyKey::from_pem(kid, algorithm()?, pem.as_bytes())
            .map_err(|m| ConfigError::new(format!("{path}.public_key_pem"), m))?;
        fixed.push(Arc::new(key));
    } else if let Some(file) = &config.public_key_file {
        let pem = read("public_key_file", file)?;
        let key = VerifyKey::from_pem(kid, algorithm()?, &pem).map_err(|m| {
            ConfigError::new(
                format!("{path}.public_key_file"),
                format!("{}: {m}", file.display()),
            )
        })?;
        fixed.push(Arc::new(key));
    } else if let Some(file) = &config.jwks_file {
        let json = read("jwks_file", file)?;
        let keys = parse_jwks(&json, config.algorithm, kid).map_err(|m| {
            ConfigError::new(
                format!("{path}.jwks_file"),
                format!("{}: {m}", file.display()),
            )
        })?;
        fixed.extend(keys);
    } else if let Some(url) = &config.jwks_url {
        let url = KeyUrl::parse(url, PlainHttp::allowed_if(config.allow_http))
            .map_err(|m| ConfigError::new(format!("{path}.jwks_url"), m))?;
        sources.push(RemoteSource::jwks(
            url,
            config.algorithm,
            config.kid.clone(),
        ));
    } else {
        return Err(ConfigError::new(
            path,
            "set exactly one of secret, public_key_pem, public_key_file, jwks_file, jwks_url",
        ));
    }
    Ok(())
}

/// A realm's keys for one verification: borrowed when fixed, a snapshot
/// when fetched.
enum KeysNow<'a> {
    Fixed(&'a KeySet),
    Fetched(Arc<KeySet>),
}

impl std::ops::Deref for KeysNow<'_> {
    type Target = KeySet;
    fn deref(&self) -> &KeySet {
        match self {
            KeysNow::Fixed(keys) => keys,
            KeysNow::Fetched(keys) => keys,
        }
    }
}

impl Inner {
    /// Verifies `token` at `now` with the configured realm of its issuer,
    /// without waiting; asks for a key fetch when `may_fetch` and the realm
    /// needs one.
    fn check(&self, token: &str, now: i64, may_fetch: bool) -> Result<VerifiedToken, Fail> {
        self.check_with(
            token,
            now,
            may_fetch,
            self.cache.as_ref(),
            |issuer| match self.by_issuer.get(issuer) {
                Some(&index) => Ok((&self.realms[index], Some(index))),
                None => Err(Fail::Foreign(issuer.into())),
            },
        )
    }

    /// [`check`](Self::check) with the tenant realm `in_use`, whose issuer
    /// the token must carry.
    fn check_in(
        &self,
        token: &str,
        now: i64,
        may_fetch: bool,
        in_use: &InUse,
    ) -> Result<VerifiedToken, Fail> {
        self.check_with(token, now, may_fetch, in_use.cache.as_ref(), |issuer| {
            if *issuer == *in_use.realm.issuer {
                Ok((&in_use.realm, None))
            } else {
                Err(invalid(TokenRejection::Issuer).into())
            }
        })
    }

    /// The checks of a token, with the realm `pick` gives for its issuer
    /// (and that realm's index, for a configured one) and the verified
    /// tokens of `cache`.
    fn check_with<'r>(
        &self,
        token: &str,
        now: i64,
        may_fetch: bool,
        cache: Option<&TokenCache>,
        pick: impl FnOnce(&str) -> Result<(&'r Realm, Option<usize>), Fail>,
    ) -> Result<VerifiedToken, Fail> {
        use TokenRejection::{Algorithm, Claims, Issuer, Malformed, Signature};

        if token.len() > MAX_TOKEN_LEN {
            return Err(Malformed.into());
        }
        let (signed, signature) = token.rsplit_once('.').ok_or(Malformed)?;
        if let Some(cache) = cache
            && let Some(hit) = cache.get(token, signature, now)
        {
            return Ok(hit);
        }
        let (header64, payload64) = signed.split_once('.').ok_or(Malformed)?;
        if payload64.contains('.') {
            return Err(Malformed.into());
        }

        let mut stack = [0u8; HEADER_STACK];
        let mut heap = Vec::new();
        let header_json = decode_segment(header64, &mut stack, &mut heap).ok_or(Malformed)?;
        let header: RawHeader<'_> = parse_object(header_json).map_err(|_| Malformed)?;
        if header.crit.is_some() {
            return Err(Malformed.into());
        }
        let alg: JwtAlgorithm = parse_algorithm(&header.alg.0).ok_or(Algorithm)?;

        let mut stack = [0u8; PAYLOAD_STACK];
        let mut heap = Vec::new();
        let payload_json = decode_segment(payload64, &mut stack, &mut heap).ok_or(Malformed)?;
        let claims: RawClaims<'_> = parse_object(payload_json).map_err(|e| match e {
            ParseFailure::NotJson => Malformed,
            ParseFailure::BadFields => Claims,
        })?;
        if !is_base64url(signature) {
            return Err(Malformed.into());
        }

        let issuer = claims.iss.as_ref().ok_or(Issuer)?;
        let (realm, index) = pick(&issuer.0)?;
        let keys = match &realm.keys {
            RealmKeys::Fixed(keys) => KeysNow::Fixed(keys),
            RealmKeys::Remote(remote) => {
                if may_fetch && !remote.is_loaded() {
                    return Err(Fail::NeedKeys(index, RefreshReason::Unloaded));
                }
                if may_fetch && remote.is_stale() {
                    return Err(Fail::NeedKeys(index, RefreshReason::Stale));
                }
                KeysNow::Fetched(remote.snapshot())
            }
        };
        let kid = header.kid.as_ref().map(|k| &*k.0);
        if let Err(miss) = keys.verify(alg, kid, signed.as_bytes(), signature) {
            return Err(match (&realm.keys, miss) {
                (_, KeyMiss::Rejected(Malformed)) => Malformed.into(),
                // The fetched keys are missing: fail closed, but not as a
                // refusal of the token.
                (RealmKeys::Remote(remote), _) if !remote.is_loaded() => {
                    Fail::Refused(TenancyError::from(StoreError::unavailable(format!(
                        "the JWK set of realm {} could not be fetched",
                        realm.name
                    ))))
                }
                (RealmKeys::Remote(_), KeyMiss::UnknownKid) if may_fetch => {
                    Fail::NeedKeys(index, RefreshReason::UnknownKid)
                }
                (_, KeyMiss::UnknownKid) => Signature.into(),
                (_, KeyMiss::Rejected(r)) => r.into(),
            });
        }

        let verified = self.check_claims(realm, &claims, payload_json, now)?;
        if let Some(cache) = cache {
            let valid_until = verified.expires_at.saturating_add(self.leeway);
            cache.insert(token, signature, &verified, valid_until, now);
        }
        Ok(verified)
    }

    /// The claim rules, after the signature verified.
    fn check_claims(
        &self,
        realm: &Realm,
        claims: &RawClaims<'_>,
        payload_json: &[u8],
        now: i64,
    ) -> Result<VerifiedToken, TenancyError> {
        use TokenRejection::{Audience, Claims};

        let exp = claims.exp.ok_or_else(|| invalid(Claims))?;
        if exp < now.saturating_sub(self.leeway) {
            return Err(TenancyError::new(ErrorKind::TokenExpired));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(TenancyError::new(ErrorKind::TokenExpired));
        }
        if !realm.audience.is_empty()
            && !claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains_any(&realm.audience))
        {
            return Err(invalid(Audience));
        }
        let Some(mapping) = &realm.mapping else {
            let identity = Identity {
                subject: claims.sub.as_ref(),
                roles: claims.role.as_ref(),
                tenant: claims.tenant_id.as_ref(),
            };
            return self.identify(realm, identity, exp);
        };
        // A realm with mapped claims reads the (verified) payload whole.
        let payload: serde_json::Value =
            serde_json::from_slice(payload_json).map_err(|_| invalid(Claims))?;
        let found = |path: &ClaimPath| path.find(&payload).map(Claim::from_value);
        let (subject, roles, tenant) = (
            found(&mapping.subject),
            found(&mapping.roles),
            found(&mapping.tenant),
        );
        let identity = Identity {
            subject: subject.as_ref(),
            roles: roles.as_ref(),
            tenant: tenant.as_ref(),
        };
        self.identify(realm, identity, exp)
    }

    /// Who the token speaks for, with which role, for which tenant.
    fn identify(
        &self,
        realm: &Realm,
        identity: Identity<'_>,
        exp: i64,
    ) -> Result<VerifiedToken, TenancyError> {
        use TokenRejection::Claims;

        let subject = identity
            .subject
            .and_then(Claim::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(Claims))?;
        let role = identity
            .roles
            .and_then(|roles| self.highest_role(roles))
            .ok_or_else(|| invalid(Claims))?;
        // The realm's ceiling, whatever alias the role came through: a
        // tenant's identity provider never mints platform power.
        if role > realm.ceiling
            || (role == Role::SuperAdmin && !realm.platform)
            || (role == Role::System && !realm.services)
        {
            return Err(invalid(TokenRejection::Realm));
        }
        let claimed = match identity.tenant {
            None => None,
            Some(claim) => Some(claim.as_str().ok_or_else(|| invalid(Claims))?),
        };
        let tenant = match (&realm.tenant, claimed) {
            (Some(own), None) => own.clone(),
            (Some(own), Some(claimed)) if own.as_str() == claimed => own.clone(),
            (Some(_), Some(_)) => return Err(invalid(TokenRejection::Realm)),
            (None, Some(claimed)) => TenantId::new(claimed).map_err(|_| invalid(Claims))?,
            (None, None) => return Err(invalid(Claims)),
        };
        Ok(VerifiedToken {
            realm: Arc::clone(&realm.name),
            subject: Arc::from(subject),
            tenant,
            role,
            expires_at: exp,
            services: realm.services,
        })
    }

    /// The highest role the roles claim names through the aliases, names
    /// no alias knows ignored; `None` when it names no known role.
    fn highest_role(&self, roles: &Claim<'_>) -> Option<Role> {
        match roles {
            Claim::Str(name) => self.aliases.resolve(name),
            Claim::Strs(names) => names.iter().filter_map(|n| self.aliases.resolve(n)).max(),
            Claim::Other => None,
        }
    }
}

/// The claims a realm reads the caller from, wherever they were.
struct Identity<'c> {
    subject: Option<&'c Claim<'c>>,
    roles: Option<&'c Claim<'c>>,
    tenant: Option<&'c Claim<'c>>,
}

/// Whether `s` is a non-empty unpadded base64url string of a possible length.
fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.len() % 4 != 1
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Decodes one base64url segment, on the stack when it fits.
fn decode_segment<'b>(
    segment: &str,
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    use base64::Engine as _;
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    if base64::decoded_len_estimate(segment.len()) <= stack.len() {
        let n = engine.decode_slice(segment, stack).ok()?;
        Some(&stack[..n])
    } else {
        engine.decode_vec(segment, heap).ok()?;
        Some(heap)
    }
}
