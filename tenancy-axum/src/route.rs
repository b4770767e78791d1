//! [`RoutePolicyLayer`]: what a route or a nested router demands beyond
//! the tenancy defaults, a minimum role and a rate limit of its own
//! ([`RoutePolicy`]). [`RequireRoleLayer`] is the same layer, named for its
//! most common use.
//!
//! Put it inside [`TenancyLayer`](crate::TenancyLayer), with
//! `route_layer` (on a `MethodRouter` or a `Router`): it runs after the
//! request was admitted, through
//! [`Tenancy::check_route`](tenancy_core::Tenancy::check_route), and
//! answers `insufficient_role` or `rate_limited` before the handler runs.
//! Its refusals are counted and written down like the layer's own, and the
//! route's rate-limit status reaches the answer's `RateLimit-*` headers
//! when it is the tighter one.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tenancy_axum::{RequireRoleLayer, RoutePolicyLayer, TenancyLayer};
//! use tenancy_core::engine::RoutePolicy;
//! use tenancy_core::label::Label;
//! use tenancy_core::limit::RateQuota;
//! use tenancy_core::rbac::Role;
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
//! let export = RoutePolicy::min_role(Role::Viewer)
//!     .with_rate_limit(Label::new("export")?, RateQuota::per_second(1).unwrap());
//! let admin = Router::new()
//!     .route("/apikeys", post(|| async { "created" }))
//!     .route_layer(RequireRoleLayer::new(Role::Admin));
//! let app: Router = Router::new()
//!     .route("/export", get(|| async { "[]" }).route_layer(RoutePolicyLayer::new(export)))
//!     .nest("/admin", admin)
//!     .layer(TenancyLayer::new(tenancy));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tenancy_core::Tenancy;
use tenancy_core::engine::{Admitted, RoutePolicy, RouteVerdict};
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::head_of;
use crate::rejection::problem_response;

/// Applies a [`RoutePolicy`] to the routes it wraps; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct RoutePolicyLayer {
    policy: Arc<RoutePolicy>,
}

/// [`RoutePolicyLayer`] requiring a minimum role:
/// `RequireRoleLayer::new(Role::Admin)`.
pub type RequireRoleLayer = RoutePolicyLayer;

impl RoutePolicyLayer {
    /// A layer applying `policy` (a [`RoutePolicy`], or a
    /// [`Role`](tenancy_core::rbac::Role) as the minimum).
    pub fn new(policy: impl Into<RoutePolicy>) -> Self {
        Self {
            policy: Arc::new(policy.into()),
        }
    }
}

impl<S> Layer<S> for RoutePolicyLayer {
    type Service = RoutePolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoutePolicyService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`RoutePolicyLayer`].
#[derive(Debug, Clone)]
pub struct RoutePolicyService<S> {
    inner: S,
    policy: Arc<RoutePolicy>,
}

/// The response future of [`RoutePolicyService`]: the route check awaits
/// the stores, so it is boxed (one allocation per request of a route with a
/// policy).
pub type RoutePolicyFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> Service<Request> for RoutePolicyService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RoutePolicyFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            let checked = {
                let head = head_of(&req);
                Tenancy::check_route_of(req.extensions().get::<Admitted>(), &head, &policy).await
            };
            match checked {
                Ok(verdict) => {
                    let mut response = inner.call(req).await?;
                    let nested = response.extensions().get::<RouteVerdict>().copied();
                    response.extensions_mut().insert(verdict.merge(nested));
                    Ok(response)
                }
                Err(err) => {
                    let mut response = problem_response(&err);
                    response.extensions_mut().insert(RouteVerdict::Refused);
                    Ok(response)
                }
            }
        })
    }
}
