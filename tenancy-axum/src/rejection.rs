//! [`TenancyRejection`]: a refusal as an axum response.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use tenancy_core::TenancyError;
use tenancy_core::engine::Refusal;

/// A refused request, answered as an RFC 9457 problem with its status, code
/// and headers. Every extractor of this crate rejects with it, and handlers
/// can return it (it converts from [`TenancyError`] with `?`).
///
/// ```
/// use axum::response::IntoResponse;
/// use tenancy_axum::TenancyRejection;
/// use tenancy_core::error::{ErrorKind, TenancyError};
///
/// let res = TenancyRejection::from(TenancyError::new(ErrorKind::NotFound)).into_response();
/// assert_eq!(res.status(), 404);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug)]
pub struct TenancyRejection(pub TenancyError);

impl From<TenancyError> for TenancyRejection {
    fn from(e: TenancyError) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for TenancyRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TenancyRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for TenancyRejection {
    fn into_response(self) -> Response {
        problem_response(&self.0)
    }
}

/// The problem response for `err`.
pub(crate) fn problem_response(err: &TenancyError) -> Response {
    log_server_error(err);
    err.to_response().map(Body::from)
}

fn log_server_error(err: &TenancyError) {
    tenancy_core::error::log_server_error(err);
}

/// The problem response of a refused admission, with its `x-request-id`.
pub(crate) fn refusal_response(refusal: &Refusal) -> Response {
    log_server_error(refusal.error());
    refusal.to_response().map(Body::from)
}
