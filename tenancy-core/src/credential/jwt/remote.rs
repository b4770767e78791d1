//! JWK sets behind a URL: fetched lazily, cached, refreshed on an unknown
//! `kid` or when old, at most once per interval per realm, one fetch in
//! flight at a time.
//!
//! The fetch is one HTTP/1.1 `GET` over a fresh connection (hyper's
//! connection API over a tokio socket), with a timeout and a size limit.
//! `https` needs the `jwks-https` feature (rustls with the aws-lc-rs
//! provider and the Mozilla roots of `webpki-roots`).

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use super::keys::{KeySet, VerifyKey, parse_jwks};
use crate::config::JwtAlgorithm;

/// Largest JWK set accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How often a realm's JWK sets may be fetched, and when they are old.
#[derive(Debug, Clone, Copy)]
pub(super) struct JwksTiming {
    /// Least time between two fetches of a realm's sets once loaded.
    pub(super) min_refresh: Duration,
    /// Least time between two attempts while nothing has loaded yet.
    pub(super) retry_unloaded: Duration,
    /// Sets older than this are refreshed on the next token.
    pub(super) max_age: Duration,
    /// Limit on one fetch, connect to last byte.
    pub(super) timeout: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(30),
            retry_unloaded: Duration::from_secs(5),
            max_age: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A parsed `http` or `https` JWK set URL.
#[derive(Clone)]
pub(super) struct JwksUrl {
    text: Box<str>,
    https: bool,
    host: Box<str>,
    port: u16,
    uri: http::Uri,
}

impl fmt::Debug for JwksUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl JwksUrl {
    /// Parses `url`; the message says what is wrong. Plain `http` only to a
    /// loopback host, or anywhere when `allow_http`: keys fetched in the
    /// clear can be swapped by anyone on the path.
    pub(super) fn parse(url: &str, allow_http: bool) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("must be an http or https URL".to_owned()),
        };
        if https && !cfg!(feature = "jwks-https") {
            return Err(
                "https JWK set URLs need the `jwks-https` feature of tenancy-core".to_owned(),
            );
        }
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
        if !https && !allow_http && !is_loopback_host(host) {
            return Err(
                "plain http is accepted only for a loopback host; use https, or set allow_http = true on this key"
                    .to_owned(),
            );
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self {
            text: url.into(),
            https,
            host: host.into(),
            port,
            uri,
        })
    }

    pub(super) fn as_str(&self) -> &str {
        &self.text
    }
}

/// One `jwks_url` key of a realm.
#[derive(Debug)]
pub(super) struct RemoteSource {
    pub(super) url: JwksUrl,
    pub(super) only_alg: Option<JwtAlgorithm>,
    pub(super) only_kid: Option<String>,
}

/// Why a realm's keys are being refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshReason {
    /// Nothing has loaded yet.
    Unloaded,
    /// A token names a `kid` no key has.
    UnknownKid,
    /// The sets are older than the maximum age.
    Stale,
}

/// The keys of a realm with at least one `jwks_url`: its fixed keys plus
/// those last fetched from each URL.
pub(super) struct RemoteKeys {
    fixed: Vec<Arc<VerifyKey>>,
    sources: Vec<RemoteSource>,
    timing: JwksTiming,
    current: RwLock<Arc<KeySet>>,
    /// Reference point of `fetched_at`.
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last successful fetch; 0: never.
    fetched_at: AtomicU64,
    /// Nanoseconds after `epoch` of the last attempt; 0: never.
    attempted_at: AtomicU64,
    /// Finished attempts, so callers that waited for one know it happened.
    attempts: AtomicU64,
    /// Held by the one refresh in flight.
    refresh: tokio::sync::Mutex<RefreshState>,
}

struct RefreshState {
    last_attempt: Option<Instant>,
    /// The keys last fetched from each source (`None`: never).
    fetched: Vec<Option<Vec<Arc<VerifyKey>>>>,
}

impl fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("sources", &self.sources)
            .field("keys", &self.snapshot().keys())
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    pub(super) fn new(
        fixed: Vec<Arc<VerifyKey>>,
        sources: Vec<RemoteSource>,
        timing: JwksTiming,
    ) -> Self {
        let fetched = sources.iter().map(|_| None).collect();
        Self {
            current: RwLock::new(Arc::new(KeySet::new(fixed.clone()))),
            fixed,
            sources,
            timing,
            epoch: Instant::now(),
            fetched_at: AtomicU64::new(0),
            attempted_at: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_attempt: None,
                fetched,
            }),
        }
    }

    /// The keys now.
    pub(super) fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Whether a fetch has ever succeeded.
    pub(super) fn is_loaded(&self) -> bool {
        self.fetched_at.load(Ordering::Acquire) != 0
    }

    /// Whether the keys are older than the maximum age and no attempt was
    /// made within the refresh interval.
    pub(super) fn is_stale(&self) -> bool {
        let fetched = self.fetched_at.load(Ordering::Acquire);
        if fetched == 0 {
            return false;
        }
        let now = self.nanos_since_epoch();
        let attempted = self.attempted_at.load(Ordering::Acquire);
        now.saturating_sub(fetched) >= nanos(self.timing.max_age)
            && now.saturating_sub(attempted) >= nanos(self.timing.min_refresh)
    }

    fn nanos_since_epoch(&self) -> u64 {
        // At least 1, so that 0 keeps meaning "never".
        nanos(self.epoch.elapsed()).max(1)
    }

    /// Fetches the sets again unless an attempt was made too recently.
    /// Callers that arrive while a fetch is in flight wait for it and share
    /// its result; a refresh for age never waits (the current keys serve).
    pub(super) async fn refresh(&self, realm: &str, reason: RefreshReason) {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut state = if reason == RefreshReason::Stale {
            match self.refresh.try_lock() {
                Ok(state) => state,
                Err(_) => return,
            }
        } else {
            self.refresh.lock().await
        };
        if self.attempts.load(Ordering::Acquire) != seen {
            // Another caller's fetch finished while this one waited.
            return;
        }
        let interval = if self.is_loaded() {
            self.timing.min_refresh
        } else {
            self.timing.retry_unloaded
        };
        if state.last_attempt.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        state.last_attempt = Some(Instant::now());
        self.attempted_at
            .store(self.nanos_since_epoch(), Ordering::Release);

        let mut any_success = false;
        for (i, source) in self.sources.iter().enumerate() {
            match self.fetch_one(source).await {
                Ok(keys) => {
                    tracing::debug!(
                        realm,
                        url = source.url.as_str(),
                        keys = keys.len(),
                        ?reason,
                        "JWK set fetched"
                    );
                    state.fetched[i] = Some(keys);
                    any_success = true;
                }
                Err(error) => {
                    tracing::warn!(
                        realm,
                        url = source.url.as_str(),
                        %error,
                        ?reason,
                        "JWK set fetch failed"
                    );
                }
            }
        }
        if any_success {
            let mut keys = self.fixed.clone();
            for fetched in state.fetched.iter().flatten() {
                keys.extend(fetched.iter().cloned());
            }
            let set = Arc::new(KeySet::new(keys));
            match self.current.write() {
                Ok(mut current) => *current = set,
                Err(poisoned) => *poisoned.into_inner() = set,
            }
            self.fetched_at
                .store(self.nanos_since_epoch(), Ordering::Release);
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    async fn fetch_one(&self, source: &RemoteSource) -> Result<Vec<Arc<VerifyKey>>, String> {
        let body = tokio::time::timeout(self.timing.timeout, fetch(&source.url))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timing.timeout))??;
        parse_jwks(&body, source.only_alg, source.only_kid.as_deref())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `GET url`, answering the body of a `200`.
async fn fetch(url: &JwksUrl) -> Result<Bytes, String> {
    let tcp = tokio::net::TcpStream::connect((&*url.host, url.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if url.https {
        #[cfg(feature = "jwks-https")]
        {
            let tls = tls::connect(&url.host, tcp).await?;
            return get(url, hyper_util::rt::TokioIo::new(tls)).await;
        }
        #[cfg(not(feature = "jwks-https"))]
        {
            return Err("https needs the `jwks-https` feature".to_owned());
        }
    }
    get(url, hyper_util::rt::TokioIo::new(tcp)).await
}

/// One request over a fresh HTTP/1.1 connection, driving the connection in
/// the same task (no spawn, so dropping the future closes the socket).
async fn get<IO>(url: &JwksUrl, io: IO) -> Result<Bytes, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let path = url
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = url
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(
            http::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .header(http::header::USER_AGENT, "tenancy-jwks")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;

    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read the body: {e}"))?;
        Ok(body.to_bytes())
    };

    let mut exchange = pin!(exchange);
    let mut conn = pin!(conn);
    let mut conn_done = false;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if !conn_done && let Poll::Ready(result) = conn.as_mut().poll(cx) {
            conn_done = true;
            if let Err(e) = result {
                return Poll::Ready(Err(format!("connection failed: {e}")));
            }
            // The connection closed; what it delivered may still finish the
            // exchange.
            return exchange.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

#[cfg(feature = "jwks-https")]
mod tls {
    use std::sync::{Arc, OnceLock};

    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    fn connector() -> Result<TlsConnector, String> {
        static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let roots =
                    RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS set-up failed: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
            .map(TlsConnector::from)
    }

    pub(super) async fn connect(
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("not a TLS server name: {e}"))?;
        connector()?
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    }
}
