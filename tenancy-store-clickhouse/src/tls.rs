//! [`https_client`]: a `clickhouse` client for `https://` servers, verified
//! against the system's roots or a CA file of your own (feature `tls`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Keep-alive probes on idle connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Idle connections are closed before ClickHouse's own 3 s keep-alive does.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a TLS client could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The CA file cannot be read, or holds no PEM certificate.
    #[error("ClickHouse CA certificate: {0}")]
    CaCert(String),
    /// rustls refused the settings.
    #[error("ClickHouse TLS: {0}")]
    Tls(String),
}

/// A client (set its URL with [`Client::with_url`]) whose `https://`
/// connections are verified against the PEM certificates in `ca_cert`
/// alone, or the system's roots when `None`; rustls with the aws-lc-rs
/// provider. An `https://` URL never falls back to plain text; an
/// `http://` URL stays plain, as written.
///
/// ```no_run
/// use tenancy_store_clickhouse::{ClickHouseStores, https_client};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = https_client(Some("/etc/tenancy/clickhouse-ca.pem".as_ref()))?
///     .with_url("https://clickhouse.internal:8443");
/// let stores = ClickHouseStores::new(client, "tenancy")?;
/// stores.migrate().await?;
/// # Ok(())
/// # }
/// ```
pub fn https_client(ca_cert: Option<&Path>) -> Result<Client, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Tls(e.to_string()))?;
    let roots = match ca_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                TlsSetupError::CaCert(format!("cannot read {}: {e}", path.display()))
            })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsSetupError::CaCert(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(TlsSetupError::CaCert(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TlsSetupError::CaCert(format!("{}: {e}", path.display())))?;
            }
            roots
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            roots
        }
    };
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let hyper = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector);
    Ok(Client::with_http_client(hyper))
}
