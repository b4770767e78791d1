//! [`TenancyError`]: every way a request can be refused, each with its HTTP
//! status, stable `code`, headers and RFC 9457 problem body.
//!
//! | code | status | when |
//! |---|---|---|
//! | `tenant_required` | 400 | no tenant found and none is defaulted |
//! | `invalid_tenant_id` | 400 | not a valid slug |
//! | `invalid_request` | 400 | malformed body or parameters |
//! | `unauthenticated` | 401 | no credential where one is required (`WWW-Authenticate: Bearer`) |
//! | `invalid_token` | 401 | bad signature, format, alg, issuer, audience, realm, or missing claims |
//! | `token_expired` | 401 | `exp` passed (or `nbf` in the future) |
//! | `invalid_api_key` | 401 | malformed, unknown, revoked or expired key |
//! | `tenant_not_allowed` | 403 | not in `allowed_tenants` |
//! | `unknown_tenant` | 403 | no such tenant |
//! | `tenant_mismatch` | 403 | requested tenant differs from the credential's |
//! | `tenant_suspended` | 403 | write to a suspended tenant |
//! | `tenant_archived` | 403 | any request to an archived tenant |
//! | `insufficient_role` | 403 | role below the route's minimum |
//! | `scope_denied` | 403 | API key scope does not cover this request |
//! | `not_found` | 404 | resource missing *or* owned by another tenant |
//! | `conflict` | 409 | the resource already exists |
//! | `payload_too_large` | 413 | body over the size limit |
//! | `rate_limited` | 429 | over RPS (`Retry-After`) |
//! | `quota_exceeded` | 429 | over a period quota (`Retry-After` until reset) |
//! | `internal_error` | 500 | anything else that failed inside |
//! | `store_unavailable` | 503 | a store is down and its policy is fail-closed |
//!
//! Internal failures are opaque: a [`StoreError`] inside `store_unavailable`
//! is kept for logs (through [`std::error::Error::source`]) and never written
//! to the body.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::limit::{RateLimitStatus, seconds_header};
use crate::rbac::{ApiKeyScope, Role};
use crate::tenant::InvalidTenantId;

/// The content type of every refusal body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of the problem `type` URI; the code follows it.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:tenancy:problem:";

/// Why a bearer token was refused (`invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a well-formed JWT (segments, base64, JSON, size).
    Malformed,
    /// The `alg` is `none`, unknown, or not the one the key is fixed to.
    Algorithm,
    /// The signature does not verify with the realm's key.
    Signature,
    /// No realm has the token's issuer.
    Issuer,
    /// The audience does not match.
    Audience,
    /// A dedicated realm's token names another tenant, or the role is not
    /// allowed from this realm.
    Realm,
    /// A required claim (`exp`, `sub`, `tenant_id`, `role`) is missing or
    /// malformed.
    Claims,
}

impl TokenRejection {
    fn detail(self) -> &'static str {
        match self {
            TokenRejection::Malformed => "the bearer token is not a well-formed JWT",
            TokenRejection::Algorithm => "the token's algorithm is not accepted",
            TokenRejection::Signature => "the token's signature does not verify",
            TokenRejection::Issuer => "the token's issuer is not a configured realm",
            TokenRejection::Audience => "the token's audience is not accepted",
            TokenRejection::Realm => "the token is not valid for this realm or tenant",
            TokenRejection::Claims => "the token lacks a required claim or has a malformed one",
        }
    }
}

/// Why an API key was refused (`invalid_api_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiKeyRejection {
    /// Wrong prefix, length, alphabet or checksum: refused without a lookup.
    Malformed,
    /// No key has this digest.
    Unknown,
    /// The key was revoked.
    Revoked,
    /// The key has expired.
    Expired,
}

impl ApiKeyRejection {
    /// The detail on the wire: one sentence for every reason, so a caller
    /// cannot tell an unknown key from a revoked or expired one. The reason
    /// goes to the log and the audit event only.
    fn detail(self) -> &'static str {
        "the API key is not valid"
    }
}

/// The kinds of [`TenancyError`], one per refusal.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No tenant found and none defaulted; names where to put one.
    TenantRequired {
        /// The tenant header name.
        header: String,
        /// The tenant query parameter name.
        query: String,
    },
    /// Not a valid tenant slug.
    InvalidTenantId(InvalidTenantId),
    /// Malformed request body or parameters; the text is shown to the client.
    InvalidRequest(String),
    /// No credential where one is required.
    Unauthenticated,
    /// A bearer token was refused.
    InvalidToken(TokenRejection),
    /// The token's `exp` has passed or its `nbf` is in the future.
    TokenExpired,
    /// An API key was refused.
    InvalidApiKey(ApiKeyRejection),
    /// The tenant is not in `allowed_tenants`.
    TenantNotAllowed,
    /// No such tenant.
    UnknownTenant,
    /// The requested tenant differs from the credential's.
    TenantMismatch,
    /// A write to a suspended tenant.
    TenantSuspended,
    /// Any request to an archived tenant.
    TenantArchived,
    /// The caller's role is below the route's minimum.
    InsufficientRole {
        /// The route's minimum role.
        required: Role,
    },
    /// The API key's scope does not cover the request.
    ScopeDenied {
        /// The key's scope.
        scope: ApiKeyScope,
    },
    /// Missing, or owned by another tenant (never tell which).
    NotFound,
    /// The resource already exists; the text is shown to the client.
    Conflict(String),
    /// The body is over the limit.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Over the requests-per-second limit.
    RateLimited(RateLimitStatus),
    /// Over a period quota.
    QuotaExceeded {
        /// The budget's name (`events`, or a named budget).
        budget: String,
        /// Time until the period resets; `None` for count quotas (API keys,
        /// users), which free up only when something is removed.
        retry_after: Option<Duration>,
    },
    /// A store failed and its policy is fail-closed. The cause is for logs.
    StoreUnavailable(StoreError),
    /// Any other internal failure. The text is for logs only.
    Internal(String),
}

/// A refused request.
///
/// One pointer wide, so `Result<_, TenancyError>` stays small on the hot path.
/// [`status`](Self::status), [`code`](Self::code) and
/// [`headers`](Self::headers) give the answer; [`problem`](Self::problem) the
/// RFC 9457 body.
///
/// ```
/// use http::StatusCode;
/// use tenancy_core::error::{ErrorKind, TenancyError};
///
/// let err = TenancyError::new(ErrorKind::Unauthenticated);
/// assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(err.code(), "unauthenticated");
/// assert_eq!(err.headers()["www-authenticate"], "Bearer");
/// let body: serde_json::Value = serde_json::from_slice(&err.problem().to_json())?;
/// assert_eq!(body["status"], 401);
/// assert_eq!(body["code"], "unauthenticated");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub struct TenancyError {
    kind: Box<ErrorKind>,
}

/// Writes `err` at `ERROR` when it is a server error (5xx), at most one
/// line a second per process for `503` and one for the other codes (so a
/// flood of one never hides the other); the lines held back meanwhile are
/// counted in the next one (`held_back`). Refusals are answered at the
/// caller's rate: a store failure answered to forged tokens would otherwise
/// write a line per token. Both adapters log through it.
///
/// ```
/// use tenancy_core::error::{ErrorKind, TenancyError, log_server_error};
///
/// log_server_error(&TenancyError::internal("disk on fire")); // written
/// log_server_error(&TenancyError::new(ErrorKind::Unauthenticated)); // not a server error
/// ```
pub fn log_server_error(err: &TenancyError) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST_SECOND: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    static HELD_BACK: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    if !err.status().is_server_error() {
        return;
    }
    let slot = usize::from(err.status() == StatusCode::SERVICE_UNAVAILABLE);
    let (last_second, held) = (&LAST_SECOND[slot], &HELD_BACK[slot]);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let last = last_second.load(Relaxed);
    if last == second
        || last_second
            .compare_exchange(last, second, Relaxed, Relaxed)
            .is_err()
    {
        held.fetch_add(1, Relaxed);
        return;
    }
    let held_back = held.swap(0, Relaxed);
    tracing::error!(error = %err, held_back, "request failed inside tenancy");
}

impl TenancyError {
    /// Wraps a kind.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind: Box::new(kind),
        }
    }

    /// The kind of refusal.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Consumes the error, giving its kind.
    pub fn into_kind(self) -> ErrorKind {
        *self.kind
    }

    /// `tenant_required`, naming the header and query parameter to use.
    pub fn tenant_required(header: impl Into<String>, query: impl Into<String>) -> Self {
        Self::new(ErrorKind::TenantRequired {
            header: header.into(),
            query: query.into(),
        })
    }

    /// `invalid_request` with a detail shown to the client.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest(detail.into()))
    }

    /// `internal_error`; `cause` is for logs only.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal(cause.into()))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use ErrorKind::*;
        match &*self.kind {
            TenantRequired { .. } | InvalidTenantId(_) | InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Unauthenticated | InvalidToken(_) | TokenExpired | InvalidApiKey(_) => {
                StatusCode::UNAUTHORIZED
            }
            TenantNotAllowed
            | UnknownTenant
            | TenantMismatch
            | TenantSuspended
            | TenantArchived
            | InsufficientRole { .. }
            | ScopeDenied { .. } => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            Conflict(_) => StatusCode::CONFLICT,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited(_) | QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use ErrorKind::*;
        match &*self.kind {
            TenantRequired { .. } => "tenant_required",
            InvalidTenantId(_) => "invalid_tenant_id",
            InvalidRequest(_) => "invalid_request",
            Unauthenticated => "unauthenticated",
            InvalidToken(_) => "invalid_token",
            TokenExpired => "token_expired",
            InvalidApiKey(_) => "invalid_api_key",
            TenantNotAllowed => "tenant_not_allowed",
            UnknownTenant => "unknown_tenant",
            TenantMismatch => "tenant_mismatch",
            TenantSuspended => "tenant_suspended",
            TenantArchived => "tenant_archived",
            InsufficientRole { .. } => "insufficient_role",
            ScopeDenied { .. } => "scope_denied",
            NotFound => "not_found",
            Conflict(_) => "conflict",
            PayloadTooLarge { .. } => "payload_too_large",
            RateLimited(_) => "rate_limited",
            QuotaExceeded { .. } => "quota_exceeded",
            StoreUnavailable(_) => "store_unavailable",
            Internal(_) => "internal_error",
        }
    }

    /// A short human-readable summary of the code.
    pub fn title(&self) -> &'static str {
        use ErrorKind::*;
        match &*self.kind {
            TenantRequired { .. } => "Tenant required",
            InvalidTenantId(_) => "Invalid tenant id",
            InvalidRequest(_) => "Invalid request",
            Unauthenticated => "Authentication required",
            InvalidToken(_) => "Invalid token",
            TokenExpired => "Token expired",
            InvalidApiKey(_) => "Invalid API key",
            TenantNotAllowed => "Tenant not allowed",
            UnknownTenant => "Unknown tenant",
            TenantMismatch => "Tenant mismatch",
            TenantSuspended => "Tenant suspended",
            TenantArchived => "Tenant archived",
            InsufficientRole { .. } => "Insufficient role",
            ScopeDenied { .. } => "Scope denied",
            NotFound => "Not found",
            Conflict(_) => "Conflict",
            PayloadTooLarge { .. } => "Payload too large",
            RateLimited(_) => "Rate limited",
            QuotaExceeded { .. } => "Quota exceeded",
            StoreUnavailable(_) => "Service unavailable",
            Internal(_) => "Internal error",
        }
    }

    /// The detail shown to the client. Never holds store or internal error text.
    pub fn detail(&self) -> Cow<'static, str> {
        use ErrorKind::*;
        match &*self.kind {
            TenantRequired { header, query } => Cow::Owned(format!(
                "no tenant was given: send the {header} header or the {query} query parameter"
            )),
            InvalidTenantId(e) => Cow::Owned(e.to_string()),
            InvalidRequest(d) | Conflict(d) => Cow::Owned(d.clone()),
            Unauthenticated => "a bearer token or an API key is required".into(),
            InvalidToken(r) => r.detail().into(),
            TokenExpired => "the token has expired or is not valid yet".into(),
            InvalidApiKey(r) => r.detail().into(),
            TenantNotAllowed => "the tenant is not allowed on this service".into(),
            UnknownTenant => "the tenant does not exist".into(),
            TenantMismatch => "the requested tenant differs from the credential's tenant".into(),
            TenantSuspended => "the tenant is suspended: only reads are allowed".into(),
            TenantArchived => "the tenant is archived".into(),
            InsufficientRole { required } => {
                Cow::Owned(format!("this route requires the {required} role or higher"))
            }
            ScopeDenied { scope } => Cow::Owned(format!(
                "an API key of scope {scope} may not make this request"
            )),
            NotFound => "the resource does not exist".into(),
            PayloadTooLarge { limit } => {
                Cow::Owned(format!("the request body is larger than {limit} bytes"))
            }
            RateLimited(_) => "too many requests: retry after the time in Retry-After".into(),
            QuotaExceeded {
                budget,
                retry_after: Some(_),
            } => Cow::Owned(format!(
                "the {budget} quota of this period is used up: retry after the time in Retry-After"
            )),
            QuotaExceeded {
                budget,
                retry_after: None,
            } => Cow::Owned(format!("the plan's {budget} quota is used up")),
            StoreUnavailable(_) => "a backing service is unavailable, retry later".into(),
            Internal(_) => "an internal error occurred".into(),
        }
    }

    /// The headers this refusal carries besides `Content-Type`:
    /// `WWW-Authenticate` on 401s, `Retry-After` and the `RateLimit-*` fields
    /// on 429s.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.write_headers(&mut headers);
        headers
    }

    /// Writes [`headers`](Self::headers) and the problem `Content-Type` into
    /// `headers`.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        use ErrorKind::*;
        match &*self.kind {
            Unauthenticated => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            InvalidToken(_) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            TokenExpired => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer error=\"invalid_token\", error_description=\"token expired\"",
                    ),
                );
            }
            RateLimited(status) => {
                status.write_headers(headers);
                headers.insert(RETRY_AFTER, seconds_header(status.retry_after));
            }
            QuotaExceeded {
                retry_after: Some(retry_after),
                ..
            } => {
                headers.insert(RETRY_AFTER, seconds_header(*retry_after));
            }
            _ => {}
        }
    }

    /// The RFC 9457 problem body.
    pub fn problem(&self) -> Problem {
        Problem {
            r#type: format!("{PROBLEM_TYPE_PREFIX}{}", self.code()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.detail(),
            code: self.code(),
        }
    }

    /// The whole answer as an [`http::Response`], for adapters and tests.
    ///
    /// ```
    /// use tenancy_core::error::{ErrorKind, TenancyError};
    /// let res = TenancyError::new(ErrorKind::TenantArchived).to_response();
    /// assert_eq!(res.status(), 403);
    /// assert_eq!(res.headers()["content-type"], "application/problem+json");
    /// ```
    pub fn to_response(&self) -> http::Response<Vec<u8>> {
        let mut response = http::Response::new(self.problem().to_json());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        self.write_headers(headers);
        response
    }
}

impl fmt::Debug for TenancyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenancyError")
            .field("code", &self.code())
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Display for TenancyError {
    /// For logs: the code and detail, plus the internal cause where there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())?;
        match &*self.kind {
            ErrorKind::StoreUnavailable(e) => write!(f, " ({e})"),
            ErrorKind::Internal(cause) => write!(f, " ({cause})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for TenancyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            ErrorKind::StoreUnavailable(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorKind> for TenancyError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl From<StoreError> for TenancyError {
    fn from(e: StoreError) -> Self {
        Self::new(ErrorKind::StoreUnavailable(e))
    }
}

impl From<InvalidTenantId> for TenancyError {
    fn from(e: InvalidTenantId) -> Self {
        Self::new(ErrorKind::InvalidTenantId(e))
    }
}

/// An RFC 9457 problem body with the `code` extension member.
///
/// ```
/// use tenancy_core::error::{ErrorKind, TenancyError};
/// let p = TenancyError::new(ErrorKind::NotFound).problem();
/// assert_eq!(p.r#type, "urn:tenancy:problem:not_found");
/// assert_eq!(p.status, 404);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// URI naming the problem type.
    pub r#type: String,
    /// Short summary.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Human-readable explanation of this occurrence.
    pub detail: Cow<'static, str>,
    /// Stable machine-readable code.
    pub code: &'static str,
}

impl Problem {
    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The names of the headers refusals can carry, for adapters that copy them.
pub const REFUSAL_HEADERS: [HeaderName; 2] = [WWW_AUTHENTICATE, RETRY_AFTER];

/// A boxed error from a store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store call failed. Never shown to clients: the engine answers
/// `store_unavailable` (or fails open, per policy) and logs this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The call passed its deadline.
    #[error("store call timed out")]
    Timeout,
    /// An insert found the record already there.
    #[error("record already exists")]
    AlreadyExists,
    /// An update found no record.
    #[error("record not found")]
    NotFound,
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("store backend error: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// [`StoreError::Unavailable`] from any error.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }

    /// [`StoreError::Backend`] from any error.
    pub fn backend(e: impl Into<BoxError>) -> Self {
        Self::Backend(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::RateLimitStatus;

    type Case = (
        ErrorKind,
        u16,
        &'static str,
        &'static [(&'static str, &'static str)],
    );

    fn every_kind() -> Vec<Case> {
        let rl = RateLimitStatus {
            limit: 10,
            remaining: 0,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(200),
        };
        vec![
            (
                ErrorKind::TenantRequired {
                    header: "X-Tenant-ID".into(),
                    query: "tenant".into(),
                },
                400,
                "tenant_required",
                &[],
            ),
            (
                ErrorKind::InvalidTenantId(InvalidTenantId::Empty),
                400,
                "invalid_tenant_id",
                &[],
            ),
            (
                ErrorKind::InvalidRequest("bad json".into()),
                400,
                "invalid_request",
                &[],
            ),
            (
                ErrorKind::Unauthenticated,
                401,
                "unauthenticated",
                &[("www-authenticate", "Bearer")],
            ),
            (
                ErrorKind::InvalidToken(TokenRejection::Signature),
                401,
                "invalid_token",
                &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            ),
            (
                ErrorKind::TokenExpired,
                401,
                "token_expired",
                &[(
                    "www-authenticate",
                    "Bearer error=\"invalid_token\", error_description=\"token expired\"",
                )],
            ),
            (
                ErrorKind::InvalidApiKey(ApiKeyRejection::Revoked),
                401,
                "invalid_api_key",
                &[],
            ),
            (ErrorKind::TenantNotAllowed, 403, "tenant_not_allowed", &[]),
            (ErrorKind::UnknownTenant, 403, "unknown_tenant", &[]),
            (ErrorKind::TenantMismatch, 403, "tenant_mismatch", &[]),
            (ErrorKind::TenantSuspended, 403, "tenant_suspended", &[]),
            (ErrorKind::TenantArchived, 403, "tenant_archived", &[]),
            (
                ErrorKind::InsufficientRole {
                    required: Role::Admin,
                },
                403,
                "insufficient_role",
                &[],
            ),
            (
                ErrorKind::ScopeDenied {
                    scope: ApiKeyScope::Readonly,
                },
                403,
                "scope_denied",
                &[],
            ),
            (ErrorKind::NotFound, 404, "not_found", &[]),
            (ErrorKind::Conflict("exists".into()), 409, "conflict", &[]),
            (
                ErrorKind::PayloadTooLarge { limit: 1024 },
                413,
                "payload_too_large",
                &[],
            ),
            (
                ErrorKind::RateLimited(rl),
                429,
                "rate_limited",
                &[
                    ("retry-after", "1"),
                    ("ratelimit-limit", "10"),
                    ("ratelimit-remaining", "0"),
                    ("ratelimit-reset", "2"),
                ],
            ),
            (
                ErrorKind::QuotaExceeded {
                    budget: "events".into(),
                    retry_after: Some(Duration::from_secs(3600)),
                },
                429,
                "quota_exceeded",
                &[("retry-after", "3600")],
            ),
            (
                ErrorKind::StoreUnavailable(StoreError::Timeout),
                503,
                "store_unavailable",
                &[],
            ),
            (
                ErrorKind::Internal("boom".into()),
                500,
                "internal_error",
                &[],
            ),
        ]
    }

    #[test]
    fn every_error_maps_to_status_code_and_headers() {
        for (kind, status, code, headers) in every_kind() {
            let err = TenancyError::new(kind);
            assert_eq!(err.status().as_u16(), status, "{code}");
            assert_eq!(err.code(), code);
            let got = err.headers();
            assert_eq!(got.len(), headers.len(), "{code}: {got:?}");
            for (name, value) in headers {
                assert_eq!(got[*name], *value, "{code} {name}");
            }
            let res = err.to_response();
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(res.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
            let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
            assert_eq!(body["status"], status);
            assert_eq!(body["code"], code);
            assert_eq!(body["type"], format!("urn:tenancy:problem:{code}"));
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
            assert_eq!(body.as_object().unwrap().len(), 5);
        }
    }

    #[test]
    fn design_codes_are_all_covered() {
        let codes: Vec<&str> = every_kind()
            .into_iter()
            .map(|(k, ..)| TenancyError::new(k).code())
            .collect();
        for code in [
            "tenant_required",
            "invalid_tenant_id",
            "unauthenticated",
            "invalid_token",
            "token_expired",
            "invalid_api_key",
            "tenant_not_allowed",
            "unknown_tenant",
            "tenant_mismatch",
            "tenant_suspended",
            "tenant_archived",
            "insufficient_role",
            "scope_denied",
            "not_found",
            "rate_limited",
            "quota_exceeded",
            "store_unavailable",
        ] {
            assert!(codes.contains(&code), "{code}");
        }
    }

    #[test]
    fn tenant_required_names_header_and_query() {
        let err = TenancyError::tenant_required("X-Tenant-ID", "tenant");
        let detail = err.detail();
        assert!(detail.contains("X-Tenant-ID") && detail.contains("tenant"));
    }

    #[test]
    fn internal_causes_never_reach_the_body() {
        let secret = "connection refused to redis://:hunter2@10.0.0.5";
        for err in [
            TenancyError::from(StoreError::unavailable(std::io::Error::other(secret))),
            TenancyError::from(StoreError::backend(std::io::Error::other(secret))),
            TenancyError::internal(secret),
        ] {
            let body = String::from_utf8(err.to_response().into_body()).unwrap();
            assert!(!body.contains("hunter2"), "{body}");
            assert!(!body.contains("redis"), "{body}");
            // …but the log line has it.
            assert!(err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn error_is_one_pointer_wide() {
        assert_eq!(
            std::mem::size_of::<TenancyError>(),
            std::mem::size_of::<usize>()
        );
    }
}
