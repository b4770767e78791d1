//! The conformance table, the audit handle, opaque failures and excluded
//! routes, through a real actix-web `App` with `actix_web::test`; and the
//! refusals' bytes against [`TenancyError::to_response`], the function the
//! axum adapter answers with.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::{App, HttpResponse, ResponseError, test, web};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};
use tenancy_actix::extract::{Audit, Quota, RequireRole, RequireScope, Tenant, role, scope};
use tenancy_actix::{
    RequireRoleMiddleware, RoutePolicyMiddleware, TenancyMiddleware, TenancyRejection,
};
use tenancy_core::TenancyConfig;
use tenancy_core::audit::AuditFilter;
use tenancy_core::credential::KeyId;
use tenancy_core::engine::Admitted;
use tenancy_core::error::{ErrorKind, TenancyError, TokenRejection};
use tenancy_core::limit::RateLimitStatus;
use tenancy_core::rbac::Role;
use tenancy_core::testkit::conformance::{
    self, CaseRequest, Fixture, Observed, audit_route_refusal, context_json, limited_route,
};
use tenancy_core::testkit::faults::FailingStore;

fn routes(cfg: &mut web::ServiceConfig) {
    async fn ctx(Tenant(ctx): Tenant) -> web::Json<Value> {
        web::Json(context_json(&ctx))
    }
    async fn maybe(t: Option<Tenant>) -> web::Json<Value> {
        web::Json(json!({"tenant": t.map(|Tenant(ctx)| ctx.tenant_id().to_string())}))
    }
    async fn write(_: Tenant) -> web::Json<Value> {
        web::Json(json!({"ok": true}))
    }
    async fn admin(RequireRole(ctx, ..): RequireRole<role::Admin>) -> web::Json<Value> {
        web::Json(context_json(&ctx))
    }
    async fn readonly(RequireScope(ctx, ..): RequireScope<scope::Readonly>) -> web::Json<Value> {
        web::Json(context_json(&ctx))
    }
    async fn ingest(quota: Quota) -> Result<HttpResponse, TenancyRejection> {
        quota.charge("events", 1).await?;
        Ok(HttpResponse::Accepted().json(json!({"accepted": 1})))
    }
    async fn revoke(
        admitted: web::ReqData<Admitted>,
        Tenant(ctx): Tenant,
        key_id: web::Path<String>,
    ) -> Result<HttpResponse, TenancyRejection> {
        let key_id =
            KeyId::new(key_id.into_inner()).map_err(|_| TenancyError::new(ErrorKind::NotFound))?;
        admitted
            .tenancy()
            .admin()
            .revoke_api_key(ctx.tenant_id(), &key_id)
            .await?;
        Ok(HttpResponse::NoContent().finish())
    }
    async fn audited(audit: Audit) -> Result<HttpResponse, TenancyRejection> {
        audit.record("widget.create", Some("w-1"));
        Err(audit_route_refusal().into())
    }
    cfg.route("/ctx", web::get().to(ctx))
        .route("/maybe", web::get().to(maybe))
        .route("/write", web::post().to(write))
        .route("/admin", web::get().to(admin))
        .service(
            web::resource("/admin-layer")
                .wrap(RequireRoleMiddleware::new(Role::Admin))
                .route(web::get().to(ctx)),
        )
        .route("/readonly", web::get().to(readonly))
        .route("/api/v1/telemetry", web::post().to(ingest))
        .route("/keys/{key_id}", web::delete().to(revoke))
        .route("/audit", web::post().to(audited))
        .service(
            web::resource("/limited")
                .wrap(RoutePolicyMiddleware::new(limited_route()))
                .route(web::get().to(ctx)),
        )
        .route("/healthz", web::get().to(|| async { "ok" }));
}

macro_rules! app {
    ($tenancy:expr) => {
        test::init_service(
            App::new()
                .wrap(TenancyMiddleware::new($tenancy).exclude("/healthz"))
                .configure(routes),
        )
        .await
    };
}

fn test_request(request: &CaseRequest) -> test::TestRequest {
    let method = actix_web::http::Method::from_bytes(request.method.as_str().as_bytes()).unwrap();
    let mut builder = test::TestRequest::default()
        .method(method)
        .uri(&request.uri);
    for (name, value) in &request.headers {
        builder = builder.append_header((name.as_str(), value.as_str()));
    }
    builder
}

fn http_headers(headers: &actix_web::http::header::HeaderMap) -> HeaderMap {
    let mut converted = HeaderMap::new();
    for (name, value) in headers.iter() {
        converted.append(
            HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    converted
}

async fn observe<B: MessageBody>(response: ServiceResponse<B>) -> Observed {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = http_headers(response.headers());
    let body = test::read_body(response).await;
    Observed {
        status,
        headers,
        body: body.to_vec(),
    }
}

/// Sends a [`CaseRequest`] through an initialised app and observes the answer.
macro_rules! send {
    ($app:expr, $request:expr) => {
        observe(test::call_service($app, test_request($request).to_request()).await).await
    };
}

fn get(uri: &str, headers: &[(&str, &str)]) -> CaseRequest {
    CaseRequest {
        method: Method::GET,
        uri: uri.into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[actix_web::test]
async fn conformance_table() {
    let suite = conformance::setup().await;
    for fixture in Fixture::ALL {
        let app = app!(suite.tenancy(fixture));
        for case in suite.cases(fixture) {
            let observed = send!(&app, &case.request);
            case.check(&observed);
        }
    }
    suite.check_audit_handle().await;
    suite.shutdown().await;
}

/// Status, every header but the request id, and the body bytes of
/// `observed` are those of `expected`.
fn assert_same(name: &str, observed: &Observed, expected: &http::Response<Vec<u8>>) {
    assert_eq!(observed.status, expected.status(), "{name}: status");
    // An answer to a request carries its request id (the conformance table
    // checks it), which the core's bare refusal does not know.
    let mut headers = observed.headers.clone();
    headers.remove("x-request-id");
    assert_eq!(&headers, expected.headers(), "{name}: headers");
    assert_eq!(
        observed.body,
        *expected.body(),
        "{name}: body {}",
        String::from_utf8_lossy(&observed.body)
    );
}

#[actix_web::test]
async fn refusals_are_the_core_responses_byte_for_byte() {
    let suite = conformance::setup().await;
    let app = app!(suite.tenancy(Fixture::Standard));
    let admin = format!("Bearer {}", conformance::token("acme", "admin", 600));
    for (name, request, error) in [
        (
            "unauthenticated",
            get("/ctx", &[]),
            ErrorKind::Unauthenticated,
        ),
        (
            "invalid_token",
            get("/ctx", &[("authorization", "Bearer not.a.jwt")]),
            ErrorKind::InvalidToken(TokenRejection::Malformed),
        ),
        (
            "tenant_mismatch",
            get(
                "/ctx",
                &[("authorization", &admin), ("x-tenant-id", "globex")],
            ),
            ErrorKind::TenantMismatch,
        ),
    ] {
        let observed = send!(&app, &request);
        assert_same(name, &observed, &TenancyError::new(error).to_response());
    }

    // rate_limited: the limited key's second request. Its reset and
    // retry-after depend on the clock, so the expected answer takes them
    // from the observed one; everything else must match exactly.
    let cases = suite.cases(Fixture::Standard);
    let limited = &cases
        .iter()
        .find(|c| c.name == "limited key, second request")
        .expect("the table has a rate-limited case")
        .request;
    assert_eq!(send!(&app, limited).status, StatusCode::OK);
    let observed = send!(&app, limited);
    let seconds = |header: &str| {
        let value = observed
            .headers
            .get(header)
            .unwrap_or_else(|| panic!("{header} missing"));
        Duration::from_secs(value.to_str().unwrap().parse().unwrap())
    };
    let status = RateLimitStatus {
        limit: 1,
        remaining: 0,
        reset: seconds("ratelimit-reset"),
        retry_after: seconds("retry-after"),
    };
    let expected = TenancyError::new(ErrorKind::RateLimited(status)).to_response();
    assert_same("rate_limited", &observed, &expected);
    suite.shutdown().await;
}

#[actix_web::test]
async fn rejection_response_is_the_core_response() {
    let rate = RateLimitStatus {
        limit: 10,
        remaining: 0,
        reset: Duration::from_millis(1500),
        retry_after: Duration::from_millis(100),
    };
    for kind in [
        ErrorKind::Unauthenticated,
        ErrorKind::InvalidToken(TokenRejection::Signature),
        ErrorKind::TokenExpired,
        ErrorKind::TenantMismatch,
        ErrorKind::RateLimited(rate),
        ErrorKind::QuotaExceeded {
            budget: "events".into(),
            retry_after: Some(Duration::from_secs(30)),
        },
        ErrorKind::InsufficientRole {
            required: Role::Admin,
        },
        ErrorKind::Internal("secret detail".into()),
    ] {
        let error = TenancyError::new(kind);
        let expected = error.to_response();
        let rejection = TenancyRejection(error);
        assert_eq!(rejection.status_code().as_u16(), expected.status().as_u16());
        let response = rejection.error_response();
        let observed = Observed {
            status: StatusCode::from_u16(response.status().as_u16()).unwrap(),
            headers: http_headers(response.headers()),
            body: response.into_body().try_into_bytes().unwrap().to_vec(),
        };
        assert_same(rejection.0.code(), &observed, &expected);
    }
}

#[actix_web::test]
async fn missing_tenant_and_missing_middleware() {
    let suite = conformance::setup().await;
    // Admitted without a tenant: the per-route role asks for one.
    let app = app!(suite.tenancy(Fixture::Optional));
    let observed = send!(&app, &get("/admin-layer", &[]));
    assert_eq!(observed.status, StatusCode::BAD_REQUEST);
    let problem: Value = serde_json::from_slice(&observed.body).unwrap();
    assert_eq!(problem["code"], "tenant_required");
    // Without the middleware, the extractors and the per-route role answer
    // an opaque internal error.
    let bare = test::init_service(App::new().configure(routes)).await;
    for path in ["/ctx", "/admin", "/admin-layer"] {
        let observed = send!(&bare, &get(path, &[]));
        assert_eq!(observed.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let body = String::from_utf8(observed.body).unwrap();
        assert!(!body.contains("TenancyMiddleware"), "{path}: {body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "internal_error", "{path}");
    }
    suite.shutdown().await;
}

#[actix_web::test]
async fn peer_address_and_request_id_reach_the_audit_log() {
    let suite = conformance::setup().await;
    let tenancy = suite.tenancy(Fixture::Standard);
    let app = app!(tenancy.clone());
    let admin = format!("Bearer {}", conformance::token("acme", "admin", 600));
    let request = test::TestRequest::post()
        .uri("/write")
        .insert_header(("authorization", admin))
        .insert_header(("x-request-id", "req-42"))
        .peer_addr("192.0.2.7:50000".parse().unwrap())
        .to_request();
    assert_eq!(test::call_service(&app, request).await.status(), 200);
    tenancy.flush().await;
    let acme = tenancy_core::tenant::TenantId::new("acme").unwrap();
    let events = tenancy
        .audit_query()
        .unwrap()
        .query(&acme, &AuditFilter::default().action("http.post"))
        .await
        .unwrap();
    let event = events
        .iter()
        .find(|e| e.resource.as_deref() == Some("/write"))
        .expect("the write is audited");
    assert_eq!(event.client_addr, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(event.request_id.as_deref(), Some("req-42"));
    assert_eq!(event.outcome, 200);
    suite.shutdown().await;
}

fn config() -> TenancyConfig {
    TenancyConfig::builder()
        .jwt_hs256(conformance::ISSUER, conformance::SECRET)
        .build()
        .unwrap()
}

#[actix_web::test]
async fn store_errors_never_reach_a_response() {
    let failing = Arc::new(FailingStore::default());
    let tenancy = FailingStore::engine(&failing, config());
    let app = app!(tenancy.clone());
    let (request, other) = conformance::request_with_issued_key(config()).await;
    let observed = send!(&app, &request);
    conformance::check_store_failure_hidden(&observed);
    assert!(failing.calls() > 0);
    tenancy.shutdown().await;
    other.shutdown().await;
}

#[actix_web::test]
async fn excluded_routes_call_no_store() {
    let failing = Arc::new(FailingStore::default());
    let tenancy = FailingStore::engine(&failing, config());
    let app = app!(tenancy.clone());
    for path in ["/healthz", "/healthz/deep"] {
        let request = CaseRequest {
            method: Method::GET,
            uri: path.into(),
            headers: vec![("x-api-key".into(), "tnk_garbage".into())],
        };
        let observed = send!(&app, &request);
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
        method: Method::GET,
        uri: "/ctx".into(),
        headers: vec![(
            "authorization".into(),
            format!("Bearer {}", conformance::token("acme", "admin", 600)),
        )],
    };
    assert_eq!(
        send!(&app, &request).status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tenancy.flush().await;
    assert!(failing.calls() > 0);
    tenancy.shutdown().await;
}
