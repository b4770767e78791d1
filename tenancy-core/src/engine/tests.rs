//! The pipeline through `admit`, with real request heads: every refusal of
//! the errors table, the gates, limits, quotas, audit and metering.

use proptest::prelude::*;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;
use crate::admin::{CountQuota, IssuedApiKey, NewApiKey};
use crate::audit::{ActorKind, AuditFilter};
use crate::context::AuthMethod;
use crate::credential::{ApiKeyRecord, ApiKeySecret, KeyId, new_key_id};
use crate::error::ApiKeyRejection;
use crate::plan::Limit;
use crate::plan::QuotaOverrides;
use crate::rbac::{ApiKeyScope, Role};
use crate::store::StoreError;
use crate::store::memory::MemoryApiKeyStore;
use crate::tenant::{TenantId, TenantRecord, TenantStatus};
use crate::testkit::faults::FailingStore;

const SECRET: &str = "engine-test-secret-0123456789abcdef";
const ISSUER: &str = "tenancy-dev";

fn token(tenant: &str, role: &str, exp_in: i64) -> String {
    let now = Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": format!("user-of-{tenant}"),
        "tenant_id": tenant,
        "role": role,
        "iss": ISSUER,
        "iat": now,
        "exp": now + exp_in,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn bearer(tenant: &str, role: &str) -> (&'static str, String) {
    (
        "authorization",
        format!("Bearer {}", token(tenant, role, 600)),
    )
}

fn head(method: Method, uri: &str, headers: &[(&str, String)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(()).unwrap().into_parts().0
}

fn get(uri: &str, headers: &[(&str, String)]) -> Parts {
    head(Method::GET, uri, headers)
}

fn post(uri: &str, headers: &[(&str, String)]) -> Parts {
    head(Method::POST, uri, headers)
}

fn base_config() -> crate::config::TenancyConfigBuilder {
    TenancyConfig::builder().jwt_hs256(ISSUER, SECRET)
}

async fn tenancy_with(config: TenancyConfig) -> Tenancy {
    let tenancy = Tenancy::builder(config).build().unwrap();
    seed(&tenancy).await;
    tenancy
}

async fn seed(tenancy: &Tenancy) {
    for (id, status, plan) in [
        ("acme", TenantStatus::Active, "pro"),
        ("globex", TenantStatus::Active, "pro"),
        ("sleepy", TenantStatus::Suspended, "pro"),
        ("old", TenantStatus::Archived, "pro"),
        ("platform", TenantStatus::Active, "enterprise"),
        ("tiny", TenantStatus::Active, "free"),
    ] {
        let mut t = TenantRecord::new(TenantId::new(id).unwrap(), id, plan);
        t.status = status;
        if id == "tiny" {
            t.settings.quota_overrides = QuotaOverrides {
                events_per_month: Some(Limit::Limited(5)),
                rps: Some(3),
                ..QuotaOverrides::default()
            };
        }
        tenancy.admin().create_tenant(t).await.unwrap();
    }
}

async fn tenancy() -> Tenancy {
    tenancy_with(base_config().build().unwrap()).await
}

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

async fn key(tenancy: &Tenancy, tenant: &str, scope: ApiKeyScope, rps: Option<u32>) -> String {
    let issued = tenancy
        .admin()
        .issue_api_key(
            &tid(tenant),
            NewApiKey {
                name: "test".into(),
                scope,
                rate_limit_rps: rps,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    issued.secret.expose().to_owned()
}

/// The peer's address, as these tests attach it to a request.
#[derive(Clone, Copy)]
struct PeerAddr(IpAddr);

/// Admits `parts` as the adapters do: its head with the [`PeerAddr`] the
/// test attached as the client's address, then the [`RoutePolicy`] the test
/// attached, as a route layer applies it.
trait AdmitParts {
    async fn admit_parts(&self, parts: &Parts) -> Result<Admission, TenancyError>;
}

impl AdmitParts for Tenancy {
    async fn admit_parts(&self, parts: &Parts) -> Result<Admission, TenancyError> {
        let head = RequestHead::from(parts)
            .with_client_addr(parts.extensions.get::<PeerAddr>().map(|a| a.0));
        let mut admission = self.admit(&head).await?;
        if let (Some(policy), Some(ctx)) =
            (parts.extensions.get::<RoutePolicy>(), admission.context())
        {
            let ctx = ctx.clone();
            match self.check_route(&ctx, &head, policy).await {
                Ok(status) => admission.apply(RouteVerdict::Allowed(status)),
                Err(err) => {
                    admission.apply(RouteVerdict::Refused);
                    admission.finish(err.status(), |_, _| {});
                    return Err(err);
                }
            }
        }
        Ok(admission)
    }
}

async fn refusal(tenancy: &Tenancy, parts: Parts) -> TenancyError {
    tenancy
        .admit_parts(&parts)
        .await
        .expect_err("must be refused")
}

/// The context of an admitted request, answered 200.
async fn admitted(tenancy: &Tenancy, parts: Parts) -> TenantContext {
    let admission = tenancy.admit_parts(&parts).await.expect("must be admitted");
    let ctx = admission.context().expect("has a tenant").clone();
    admission.finish(StatusCode::OK, |_, _| {});
    ctx
}

#[tokio::test]
async fn jwt_and_api_key_callers_are_admitted() {
    let t = tenancy().await;
    let ctx = admitted(&t, get("/x", &[bearer("acme", "operator")])).await;
    assert_eq!(ctx.tenant_id().as_str(), "acme");
    assert_eq!(ctx.role(), Role::Operator);
    assert_eq!(ctx.principal().subject.as_ref(), "user-of-acme");
    assert!(matches!(ctx.auth_method(), AuthMethod::Jwt { .. }));

    let k = key(&t, "globex", ApiKeyScope::Full, None).await;
    let ctx = admitted(&t, post("/x", &[("x-api-key", k)])).await;
    assert_eq!(ctx.tenant_id().as_str(), "globex");
    assert_eq!(ctx.role(), Role::Admin, "a full key acts as admin");
    assert_eq!(ctx.scope(), Some(ApiKeyScope::Full));

    let ctx = admitted(&t, get("/x", &[bearer("acme", "tenant-admin")])).await;
    assert_eq!(ctx.role(), Role::Admin, "role aliases map");
    t.shutdown().await;
}

#[tokio::test]
async fn tenant_required_and_invalid_tenant_id() {
    let t = tenancy_with(base_config().anonymous_role(Role::Viewer).build().unwrap()).await;
    let err = refusal(&t, get("/x", &[])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (400, "tenant_required")
    );
    assert!(err.detail().contains("X-Tenant-ID"));
    let err = refusal(&t, get("/x", &[("x-tenant-id", "Bad Id".into())])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (400, "invalid_tenant_id")
    );
    let err = refusal(&t, get("/x?tenant_id=a:b", &[])).await;
    assert_eq!(err.code(), "invalid_tenant_id");
    let ctx = admitted(&t, get("/x", &[("x-tenant-id", "acme".into())])).await;
    assert_eq!(ctx.role(), Role::Viewer);
    assert_eq!(ctx.principal().kind, ActorKind::Anonymous);
    t.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_and_bad_credentials() {
    let t = tenancy().await;
    let err = refusal(&t, get("/x", &[("x-tenant-id", "acme".into())])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (401, "unauthenticated")
    );
    assert_eq!(err.headers()["www-authenticate"], "Bearer");

    for bad in [
        "Bearer nope",
        "Basic dXNlcjpwYXNz",
        "Bearer a.b.c",
        "Bearer ",
    ] {
        let err = refusal(&t, get("/x", &[("authorization", bad.into())])).await;
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (401, "invalid_token"),
            "{bad}"
        );
    }
    let expired = format!("Bearer {}", token("acme", "admin", -3600));
    let err = refusal(&t, get("/x", &[("authorization", expired)])).await;
    assert_eq!((err.status().as_u16(), err.code()), (401, "token_expired"));

    let err = refusal(&t, get("/x", &[("x-api-key", "tnk_garbage".into())])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (401, "invalid_api_key")
    );
    // A well-formed key nobody issued: one digest, one lookup, unknown.
    let other = Tenancy::builder(base_config().build().unwrap())
        .build()
        .unwrap();
    seed(&other).await;
    let foreign = key(&other, "acme", ApiKeyScope::Full, None).await;
    let err = refusal(&t, get("/x", &[("x-api-key", foreign)])).await;
    assert_eq!(err.code(), "invalid_api_key");
    assert!(err.detail().contains("not valid"));
    // A bad credential never falls through to anonymous.
    let anon = tenancy_with(base_config().anonymous_role(Role::Viewer).build().unwrap()).await;
    let err = refusal(
        &anon,
        get(
            "/x",
            &[
                ("x-tenant-id", "acme".into()),
                ("authorization", "Bearer x".into()),
            ],
        ),
    )
    .await;
    assert_eq!(err.code(), "invalid_token");
    for x in [t, other, anon] {
        x.shutdown().await;
    }
}

#[tokio::test]
async fn revoked_expired_and_rotated_keys() {
    let t = tenancy().await;
    let issued = t
        .admin()
        .issue_api_key(
            &tid("acme"),
            NewApiKey {
                name: "ci".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let secret = issued.secret.expose().to_owned();
    admitted(&t, get("/x", &[("x-api-key", secret.clone())])).await;

    // Revocation by another tenant is not found and changes nothing.
    let err = t
        .admin()
        .revoke_api_key(&tid("globex"), &issued.record.key_id)
        .await
        .unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (404, "not_found"));
    admitted(&t, get("/x", &[("x-api-key", secret.clone())])).await;

    t.admin()
        .revoke_api_key(&tid("acme"), &issued.record.key_id)
        .await
        .unwrap();
    let err = refusal(&t, get("/x", &[("x-api-key", secret)])).await;
    assert_eq!(err.code(), "invalid_api_key");
    assert!(matches!(
        err.kind(),
        ErrorKind::InvalidApiKey(ApiKeyRejection::Revoked)
    ));

    let past = t
        .admin()
        .issue_api_key(
            &tid("acme"),
            NewApiKey {
                name: "old".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: None,
                expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
            },
        )
        .await
        .unwrap();
    let err = refusal(
        &t,
        get("/x", &[("x-api-key", past.secret.expose().to_owned())]),
    )
    .await;
    assert!(matches!(
        err.kind(),
        ErrorKind::InvalidApiKey(ApiKeyRejection::Expired)
    ));

    // Rotation with a grace period: both work; without: the old one stops.
    let first = t
        .admin()
        .issue_api_key(
            &tid("acme"),
            NewApiKey {
                name: "rot".into(),
                scope: ApiKeyScope::Readonly,
                rate_limit_rps: Some(9),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let second = t
        .admin()
        .rotate_api_key(
            &tid("acme"),
            &first.record.key_id,
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(second.record.scope, ApiKeyScope::Readonly);
    assert_eq!(second.record.rate_limit_rps, Some(9));
    admitted(
        &t,
        get("/x", &[("x-api-key", first.secret.expose().to_owned())]),
    )
    .await;
    admitted(
        &t,
        get("/x", &[("x-api-key", second.secret.expose().to_owned())]),
    )
    .await;
    let third = t
        .admin()
        .rotate_api_key(&tid("acme"), &second.record.key_id, None)
        .await
        .unwrap();
    refusal(
        &t,
        get("/x", &[("x-api-key", second.secret.expose().to_owned())]),
    )
    .await;
    admitted(
        &t,
        get("/x", &[("x-api-key", third.secret.expose().to_owned())]),
    )
    .await;
    let err = t
        .admin()
        .rotate_api_key(&tid("globex"), &third.record.key_id, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
    t.shutdown().await;
}

#[tokio::test]
async fn tenant_gates() {
    let t = tenancy_with(
        base_config()
            .allowed_tenants([tid("acme"), tid("sleepy"), tid("old"), tid("platform")])
            .build()
            .unwrap(),
    )
    .await;
    let err = refusal(&t, get("/x", &[bearer("globex", "admin")])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (403, "tenant_not_allowed")
    );
    let err = refusal(&t, get("/x", &[bearer("nobody", "admin")])).await;
    assert_eq!(
        err.code(),
        "tenant_not_allowed",
        "the allow list is checked before the store"
    );
    let err = refusal(
        &t,
        get(
            "/x",
            &[bearer("acme", "admin"), ("x-tenant-id", "platform".into())],
        ),
    )
    .await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (403, "tenant_mismatch")
    );
    let err = refusal(&t, post("/x", &[bearer("sleepy", "admin")])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (403, "tenant_suspended")
    );
    admitted(&t, get("/x", &[bearer("sleepy", "admin")])).await;
    for parts in [
        get("/x", &[bearer("old", "admin")]),
        post("/x", &[bearer("old", "admin")]),
    ] {
        let err = refusal(&t, parts).await;
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (403, "tenant_archived")
        );
    }
    t.shutdown().await;

    let t = tenancy().await;
    let err = refusal(&t, get("/x", &[bearer("nobody", "admin")])).await;
    assert_eq!((err.status().as_u16(), err.code()), (403, "unknown_tenant"));
    // A super_admin selects another tenant, marked cross-tenant and audited.
    let ctx = admitted(
        &t,
        get(
            "/x",
            &[
                bearer("platform", "super_admin"),
                ("x-tenant-id", "acme".into()),
            ],
        ),
    )
    .await;
    assert_eq!(ctx.tenant_id().as_str(), "acme");
    assert!(ctx.is_cross_tenant());
    t.flush().await;
    let events = t
        .audit_query()
        .unwrap()
        .query(
            &tid("acme"),
            &AuditFilter::default().action("tenant.cross_access"),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "user-of-platform");
    t.shutdown().await;
}

#[tokio::test]
async fn role_and_scope_gates() {
    let t = tenancy().await;
    let mut parts = post("/api/v1/apikeys", &[bearer("acme", "operator")]);
    parts.extensions.insert(RoutePolicy::min_role(Role::Admin));
    let err = refusal(&t, parts).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (403, "insufficient_role")
    );
    assert!(err.detail().contains("admin"));
    let mut parts = post("/api/v1/apikeys", &[bearer("acme", "admin")]);
    parts.extensions.insert(RoutePolicy::min_role(Role::Admin));
    admitted(&t, parts).await;

    let readonly = key(&t, "acme", ApiKeyScope::Readonly, None).await;
    admitted(
        &t,
        get("/api/v1/metrics/query", &[("x-api-key", readonly.clone())]),
    )
    .await;
    let err = refusal(&t, post("/api/v1/telemetry", &[("x-api-key", readonly)])).await;
    assert_eq!((err.status().as_u16(), err.code()), (403, "scope_denied"));

    let ingest = key(&t, "acme", ApiKeyScope::Ingestion, None).await;
    let ctx = admitted(
        &t,
        post("/api/v1/telemetry", &[("x-api-key", ingest.clone())]),
    )
    .await;
    assert_eq!(ctx.role(), Role::Operator);
    let err = refusal(
        &t,
        get("/api/v1/metrics/query", &[("x-api-key", ingest.clone())]),
    )
    .await;
    assert_eq!(err.code(), "scope_denied");
    let err = refusal(
        &t,
        post("/api/v1/runbooks/r1/trigger", &[("x-api-key", ingest)]),
    )
    .await;
    assert_eq!(err.code(), "scope_denied");

    let full = key(&t, "acme", ApiKeyScope::Full, None).await;
    let mut parts = post("/api/v1/tenants", &[("x-api-key", full.clone())]);
    parts
        .extensions
        .insert(RoutePolicy::min_role(Role::SuperAdmin));
    assert_eq!(
        refusal(&t, parts).await.code(),
        "insufficient_role",
        "full keys never reach super_admin"
    );
    let err = refusal(
        &t,
        get(
            "/x",
            &[("x-api-key", full), ("x-tenant-id", "globex".into())],
        ),
    )
    .await;
    assert_eq!(err.code(), "tenant_mismatch", "keys never cross tenants");
    t.shutdown().await;
}

#[tokio::test]
async fn rate_limits_per_key_and_per_tenant() {
    let t = tenancy().await;
    let k = key(&t, "acme", ApiKeyScope::Full, Some(2)).await;
    let first = t
        .admit_parts(&get("/x", &[("x-api-key", k.clone())]))
        .await
        .unwrap();
    let mut headers = HeaderMap::new();
    first.finish(StatusCode::OK, |name, value| {
        headers.insert(name.clone(), value);
    });
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "1");
    assert!(headers.contains_key("ratelimit-reset"));
    t.admit_parts(&get("/x", &[("x-api-key", k.clone())]))
        .await
        .unwrap();
    let err = refusal(&t, get("/x", &[("x-api-key", k)])).await;
    assert_eq!((err.status().as_u16(), err.code()), (429, "rate_limited"));
    let h = err.headers();
    assert!(h.contains_key("retry-after"));
    assert_eq!(h["ratelimit-remaining"], "0");

    // The tenant's RPS (3 for tiny) is shared by all its keys and users.
    let k1 = key(&t, "tiny", ApiKeyScope::Full, None).await;
    let k2 = key(&t, "tiny", ApiKeyScope::Full, None).await;
    let mut allowed = 0;
    for i in 0..6 {
        let parts = match i % 3 {
            0 => get("/x", &[("x-api-key", k1.clone())]),
            1 => get("/x", &[("x-api-key", k2.clone())]),
            _ => get("/x", &[bearer("tiny", "viewer")]),
        };
        if t.admit_parts(&parts).await.is_ok() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3);
    // Another tenant is untouched.
    admitted(&t, get("/x", &[bearer("acme", "viewer")])).await;
    t.shutdown().await;
}

#[tokio::test]
async fn quotas_charge_calendar_budgets_and_counts() {
    let t = tenancy().await;
    let ctx = admitted(&t, post("/api/v1/telemetry", &[bearer("tiny", "operator")])).await;
    assert!(t.charge(&ctx, "events", 3).await.unwrap().is_charged());
    assert!(t.charge(&ctx, "events", 2).await.unwrap().is_charged());
    let err = t.charge(&ctx, "events", 1).await.unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (429, "quota_exceeded"));
    let retry: u64 = err.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let window = crate::plan::Period::Month.window(Utc::now());
    let until_reset = (window.end - Utc::now()).num_seconds() as u64;
    assert!(
        retry >= until_reset && retry <= until_reset + 2,
        "{retry} vs {until_reset}"
    );
    assert_eq!(
        t.charge(&ctx, "tokens", 1).await.unwrap_err().code(),
        "internal_error"
    );

    let quotas = t.admin().quotas_of(ctx.tenant());
    t.admin()
        .check_count_quota(&quotas, CountQuota::ApiKeys, 1)
        .unwrap();
    let err = t
        .admin()
        .check_count_quota(&quotas, CountQuota::ApiKeys, 2)
        .unwrap_err();
    assert_eq!(err.code(), "quota_exceeded");
    assert!(!err.headers().contains_key("retry-after"));
    t.shutdown().await;
}

/// A caller chooses its path's length: an audited write keeps a bounded
/// prefix of it, and its event marks the resource as cut.
#[tokio::test]
async fn a_long_written_path_is_audited_cut() {
    let t = tenancy().await;
    let long_path = format!("/{}", "a".repeat(32 * 1024));
    let admission = t
        .admit_parts(&post(&long_path, &[bearer("acme", "operator")]))
        .await
        .unwrap();
    admission.finish(StatusCode::OK, |_, _| {});
    t.flush().await;
    let events = t
        .audit_query()
        .unwrap()
        .query(&tid("acme"), &AuditFilter::default().action("http.post"))
        .await
        .unwrap();
    let resource = events[0].resource.as_deref().unwrap();
    assert!(resource.len() <= crate::audit::MAX_RESOURCE_BYTES);
    assert!(resource.len() >= crate::audit::MAX_RESOURCE_BYTES - 4);
    let kept = resource.strip_suffix('…').unwrap();
    assert!(long_path.starts_with(kept));
    t.shutdown().await;
}

#[tokio::test]
async fn completion_audits_writes_and_meters_requests() {
    let t = tenancy().await;
    let mut parts = post("/api/v1/runbooks/r1/trigger", &[bearer("acme", "operator")]);
    parts
        .extensions
        .insert(PeerAddr("192.0.2.9".parse().unwrap()));
    parts
        .headers
        .insert("x-request-id", HeaderValue::from_static("req-42"));
    let admission = t.admit_parts(&parts).await.unwrap();
    assert_eq!(admission.request_id(), "req-42");
    admission.finish(StatusCode::ACCEPTED, |_, _| {});
    let read = t
        .admit_parts(&get("/api/v1/metrics/query", &[bearer("acme", "viewer")]))
        .await
        .unwrap();
    read.finish(StatusCode::OK, |_, _| {});
    // A refused authentication never reaches the tenant it named: it goes
    // to the platform security log.
    refusal(
        &t,
        get(
            "/x",
            &[
                ("x-tenant-id", "acme".into()),
                ("authorization", "Bearer junk".into()),
            ],
        ),
    )
    .await;
    t.flush().await;

    let events = t
        .audit_query()
        .unwrap()
        .query(&tid("acme"), &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        1,
        "the write only; reads and unverified refusals are not audited"
    );
    assert!(
        t.security_log()
            .iter()
            .any(|e| e.reason == "invalid_token" && e.count == 1)
    );
    let write = &events[0];
    assert_eq!(write.action, "http.post");
    assert_eq!(write.actor, "user-of-acme");
    assert_eq!(
        write.resource.as_deref(),
        Some("/api/v1/runbooks/r1/trigger")
    );
    assert_eq!(write.outcome, 202);
    assert_eq!(write.request_id.as_deref(), Some("req-42"));
    assert_eq!(write.client_addr, Some("192.0.2.9".parse().unwrap()));
    assert!(
        t.audit_query()
            .unwrap()
            .query(&tid("globex"), &AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    let hour = crate::plan::Period::Hour.window(Utc::now());
    let usage = t
        .usage_meter()
        .usage(&tid("acme"), hour.start, hour.end)
        .await
        .unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].event_type.as_str(), usage[0].count),
        (REQUESTS_EVENT, 2)
    );
    t.shutdown().await;
}

#[tokio::test]
async fn an_admission_dropped_unfinished_is_recorded_as_closed_by_the_client() {
    let t = tenancy().await;
    let admission = t
        .admit_parts(&post("/api/v1/things", &[bearer("acme", "operator")]))
        .await
        .unwrap();
    drop(admission);
    t.flush().await;
    let events = t
        .audit_query()
        .unwrap()
        .query(&tid("acme"), &AuditFilter::default())
        .await
        .unwrap();
    let write = events
        .iter()
        .find(|e| e.action == "http.post")
        .expect("the write is audited");
    assert_eq!(write.outcome, CLIENT_CLOSED);
    t.shutdown().await;
}

#[tokio::test]
async fn failing_stores_give_opaque_answers() {
    let failing = Arc::new(FailingStore::default());
    let t = Tenancy::builder(base_config().build().unwrap())
        .api_key_store(failing.clone())
        .build()
        .unwrap();
    let memory = Tenancy::builder(base_config().build().unwrap())
        .build()
        .unwrap();
    seed(&memory).await;
    let k = key(&memory, "acme", ApiKeyScope::Full, None).await;
    let err = refusal(&t, get("/x", &[("x-api-key", k)])).await;
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (503, "store_unavailable"),
        "authentication fails closed"
    );
    let body = String::from_utf8(err.to_response().into_body()).unwrap();
    assert!(
        !body.contains("hunter2") && !body.contains("redis") && !body.contains("10.1.2.3"),
        "{body}"
    );

    let t2 = Tenancy::builder(base_config().build().unwrap())
        .tenant_store(failing.clone())
        .build()
        .unwrap();
    let err = refusal(&t2, get("/x", &[bearer("acme", "admin")])).await;
    assert_eq!(err.code(), "store_unavailable");

    // Rate limiter and quota store: fail-open by default, fail-closed when told.
    for (policy, expect_ok) in [(FailurePolicy::Open, true), (FailurePolicy::Closed, false)] {
        let t3 = Tenancy::builder(base_config().on_store_failure(policy).build().unwrap())
            .rate_limiter(failing.clone())
            .quota_store(failing.clone())
            .build()
            .unwrap();
        seed(&t3).await;
        let result = t3.admit_parts(&get("/x", &[bearer("acme", "admin")])).await;
        assert_eq!(result.is_ok(), expect_ok, "{policy:?}");
        if let Err(e) = result {
            assert_eq!(e.code(), "store_unavailable");
        }
        let ctx = admitted(&memory, get("/x", &[bearer("acme", "admin")])).await;
        assert_eq!(t3.charge(&ctx, "events", 1).await.is_ok(), expect_ok);
        t3.shutdown().await;
    }
    for x in [t, t2, memory] {
        x.shutdown().await;
    }
}

#[tokio::test]
async fn full_audit_buffer_drops_and_counts() {
    let t = Tenancy::builder(base_config().audit_buffer(4).build().unwrap())
        .build()
        .unwrap();
    seed(&t).await;
    t.flush().await;
    let ctx = admitted(&t, get("/x", &[bearer("acme", "admin")])).await;
    for i in 0..100 {
        t.record_audit(t.audit_event(&ctx, format!("burst.{i}")));
    }
    t.flush().await;
    let kept = t
        .audit_query()
        .unwrap()
        .query(&tid("acme"), &AuditFilter::default().limit(1000))
        .await
        .unwrap()
        .len() as u64;
    assert!(t.audit_dropped() > 0);
    assert_eq!(
        kept + t.audit_dropped(),
        100,
        "every event is either kept or counted"
    );
    t.shutdown().await;
    t.record_audit(t.audit_event(&ctx, "after.shutdown"));
    assert_eq!(kept + t.audit_dropped(), 101);
}

fn tenant_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "acme", "globex", "sleepy", "platform", "tiny", "nobody",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// For any credential of tenant A and any header, query or host naming
    /// B != A, admit never yields a context for B unless the role is
    /// super_admin or system.
    #[test]
    fn no_cross_tenant_context_below_super_admin(
        a in tenant_name(),
        b in tenant_name(),
        role in prop::sample::select(vec!["viewer", "operator", "admin", "super_admin", "devops", "tenant-admin"]),
        via in 0..4usize,
        use_key in any::<bool>(),
    ) {
        prop_assume!(a != b);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let config = base_config()
                .sources([crate::config::TenantSource::Credential, crate::config::TenantSource::Header, crate::config::TenantSource::Query, crate::config::TenantSource::Host])
                .host_template("{tenant}.example.com")
                .build()
                .unwrap();
            let t = tenancy_with(config).await;
            let credential = if use_key && a != "nobody" {
                ("x-api-key", key(&t, &a, ApiKeyScope::Full, None).await)
            } else {
                bearer(&a, role)
            };
            let mut headers = vec![credential];
            let uri = match via {
                0 => { headers.push(("x-tenant-id", b.clone())); "/x".to_owned() }
                1 => format!("/x?tenant_id={b}"),
                2 => { headers.push(("host", format!("{b}.example.com"))); "/x".to_owned() }
                _ => { headers.push(("x-tenant-id", b.clone())); format!("/x?tenant_id={b}") }
            };
            let result = t.admit_parts(&get(&uri, &headers)).await;
            if let Ok(admission) = &result
                && let Some(ctx) = admission.context()
                && ctx.tenant_id().as_str() == b
            {
                prop_assert!(ctx.role() >= Role::SuperAdmin, "{role} of {a} reached {b}");
                prop_assert!(ctx.is_cross_tenant());
            }
            if let Ok(admission) = &result
                && let Some(ctx) = admission.context()
            {
                prop_assert!(ctx.tenant_id().as_str() == a || ctx.role() >= Role::SuperAdmin);
            }
            t.shutdown().await;
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn audit_can_be_turned_off() {
    let mut config = base_config().build().unwrap();
    config.audit.enabled = false;
    let t = tenancy_with(config).await;
    let admission = t
        .admit_parts(&post(
            "/api/v1/runbooks/r1/trigger",
            &[bearer("acme", "operator")],
        ))
        .await
        .unwrap();
    let ctx = admission.context().unwrap().clone();
    admission.finish(StatusCode::ACCEPTED, |_, _| {});
    t.record_audit(t.audit_event(&ctx, "runbook.trigger"));
    refusal(
        &t,
        post(
            "/x",
            &[
                ("authorization", "Bearer junk".into()),
                ("x-tenant-id", "acme".into()),
            ],
        ),
    )
    .await;
    t.flush().await;
    let events = t
        .audit_query()
        .unwrap()
        .query(&tid("acme"), &AuditFilter::default())
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(t.audit_dropped(), 0);
    t.shutdown().await;
}

async fn audit_of(t: &Tenancy, tenant: &str) -> Vec<AuditEvent> {
    t.flush().await;
    t.audit_query()
        .unwrap()
        .query(&tid(tenant), &AuditFilter::default().limit(1000))
        .await
        .unwrap()
}

fn from(addr: &str, mut parts: Parts) -> Parts {
    parts.extensions.insert(PeerAddr(addr.parse().unwrap()));
    parts
}

/// Finding 1: a tenant's own identity provider cannot mint platform power,
/// and cross-tenant selection needs an active home tenant.
#[tokio::test]
async fn tenant_realms_cannot_reach_other_tenants() {
    const BIGCORP_ISS: &str = "https://id.bigcorp.example";
    let realm = crate::config::RealmConfig::hs256("bigcorp", BIGCORP_ISS, SECRET)
        .dedicated_to(tid("bigcorp"));
    let t = tenancy_with(base_config().realm(realm).build().unwrap()).await;
    t.admin()
        .create_tenant(TenantRecord::new(tid("bigcorp"), "Bigcorp", "pro"))
        .await
        .unwrap();
    let bigcorp_token = |role: &str| {
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": "it@bigcorp", "role": role, "iss": BIGCORP_ISS, "iat": now, "exp": now + 600,
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        ("authorization", format!("Bearer {token}"))
    };
    for role in ["super_admin", "cpi-admin", "system"] {
        let err = refusal(
            &t,
            get("/x", &[bigcorp_token(role), ("x-tenant-id", "acme".into())]),
        )
        .await;
        assert_eq!(err.code(), "invalid_token", "{role}");
    }
    // Its admin stays home.
    let err = refusal(
        &t,
        get(
            "/x",
            &[bigcorp_token("admin"), ("x-tenant-id", "acme".into())],
        ),
    )
    .await;
    assert_eq!(err.code(), "tenant_mismatch");
    assert_eq!(
        admitted(&t, get("/x", &[bigcorp_token("admin")]))
            .await
            .tenant_id()
            .as_str(),
        "bigcorp"
    );

    // The platform's super_admin crosses only while its home is active.
    let cross = || {
        get(
            "/x",
            &[
                bearer("platform", "super_admin"),
                ("x-tenant-id", "acme".into()),
            ],
        )
    };
    assert!(admitted(&t, cross()).await.is_cross_tenant());
    for (status, code) in [
        (TenantStatus::Suspended, "tenant_suspended"),
        (TenantStatus::Archived, "tenant_archived"),
    ] {
        let mut platform = t
            .tenant_store()
            .get(&tid("platform"))
            .await
            .unwrap()
            .unwrap();
        platform.status = status;
        t.admin().update_tenant(platform).await.unwrap();
        assert_eq!(refusal(&t, cross()).await.code(), code);
    }
    t.shutdown().await;
}

/// Finding 2: nobody without a verified credential writes into a tenant's
/// audit log; verified refusals land in the caller's home tenant.
#[tokio::test]
async fn refusals_go_where_they_belong() {
    let t = tenancy().await;
    let long_path = format!("/{}", "a".repeat(8 * 1024));
    for i in 0..200 {
        let tenant = if i % 2 == 0 {
            "acme".to_owned()
        } else {
            format!("rnd{i}")
        };
        let err = refusal(
            &t,
            from("192.0.2.7", post(&long_path, &[("x-tenant-id", tenant)])),
        )
        .await;
        assert!(
            matches!(err.code(), "unauthenticated" | "rate_limited"),
            "{}",
            err.code()
        );
    }
    let junk_key = "tnk_0000000000000000000000000000000000";
    refusal(
        &t,
        post(
            "/x",
            &[
                ("x-api-key", junk_key.into()),
                ("x-tenant-id", "acme".into()),
            ],
        ),
    )
    .await;
    assert!(
        audit_of(&t, "acme").await.is_empty(),
        "no unverified refusal reaches acme"
    );
    let log = t.security_log();
    let row = log
        .iter()
        .find(|e| {
            e.client_addr == Some("192.0.2.7".parse().unwrap()) && e.reason == "unauthenticated"
        })
        .unwrap();
    assert_eq!(row.count, 50, "the first 50 failures, then the throttle");
    assert!(
        log.iter()
            .any(|e| e.reason == "rate_limited" && e.count == 150)
    );
    assert!(
        log.iter()
            .any(|e| e.client_addr.is_none() && e.reason == "invalid_api_key")
    );

    // A verified caller asking for another tenant: logged at home only.
    let err = refusal(
        &t,
        get(
            &long_path,
            &[bearer("globex", "admin"), ("x-tenant-id", "acme".into())],
        ),
    )
    .await;
    assert_eq!(err.code(), "tenant_mismatch");
    assert!(
        audit_of(&t, "acme").await.is_empty(),
        "globex's identity never shows in acme's log"
    );
    let home = audit_of(&t, "globex").await;
    assert_eq!(home.len(), 1);
    let event = &home[0];
    assert_eq!(
        (event.action.as_str(), event.actor.as_str(), event.outcome),
        ("access.refused", "user-of-globex", 403)
    );
    assert_eq!(
        event.details.get("requested_tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(
        event.details.get("code").map(String::as_str),
        Some("tenant_mismatch")
    );
    assert!(event.resource.as_ref().unwrap().len() <= crate::audit::MAX_RESOURCE_BYTES);
    t.shutdown().await;
}

/// The base configuration with a failure allowance that refills one per
/// second (burst 50), so that the throttle tests do not depend on how fast
/// a loaded machine runs their first 50 requests.
fn slow_refill_config() -> TenancyConfig {
    let mut config = base_config().build().unwrap();
    config.auth.failure_throttle.per_second = 1;
    config
}

/// Finding 3 (keys): over the failure allowance an address is refused
/// before its key costs a store lookup.
#[tokio::test]
async fn failed_authentications_are_throttled_before_any_lookup() {
    let store = Arc::new(CountingKeys::default());
    let t = Tenancy::builder(slow_refill_config())
        .api_key_store(store.clone())
        .build()
        .unwrap();
    let random_key = |_: u32| {
        ApiKeySecret::generate("tnk", new_key_id().unwrap())
            .unwrap()
            .expose()
            .to_owned()
    };
    for i in 0..50 {
        let err = refusal(
            &t,
            from("198.51.100.1", get("/x", &[("x-api-key", random_key(i))])),
        )
        .await;
        assert_eq!(err.code(), "invalid_api_key");
    }
    let lookups = store.calls();
    assert_eq!(lookups, 50);
    for i in 0..1000 {
        let err = refusal(
            &t,
            from("198.51.100.1", get("/x", &[("x-api-key", random_key(i))])),
        )
        .await;
        assert_eq!(err.code(), "rate_limited");
        assert!(err.headers().contains_key("retry-after"));
    }
    assert_eq!(store.calls(), lookups, "no lookup once over the allowance");
    // Another address is not affected.
    let err = refusal(
        &t,
        from("198.51.100.2", get("/x", &[("x-api-key", random_key(0))])),
    )
    .await;
    assert_eq!(err.code(), "invalid_api_key");
    t.shutdown().await;
}

/// A bearer token naming an issuer no realm has costs one realm-store
/// lookup (a tenant may have brought that issuer), never a signature check
/// or any state; over the failure allowance, not even the lookup.
#[tokio::test]
async fn tokens_of_unknown_issuers_cost_one_lookup_each_until_throttled() {
    use base64::Engine as _;
    let realms = Arc::new(CountingRealms::default());
    let t = Tenancy::builder(slow_refill_config())
        .realm_store(realms.clone())
        .build()
        .unwrap();
    let token = |i: u32| {
        let b64 = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let payload = format!(
            r#"{{"iss":"https://idp-{i}.attacker.example/","sub":"x","role":"admin","tenant_id":"acme","exp":4102444800}}"#
        );
        format!(
            "Bearer {}.{}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k"}"#.to_owned()),
            b64(payload)
        )
    };
    for i in 0..50 {
        let err = refusal(
            &t,
            from("198.51.100.3", get("/x", &[("authorization", token(i))])),
        )
        .await;
        assert_eq!(err.code(), "invalid_token");
    }
    assert_eq!(realms.calls(), 50);
    for i in 50..300 {
        let err = refusal(
            &t,
            from("198.51.100.3", get("/x", &[("authorization", token(i))])),
        )
        .await;
        assert_eq!(err.code(), "rate_limited");
    }
    assert_eq!(realms.calls(), 50, "no lookup once over the allowance");
    t.shutdown().await;
}

/// The in-memory realm store, counting lookups by issuer.
#[derive(Default)]
struct CountingRealms {
    inner: crate::store::memory::MemoryRealmStore,
    lookups: std::sync::atomic::AtomicU64,
}

impl CountingRealms {
    fn calls(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl crate::store::RealmStore for CountingRealms {
    async fn find_by_issuer(
        &self,
        issuer: &str,
    ) -> Result<Option<crate::credential::RealmClaim>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_issuer(issuer).await
    }
    async fn get(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::credential::TenantRealm>, StoreError> {
        self.inner.get(tenant).await
    }
    async fn put(
        &self,
        tenant: &TenantId,
        realm: crate::credential::TenantRealm,
    ) -> Result<(), StoreError> {
        self.inner.put(tenant, realm).await
    }
    async fn remove(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.inner.remove(tenant).await
    }
}

/// Finding 5: a key never outgrows its parent; dead keys stay dead.
#[tokio::test]
async fn keys_never_outgrow_their_parent() {
    let t = tenancy().await;
    let acme = tid("acme");
    let new = |scope, expires_at| NewApiKey {
        name: "k".into(),
        scope,
        rate_limit_rps: None,
        expires_at,
    };
    let soon = Utc::now() + chrono::Duration::seconds(60);
    let parent = t
        .admin()
        .issue_api_key(
            &acme,
            NewApiKey {
                rate_limit_rps: Some(5),
                ..new(ApiKeyScope::Full, Some(soon))
            },
        )
        .await
        .unwrap();
    let ctx = admitted(
        &t,
        post("/keys", &[("x-api-key", parent.secret.expose().to_owned())]),
    )
    .await;
    let child = t
        .admin()
        .issue_api_key_as(&ctx, ctx.tenant(), new(ApiKeyScope::Full, None))
        .await
        .unwrap();
    assert_eq!(
        child.record.expires_at,
        Some(soon),
        "no expiry asked: the parent's"
    );
    assert_eq!(child.record.rate_limit_rps, Some(5));
    let later = t
        .admin()
        .issue_api_key_as(
            &ctx,
            ctx.tenant(),
            new(ApiKeyScope::Full, Some(soon + chrono::Duration::days(9))),
        )
        .await
        .unwrap();
    assert_eq!(
        later.record.expires_at,
        Some(soon),
        "a later expiry is cut to the parent's"
    );
    // A grandchild, through the child.
    let child_ctx = admitted(
        &t,
        post("/keys", &[("x-api-key", child.secret.expose().to_owned())]),
    )
    .await;
    let grandchild = t
        .admin()
        .issue_api_key_as(&child_ctx, ctx.tenant(), new(ApiKeyScope::Readonly, None))
        .await
        .unwrap();
    // A readonly key cannot grant more than readonly.
    let ro_ctx = admitted(
        &t,
        get(
            "/keys",
            &[("x-api-key", grandchild.secret.expose().to_owned())],
        ),
    )
    .await;
    let err = t
        .admin()
        .issue_api_key_as(&ro_ctx, ctx.tenant(), new(ApiKeyScope::Full, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "scope_denied");

    // Revoking the parent revokes the whole line.
    let mut cascaded = t
        .admin()
        .revoke_api_key(&acme, &parent.record.key_id)
        .await
        .unwrap();
    cascaded.sort();
    let mut expected = vec![
        child.record.key_id.clone(),
        later.record.key_id.clone(),
        grandchild.record.key_id.clone(),
    ];
    expected.sort();
    assert_eq!(cascaded, expected);
    for secret in [&child.secret, &grandchild.secret] {
        let err = refusal(&t, get("/x", &[("x-api-key", secret.expose().to_owned())])).await;
        assert_eq!(err.code(), "invalid_api_key");
    }
    // A revoked key is never rotated back to life.
    let err = t
        .admin()
        .rotate_api_key(&acme, &parent.record.key_id, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    t.shutdown().await;
}

/// One answer for every bad key: unknown, revoked and expired look alike.
#[tokio::test]
async fn every_bad_key_gets_the_same_problem_body() {
    let t = tenancy().await;
    let acme = tid("acme");
    let unknown = ApiKeySecret::generate("tnk", new_key_id().unwrap()).unwrap();
    let revoked = t
        .admin()
        .issue_api_key(
            &acme,
            NewApiKey {
                name: "r".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    t.admin()
        .revoke_api_key(&acme, &revoked.record.key_id)
        .await
        .unwrap();
    let expired = t
        .admin()
        .issue_api_key(
            &acme,
            NewApiKey {
                name: "e".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: None,
                expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
            },
        )
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for secret in [
        unknown.expose(),
        revoked.secret.expose(),
        expired.secret.expose(),
    ] {
        let err = refusal(&t, get("/x", &[("x-api-key", secret.to_owned())])).await;
        bodies.push((err.status(), err.problem().to_json()));
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
    t.shutdown().await;
}

/// The in-memory key store, counting digest lookups.
#[derive(Default)]
struct CountingKeys {
    inner: MemoryApiKeyStore,
    lookups: std::sync::atomic::AtomicU64,
}

impl CountingKeys {
    fn calls(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ApiKeyStore for CountingKeys {
    async fn insert(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        self.inner.insert(key).await
    }
    async fn insert_within_limit(
        &self,
        key: ApiKeyRecord,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.insert_within_limit(key, limit, now).await
    }
    async fn find_by_digest(
        &self,
        digest: &crate::credential::ApiKeyDigest,
    ) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_by_digest(digest).await
    }
    async fn get(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.get(tenant, key_id).await
    }
    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.inner.list(tenant).await
    }
    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.inner.erase(tenant).await
    }
    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.revoke(tenant, key_id, at).await
    }
    async fn set_expiry(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        self.inner.set_expiry(tenant, key_id, at).await
    }
    async fn touch(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.touch(tenant, key_id, at).await
    }
}

/// Finding 3 (metering): a burst of 600,000 distinct event types from one
/// tenant escaped metering and cost another tenant its counts.
#[tokio::test]
async fn metering_is_fair_per_tenant() {
    let t = tenancy().await;
    let acme = admitted(&t, post("/x", &[bearer("acme", "operator")])).await;
    let globex = admitted(&t, post("/x", &[bearer("globex", "operator")])).await;
    let burst = 70_000u64;
    for i in 0..burst {
        let event_type = Label::new(format!("t{i}")).unwrap();
        t.meter(&acme, &event_type, 1);
        if i % 3_500 == 0 {
            t.meter(&globex, &Label::new("metric").unwrap(), 1);
        }
    }
    // The engine's own per-request type is never pushed into the overflow.
    t.meter(&acme, &Label::new(REQUESTS_EVENT).unwrap(), 1);
    t.flush().await;
    assert_eq!(t.usage_dropped(), 0);
    let from = Utc::now() - chrono::Duration::hours(2);
    let to = Utc::now() + chrono::Duration::hours(2);
    let rows = t.usage_meter().usage(&tid("acme"), from, to).await.unwrap();
    let types: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.event_type.as_str()).collect();
    assert!(
        types.len() <= MAX_EVENT_TYPES_PER_HOUR * 2 + 2,
        "{} types",
        types.len()
    );
    assert!(types.contains(OVERFLOW_EVENT_TYPE));
    assert!(types.contains(REQUESTS_EVENT));
    let total: u64 = rows.iter().map(|r| r.count).sum();
    // The burst, the engine's own count, and the admission's request.
    assert_eq!(total, burst + 2, "every event counted, none escaped");
    let theirs = t
        .usage_meter()
        .usage(&tid("globex"), from, to)
        .await
        .unwrap();
    assert_eq!(
        theirs.iter().map(|r| r.count).sum::<u64>(),
        20 + 1,
        "globex lost nothing"
    );
    t.shutdown().await;
}

/// Which refusals of verified callers reach their home tenant's log:
/// refused writes and boundary crossings, not refused reads.
#[tokio::test]
async fn verified_refusals_of_reads_stay_out_of_the_audit_log() {
    let t = tenancy().await;
    let mut read = get("/x", &[bearer("acme", "viewer")]);
    read.extensions.insert(RoutePolicy::min_role(Role::Admin));
    assert_eq!(refusal(&t, read).await.code(), "insufficient_role");
    assert!(audit_of(&t, "acme").await.is_empty());
    let mut write = post("/x", &[bearer("acme", "viewer")]);
    write.extensions.insert(RoutePolicy::min_role(Role::Admin));
    assert_eq!(refusal(&t, write).await.code(), "insufficient_role");
    let events = audit_of(&t, "acme").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].details.get("code").map(String::as_str),
        Some("insufficient_role")
    );
    t.shutdown().await;
}

/// A services realm's `system` token acts as a service, a user's as a user.
#[tokio::test]
async fn system_tokens_act_as_services() {
    let services =
        crate::config::RealmConfig::hs256("svc", "https://svc.example", SECRET).for_services();
    let t = tenancy_with(base_config().realm(services).build().unwrap()).await;
    let now = Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": "billing", "tenant_id": "acme", "role": "system",
        "iss": "https://svc.example", "exp": now + 600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let ctx = admitted(
        &t,
        get("/x", &[("authorization", format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(ctx.principal().kind, ActorKind::Service);
    let ctx = admitted(&t, get("/x", &[bearer("acme", "admin")])).await;
    assert_eq!(ctx.principal().kind, ActorKind::User);
    t.shutdown().await;
}

/// A verified token whose home tenant does not exist opens no audit log
/// for it: its refusals go to the security log.
#[tokio::test]
async fn refusals_of_tokens_from_no_tenant_open_no_audit_log() {
    let t = tenancy().await;
    let err = refusal(
        &t,
        from(
            "192.0.2.44",
            post(
                "/x",
                &[bearer("ghost", "admin"), ("x-tenant-id", "acme".into())],
            ),
        ),
    )
    .await;
    assert_eq!(err.code(), "tenant_mismatch");
    assert!(audit_of(&t, "ghost").await.is_empty());
    assert!(audit_of(&t, "acme").await.is_empty());
    assert!(t.security_log().iter().any(|e| {
        e.client_addr == Some("192.0.2.44".parse().unwrap()) && e.reason == "tenant_mismatch"
    }));
    t.shutdown().await;
}

/// Rotating a key with a grace period ends the keys it issued with it, and
/// no later: an earlier expiry stays.
#[tokio::test]
async fn rotation_with_grace_ends_the_keys_a_key_issued() {
    let t = tenancy().await;
    let acme = tid("acme");
    let new = |expires_at| NewApiKey {
        name: "k".into(),
        scope: ApiKeyScope::Full,
        rate_limit_rps: None,
        expires_at,
    };
    let parent = t.admin().issue_api_key(&acme, new(None)).await.unwrap();
    let ctx = admitted(
        &t,
        post("/keys", &[("x-api-key", parent.secret.expose().to_owned())]),
    )
    .await;
    let soon = Utc::now() + chrono::Duration::seconds(10);
    let late = Utc::now() + chrono::Duration::days(1);
    let early_child = t
        .admin()
        .issue_api_key_as(&ctx, ctx.tenant(), new(Some(soon)))
        .await
        .unwrap();
    let late_child = t
        .admin()
        .issue_api_key_as(&ctx, ctx.tenant(), new(Some(late)))
        .await
        .unwrap();
    let open_child = t
        .admin()
        .issue_api_key_as(&ctx, ctx.tenant(), new(None))
        .await
        .unwrap();
    let before = Utc::now();
    t.admin()
        .rotate_api_key(&acme, &parent.record.key_id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let expiry = |k: &IssuedApiKey| {
        let t = t.clone();
        let id = k.record.key_id.clone();
        async move {
            t.api_key_store()
                .get(&tid("acme"), &id)
                .await
                .unwrap()
                .unwrap()
                .expires_at
        }
    };
    let until = expiry(&parent)
        .await
        .expect("the old key ends after the grace");
    assert!(until >= before + chrono::Duration::seconds(60));
    assert_eq!(
        expiry(&early_child).await,
        Some(soon),
        "an earlier expiry stays"
    );
    assert_eq!(expiry(&late_child).await, Some(until), "a later one is cut");
    assert_eq!(
        expiry(&open_child).await,
        Some(until),
        "none becomes the parent's"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn an_admission_that_would_wait_changes_nothing_until_it_is_awaited() {
    // The counting store has no `find_by_digest_now`: it must be awaited.
    let store = Arc::new(CountingKeys::default());
    let t = Tenancy::builder(base_config().build().unwrap())
        .api_key_store(store.clone())
        .build()
        .unwrap();
    seed(&t).await;
    let secret = key(&t, "acme", ApiKeyScope::Full, Some(1)).await;
    let parts = get("/x", &[("x-api-key", secret)]);
    let head = RequestHead::from(&parts);
    for _ in 0..3 {
        assert!(
            t.admit_now(&head).is_none(),
            "the key store must be awaited"
        );
    }
    assert_eq!(store.calls(), 0);
    // The key's one request per second was not taken by the runs that
    // stopped.
    let admission = t.admit(&head).await.expect("admitted");
    assert_eq!(admission.rate_limit().map(|s| s.remaining), Some(0));
    admission.finish(StatusCode::OK, |_, _| {});
    let err = t.admit(&head).await.expect_err("over the key's rate");
    assert_eq!(err.code(), "rate_limited");
    t.shutdown().await;
}

#[tokio::test]
async fn in_memory_stores_admit_and_refuse_without_waiting() {
    let t = tenancy().await;
    let secret = key(&t, "acme", ApiKeyScope::Full, None).await;
    let parts = get("/x", &[("x-api-key", secret)]);
    // A tenant the cache does not hold yet is read from its store: awaited.
    assert!(t.admit_now(&RequestHead::from(&parts)).is_none());
    t.admit(&RequestHead::from(&parts))
        .await
        .expect("admitted")
        .finish(StatusCode::OK, |_, _| {});
    let admission = t
        .admit_now(&RequestHead::from(&parts))
        .expect("answered at once")
        .expect("admitted");
    assert_eq!(admission.context().unwrap().tenant_id().as_str(), "acme");
    admission.finish(StatusCode::OK, |_, _| {});
    let typo = get("/x", &[("x-api-key", "tnk_typo".to_owned())]);
    let refused = t
        .admit_now(&RequestHead::from(&typo))
        .expect("answered at once")
        .expect_err("refused");
    assert_eq!(refused.code(), "invalid_api_key");
    assert!(refused.request_id().is_some());
    t.shutdown().await;
}

#[tokio::test]
async fn stores_that_never_answer_at_once_are_not_tried_without_waiting() {
    // The counting key store has no `find_by_digest_now`; the failing
    // limiter has no `check_now`.
    let keys = Arc::new(CountingKeys::default());
    let t = Tenancy::builder(base_config().anonymous_role(Role::Viewer).build().unwrap())
        .api_key_store(keys.clone())
        .build()
        .unwrap();
    seed(&t).await;
    let tenant_only = get("/x", &[("x-tenant-id", "acme".to_owned())]);
    let head = RequestHead::from(&tenant_only);
    t.admit(&head)
        .await
        .expect("admitted")
        .finish(StatusCode::OK, |_, _| {});
    // A request without a key never reaches the key store: answered at once.
    assert!(t.admit_now(&head).is_some());
    let secret = key(&t, "acme", ApiKeyScope::Full, None).await;
    let with_key = get("/x", &[("x-api-key", secret)]);
    assert!(t.admit_now(&RequestHead::from(&with_key)).is_none());
    assert_eq!(keys.calls(), 0);
    t.shutdown().await;

    let limiter = Arc::new(FailingStore::default());
    let t = Tenancy::builder(base_config().anonymous_role(Role::Viewer).build().unwrap())
        .rate_limiter(limiter.clone())
        .build()
        .unwrap();
    seed(&t).await;
    let head = RequestHead::from(&tenant_only);
    assert!(t.admit_now(&head).is_none());
    assert_eq!(limiter.calls(), 0);
    t.shutdown().await;
}

#[tokio::test]
async fn failed_authentications_answered_at_once_are_counted_once() {
    let t = tenancy().await;
    let random_key = || {
        ApiKeySecret::generate("tnk", new_key_id().unwrap())
            .unwrap()
            .expose()
            .to_owned()
    };
    let flood = |key: String| get("/x", &[("x-api-key", key)]);
    let admit_now = |parts: &Parts| {
        let head = RequestHead::from(parts).with_client_addr(Some("198.51.100.9".parse().unwrap()));
        t.admit_now(&head).expect("answered at once")
    };
    // The default allowance is a burst of 50 failures: each is counted once.
    for _ in 0..50 {
        let err = admit_now(&flood(random_key())).expect_err("refused");
        assert_eq!(err.code(), "invalid_api_key");
    }
    let err = admit_now(&flood(random_key())).expect_err("refused");
    assert_eq!(err.code(), "rate_limited");
    t.shutdown().await;
}

/// Issue 23, finding 3: a credential already known good is served from an
/// address over its failure allowance; unknown ones are refused there
/// before any lookup.
#[tokio::test]
async fn known_good_credentials_pass_a_throttled_address() {
    let store = Arc::new(CountingKeys::default());
    let t = Tenancy::builder(slow_refill_config())
        .api_key_store(store.clone())
        .build()
        .unwrap();
    seed(&t).await;
    let issued = t
        .admin()
        .issue_api_key(&tid("acme"), NewApiKey::new("good"))
        .await
        .unwrap();
    let good = issued.secret.expose().to_owned();
    let unused = key(&t, "acme", ApiKeyScope::Readonly, None).await;
    let known_token = bearer("acme", "viewer");
    let addr = "198.51.100.9";
    // Each good credential verifies once, from anywhere.
    admitted(&t, from(addr, get("/x", &[("x-api-key", good.clone())]))).await;
    admitted(
        &t,
        from(addr, get("/x", std::slice::from_ref(&known_token))),
    )
    .await;

    // Another client on the address floods forged tokens.
    for _ in 0..60 {
        refusal(
            &t,
            from(addr, get("/x", &[("authorization", "Bearer x.y.z".into())])),
        )
        .await;
    }
    let forged = refusal(
        &t,
        from(addr, get("/x", &[("authorization", "Bearer x.y.z".into())])),
    )
    .await;
    assert_eq!(forged.code(), "rate_limited");

    let lookups = store.calls();
    for _ in 0..3 {
        let ctx = admitted(&t, from(addr, get("/x", &[("x-api-key", good.clone())]))).await;
        assert_eq!(ctx.tenant_id().as_str(), "acme");
        admitted(
            &t,
            from(addr, get("/x", std::slice::from_ref(&known_token))),
        )
        .await;
    }
    assert_eq!(
        store.calls(),
        lookups + 3,
        "a known key is still looked up, so a revocation counts"
    );
    // Unknown credentials: refused before any lookup.
    let err = refusal(&t, from(addr, get("/x", &[("x-api-key", unused.clone())]))).await;
    assert_eq!(err.code(), "rate_limited");
    let fresh = format!("Bearer {}", token("acme", "admin", 600));
    let err = refusal(&t, from(addr, get("/x", &[("authorization", fresh)]))).await;
    assert_eq!(err.code(), "rate_limited");
    assert_eq!(store.calls(), lookups + 3);

    // A known key revoked meanwhile passes the throttle and is refused.
    t.admin()
        .revoke_api_key(&tid("acme"), &issued.record.key_id)
        .await
        .unwrap();
    let err = refusal(&t, from(addr, get("/x", &[("x-api-key", good)]))).await;
    assert_eq!(err.code(), "invalid_api_key");
    t.shutdown().await;
}

/// Issue 23, finding 4: forged tokens of a realm whose keys cannot be
/// fetched were answered 503 without end; they count as failures.
#[tokio::test]
async fn store_failures_answered_to_unverified_callers_count_as_failures() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = slow_refill_config();
    let mut realm = crate::config::RealmConfig::discovered(
        "down",
        format!("http://127.0.0.1:{port}/realms/down"),
    );
    realm.allow_http = true;
    config.realms.push(realm);
    let t = tenancy_with(config).await;
    let forged = |i: u32| {
        use base64::Engine as _;
        let b64 = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let payload = format!(
            r#"{{"iss":"http://127.0.0.1:{port}/realms/down","sub":"x{i}","role":"admin","tenant_id":"acme","exp":4102444800}}"#
        );
        format!(
            "Bearer {}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#.to_owned()),
            b64(payload)
        )
    };
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..120 {
        let err = refusal(
            &t,
            from("198.51.100.4", get("/x", &[("authorization", forged(i))])),
        )
        .await;
        *codes.entry(err.code()).or_insert(0) += 1;
    }
    assert_eq!(codes.get("store_unavailable"), Some(&50), "{codes:?}");
    assert_eq!(codes.get("rate_limited"), Some(&70), "{codes:?}");
    t.shutdown().await;
}

/// Issue 23, finding 3: behind a trusted proxy each client counts under
/// its own address (throttle, security log, audit); an untrusted peer's
/// header is ignored.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_told_apart() {
    let mut config = slow_refill_config();
    config.network.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let t = tenancy_with(config).await;
    let via_proxy = |client: &str, headers: &[(&str, String)]| {
        let mut parts = from("10.0.0.2", get("/x", headers));
        parts.headers.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&format!("192.0.2.200, {client}")).unwrap(),
        );
        parts
    };
    let forged = [("authorization", "Bearer x.y.z".to_owned())];
    for _ in 0..60 {
        refusal(&t, via_proxy("198.51.100.1", &forged)).await;
    }
    assert_eq!(
        refusal(&t, via_proxy("198.51.100.1", &forged)).await.code(),
        "rate_limited"
    );
    assert_eq!(
        refusal(&t, via_proxy("198.51.100.2", &forged)).await.code(),
        "invalid_token",
        "the other client behind the proxy is not throttled"
    );
    // The same header from a peer that is not a trusted proxy is ignored.
    let mut spoofed = from("192.0.2.9", get("/x", &forged));
    spoofed
        .headers
        .insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
    assert_eq!(refusal(&t, spoofed).await.code(), "invalid_token");

    let log = t.security_log();
    let count = |addr: &str| {
        log.iter()
            .filter(|e| e.client_addr == Some(addr.parse().unwrap()))
            .map(|e| e.count)
            .sum::<u64>()
    };
    assert_eq!(count("198.51.100.1"), 61);
    assert_eq!(count("198.51.100.2"), 1);
    assert_eq!(count("192.0.2.9"), 1);
    assert_eq!(count("10.0.0.2"), 0, "the proxy itself is never blamed");

    // The audit log names the client too.
    let mut write = via_proxy("198.51.100.3", &[bearer("acme", "admin")]);
    write.method = Method::POST;
    let admission = t.admit_parts(&write).await.unwrap();
    admission.finish(StatusCode::CREATED, |_, _| {});
    let events = audit_of(&t, "acme").await;
    assert!(
        events
            .iter()
            .any(|e| e.client_addr == Some("198.51.100.3".parse().unwrap())),
        "{events:?}"
    );
    t.shutdown().await;
}
