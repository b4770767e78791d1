//! `tenancy-server-actix`: the reference API on actix-web.
// The banner, the listen line and the `token` command are the output of
// this binary, meant for stdout.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use actix_web::{App, HttpServer};
use tenancy_examples::metrics::MetricsEndpoint;
use tenancy_examples::{DRAIN_TIMEOUT, HEADER_READ_TIMEOUT, actix_front, init_logging, startup};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = startup::run_token_command("tenancy-server-actix", &args) {
        return code;
    }
    init_logging();
    actix_web::rt::System::new().block_on(run())
}

async fn run() -> ExitCode {
    let metrics = match MetricsEndpoint::install() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("tenancy-server-actix: cannot install the metrics recorder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prepared = match startup::prepare(std::env::vars()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tenancy-server-actix: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match std::net::TcpListener::bind(prepared.settings.bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "tenancy-server-actix: cannot listen on {}: {e}",
                prepared.settings.bind
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(prepared.settings.bind);
    let app = prepared.app.clone();
    let metrics = MetricsEndpoint::new(metrics, prepared.settings.metrics_token.clone());
    let configure = actix_front::configure(app.clone(), metrics);
    let middleware_app = app.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_front::middleware(&middleware_app))
            .configure(configure.clone())
    })
    .shutdown_timeout(DRAIN_TIMEOUT.as_secs())
    .client_request_timeout(HEADER_READ_TIMEOUT)
    .keep_alive(HEADER_READ_TIMEOUT);
    let scheme = if prepared.settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = match prepared.settings.tls.clone() {
        None => server.listen(listener),
        Some(tls) => server.listen_rustls_0_23(listener, (*tls).clone()),
    };
    let server = match server {
        Ok(s) => s.run(),
        Err(e) => {
            eprintln!("tenancy-server-actix: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("tenancy-server-actix listening on {scheme}://{addr}");
    if let Some(banner) = &prepared.banner {
        println!("\n{banner}");
    }
    let served = server.await;
    tracing::info!("shutting down: requests drained, flushing audit and usage");
    app.shutdown().await;
    tracing::info!(
        audit_dropped = app.tenancy().audit_dropped(),
        "stopped; audit and usage flushed"
    );
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenancy-server-actix: {e}");
            ExitCode::FAILURE
        }
    }
}
