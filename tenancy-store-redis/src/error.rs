//! [`RedisStoreError`] and its mapping into the core's [`StoreError`].

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use tenancy_core::store::StoreError;

/// Why a Redis store call (or connecting) failed.
///
/// Every store method returns the core's [`StoreError`]; this type is what
/// it is made from (`impl From<RedisStoreError> for StoreError`), and what
/// [`RedisStores::connect`](crate::RedisStores::connect) returns, so a
/// configuration mistake can be told apart from an unreachable server.
///
/// No message of this type contains the connection URL or its password.
///
/// ```
/// use std::time::Duration;
/// use tenancy_core::store::StoreError;
/// use tenancy_store_redis::RedisStoreError;
///
/// let err = RedisStoreError::Timeout(Duration::from_millis(250));
/// assert!(matches!(StoreError::from(err), StoreError::Timeout));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The connection URL could not be parsed. The URL is not repeated.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// The [`RedisOptions`](crate::RedisOptions) cannot be used: a bad key
    /// prefix (see [`with_key_prefix`](crate::RedisOptions::with_key_prefix))
    /// or a zero timeout.
    #[error("invalid Redis store options: {0}")]
    InvalidOptions(&'static str),
    /// The CA certificate file of [`RedisOptions::ca_cert`](crate::RedisOptions::ca_cert)
    /// cannot be read or holds no certificate.
    #[error("Redis CA certificate: {0}")]
    InvalidCaCert(String),
    /// The call did not finish within its deadline.
    #[error("Redis call did not finish within {0:?}")]
    Timeout(Duration),
    /// Redis (or the connection to it) answered with an error.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A write was made, but fewer replicas than
    /// [`RedisOptions::replica_acks`](crate::RedisOptions::replica_acks)
    /// acknowledged it in time: it may not survive a failover.
    #[error("written, but {acked} of {wanted} replicas acknowledged it in time")]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that acknowledged.
        acked: u32,
    },
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl RedisStoreError {
    /// Whether the error means the server cannot be reached right now (as
    /// opposed to a server that answered with an error).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Redis(e) => is_unavailable(e),
            Self::NotReplicated { .. } => true,
            Self::InvalidUrl(_)
            | Self::InvalidOptions(_)
            | Self::InvalidCaCert(_)
            | Self::Timeout(_) => false,
            Self::Corrupt(_) => false,
        }
    }
}

fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::ClusterConnectionNotFound
        )
}

impl From<RedisStoreError> for StoreError {
    fn from(err: RedisStoreError) -> Self {
        match err {
            RedisStoreError::Timeout(_) => StoreError::Timeout,
            RedisStoreError::Redis(e) if e.is_timeout() => StoreError::Timeout,
            RedisStoreError::Corrupt(what) => StoreError::Corrupt(what),
            e if e.is_unavailable() => StoreError::unavailable(e),
            e => StoreError::backend(e),
        }
    }
}

impl From<serde_json::Error> for RedisStoreError {
    fn from(err: serde_json::Error) -> Self {
        Self::Corrupt(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_kind_to_the_core_error() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            StoreError::from(RedisStoreError::from(refused)),
            StoreError::Unavailable(_)
        ));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(matches!(
            StoreError::from(RedisStoreError::from(timed_out)),
            StoreError::Timeout
        ));
        let server = RedisError::from((ErrorKind::UnexpectedReturnType, "wrong type"));
        assert!(matches!(
            StoreError::from(RedisStoreError::from(server)),
            StoreError::Backend(_)
        ));
        assert!(matches!(
            StoreError::from(RedisStoreError::Corrupt("x".into())),
            StoreError::Corrupt(_)
        ));
    }
}
