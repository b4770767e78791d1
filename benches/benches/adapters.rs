//! A whole request through each web adapter, bare and layered (DESIGN.md
//! §7): an axum `Router` called with tower's `oneshot`, and an actix-web
//! `App` called with `actix_web::test::call_service`, for the API key path
//! (a POST: digest, lookup, per-key and per-tenant limiter, metering, audit
//! enqueue) and the HS256 path (a GET with a bearer token).
//!
//! Per adapter and path one group holds `bare` (the router or app without
//! the middleware, its handler answering a small static body) and `tenancy`
//! (the same with the middleware, its handler taking the `Tenant`
//! extractor). Both send the same request, credential header included.
//!
//! ```text
//! cargo bench -p tenancy-benches --bench adapters
//! cargo bench -p tenancy-benches --bench adapters -- axum
//! ```
//!
//! axum runs on a current-thread tokio runtime, actix-web on its own
//! `System`; each sample is one `block_on` of a loop of `iters` requests
//! (see `fixture::timed`). Each path is checked to answer 200 before it is
//! measured.

mod fixture;

use std::hint::black_box;

use criterion::Criterion;
use tenancy_core::{Tenancy, TenancyConfig};

/// The router or app without the middleware.
const BARE: &str = "bare";
/// The same with the middleware and the `Tenant` extractor.
const TENANCY: &str = "tenancy";

/// The route every request calls.
const PATH: &str = "/api/v1/things";
/// What the handlers answer.
const BODY: &str = "ok";

/// One credential path: its name, whether it is a write, and its header.
struct CredentialPath {
    name: &'static str,
    post: bool,
    header: (&'static str, String),
}

/// An engine with the shared HS256 realm and the bench tenant, and the two
/// paths: a full-scope API key on a POST, an HS256 token on a GET.
async fn engine() -> (Tenancy, [CredentialPath; 2]) {
    let config = TenancyConfig::builder()
        .jwt_hs256(fixture::HS256_ISSUER, fixture::HS256_SECRET)
        .build()
        .expect("config");
    let tenancy = Tenancy::builder(config).build().expect("engine");
    fixture::create_tenant(&tenancy).await;
    let key = fixture::issue_key(&tenancy).await;
    let paths = [
        CredentialPath {
            name: "api_key",
            post: true,
            header: ("x-api-key", key.secret.expose().to_owned()),
        },
        CredentialPath {
            name: "hs256",
            post: false,
            header: (
                "authorization",
                format!("Bearer {}", fixture::hs256_token()),
            ),
        },
    ];
    (tenancy, paths)
}

mod axum_router {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Method, Request, StatusCode};
    use tenancy_axum::{TenancyLayer, Tenant};
    use tokio::runtime::Runtime;
    use tower::ServiceExt;

    use super::*;

    async fn bare_handler() -> &'static str {
        BODY
    }

    async fn tenant_handler(Tenant(ctx): Tenant) -> &'static str {
        black_box(ctx);
        BODY
    }

    /// One request through `app`; its status.
    async fn call(app: &Router, path: &CredentialPath) -> StatusCode {
        let method = if path.post { Method::POST } else { Method::GET };
        let request = Request::builder()
            .method(method)
            .uri(PATH)
            .header(path.header.0, path.header.1.as_str())
            .body(Body::empty())
            .expect("valid request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        response.status()
    }

    pub(super) fn bench(c: &mut Criterion) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tenancy, paths) = rt.block_on(engine());
        let bare = Router::new().route(PATH, get(bare_handler).post(bare_handler));
        let layered = Router::new()
            .route(PATH, get(tenant_handler).post(tenant_handler))
            .layer(TenancyLayer::new(tenancy.clone()));
        for path in &paths {
            assert_eq!(rt.block_on(call(&bare, path)), StatusCode::OK);
            assert_eq!(rt.block_on(call(&layered, path)), StatusCode::OK);
            let mut group = c.benchmark_group(format!("axum_{}", path.name));
            bench_one(&mut group, BARE, &rt, None, &bare, path);
            bench_one(&mut group, TENANCY, &rt, Some(&tenancy), &layered, path);
            group.finish();
        }
        fixture::assert_nothing_dropped(&tenancy);
        rt.block_on(tenancy.shutdown());
    }

    fn bench_one(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        id: &str,
        rt: &Runtime,
        tenancy: Option<&Tenancy>,
        app: &Router,
        path: &CredentialPath,
    ) {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(fixture::timed(iters, tenancy, async || {
                    call(app, path).await
                }))
            });
        });
    }
}

mod actix_app {
    use actix_web::http::StatusCode;
    use actix_web::rt::System;
    use actix_web::test::{self, TestRequest};
    use actix_web::{App, web};
    use tenancy_actix::{TenancyMiddleware, Tenant};

    use super::*;

    async fn bare_handler() -> &'static str {
        BODY
    }

    async fn tenant_handler(Tenant(ctx): Tenant) -> &'static str {
        black_box(ctx);
        BODY
    }

    /// The test request of `path`.
    fn request(path: &CredentialPath) -> TestRequest {
        let request = if path.post {
            TestRequest::post()
        } else {
            TestRequest::get()
        };
        request
            .uri(PATH)
            .insert_header((path.header.0, path.header.1.as_str()))
    }

    pub(super) fn bench(c: &mut Criterion) {
        let system = System::new();
        let (tenancy, paths) = system.block_on(engine());
        let bare = system.block_on(test::init_service(
            App::new().route(PATH, web::route().to(bare_handler)),
        ));
        let layered = system.block_on(test::init_service(
            App::new()
                .wrap(TenancyMiddleware::new(tenancy.clone()))
                .route(PATH, web::route().to(tenant_handler)),
        ));
        for path in &paths {
            let status = |status: StatusCode| assert_eq!(status, StatusCode::OK, "{}", path.name);
            status(
                system
                    .block_on(test::call_service(&bare, request(path).to_request()))
                    .status(),
            );
            status(
                system
                    .block_on(test::call_service(&layered, request(path).to_request()))
                    .status(),
            );

            let mut group = c.benchmark_group(format!("actix_{}", path.name));
            group.bench_function(BARE, |b| {
                b.iter_custom(|iters| {
                    system.block_on(fixture::timed(iters, None, async || {
                        test::call_service(&bare, request(path).to_request())
                            .await
                            .status()
                    }))
                });
            });
            group.bench_function(TENANCY, |b| {
                b.iter_custom(|iters| {
                    system.block_on(fixture::timed(iters, Some(&tenancy), async || {
                        test::call_service(&layered, request(path).to_request())
                            .await
                            .status()
                    }))
                });
            });
            group.finish();
        }
        fixture::assert_nothing_dropped(&tenancy);
        system.block_on(tenancy.shutdown());
    }
}

fn main() {
    if !fixture::under_cargo_bench() {
        eprintln!("adapters: run with `cargo bench`; skipped");
        return;
    }
    let mut criterion = fixture::criterion();
    axum_router::bench(&mut criterion);
    actix_app::bench(&mut criterion);
    criterion.final_summary();
}
