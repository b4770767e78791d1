//! [`RequireRoleMiddleware`]: a minimum role for a resource or a scope.
//!
//! Wrap a `web::resource` or `web::scope` with it, inside
//! [`TenancyMiddleware`](crate::TenancyMiddleware): it reads the admitted
//! context and answers `insufficient_role` below the minimum, before the
//! handler runs.
//!
//! ```
//! use actix_web::{App, web};
//! use tenancy_actix::{RequireRoleMiddleware, TenancyMiddleware};
//! use tenancy_core::rbac::Role;
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # #[actix_web::main]
//! # async fn main() {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
//! let admin = web::scope("/admin")
//!     .wrap(RequireRoleMiddleware::new(Role::Admin))
//!     .route("/apikeys", web::post().to(|| async { "created" }));
//! let app = App::new()
//!     .wrap(TenancyMiddleware::new(tenancy))
//!     .service(
//!         web::resource("/metrics/query")
//!             .wrap(RequireRoleMiddleware::new(Role::Viewer))
//!             .route(web::get().to(|| async { "[]" })),
//!     )
//!     .service(admin);
//! # let _ = app;
//! # }
//! ```

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpMessage};
use pin_project_lite::pin_project;
use tenancy_core::guard;
use tenancy_core::rbac::Role;
use tenancy_core::{Tenancy, TenancyError, TenantContext};

use crate::TenancyRejection;
use crate::rejection::problem_response;

/// Requires a minimum role on the resources or scopes it wraps.
#[derive(Debug, Clone, Copy)]
pub struct RequireRoleMiddleware {
    role: Role,
}

impl RequireRoleMiddleware {
    /// Requires `role` or higher.
    pub fn new(role: Role) -> Self {
        Self { role }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireRoleMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequireRoleService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(RequireRoleService {
            inner,
            role: self.role,
        }))
    }
}

/// The service of [`RequireRoleMiddleware`].
#[derive(Debug)]
pub struct RequireRoleService<S> {
    inner: S,
    role: Role,
}

impl<S> RequireRoleService<S> {
    fn refusal(&self, req: &ServiceRequest) -> Option<TenancyError> {
        let extensions = req.extensions();
        match extensions.get::<TenantContext>() {
            Some(ctx) => guard::require_role(ctx, self.role).err(),
            None => Some(guard::missing_context(extensions.get::<Tenancy>())),
        }
    }
}

impl<S, B> Service<ServiceRequest> for RequireRoleService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = RequireRoleFuture<S::Future>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match self.refusal(&req) {
            None => RequireRoleFuture {
                kind: Kind::Inner {
                    fut: self.inner.call(req),
                },
            },
            Some(err) => {
                let (req, _payload) = req.into_parts();
                RequireRoleFuture {
                    kind: Kind::Refused {
                        response: Some(ServiceResponse::new(req, problem_response(&err))),
                    },
                }
            }
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
        Refused { response: Option<ServiceResponse<BoxBody>> },
    }
}

impl<F, B> Future for RequireRoleFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx).map_ok(ServiceResponse::map_into_left_body),
            KindProj::Refused { response } => Poll::Ready(match response.take() {
                Some(response) => Ok(response.map_into_right_body()),
                None => {
                    Err(TenancyRejection(TenancyError::internal("polled after completion")).into())
                }
            }),
        }
    }
}
