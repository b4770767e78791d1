//! A whole request through each web adapter, bare, layered, and next to the
//! peers a team would reach for instead (targets: BENCHMARKS.md): an axum `Router`
//! called with tower's `oneshot`, and an actix-web `App` called with
//! `actix_web::test::call_service`, for the API key path (a POST: digest,
//! lookup, per-key and per-tenant limiter, metering, audit enqueue) and the
//! HS256 path (a GET with a bearer token).
//!
//! Per adapter and path one group holds:
//!
//! - `bare`: the router or app without any middleware, its handler answering
//!   a small static body;
//! - `tenancy`: the same with the middleware, its handler taking the
//!   `Tenant` extractor; on the HS256 path the verified-token cache answers
//!   every call after the first;
//! - `tenancy_uncached` (HS256 only): the same with `token_cache_capacity =
//!   0`, so every call verifies the signature, as the peers do;
//! - the peers, each answering the same body:
//!   - `axum_hs256`: `hand_jsonwebtoken`, an `axum::middleware::from_fn`
//!     that reads `Authorization: Bearer`, runs `jsonwebtoken::decode` with
//!     the realm's key, issuer and leeway, answers 401 on failure and puts
//!     the claims in the request's extensions, and a handler that takes
//!     them out (`Extension`);
//!   - `axum_api_key`: `tower_governor`, a keyed governor limiter on the
//!     `X-API-Key` value with a quota no loop reaches. It only rate-limits:
//!     the key is never verified, nothing is metered or audited, so it is a
//!     lower bound for what the tenancy layer does on that path;
//!   - `actix_hs256`: `actix_web_httpauth`, `HttpAuthentication::bearer`
//!     whose validator runs the same `jsonwebtoken::decode` and puts the
//!     claims in the request's extensions, and a handler that takes them out
//!     (`ReqData`).
//!
//! Every entry of a group sends the same request, credential header
//! included, so each comparison is a ratio within one run.
//!
//! ```text
//! cargo bench -p tenancy-benches --bench adapters
//! cargo bench -p tenancy-benches --bench adapters -- axum
//! ```
//!
//! axum runs on a current-thread tokio runtime, actix-web on its own
//! `System`; each sample is one `block_on` of a loop of `iters` requests
//! (see `fixture::timed`). Each entry is checked to answer 200 before it is
//! measured, and each peer to refuse what it should refuse.

use crate::fixture;

use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use criterion::measurement::WallTime;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tenancy_core::credential::JwtClaims;
use tenancy_core::{Tenancy, TenancyConfig};

/// The router or app without the middleware.
const BARE: &str = "bare";
/// The same with the middleware and the `Tenant` extractor.
const TENANCY: &str = "tenancy";
/// The same with the verified-token cache off.
const TENANCY_UNCACHED: &str = "tenancy_uncached";
/// axum: a hand-written `jsonwebtoken` middleware.
const HAND_JSONWEBTOKEN: &str = "hand_jsonwebtoken";
/// axum: `tower_governor` keyed on the API key.
const TOWER_GOVERNOR: &str = "tower_governor";
/// actix-web: `actix-web-httpauth` with a `jsonwebtoken` validator.
const ACTIX_WEB_HTTPAUTH: &str = "actix_web_httpauth";

/// The route every request calls.
const PATH: &str = "/api/v1/things";
/// What the handlers answer.
const BODY: &str = "ok";
/// The header the API key travels in.
const API_KEY_HEADER: &str = "x-api-key";
/// The engine's default `auth.leeway_secs`, which the peers use too.
const LEEWAY_SECS: u64 = 30;
/// The engine's default `auth.token_cache_capacity`.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// Which credential a path presents.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ApiKey,
    Hs256,
}

/// One credential path: its name, its kind, whether it is a write, and its
/// header.
struct CredentialPath {
    name: &'static str,
    kind: Kind,
    post: bool,
    header: (&'static str, String),
}

/// An engine with the shared HS256 realm and the bench tenant, its
/// verified-token cache holding `token_cache_capacity` tokens (0: off).
async fn engine(token_cache_capacity: usize) -> Tenancy {
    let mut config = TenancyConfig::builder()
        .jwt_hs256(fixture::HS256_ISSUER, fixture::HS256_SECRET)
        .build()
        .expect("config");
    config.auth.token_cache_capacity = token_cache_capacity;
    let tenancy = Tenancy::builder(config).build().expect("engine");
    fixture::create_tenant(&tenancy).await;
    tenancy
}

/// The engine the `tenancy` entries run (cache on) and the one the
/// `tenancy_uncached` entries run (cache off), and the two paths: a
/// full-scope API key on a POST, an HS256 token on a GET.
async fn engines() -> (Tenancy, Tenancy, [CredentialPath; 2]) {
    let tenancy = engine(TOKEN_CACHE_CAPACITY).await;
    let uncached = engine(0).await;
    let key = fixture::issue_key(&tenancy).await;
    let paths = [
        CredentialPath {
            name: "api_key",
            kind: Kind::ApiKey,
            post: true,
            header: (API_KEY_HEADER, key.secret.expose().to_owned()),
        },
        CredentialPath {
            name: "hs256",
            kind: Kind::Hs256,
            post: false,
            header: (
                "authorization",
                format!("Bearer {}", fixture::hs256_token()),
            ),
        },
    ];
    (tenancy, uncached, paths)
}

/// What the hand-written HS256 checks hold: the realm's secret and the
/// rules the engine applies to an HS256 token of that realm (algorithm,
/// issuer, `exp` required, `exp` and `nbf` with the engine's leeway).
struct Hs256Check {
    key: DecodingKey,
    validation: Validation,
}

impl Hs256Check {
    fn new() -> Arc<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[fixture::HS256_ISSUER]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Arc::new(Self {
            key: DecodingKey::from_secret(fixture::HS256_SECRET.as_bytes()),
            validation,
        })
    }

    /// The claims of `token`, or why it is refused.
    fn decode(&self, token: &str) -> jsonwebtoken::errors::Result<JwtClaims> {
        jsonwebtoken::decode::<JwtClaims>(token, &self.key, &self.validation).map(|t| t.claims)
    }
}

/// An HS256 token of the shared realm signed with another secret.
fn forged_token() -> String {
    let claims = fixture::claims(fixture::HS256_ISSUER);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-realm-secret-0123456789ab"),
    )
    .expect("sign")
}

/// Checks that the hand-written checks accept the bench token and read the
/// bench tenant from it.
fn assert_decodes(check: &Hs256Check, path: &CredentialPath) {
    let token = path.header.1.strip_prefix("Bearer ").expect("bearer");
    let claims = check.decode(token).expect("the bench token verifies");
    assert_eq!(claims.tenant_id.as_deref(), Some(fixture::TENANT));
}

type Group<'a> = criterion::BenchmarkGroup<'a, WallTime>;

mod axum_router {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Extension, Router};
    use http::header::AUTHORIZATION;
    use http::{Method, StatusCode};
    use tenancy_axum::{TenancyLayer, Tenant};
    use tokio::runtime::Runtime;
    use tower::ServiceExt;
    use tower_governor::GovernorError;
    use tower_governor::GovernorLayer;
    use tower_governor::governor::GovernorConfigBuilder;
    use tower_governor::key_extractor::KeyExtractor;

    use super::*;

    async fn bare_handler() -> &'static str {
        BODY
    }

    async fn tenant_handler(Tenant(ctx): Tenant) -> &'static str {
        black_box(ctx);
        BODY
    }

    /// The hand-written HS256 middleware: bearer token, `decode`, 401 on
    /// failure, claims into the extensions.
    async fn hand_jwt(
        State(check): State<Arc<Hs256Check>>,
        mut request: Request,
        next: Next,
    ) -> Response {
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(Ok(claims)) = token.map(|t| check.decode(t)) else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        request.extensions_mut().insert(claims);
        next.run(request).await
    }

    async fn claims_handler(Extension(claims): Extension<JwtClaims>) -> &'static str {
        black_box(claims);
        BODY
    }

    /// `tower_governor`'s key: the `X-API-Key` value as it arrives. Nothing
    /// checks that the key exists.
    #[derive(Clone)]
    struct ApiKeyExtractor;

    impl KeyExtractor for ApiKeyExtractor {
        type Key = String;

        fn extract<T>(&self, req: &http::Request<T>) -> Result<String, GovernorError> {
            req.headers()
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or(GovernorError::UnableToExtractKey)
        }
    }

    /// One request through `app`; its status.
    async fn call(app: &Router, path: &CredentialPath) -> StatusCode {
        call_with(app, path, path.header.1.as_str()).await
    }

    /// One request through `app` with `value` in the credential header.
    async fn call_with(app: &Router, path: &CredentialPath, value: &str) -> StatusCode {
        let method = if path.post { Method::POST } else { Method::GET };
        let request = http::Request::builder()
            .method(method)
            .uri(PATH)
            .header(path.header.0, value)
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
        let (tenancy, uncached, paths) = rt.block_on(engines());
        let layered = |tenancy: &Tenancy| {
            Router::new()
                .route(PATH, get(tenant_handler).post(tenant_handler))
                .layer(TenancyLayer::new(tenancy.clone()))
        };
        let bare = Router::new().route(PATH, get(bare_handler).post(bare_handler));
        let cached_app = layered(&tenancy);
        let uncached_app = layered(&uncached);

        let check = Hs256Check::new();
        let hand_jsonwebtoken = Router::new()
            .route(PATH, get(claims_handler))
            .layer(middleware::from_fn_with_state(Arc::clone(&check), hand_jwt));

        // A quota no loop reaches: one cell per nanosecond (governor's
        // finest), bursts as deep as the tenancy key's own limit.
        let governor = Arc::new(
            GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(fixture::UNREACHABLE_RPS)
                .key_extractor(ApiKeyExtractor)
                .finish()
                .expect("governor config"),
        );
        let tower_governor = Router::new()
            .route(PATH, get(bare_handler).post(bare_handler))
            .layer(GovernorLayer::new(Arc::clone(&governor)));

        for path in &paths {
            let ok = |app: &Router, id: &str| {
                assert_eq!(rt.block_on(call(app, path)), StatusCode::OK, "{id}");
            };
            ok(&bare, BARE);
            ok(&cached_app, TENANCY);
            match path.kind {
                Kind::Hs256 => {
                    ok(&uncached_app, TENANCY_UNCACHED);
                    assert_decodes(&check, path);
                    // 200: the handler's `Extension` found the claims.
                    ok(&hand_jsonwebtoken, HAND_JSONWEBTOKEN);
                    let forged = format!("Bearer {}", forged_token());
                    let status = rt.block_on(call_with(&hand_jsonwebtoken, path, &forged));
                    assert_eq!(status, StatusCode::UNAUTHORIZED);
                }
                Kind::ApiKey => {
                    // The limiter is keyed on the header's value: one key
                    // per distinct value.
                    assert!(governor.limiter().is_empty());
                    ok(&tower_governor, TOWER_GOVERNOR);
                    assert_eq!(governor.limiter().len(), 1);
                    let other = rt.block_on(call_with(&tower_governor, path, "another-key"));
                    assert_eq!(other, StatusCode::OK);
                    assert_eq!(governor.limiter().len(), 2);
                }
            }

            let mut group = c.benchmark_group(format!("axum_{}", path.name));
            bench_one(&mut group, BARE, &rt, None, &bare, path);
            bench_one(&mut group, TENANCY, &rt, Some(&tenancy), &cached_app, path);
            match path.kind {
                Kind::Hs256 => {
                    let uncached_engine = Some(&uncached);
                    let id = TENANCY_UNCACHED;
                    bench_one(&mut group, id, &rt, uncached_engine, &uncached_app, path);
                    let id = HAND_JSONWEBTOKEN;
                    bench_one(&mut group, id, &rt, None, &hand_jsonwebtoken, path);
                }
                Kind::ApiKey => {
                    bench_one(&mut group, TOWER_GOVERNOR, &rt, None, &tower_governor, path);
                    // The quota held: the key is still admitted.
                    ok(&tower_governor, TOWER_GOVERNOR);
                    assert_eq!(governor.limiter().len(), 2);
                }
            }
            group.finish();
        }
        for engine in [&tenancy, &uncached] {
            fixture::assert_nothing_dropped(engine);
            rt.block_on(engine.shutdown());
        }
    }

    fn bench_one(
        group: &mut Group<'_>,
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
    use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
    use actix_web::http::StatusCode;
    use actix_web::rt::{System, SystemRunner};
    use actix_web::test::{self, TestRequest};
    use actix_web::{App, HttpMessage, web};
    use actix_web_httpauth::extractors::bearer::BearerAuth;
    use actix_web_httpauth::middleware::HttpAuthentication;
    use tenancy_actix::{TenancyMiddleware, Tenant};

    use super::*;

    async fn bare_handler() -> &'static str {
        BODY
    }

    async fn tenant_handler(Tenant(ctx): Tenant) -> &'static str {
        black_box(ctx);
        BODY
    }

    async fn claims_handler(claims: web::ReqData<JwtClaims>) -> &'static str {
        black_box(claims.into_inner());
        BODY
    }

    /// The test request of `path` with `value` in its credential header.
    fn request(path: &CredentialPath, value: &str) -> TestRequest {
        let request = if path.post {
            TestRequest::post()
        } else {
            TestRequest::get()
        };
        request.uri(PATH).insert_header((path.header.0, value))
    }

    /// The status of one request through `app`; `R` is actix-web's request
    /// type, which `TestRequest::to_request` makes.
    async fn call<S, R, B>(app: &S, request: R) -> StatusCode
    where
        S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    {
        test::call_service(app, request).await.status()
    }

    /// The status of one request through `app`, outside any measurement.
    fn status_of<S, R, B>(system: &SystemRunner, app: &S, request: R) -> StatusCode
    where
        S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    {
        system.block_on(call(app, request))
    }

    pub(super) fn bench(c: &mut Criterion) {
        let system = System::new();
        let (tenancy, uncached, paths) = system.block_on(engines());
        let bare = system.block_on(test::init_service(
            App::new().route(PATH, web::route().to(bare_handler)),
        ));
        let layered = |tenancy: &Tenancy| {
            system.block_on(test::init_service(
                App::new()
                    .wrap(TenancyMiddleware::new(tenancy.clone()))
                    .route(PATH, web::route().to(tenant_handler)),
            ))
        };
        let cached_app = layered(&tenancy);
        let uncached_app = layered(&uncached);

        let check = Hs256Check::new();
        let validator_check = Arc::clone(&check);
        let validator = move |req: ServiceRequest, credentials: BearerAuth| {
            let check = Arc::clone(&validator_check);
            async move {
                match check.decode(credentials.token()) {
                    Ok(claims) => {
                        req.extensions_mut().insert(claims);
                        Ok(req)
                    }
                    Err(_) => Err((actix_web::error::ErrorUnauthorized("invalid token"), req)),
                }
            }
        };
        let httpauth = system.block_on(test::init_service(
            App::new()
                .wrap(HttpAuthentication::bearer(validator))
                .route(PATH, web::route().to(claims_handler)),
        ));

        for path in &paths {
            let value = path.header.1.as_str();
            let make = || request(path, value).to_request();
            let ok = |status: StatusCode, id: &str| {
                assert_eq!(status, StatusCode::OK, "{} {id}", path.name);
            };
            ok(status_of(&system, &bare, make()), BARE);
            ok(status_of(&system, &cached_app, make()), TENANCY);
            if path.kind == Kind::Hs256 {
                ok(status_of(&system, &uncached_app, make()), TENANCY_UNCACHED);
                assert_decodes(&check, path);
                // 200: the handler's `ReqData` found the claims.
                ok(status_of(&system, &httpauth, make()), ACTIX_WEB_HTTPAUTH);
                let forged = format!("Bearer {}", forged_token());
                assert_eq!(
                    status_of(&system, &httpauth, request(path, &forged).to_request()),
                    StatusCode::UNAUTHORIZED
                );
            }

            let mut group = c.benchmark_group(format!("actix_{}", path.name));
            let engine = Some(&tenancy);
            bench_one(&mut group, BARE, &system, None, &bare, make);
            bench_one(&mut group, TENANCY, &system, engine, &cached_app, make);
            if path.kind == Kind::Hs256 {
                let (id, engine) = (TENANCY_UNCACHED, Some(&uncached));
                bench_one(&mut group, id, &system, engine, &uncached_app, make);
                let id = ACTIX_WEB_HTTPAUTH;
                bench_one(&mut group, id, &system, None, &httpauth, make);
            }
            group.finish();
        }
        for engine in [&tenancy, &uncached] {
            fixture::assert_nothing_dropped(engine);
            system.block_on(engine.shutdown());
        }
    }

    /// Measures `app` answering the requests `make` builds.
    fn bench_one<S, R, B>(
        group: &mut Group<'_>,
        id: &str,
        system: &SystemRunner,
        tenancy: Option<&Tenancy>,
        app: &S,
        make: impl Fn() -> R,
    ) where
        S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                system.block_on(fixture::timed(iters, tenancy, async || {
                    call(app, make()).await
                }))
            });
        });
    }
}

/// Runs the `adapters` groups.
pub(crate) fn run() {
    let mut criterion = fixture::criterion();
    axum_router::bench(&mut criterion);
    actix_app::bench(&mut criterion);
    criterion.final_summary();
}
