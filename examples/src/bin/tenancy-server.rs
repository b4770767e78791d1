//! `tenancy-server`: the reference API on axum.
// The banner, the listen line and the `token` command are the output of
// this binary, meant for stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;

use hyper_util::rt::TokioTimer;
use tenancy_examples::{
    DRAIN_TIMEOUT, HEADER_READ_TIMEOUT, axum_front, init_logging, shutdown_signal, startup,
};

const PROGRAM: &str = "tenancy-server";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = startup::run_token_command(PROGRAM, &args) {
        return code;
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
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
        ..
    } = started;
    let app = prepared.app.clone();
    let service = axum_front::router(app.clone(), metrics)
        .into_make_service_with_connect_info::<SocketAddr>();
    // One server for plain and TLS: axum-server, whose hyper builder takes
    // the header-read timeout (which also ends idle keep-alive connections).
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.graceful_shutdown(Some(DRAIN_TIMEOUT));
    });
    let served = match prepared.settings.tls.clone() {
        None => match axum_server::from_tcp(listener) {
            Ok(server) => {
                cut_off_slow_clients(server)
                    .handle(handle)
                    .serve(service)
                    .await
            }
            Err(e) => Err(e),
        },
        Some(tls) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
            match axum_server::from_tcp_rustls(listener, config) {
                Ok(server) => {
                    cut_off_slow_clients(server)
                        .handle(handle)
                        .serve(service)
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
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

/// The header-read timeout on a server's hyper builder; it also ends idle
/// keep-alive connections, which wait for the next request's headers.
fn cut_off_slow_clients<A: axum_server::Address, Acc>(
    mut server: axum_server::Server<A, Acc>,
) -> axum_server::Server<A, Acc> {
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    server
}
