//! Tenant resolution: where a request's tenant comes from, in which order,
//! and what happens when sources disagree.
//!
//! Sources: the credential's tenant, a header, a query parameter, the host
//! (through a template such as `{tenant}.example.com`), a path prefix
//! (`/t/{tenant}/…`), closures of your own, and the default tenant.
//!
//! Rules, in order:
//! 1. Every value a source yields must be a valid [`TenantId`], else
//!    `invalid_tenant_id`. All the request's sources must agree with each
//!    other, else `tenant_mismatch`.
//! 2. With a credential, its tenant wins (when the request names none, only
//!    with the `credential` source listed). A request naming another tenant is
//!    refused with `tenant_mismatch`, unless the role is super_admin or
//!    system: those select the named tenant, and the context is marked
//!    cross-tenant (and audited).
//! 3. Without a credential, the first source that names a tenant decides.
//! 4. Nothing named: the default tenant if set; else `tenant_required` when a
//!    tenant is required, or no tenant at all.
//! 5. `allowed_tenants` (when not empty) filters the result:
//!    `tenant_not_allowed`.
//!
//! With tenancy disabled every request maps to the default tenant, and the
//! request's own sources are not read (single-tenant mode).
//!
//! ```
//! use tenancy_core::config::TenancyConfig;
//! use tenancy_core::engine::RequestHead;
//! use tenancy_core::rbac::Role;
//! use tenancy_core::resolve::{Resolved, TenantResolver};
//! use tenancy_core::tenant::TenantId;
//!
//! let config = TenancyConfig::default();
//! let resolver = TenantResolver::from_config(&config.resolution)?;
//! let (parts, _) = http::Request::get("/x").header("x-tenant-id", "globex").body(()).unwrap().into_parts();
//! let acme = TenantId::new("acme")?;
//!
//! // An operator of acme naming globex is refused…
//! let err = resolver.resolve(&RequestHead::from(&parts), Some((&acme, Role::Operator))).unwrap_err();
//! assert_eq!(err.code(), "tenant_mismatch");
//! // …a super_admin selects it.
//! let ok = resolver.resolve(&RequestHead::from(&parts), Some((&acme, Role::SuperAdmin)))?;
//! assert_eq!(ok, Resolved::Tenant { id: TenantId::new("globex")?, cross_tenant: true });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;

use crate::config::{ConfigError, ResolutionConfig, TenantSource};
use crate::error::{ErrorKind, TenancyError};
use crate::rbac::Role;
use crate::request::{RequestHead, visible_ascii};
use crate::tenant::{InvalidTenantId, TenantId, TenantIdText};

/// A tenant source of your own: the raw tenant id a request names, if any.
/// The value is validated like every other source's. Closures
/// `Fn(&RequestHead<'_>) -> Option<String>` are sources; a type of your own
/// implements [`tenant`](Self::tenant).
///
/// ```
/// use tenancy_core::engine::RequestHead;
/// use tenancy_core::resolve::TenantSourceFn;
///
/// /// The tenant of a `tenant=` cookie.
/// struct FromCookie;
///
/// impl TenantSourceFn for FromCookie {
///     fn tenant(&self, head: &RequestHead<'_>) -> Option<String> {
///         head.header_str(&http::header::COOKIE)?.strip_prefix("tenant=").map(str::to_owned)
///     }
/// }
///
/// let (parts, ()) = http::Request::get("/").header("cookie", "tenant=acme").body(()).unwrap().into_parts();
/// assert_eq!(FromCookie.tenant(&RequestHead::from(&parts)).as_deref(), Some("acme"));
/// let closure = |head: &RequestHead<'_>| head.header_str(&http::header::HOST).map(str::to_owned);
/// assert_eq!(closure.tenant(&RequestHead::from(&parts)), None);
/// ```
pub trait TenantSourceFn: Send + Sync + 'static {
    /// The raw tenant id `head` names, if any.
    fn tenant(&self, head: &RequestHead<'_>) -> Option<String>;
}

impl<F> TenantSourceFn for F
where
    F: Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
{
    fn tenant(&self, head: &RequestHead<'_>) -> Option<String> {
        self(head)
    }
}

/// A shared [`TenantSourceFn`].
pub type CustomSource = Arc<dyn TenantSourceFn>;

#[derive(Clone)]
enum Source {
    Header(HeaderName),
    Query(String),
    Host { prefix: String, suffix: String },
    Path(String),
    Custom(CustomSource),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Header(h) => write!(f, "Header({h})"),
            Source::Query(q) => write!(f, "Query({q})"),
            Source::Host { prefix, suffix } => write!(f, "Host({prefix}{{tenant}}{suffix})"),
            Source::Path(p) => write!(f, "Path({p}/{{tenant}})"),
            Source::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// What resolution decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The request acts on this tenant.
    Tenant {
        /// The tenant.
        id: TenantId,
        /// Whether a super_admin or system caller selected a tenant other
        /// than its credential's.
        cross_tenant: bool,
    },
    /// No tenant named and none required.
    NoTenant,
}

/// The ordered chain of tenant sources, built from [`ResolutionConfig`].
#[derive(Debug, Clone)]
pub struct TenantResolver {
    sources: Vec<Source>,
    default: Option<TenantId>,
    use_default: bool,
    use_credential: bool,
    enabled: bool,
    required: bool,
    allowed: HashSet<TenantId>,
    header_name: String,
    query_name: String,
}

impl TenantResolver {
    /// Builds the chain from `config`.
    pub fn from_config(config: &ResolutionConfig) -> Result<Self, ConfigError> {
        let mut sources = Vec::new();
        for source in &config.sources {
            match source {
                TenantSource::Credential | TenantSource::Default => {}
                TenantSource::Header => {
                    let name =
                        HeaderName::from_bytes(config.tenant_header.as_bytes()).map_err(|_| {
                            ConfigError::new("resolution.tenant_header", "not a header name")
                        })?;
                    sources.push(Source::Header(name));
                }
                TenantSource::Query => sources.push(Source::Query(config.query_param.clone())),
                TenantSource::Host => {
                    let template = config.host_template.as_deref().unwrap_or_default();
                    let (prefix, suffix) = template.split_once("{tenant}").ok_or_else(|| {
                        ConfigError::new("resolution.host_template", "needs {tenant}")
                    })?;
                    sources.push(Source::Host {
                        prefix: prefix.to_ascii_lowercase(),
                        suffix: suffix.to_ascii_lowercase(),
                    });
                }
                TenantSource::Path => {
                    let prefix = config.path_prefix.clone().ok_or_else(|| {
                        ConfigError::new("resolution.path_prefix", "needed by the path source")
                    })?;
                    sources.push(Source::Path(prefix));
                }
            }
        }
        Ok(Self {
            sources,
            default: config.default_tenant.clone(),
            use_default: config.sources.contains(&TenantSource::Default),
            use_credential: config.sources.contains(&TenantSource::Credential),
            enabled: config.enabled,
            required: config.required,
            allowed: config.allowed_tenants.iter().cloned().collect(),
            header_name: config.tenant_header.clone(),
            query_name: config.query_param.clone(),
        })
    }

    /// Adds a custom source after the configured ones.
    pub fn with_source(mut self, source: CustomSource) -> Self {
        self.sources.push(Source::Custom(source));
        self
    }

    /// Resolves the tenant of `head`, given the credential's tenant and role.
    pub fn resolve(
        &self,
        head: &RequestHead<'_>,
        credential: Option<(&TenantId, Role)>,
    ) -> Result<Resolved, TenancyError> {
        Ok(match self.resolve_named(head, credential)? {
            Some((named, cross_tenant)) => Resolved::Tenant {
                id: named.to_id(),
                cross_tenant,
            },
            None => Resolved::NoTenant,
        })
    }

    /// [`resolve`](Self::resolve), the tenant as named: no id is allocated.
    pub(crate) fn resolve_named<'r>(
        &'r self,
        head: &RequestHead<'_>,
        credential: Option<(&'r TenantId, Role)>,
    ) -> Result<Option<(Named<'r>, bool)>, TenancyError> {
        if !self.enabled {
            // Validated at start: tenancy off means a default tenant is set.
            let Some(default) = &self.default else {
                return Err(TenancyError::internal(
                    "tenancy disabled without a default tenant",
                ));
            };
            let cross = match credential {
                Some((own, role)) if own != default => {
                    if !role.may_cross_tenants() {
                        return Err(ErrorKind::TenantMismatch.into());
                    }
                    true
                }
                _ => false,
            };
            return Ok(Some((Named::Id(default), cross)));
        }

        let requested = self.requested_text(head)?;
        let (named, cross_tenant) = match (credential, requested) {
            (Some((own, role)), Some(named)) if named.as_str() != own.as_str() => {
                if role.may_cross_tenants() {
                    (Named::Text(named), true)
                } else {
                    return Err(ErrorKind::TenantMismatch.into());
                }
            }
            (Some((own, _)), Some(_)) => (Named::Id(own), false),
            (Some((own, _)), None) if self.use_credential => (Named::Id(own), false),
            (_, Some(named)) => (Named::Text(named), false),
            (_, None) => match &self.default {
                Some(default) if self.use_default => (Named::Id(default), false),
                _ if self.required => {
                    return Err(TenancyError::tenant_required(
                        self.header_name.clone(),
                        self.query_name.clone(),
                    ));
                }
                _ => return Ok(None),
            },
        };
        if !self.allowed.is_empty() && !self.allowed.contains(named.as_str()) {
            return Err(ErrorKind::TenantNotAllowed.into());
        }
        Ok(Some((named, cross_tenant)))
    }

    /// The tenant the request itself names (header, query, host, path,
    /// custom), if every source that names one agrees.
    pub fn requested(&self, head: &RequestHead<'_>) -> Result<Option<TenantId>, TenancyError> {
        Ok(self.requested_text(head)?.map(TenantIdText::to_id))
    }

    fn requested_text(&self, head: &RequestHead<'_>) -> Result<Option<TenantIdText>, TenancyError> {
        let mut found: Option<TenantIdText> = None;
        for source in &self.sources {
            each_value(source, head, &mut |raw| {
                let id = TenantIdText::new(raw).map_err(TenancyError::from)?;
                match &found {
                    None => found = Some(id),
                    Some(prev) if prev.as_str() != id.as_str() => {
                        return Err(ErrorKind::TenantMismatch.into());
                    }
                    Some(_) => {}
                }
                Ok(())
            })?;
        }
        Ok(found)
    }
}

/// The tenant a request acts on, as resolution named it: a configured or
/// credential id, or one the request named, held inline.
#[derive(Clone, Copy)]
pub(crate) enum Named<'r> {
    /// The default tenant or the credential's.
    Id(&'r TenantId),
    /// Named by the request.
    Text(TenantIdText),
}

impl Named<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Named::Id(id) => id.as_str(),
            Named::Text(text) => text.as_str(),
        }
    }

    /// The id, kept (a reference count, or one allocation for a named
    /// one).
    pub(crate) fn to_id(self) -> TenantId {
        match self {
            Named::Id(id) => id.clone(),
            Named::Text(text) => text.to_id(),
        }
    }
}

/// Passes each raw value `source` finds in `head` to `found` (several only
/// for repeated headers or query parameters).
fn each_value(
    source: &Source,
    head: &RequestHead<'_>,
    found: &mut dyn FnMut(&str) -> Result<(), TenancyError>,
) -> Result<(), TenancyError> {
    let invalid = || TenancyError::from(InvalidTenantId::InvalidCharacter);
    match source {
        Source::Header(name) => {
            let mut outcome = Ok(());
            head.each_header(name, &mut |value| {
                if outcome.is_ok() {
                    outcome = visible_ascii(value)
                        .ok_or_else(invalid)
                        .and_then(&mut *found);
                }
            });
            outcome?;
        }
        Source::Query(name) => {
            if let Some(query) = head.query() {
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == name {
                        found(v)?;
                    }
                }
            }
        }
        Source::Host { prefix, suffix } => {
            if let Some(host) = head.host() {
                let host = strip_port(host).to_ascii_lowercase();
                if let Some(middle) = host
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                    && !middle.is_empty()
                    && !middle.contains('.')
                {
                    found(middle)?;
                }
            }
        }
        Source::Path(prefix) => {
            let path = head.path();
            if let Some(rest) = path
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                let segment = rest.split('/').next().unwrap_or_default();
                if !segment.is_empty() {
                    found(segment)?;
                }
            }
        }
        Source::Custom(f) => {
            if let Some(v) = f.tenant(head) {
                found(&v)?;
            }
        }
    }
    Ok(())
}

/// `host` without its `:port`: `name:port` and `[v6]:port` lose the port;
/// a bare IPv6 address (colons, no brackets) has none to lose.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (h.ends_with(']') || !h.contains(':')) =>
        {
            h
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenancyConfig;

    use http::request::Parts;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn all_sources() -> TenantResolver {
        let c = TenancyConfig::from_vars([
            (
                "TENANCY_TENANT_SOURCES",
                "credential,header,query,host,path,default",
            ),
            ("TENANCY_HOST_TEMPLATE", "{tenant}.example.com"),
            ("TENANCY_PATH_PREFIX", "/t"),
        ])
        .unwrap();
        TenantResolver::from_config(&c.resolution).unwrap()
    }

    fn tenant_of(r: Result<Resolved, TenancyError>) -> String {
        match r.unwrap() {
            Resolved::Tenant { id, .. } => id.to_string(),
            Resolved::NoTenant => "-".into(),
        }
    }

    #[test]
    fn each_source_names_a_tenant() {
        let r = all_sources();
        assert_eq!(
            tenant_of(r.resolve(
                &RequestHead::from(&parts("/", &[("x-tenant-id", "acme")])),
                None
            )),
            "acme"
        );
        assert_eq!(
            tenant_of(r.resolve(
                &RequestHead::from(&parts("/?a=1&tenant_id=acme", &[])),
                None
            )),
            "acme"
        );
        assert_eq!(
            tenant_of(r.resolve(
                &RequestHead::from(&parts("/", &[("host", "acme.example.com:8080")])),
                None
            )),
            "acme"
        );
        assert_eq!(
            tenant_of(r.resolve(&RequestHead::from(&parts("/t/acme/things", &[])), None)),
            "acme"
        );
        let custom = r.clone().with_source(Arc::new(|p: &RequestHead<'_>| {
            p.header_str(&http::HeaderName::from_static("x-org"))
                .map(str::to_owned)
        }));
        assert_eq!(
            tenant_of(custom.resolve(&RequestHead::from(&parts("/", &[("x-org", "acme")])), None)),
            "acme"
        );
    }

    #[test]
    fn unrelated_hosts_and_paths_name_nothing() {
        let r = all_sources();
        for p in [
            parts("/", &[("host", "example.com")]),
            parts("/", &[("host", "a.b.example.com")]),
            parts("/tx/acme", &[]),
            parts("/t/", &[]),
        ] {
            let err = r.resolve(&RequestHead::from(&p), None).unwrap_err();
            assert_eq!(err.code(), "tenant_required");
        }
    }

    #[test]
    fn sources_must_agree() {
        let r = all_sources();
        let p = parts("/?tenant_id=globex", &[("x-tenant-id", "acme")]);
        assert_eq!(
            r.resolve(&RequestHead::from(&p), None).unwrap_err().code(),
            "tenant_mismatch"
        );
        let dup = parts("/", &[("x-tenant-id", "acme"), ("x-tenant-id", "globex")]);
        assert_eq!(
            r.resolve(&RequestHead::from(&dup), None)
                .unwrap_err()
                .code(),
            "tenant_mismatch"
        );
        let same = parts("/t/acme?tenant_id=acme", &[("x-tenant-id", "acme")]);
        assert_eq!(
            tenant_of(r.resolve(&RequestHead::from(&same), None)),
            "acme"
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        let r = all_sources();
        for p in [
            parts("/", &[("x-tenant-id", "Acme")]),
            parts("/?tenant_id=a%3Ab", &[]),
            parts("/?tenant_id=", &[]),
            parts("/t/{x}/y", &[]),
        ] {
            assert_eq!(
                r.resolve(&RequestHead::from(&p), None).unwrap_err().code(),
                "invalid_tenant_id"
            );
        }
        let mut p = parts("/", &[]);
        p.headers.insert(
            "x-tenant-id",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert_eq!(
            r.resolve(&RequestHead::from(&p), None).unwrap_err().code(),
            "invalid_tenant_id"
        );
    }

    #[test]
    fn credential_wins_and_crossers_are_marked() {
        let r = all_sources();
        let acme = t("acme");
        let plain = parts("/", &[]);
        assert_eq!(
            r.resolve(&RequestHead::from(&plain), Some((&acme, Role::Viewer)))
                .unwrap(),
            Resolved::Tenant {
                id: acme.clone(),
                cross_tenant: false
            }
        );
        let same = parts("/", &[("x-tenant-id", "acme")]);
        assert_eq!(
            tenant_of(r.resolve(&RequestHead::from(&same), Some((&acme, Role::Admin)))),
            "acme"
        );
        let other = parts("/", &[("x-tenant-id", "globex")]);
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(
                r.resolve(&RequestHead::from(&other), Some((&acme, role)))
                    .unwrap_err()
                    .code(),
                "tenant_mismatch"
            );
        }
        for role in [Role::SuperAdmin, Role::System] {
            assert_eq!(
                r.resolve(&RequestHead::from(&other), Some((&acme, role)))
                    .unwrap(),
                Resolved::Tenant {
                    id: t("globex"),
                    cross_tenant: true
                }
            );
        }
    }

    #[test]
    fn default_required_and_allowed() {
        let c = TenancyConfig::from_vars([("TENANCY_DEFAULT_TENANT", "acme")]).unwrap();
        let r = TenantResolver::from_config(&c.resolution).unwrap();
        assert_eq!(
            tenant_of(r.resolve(&RequestHead::from(&parts("/", &[])), None)),
            "acme"
        );

        let c = TenancyConfig::from_vars([("TENANCY_TENANT_REQUIRED", "false")]).unwrap();
        let r = TenantResolver::from_config(&c.resolution).unwrap();
        assert_eq!(
            r.resolve(&RequestHead::from(&parts("/", &[])), None)
                .unwrap(),
            Resolved::NoTenant
        );

        let c = TenancyConfig::from_vars([("TENANCY_ALLOWED_TENANTS", "acme")]).unwrap();
        let r = TenantResolver::from_config(&c.resolution).unwrap();
        let err = r
            .resolve(
                &RequestHead::from(&parts("/", &[("x-tenant-id", "globex")])),
                None,
            )
            .unwrap_err();
        assert_eq!(err.code(), "tenant_not_allowed");
        let err = r
            .resolve(
                &RequestHead::from(&parts("/", &[])),
                Some((&t("globex"), Role::Admin)),
            )
            .unwrap_err();
        assert_eq!(err.code(), "tenant_not_allowed");
    }

    #[test]
    fn disabled_maps_everything_to_the_default() {
        let c = TenancyConfig::from_vars([
            ("TENANCY_ENABLED", "false"),
            ("TENANCY_DEFAULT_TENANT", "solo"),
        ])
        .unwrap();
        let r = TenantResolver::from_config(&c.resolution).unwrap();
        let p = parts("/?tenant_id=other", &[("x-tenant-id", "Bad Id")]);
        assert_eq!(tenant_of(r.resolve(&RequestHead::from(&p), None)), "solo");
        assert_eq!(
            r.resolve(&RequestHead::from(&p), Some((&t("other"), Role::Admin)))
                .unwrap_err()
                .code(),
            "tenant_mismatch"
        );
        // The default tenant's own callers stay home, not marked crossing.
        for role in [Role::Viewer, Role::Admin, Role::SuperAdmin] {
            assert_eq!(
                r.resolve(&RequestHead::from(&p), Some((&t("solo"), role)))
                    .unwrap(),
                Resolved::Tenant {
                    id: t("solo"),
                    cross_tenant: false
                },
                "{role}"
            );
        }
        // A super_admin of another tenant reaches it, marked.
        assert_eq!(
            r.resolve(
                &RequestHead::from(&p),
                Some((&t("other"), Role::SuperAdmin))
            )
            .unwrap(),
            Resolved::Tenant {
                id: t("solo"),
                cross_tenant: true
            }
        );
    }

    #[test]
    fn debug_names_the_sources() {
        let text = format!("{:?}", all_sources());
        for part in [
            "Header(x-tenant-id)",
            "Host({tenant}.example.com)",
            "Path(/t/{tenant})",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn the_credential_names_the_tenant_only_when_its_source_is_listed() {
        let c = TenancyConfig::from_vars([("TENANCY_TENANT_SOURCES", "header")]).unwrap();
        let r = TenantResolver::from_config(&c.resolution).unwrap();
        let acme = Some((&t("acme"), Role::Admin));
        let unnamed = parts("/", &[]);
        assert_eq!(
            r.resolve(&RequestHead::from(&unnamed), acme)
                .unwrap_err()
                .code(),
            "tenant_required"
        );
        // Named, the credential still has to agree.
        let globex = parts("/", &[("x-tenant-id", "globex")]);
        assert_eq!(
            r.resolve(&RequestHead::from(&globex), acme)
                .unwrap_err()
                .code(),
            "tenant_mismatch"
        );
        let named = parts("/", &[("x-tenant-id", "acme")]);
        assert_eq!(
            tenant_of(r.resolve(&RequestHead::from(&named), acme)),
            "acme"
        );
        // Listed, the credential names it.
        assert_eq!(
            tenant_of(all_sources().resolve(&RequestHead::from(&unnamed), acme)),
            "acme"
        );
    }

    #[test]
    fn ports_are_stripped_from_hosts_and_nothing_else() {
        for (host, bare) in [
            ("acme.example.com:8080", "acme.example.com"),
            ("acme.example.com", "acme.example.com"),
            ("acme.example.com:", "acme.example.com:"),
            ("acme.example.com:80a", "acme.example.com:80a"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(strip_port(host), bare, "{host}");
        }
    }

    #[test]
    fn the_default_tenant_only_when_its_source_is_listed() {
        let c = TenancyConfig::from_vars([
            ("TENANCY_DEFAULT_TENANT", "acme"),
            ("TENANCY_TENANT_SOURCES", "credential,header"),
        ])
        .unwrap();
        let r = TenantResolver::from_config(&c.resolution).unwrap();
        let err = r
            .resolve(&RequestHead::from(&parts("/", &[])), None)
            .unwrap_err();
        assert_eq!(err.code(), "tenant_required");
        assert_eq!(
            tenant_of(r.resolve(
                &RequestHead::from(&parts("/", &[("x-tenant-id", "globex")])),
                None
            )),
            "globex"
        );
    }
}
