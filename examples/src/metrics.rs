//! `GET /metrics`: the Prometheus recorder, kept bounded, and who may read
//! it.
//!
//! The recorder is installed once per process. A background task runs its
//! upkeep every [`UPKEEP_INTERVAL`], folding recorded latencies into its
//! fixed-size summaries, so its memory stays flat whether or not anyone
//! scrapes. Without `TENANCY_METRICS_TOKEN` only loopback callers may read
//! the page; with it, every caller (loopback too, since behind a local
//! proxy everyone looks like loopback) must send `Authorization: Bearer
//! <token>`. Anyone else gets the `not_found` problem.

use std::net::IpAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tenancy_core::error::{ErrorKind, TenancyError};
use tenancy_core::secret::Secret;

/// How often the recorder's upkeep runs.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The Prometheus page and its access rule. Cheap to clone.
#[derive(Clone)]
pub struct MetricsEndpoint {
    handle: PrometheusHandle,
    token: Option<Secret>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl MetricsEndpoint {
    /// Installs the global recorder and starts its upkeep on the current
    /// tokio runtime.
    pub fn install() -> Result<PrometheusHandle, String> {
        let handle = PrometheusBuilder::new()
            .upkeep_timeout(UPKEEP_INTERVAL)
            .install_recorder()
            .map_err(|e| e.to_string())?;
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(handle)
    }

    /// The page of `handle`, for loopback callers, or for callers with
    /// `token` when one is set.
    pub fn new(handle: PrometheusHandle, token: Option<Secret>) -> Self {
        Self { handle, token }
    }

    /// The Prometheus text for a caller at `peer` sending `authorization`;
    /// `not_found` for anyone not allowed.
    pub fn render(
        &self,
        peer: Option<IpAddr>,
        authorization: Option<&[u8]>,
    ) -> Result<String, TenancyError> {
        let allowed = match &self.token {
            Some(token) => authorization
                .and_then(|v| v.strip_prefix(b"Bearer "))
                .is_some_and(|given| same_bytes(given, token.expose().as_bytes())),
            None => peer.is_some_and(|p| p.is_loopback()),
        };
        if allowed {
            Ok(self.handle.render())
        } else {
            Err(ErrorKind::NotFound.into())
        }
    }
}

/// Compares in time that depends on the length only.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(token: Option<&str>) -> MetricsEndpoint {
        let recorder = PrometheusBuilder::new().build_recorder();
        MetricsEndpoint::new(recorder.handle(), token.map(Secret::new))
    }

    #[test]
    fn loopback_only_without_a_token() {
        let e = endpoint(None);
        assert!(e.render(Some("127.0.0.1".parse().unwrap()), None).is_ok());
        assert!(e.render(Some("::1".parse().unwrap()), None).is_ok());
        let err = e
            .render(Some("192.0.2.1".parse().unwrap()), None)
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
        assert!(e.render(None, None).is_err());
    }

    #[test]
    fn with_a_token_everyone_needs_it() {
        let e = endpoint(Some("scrape-0123456789abcdef"));
        let loopback = Some("127.0.0.1".parse().unwrap());
        assert!(e.render(loopback, None).is_err(), "loopback is not enough");
        assert!(e.render(loopback, Some(b"Bearer wrong")).is_err());
        assert!(
            e.render(loopback, Some(b"Bearer scrape-0123456789abcdeX"))
                .is_err()
        );
        assert!(
            e.render(
                Some("192.0.2.1".parse().unwrap()),
                Some(b"Bearer scrape-0123456789abcdef")
            )
            .is_ok()
        );
    }
}
