//! What the core reads of an actix-web request, and conversions between
//! actix-web's `http` 0.2 types and the `http` 1 types of [`tenancy_core`].
//! The request's headers are read in place ([`ActixHeaders`]); the method
//! and the answer's headers are carried over by bytes (both crates validate
//! them with the same rules).

use actix_web::dev::ServiceRequest;
use actix_web::http as actix_http;
use actix_web::http::header as actix_header;
use std::sync::Arc;

use tenancy_core::engine::RequestHead;
use tenancy_core::limit::static_number_text;
use tenancy_core::request::HeaderSource;
use tenancy_core::{Tenancy, TenancyError};

/// The request's headers, read in place by the core, by the names the
/// engine reads ([`KnownNames`]: parsed once) or any other name (parsed
/// per lookup).
pub(crate) struct ActixHeaders<'a> {
    pub(crate) map: &'a actix_header::HeaderMap,
    pub(crate) names: Option<&'a KnownNames>,
}

impl HeaderSource for ActixHeaders<'_> {
    fn each_value(&self, name: &str, each: &mut dyn FnMut(&[u8])) {
        let values = match self.names.and_then(|n| n.get(name)) {
            Some(known) => self.map.get_all(known),
            None => self.map.get_all(name),
        };
        for value in values {
            each(value.as_bytes());
        }
    }

    fn first_value(&self, name: &str) -> Option<&[u8]> {
        let value = match self.names.and_then(|n| n.get(name)) {
            Some(known) => self.map.get(known),
            None => self.map.get(name),
        };
        value.map(actix_header::HeaderValue::as_bytes)
    }
}

/// The header names the engine reads on every request (its credential
/// headers, its tenant header, `x-request-id`, `host`), in actix-web's type,
/// parsed once per middleware instead of once per lookup.
#[derive(Debug, Clone)]
pub(crate) struct KnownNames(Arc<[(Box<str>, actix_header::HeaderName)]>);

impl KnownNames {
    /// The names `tenancy`'s configuration reads.
    pub(crate) fn of(tenancy: &Tenancy) -> Self {
        let config = tenancy.config();
        let names = [
            config.auth.api_key_header.as_str(),
            config.auth.bearer_header.as_str(),
            config.resolution.tenant_header.as_str(),
            "x-request-id",
            "host",
        ];
        Self(
            names
                .iter()
                .filter_map(|name| {
                    let parsed = actix_header::HeaderName::from_bytes(name.as_bytes()).ok()?;
                    Some((parsed.as_str().into(), parsed))
                })
                .collect(),
        )
    }

    /// The parsed name `name` (lowercase, as the core passes names).
    fn get(&self, name: &str) -> Option<&actix_header::HeaderName> {
        self.0
            .iter()
            .find(|(text, _)| &**text == name)
            .map(|(_, parsed)| parsed)
    }
}

/// The head of `req` as the core reads it: `method` (converted), path,
/// query, the headers in place, the peer's address.
pub(crate) fn head_of<'a>(
    req: &'a ServiceRequest,
    method: &'a http::Method,
    headers: &'a ActixHeaders<'a>,
) -> RequestHead<'a> {
    RequestHead::with_header_source(method, req.path(), Some(req.query_string()), headers)
        .with_client_addr(req.peer_addr().map(|addr| addr.ip()))
}

/// The method in `http` 1 types (standard methods convert without an
/// allocation).
pub(crate) fn method(method: &actix_http::Method) -> Result<http::Method, TenancyError> {
    http::Method::from_bytes(method.as_str().as_bytes())
        .map_err(|e| TenancyError::internal(format!("request method does not convert: {e}")))
}

/// Sets `name: value` on `to`, replacing what it had under that name.
pub(crate) fn set_header(
    to: &mut actix_header::HeaderMap,
    name: &http::HeaderName,
    value: &http::HeaderValue,
) {
    // Small numbers (the `RateLimit-*` values) have static text: no copy.
    let value = match static_number_text(value.as_bytes()) {
        Some(text) => Ok(actix_header::HeaderValue::from_static(text)),
        None => actix_header::HeaderValue::from_bytes(value.as_bytes()),
    };
    if let (Some(name), Ok(value)) = (actix_name(name), value) {
        to.insert(name, value);
    }
}

/// `name` in actix-web's type: the names the core writes on every answer
/// are made at compile time, any other is parsed.
fn actix_name(name: &http::HeaderName) -> Option<actix_header::HeaderName> {
    const LIMIT: actix_header::HeaderName =
        actix_header::HeaderName::from_static("ratelimit-limit");
    const REMAINING: actix_header::HeaderName =
        actix_header::HeaderName::from_static("ratelimit-remaining");
    const RESET: actix_header::HeaderName =
        actix_header::HeaderName::from_static("ratelimit-reset");
    const REQUEST_ID: actix_header::HeaderName =
        actix_header::HeaderName::from_static("x-request-id");
    Some(match name.as_str() {
        "ratelimit-limit" => LIMIT,
        "ratelimit-remaining" => REMAINING,
        "ratelimit-reset" => RESET,
        "x-request-id" => REQUEST_ID,
        other => return actix_header::HeaderName::from_bytes(other.as_bytes()).ok(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_core::limit::{RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET};
    use tenancy_core::request::REQUEST_ID_HEADER;

    #[actix_web::test]
    async fn headers_are_found_by_known_and_other_names() {
        let tenancy = Tenancy::builder(tenancy_core::TenancyConfig::default())
            .build()
            .unwrap();
        let names = KnownNames::of(&tenancy);
        let mut map = actix_header::HeaderMap::new();
        for (name, value) in [
            ("x-api-key", "k"),
            ("x-tenant-id", "acme"),
            ("x-other", "o"),
        ] {
            map.append(
                actix_header::HeaderName::from_static(name),
                actix_header::HeaderValue::from_static(value),
            );
        }
        map.append(
            actix_header::HeaderName::from_static("x-tenant-id"),
            actix_header::HeaderValue::from_static("globex"),
        );
        for names in [Some(&names), None] {
            let headers = ActixHeaders { map: &map, names };
            assert_eq!(headers.first_value("x-api-key"), Some(&b"k"[..]));
            assert_eq!(headers.first_value("x-other"), Some(&b"o"[..]));
            assert_eq!(headers.first_value("authorization"), None);
            let mut tenants = Vec::new();
            headers.each_value("x-tenant-id", &mut |v| tenants.push(v.to_vec()));
            assert_eq!(tenants, [b"acme".to_vec(), b"globex".to_vec()]);
        }
    }

    #[test]
    fn header_names_carry_over_unchanged() {
        let retry_after = http::header::RETRY_AFTER;
        for name in [
            &RATELIMIT_LIMIT,
            &RATELIMIT_REMAINING,
            &RATELIMIT_RESET,
            &REQUEST_ID_HEADER,
            &retry_after,
        ] {
            assert_eq!(actix_name(name).unwrap().as_str(), name.as_str());
        }
    }
}
