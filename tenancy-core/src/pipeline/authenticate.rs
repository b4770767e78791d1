//! Stage 1: the credential becomes a [`Caller`].
//!
//! `X-API-Key` is tried first, then `Authorization: Bearer` (names
//! configurable). A present but bad credential is refused; it never falls
//! through to anonymous. No credential: the configured anonymous role, else
//! `unauthenticated`.

use crate::clock::Now;
use http::HeaderName;

use super::known_keys::KnownKeys;
use super::{Caller, Halt, PresentedKey, Wait, now_or_await};
use crate::audit::ActorKind;
use crate::config::{ConfigError, TenancyConfig};
use crate::context::{AuthMethod, Principal};
use crate::credential::Pending;
use crate::credential::{ApiKeyHasher, JwtVerifier};
use crate::error::{ApiKeyRejection, ErrorKind, TenancyError, TokenRejection};
use crate::rbac::Role;
use crate::request::{RequestHead, visible_ascii};
use crate::store::{ApiKeyStore, RealmStore};

/// Turns credentials into callers.
#[derive(Debug)]
pub struct Authenticator {
    jwt: JwtVerifier,
    hasher: ApiKeyHasher,
    bearer_header: HeaderName,
    api_key_header: HeaderName,
    anonymous_role: Option<Role>,
    /// Keys that verified within the last minute.
    known_keys: Option<KnownKeys>,
}

impl Authenticator {
    /// The authenticator `config` (validated) describes; loads the
    /// realms' keys.
    pub(crate) fn from_config(config: &TenancyConfig) -> Result<Self, ConfigError> {
        let header = |name: &str, key: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(key, "is not a valid HTTP header name"))
        };
        Ok(Self {
            jwt: JwtVerifier::from_validated(config)?,
            hasher: ApiKeyHasher::new(
                config.auth.api_key_prefix.clone(),
                config.auth.api_key_pepper.as_ref(),
            ),
            bearer_header: header(&config.auth.bearer_header, "auth.bearer_header")?,
            api_key_header: header(&config.auth.api_key_header, "auth.api_key_header")?,
            anonymous_role: config.auth.anonymous_role,
            known_keys: KnownKeys::new(config.auth.token_cache_capacity),
        })
    }

    /// Whether `head`'s credential is known good without a store lookup or
    /// a signature check: a token in a verified-token cache, or an API key
    /// that verified within the last minute. The failure throttle serves
    /// such a credential from an address over its allowance; everything
    /// else from there is refused before any lookup.
    pub(crate) fn is_known_good(&self, head: &RequestHead<'_>, now: Now) -> bool {
        if let Some(value) = head.header(&self.api_key_header) {
            let Some(known) = &self.known_keys else {
                return false;
            };
            return visible_ascii(value)
                .and_then(|presented| self.hasher.digest(presented).ok())
                .is_some_and(|digest| known.contains(&digest, now.unix_nanos));
        }
        head.header(&self.bearer_header)
            .and_then(visible_ascii)
            .and_then(bearer_token)
            .is_some_and(|token| self.jwt.is_known(token))
    }

    /// Whether `head` presents an API key (well-formed or not).
    pub(crate) fn presents_api_key(&self, head: &RequestHead<'_>) -> bool {
        head.header(&self.api_key_header).is_some()
    }

    /// The hasher of presented and issued API keys.
    pub fn hasher(&self) -> &ApiKeyHasher {
        &self.hasher
    }

    /// Who `head`'s credential says it is, at `now`. A token whose issuer
    /// no configured realm has is checked against the realm a tenant
    /// brought with it, as `realms` has it now.
    pub(crate) async fn authenticate(
        &self,
        head: &RequestHead<'_>,
        api_keys: &dyn ApiKeyStore,
        realms: &dyn RealmStore,
        now: Now,
        wait: Wait,
    ) -> Result<Caller, Halt> {
        if let Some(value) = head.header(&self.api_key_header) {
            let presented =
                visible_ascii(value).ok_or_else(|| api_key(ApiKeyRejection::Malformed))?;
            return self.api_key(presented, api_keys, now, wait).await;
        }
        if let Some(value) = head.header(&self.bearer_header) {
            let token = visible_ascii(value).and_then(bearer_token).ok_or_else(|| {
                TenancyError::from(ErrorKind::InvalidToken(TokenRejection::Malformed))
            })?;
            let verified = match self.jwt.check_now(token) {
                Ok(verified) => verified,
                Err(Pending::Refused(e)) => return Err(e.into()),
                Err(_) if wait == Wait::Never => return Err(Halt::WouldWait),
                Err(Pending::Fetch) => self.jwt.verify(token).await?,
                Err(Pending::Foreign(issuer)) => {
                    self.jwt
                        .verify_in_tenant_realm(token, &issuer, realms)
                        .await?
                }
            };
            let kind = if verified.role == Role::System {
                ActorKind::Service
            } else {
                ActorKind::User
            };
            return Ok(Caller {
                tenant: Some(verified.tenant),
                principal: Principal::new(verified.subject, kind),
                role: verified.role,
                auth: AuthMethod::Jwt {
                    realm: verified.realm,
                },
                key: None,
            });
        }
        match self.anonymous_role {
            Some(role) => Ok(Caller {
                tenant: None,
                principal: Principal::anonymous(),
                role,
                auth: AuthMethod::Anonymous,
                key: None,
            }),
            None => Err(ErrorKind::Unauthenticated.into()),
        }
    }

    /// One digest, one lookup: the key's format (prefix, length, CRC32) is
    /// checked before either.
    async fn api_key(
        &self,
        presented: &str,
        api_keys: &dyn ApiKeyStore,
        now: Now,
        wait: Wait,
    ) -> Result<Caller, Halt> {
        let digest = self.hasher.digest(presented).map_err(api_key)?;
        let record = now_or_await!(
            wait,
            api_keys.find_by_digest_now(&digest),
            api_keys.find_by_digest(&digest)
        )
        .map_err(|e| {
                tracing::error!(error = %e, "API key store failed; refusing (authentication fails closed)");
                TenancyError::from(e)
            })?
            .ok_or_else(|| api_key(ApiKeyRejection::Unknown))?;
        record.check_usable(now.utc()).map_err(api_key)?;
        if let Some(known) = &self.known_keys {
            known.verified(&digest, now.unix_nanos);
        }
        Ok(Caller {
            tenant: Some(record.tenant_id.clone()),
            principal: Principal::new(record.key_id.to_arc(), ActorKind::ApiKey),
            role: record.scope.role(),
            auth: AuthMethod::ApiKey {
                key_id: record.key_id.clone(),
                scope: record.scope,
            },
            key: Some(PresentedKey {
                key_id: record.key_id.clone(),
                rate_limit_rps: record.rate_limit_rps,
                last_used_at: record.last_used_at,
            }),
        })
    }
}

/// The token of an `Authorization: Bearer …` value.
fn bearer_token(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

fn api_key(rejection: ApiKeyRejection) -> TenancyError {
    ErrorKind::InvalidApiKey(rejection).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::ApiKeySecret;
    use crate::store::memory::MemoryApiKeyStore;

    fn authenticator(anonymous: Option<Role>) -> Authenticator {
        let mut config = TenancyConfig::default();
        config.auth.anonymous_role = anonymous;
        Authenticator::from_config(&config).unwrap()
    }

    async fn caller(
        auth: &Authenticator,
        headers: &[(&str, &str)],
    ) -> Result<Caller, TenancyError> {
        let mut request = http::Request::get("/");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        auth.authenticate(
            &RequestHead::from(&parts),
            &MemoryApiKeyStore::new(),
            &crate::store::memory::MemoryRealmStore::new(),
            crate::clock::Clock::new().now(),
            Wait::Never,
        )
        .await
        .map_err(Halt::into_error)
    }

    #[tokio::test]
    async fn no_credential_is_anonymous_only_when_configured() {
        let err = caller(&authenticator(None), &[]).await.unwrap_err();
        assert_eq!(err.code(), "unauthenticated");
        let anonymous = caller(&authenticator(Some(Role::Viewer)), &[])
            .await
            .unwrap();
        assert!(!anonymous.is_verified());
        assert_eq!(anonymous.role, Role::Viewer);
    }

    #[tokio::test]
    async fn a_bad_credential_never_falls_through_to_anonymous() {
        let auth = authenticator(Some(Role::Viewer));
        let cases: [(&str, &str, &str); 3] = [
            ("x-api-key", "tnk_typo", "invalid_api_key"),
            ("authorization", "Basic abc", "invalid_token"),
            ("authorization", "Bearer not.a.jwt", "invalid_token"),
        ];
        for (name, value, code) in cases {
            let err = caller(&auth, &[(name, value)]).await.unwrap_err();
            assert_eq!(err.code(), code, "{name}: {value}");
        }
    }

    #[tokio::test]
    async fn a_well_formed_key_nobody_issued_is_unknown() {
        let auth = authenticator(None);
        let key = ApiKeySecret::generate("tnk", crate::credential::new_key_id().unwrap()).unwrap();
        let err = caller(&auth, &[("x-api-key", key.expose())])
            .await
            .unwrap_err();
        assert!(matches!(
            err.kind(),
            ErrorKind::InvalidApiKey(ApiKeyRejection::Unknown)
        ));
    }
}
