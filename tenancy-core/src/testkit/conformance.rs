//! The adapter conformance suite: one table of requests and expected
//! answers that every web adapter must pass, byte for byte the same.
//!
//! An adapter's test builds, for each [`Fixture`], an app with the routes of
//! [`ROUTES`] over the fixture's [`Tenancy`], sends every [`Case`] through it
//! in order, and hands the answers to [`Case::check`]:
//!
//! ```
//! use tenancy_core::testkit::conformance::{Fixture, Observed, setup};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let suite = setup().await;
//! for fixture in Fixture::ALL {
//!     let tenancy = suite.tenancy(fixture);
//!     // build the app over `tenancy`, then for each case:
//!     for case in suite.cases(fixture) {
//!         # let _ = (&tenancy, &case);
//!         // let observed: Observed = send(&app, &case.request).await;
//!         // case.check(&observed);
//!     }
//! }
//! # });
//! ```
//!
//! Cases run in order against one app per fixture: the rate-limit and quota
//! cases depend on the cases before them.

use std::collections::BTreeMap;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::NewApiKey;
use crate::audit::AuditFilter;
use crate::config::{ClaimsConfig, RealmConfig, TenancyConfig};
use crate::context::TenantContext;
use crate::engine::{RoutePolicy, Tenancy};
use crate::error::{ErrorKind, TenancyError};
use crate::key_id::KeyId;
use crate::label::Label;
use crate::limit::RateQuota;
use crate::plan::{Limit, QuotaOverrides};
use crate::rbac::{ApiKeyScope, Role};
use crate::tenant::{TenantId, TenantRecord, TenantStatus};

/// The HS256 secret of the conformance realm.
pub const SECRET: &str = "conformance-secret-0123456789abcdef";
/// The issuer of the conformance realm.
pub const ISSUER: &str = "tenancy-conformance";
/// The issuer of the realm that reads Keycloak's shapes: roles from
/// `realm_access.roles`, the tenant from `org.tenant`, the subject from
/// `preferred_username` (HS256 with [`SECRET`]).
pub const KEYCLOAK_ISSUER: &str = "https://id.conformance.example/realms/kc";
/// The issuer of the realm that reads namespaced claims through JSON
/// Pointers: `/https:~1~1conformance.example~1tenant` and
/// `/https:~1~1conformance.example~1roles` (HS256 with [`SECRET`]).
pub const NAMESPACED_ISSUER: &str = "https://conformance.example.auth0.com/";

/// The routes every adapter's conformance app serves, and what each does.
///
/// | method and path | does |
/// |---|---|
/// | `GET /ctx` | `Tenant` extractor; 200 with [`context_json`] |
/// | `GET /maybe` | `Option<Tenant>`; 200 with `{"tenant": id or null}` |
/// | `POST /write` | `Tenant`; 200 `{"ok": true}` |
/// | `GET /admin` | `RequireRole<Admin>` extractor; 200 with [`context_json`] |
/// | `GET /admin-layer` | per-route minimum role admin (layer / route policy); 200 with [`context_json`] |
/// | `GET /readonly` | `RequireScope<Readonly>`; 200 with [`context_json`] |
/// | `POST /api/v1/telemetry` | `Quota`: charge `events` 1; 202 `{"accepted": 1}` |
/// | `DELETE /keys/{key_id}` | `Tenant`; `TenancyAdmin::revoke_api_key` for the caller's tenant; 204 |
/// | `POST /audit` | `Audit`: records `widget.create` on `w-1`, then answers 409 `conflict` |
/// | `GET /limited` | route policy [`limited_route`] (1 request per second per tenant); `Tenant`; 200 with [`context_json`] |
/// | `GET /healthz` | excluded from tenancy; 200 `ok` |
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/ctx"),
    ("GET", "/maybe"),
    ("POST", "/write"),
    ("GET", "/admin"),
    ("GET", "/admin-layer"),
    ("GET", "/readonly"),
    ("POST", "/api/v1/telemetry"),
    ("DELETE", "/keys/{key_id}"),
    ("POST", "/audit"),
    ("GET", "/limited"),
    ("GET", "/healthz"),
];

/// The route policy of `GET /limited`: one request per second per tenant,
/// in the route bucket `limited`.
pub fn limited_route() -> RoutePolicy {
    RoutePolicy::rate_limit(
        Label::new("limited").expect("valid label"),
        RateQuota::per_second(1).expect("non-zero"),
    )
}

/// The body of `/ctx`, `/admin`, `/admin-layer` and `/readonly`.
pub fn context_json(ctx: &TenantContext) -> Value {
    json!({
        "tenant_id": ctx.tenant_id().as_str(),
        "role": ctx.role().as_str(),
        "subject": ctx.principal().subject.as_ref(),
        "scope": ctx.scope().map(|s| s.as_str()),
        "cross_tenant": ctx.is_cross_tenant(),
    })
}

/// A `GET /ctx` with a well-formed API key that `config`'s engine issued
/// for `acme` (in memory), to send to an engine whose stores fail; returns
/// the issuing engine too, to shut down.
pub async fn request_with_issued_key(config: TenancyConfig) -> (CaseRequest, Tenancy) {
    let issuer = Tenancy::builder(config).build().expect("engine");
    let acme = TenantId::new("acme").expect("tenant id");
    issuer
        .admin()
        .create_tenant(TenantRecord::new(acme.clone(), "Acme", "pro"))
        .await
        .expect("tenant");
    let issued = issuer
        .admin()
        .issue_api_key(&acme, NewApiKey::new("k").scope(ApiKeyScope::Full))
        .await
        .expect("key");
    let request = CaseRequest {
        method: Method::GET,
        uri: "/ctx".into(),
        headers: vec![("x-api-key".into(), issued.secret.expose().to_owned())],
    };
    (request, issuer)
}

/// Checks the answer of a request whose store failed
/// ([`faults::FailingStore`](super::faults::FailingStore)): `503
/// store_unavailable`, and nothing of the store's error (its password,
/// host or kind) in the body.
pub fn check_store_failure_hidden(observed: &Observed) {
    assert_eq!(observed.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = String::from_utf8_lossy(&observed.body);
    assert!(
        !body.contains("hunter2") && !body.contains("redis") && !body.contains("10.1.2.3"),
        "{body}"
    );
    assert!(!body.contains(super::faults::FAILURE_TEXT));
    let problem: Value = serde_json::from_str(&body).expect("a problem body");
    assert_eq!(problem["code"], "store_unavailable");
}

/// The refusal the `POST /audit` route answers with after recording its event.
pub fn audit_route_refusal() -> TenancyError {
    TenancyError::new(ErrorKind::Conflict("widget w-1 already exists".into()))
}

/// Which configuration a case runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fixture {
    /// Credentials required; JWT realm and API keys.
    Standard,
    /// Anonymous viewers allowed; a tenant is required; only some tenants allowed.
    Anonymous,
    /// Anonymous viewers allowed; a tenant is optional.
    Optional,
}

impl Fixture {
    /// Every fixture.
    pub const ALL: [Fixture; 3] = [Fixture::Standard, Fixture::Anonymous, Fixture::Optional];

    fn config(self) -> TenancyConfig {
        let b = TenancyConfig::builder().jwt_hs256(ISSUER, SECRET);
        let b = match self {
            Fixture::Standard => b
                .realm(mapped_realm(
                    "kc",
                    KEYCLOAK_ISSUER,
                    ["org.tenant", "realm_access.roles", "preferred_username"],
                ))
                .realm(mapped_realm(
                    "namespaced",
                    NAMESPACED_ISSUER,
                    [
                        "/https:~1~1conformance.example~1tenant",
                        "/https:~1~1conformance.example~1roles",
                        "sub",
                    ],
                )),
            Fixture::Anonymous => b
                .anonymous_role(Role::Viewer)
                .allowed_tenants(["acme", "sleepy"].map(|t| TenantId::new(t).expect("valid"))),
            Fixture::Optional => b.anonymous_role(Role::Viewer).required(false),
        };
        b.build().expect("conformance config is valid")
    }
}

/// A request of the table.
#[derive(Debug, Clone)]
pub struct CaseRequest {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// What came back, as an adapter's test client saw it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// One row: a request and the answer it must get.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the row tests.
    pub name: &'static str,
    /// The request.
    pub request: CaseRequest,
    /// Expected status.
    pub status: u16,
    /// Expected problem code (refusals only).
    pub code: Option<&'static str>,
    /// Headers that must be present, with their value when it matters.
    pub headers: Vec<(&'static str, Option<String>)>,
    /// Headers that must be absent.
    pub absent: Vec<&'static str>,
    /// Expected JSON body of a success, when it matters.
    pub body: Option<Value>,
}

impl Case {
    /// Asserts `observed` is this row's answer.
    ///
    /// # Panics
    ///
    /// When it is not, naming the case.
    pub fn check(&self, observed: &Observed) {
        let name = self.name;
        let body_text = String::from_utf8_lossy(&observed.body);
        assert_eq!(
            observed.status.as_u16(),
            self.status,
            "{name}: status (body {body_text})"
        );
        for (header, value) in &self.headers {
            let got = observed.headers.get(*header);
            assert!(got.is_some(), "{name}: header {header} missing");
            if let (Some(expected), Some(got)) = (value, got) {
                assert_eq!(
                    got.to_str().unwrap_or_default(),
                    expected,
                    "{name}: header {header}"
                );
            }
        }
        for header in &self.absent {
            assert!(
                observed.headers.get(*header).is_none(),
                "{name}: header {header} must be absent"
            );
        }
        if let Some(code) = self.code {
            assert_eq!(
                observed
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some(crate::error::PROBLEM_CONTENT_TYPE),
                "{name}: problem content type"
            );
            let problem: Value = serde_json::from_slice(&observed.body)
                .unwrap_or_else(|e| panic!("{name}: problem body is not JSON ({e}): {body_text}"));
            assert_eq!(problem["code"], code, "{name}: code");
            assert_eq!(problem["status"], self.status, "{name}: problem status");
            assert_eq!(
                problem["type"],
                format!("{}{code}", crate::error::PROBLEM_TYPE_PREFIX)
            );
        }
        if let Some(expected) = &self.body {
            let got: Value = serde_json::from_slice(&observed.body)
                .unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {body_text}"));
            assert_eq!(&got, expected, "{name}: body");
        }
    }
}

/// The fixtures' engines and credentials.
#[derive(Debug)]
pub struct Suite {
    tenancies: BTreeMap<Fixture, Tenancy>,
    keys: BTreeMap<&'static str, (String, KeyId)>,
}

/// A token of the conformance realm for `role` of `tenant`, expiring in
/// `exp_in` seconds (negative: already expired); its subject is
/// `{role}@{tenant}`.
pub fn token(tenant: &str, role: &str, exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    sign(&json!({
        "sub": format!("{role}@{tenant}"),
        "tenant_id": tenant,
        "role": role,
        "iss": ISSUER,
        "iat": now,
        "exp": now + exp_in,
    }))
}

/// `claims`, signed HS256 with [`SECRET`].
fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("conformance tokens encode")
}

/// A shared HS256 realm with [`SECRET`] reading the tenant, the roles and
/// the subject at `paths`.
fn mapped_realm(name: &str, issuer: &str, paths: [&str; 3]) -> RealmConfig {
    let [tenant, roles, subject] = paths.map(|p| p.parse().expect("a valid claim path"));
    RealmConfig::hs256(name, issuer, SECRET).claims(ClaimsConfig {
        tenant,
        roles,
        subject,
    })
}

/// A token of the realm `issuer`, HS256 with [`SECRET`], with exactly the
/// claims `extra` plus `iss`, `iat` and `exp` (in 600 seconds).
pub fn token_with(issuer: &str, extra: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({ "iss": issuer, "iat": now, "exp": now + 600 });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    sign(&claims)
}

/// A token shaped as Keycloak issues it, of the [`KEYCLOAK_ISSUER`] realm:
/// `realm_roles` in `realm_access.roles`, `tenant` in `org.tenant`, the
/// subject `alice` in `preferred_username` (and an opaque `sub`).
pub fn keycloak_token(tenant: &str, realm_roles: &[&str]) -> String {
    token_with(
        KEYCLOAK_ISSUER,
        json!({
            "sub": "0b4f2a4e-0f5c-4bb6-9d0e-4f1a2b3c4d5e",
            "preferred_username": "alice",
            "typ": "Bearer",
            "azp": "tenancy-api",
            "realm_access": { "roles": realm_roles },
            "resource_access": { "account": { "roles": ["view-profile"] } },
            "org": { "tenant": tenant },
        }),
    )
}

/// Builds the three engines, their tenants and keys. Runs inside a tokio
/// runtime.
pub async fn setup() -> Suite {
    let mut tenancies = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for fixture in Fixture::ALL {
        let tenancy = Tenancy::builder(fixture.config())
            .build()
            .expect("conformance engine builds");
        for (id, status, plan) in [
            ("acme", TenantStatus::Active, "pro"),
            ("globex", TenantStatus::Active, "pro"),
            ("sleepy", TenantStatus::Suspended, "pro"),
            ("old", TenantStatus::Archived, "pro"),
            ("platform", TenantStatus::Active, "enterprise"),
            ("tiny", TenantStatus::Active, "free"),
        ] {
            let mut t = TenantRecord::new(TenantId::new(id).expect("valid"), id, plan);
            t.status = status;
            if id == "tiny" {
                t.settings.quota_overrides = QuotaOverrides {
                    events_per_month: Some(Limit::Limited(1)),
                    ..QuotaOverrides::default()
                };
            }
            tenancy.admin().create_tenant(t).await.expect("seed tenant");
        }
        if fixture == Fixture::Standard {
            for (name, tenant, scope, rps) in [
                ("full", "acme", ApiKeyScope::Full, None),
                ("readonly", "acme", ApiKeyScope::Readonly, None),
                ("ingestion", "acme", ApiKeyScope::Ingestion, None),
                ("limited", "acme", ApiKeyScope::Full, Some(1)),
                ("revoked", "acme", ApiKeyScope::Full, None),
                ("globex", "globex", ApiKeyScope::Full, None),
            ] {
                let issued = tenancy
                    .admin()
                    .issue_api_key(
                        &TenantId::new(tenant).expect("valid"),
                        NewApiKey {
                            name: name.into(),
                            scope,
                            rate_limit_rps: rps,
                            expires_at: None,
                        },
                    )
                    .await
                    .expect("issue key");
                keys.insert(
                    name,
                    (issued.secret.expose().to_owned(), issued.record.key_id),
                );
            }
            tenancy
                .admin()
                .revoke_api_key(&TenantId::new("acme").expect("valid"), &keys["revoked"].1)
                .await
                .expect("revoke");
        }
        tenancies.insert(fixture, tenancy);
    }
    Suite { tenancies, keys }
}

fn req(method: Method, uri: &str, headers: &[(&str, &str)]) -> CaseRequest {
    CaseRequest {
        method,
        uri: uri.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn ok(name: &'static str, request: CaseRequest, status: u16, body: Option<Value>) -> Case {
    Case {
        name,
        request,
        status,
        code: None,
        headers: Vec::new(),
        absent: Vec::new(),
        body,
    }
}

fn refused(name: &'static str, request: CaseRequest, status: u16, code: &'static str) -> Case {
    Case {
        name,
        request,
        status,
        code: Some(code),
        headers: Vec::new(),
        absent: Vec::new(),
        body: None,
    }
}

fn ctx(tenant: &str, role: &str, subject: &str, scope: Option<&str>, cross: bool) -> Option<Value> {
    Some(json!({
        "tenant_id": tenant, "role": role, "subject": subject, "scope": scope, "cross_tenant": cross,
    }))
}

impl Suite {
    /// The engine of `fixture`.
    pub fn tenancy(&self, fixture: Fixture) -> Tenancy {
        self.tenancies[&fixture].clone()
    }

    /// Checks what the `/audit` case left in the audit log, once the table
    /// ran: the handler's audit handle recorded `widget.create` with the
    /// request's tenant and actor although the handler refused the request,
    /// and the refused write itself was audited with its outcome.
    pub async fn check_audit_handle(&self) {
        let tenancy = self.tenancy(Fixture::Standard);
        tenancy.flush().await;
        let acme = TenantId::new("acme").expect("tenant id");
        let query = tenancy.audit_query().expect("an audit query");
        let events = query
            .query(&acme, &AuditFilter::default().action("widget.create"))
            .await
            .expect("audit query");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor, "admin@acme");
        assert_eq!(events[0].tenant_id, acme);
        assert_eq!(events[0].resource.as_deref(), Some("w-1"));
        let refused = query
            .query(&acme, &AuditFilter::default().action("http.post"))
            .await
            .expect("audit query");
        assert!(
            refused
                .iter()
                .any(|e| e.resource.as_deref() == Some("/audit") && e.outcome == 409),
            "the refused write is audited with its outcome"
        );
    }

    /// Writes every buffered audit event and stops the engines.
    pub async fn shutdown(&self) {
        for t in self.tenancies.values() {
            t.shutdown().await;
        }
    }

    /// The cases of `fixture`, in the order they must run.
    pub fn cases(&self, fixture: Fixture) -> Vec<Case> {
        match fixture {
            Fixture::Standard => self.standard_cases(),
            Fixture::Anonymous => anonymous_cases(),
            Fixture::Optional => optional_cases(),
        }
    }

    fn standard_cases(&self) -> Vec<Case> {
        use Method as M;
        let bearer = |tenant: &str, role: &str| format!("Bearer {}", token(tenant, role, 600));
        let key = |name: &str| self.keys[name].0.clone();
        let acme_viewer = bearer("acme", "viewer");
        let acme_admin = bearer("acme", "admin");
        let expired = format!("Bearer {}", token("acme", "admin", -3600));
        let a = |h: &str| ("authorization", h.to_owned());
        let k = |name: &str| ("x-api-key", key(name));
        let r = |method: M, uri: &str, headers: Vec<(&str, String)>| CaseRequest {
            method,
            uri: uri.to_owned(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        };
        let rate_headers = || -> Vec<(&'static str, Option<String>)> {
            vec![
                ("ratelimit-limit", Some("500".into())),
                ("ratelimit-remaining", None),
                ("ratelimit-reset", None),
            ]
        };
        let mut cases = vec![
            Case {
                headers: rate_headers(),
                ..ok(
                    "jwt viewer reads its context",
                    r(M::GET, "/ctx", vec![a(&acme_viewer)]),
                    200,
                    ctx("acme", "viewer", "viewer@acme", None, false),
                )
            },
            ok(
                "full api key acts as admin",
                r(M::GET, "/ctx", vec![k("full")]),
                200,
                None,
            ),
            Case {
                headers: vec![("www-authenticate", Some("Bearer".into()))],
                ..refused(
                    "no credential",
                    r(M::GET, "/ctx", vec![]),
                    401,
                    "unauthenticated",
                )
            },
            Case {
                headers: vec![(
                    "www-authenticate",
                    Some("Bearer error=\"invalid_token\"".into()),
                )],
                ..refused(
                    "garbage bearer token",
                    r(M::GET, "/ctx", vec![a("Bearer not.a.jwt")]),
                    401,
                    "invalid_token",
                )
            },
            refused(
                "non-bearer authorization",
                r(M::GET, "/ctx", vec![a("Basic dXNlcjpwYXNz")]),
                401,
                "invalid_token",
            ),
            Case {
                headers: vec![("www-authenticate", None)],
                ..refused(
                    "expired token",
                    r(M::GET, "/ctx", vec![a(&expired)]),
                    401,
                    "token_expired",
                )
            },
            refused(
                "malformed api key",
                r(M::GET, "/ctx", vec![("x-api-key", "tnk_short".into())]),
                401,
                "invalid_api_key",
            ),
            refused(
                "revoked api key",
                r(M::GET, "/ctx", vec![k("revoked")]),
                401,
                "invalid_api_key",
            ),
            refused(
                "unknown tenant",
                r(M::GET, "/ctx", vec![a(&bearer("nobody", "admin"))]),
                403,
                "unknown_tenant",
            ),
            refused(
                "bad tenant header",
                r(
                    M::GET,
                    "/ctx",
                    vec![a(&acme_viewer), ("x-tenant-id", "Bad Id".into())],
                ),
                400,
                "invalid_tenant_id",
            ),
            refused(
                "header names another tenant",
                r(
                    M::GET,
                    "/ctx",
                    vec![a(&acme_admin), ("x-tenant-id", "globex".into())],
                ),
                403,
                "tenant_mismatch",
            ),
            refused(
                "query names another tenant",
                r(M::GET, "/ctx?tenant_id=globex", vec![k("full")]),
                403,
                "tenant_mismatch",
            ),
            ok(
                "mapped claims: Keycloak realm roles, the highest known wins",
                r(
                    M::GET,
                    "/ctx",
                    vec![a(&format!(
                        "Bearer {}",
                        keycloak_token("acme", &["offline_access", "viewer", "tenant-admin"])
                    ))],
                ),
                200,
                ctx("acme", "admin", "alice", None, false),
            ),
            refused(
                "mapped claims: no known role",
                r(
                    M::GET,
                    "/ctx",
                    vec![a(&format!(
                        "Bearer {}",
                        keycloak_token("acme", &["offline_access", "uma_authorization"])
                    ))],
                ),
                401,
                "invalid_token",
            ),
            refused(
                "mapped claims: a role above the realm's ceiling",
                r(
                    M::GET,
                    "/ctx",
                    vec![a(&format!(
                        "Bearer {}",
                        keycloak_token("acme", &["viewer", "cpi-admin"])
                    ))],
                ),
                401,
                "invalid_token",
            ),
            refused(
                "mapped claims: the nested tenant against another named one",
                r(
                    M::GET,
                    "/ctx",
                    vec![
                        a(&format!("Bearer {}", keycloak_token("acme", &["viewer"]))),
                        ("x-tenant-id", "globex".into()),
                    ],
                ),
                403,
                "tenant_mismatch",
            ),
            ok(
                "mapped claims: namespaced tenant and roles through JSON Pointers",
                r(
                    M::GET,
                    "/ctx",
                    vec![a(&format!(
                        "Bearer {}",
                        token_with(
                            NAMESPACED_ISSUER,
                            json!({
                                "sub": "auth0|42",
                                "https://conformance.example/tenant": "globex",
                                "https://conformance.example/roles": ["devops"],
                            })
                        )
                    ))],
                ),
                200,
                ctx("globex", "operator", "auth0|42", None, false),
            ),
            ok(
                "the query parameter is tenant_id, not tenant",
                r(M::GET, "/maybe?tenant=globex", vec![k("full")]),
                200,
                Some(json!({"tenant": "acme"})),
            ),
            ok(
                "super_admin selects another tenant",
                r(
                    M::GET,
                    "/ctx",
                    vec![
                        a(&bearer("platform", "super_admin")),
                        ("x-tenant-id", "acme".into()),
                    ],
                ),
                200,
                ctx("acme", "super_admin", "super_admin@platform", None, true),
            ),
            refused(
                "write to a suspended tenant",
                r(M::POST, "/write", vec![a(&bearer("sleepy", "admin"))]),
                403,
                "tenant_suspended",
            ),
            ok(
                "read of a suspended tenant",
                r(M::GET, "/ctx", vec![a(&bearer("sleepy", "admin"))]),
                200,
                ctx("sleepy", "admin", "admin@sleepy", None, false),
            ),
            refused(
                "read of an archived tenant",
                r(M::GET, "/ctx", vec![a(&bearer("old", "admin"))]),
                403,
                "tenant_archived",
            ),
            refused(
                "viewer on an admin extractor",
                r(M::GET, "/admin", vec![a(&acme_viewer)]),
                403,
                "insufficient_role",
            ),
            refused(
                "viewer on an admin route",
                r(M::GET, "/admin-layer", vec![a(&acme_viewer)]),
                403,
                "insufficient_role",
            ),
            ok(
                "admin on an admin extractor",
                r(M::GET, "/admin", vec![a(&acme_admin)]),
                200,
                ctx("acme", "admin", "admin@acme", None, false),
            ),
            ok(
                "admin on an admin route",
                r(M::GET, "/admin-layer", vec![a(&acme_admin)]),
                200,
                ctx("acme", "admin", "admin@acme", None, false),
            ),
            ok(
                "role alias maps",
                r(M::GET, "/admin", vec![a(&bearer("acme", "tenant-admin"))]),
                200,
                ctx("acme", "admin", "tenant-admin@acme", None, false),
            ),
            refused(
                "readonly key writes",
                r(M::POST, "/write", vec![k("readonly")]),
                403,
                "scope_denied",
            ),
            ok(
                "readonly key reads",
                r(M::GET, "/readonly", vec![k("readonly")]),
                200,
                None,
            ),
            refused(
                "ingestion key on the readonly guard",
                r(M::GET, "/readonly", vec![k("ingestion")]),
                403,
                "scope_denied",
            ),
            ok(
                "ingestion key ingests",
                r(M::POST, "/api/v1/telemetry", vec![k("ingestion")]),
                202,
                Some(json!({"accepted": 1})),
            ),
            refused(
                "ingestion key reads",
                r(M::GET, "/ctx", vec![k("ingestion")]),
                403,
                "scope_denied",
            ),
            refused(
                "key of another tenant is not found",
                r(
                    M::DELETE,
                    &format!("/keys/{}", self.keys["globex"].1),
                    vec![a(&acme_admin)],
                ),
                404,
                "not_found",
            ),
            ok(
                "own key is revoked",
                r(
                    M::DELETE,
                    &format!("/keys/{}", self.keys["readonly"].1),
                    vec![a(&acme_admin)],
                ),
                204,
                None,
            ),
            refused(
                "revoked readonly key",
                r(M::GET, "/readonly", vec![k("readonly")]),
                401,
                "invalid_api_key",
            ),
            Case {
                headers: vec![
                    ("ratelimit-limit", Some("1".into())),
                    ("ratelimit-remaining", Some("0".into())),
                ],
                ..ok(
                    "limited key, first request",
                    r(M::GET, "/ctx", vec![k("limited")]),
                    200,
                    None,
                )
            },
            Case {
                headers: vec![
                    ("retry-after", None),
                    ("ratelimit-limit", Some("1".into())),
                    ("ratelimit-remaining", Some("0".into())),
                ],
                ..refused(
                    "limited key, second request",
                    r(M::GET, "/ctx", vec![k("limited")]),
                    429,
                    "rate_limited",
                )
            },
            ok(
                "tiny tenant, first event",
                r(
                    M::POST,
                    "/api/v1/telemetry",
                    vec![a(&bearer("tiny", "operator"))],
                ),
                202,
                None,
            ),
            Case {
                headers: vec![("retry-after", None)],
                ..refused(
                    "tiny tenant, over its monthly events",
                    r(
                        M::POST,
                        "/api/v1/telemetry",
                        vec![a(&bearer("tiny", "operator"))],
                    ),
                    429,
                    "quota_exceeded",
                )
            },
            refused(
                "audit handle, refused request",
                r(M::POST, "/audit", vec![a(&acme_admin)]),
                409,
                "conflict",
            ),
            Case {
                headers: vec![
                    ("ratelimit-limit", Some("1".into())),
                    ("ratelimit-remaining", Some("0".into())),
                    ("ratelimit-reset", None),
                ],
                ..ok(
                    "a route limit reports its tighter bucket",
                    r(M::GET, "/limited", vec![a(&acme_admin)]),
                    200,
                    ctx("acme", "admin", "admin@acme", None, false),
                )
            },
            Case {
                headers: vec![("retry-after", None), ("ratelimit-limit", Some("1".into()))],
                ..refused(
                    "a route limit refuses past its rate",
                    r(M::GET, "/limited", vec![a(&acme_admin)]),
                    429,
                    "rate_limited",
                )
            },
            Case {
                headers: vec![("ratelimit-limit", Some("1".into()))],
                ..ok(
                    "a route limit counts per tenant",
                    r(M::GET, "/limited", vec![a(&bearer("globex", "admin"))]),
                    200,
                    ctx("globex", "admin", "admin@globex", None, false),
                )
            },
            Case {
                headers: vec![("x-request-id", Some("req-42.a:b_c".into()))],
                ..ok(
                    "a well-formed request id comes back",
                    r(
                        M::GET,
                        "/ctx",
                        vec![a(&acme_admin), ("x-request-id", "req-42.a:b_c".into())],
                    ),
                    200,
                    ctx("acme", "admin", "admin@acme", None, false),
                )
            },
            Case {
                headers: vec![("x-request-id", Some("r-401".into()))],
                ..refused(
                    "a refusal carries its request id",
                    r(M::GET, "/ctx", vec![("x-request-id", "r-401".into())]),
                    401,
                    "unauthenticated",
                )
            },
            Case {
                headers: vec![("x-request-id", None)],
                ..ok(
                    "a malformed request id is replaced",
                    r(
                        M::GET,
                        "/ctx",
                        vec![a(&acme_admin), ("x-request-id", "no spaces allowed".into())],
                    ),
                    200,
                    ctx("acme", "admin", "admin@acme", None, false),
                )
            },
            Case {
                absent: vec!["ratelimit-limit", "x-request-id"],
                ..ok(
                    "excluded route needs nothing",
                    r(
                        M::GET,
                        "/healthz",
                        vec![("authorization", "Bearer junk".into())],
                    ),
                    200,
                    None,
                )
            },
        ];
        for case in &mut cases {
            if case.status == 200
                && case.request.uri != "/healthz"
                && case.headers.is_empty()
                && case
                    .request
                    .headers
                    .iter()
                    .any(|(k, _)| k == "authorization")
            {
                case.headers = rate_headers();
            }
        }
        cases
    }
}

fn anonymous_cases() -> Vec<Case> {
    use Method as M;
    vec![
        Case {
            body: None,
            ..refused(
                "anonymous without a tenant",
                req(M::GET, "/ctx", &[]),
                400,
                "tenant_required",
            )
        },
        ok(
            "anonymous with a tenant header",
            req(M::GET, "/ctx", &[("x-tenant-id", "acme")]),
            200,
            ctx("acme", "viewer", "anonymous", None, false),
        ),
        ok(
            "anonymous with a tenant query",
            req(M::GET, "/ctx?tenant_id=acme", &[]),
            200,
            ctx("acme", "viewer", "anonymous", None, false),
        ),
        refused(
            "anonymous with a bad tenant",
            req(M::GET, "/ctx", &[("x-tenant-id", "acme}")]),
            400,
            "invalid_tenant_id",
        ),
        refused(
            "anonymous with a tenant not allowed",
            req(M::GET, "/ctx", &[("x-tenant-id", "globex")]),
            403,
            "tenant_not_allowed",
        ),
        refused(
            "anonymous naming two tenants",
            req(M::GET, "/ctx?tenant_id=sleepy", &[("x-tenant-id", "acme")]),
            403,
            "tenant_mismatch",
        ),
        refused(
            "anonymous viewer on an admin route",
            req(M::GET, "/admin-layer", &[("x-tenant-id", "acme")]),
            403,
            "insufficient_role",
        ),
    ]
}

fn optional_cases() -> Vec<Case> {
    use Method as M;
    vec![
        ok(
            "optional extraction without a tenant",
            req(M::GET, "/maybe", &[]),
            200,
            Some(json!({"tenant": null})),
        ),
        ok(
            "optional extraction with a tenant",
            req(M::GET, "/maybe", &[("x-tenant-id", "acme")]),
            200,
            Some(json!({"tenant": "acme"})),
        ),
        refused(
            "optional extraction with a bad tenant stays an error",
            req(M::GET, "/maybe", &[("x-tenant-id", "ACME")]),
            400,
            "invalid_tenant_id",
        ),
        refused(
            "required extraction without a tenant",
            req(M::GET, "/ctx", &[]),
            400,
            "tenant_required",
        ),
    ]
}
