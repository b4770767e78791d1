//! axum front end for [`tenancy_core`]: one layer gives every request its
//! tenant, caller, role, limits, audit and metering.
//!
//! - [`TenancyLayer`]: the tower middleware; composes in `ServiceBuilder`.
//! - [`extract`]: [`Tenant`] (and `Option<Tenant>`),
//!   [`RequireRole`](extract::RequireRole), [`RequireScope`](extract::RequireScope),
//!   [`Audit`](extract::Audit) and [`Quota`](extract::Quota).
//! - [`RoutePolicyLayer`] (and its alias [`RequireRoleLayer`]): a minimum
//!   role and a rate limit of its own on a route or nested router.
//! - [`TenancyRejection`]: refusals as RFC 9457 problem responses.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::{get, post}};
//! use http::{Request, StatusCode};
//! use tenancy_axum::extract::{Audit, RequireRole, Tenant, role};
//! use tenancy_axum::{RequireRoleLayer, TenancyLayer};
//! use tenancy_core::rbac::{ApiKeyScope, Role};
//! use tenancy_core::admin::NewApiKey;
//! use tenancy_core::tenant::{TenantId, TenantRecord};
//! use tenancy_core::{Tenancy, TenancyConfig};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
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
//! async fn rotate(RequireRole(ctx, ..): RequireRole<role::Admin>, audit: Audit) -> StatusCode {
//!     audit.record("secret.rotate", Some(ctx.tenant_id().as_str()));
//!     StatusCode::NO_CONTENT
//! }
//!
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/rotate", post(rotate).route_layer(RequireRoleLayer::new(Role::Admin)))
//!     .route("/healthz", get(|| async { "ok" }))
//!     .layer(TenancyLayer::new(tenancy.clone()).exclude("/healthz"));
//!
//! let req = Request::get("/whoami").header("x-api-key", key.secret.expose()).body(Body::empty())?;
//! let res = app.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["ratelimit-limit"], "500");
//!
//! let res = app.clone().oneshot(Request::get("/whoami").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//!
//! let res = app.oneshot(Request::get("/healthz").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! tenancy.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod extract;
pub mod layer;
mod rejection;
pub mod route;

pub use extract::Tenant;
pub use layer::{TenancyLayer, TenancyService};
pub use rejection::TenancyRejection;
pub use route::{RequireRoleLayer, RoutePolicyLayer};
pub use tenancy_core;
