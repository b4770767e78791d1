//! The conformance table, the audit handle, opaque failures and excluded
//! routes, through a real axum router with tower's `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use tenancy_axum::extract::{Audit, Quota, RequireRole, RequireScope, Tenant, role, scope};
use tenancy_axum::{RequireRoleLayer, RoutePolicyLayer, TenancyLayer, TenancyRejection};
use tenancy_core::credential::KeyId;
use tenancy_core::engine::Admitted;
use tenancy_core::error::{ErrorKind, TenancyError};
use tenancy_core::rbac::Role;
use tenancy_core::testkit::conformance::{
    self, CaseRequest, Fixture, Observed, audit_route_refusal, context_json, limited_route,
};
use tenancy_core::testkit::faults::FailingStore;
use tenancy_core::{Tenancy, TenancyConfig};
use tower::ServiceExt;

fn app(tenancy: Tenancy) -> Router {
    async fn revoke(
        Extension(admitted): Extension<Admitted>,
        Tenant(ctx): Tenant,
        Path(key_id): Path<String>,
    ) -> Result<StatusCode, TenancyRejection> {
        let key_id = KeyId::new(key_id).map_err(|_| TenancyError::new(ErrorKind::NotFound))?;
        admitted
            .tenancy()
            .admin()
            .revoke_api_key(ctx.tenant_id(), &key_id)
            .await?;
        Ok(StatusCode::NO_CONTENT)
    }
    async fn ingest(quota: Quota) -> Result<(StatusCode, Json<Value>), TenancyRejection> {
        quota.charge("events", 1).await?;
        Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 1}))))
    }
    async fn audited(audit: Audit) -> Result<(), TenancyRejection> {
        audit.record("widget.create", Some("w-1"));
        Err(audit_route_refusal().into())
    }
    Router::new()
        .route("/ctx", get(|Tenant(ctx): Tenant| async move { Json(context_json(&ctx)) }))
        .route(
            "/maybe",
            get(|t: Option<Tenant>| async move {
                Json(json!({"tenant": t.map(|Tenant(ctx)| ctx.tenant_id().to_string())}))
            }),
        )
        .route("/write", post(|_: Tenant| async { Json(json!({"ok": true})) }))
        .route(
            "/admin",
            get(|RequireRole(ctx, ..): RequireRole<role::Admin>| async move { Json(context_json(&ctx)) }),
        )
        .route(
            "/admin-layer",
            get(|Tenant(ctx): Tenant| async move { Json(context_json(&ctx)) })
                .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/readonly",
            get(|RequireScope(ctx, ..): RequireScope<scope::Readonly>| async move {
                Json(context_json(&ctx))
            }),
        )
        .route("/api/v1/telemetry", post(ingest))
        .route("/keys/{key_id}", delete(revoke))
        .route("/audit", post(audited))
        .route(
            "/limited",
            get(|Tenant(ctx): Tenant| async move { Json(context_json(&ctx)) })
                .route_layer(RoutePolicyLayer::new(limited_route())),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(TenancyLayer::new(tenancy).exclude("/healthz"))
}

async fn send(app: &Router, request: &CaseRequest) -> Observed {
    let mut builder = Request::builder()
        .method(request.method.clone())
        .uri(request.uri.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    Observed {
        status: parts.status,
        headers: parts.headers,
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn conformance_table() {
    let suite = conformance::setup().await;
    for fixture in Fixture::ALL {
        let app = app(suite.tenancy(fixture));
        for case in suite.cases(fixture) {
            let observed = send(&app, &case.request).await;
            case.check(&observed);
        }
    }
    suite.check_audit_handle().await;
    suite.shutdown().await;
}

fn config() -> TenancyConfig {
    TenancyConfig::builder()
        .jwt_hs256(conformance::ISSUER, conformance::SECRET)
        .build()
        .unwrap()
}

#[tokio::test]
async fn store_errors_never_reach_a_response() {
    let failing = Arc::new(FailingStore::default());
    let tenancy = FailingStore::engine(&failing, config());
    let app = app(tenancy.clone());
    let (request, other) = conformance::request_with_issued_key(config()).await;
    let observed = send(&app, &request).await;
    conformance::check_store_failure_hidden(&observed);
    assert!(failing.calls() > 0);
    tenancy.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn excluded_routes_call_no_store() {
    let failing = Arc::new(FailingStore::default());
    let tenancy = FailingStore::engine(&failing, config());
    let app = app(tenancy.clone());
    for path in ["/healthz", "/healthz/deep"] {
        let request = CaseRequest {
            method: http::Method::GET,
            uri: path.into(),
            headers: vec![("x-api-key".into(), "tnk_garbage".into())],
        };
        let observed = send(&app, &request).await;
        assert_ne!(observed.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(observed.headers.get("ratelimit-limit").is_none());
    }
    tenancy.flush().await;
    assert_eq!(
        failing.calls(),
        0,
        "no store was called for excluded routes"
    );
    // A tenancy route does reach the stores.
    let request = CaseRequest {
        method: http::Method::GET,
        uri: "/ctx".into(),
        headers: vec![(
            "authorization".into(),
            format!("Bearer {}", conformance::token("acme", "admin", 600)),
        )],
    };
    assert_eq!(
        send(&app, &request).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tenancy.flush().await;
    assert!(failing.calls() > 0);
    tenancy.shutdown().await;
}
