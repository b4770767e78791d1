//! SIGTERM during load loses no audit event of a request that got a 2xx
//! answer: the actix-web front end, in process, on the in-memory audit store.

mod support;

use std::time::Duration;

use actix_web::{App, HttpServer};
use tenancy_examples::actix_front;

#[actix_web::test]
async fn sigterm_during_load_loses_no_audit_event() {
    let prepared = support::prepared_app().await;
    let app = prepared.app.clone();
    let metrics = tenancy_examples::metrics::MetricsEndpoint::new(
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        None,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let configure = actix_front::configure(app.clone(), metrics);
    let middleware_app = app.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_front::middleware(&middleware_app))
            .configure(configure.clone())
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    let server = actix_web::rt::spawn(server);
    tokio::time::sleep(Duration::from_millis(300)).await;

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
