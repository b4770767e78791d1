//! Conversions between actix-web's `http` 0.2 types and the `http` 1 types
//! of [`tenancy_core`]. Names, values and URIs are carried over by bytes;
//! both crates validate them with the same rules.

use actix_web::dev::ServiceRequest;
use actix_web::http as actix_http;
use actix_web::http::header as actix_header;
use http::request::Parts;
use tenancy_core::TenancyError;

/// The head of `req` in `http` 1 types: method, URI, version, headers.
pub(crate) fn request_parts(req: &ServiceRequest) -> Result<Parts, TenancyError> {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method(req.method())?;
    parts.uri = uri(req.uri())?;
    parts.version = version(req.version());
    parts.headers = request_headers(req.headers())?;
    Ok(parts)
}

fn method(method: &actix_http::Method) -> Result<http::Method, TenancyError> {
    http::Method::from_bytes(method.as_str().as_bytes())
        .map_err(|e| TenancyError::internal(format!("request method does not convert: {e}")))
}

fn uri(uri: &actix_http::Uri) -> Result<http::Uri, TenancyError> {
    let converted = match (uri.scheme(), uri.path_and_query()) {
        // Origin form, as servers receive almost every request.
        (None, Some(path_and_query)) => http::Uri::try_from(path_and_query.as_str()),
        _ => http::Uri::try_from(uri.to_string()),
    };
    converted.map_err(|e| TenancyError::internal(format!("request URI does not convert: {e}")))
}

fn version(version: actix_http::Version) -> http::Version {
    match version {
        actix_http::Version::HTTP_09 => http::Version::HTTP_09,
        actix_http::Version::HTTP_10 => http::Version::HTTP_10,
        actix_http::Version::HTTP_2 => http::Version::HTTP_2,
        actix_http::Version::HTTP_3 => http::Version::HTTP_3,
        _ => http::Version::HTTP_11,
    }
}

/// Every request header, every value of each. A header that does not
/// convert fails the request rather than being dropped: a dropped
/// credential must not turn a caller into an anonymous one.
fn request_headers(headers: &actix_header::HeaderMap) -> Result<http::HeaderMap, TenancyError> {
    let mut converted = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let sensitive = value.is_sensitive();
        let name = http::HeaderName::from_bytes(name.as_str().as_bytes());
        let value = http::HeaderValue::from_bytes(value.as_bytes());
        match (name, value) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(sensitive);
                converted.append(name, value);
            }
            _ => return Err(TenancyError::internal("a request header does not convert")),
        }
    }
    Ok(converted)
}

/// Sets `name: value` on `to`, replacing what it had under that name.
pub(crate) fn set_header(
    to: &mut actix_header::HeaderMap,
    name: &http::HeaderName,
    value: &http::HeaderValue,
) {
    if let (Ok(name), Ok(value)) = (
        actix_header::HeaderName::from_bytes(name.as_str().as_bytes()),
        actix_header::HeaderValue::from_bytes(value.as_bytes()),
    ) {
        to.insert(name, value);
    }
}

/// An `http` 1 status as an actix-web status.
pub(crate) fn status_to_actix(status: http::StatusCode) -> actix_http::StatusCode {
    actix_http::StatusCode::from_u16(status.as_u16())
        .unwrap_or(actix_http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// An actix-web status as an `http` 1 status.
pub(crate) fn status_from_actix(status: actix_http::StatusCode) -> http::StatusCode {
    http::StatusCode::from_u16(status.as_u16()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}
