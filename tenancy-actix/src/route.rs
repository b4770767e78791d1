//! [`RoutePolicyMiddleware`]: what a resource or a scope demands beyond the
//! tenancy defaults, a minimum role and a rate limit of its own
//! ([`RoutePolicy`]). [`RequireRoleMiddleware`] is the same middleware,
//! named for its most common use.
//!
//! Wrap a `web::resource` or `web::scope` with it, inside
//! [`TenancyMiddleware`](crate::TenancyMiddleware): it runs after the
//! request was admitted, through
//! [`Tenancy::check_route`](tenancy_core::Tenancy::check_route), and
//! answers `insufficient_role` or `rate_limited` before the handler runs.
//! Its refusals are counted and written down like the middleware's own, and
//! the route's rate-limit status reaches the answer's `RateLimit-*` headers
//! when it is the tighter one.
//!
//! ```
//! use actix_web::{App, web};
//! use tenancy_actix::{RequireRoleMiddleware, RoutePolicyMiddleware, TenancyMiddleware};
//! use tenancy_core::engine::RoutePolicy;
//! use tenancy_core::label::Label;
//! use tenancy_core::limit::RateQuota;
//! use tenancy_core::rbac::Role;
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # #[actix_web::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build()?;
//! let export = RoutePolicy::min_role(Role::Viewer)
//!     .with_rate_limit(Label::new("export")?, RateQuota::per_second(1).unwrap());
//! let admin = web::scope("/admin")
//!     .wrap(RequireRoleMiddleware::new(Role::Admin))
//!     .route("/apikeys", web::post().to(|| async { "created" }));
//! let app = App::new()
//!     .wrap(TenancyMiddleware::new(tenancy))
//!     .service(
//!         web::resource("/export")
//!             .wrap(RoutePolicyMiddleware::new(export))
//!             .route(web::get().to(|| async { "[]" })),
//!     )
//!     .service(admin);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpMessage};
use tenancy_core::Tenancy;
use tenancy_core::engine::{Admitted, RoutePolicy, RouteVerdict};

use crate::convert::{ActixHeaders, head_of, method};
use crate::rejection::problem_response;

/// Applies a [`RoutePolicy`] to the resources or scopes it wraps; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct RoutePolicyMiddleware {
    policy: Rc<RoutePolicy>,
}

/// [`RoutePolicyMiddleware`] requiring a minimum role:
/// `RequireRoleMiddleware::new(Role::Admin)`.
pub type RequireRoleMiddleware = RoutePolicyMiddleware;

impl RoutePolicyMiddleware {
    /// A middleware applying `policy` (a [`RoutePolicy`], or a
    /// [`Role`](tenancy_core::rbac::Role) as the minimum).
    pub fn new(policy: impl Into<RoutePolicy>) -> Self {
        Self {
            policy: Rc::new(policy.into()),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RoutePolicyMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RoutePolicyService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(RoutePolicyService {
            inner: Rc::new(inner),
            policy: self.policy.clone(),
        }))
    }
}

/// The service of [`RoutePolicyMiddleware`]. Its future is boxed: the route
/// check awaits the stores (one allocation per request of a route with a
/// policy).
#[derive(Debug)]
pub struct RoutePolicyService<S> {
    inner: Rc<S>,
    policy: Rc<RoutePolicy>,
}

impl<S, B> Service<ServiceRequest> for RoutePolicyService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>>>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let checked = match method(req.method()) {
                Ok(method) => {
                    let headers = ActixHeaders {
                        map: req.headers(),
                        names: None,
                    };
                    let head = head_of(&req, &method, &headers);
                    let admitted = req.extensions().get::<Admitted>().cloned();
                    Tenancy::check_route_of(admitted.as_ref(), &head, &policy).await
                }
                Err(err) => Err(err),
            };
            match checked {
                Ok(verdict) => {
                    let mut response = inner.call(req).await?;
                    let nested = response
                        .response()
                        .extensions()
                        .get::<RouteVerdict>()
                        .copied();
                    response
                        .response_mut()
                        .extensions_mut()
                        .insert(verdict.merge(nested));
                    Ok(response.map_into_left_body())
                }
                Err(err) => {
                    let (req, _payload) = req.into_parts();
                    let mut response = ServiceResponse::new(req, problem_response(&err));
                    response
                        .response_mut()
                        .extensions_mut()
                        .insert(RouteVerdict::Refused);
                    Ok(response.map_into_right_body())
                }
            }
        })
    }
}
