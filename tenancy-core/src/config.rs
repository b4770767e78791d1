//! [`TenancyConfig`]: resolution, realms, roles, plans, limits and audit
//! settings, from a builder, `TENANCY_*` environment variables or a TOML
//! file, validated at start.
//!
//! Every refusal is a [`ConfigError`] that names the key (TOML path and, where
//! there is one, the environment variable) and what is wrong with it.
//!
//! # TOML
//!
//! ```
//! use tenancy_core::config::TenancyConfig;
//!
//! let config = TenancyConfig::from_toml_str(r#"
//!     default_plan = "starter"
//!
//!     [resolution]
//!     tenant_header = "X-Tenant"
//!     sources = ["credential", "header", "host"]
//!     host_template = "{tenant}.example.com"
//!     allowed_tenants = ["acme", "globex"]
//!
//!     [auth]
//!     api_key_prefix = "acme"
//!
//!     [[realms]]
//!     name = "staff"
//!     issuer = "https://id.example.com/realms/staff"
//!     [[realms.keys]]
//!     algorithm = "HS256"
//!     secret = "0123456789abcdef0123456789abcdef"
//!
//!     [role_aliases]
//!     sre = "operator"
//!
//!     [plans.starter]
//!     events_per_month = 60_000_000
//!     api_keys = 5
//!     users = 10
//!     rps = 150
//!     retention_days = 30
//!
//!     [limits]
//!     on_store_failure = "closed"
//! "#)?;
//! assert_eq!(config.resolution.tenant_header, "X-Tenant");
//! assert_eq!(config.plans().get("starter").unwrap().quotas.rps, 150);
//! # Ok::<(), tenancy_core::config::ConfigError>(())
//! ```
//!
//! # Environment
//!
//! Each `TENANCY_*` variable sets one TOML key (the realm variables make the
//! realm `default`). Loading reads the variables present into a TOML table,
//! merges it over the file's (tables key by key; an empty optional variable
//! unsets the key), deserializes the result once and validates it once, so
//! a value is checked the same way wherever it came from, and a refusal
//! names the variable it came from. This table is printed from the one
//! loading reads ([`TenancyConfig::environment_table`]):
//!
//! | variable | key | value |
//! |---|---|---|
//! | `TENANCY_ENABLED` | `resolution.enabled` | bool |
//! | `TENANCY_DEFAULT_TENANT` | `resolution.default_tenant` | tenant id |
//! | `TENANCY_TENANT_HEADER` | `resolution.tenant_header` | header name |
//! | `TENANCY_TENANT_QUERY_PARAM` | `resolution.query_param` | name |
//! | `TENANCY_TENANT_REQUIRED` | `resolution.required` | bool |
//! | `TENANCY_ALLOWED_TENANTS` | `resolution.allowed_tenants` | comma list of tenant ids |
//! | `TENANCY_TENANT_SOURCES` | `resolution.sources` | comma list of sources |
//! | `TENANCY_HOST_TEMPLATE` | `resolution.host_template` | e.g. `{tenant}.example.com` |
//! | `TENANCY_PATH_PREFIX` | `resolution.path_prefix` | e.g. `/t` |
//! | `TENANCY_JWT_SECRET` | realm `default` (shared, HS256, the platform's own: may issue `super_admin`) | at least 32 bytes |
//! | `TENANCY_JWT_ISSUER` | its issuer (default `tenancy-dev`) | string |
//! | `TENANCY_JWT_AUDIENCE` | its audiences | comma list |
//! | `TENANCY_JWT_LEEWAY_SECS` | `auth.leeway_secs` | seconds |
//! | `TENANCY_API_KEY_HEADER` | `auth.api_key_header` | header name |
//! | `TENANCY_API_KEY_PREFIX` | `auth.api_key_prefix` | `[a-z0-9]{1,16}` |
//! | `TENANCY_API_KEY_PEPPER` | `auth.api_key_pepper` | secret |
//! | `TENANCY_ANONYMOUS_ROLE` | `auth.anonymous_role` | `viewer`, `operator` or `admin` |
//! | `TENANCY_AUTH_THROTTLE` | `auth.failure_throttle.enabled` | bool |
//! | `TENANCY_AUTH_FAILURES_PER_SEC` | `auth.failure_throttle.per_second` | count |
//! | `TENANCY_AUTH_FAILURE_BURST` | `auth.failure_throttle.burst` | count |
//! | `TENANCY_ROLE_ALIASES` | `role_aliases` | `alias=role,…` |
//! | `TENANCY_DEFAULT_PLAN` | `default_plan` | plan name |
//! | `TENANCY_RATE_LIMITS` | `limits.enabled` | bool |
//! | `TENANCY_LIMITS_ON_STORE_FAILURE` | `limits.on_store_failure` | `open` or `closed` |
//! | `TENANCY_INGESTION_ROUTES` | `limits.ingestion_routes` | comma list of `METHOD /path` |
//! | `TENANCY_AUDIT` | `audit.enabled` | bool |
//! | `TENANCY_AUDIT_BUFFER` | `audit.buffer_capacity` | count |
//! | `TENANCY_TRUSTED_PROXIES` | `network.trusted_proxies` | comma list of CIDR ranges or addresses |
//! | `TENANCY_FORWARDED_HEADER` | `network.forwarded_header` | `x-forwarded-for` or `forwarded` |
//! | `TENANCY_EGRESS_ALLOW` | `egress.allow` | comma list of CIDR ranges or addresses |
//!
//! ```
//! use tenancy_core::config::TenancyConfig;
//!
//! let vars = [("TENANCY_DEFAULT_TENANT", "acme"), ("TENANCY_TENANT_REQUIRED", "false")];
//! let config = TenancyConfig::from_vars(vars)?;
//! assert_eq!(config.resolution.default_tenant.unwrap().as_str(), "acme");
//!
//! let err = TenancyConfig::from_vars([("TENANCY_DEFAULT_TENANT", "Not A Slug")]).unwrap_err();
//! assert_eq!(err.key(), "TENANCY_DEFAULT_TENANT");
//! # Ok::<(), tenancy_core::config::ConfigError>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use self::env::{JwtVars, Overrides};
use crate::credential::ClaimPath;
use crate::plan::{Plan, PlanCatalog, PlanQuotas};
use crate::rbac::{Role, RoleAliases};
use crate::secret::Secret;
use crate::tenant::TenantId;

/// A configuration value that was refused: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The refused key: a TOML path, an environment variable, or both.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where a tenant can come from. Every source listed that names a tenant
/// must name the same one, so the order of the list does not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// The credential's tenant (JWT `tenant_id` claim, API key's tenant)
    /// names the request's tenant when the request names none. Unlisted,
    /// a request must name its tenant itself (or fall to the default). A
    /// credential's tenant is always checked against the tenant a request
    /// names, listed or not.
    Credential,
    /// The tenant header.
    Header,
    /// The tenant query parameter.
    Query,
    /// The host, through the host template.
    Host,
    /// The first path segment after the path prefix.
    Path,
    /// The default tenant.
    Default,
}

/// How the tenant of a request is found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolutionConfig {
    /// When off, every request maps to `default_tenant` (single-tenant mode).
    pub enabled: bool,
    /// The tenant used when no source names one.
    pub default_tenant: Option<TenantId>,
    /// The tenant header (default `X-Tenant-ID`).
    pub tenant_header: String,
    /// The tenant query parameter (default `tenant_id`, as in
    /// `?tenant_id=acme`).
    pub query_param: String,
    /// When on, a request with no tenant is refused with `tenant_required`;
    /// when off, it proceeds without a tenant context.
    pub required: bool,
    /// When not empty, only these tenants are served.
    pub allowed_tenants: Vec<TenantId>,
    /// The sources (default: credential, header, query, default); the
    /// order does not matter, since every source that names a tenant must
    /// agree with the others.
    pub sources: Vec<TenantSource>,
    /// Host template for the `host` source, e.g. `{tenant}.example.com`.
    pub host_template: Option<String>,
    /// Path prefix for the `path` source, e.g. `/t` for `/t/{tenant}/…`.
    pub path_prefix: Option<String>,
}

impl Default for ResolutionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_tenant: None,
            tenant_header: "X-Tenant-ID".to_owned(),
            query_param: "tenant_id".to_owned(),
            required: true,
            allowed_tenants: Vec::new(),
            sources: vec![
                TenantSource::Credential,
                TenantSource::Header,
                TenantSource::Query,
                TenantSource::Default,
            ],
            host_template: None,
            path_prefix: None,
        }
    }
}

/// How callers authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The bearer token header (default `Authorization`).
    pub bearer_header: String,
    /// The API key header (default `X-API-Key`).
    pub api_key_header: String,
    /// The API key prefix (default `tnk`).
    pub api_key_prefix: String,
    /// When set, key digests are HMAC-SHA-256 with this pepper.
    pub api_key_pepper: Option<Secret>,
    /// Clock leeway for `exp` and `nbf`, in seconds (default 30).
    pub leeway_secs: u64,
    /// How many verified tokens to cache (default 10,000; 0 turns it off).
    pub token_cache_capacity: usize,
    /// When set, requests without a credential are admitted with this role;
    /// when unset (the default), they are refused with `unauthenticated`.
    pub anonymous_role: Option<Role>,
    /// Throttling of failed authentications per client address.
    pub failure_throttle: FailureThrottleConfig,
    /// A PEM bundle of extra CA certificates trusted, besides the system's,
    /// when fetching JWK sets and discovery documents (on-premises
    /// issuers); a realm may add its own (`realms.ca_file`).
    pub ca_file: Option<PathBuf>,
}

/// Failed authentications per client address (GCRA), counted before any
/// credential is looked up: over the allowance, requests from the address
/// are answered `429 rate_limited` with `Retry-After` until it is back
/// within it. The default (10 failures per second with a burst of 50) is
/// never met by a person mistyping a key.
///
/// The address is the client's: the peer of the connection, or behind
/// trusted proxies ([`NetworkConfig::trusted_proxies`]) the hop their
/// forwarding header names. A credential already known good (a token in the
/// verified-token cache, an API key that verified within the last minute;
/// both remembered only while `auth.token_cache_capacity` is above 0) is
/// served from an address over its allowance, so that one client cannot
/// lock out the others that share its address; anything else from there is
/// refused before any lookup. Store failures answered to bearer tokens
/// nobody verified (a realm whose keys cannot be fetched) count as failures
/// too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureThrottleConfig {
    /// Whether failures are throttled (default on).
    pub enabled: bool,
    /// Failures per second an address may sustain (default 10).
    pub per_second: u32,
    /// Failures an address may make at once (default 50).
    pub burst: u32,
    /// Most addresses holding state (default 100,000; idle ones are swept).
    pub max_addresses: usize,
}

impl Default for FailureThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 10,
            burst: 50,
            max_addresses: 100_000,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            bearer_header: "Authorization".to_owned(),
            api_key_header: "X-API-Key".to_owned(),
            api_key_prefix: "tnk".to_owned(),
            api_key_pepper: None,
            leeway_secs: 30,
            token_cache_capacity: 10_000,
            anonymous_role: None,
            failure_throttle: FailureThrottleConfig::default(),
            ca_file: None,
        }
    }
}

/// A JWT signing algorithm. Each key is fixed to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[allow(missing_docs)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    /// Whether this is an HMAC algorithm (shared secret).
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// One verification key of a realm: exactly one of `secret`,
/// `public_key_pem`, `public_key_file`, `jwks_file` or `jwks_url`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealmKeyConfig {
    /// Key id matched against the token's `kid`.
    pub kid: Option<String>,
    /// The algorithm the key is fixed to (required but for JWK sets, whose
    /// keys carry their own).
    pub algorithm: Option<JwtAlgorithm>,
    /// HMAC secret (HS*), at least 32 bytes.
    pub secret: Option<Secret>,
    /// Public key in PEM (RS*, ES*, EdDSA).
    pub public_key_pem: Option<String>,
    /// File holding a PEM public key.
    pub public_key_file: Option<PathBuf>,
    /// File holding a JWK set.
    pub jwks_file: Option<PathBuf>,
    /// URL of a JWK set, fetched and cached.
    pub jwks_url: Option<String>,
    /// Accept a plain-`http` `jwks_url` to a host that is not loopback
    /// (default off: keys fetched in the clear can be swapped on the path).
    pub allow_http: bool,
}

impl fmt::Debug for RealmKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealmKeyConfig")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret)
            .field("public_key_pem", &self.public_key_pem.as_ref().map(|_| "…"))
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl RealmKeyConfig {
    /// An HMAC key with `secret`.
    pub fn hmac(algorithm: JwtAlgorithm, secret: impl Into<String>) -> Self {
        Self {
            algorithm: Some(algorithm),
            secret: Some(Secret::new(secret)),
            ..Self::default()
        }
    }

    /// A public key in PEM.
    pub fn pem(algorithm: JwtAlgorithm, pem: impl Into<String>) -> Self {
        Self {
            algorithm: Some(algorithm),
            public_key_pem: Some(pem.into()),
            ..Self::default()
        }
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let sources = [
            self.secret.is_some(),
            self.public_key_pem.is_some(),
            self.public_key_file.is_some(),
            self.jwks_file.is_some(),
            self.jwks_url.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(ConfigError::new(
                key,
                "set exactly one of secret, public_key_pem, public_key_file, jwks_file, jwks_url",
            ));
        }
        let is_jwks = self.jwks_file.is_some() || self.jwks_url.is_some();
        match self.algorithm {
            None if !is_jwks => Err(ConfigError::new(
                format!("{key}.algorithm"),
                "required: each key is fixed to one algorithm",
            )),
            Some(alg) if self.secret.is_some() && !alg.is_hmac() => Err(ConfigError::new(
                format!("{key}.algorithm"),
                "a secret goes with HS256, HS384 or HS512",
            )),
            Some(alg) if self.secret.is_none() && alg.is_hmac() => Err(ConfigError::new(
                format!("{key}.algorithm"),
                "HS256, HS384 and HS512 need a secret",
            )),
            _ => Ok(()),
        }?;
        if let Some(secret) = &self.secret
            && secret.len() < 32
        {
            return Err(ConfigError::new(
                format!("{key}.secret"),
                "must be at least 32 bytes",
            ));
        }
        if let Some(url) = &self.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::new(
                format!("{key}.jwks_url"),
                "must be an http or https URL",
            ));
        }
        Ok(())
    }
}

/// A JWT realm: an issuer and its keys, shared by many tenants or bound to
/// one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    /// The realm's name.
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Accepted audiences; empty means `aud` is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Set for a dedicated realm: the one tenant its tokens may name.
    #[serde(default)]
    pub tenant: Option<TenantId>,
    /// Whether tokens of this realm may carry the `system` role.
    #[serde(default)]
    pub services: bool,
    /// Whether this is the platform's own realm, the only kind that may
    /// issue `super_admin`.
    #[serde(default)]
    pub platform: bool,
    /// The highest role its tokens may carry; see
    /// [`role_ceiling`](Self::role_ceiling) for the default.
    #[serde(default)]
    pub max_role: Option<Role>,
    /// Where its tokens carry the tenant, the roles and the subject.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// Whether its keys are found through OIDC discovery: the
    /// `jwks_uri` of `{issuer}/.well-known/openid-configuration`, whose
    /// `issuer` must equal [`issuer`](Self::issuer) exactly. Such a realm
    /// needs no `keys`.
    #[serde(default)]
    pub discovery: bool,
    /// A PEM bundle of CA certificates trusted for this realm's fetches,
    /// besides the system's and `auth.ca_file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept plain `http` for discovery to a host that is not loopback
    /// (default off: keys fetched in the clear can be swapped on the path).
    #[serde(default)]
    pub allow_http: bool,
    /// Its verification keys (may be empty with `discovery`).
    #[serde(default)]
    pub keys: Vec<RealmKeyConfig>,
}

/// Where a realm's tokens carry the tenant, the roles and the subject: a
/// [`ClaimPath`] each, dotted or a JSON Pointer. The defaults are the
/// library's own claim names.
///
/// The roles claim may be one name or an array of names. Each name goes
/// through the role aliases; names no alias knows are ignored (Keycloak adds
/// `offline_access`, `uma_authorization`, `default-roles-…`); the highest
/// known role wins; a token with no known role is refused. The realm's role
/// ceiling applies to the role that won.
///
/// ```
/// use tenancy_core::config::TenancyConfig;
///
/// let config = TenancyConfig::from_toml_str(r#"
///     [[realms]]
///     name = "kc"
///     issuer = "https://id.example.com/realms/kc"
///     [realms.claims]
///     tenant = "org.tenant"
///     roles = "resource_access.tenancy-api.roles"
///     subject = "preferred_username"
///     [[realms.keys]]
///     algorithm = "HS256"
///     secret = "0123456789abcdef0123456789abcdef"
/// "#)?;
/// let claims = &config.realms[0].claims;
/// assert_eq!(claims.roles.as_str(), "resource_access.tenancy-api.roles");
/// assert!(!claims.is_default());
/// # Ok::<(), tenancy_core::config::ConfigError>(())
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    /// The tenant id, a string (default `tenant_id`).
    pub tenant: ClaimPath,
    /// The roles, a string or an array of strings (default `role`).
    pub roles: ClaimPath,
    /// The subject, a non-empty string (default `sub`).
    pub subject: ClaimPath,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        Self {
            tenant: ClaimPath::top_level("tenant_id"),
            roles: ClaimPath::top_level("role"),
            subject: ClaimPath::top_level("sub"),
        }
    }
}

impl ClaimsConfig {
    /// Whether every path is the default one.
    pub fn is_default(&self) -> bool {
        self.tenant.is_top_level("tenant_id")
            && self.roles.is_top_level("role")
            && self.subject.is_top_level("sub")
    }
}

impl RealmConfig {
    /// A shared realm of `issuer` with `keys`, the default claim names and
    /// role ceiling.
    ///
    /// ```
    /// use tenancy_core::config::{JwtAlgorithm, RealmConfig, RealmKeyConfig};
    ///
    /// let pem = "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----";
    /// let realm = RealmConfig::new("kc", "https://id.example.com/realms/kc", vec![
    ///     RealmKeyConfig::pem(JwtAlgorithm::RS256, pem),
    /// ]);
    /// assert!(realm.tenant.is_none() && !realm.discovery);
    /// ```
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        keys: Vec<RealmKeyConfig>,
    ) -> Self {
        Self {
            name: name.into(),
            issuer: issuer.into(),
            audience: Vec::new(),
            tenant: None,
            services: false,
            platform: false,
            max_role: None,
            claims: ClaimsConfig::default(),
            discovery: false,
            ca_file: None,
            allow_http: false,
            keys,
        }
    }

    /// A shared HS256 realm.
    ///
    /// ```
    /// # use tenancy_core::config::RealmConfig;
    /// let realm = RealmConfig::hs256("default", "tenancy-dev", "0123456789abcdef0123456789abcdef");
    /// assert!(realm.tenant.is_none());
    /// ```
    pub fn hs256(
        name: impl Into<String>,
        issuer: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self::new(
            name,
            issuer,
            vec![RealmKeyConfig::hmac(JwtAlgorithm::HS256, secret)],
        )
    }

    /// Binds the realm to one tenant (dedicated realm).
    pub fn dedicated_to(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Lets the realm's tokens carry the `system` role.
    pub fn for_services(mut self) -> Self {
        self.services = true;
        self
    }

    /// Marks the realm as the platform's own: its tokens may carry
    /// `super_admin`.
    pub fn for_platform(mut self) -> Self {
        self.platform = true;
        self
    }

    /// Caps the roles its tokens may carry at `role`.
    pub fn max_role(mut self, role: Role) -> Self {
        self.max_role = Some(role);
        self
    }

    /// Reads the tenant, the roles and the subject where `claims` says.
    pub fn claims(mut self, claims: ClaimsConfig) -> Self {
        self.claims = claims;
        self
    }

    /// A realm whose keys are found through OIDC discovery at `issuer`.
    ///
    /// ```
    /// use tenancy_core::config::RealmConfig;
    ///
    /// let realm = RealmConfig::discovered("kc", "https://id.example.com/realms/kc");
    /// assert!(realm.discovery && realm.keys.is_empty());
    /// ```
    pub fn discovered(name: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            discovery: true,
            ..Self::new(name, issuer, Vec::new())
        }
    }

    /// The highest role a token of this realm may carry: `max_role` when
    /// set, else `system` for a services realm, `super_admin` for the
    /// platform's realm and `admin` for every other (a tenant's identity
    /// provider never mints platform power). Whatever the ceiling,
    /// `super_admin` needs a platform realm and `system` a services realm.
    ///
    /// ```
    /// use tenancy_core::config::RealmConfig;
    /// use tenancy_core::rbac::Role;
    ///
    /// let secret = "0123456789abcdef0123456789abcdef";
    /// let tenant_realm = RealmConfig::hs256("bigcorp", "https://id.bigcorp.example", secret);
    /// assert_eq!(tenant_realm.role_ceiling(), Role::Admin);
    /// let platform = RealmConfig::hs256("staff", "https://id.example.com", secret).for_platform();
    /// assert_eq!(platform.role_ceiling(), Role::SuperAdmin);
    /// assert!(!tenant_realm.may_issue(Role::SuperAdmin));
    /// assert!(platform.may_issue(Role::SuperAdmin));
    /// assert!(!platform.may_issue(Role::System));
    /// ```
    pub fn role_ceiling(&self) -> Role {
        self.max_role.unwrap_or(if self.services {
            Role::System
        } else if self.platform {
            Role::SuperAdmin
        } else {
            Role::Admin
        })
    }

    /// Whether a token of this realm may carry `role`.
    pub fn may_issue(&self, role: Role) -> bool {
        role <= self.role_ceiling()
            && (role != Role::SuperAdmin || self.platform)
            && (role != Role::System || self.services)
    }
}

/// A route as `METHOD /path`, e.g. `POST /api/v1/telemetry`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    /// The method.
    pub method: http::Method,
    /// The exact path.
    pub path: String,
}

impl RouteSpec {
    /// Parses `METHOD /path`.
    ///
    /// ```
    /// # use tenancy_core::config::RouteSpec;
    /// let r = RouteSpec::parse("POST /api/v1/telemetry").unwrap();
    /// assert_eq!(r.method, http::Method::POST);
    /// assert!(RouteSpec::parse("/no-method").is_none());
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        let (method, path) = s.trim().split_once(' ')?;
        let method = http::Method::from_bytes(method.as_bytes()).ok()?;
        let path = path.trim();
        (path.starts_with('/') && !path.contains(char::is_whitespace)).then(|| Self {
            method,
            path: path.to_owned(),
        })
    }

    /// Whether a request with `method` and `path` is this route.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        self.method == *method && self.path == path
    }
}

impl<'de> Deserialize<'de> for RouteSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        RouteSpec::parse(&raw).ok_or_else(|| serde::de::Error::custom("expected \"METHOD /path\""))
    }
}

/// What to do when the rate-limit or quota store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Let the request through (and log).
    #[default]
    Open,
    /// Refuse with `store_unavailable`.
    Closed,
}

/// Rate limits and quotas.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Whether rate limits are enforced.
    pub enabled: bool,
    /// What happens when the limiter or quota store fails (default `open`).
    pub on_store_failure: FailurePolicy,
    /// The routes ingestion-scoped keys may call and that charge events.
    pub ingestion_routes: Vec<RouteSpec>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            on_store_failure: FailurePolicy::Open,
            ingestion_routes: vec![RouteSpec {
                method: http::Method::POST,
                path: "/api/v1/telemetry".to_owned(),
            }],
        }
    }
}

/// The audit log and the audit and metering buffers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Whether audit events are recorded at all (default on).
    pub enabled: bool,
    /// Events held in memory before new ones are dropped (and counted).
    pub buffer_capacity: usize,
    /// Events written per batch.
    pub batch_size: usize,
    /// Longest wait before a partial batch is written, in milliseconds.
    pub flush_interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            buffer_capacity: 65_536,
            batch_size: 1_000,
            flush_interval_ms: 1_000,
        }
    }
}

/// The whole configuration of a [`Tenancy`](crate) deployment.
///
/// Build it with [`TenancyConfig::builder`], [`from_toml_str`](Self::from_toml_str),
/// [`from_vars`](Self::from_vars) / [`from_env`](Self::from_env), or
/// [`load`](Self::load) (TOML file named by `TENANCY_CONFIG`, then environment
/// overrides). Every constructor validates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// Tenant resolution.
    pub resolution: ResolutionConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// JWT realms.
    pub realms: Vec<RealmConfig>,
    /// Role names of other identity providers.
    pub role_aliases: RoleAliases,
    /// Plans, merged over the four defaults (a plan of the same name replaces
    /// the default one).
    pub plans: BTreeMap<String, PlanQuotas>,
    /// The plan of tenants created without one (default `free`).
    pub default_plan: String,
    /// Rate limits and quotas.
    pub limits: LimitsConfig,
    /// Audit and metering buffers.
    pub audit: AuditConfig,
    /// Where the client's address comes from behind proxies.
    pub network: NetworkConfig,
    /// Where the server may connect on a tenant's behalf.
    pub egress: EgressConfig,
}

/// Where the client's address comes from: the peer of the connection, or,
/// when the peer is a trusted proxy, the forwarding header it writes (see
/// [`client_addr`](crate::client_addr)).
///
/// ```
/// use tenancy_core::client_addr::ForwardedHeader;
/// use tenancy_core::config::TenancyConfig;
///
/// let config = TenancyConfig::from_toml_str(r#"
///     [network]
///     trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]
///     forwarded_header = "forwarded"
/// "#)?;
/// assert_eq!(config.network.trusted_proxies.len(), 2);
/// assert_eq!(config.network.forwarded_header, ForwardedHeader::Forwarded);
///
/// let env = TenancyConfig::from_vars([("TENANCY_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8")])?;
/// assert_eq!(env.network.trusted_proxies.len(), 2);
/// # Ok::<(), tenancy_core::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Proxies whose forwarding header is believed: CIDR ranges, or bare
    /// addresses (default none: the client is the peer).
    #[serde(deserialize_with = "ip_ranges")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header they write (default `x-forwarded-for`).
    pub forwarded_header: crate::client_addr::ForwardedHeader,
}

impl NetworkConfig {
    /// The proxies as the engine uses them.
    pub fn trusted_proxies(&self) -> crate::client_addr::TrustedProxies {
        crate::client_addr::TrustedProxies::new(self.trusted_proxies.clone(), self.forwarded_header)
    }
}

/// Where the server may connect on a tenant's behalf (a tenant realm's
/// discovery document and JWK set): public addresses, and the internal
/// ranges listed here (see [`egress`](crate::egress)).
///
/// ```
/// use tenancy_core::config::TenancyConfig;
///
/// let config = TenancyConfig::from_vars([("TENANCY_EGRESS_ALLOW", "10.20.0.0/16")])?;
/// assert!(config.egress.guard().permits("10.20.0.5".parse().unwrap()));
/// assert!(!config.egress.guard().permits("127.0.0.1".parse().unwrap()));
///
/// let err = TenancyConfig::from_vars([("TENANCY_EGRESS_ALLOW", "10.20.0.0/99")]).unwrap_err();
/// assert_eq!(err.key(), "TENANCY_EGRESS_ALLOW");
/// # Ok::<(), tenancy_core::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Internal ranges that may be reached anyway: CIDR ranges, or bare
    /// addresses (default none).
    #[serde(deserialize_with = "ip_ranges")]
    pub allow: Vec<ipnet::IpNet>,
}

impl EgressConfig {
    /// The guard these settings describe.
    pub fn guard(&self) -> crate::egress::EgressGuard {
        crate::egress::EgressGuard::new(self.allow.clone())
    }
}

/// A list of CIDR ranges or bare addresses.
fn ip_ranges<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    entries
        .iter()
        .map(|entry| crate::egress::parse_range(entry.trim()))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            resolution: ResolutionConfig::default(),
            auth: AuthConfig::default(),
            realms: Vec::new(),
            role_aliases: RoleAliases::default(),
            plans: BTreeMap::new(),
            default_plan: "free".to_owned(),
            limits: LimitsConfig::default(),
            audit: AuditConfig::default(),
            network: NetworkConfig::default(),
            egress: EgressConfig::default(),
        }
    }
}

/// Name of the realm made from `TENANCY_JWT_SECRET`.
pub const ENV_REALM: &str = "default";
/// Default issuer of the realm made from `TENANCY_JWT_SECRET`.
pub const DEFAULT_ISSUER: &str = "tenancy-dev";
/// The variable naming the TOML file [`TenancyConfig::load`] reads.
pub const CONFIG_FILE_VAR: &str = "TENANCY_CONFIG";

impl TenancyConfig {
    /// A builder over the defaults.
    ///
    /// ```
    /// use tenancy_core::config::TenancyConfig;
    /// use tenancy_core::tenant::TenantId;
    ///
    /// let config = TenancyConfig::builder()
    ///     .default_tenant(TenantId::new("acme")?)
    ///     .tenant_header("X-Org")
    ///     .jwt_hs256("tenancy-dev", "0123456789abcdef0123456789abcdef")
    ///     .build()?;
    /// assert_eq!(config.realms.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> TenancyConfigBuilder {
        TenancyConfigBuilder {
            config: TenancyConfig::default(),
        }
    }

    /// Parses and validates TOML.
    pub fn from_toml_str(toml_text: &str) -> Result<Self, ConfigError> {
        Self::read(Some(toml_text), None, Overrides::default())
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = read_file(path)?;
        Self::read(Some(&text), Some(path), Overrides::default())
    }

    /// The defaults with the `TENANCY_*` variables in `vars` applied, validated.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::read(None, None, Overrides::read(vars)?)
    }

    /// [`from_vars`](Self::from_vars) over the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// The TOML file named by `TENANCY_CONFIG` in `vars` (if any), then the
    /// other `TENANCY_*` variables in `vars` over it, validated.
    pub fn load_from<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(K, V)> = vars.into_iter().collect();
        let file = vars
            .iter()
            .find(|(k, _)| k.as_ref() == CONFIG_FILE_VAR)
            .map(|(_, v)| PathBuf::from(v.as_ref()))
            .filter(|path| !path.as_os_str().is_empty());
        let overrides = Overrides::read(vars)?;
        match file {
            Some(path) => Self::read(Some(&read_file(&path)?), Some(&path), overrides),
            None => Self::read(None, None, overrides),
        }
    }

    /// [`load_from`](Self::load_from) over the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// The one way configuration is read: the TOML `text` (of the file at
    /// `path`, when it came from one) with the `overrides` of the
    /// environment merged over it, deserialized once and validated once.
    /// A refusal names the variable when the value came from one, else the
    /// key (and the file).
    fn read(
        text: Option<&str>,
        path: Option<&Path>,
        overrides: Overrides,
    ) -> Result<Self, ConfigError> {
        let in_file = |key: String| match path {
            Some(path) => format!("{key} ({})", path.display()),
            None => key,
        };
        let mut table = match text {
            Some(text) => toml::from_str::<toml::Table>(text)
                .map_err(|e| ConfigError::new(in_file(toml_key(&e)), e.message()))?,
            None => toml::Table::new(),
        };
        overrides.apply_to(&mut table);
        let mut config: TenancyConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let at = e.path().to_string();
                let key = match overrides.variable_of(&at) {
                    Some(var) => var.to_owned(),
                    None => in_file(at),
                };
                ConfigError::new(key, e.inner().message())
            })?;
        config.apply_jwt_vars(overrides.jwt)?;
        config.validate()?;
        Ok(config)
    }

    /// The `TENANCY_*` variables as a markdown table (variable, TOML key,
    /// value): the table in the [module docs](self), printed from the one
    /// table loading reads.
    ///
    /// ```
    /// use tenancy_core::config::TenancyConfig;
    ///
    /// let table = TenancyConfig::environment_table();
    /// assert!(table.contains("| `TENANCY_AUDIT` | `audit.enabled` | bool |"));
    /// ```
    pub fn environment_table() -> String {
        env::markdown()
    }

    /// The plan catalog: the four defaults, with `plans` merged over them.
    pub fn plans(&self) -> PlanCatalog {
        let mut catalog = PlanCatalog::default();
        for (name, quotas) in &self.plans {
            catalog.insert(Plan {
                name: name.clone(),
                quotas: quotas.clone(),
            });
        }
        catalog
    }

    /// Makes or changes the realm `default` from `TENANCY_JWT_SECRET`,
    /// `TENANCY_JWT_ISSUER` and `TENANCY_JWT_AUDIENCE`.
    fn apply_jwt_vars(&mut self, jwt: JwtVars) -> Result<(), ConfigError> {
        let JwtVars {
            secret: jwt_secret,
            issuer: jwt_issuer,
            audience: jwt_audience,
        } = jwt;
        if let Some(secret) = jwt_secret {
            let issuer = jwt_issuer.unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
            let mut realm = RealmConfig::hs256(ENV_REALM, issuer, secret).for_platform();
            realm.audience = jwt_audience.unwrap_or_default();
            self.realms.retain(|r| r.name != ENV_REALM);
            self.realms.push(realm);
        } else if jwt_issuer.is_some() || jwt_audience.is_some() {
            let realm = self.realms.iter_mut().find(|r| r.name == ENV_REALM);
            match realm {
                Some(realm) => {
                    if let Some(issuer) = jwt_issuer {
                        realm.issuer = issuer;
                    }
                    if let Some(audience) = jwt_audience {
                        realm.audience = audience;
                    }
                }
                None => {
                    return Err(ConfigError::new(
                        "TENANCY_JWT_ISSUER",
                        "needs TENANCY_JWT_SECRET (or a realm named \"default\" in the config file)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks every value; the first refusal names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.resolution;
        header_name(&r.tenant_header, env::label("resolution.tenant_header"))?;
        if r.query_param.is_empty()
            || !r
                .query_param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new(
                env::label("resolution.query_param"),
                "must be 1 or more of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        if !r.enabled && r.default_tenant.is_none() {
            return Err(ConfigError::new(
                env::label("resolution.default_tenant"),
                "required when tenancy is disabled (every request maps to it)",
            ));
        }
        if let Some(default) = &r.default_tenant
            && !r.allowed_tenants.is_empty()
            && !r.allowed_tenants.contains(default)
        {
            return Err(ConfigError::new(
                env::label("resolution.default_tenant"),
                "is not in allowed_tenants",
            ));
        }
        let sources = || env::label("resolution.sources");
        if r.sources.is_empty() {
            return Err(ConfigError::new(sources(), "must name at least one source"));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = r.sources.iter().find(|s| !seen.insert(**s)) {
            return Err(ConfigError::new(
                sources(),
                format!("{dup:?} is listed twice"),
            ));
        }
        if r.sources.contains(&TenantSource::Host) {
            let ok = r
                .host_template
                .as_deref()
                .is_some_and(|t| t.matches("{tenant}").count() == 1);
            if !ok {
                return Err(ConfigError::new(
                    env::label("resolution.host_template"),
                    "the host source needs a template with {tenant} once, e.g. {tenant}.example.com",
                ));
            }
        }
        if r.sources.contains(&TenantSource::Path)
            && !r
                .path_prefix
                .as_deref()
                .is_some_and(|p| p.starts_with('/') && !p.ends_with('/'))
        {
            return Err(ConfigError::new(
                env::label("resolution.path_prefix"),
                "the path source needs a prefix starting with '/' and not ending with it, e.g. /t",
            ));
        }

        let a = &self.auth;
        header_name(&a.bearer_header, "auth.bearer_header")?;
        header_name(&a.api_key_header, env::label("auth.api_key_header"))?;
        if a.api_key_prefix.is_empty()
            || a.api_key_prefix.len() > 16
            || !a
                .api_key_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ConfigError::new(
                env::label("auth.api_key_prefix"),
                "must be 1 to 16 of a-z and 0-9",
            ));
        }
        if a.api_key_pepper.as_ref().is_some_and(|p| p.len() < 16) {
            return Err(ConfigError::new(
                env::label("auth.api_key_pepper"),
                "must be at least 16 bytes",
            ));
        }
        if a.leeway_secs > 600 {
            return Err(ConfigError::new(
                env::label("auth.leeway_secs"),
                "must be at most 600 seconds",
            ));
        }
        let t = &a.failure_throttle;
        if t.enabled && (t.per_second == 0 || t.burst == 0 || t.max_addresses == 0) {
            return Err(ConfigError::new(
                "auth.failure_throttle",
                "per_second, burst and max_addresses must be at least 1 (or set enabled = false)",
            ));
        }
        if a.anonymous_role.is_some_and(|role| role > Role::Admin) {
            return Err(ConfigError::new(
                env::label("auth.anonymous_role"),
                "anonymous callers can be at most admin",
            ));
        }

        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        for (i, realm) in self.realms.iter().enumerate() {
            let key = format!("realms[{i}]");
            if realm.name.is_empty() || realm.name.len() > 64 {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    "must be 1 to 64 characters",
                ));
            }
            if !names.insert(realm.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    "two realms have this name",
                ));
            }
            if realm.issuer.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.issuer"),
                    "must not be empty",
                ));
            }
            if !issuers.insert(realm.issuer.as_str()) {
                return Err(ConfigError::new(
                    format!("{key}.issuer"),
                    "two realms have this issuer",
                ));
            }
            if realm.keys.is_empty() && !realm.discovery {
                return Err(ConfigError::new(
                    format!("{key}.keys"),
                    "a realm needs a key, or discovery = true",
                ));
            }
            if realm.discovery
                && !(realm.issuer.starts_with("https://") || realm.issuer.starts_with("http://"))
            {
                return Err(ConfigError::new(
                    format!("{key}.issuer"),
                    "discovery needs an http or https issuer URL",
                ));
            }
            for (j, k) in realm.keys.iter().enumerate() {
                k.validate(&format!("{key}.keys[{j}]"))?;
            }
            match realm.max_role {
                Some(Role::SuperAdmin) if !realm.platform => {
                    return Err(ConfigError::new(
                        format!("{key}.max_role"),
                        "super_admin needs a platform realm (platform = true)",
                    ));
                }
                Some(Role::System) if !realm.services => {
                    return Err(ConfigError::new(
                        format!("{key}.max_role"),
                        "system needs a services realm (services = true)",
                    ));
                }
                _ => {}
            }
        }

        let plans = self.plans();
        if !plans.contains(&self.default_plan) {
            return Err(ConfigError::new(
                env::label("default_plan"),
                "names no plan",
            ));
        }
        for (name, quotas) in &self.plans {
            if crate::label::Label::new(name).is_err() {
                return Err(ConfigError::new(
                    format!("plans.{name}"),
                    "a plan name must be of A-Z, a-z, 0-9, '_', '.', '-'",
                ));
            }
            if quotas.rps == 0 {
                return Err(ConfigError::new(
                    format!("plans.{name}.rps"),
                    "must be at least 1",
                ));
            }
            if let Some(budget) = quotas
                .budgets
                .keys()
                .find(|b| crate::label::Label::new(b).is_err())
            {
                return Err(ConfigError::new(
                    format!("plans.{name}.budgets"),
                    format!("budget name {budget:?} must be of A-Z, a-z, 0-9, '_', '.', '-', '/'"),
                ));
            }
        }

        if self.audit.buffer_capacity == 0 {
            return Err(ConfigError::new(
                env::label("audit.buffer_capacity"),
                "must be at least 1",
            ));
        }
        if self.audit.batch_size == 0 {
            return Err(ConfigError::new("audit.batch_size", "must be at least 1"));
        }
        if self.audit.flush_interval_ms == 0 {
            return Err(ConfigError::new(
                "audit.flush_interval_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

fn header_name(name: &str, key: impl Into<String>) -> Result<(), ConfigError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| ConfigError::new(key, "is not a valid HTTP header name"))
}

/// The text of the config file at `path`.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(CONFIG_FILE_VAR, format!("{}: {e}", path.display())))
}

/// The TOML key a parse error points at, from its span.
fn toml_key(e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("toml (bytes {}..{})", span.start, span.end),
        None => "toml".to_owned(),
    }
}

/// Builds a [`TenancyConfig`] in code; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct TenancyConfigBuilder {
    config: TenancyConfig,
}

impl TenancyConfigBuilder {
    /// Turns tenancy on or off (off: everything maps to the default tenant).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.resolution.enabled = enabled;
        self
    }

    /// The default tenant.
    pub fn default_tenant(mut self, tenant: TenantId) -> Self {
        self.config.resolution.default_tenant = Some(tenant);
        self
    }

    /// The tenant header.
    pub fn tenant_header(mut self, name: impl Into<String>) -> Self {
        self.config.resolution.tenant_header = name.into();
        self
    }

    /// The tenant query parameter.
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.config.resolution.query_param = name.into();
        self
    }

    /// Whether a tenant is required.
    pub fn required(mut self, required: bool) -> Self {
        self.config.resolution.required = required;
        self
    }

    /// Only these tenants are served.
    pub fn allowed_tenants(mut self, tenants: impl IntoIterator<Item = TenantId>) -> Self {
        self.config.resolution.allowed_tenants = tenants.into_iter().collect();
        self
    }

    /// The tenant sources, in order.
    pub fn sources(mut self, sources: impl IntoIterator<Item = TenantSource>) -> Self {
        self.config.resolution.sources = sources.into_iter().collect();
        self
    }

    /// The host template of the host source.
    pub fn host_template(mut self, template: impl Into<String>) -> Self {
        self.config.resolution.host_template = Some(template.into());
        self
    }

    /// The path prefix of the path source.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.resolution.path_prefix = Some(prefix.into());
        self
    }

    /// Adds a realm.
    pub fn realm(mut self, realm: RealmConfig) -> Self {
        self.config.realms.push(realm);
        self
    }

    /// Adds the platform's shared HS256 realm `default` with `issuer` and
    /// `secret` (its tokens may carry up to `super_admin`).
    pub fn jwt_hs256(self, issuer: impl Into<String>, secret: impl Into<String>) -> Self {
        self.realm(RealmConfig::hs256(ENV_REALM, issuer, secret).for_platform())
    }

    /// Maps a role alias.
    pub fn role_alias(mut self, alias: impl Into<String>, role: Role) -> Self {
        self.config.role_aliases.insert(alias, role);
        self
    }

    /// Adds or replaces a plan.
    pub fn plan(mut self, name: impl Into<String>, quotas: PlanQuotas) -> Self {
        self.config.plans.insert(name.into(), quotas);
        self
    }

    /// The plan of new tenants.
    pub fn default_plan(mut self, name: impl Into<String>) -> Self {
        self.config.default_plan = name.into();
        self
    }

    /// Admits requests without a credential with `role`.
    pub fn anonymous_role(mut self, role: Role) -> Self {
        self.config.auth.anonymous_role = Some(role);
        self
    }

    /// The API key prefix.
    pub fn api_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.auth.api_key_prefix = prefix.into();
        self
    }

    /// HMACs key digests with `pepper`.
    pub fn api_key_pepper(mut self, pepper: impl Into<String>) -> Self {
        self.config.auth.api_key_pepper = Some(Secret::new(pepper));
        self
    }

    /// Turns rate limits on or off.
    pub fn rate_limits(mut self, enabled: bool) -> Self {
        self.config.limits.enabled = enabled;
        self
    }

    /// What happens when the limiter or quota store fails.
    pub fn on_store_failure(mut self, policy: FailurePolicy) -> Self {
        self.config.limits.on_store_failure = policy;
        self
    }

    /// The ingestion routes.
    pub fn ingestion_routes(mut self, routes: impl IntoIterator<Item = RouteSpec>) -> Self {
        self.config.limits.ingestion_routes = routes.into_iter().collect();
        self
    }

    /// The audit buffer capacity.
    pub fn audit_buffer(mut self, capacity: usize) -> Self {
        self.config.audit.buffer_capacity = capacity;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<TenancyConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

mod env;
#[cfg(test)]
mod tests;
