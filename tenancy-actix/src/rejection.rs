//! [`TenancyRejection`]: a refusal as an actix-web error response.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tenancy_core::TenancyError;
use tenancy_core::engine::Refusal;

use crate::convert::{set_header, status_to_actix};

/// A refused request, answered as an RFC 9457 problem with its status, code
/// and headers: the same status, headers and body bytes as
/// [`TenancyError::to_response`]. Every extractor of this crate rejects with
/// it, and handlers can return it (it converts from [`TenancyError`] with
/// `?`, and into [`actix_web::Error`]).
///
/// ```
/// use actix_web::ResponseError;
/// use tenancy_actix::TenancyRejection;
/// use tenancy_core::error::{ErrorKind, TenancyError};
///
/// let res = TenancyRejection::from(TenancyError::new(ErrorKind::NotFound)).error_response();
/// assert_eq!(res.status(), 404);
/// assert_eq!(res.headers().get("content-type").unwrap(), "application/problem+json");
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

impl ResponseError for TenancyRejection {
    fn status_code(&self) -> StatusCode {
        status_to_actix(self.0.status())
    }

    fn error_response(&self) -> HttpResponse {
        problem_response(&self.0)
    }
}

/// The problem response for `err`.
pub(crate) fn problem_response(err: &TenancyError) -> HttpResponse {
    log_server_error(err);
    http_response(err.to_response())
}

fn log_server_error(err: &TenancyError) {
    tenancy_core::error::log_server_error(err);
}

/// A core problem response as an actix-web response.
fn http_response(response: http::Response<Vec<u8>>) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let mut response = HttpResponse::with_body(status_to_actix(parts.status), body);
    let headers = response.headers_mut();
    // Each header of a problem response has one value.
    for (name, value) in &parts.headers {
        set_header(headers, name, value);
    }
    response.map_into_boxed_body()
}

/// The problem response of a refused admission, with its `x-request-id`.
pub(crate) fn refusal_response(refusal: &Refusal) -> HttpResponse {
    log_server_error(refusal.error());
    http_response(refusal.to_response())
}
