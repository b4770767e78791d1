//! An identity provider's HTTP side for tests: [`IdpServer`] serves
//! documents at Keycloak's paths, in Keycloak's JSON shapes, on a loopback
//! port (plain HTTP, or TLS with a certificate the test makes), so that
//! discovery and JWK set fetches run over real connections.
//!
//! The tokens themselves are minted by the tests, with whatever JOSE
//! library they choose; the server publishes the public keys they give it.
//!
//! ```
//! use serde_json::json;
//! use tenancy_core::testkit::idp::{IdpServer, Reply};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let idp = IdpServer::start().await;
//! idp.publish_realm("acme", json!({ "keys": [] }));
//! let issuer = idp.issuer("acme");
//! assert!(issuer.ends_with("/realms/acme"));
//! assert_eq!(idp.hits(&IdpServer::certs_path("acme")), 0);
//!
//! // Any path can answer anything, for the bad cases.
//! idp.set("/realms/acme/.well-known/openid-configuration", Reply::status(302).header("location", "/elsewhere"));
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Longest request head read, in bytes.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A TCP port that counts the connections it is offered and answers none:
/// a service on the operator's network that no tenant may make the server
/// reach. Bind it on any loopback address (`127.0.0.2` is another host
/// than `127.0.0.1` to an allow list).
///
/// ```
/// use tenancy_core::testkit::idp::Trap;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let trap = Trap::bind("127.0.0.1").await;
/// assert_eq!(trap.connections(), 0);
/// let _ = tokio::net::TcpStream::connect(trap.addr()).await;
/// # tokio::time::sleep(std::time::Duration::from_millis(50)).await;
/// assert_eq!(trap.connections(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct Trap {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Trap {
    /// A trap on a free port of `ip`, counting from now on, for as long as
    /// the runtime runs.
    ///
    /// # Panics
    ///
    /// When no port of `ip` can be bound.
    pub async fn bind(ip: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { addr, connections }
    }

    /// Its address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The connections offered so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One answer of the server.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    /// `200` with `body` as `application/json`.
    pub fn json(body: &Value) -> Self {
        Self::raw(200, "application/json", body.to_string().into_bytes())
    }

    /// `status` with `body` of `content_type`.
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits `delay` before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug, Default)]
struct State {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// Documents at Keycloak's paths over plain HTTP on `127.0.0.1`; each
/// connection serves one request. Unknown paths answer `404`.
#[derive(Debug, Clone)]
pub struct IdpServer {
    base: String,
    state: Arc<Mutex<State>>,
}

impl IdpServer {
    /// Starts the server on a free loopback port, in the current tokio
    /// runtime; it stops with the runtime.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        let (listener, state) = Self::bind().await;
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self { base, state }
    }

    /// [`start`](Self::start) over TLS, with the certificate chain and
    /// private key in `cert_pem` and `key_pem` (a certificate for the IP
    /// address `127.0.0.1`); the base URL is `https://127.0.0.1:PORT`.
    ///
    /// # Panics
    ///
    /// When the PEM cannot be read or no loopback port can be bound.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{ServerConfig, crypto};

        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("a PEM certificate chain");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PEM private key");
        let config =
            ServerConfig::builder_with_provider(Arc::new(crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("a certificate and its key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (listener, state) = Self::bind().await;
        let base = format!("https://{}", listener.local_addr().expect("an address"));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve(tls, state).await;
                    }
                });
            }
        });
        Self { base, state }
    }

    /// [`start_tls`](Self::start_tls) with a certificate for `127.0.0.1`
    /// and `localhost` signed by a private CA made now; the CA's PEM comes
    /// with the server, for `auth.ca_file`. An identity provider on
    /// loopback is an internal address: tenant realms reach it only when
    /// `egress.allow` includes `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// When the certificates cannot be made or no loopback port can be
    /// bound.
    pub async fn start_private_tls() -> (Self, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tenancy test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key"))
            .expect("a CA certificate");
        let key = KeyPair::generate().expect("a server key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server parameters")
            .signed_by(&key, &*ca)
            .expect("a server certificate");
        let server = Self::start_tls(&cert.pem(), &key.serialize_pem()).await;
        (server, ca.pem())
    }

    async fn bind() -> (TcpListener, Arc<Mutex<State>>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        (listener, Arc::new(Mutex::new(State::default())))
    }

    /// `http://127.0.0.1:PORT` (`https://…` for [`start_tls`](Self::start_tls)).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The issuer of Keycloak realm `realm`: `{base}/realms/{realm}`.
    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.base)
    }

    /// The path of realm `realm`'s JWK set.
    pub fn certs_path(realm: &str) -> String {
        format!("/realms/{realm}/protocol/openid-connect/certs")
    }

    /// The path of realm `realm`'s discovery document.
    pub fn discovery_path(realm: &str) -> String {
        format!("/realms/{realm}/.well-known/openid-configuration")
    }

    /// Serves realm `realm` as Keycloak does: its discovery document
    /// ([`keycloak_discovery`]) and `jwks` as its JWK set.
    pub fn publish_realm(&self, realm: &str, jwks: Value) {
        let issuer = self.issuer(realm);
        self.set(
            &Self::discovery_path(realm),
            Reply::json(&keycloak_discovery(&issuer)),
        );
        self.set(&Self::certs_path(realm), Reply::json(&jwks));
    }

    /// Answers `path` with `reply` from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        self.lock().replies.insert(path.to_owned(), reply);
    }

    /// Answers `404` at `path` from now on.
    pub fn remove(&self, path: &str) {
        self.lock().replies.remove(path);
    }

    /// How many requests asked for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().hits.get(path).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A discovery document in the shape Keycloak serves for `issuer`
/// (`{base}/realms/{name}`): the endpoints under
/// `{issuer}/protocol/openid-connect/`, `jwks_uri` among them.
pub fn keycloak_discovery(issuer: &str) -> Value {
    let endpoint = |name: &str| format!("{issuer}/protocol/openid-connect/{name}");
    json!({
        "issuer": issuer,
        "authorization_endpoint": endpoint("auth"),
        "token_endpoint": endpoint("token"),
        "introspection_endpoint": endpoint("token/introspect"),
        "userinfo_endpoint": endpoint("userinfo"),
        "end_session_endpoint": endpoint("logout"),
        "jwks_uri": endpoint("certs"),
        "check_session_iframe": endpoint("login-status-iframe.html"),
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512", "RS512", "EdDSA"],
        "userinfo_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512", "RS512", "none"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "scopes_supported": ["openid", "profile", "email", "roles", "web-origins", "offline_access"],
        "claims_supported": ["aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "preferred_username", "email", "acr"],
        "tls_client_certificate_bound_access_tokens": true,
    })
}

async fn serve<S>(mut stream: S, state: Arc<Mutex<State>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            return;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let path = String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let reply = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        *state.hits.entry(path.clone()).or_default() += 1;
        state.replies.get(&path).cloned()
    }
    .unwrap_or_else(|| Reply::raw(404, "text/plain", "not found"));
    tokio::time::sleep(reply.delay).await;
    let mut response = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        reply.body.len()
    ));
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(&reply.body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}
