//! The reference server of the tenancy workspace: the whole multi-tenant
//! API on axum (`tenancy-server`) and on actix-web (`tenancy-server-actix`),
//! over one framework-free application core ([`app`]).
//!
//! ```sh
//! cargo run --release -p tenancy-examples --bin tenancy-server
//! ```
//!
//! It runs on the in-memory stores with no set-up, creates the `platform`
//! tenant, and without `TENANCY_JWT_SECRET` generates a secret and prints a
//! ready super_admin token. `tenancy-server token --tenant T --role R --sub S`
//! mints tokens for scripts.

// The README's snippets, compiled as doctests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

pub mod actix_front;
pub mod app;
pub mod axum_front;
pub mod export;
pub mod metrics;
pub mod openapi;
pub mod startup;
pub mod wire;

use std::time::Duration;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), with colours
/// only when stderr is a terminal. One event per request (tenant,
/// principal, method, path, status, latency, request id) is at `debug` on
/// the target `tenancy::request`: `RUST_LOG=info,tenancy::request=debug`.
pub fn init_logging() {
    use std::io::IsTerminal;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining requests, then flushing audit and usage");
}

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's headers, and how long an
/// idle keep-alive connection waits for the next request, on both front ends.
/// A client trickling its headers is cut off after this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
