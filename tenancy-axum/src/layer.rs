//! [`TenancyLayer`] and [`TenancyService`]: the tower middleware that admits
//! every request through [`Tenancy::admit`](tenancy_core::Tenancy::admit).
//!
//! On admission the [`TenantContext`] goes into the request extensions (for
//! the [extractors](crate::extract)), the answer gets the `RateLimit-*`
//! headers, and [`Tenancy::complete`](tenancy_core::Tenancy::complete)
//! records it. A refusal is answered at once with its problem response;
//! the inner service is never called.
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
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::response::Response;
use http::request::Parts;
use pin_project_lite::pin_project;
use tenancy_core::engine::{ClientAddr, ExcludedPaths};
use tenancy_core::{Admission, Tenancy, TenancyError, TenantContext};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use crate::rejection::problem_response;

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

type AdmitFuture = Pin<Box<dyn Future<Output = (Result<Admission, TenancyError>, Parts)> + Send>>;

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
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = req.into_parts();
        if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            let ip = addr.ip();
            parts.extensions.insert(ClientAddr(ip));
        }
        let tenancy = self.tenancy.clone();
        let admit: AdmitFuture = Box::pin(async move {
            let result = tenancy.admit(&parts).await;
            (result, parts)
        });
        ResponseFuture {
            state: State::Admitting {
                admit,
                body: Some(body),
                inner: Some(inner),
                tenancy: self.tenancy.clone(),
                started: Instant::now(),
            },
        }
    }
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
        Admitting {
            admit: AdmitFuture,
            body: Option<axum::body::Body>,
            inner: Option<S>,
            tenancy: Tenancy,
            started: Instant,
        },
        Calling {
            #[pin]
            fut: tracing::instrument::Instrumented<S::Future>,
            admission: Option<Admission>,
            tenancy: Tenancy,
            started: Instant,
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
                StateProj::Admitting {
                    admit,
                    body,
                    inner,
                    tenancy,
                    started,
                } => {
                    let (result, mut parts) = ready!(admit.as_mut().poll(cx));
                    let admission = match result {
                        Ok(admission) => admission,
                        Err(err) => return Poll::Ready(Ok(problem_response(&err))),
                    };
                    if let Some(ctx) = admission.context() {
                        parts.extensions.insert::<TenantContext>(ctx.clone());
                    }
                    parts.extensions.insert(tenancy.clone());
                    let body = body.take().unwrap_or_default();
                    let Some(mut service) = inner.take() else {
                        // Polled again after completion: nothing left to call.
                        return Poll::Ready(Ok(problem_response(&TenancyError::internal(
                            "response future polled after completion",
                        ))));
                    };
                    let fut = service
                        .call(Request::from_parts(parts, body))
                        .instrument(admission.span());
                    let (tenancy, started) = (tenancy.clone(), *started);
                    this.state.set(State::Calling {
                        fut,
                        admission: Some(admission),
                        tenancy,
                        started,
                    });
                }
                StateProj::Calling {
                    fut,
                    admission,
                    tenancy,
                    started,
                } => {
                    let mut response = ready!(fut.poll(cx))?;
                    if let Some(admission) = admission.take() {
                        admission.write_headers(response.headers_mut());
                        tenancy.complete(&admission, response.status(), started.elapsed());
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
