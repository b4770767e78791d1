//! Failures map into `StoreError` and never show credentials.

use std::time::Duration;

use tenancy_core::audit::{ActorKind, AuditEvent, AuditFilter};
use tenancy_core::store::{AuditQuery, AuditSink, StoreError};
use tenancy_core::testkit::stores;
use tenancy_core::writer::{AuditWriter, BatchConfig};
use tenancy_store_clickhouse::ClickHouseStores;
use tenancy_store_clickhouse::clickhouse::Client;

use crate::fixture::TestDatabase;

const PASSWORD: &str = "Sup3r-s3cret-pw";

/// The whole `Display` and `Debug` of `e` and its sources.
fn everything(e: &StoreError) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let Some(_) = tenancy_core::testkit::services::clickhouse_url() else {
        return;
    };
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let client = Client::default()
        .with_url(format!("http://127.0.0.1:{port}"))
        .with_user("default")
        .with_password(PASSWORD);
    let stores = ClickHouseStores::new(client, "tenancy").expect("valid");
    let error = stores.health().await.expect_err("nothing listens");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(!everything(&error).contains(PASSWORD));
    let error = stores.migrate().await.expect_err("nothing listens");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn refused_credentials_are_a_backend_error_without_the_password() {
    let Some(db) = TestDatabase::new("errors").await else {
        return;
    };
    let client = Client::default()
        .with_url(&db.url)
        .with_user("default")
        .with_password(PASSWORD);
    let stores = ClickHouseStores::new(client, &db.name).expect("valid");
    let error = stores.health().await.expect_err("wrong password");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    let text = everything(&error);
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!format!("{stores:?}").contains(PASSWORD));
    let error = stores
        .audit_query()
        .query(&stores::unique_tenant("err"), &AuditFilter::default())
        .await
        .expect_err("wrong password");
    assert!(!everything(&error).contains(PASSWORD));

    db.stores
        .health()
        .await
        .expect("the right client is healthy");
    assert!(ClickHouseStores::new(Client::default(), "no-dashes").is_err());
    assert!(ClickHouseStores::new(Client::default(), "x`; DROP").is_err());
}

#[tokio::test]
async fn a_batch_the_server_cannot_take_is_dropped_after_its_attempts() {
    let Some(db) = TestDatabase::new("refused").await else {
        return;
    };
    let tenant = stores::unique_tenant("err");
    let before_1970 = chrono::DateTime::from_timestamp(-1, 0).expect("valid");
    let bad = AuditEvent::new(tenant.clone(), "alice", ActorKind::User, "x").at(before_1970);
    let sink = db.stores.audit_sink();
    assert!(matches!(
        sink.record(std::slice::from_ref(&bad)).await,
        Err(StoreError::Backend(_))
    ));

    let writer = AuditWriter::audit(
        sink,
        BatchConfig::default()
            .max_delay(Duration::from_millis(10))
            .backoff(Duration::from_millis(5), Duration::from_millis(20))
            .max_attempts(3),
    );
    writer.try_enqueue(bad);
    let stats = writer.shutdown().await;
    assert_eq!(
        (stats.written, stats.dropped, stats.failed_writes),
        (0, 1, 3)
    );
    assert_eq!(db.count("audit_log", &[tenant.as_str()]).await, 0);
}
