//! [`RequireRoleLayer`]: a minimum role for a route or a nested router.
//!
//! Put it inside [`TenancyLayer`](crate::TenancyLayer) (with
//! `Router::route_layer`, or on a nested router): it reads the admitted
//! context and answers `insufficient_role` below the minimum, before the
//! handler runs.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use tenancy_axum::{RequireRoleLayer, TenancyLayer};
//! use tenancy_core::rbac::Role;
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
//! let admin = Router::new()
//!     .route("/apikeys", post(|| async { "created" }))
//!     .route_layer(RequireRoleLayer::new(Role::Admin));
//! let app: Router = Router::new()
//!     .route("/metrics/query", get(|| async { "[]" }).route_layer(RequireRoleLayer::new(Role::Viewer)))
//!     .nest("/admin", admin)
//!     .layer(TenancyLayer::new(tenancy));
//! # let _ = app;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use pin_project_lite::pin_project;
use tenancy_core::guard;
use tenancy_core::rbac::Role;
use tenancy_core::{Tenancy, TenancyError, TenantContext};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::problem_response;

/// Requires a minimum role on the routes it wraps.
#[derive(Debug, Clone, Copy)]
pub struct RequireRoleLayer {
    role: Role,
}

impl RequireRoleLayer {
    /// Requires `role` or higher.
    pub fn new(role: Role) -> Self {
        Self { role }
    }
}

impl<S> Layer<S> for RequireRoleLayer {
    type Service = RequireRoleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireRoleService {
            inner,
            role: self.role,
        }
    }
}

/// The service of [`RequireRoleLayer`].
#[derive(Debug, Clone)]
pub struct RequireRoleService<S> {
    inner: S,
    role: Role,
}

impl<S> Service<Request> for RequireRoleService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequireRoleFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let refusal = match req.extensions().get::<TenantContext>() {
            Some(ctx) => guard::require_role(ctx, self.role).err(),
            None => Some(guard::missing_context(req.extensions().get::<Tenancy>())),
        };
        match refusal {
            None => RequireRoleFuture {
                kind: Kind::Inner {
                    fut: self.inner.call(req),
                },
            },
            Some(err) => RequireRoleFuture {
                kind: Kind::Refused {
                    response: Some(problem_response(&err)),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`RequireRoleService`].
    pub struct RequireRoleFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] fut: F },
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for RequireRoleFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    problem_response(&TenancyError::internal("polled after completion"))
                })))
            }
        }
    }
}
