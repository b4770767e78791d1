//! [`TenancyLayer`] and [`TenancyService`]: the tower middleware that admits
//! every request through [`Tenancy::admit`](tenancy_core::Tenancy::admit).
//!
//! The layer is glue around the core's admission lifecycle
//! ([`tenancy_core::engine::driver`]): it builds the request's
//! [`RequestHead`] (with the peer address of `ConnectInfo<SocketAddr>` when
//! the server provides it), admits it, puts the
//! [`Admitted`](tenancy_core::engine::Admitted) (the engine and the
//! context) in the request extensions (for the
//! [extractors](crate::extract)), calls the inner service, and finishes the
//! admission with the answer, which writes the `RateLimit-*` and
//! `x-request-id` headers and records the request. A refusal is answered at
//! once with its problem response; the inner service is never called.
//!
//! When every store the request needs answers at once (the in-memory
//! stores, the tenant and token caches), admission runs inside `call`
//! ([`Tenancy::admit_now`](tenancy_core::Tenancy::admit_now)) and the
//! response future is the inner service's with the admission beside it;
//! otherwise admission is awaited in a boxed future first.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tenancy_axum::TenancyLayer;
//! use tenancy_core::{Tenancy, TenancyConfig};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tenancy = Tenancy::builder(TenancyConfig::default()).build().unwrap();
//! let app: Router = Router::new()
//!     .route("/api/v1/things", get(|| async { "things" }))
//!     .route("/healthz", get(|| async { "ok" }))
//!     .layer(ServiceBuilder::new().layer(TenancyLayer::new(tenancy).exclude("/healthz")));
//! # let _ = app;
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::extract::{ConnectInfo, OriginalUri};
use axum::response::Response;
use pin_project_lite::pin_project;
use tenancy_core::engine::{ExcludedPaths, Refusal, RequestHead, RouteVerdict};
use tenancy_core::{Admission, Tenancy, TenancyError};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{problem_response, refusal_response};

/// Applies [`TenancyService`] to a router or service.
#[derive(Debug, Clone)]
pub struct TenancyLayer {
    tenancy: Tenancy,
    excluded: ExcludedPaths,
}

impl TenancyLayer {
    /// A layer running `tenancy` on every request.
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

impl<S> Layer<S> for TenancyLayer {
    type Service = TenancyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenancyService {
            inner,
            tenancy: self.tenancy.clone(),
            excluded: self.excluded.clone(),
        }
    }
}

/// The middleware service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct TenancyService<S> {
    inner: S,
    tenancy: Tenancy,
    excluded: ExcludedPaths,
}

type AdmitFuture = Pin<Box<dyn Future<Output = (Result<Admission, Refusal>, Request)> + Send>>;

impl<S> Service<Request> for TenancyService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if self.excluded.contains(req.uri().path()) {
            return ResponseFuture {
                state: State::Passthrough {
                    fut: self.inner.call(req),
                },
            };
        }
        // Stores that answer at once (memory, caches): admitted here, and
        // the service driven to readiness is called at once.
        let answer = self.tenancy.admit_now(&head_of(&req));
        let state = match answer {
            Some(Ok(admission)) => call_admitted(&mut self.inner, req, admission),
            Some(Err(refusal)) => State::Refused {
                response: Some(refusal_response(&refusal)),
            },
            None => {
                // Take the service that was driven to readiness; leave a
                // clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let tenancy = self.tenancy.clone();
                let admit: AdmitFuture = Box::pin(async move {
                    let result = tenancy.admit(&head_of(&req)).await;
                    (result, req)
                });
                State::Admitting {
                    admit,
                    inner: Some(inner),
                }
            }
        };
        ResponseFuture { state }
    }
}

/// Calls `inner` with the request of an admission, the [`Admitted`] in its
/// extensions, inside the admission's span when it is enabled.
fn call_admitted<S>(inner: &mut S, mut req: Request, admission: Admission) -> State<S>
where
    S: Service<Request, Response = Response>,
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

/// The head of a request as its client sent it: inside `Router::nest` the
/// URI lost its prefix, and `OriginalUri` still has it.
pub(crate) fn head_of(req: &Request) -> RequestHead<'_> {
    let extensions = req.extensions();
    let uri = match extensions.get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri,
        None => req.uri(),
    };
    // The peer's address, when the server was started with
    // `into_make_service_with_connect_info::<SocketAddr>()`.
    let client_addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    RequestHead::new(req.method(), uri, req.headers()).with_client_addr(client_addr)
}

pin_project! {
    /// The response future of [`TenancyService`].
    pub struct ResponseFuture<S: Service<Request>> {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request>> {
        Passthrough {
            #[pin]
            fut: S::Future,
        },
        Refused {
            response: Option<Response>,
        },
        Admitting {
            admit: AdmitFuture,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            admission: Option<Admission>,
        },
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request, Response = Response>,
{
    type Output = Result<Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Passthrough { fut } => return fut.poll(cx),
                StateProj::Refused { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(polled_again)));
                }
                StateProj::Admitting { admit, inner } => {
                    let (result, req) = ready!(admit.as_mut().poll(cx));
                    let state = match (result, inner.take()) {
                        (Ok(admission), Some(mut service)) => {
                            call_admitted(&mut service, req, admission)
                        }
                        (Err(refusal), _) => State::Refused {
                            response: Some(refusal_response(&refusal)),
                        },
                        (Ok(_), None) => State::Refused { response: None },
                    };
                    this.state.set(state);
                }
                StateProj::Calling { fut, admission } => {
                    let polled = {
                        let _entered = admission.as_ref().and_then(Admission::enter);
                        fut.poll(cx)
                    };
                    let mut response = match ready!(polled) {
                        Ok(response) => response,
                        Err(err) => {
                            // The server answers an inner error without us;
                            // record it as a failure.
                            if let Some(admission) = admission.take() {
                                admission
                                    .finish(http::StatusCode::INTERNAL_SERVER_ERROR, |_, _| {});
                            }
                            return Poll::Ready(Err(err));
                        }
                    };
                    if let Some(mut admission) = admission.take() {
                        if let Some(verdict) = response.extensions().get::<RouteVerdict>() {
                            admission.apply(*verdict);
                        }
                        let status = response.status();
                        let headers = response.headers_mut();
                        admission.finish(status, |name, value| {
                            headers.insert(name.clone(), value);
                        });
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// The answer of a response future polled after it completed.
fn polled_again() -> Response {
    problem_response(&TenancyError::internal(
        "response future polled after completion",
    ))
}
