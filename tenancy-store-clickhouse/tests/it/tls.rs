//! The stores over HTTPS (feature `tls`): the acceptance suite passes
//! through `https_client` with the test CA, and a wrong CA, no CA (the
//! system's roots) or plain HTTP to the HTTPS port is refused, never
//! downgraded.

use tenancy_core::testkit::{services, stores};
use tenancy_store_clickhouse::{ClickHouseStores, TlsSetupError, https_client};

use crate::fixture::TestDatabase;

#[tokio::test]
async fn the_acceptance_suite_passes_over_https() {
    let (Some(url), Some((tls_url, ca, _))) =
        (services::clickhouse_url(), services::clickhouse_tls())
    else {
        return;
    };
    // Named (and dropped afterwards) through the plain port; used over TLS.
    let db = TestDatabase::unmigrated(&url, "tls_suite");
    let client = https_client(Some(&ca)).unwrap().with_url(&tls_url);
    let stores = ClickHouseStores::new(client, &db.name).unwrap();
    stores
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate over TLS: {e}"));
    stores::audit_log(&stores.audit_sink(), &stores.audit_query()).await;
    stores::usage_meter(&stores.usage_meter()).await;
    stores::telemetry_store(&stores.telemetry_store()).await;
}

#[tokio::test]
async fn a_wrong_ca_no_ca_or_plain_http_is_refused() {
    let (Some(url), Some((tls_url, _, other_ca))) =
        (services::clickhouse_url(), services::clickhouse_tls())
    else {
        return;
    };
    let db = TestDatabase::unmigrated(&url, "tls_refused");
    for client in [
        https_client(Some(&other_ca)).unwrap().with_url(&tls_url),
        https_client(None).unwrap().with_url(&tls_url),
    ] {
        let stores = ClickHouseStores::new(client, &db.name).unwrap();
        let error = stores
            .migrate()
            .await
            .expect_err("an unknown CA")
            .to_string();
        assert!(error.contains("certificate"), "{error}");
    }
    // Plain HTTP to the HTTPS port gets no answer it could read.
    let plain = tls_url.replacen("https://", "http://", 1);
    let stores =
        ClickHouseStores::new(https_client(None).unwrap().with_url(&plain), &db.name).unwrap();
    assert!(stores.migrate().await.is_err());
    // A CA file that holds no certificate is refused before any connection.
    let not_a_ca =
        std::env::temp_dir().join(format!("tenancy-ch-not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&not_a_ca, "hello").unwrap();
    assert!(matches!(
        https_client(Some(&not_a_ca)),
        Err(TlsSetupError::CaCert(_))
    ));
}
