//! Fetching key documents (JWK sets, OIDC discovery documents): [`KeyUrl`],
//! the URLs that may be fetched, and [`KeyClient`], a `reqwest` client
//! (rustls with the aws-lc-rs provider, the system's roots plus any
//! configured CA bundle, the usual `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`
//! variables, never a proxy for a loopback host) that follows no redirect
//! and reads at most 1 MiB. For tenant realms the client is the egress
//! guard's ([`KeyClient::guarded`]): no proxy at all, addresses checked.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::egress::EgressGuard;

/// Largest document accepted, in bytes.
pub(super) const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A parsed `http` or `https` URL that keys may be fetched from.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct KeyUrl {
    text: Box<str>,
    /// Whether the scheme is `https` (read from the parsed URL, whatever
    /// its case).
    https: bool,
    /// Whether the host is loopback (never reached through a proxy).
    loopback: bool,
}

impl fmt::Debug for KeyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where plain `http` is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlainHttp {
    /// Nowhere: `https` only (tenant realms; a key URL an https document
    /// names).
    Never,
    /// To a loopback host only.
    Loopback,
    /// Anywhere (`allow_http`).
    Anywhere,
}

impl PlainHttp {
    /// `Anywhere` when `allow_http`, else `Loopback`.
    pub(super) fn allowed_if(allow_http: bool) -> Self {
        if allow_http {
            Self::Anywhere
        } else {
            Self::Loopback
        }
    }
}

/// `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl KeyUrl {
    /// Parses `url`; the message says what is wrong. Plain `http` only
    /// where `plain` accepts it: keys fetched in the clear can be swapped
    /// by anyone on the path.
    pub(super) fn parse(url: &str, plain: PlainHttp) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        // `http::Uri` reads the scheme whatever its case.
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("must be an http or https URL".to_owned()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?;
        if authority.as_str().contains('@') {
            return Err("the URL must not hold credentials".to_owned());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err("the URL has no host".to_owned());
        }
        let loopback = is_loopback_host(host);
        match plain {
            _ if https => {}
            PlainHttp::Anywhere => {}
            PlainHttp::Loopback if loopback => {}
            PlainHttp::Loopback => {
                return Err(
                    "plain http is accepted only for a loopback host; use https, or set allow_http = true"
                        .to_owned(),
                );
            }
            PlainHttp::Never => return Err("must be an https URL".to_owned()),
        }
        Ok(Self {
            text: url.into(),
            https,
            loopback,
        })
    }

    /// The OIDC discovery document of `issuer`:
    /// `{issuer}/.well-known/openid-configuration`, a trailing `/` of the
    /// issuer removed first (OpenID Connect Discovery 1.0, section 4).
    pub(super) fn discovery(issuer: &str, plain: PlainHttp) -> Result<Self, String> {
        let base = issuer.strip_suffix('/').unwrap_or(issuer);
        if base.contains(['?', '#']) {
            return Err("a discovery issuer has no query or fragment".to_owned());
        }
        Self::parse(&format!("{base}/.well-known/openid-configuration"), plain)
    }

    pub(super) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the URL is `https`.
    pub(super) fn is_https(&self) -> bool {
        self.https
    }
}

/// The HTTP client of a realm's key fetches.
#[derive(Clone)]
pub(super) struct KeyClient {
    /// Through the proxy the environment names, if any.
    proxied: reqwest::Client,
    /// For loopback hosts, which a proxy could not reach.
    direct: reqwest::Client,
    /// Set for fetches on a tenant's behalf: then both clients are the
    /// guard's (no proxy, addresses checked at connect time).
    guard: Option<EgressGuard>,
}

impl fmt::Debug for KeyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyClient").finish_non_exhaustive()
    }
}

impl KeyClient {
    /// A client trusting the system's roots and the certificates of each
    /// PEM bundle in `ca_files` (read now), giving up on a fetch after
    /// `timeout`. A refusal says which file and why.
    pub(super) fn new(ca_files: &[&Path], timeout: Duration) -> Result<Self, (usize, String)> {
        Self::build(ca_files, timeout, None)
    }

    /// [`new`](Self::new) for fetches on a tenant's behalf: every
    /// connection goes through `guard` (no proxy; the addresses a name
    /// resolves to are checked where the connection is made).
    pub(super) fn guarded(
        ca_files: &[&Path],
        timeout: Duration,
        guard: EgressGuard,
    ) -> Result<Self, (usize, String)> {
        Self::build(ca_files, timeout, Some(guard))
    }

    fn build(
        ca_files: &[&Path],
        timeout: Duration,
        guard: Option<EgressGuard>,
    ) -> Result<Self, (usize, String)> {
        let mut extra = Vec::new();
        for (i, file) in ca_files.iter().enumerate() {
            let pem = std::fs::read(file)
                .map_err(|e| (i, format!("cannot read {}: {e}", file.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                (
                    i,
                    format!("{}: not a PEM certificate bundle: {e}", file.display()),
                )
            })?;
            if certs.is_empty() {
                return Err((i, format!("{}: holds no certificate", file.display())));
            }
            extra.extend(certs);
        }
        let builder = || {
            guard
                .as_ref()
                .map_or_else(reqwest::Client::builder, EgressGuard::client_builder)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .connect_timeout(timeout)
                .user_agent(concat!("tenancy/", env!("CARGO_PKG_VERSION")))
                .tls_certs_merge(extra.iter().cloned())
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build().map_err(|e| {
                (
                    0,
                    format!("the HTTP client could not be built: {}", chain(&e)),
                )
            })
        };
        let direct = built(builder().no_proxy())?;
        Ok(Self {
            proxied: if guard.is_some() {
                direct.clone()
            } else {
                built(builder())?
            },
            direct,
            guard,
        })
    }

    /// `GET url` asking for `accept`: the body of a `200`, at most
    /// [`MAX_DOCUMENT_BYTES`]. Redirects are refused, not followed: a key
    /// document is fetched from where it was configured or discovered.
    pub(super) async fn get(&self, url: &KeyUrl, accept: &str) -> Result<Bytes, String> {
        // Parsed once, as the request uses it: an address in the URL is
        // connected to without a lookup, so the guard checks it here.
        let target = reqwest::Url::parse(url.as_str()).map_err(|e| format!("not a URL: {e}"))?;
        if let Some(guard) = &self.guard {
            guard.check_url(&target).map_err(|e| e.to_string())?;
        }
        let client = if url.loopback {
            &self.direct
        } else {
            &self.proxied
        };
        let mut response = client
            .get(target)
            .header(http::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", chain(&e)))?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(if status.is_redirection() {
                format!("answered {status}; redirects are not followed")
            } else {
                format!("answered {status}")
            });
        }
        let too_large = || format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read the body: {}", chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// An error and its causes, `: `-separated (reqwest's own message names the
/// URL only; the cause says what went wrong).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_follow_the_oidc_rule() {
        use PlainHttp::{Anywhere, Loopback};
        let url = KeyUrl::discovery("https://id.example.com/realms/kc", Loopback).unwrap();
        assert_eq!(
            url.as_str(),
            "https://id.example.com/realms/kc/.well-known/openid-configuration"
        );
        let url = KeyUrl::discovery("https://tenant.auth0.com/", Loopback).unwrap();
        assert_eq!(
            url.as_str(),
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
        assert!(KeyUrl::discovery("http://id.example.com/realms/kc", Loopback).is_err());
        assert!(KeyUrl::discovery("http://id.example.com/realms/kc", Anywhere).is_ok());
        assert!(KeyUrl::discovery("http://127.0.0.1:8080/realms/kc", Loopback).is_ok());
        assert!(KeyUrl::discovery("https://id.example.com/?x=1", Loopback).is_err());
        assert!(KeyUrl::discovery("not a url", Loopback).is_err());
    }

    #[test]
    fn https_only_means_https_in_any_case_and_nothing_else() {
        use PlainHttp::Never;
        for refused in [
            "http://127.0.0.1:6379/",
            "HTTP://127.0.0.1:6379/",
            "http://localhost:8123/?query=SELECT%201",
            "http://id.example.com/certs",
            "ftp://id.example.com/certs",
        ] {
            assert!(KeyUrl::parse(refused, Never).is_err(), "{refused}");
        }
        for url in [
            "https://id.example.com/certs",
            "HTTPS://id.example.com/certs",
            "HtTpS://[::1]:8443/certs",
        ] {
            assert!(KeyUrl::parse(url, Never).unwrap().is_https(), "{url}");
        }
        assert!(
            !KeyUrl::parse("HTTP://127.0.0.1/", PlainHttp::Loopback)
                .unwrap()
                .is_https()
        );
    }
}
