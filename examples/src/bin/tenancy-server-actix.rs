//! `tenancy-server-actix`: the reference API on actix-web.
// The banner, the listen line and the `token` command are the output of
// this binary, meant for stdout.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use actix_web::{App, HttpServer};
use tenancy_examples::{DRAIN_TIMEOUT, HEADER_READ_TIMEOUT, actix_front, init_logging, startup};

const PROGRAM: &str = "tenancy-server-actix";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = startup::run_token_command(PROGRAM, &args) {
        return code;
    }
    init_logging();
    actix_web::rt::System::new().block_on(run())
}

async fn run() -> ExitCode {
    let started = match startup::start(PROGRAM).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    started.announce(PROGRAM);
    let startup::Started {
        prepared,
        metrics,
        listener,
        addr,
    } = started;
    let app = prepared.app.clone();
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
    let server = match prepared.settings.tls.clone() {
        None => server.listen(listener),
        Some(tls) => server.listen_rustls_0_23(listener, (*tls).clone()),
    };
    let server = match server {
        Ok(s) => s.run(),
        Err(e) => {
            eprintln!("{PROGRAM}: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
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
            eprintln!("{PROGRAM}: {e}");
            ExitCode::FAILURE
        }
    }
}
