//! TLS from `TENANCY_TLS_CERT` and `TENANCY_TLS_KEY`, on both binaries.

mod support;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn write_cert(dir: &std::path::Path) -> (String, String, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (
        cert_path.to_string_lossy().into_owned(),
        key_path.to_string_lossy().into_owned(),
        cert.cert.der().to_vec(),
    )
}

async fn https_get(addr: &str, der: &[u8], path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_serve_https() {
    let dir = std::env::temp_dir().join(format!("tenancy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, der) = write_cert(&dir);
    for (name, bin) in support::binaries() {
        let mut server = support::Server::start(
            name,
            bin,
            &[("TENANCY_TLS_CERT", &cert), ("TENANCY_TLS_KEY", &key)],
        );
        assert!(server.output().contains("listening on https://"), "{name}");
        let addr = server.base.trim_start_matches("http://").to_owned();
        let health = https_get(&addr, &der, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{name}: {health}");
        let refused = https_get(&addr, &der, "/api/v1/tenants").await;
        assert!(refused.starts_with("HTTP/1.1 401"), "{name}: {refused}");
        assert!(refused.contains("unauthenticated"), "{name}");
        assert_eq!(server.terminate(), Some(0), "{name}");
    }
    for (name, bin) in support::binaries() {
        let out = std::process::Command::new(bin)
            .env_clear()
            .env("TENANCY_TLS_CERT", dir.join("missing.pem"))
            .env("TENANCY_TLS_KEY", &key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("TENANCY_TLS_CERT"),
            "{name}"
        );
        let out = std::process::Command::new(bin)
            .env_clear()
            .env("TENANCY_TLS_CERT", &cert)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("TENANCY_TLS_KEY"),
            "{name}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
