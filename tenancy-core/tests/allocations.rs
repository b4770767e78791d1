//! An admitted request on the in-memory stores allocates nothing in the
//! engine: `admit_now`, then `finish` into the answer's header map, counted
//! by a global allocator on this thread once the caches are warm.
//!
//! Every path admits a GET (a write is audited, and its audit event is
//! data that must be kept).

use std::alloc::System;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tenancy_core::admin::NewApiKey;
use tenancy_core::credential::{JwtClaims, encode_hs256};
use tenancy_core::engine::RequestHead;
use tenancy_core::rbac::{ApiKeyScope, Role};
use tenancy_core::secret::Secret;
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::{Tenancy, TenancyConfig};

/// Counts every allocation in the process (this binary holds one test, on
/// a single-threaded runtime, so the count is the engine's).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TENANT: &str = "acme";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const ISSUER: &str = "tenancy-test";

/// The engine and the request headers of one path.
async fn path(name: &str) -> (Tenancy, Vec<(HeaderName, HeaderValue)>) {
    let config = match name {
        "off" => {
            let mut config = TenancyConfig::from_vars([
                ("TENANCY_ENABLED", "false"),
                ("TENANCY_DEFAULT_TENANT", TENANT),
                ("TENANCY_ANONYMOUS_ROLE", "viewer"),
                ("TENANCY_RATE_LIMITS", "false"),
            ])
            .unwrap();
            config.audit.enabled = false;
            config
        }
        "header" | "header_with_request_id" => TenancyConfig::builder()
            .anonymous_role(Role::Viewer)
            .build()
            .unwrap(),
        _ => TenancyConfig::builder()
            .jwt_hs256(ISSUER, SECRET)
            .build()
            .unwrap(),
    };
    let tenancy = Tenancy::builder(config).build().unwrap();
    let id = TenantId::new(TENANT).unwrap();
    tenancy
        .admin()
        .create_tenant(TenantRecord::new(id.clone(), "Acme", "enterprise"))
        .await
        .unwrap();
    let header = |name: &'static str, value: &str| {
        (
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        )
    };
    let headers = match name {
        "off" => Vec::new(),
        "header" => vec![header("x-tenant-id", TENANT)],
        // A proxy's request id, kept: the request's own value, not a copy.
        "header_with_request_id" => vec![
            header("x-tenant-id", TENANT),
            header("x-request-id", "proxy-7f3a-0001"),
        ],
        "api_key" => {
            let new = NewApiKey {
                name: "test".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: Some(1_000),
                expires_at: None,
            };
            let key = tenancy.admin().issue_api_key(&id, new).await.unwrap();
            vec![header("x-api-key", key.secret.expose())]
        }
        _ => {
            let claims = JwtClaims::new(ISSUER, "alice", "operator", Duration::from_secs(3600))
                .with_tenant(TENANT);
            let token = encode_hs256(&Secret::new(SECRET), &claims).unwrap();
            vec![header("authorization", &format!("Bearer {token}"))]
        }
    };
    (tenancy, headers)
}

/// Allocations the engine makes for `requests` admitted requests, after
/// as many to warm its caches.
async fn engine_allocations(
    tenancy: &Tenancy,
    headers: &[(HeaderName, HeaderValue)],
    requests: u64,
) -> u64 {
    let mut request = http::Request::get("/api/v1/things").body(()).unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let (parts, ()) = request.into_parts();
    // The answer's map, with room for what the handler and the engine put
    // in it, as a framework's answer has.
    let mut answer = HeaderMap::with_capacity(8);
    // The first request reads the tenant from its store into the cache.
    let first = tenancy.admit(&RequestHead::from(&parts)).await.unwrap();
    first.finish(StatusCode::OK, |_, _| {});
    let mut run = |n: u64| {
        for _ in 0..n {
            let head = RequestHead::from(&parts);
            let admission = tenancy
                .admit_now(&head)
                .expect("the in-memory stores answer at once")
                .expect("admitted");
            let admitted = admission.admitted();
            assert!(admitted.context().is_some());
            drop(admitted);
            admission.finish(StatusCode::OK, |name, value| {
                answer.insert(name.clone(), value);
            });
            answer.clear();
        }
    };
    run(requests);
    let region = Region::new(ALLOCATOR);
    run(requests);
    let change = region.change();
    (change.allocations + change.reallocations) as u64
}

#[tokio::test]
async fn an_admitted_request_allocates_nothing_in_the_engine() {
    for name in [
        "off",
        "header",
        "header_with_request_id",
        "api_key",
        "hs256",
    ] {
        let (tenancy, headers) = path(name).await;
        let made = engine_allocations(&tenancy, &headers, 500).await;
        assert_eq!(made, 0, "{name}: {made} allocations for 500 requests");
        tenancy.shutdown().await;
    }
}
