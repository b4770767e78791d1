//! [`TenancyMiddleware`] and [`TenancyService`]: the actix-web middleware
//! that admits every request through
//! [`Tenancy::admit`](tenancy_core::Tenancy::admit).
//!
//! The middleware is glue around the core's admission lifecycle
//! ([`tenancy_core::engine::driver`]): it builds the request's
//! [`RequestHead`](tenancy_core::engine::RequestHead) (with the peer's
//! address), admits it, puts the
//! [`Admitted`](tenancy_core::engine::Admitted) (the engine and the context)
//! in the request extensions (for the [extractors](crate::extract)), calls
//! the inner service, and finishes the
//! admission with the answer, which writes the `RateLimit-*` and
//! `x-request-id` headers and records the request. A refusal is answered at
//! once with its problem response; the inner service is never called.
//! Excluded paths skip all of it.
//!
//! When every store the request needs answers at once (the in-memory
//! stores, the tenant and token caches), admission runs inside `call`
//! ([`Tenancy::admit_now`](tenancy_core::Tenancy::admit_now)) and the
//! response future is a plain state machine around the inner service's;
//! otherwise the admission future is boxed and awaited first. Excluded
//! paths allocate nothing.
//!
//! ```
//! use actix_web::{App, web};
//! use tenancy_actix::TenancyMiddleware;
//! use tenancy_core::{Tenancy, TenancyConfig};
//!
//! # #[actix_web::main]
//! # async fn main() {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
//! let app = App::new()
//!     .wrap(TenancyMiddleware::new(tenancy).exclude("/healthz"))
//!     .route("/api/v1/things", web::get().to(|| async { "things" }))
//!     .route("/healthz", web::get().to(|| async { "ok" }));
//! # let _ = app;
//! # }
//! ```

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpMessage};
use pin_project_lite::pin_project;
use tenancy_core::engine::{ExcludedPaths, Refusal, RouteVerdict};
use tenancy_core::{Admission, Tenancy};

use crate::convert::{ActixHeaders, KnownNames, head_of, method, set_header, status_from_actix};
use crate::rejection::refusal_response;

/// Runs [`Tenancy`] on every request of an `App`, `Scope` or `Resource`
/// it wraps; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct TenancyMiddleware {
    tenancy: Tenancy,
    excluded: ExcludedPaths,
}

impl TenancyMiddleware {
    /// A middleware running `tenancy` on every request.
    pub fn new(tenancy: Tenancy) -> Self {
        Self {
            tenancy,
            excluded: ExcludedPaths::default(),
        }
    }

    /// Skips tenancy entirely for `path` and everything below it (e.g.
    /// `/healthz`, `/metrics`): no resolution, no store call.
    pub fn exclude(mut self, path: impl Into<String>) -> Self {
        self.excluded = self.excluded.with(path);
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for TenancyMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = TenancyService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(TenancyService {
            inner: Rc::new(inner),
            names: KnownNames::of(&self.tenancy),
            tenancy: self.tenancy.clone(),
            excluded: self.excluded.clone(),
        }))
    }
}

/// The middleware service; see the [module docs](self).
#[derive(Debug)]
pub struct TenancyService<S> {
    inner: Rc<S>,
    names: KnownNames,
    tenancy: Tenancy,
    excluded: ExcludedPaths,
}

type AdmitFuture = Pin<Box<dyn Future<Output = (Result<Admission, Refusal>, ServiceRequest)>>>;

impl<S, B> Service<ServiceRequest> for TenancyService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<S>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if self.excluded.contains(req.path()) {
            return ResponseFuture {
                state: State::Passthrough {
                    fut: self.inner.call(req),
                },
            };
        }
        // Stores that answer at once (memory, caches): admitted here.
        let answer = match method(req.method()) {
            Ok(method) => {
                let headers = ActixHeaders {
                    map: req.headers(),
                    names: Some(&self.names),
                };
                self.tenancy.admit_now(&head_of(&req, &method, &headers))
            }
            Err(err) => Some(Err(Refusal::from(err))),
        };
        let state = match answer {
            Some(Ok(admission)) => call_admitted(self.inner.as_ref(), req, admission),
            Some(Err(refused)) => State::Refused {
                response: Some(refusal(req, &refused)),
            },
            None => {
                // The request moves into the admission and comes back with
                // it: the head reads its headers in place.
                let tenancy = self.tenancy.clone();
                let names = self.names.clone();
                let admit: AdmitFuture = Box::pin(async move {
                    let result = match method(req.method()) {
                        Ok(method) => {
                            let headers = ActixHeaders {
                                map: req.headers(),
                                names: Some(&names),
                            };
                            tenancy.admit(&head_of(&req, &method, &headers)).await
                        }
                        Err(err) => Err(Refusal::from(err)),
                    };
                    (result, req)
                });
                State::Admitting {
                    admit,
                    inner: self.inner.clone(),
                }
            }
        };
        ResponseFuture { state }
    }
}

/// Calls `inner` with the request of an admission, the `Admitted` in its
/// extensions, inside the admission's span when it is enabled.
fn call_admitted<S, B>(inner: &S, req: ServiceRequest, admission: Admission) -> State<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    req.extensions_mut().insert(admission.admitted());
    let fut = {
        let _entered = admission.enter();
        inner.call(req)
    };
    State::Calling {
        fut,
        admission: Some(admission),
    }
}

pin_project! {
    /// The response future of [`TenancyService`].
    pub struct ResponseFuture<S: Service<ServiceRequest>> {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<ServiceRequest>> {
        Passthrough {
            #[pin]
            fut: S::Future,
        },
        Refused {
            response: Option<ServiceResponse<BoxBody>>,
        },
        Admitting {
            admit: AdmitFuture,
            inner: Rc<S>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            admission: Option<Admission>,
        },
    }
}

impl<S, B> Future for ResponseFuture<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Passthrough { fut } => {
                    return fut.poll(cx).map_ok(ServiceResponse::map_into_left_body);
                }
                StateProj::Refused { response } => {
                    return Poll::Ready(match response.take() {
                        Some(response) => Ok(response.map_into_right_body()),
                        None => Err(actix_web::error::ErrorInternalServerError(
                            "response future polled after completion",
                        )),
                    });
                }
                StateProj::Admitting { admit, inner } => {
                    let (result, req) = ready!(admit.as_mut().poll(cx));
                    let state = match result {
                        Ok(admission) => call_admitted(inner.as_ref(), req, admission),
                        Err(refused) => State::Refused {
                            response: Some(refusal(req, &refused)),
                        },
                    };
                    this.state.set(state);
                }
                StateProj::Calling { fut, admission } => {
                    let result = {
                        let _entered = admission.as_ref().and_then(Admission::enter);
                        ready!(fut.poll(cx))
                    };
                    let Some(mut admission) = admission.take() else {
                        return Poll::Ready(result.map(ServiceResponse::map_into_left_body));
                    };
                    return Poll::Ready(match result {
                        Ok(mut response) => {
                            let verdict = response
                                .response()
                                .extensions()
                                .get::<RouteVerdict>()
                                .copied();
                            if let Some(verdict) = verdict {
                                admission.apply(verdict);
                            }
                            let status = status_from_actix(response.status());
                            let headers = response.headers_mut();
                            admission
                                .finish(status, |name, value| set_header(headers, name, &value));
                            Ok(response.map_into_left_body())
                        }
                        Err(err) => {
                            // actix-web answers an inner service's error later,
                            // from the error itself; record it with that status.
                            let status = status_from_actix(err.as_response_error().status_code());
                            admission.finish(status, |_, _| {});
                            Err(err)
                        }
                    });
                }
            }
        }
    }
}

/// `req` answered with the problem response of `refused`.
fn refusal(req: ServiceRequest, refused: &Refusal) -> ServiceResponse<BoxBody> {
    let (req, _payload) = req.into_parts();
    ServiceResponse::new(req, refusal_response(refused))
}
