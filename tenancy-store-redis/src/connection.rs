//! The shared connection: [`RedisOptions`] and [`RedisStores`].

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};
use tenancy_core::store::StoreError;

use crate::error::RedisStoreError;
use crate::keyspace::Keyspace;
use crate::{
    RedisApiKeyStore, RedisQuotaStore, RedisRateLimiter, RedisRealmStore, RedisTenantStore,
};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "tenancy";
/// The default deadline of one store call.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// The default deadline of connecting.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The first wait between two reconnection attempts; it doubles (with
/// jitter) up to [`RECONNECT_MAX_DELAY`].
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between two reconnection attempts, so a server that
/// comes back is found again within about a second.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// How [`RedisStores`] connects and names its keys.
///
/// ```
/// use std::time::Duration;
/// use tenancy_store_redis::RedisOptions;
///
/// let options = RedisOptions::default()
///     .with_key_prefix("myapp")
///     .with_command_timeout(Duration::from_millis(100));
/// assert_eq!(options.key_prefix, "myapp");
/// assert_eq!(options.connect_timeout, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The first segment of every key (default `tenancy`), so several
    /// deployments (or test runs) can share one Redis without seeing each
    /// other's data.
    pub key_prefix: String,
    /// The deadline of every store call, including any wait for a
    /// reconnection (default 250 ms). Past it the call fails with
    /// [`StoreError::Timeout`].
    pub command_timeout: Duration,
    /// The deadline of connecting, for [`RedisStores::connect`] and for
    /// each reconnection attempt (default 1 s).
    pub connect_timeout: Duration,
    /// For a `rediss://` URL: a PEM file of the CA certificates the server's
    /// certificate must chain to, instead of the system's roots (feature
    /// `tls`). Read when connecting.
    pub ca_cert: Option<PathBuf>,
    /// How many replicas must hold a write before the stores acknowledge it
    /// (default 0: Redis's asynchronous replication, where a write
    /// acknowledged in a master's last moments can be lost in a failover).
    ///
    /// With `n > 0`, every write of tenants, API keys (issue, revoke,
    /// expiry), realms and quota charges is followed by `WAIT n` on the
    /// master that took it; fewer acknowledgements within the call
    /// deadline fail the call with [`StoreError::Unavailable`]
    /// ([`RedisStoreError::NotReplicated`]), as a timeout does: the write
    /// may or may not have been kept. Rate-limit buckets and `last_used`
    /// times are not waited for: losing their last moments only grants a
    /// little more allowance. Give each master at least `n + 1` replicas
    /// so that writes go on after one of them is promoted.
    ///
    /// The waited writes share a connection of their own (one per node on
    /// a cluster), apart from the hot path's: `WAIT` blocks the connection
    /// it is sent on, so they take a replica round trip each, in turn.
    pub replica_acks: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ca_cert: None,
            replica_acks: 0,
        }
    }
}

impl RedisOptions {
    /// Another key prefix: 1 to 64 printable ASCII characters without
    /// spaces, `{` or `}` (braces would change the Redis Cluster hash tag of
    /// every key). Checked when connecting.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Another deadline for every store call.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Another deadline for connecting.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the CA certificates in the PEM file at `path` (and only them)
    /// for a `rediss://` server.
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Waits for `replicas` replicas to hold each acknowledged write; see
    /// [`replica_acks`](Self::replica_acks).
    pub fn with_replica_acks(mut self, replicas: u32) -> Self {
        self.replica_acks = replicas;
        self
    }

    fn validate(&self) -> Result<(), RedisStoreError> {
        let p = &self.key_prefix;
        if p.is_empty() || p.len() > 64 {
            return Err(RedisStoreError::InvalidOptions(
                "it must have 1 to 64 characters",
            ));
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
        {
            return Err(RedisStoreError::InvalidOptions(
                "it must be printable ASCII without spaces, '{' or '}'",
            ));
        }
        if self.command_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(RedisStoreError::InvalidOptions(
                "timeouts must be longer than zero",
            ));
        }
        Ok(())
    }
}

/// One Redis connection shared by the four stores of this crate.
///
/// It wraps a [`ConnectionManager`]: one multiplexed connection that
/// pipelines concurrent calls and reconnects by itself after the server
/// went away. Cloning is cheap (an [`Arc`]); every store made from it (and
/// every clone) shares the same connection.
///
/// Every store call runs under [`RedisOptions::command_timeout`]: it returns
/// [`StoreError::Timeout`] past it (also while a reconnection is under
/// way), [`StoreError::Unavailable`] when the connection fails, and never
/// hangs.
///
/// `Debug` shows the server's address and database, never the password.
///
/// ```no_run
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// redis.health().await?;
/// let limiter = redis.rate_limiter();
/// # let _ = limiter;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStores {
    inner: Arc<Inner>,
}

struct Inner {
    manager: Conn,
    /// With [`RedisOptions::replica_acks`]: a connection of its own for the
    /// writes that `WAIT` for replicas, as `WAIT` blocks the connection it
    /// is sent on and the hot path's calls must not queue behind it.
    waited_writes: Option<Conn>,
    keys: Keyspace,
    command_timeout: Duration,
    replica_acks: u32,
    /// `host:port/db`, for `Debug`: never the password.
    target: String,
}

impl fmt::Debug for RedisStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStores")
            .field("target", &self.inner.target)
            .field("key_prefix", &self.inner.keys.prefix())
            .field("command_timeout", &self.inner.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks that it answers `PING`, all within
    /// [`RedisOptions::connect_timeout`].
    ///
    /// Fails with [`RedisStoreError::InvalidUrl`] or
    /// [`RedisStoreError::InvalidOptions`] for bad settings, and with an
    /// error that converts to [`StoreError::Unavailable`] or
    /// [`StoreError::Timeout`] when the server cannot be reached. To start
    /// while the server is still down, use [`connect_lazy`](Self::connect_lazy).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, RedisStoreError> {
        options.validate()?;
        let client = open(url, &options)?;
        let connect_timeout = options.connect_timeout;
        let connecting = async {
            // One direct attempt first: unlike the manager, which keeps
            // retrying in the background, it reports why the server cannot
            // be reached.
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(connect_timeout));
            let mut probe = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING").query_async::<()>(&mut probe).await?;
            drop(probe);
            // Then establish the manager's own connection.
            let stores = Self::with_client(client.clone(), options)?;
            let mut manager = stores.conn();
            redis::cmd("PING").query_async::<()>(&mut manager).await?;
            Ok::<Self, RedisStoreError>(stores)
        };
        match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(RedisStoreError::Timeout(connect_timeout)),
        }
    }

    /// The stores for the server at `url`, without connecting: the first
    /// call connects, and until the server answers every call fails within
    /// its deadline. Must be called inside a Tokio runtime.
    ///
    /// Fails only for a bad URL or bad options.
    pub fn connect_lazy(url: &str, options: RedisOptions) -> Result<Self, RedisStoreError> {
        options.validate()?;
        Self::with_client(open(url, &options)?, options)
    }

    fn with_client(client: Client, options: RedisOptions) -> Result<Self, RedisStoreError> {
        let info = client.get_connection_info();
        let target = format!("{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout));
        let waited_writes = (options.replica_acks > 0)
            .then(|| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .transpose()?
            .map(Conn::Single);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                manager: Conn::Single(manager),
                waited_writes,
                keys: Keyspace::new(options.key_prefix),
                command_timeout: options.command_timeout,
                replica_acks: options.replica_acks,
                target,
            }),
        })
    }

    /// The [`TenantStore`](tenancy_core::store::TenantStore) on this connection.
    pub fn tenant_store(&self) -> RedisTenantStore {
        RedisTenantStore::new(self.clone())
    }

    /// The [`RealmStore`](tenancy_core::store::RealmStore) on this connection.
    pub fn realm_store(&self) -> RedisRealmStore {
        RedisRealmStore::new(self.clone())
    }

    /// The [`ApiKeyStore`](tenancy_core::store::ApiKeyStore) on this connection.
    pub fn api_key_store(&self) -> RedisApiKeyStore {
        RedisApiKeyStore::new(self.clone())
    }

    /// The member store on this connection.
    pub fn member_store(&self) -> crate::RedisMemberStore {
        crate::RedisMemberStore::new(self.clone())
    }

    /// The team store on this connection.
    pub fn team_store(&self) -> crate::RedisTeamStore {
        crate::RedisTeamStore::new(self.clone())
    }

    /// The [`QuotaStore`](tenancy_core::store::QuotaStore) on this connection.
    pub fn quota_store(&self) -> RedisQuotaStore {
        RedisQuotaStore::new(self.clone())
    }

    /// The [`RateLimiter`](tenancy_core::store::RateLimiter) on this connection.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.clone())
    }

    /// The key prefix every key starts with.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The deadline of every store call.
    pub fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// Whether the server answers `PING` within the call deadline.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.run(async {
            let mut conn = self.conn();
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok(())
        })
        .await
    }

    /// A handle on the shared connection (cheap: both kinds are `Arc`s).
    pub(crate) fn conn(&self) -> Conn {
        self.inner.manager.clone()
    }

    /// The connection for a write that [`replicated`](Self::replicated)
    /// will wait for: its own one with [`RedisOptions::replica_acks`], the
    /// shared one otherwise.
    pub(crate) fn write_conn(&self) -> Conn {
        self.inner
            .waited_writes
            .as_ref()
            .unwrap_or(&self.inner.manager)
            .clone()
    }

    /// Connects to the Redis Cluster that `nodes` (`redis://host:port`
    /// seed nodes, or `rediss://` with the `tls` feature) belong to, and
    /// checks that it answers `PING`, within
    /// [`RedisOptions::connect_timeout`].
    ///
    /// The cluster client follows `MOVED` and `ASK` redirections and a
    /// resharding by itself; every store call keeps its deadline. Each
    /// script and command touches one slot: a tenant's keys share its hash
    /// tag, and what spans tenants (the tenant index, API keys by digest)
    /// is read key by key.
    ///
    /// ```no_run
    /// use tenancy_store_redis::{RedisOptions, RedisStores};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let nodes = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"];
    /// let redis = RedisStores::connect_cluster(&nodes, RedisOptions::default()).await?;
    /// redis.health().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_cluster(
        nodes: &[&str],
        options: RedisOptions,
    ) -> Result<Self, RedisStoreError> {
        options.validate()?;
        if nodes.is_empty() {
            return Err(RedisStoreError::InvalidOptions(
                "a cluster needs at least one seed node",
            ));
        }
        let clients = nodes
            .iter()
            .map(|url| open(url, &options))
            .collect::<Result<Vec<_>, _>>()?;
        let infos: Vec<_> = clients
            .iter()
            .map(|c| c.get_connection_info().clone())
            .collect();
        let target = format!("cluster of {}", infos[0].addr());
        let builder = ClusterClient::builder(infos)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.command_timeout);
        // The nodes found later are reached with the builder's TLS
        // settings, not the seeds': they need the CA too.
        #[cfg(feature = "tls")]
        let builder = match &options.ca_cert {
            Some(path) => builder.certs(ca_certificates(path)?),
            None => builder,
        };
        let client = builder.build().map_err(RedisStoreError::InvalidUrl)?;
        let connect_timeout = options.connect_timeout;
        let replica_acks = options.replica_acks;
        let connecting = async {
            let mut connection = client.get_async_connection().await?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await?;
            let waited_writes = if replica_acks > 0 {
                Some(Conn::Cluster(client.get_async_connection().await?))
            } else {
                None
            };
            Ok::<_, RedisStoreError>((connection, waited_writes))
        };
        let (connection, waited_writes) =
            match tokio::time::timeout(connect_timeout, connecting).await {
                Ok(result) => result?,
                Err(_) => return Err(RedisStoreError::Timeout(connect_timeout)),
            };
        Ok(Self {
            inner: Arc::new(Inner {
                manager: Conn::Cluster(connection),
                waited_writes,
                keys: Keyspace::new(options.key_prefix),
                command_timeout: options.command_timeout,
                replica_acks: options.replica_acks,
                target,
            }),
        })
    }

    pub(crate) fn keys(&self) -> &Keyspace {
        &self.inner.keys
    }

    /// After writes to `keys` on `conn` (a [`write_conn`](Self::write_conn)):
    /// with [`RedisOptions::replica_acks`] set, `WAIT`s on the master of
    /// each key until that many replicas hold every write made on its
    /// connection so far.
    pub(crate) async fn replicated(
        &self,
        conn: &mut Conn,
        keys: &[&str],
    ) -> Result<(), RedisStoreError> {
        let wanted = self.inner.replica_acks;
        if wanted == 0 {
            return Ok(());
        }
        // Half the call deadline, so that a missing replica is reported
        // as such rather than as a timeout of the whole call.
        let timeout = u64::try_from(self.inner.command_timeout.as_millis() / 2).unwrap_or(u64::MAX);
        for acked in conn.wait(keys, wanted, timeout).await? {
            if acked < wanted {
                return Err(RedisStoreError::NotReplicated { wanted, acked });
            }
        }
        Ok(())
    }

    /// Runs one store call under the call deadline.
    pub(crate) async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, RedisStoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.command_timeout, call).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

/// Parses `url` without ever repeating it (it may hold a password).
/// The client of `url`: plain for `redis://`; TLS for `rediss://` (feature
/// `tls`), verified against `options.ca_cert` or the system's roots. A TLS
/// URL never falls back to plain text, and certificate checks cannot be
/// turned off (`#insecure` is refused).
fn open(url: &str, options: &RedisOptions) -> Result<Client, RedisStoreError> {
    let tls = url
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if tls && !cfg!(feature = "tls") {
        return Err(RedisStoreError::InvalidOptions(
            "rediss:// URLs need the `tls` feature of tenancy-store-redis",
        ));
    }
    if tls && url.contains('#') {
        return Err(RedisStoreError::InvalidOptions(
            "a rediss:// URL takes no fragment: certificate checks cannot be turned off",
        ));
    }
    match &options.ca_cert {
        None => Client::open(url).map_err(RedisStoreError::InvalidUrl),
        Some(_) if !tls => Err(RedisStoreError::InvalidOptions(
            "a CA certificate goes with a rediss:// URL",
        )),
        #[cfg(feature = "tls")]
        Some(path) => {
            Client::build_with_tls(url, ca_certificates(path)?).map_err(RedisStoreError::InvalidUrl)
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(RedisStoreError::InvalidOptions(
            "rediss:// URLs need the `tls` feature of tenancy-store-redis",
        )),
    }
}

/// The CA certificates of the PEM file at `path`, as the only roots a
/// server's certificate may chain to.
#[cfg(feature = "tls")]
fn ca_certificates(path: &std::path::Path) -> Result<redis::TlsCertificates, RedisStoreError> {
    let pem = std::fs::read(path).map_err(|e| {
        RedisStoreError::InvalidCaCert(format!("cannot read {}: {e}", path.display()))
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(RedisStoreError::InvalidCaCert(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}

/// The connection of [`RedisStores`]: one server through a reconnecting
/// manager, or a cluster through the cluster client.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs `cmds`, which may each touch another slot, and answers their
    /// replies in order: one pipeline on one server; on a cluster, where a
    /// pipeline must stay in one slot, one command after the other.
    pub(crate) async fn each<T: redis::FromRedisValue>(
        &mut self,
        cmds: Vec<Cmd>,
    ) -> redis::RedisResult<Vec<T>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(c).await
            }
            Conn::Cluster(c) => {
                let mut replies = Vec::with_capacity(cmds.len());
                for cmd in &cmds {
                    replies.push(cmd.query_async(c).await?);
                }
                Ok(replies)
            }
        }
    }

    /// `WAIT replicas timeout_ms` on the master of each of `keys` (once on
    /// one server, where every key has the same master); the replicas that
    /// acknowledged, per `WAIT`.
    async fn wait(
        &mut self,
        keys: &[&str],
        replicas: u32,
        timeout_ms: u64,
    ) -> redis::RedisResult<Vec<u32>> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        match self {
            Conn::Single(c) => Ok(vec![wait.query_async(c).await?]),
            Conn::Cluster(c) => {
                let mut acked = Vec::with_capacity(keys.len());
                for key in keys {
                    let master = Route::with_key(key, SlotAddr::Master);
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master));
                    let value = c.route_command(wait.clone(), routing).await?;
                    acked.push(redis::from_redis_value(value)?);
                }
                Ok(acked)
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
