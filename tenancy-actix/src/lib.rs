//! actix-web front end for [`tenancy_core`]: one middleware gives every
//! request its tenant, caller, role, limits, audit and metering.
//!
//! - [`TenancyMiddleware`]: the actix-web `Transform`; wraps an `App`,
//!   `Scope` or `Resource`.
//! - [`extract`]: [`Tenant`] (and `Option<Tenant>`),
//!   [`RequireRole`](extract::RequireRole), [`RequireScope`](extract::RequireScope),
//!   [`Audit`](extract::Audit) and [`Quota`](extract::Quota).
//! - [`RoutePolicyMiddleware`] (and its alias [`RequireRoleMiddleware`]): a
//!   minimum role and a rate limit of its own on a resource or scope.
//! - [`TenancyRejection`]: refusals as RFC 9457 problem responses, through
//!   `ResponseError`.
//!
//! The names and the answers are those of `tenancy-axum`: the same request
//! gets the same status, headers and problem body from either adapter.
//!
//! # Example
//!
//! ```
//! use actix_web::http::StatusCode;
//! use actix_web::{App, HttpResponse, test, web};
//! use tenancy_actix::extract::{Audit, RequireRole, Tenant, role};
//! use tenancy_actix::{RequireRoleMiddleware, TenancyMiddleware};
//! use tenancy_core::admin::NewApiKey;
//! use tenancy_core::rbac::{ApiKeyScope, Role};
//! use tenancy_core::tenant::{TenantId, TenantRecord};
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # #[actix_web::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tenancy = Tenancy::builder(TenancyConfig::from_env()?).build()?;
//! let acme = TenantId::new("acme")?;
//! tenancy.admin().create_tenant(TenantRecord::new(acme.clone(), "Acme", "pro")).await?;
//! let key = tenancy
//!     .admin()
//!     .issue_api_key(&acme, NewApiKey::new("ci").scope(ApiKeyScope::Full))
//!     .await?;
//!
//! async fn whoami(Tenant(ctx): Tenant) -> String {
//!     format!("{} of {}", ctx.role(), ctx.tenant_id())
//! }
//! async fn rotate(RequireRole(ctx, ..): RequireRole<role::Admin>, audit: Audit) -> HttpResponse {
//!     audit.record("secret.rotate", Some(ctx.tenant_id().as_str()));
//!     HttpResponse::NoContent().finish()
//! }
//!
//! let app = test::init_service(
//!     App::new()
//!         .wrap(TenancyMiddleware::new(tenancy.clone()).exclude("/healthz"))
//!         .route("/whoami", web::get().to(whoami))
//!         .service(
//!             web::resource("/rotate")
//!                 .wrap(RequireRoleMiddleware::new(Role::Admin))
//!                 .route(web::post().to(rotate)),
//!         )
//!         .route("/healthz", web::get().to(|| async { "ok" })),
//! )
//! .await;
//!
//! let req = test::TestRequest::get().uri("/whoami").insert_header(("x-api-key", key.secret.expose())).to_request();
//! let res = test::call_service(&app, req).await;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers().get("ratelimit-limit").unwrap(), "500");
//!
//! let res = test::call_service(&app, test::TestRequest::get().uri("/whoami").to_request()).await;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers().get("content-type").unwrap(), "application/problem+json");
//!
//! let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
//! assert_eq!(res.status(), StatusCode::OK);
//! tenancy.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod convert;
pub mod extract;
pub mod middleware;
mod rejection;
pub mod route;

pub use extract::Tenant;
pub use middleware::{TenancyMiddleware, TenancyService};
pub use rejection::TenancyRejection;
pub use route::{RequireRoleMiddleware, RoutePolicyMiddleware};
pub use tenancy_core;
