//! The pipeline through `admit`, with real request heads: every refusal of
//! the errors table, the gates, limits, quotas, audit and metering.

use proptest::prelude::*;
use std::sync::Arc;

use super::*;
use crate::audit::AuditFilter;
use crate::plan::QuotaOverrides;
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
        let mut t = Tenant::new(TenantId::new(id).unwrap(), id, plan);
        t.status = status;
        if id == "tiny" {
            t.settings.quota_overrides = QuotaOverrides {
                events_per_month: Some(Limit::Limited(5)),
                rps: Some(3),
                ..QuotaOverrides::default()
            };
        }
        tenancy.create_tenant(t).await.unwrap();
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

async fn refusal(tenancy: &Tenancy, parts: Parts) -> TenancyError {
    tenancy.admit(&parts).await.expect_err("must be refused")
}

async fn admitted(tenancy: &Tenancy, parts: Parts) -> TenantContext {
    let admission = tenancy.admit(&parts).await.expect("must be admitted");
    admission.context().expect("has a tenant").clone()
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
    let err = refusal(&t, get("/x?tenant=a:b", &[])).await;
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
        .revoke_api_key(&tid("globex"), &issued.record.key_id)
        .await
        .unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (404, "not_found"));
    admitted(&t, get("/x", &[("x-api-key", secret.clone())])).await;

    t.revoke_api_key(&tid("acme"), &issued.record.key_id)
        .await
        .unwrap();
    let err = refusal(&t, get("/x", &[("x-api-key", secret)])).await;
    assert_eq!(err.code(), "invalid_api_key");
    assert!(err.detail().contains("revoked"));

    let past = t
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
    assert!(err.detail().contains("expired"));

    // Rotation with a grace period: both work; without: the old one stops.
    let first = t
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
        .admit(&get("/x", &[("x-api-key", k.clone())]))
        .await
        .unwrap();
    let mut headers = HeaderMap::new();
    first.write_headers(&mut headers);
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "1");
    assert!(headers.contains_key("ratelimit-reset"));
    t.admit(&get("/x", &[("x-api-key", k.clone())]))
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
        if t.admit(&parts).await.is_ok() {
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

    let quotas = t.quotas_of(ctx.tenant());
    t.check_count_quota(&quotas, CountQuota::ApiKeys, 1)
        .unwrap();
    let err = t
        .check_count_quota(&quotas, CountQuota::ApiKeys, 2)
        .unwrap_err();
    assert_eq!(err.code(), "quota_exceeded");
    assert!(!err.headers().contains_key("retry-after"));
    t.shutdown().await;
}

#[tokio::test]
async fn completion_audits_writes_and_meters_requests() {
    let t = tenancy().await;
    let mut parts = post("/api/v1/runbooks/r1/trigger", &[bearer("acme", "operator")]);
    parts
        .extensions
        .insert(ClientAddr("192.0.2.9".parse().unwrap()));
    parts
        .headers
        .insert("x-request-id", HeaderValue::from_static("req-42"));
    let admission = t.admit(&parts).await.unwrap();
    assert_eq!(admission.request_id(), "req-42");
    t.complete(&admission, StatusCode::ACCEPTED, Duration::from_millis(3));
    let read = t
        .admit(&get("/api/v1/metrics/query", &[bearer("acme", "viewer")]))
        .await
        .unwrap();
    t.complete(&read, StatusCode::OK, Duration::from_millis(1));
    // A refused authentication is audited under the tenant it named.
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
        2,
        "the write and the refused authentication; reads are not audited"
    );
    let refused = &events[0];
    assert_eq!(
        (refused.action.as_str(), refused.outcome),
        ("auth.refused", 401)
    );
    assert_eq!(refused.actor_kind, ActorKind::Anonymous);
    let write = &events[1];
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
async fn exempt_routes_skip_everything() {
    let stores = Arc::new(FailingStore::default());
    let t = Tenancy::builder(base_config().build().unwrap())
        .tenant_store(stores.clone())
        .api_key_store(stores.clone())
        .build()
        .unwrap();
    let mut parts = get("/healthz", &[("x-api-key", "tnk_garbage".into())]);
    parts.extensions.insert(RoutePolicy::exempt());
    let admission = t.admit(&parts).await.unwrap();
    assert!(admission.context().is_none());
    assert_eq!(stores.calls(), 0, "no store is called");
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
        let result = t3.admit(&get("/x", &[bearer("acme", "admin")])).await;
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
                1 => format!("/x?tenant={b}"),
                2 => { headers.push(("host", format!("{b}.example.com"))); "/x".to_owned() }
                _ => { headers.push(("x-tenant-id", b.clone())); format!("/x?tenant={b}") }
            };
            let result = t.admit(&get(&uri, &headers)).await;
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
        .admit(&post(
            "/api/v1/runbooks/r1/trigger",
            &[bearer("acme", "operator")],
        ))
        .await
        .unwrap();
    t.complete(&admission, StatusCode::ACCEPTED, Duration::from_millis(1));
    let ctx = admission.context().unwrap();
    t.record_audit(t.audit_event(ctx, "runbook.trigger"));
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
