//! Sends `REQUESTS` requests of one kind through one front end, in process,
//! so that `benches/instructions.sh` can count the instructions they take
//! under callgrind.
//!
//! ```text
//! instructions <axum|actix|engine> <path> <requests>
//! ```
//!
//! `engine` calls the engine as the adapters do, without a framework:
//! `admit_now` (else `admit`) on the request's head, then `finish` into a
//! header map; its `bare` builds the same request and does nothing else.
//!
//! Paths (every one answers the same `hello` handler):
//!
//! - `bare`: the router or app without the middleware;
//! - `noop`: the router or app with a pass-through middleware (axum:
//!   `MapRequestLayer` with the identity; actix: `DefaultHeaders` with no
//!   header): what adding any middleware costs, through `Router::layer` or
//!   `App::wrap`;
//! - `off`: the middleware with every feature off (tenancy disabled, a
//!   default tenant, anonymous viewers, no rate limits, no audit);
//! - `header`: an anonymous viewer naming its tenant in `X-Tenant-ID`,
//!   tenant rate limit on;
//! - `api_key`: a GET with a full-scope key with its own rate limit;
//! - `api_key_write`: the same as a POST, so it is audited;
//! - `hs256`: a GET with an HS256 bearer token, the verified-token cache on;
//! - `hs256_uncached`: the same with the cache off.
//!
//! Before the counted requests, 50 of the same kind warm every cache; at the
//! end the engine's buffers are written out, so batched work is counted
//! with the requests that caused it. The script runs each path twice with
//! different counts and divides the difference, so start-up cancels out.

use std::process::ExitCode;
use std::time::Duration;

use http::{Method, StatusCode};
use tenancy_core::admin::NewApiKey;
use tenancy_core::credential::{JwtClaims, encode_hs256};
use tenancy_core::rbac::{ApiKeyScope, Role};
use tenancy_core::secret::Secret;
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::{Tenancy, TenancyConfig};

const TENANT: &str = "bench";
const PATH: &str = "/api/v1/things";
const WARM_UP: u64 = 50;
const HS256_ISSUER: &str = "tenancy-bench";
const HS256_SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The tenant's and the key's rate: a plan's size (below 10,000, so its
/// `RateLimit-*` values are shared, not formatted), and a burst no run of
/// this program reaches (2,250 requests at most, under callgrind's
/// slowdown).
const UNREACHABLE_RPS: u32 = 9_000;

async fn hello() -> &'static str {
    "hello"
}

/// What one path sends, and the engine that admits it (`None`: bare).
struct Setup {
    method: Method,
    headers: Vec<(&'static str, String)>,
    tenancy: Option<Tenancy>,
}

async fn setup(path: &str) -> Result<Setup, String> {
    let config = match path {
        "bare" | "noop" => {
            return Ok(Setup {
                method: Method::GET,
                headers: Vec::new(),
                tenancy: None,
            });
        }
        "off" => {
            let mut config = TenancyConfig::from_vars([
                ("TENANCY_ENABLED", "false"),
                ("TENANCY_DEFAULT_TENANT", TENANT),
                ("TENANCY_ANONYMOUS_ROLE", "viewer"),
                ("TENANCY_RATE_LIMITS", "false"),
            ])
            .map_err(|e| e.to_string())?;
            config.audit.enabled = false;
            config
        }
        "header" => TenancyConfig::builder()
            .anonymous_role(Role::Viewer)
            .build()
            .map_err(|e| e.to_string())?,
        "api_key" | "api_key_write" | "hs256" | "hs256_uncached" => {
            let mut config = TenancyConfig::builder()
                .jwt_hs256(HS256_ISSUER, HS256_SECRET)
                .build()
                .map_err(|e| e.to_string())?;
            if path == "hs256_uncached" {
                config.auth.token_cache_capacity = 0;
            }
            config
        }
        other => return Err(format!("unknown path {other:?}")),
    };
    let tenancy = Tenancy::builder(config)
        .build()
        .map_err(|e| e.to_string())?;
    let id = TenantId::new(TENANT).map_err(|e| e.to_string())?;
    let mut tenant = TenantRecord::new(id.clone(), "Bench", "enterprise");
    tenant.settings.quota_overrides.rps = Some(UNREACHABLE_RPS);
    tenancy
        .admin()
        .create_tenant(tenant)
        .await
        .map_err(|e| e.to_string())?;
    let (method, headers) = match path {
        "off" => (Method::GET, Vec::new()),
        "header" => (Method::GET, vec![("x-tenant-id", TENANT.to_owned())]),
        "api_key" | "api_key_write" => {
            let new = NewApiKey {
                name: "bench".into(),
                scope: ApiKeyScope::Full,
                rate_limit_rps: Some(UNREACHABLE_RPS),
                expires_at: None,
            };
            let key = tenancy
                .admin()
                .issue_api_key(&id, new)
                .await
                .map_err(|e| e.to_string())?;
            let method = if path == "api_key" {
                Method::GET
            } else {
                Method::POST
            };
            (method, vec![("x-api-key", key.secret.expose().to_owned())])
        }
        _ => {
            let claims = JwtClaims::new(
                HS256_ISSUER,
                "alice",
                "operator",
                Duration::from_secs(6 * 3600),
            )
            .with_tenant(TENANT);
            let token =
                encode_hs256(&Secret::new(HS256_SECRET), &claims).map_err(|e| e.to_string())?;
            (
                Method::GET,
                vec![("authorization", format!("Bearer {token}"))],
            )
        }
    };
    Ok(Setup {
        method,
        headers,
        tenancy: Some(tenancy),
    })
}

/// The request a path sends, its headers parsed once (as a server hands
/// them over): each request only clones them in.
struct Template {
    method: Method,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Template {
    fn of(setup: &Setup) -> Result<Self, String> {
        let headers = setup
            .headers
            .iter()
            .map(|(name, value)| {
                Ok((
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_str(value).map_err(|e| e.to_string())?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            method: setup.method.clone(),
            headers,
        })
    }

    fn request<B>(&self, body: B) -> Result<http::Request<B>, String> {
        let mut request = http::Request::builder()
            .method(self.method.clone())
            .uri(PATH)
            .body(body)
            .map_err(|e| e.to_string())?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }
}

async fn run_axum(setup: Setup, noop: bool, requests: u64) -> Result<(), String> {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    let routes = Router::new().route(PATH, get(hello).merge(post(hello)));
    let app = match &setup.tenancy {
        Some(tenancy) => routes.layer(tenancy_axum::TenancyLayer::new(tenancy.clone())),
        None if noop => routes.layer(tower::util::MapRequestLayer::new(
            |request: http::Request<Body>| request,
        )),
        None => routes,
    };
    let template = Template::of(&setup)?;
    for _ in 0..WARM_UP + requests {
        let request = template.request(Body::empty())?;
        let Ok(response) = app.clone().oneshot(request).await;
        if response.status() != StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
    }
    if let Some(tenancy) = &setup.tenancy {
        tenancy.shutdown().await;
    }
    Ok(())
}

async fn run_actix(setup: Setup, noop: bool, requests: u64) -> Result<(), String> {
    use actix_web::{App, test, web};

    let routes = || {
        App::new()
            .route(PATH, web::get().to(hello))
            .route(PATH, web::post().to(hello))
    };
    match &setup.tenancy {
        Some(tenancy) => {
            let middleware = tenancy_actix::TenancyMiddleware::new(tenancy.clone());
            let app = test::init_service(routes().wrap(middleware)).await;
            actix_requests(&app, &setup, requests).await?;
            tenancy.shutdown().await;
        }
        None if noop => {
            let middleware = actix_web::middleware::DefaultHeaders::new();
            let app = test::init_service(routes().wrap(middleware)).await;
            actix_requests(&app, &setup, requests).await?;
        }
        None => {
            let app = test::init_service(routes()).await;
            actix_requests(&app, &setup, requests).await?;
        }
    }
    Ok(())
}

async fn actix_requests<S, B>(app: &S, setup: &Setup, requests: u64) -> Result<(), String>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
{
    use actix_web::test;

    let method = actix_web::http::Method::from_bytes(setup.method.as_str().as_bytes())
        .map_err(|e| e.to_string())?;
    for _ in 0..WARM_UP + requests {
        let mut request = test::TestRequest::default()
            .method(method.clone())
            .uri(PATH);
        for (name, value) in &setup.headers {
            request = request.insert_header((*name, value.as_str()));
        }
        let response = test::call_service(app, request.to_request()).await;
        if response.status().as_u16() != 200 {
            return Err(format!("answered {}", response.status()));
        }
    }
    Ok(())
}

async fn run_engine(setup: Setup, requests: u64) -> Result<(), String> {
    use tenancy_core::engine::RequestHead;

    let template = Template::of(&setup)?;
    for _ in 0..WARM_UP + requests {
        let (parts, ()) = template.request(())?.into_parts();
        let Some(tenancy) = &setup.tenancy else {
            std::hint::black_box(&parts);
            continue;
        };
        let head = RequestHead::from(&parts);
        let admission = match tenancy.admit_now(&head) {
            Some(answer) => answer,
            None => tenancy.admit(&head).await,
        }
        .map_err(|e| format!("refused: {}", e.code()))?;
        let mut answer = http::HeaderMap::new();
        admission.finish(StatusCode::OK, |name, value| {
            answer.insert(name.clone(), value);
        });
        std::hint::black_box(answer);
    }
    if let Some(tenancy) = &setup.tenancy {
        tenancy.shutdown().await;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [front, path, requests] = args.as_slice() else {
        eprintln!("usage: instructions <axum|actix|engine> <path> <requests>");
        return ExitCode::from(2);
    };
    let Ok(requests) = requests.parse::<u64>() else {
        eprintln!("requests must be a number");
        return ExitCode::from(2);
    };
    let noop = path == "noop";
    let result = match front.as_str() {
        "axum" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async { run_axum(setup(path).await?, noop, requests).await })
            }),
        "engine" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(async { run_engine(setup(path).await?, requests).await })),
        "actix" => actix_web::rt::System::new()
            .block_on(async { run_actix(setup(path).await?, noop, requests).await }),
        other => Err(format!("unknown front end {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("instructions: {e}");
            ExitCode::FAILURE
        }
    }
}
