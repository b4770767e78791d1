//! SIGTERM during load loses no audit event of a request that got a 2xx
//! answer: the axum front end, in process, on the in-memory audit store.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tenancy_examples::{axum_front, shutdown_signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_no_audit_event() {
    let prepared = support::prepared_app().await;
    let app = prepared.app.clone();
    let metrics = tenancy_examples::metrics::MetricsEndpoint::new(
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum_front::router(app.clone(), metrics);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
    });
    // Let the server register its signal handler before the signal comes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let bearer = format!("Bearer {}", support::token("acme", "operator", "op@acme"));
    let (load, answered) = support::start_write_load(addr, bearer);
    tokio::time::sleep(Duration::from_millis(400)).await;
    support::sigterm_self();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    app.shutdown().await;
    for task in load {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let answered = answered.lock().unwrap().clone();
    support::assert_every_answer_audited(app.tenancy(), &answered).await;
}
