//! Start-up shared by both binaries: settings from `TENANCY_*` variables,
//! the engine and its stores, the `platform` tenant, the development secret
//! and its ready super_admin token, and the `token` command.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tenancy_core::config::{ConfigError, DEFAULT_ISSUER, ENV_REALM};
use tenancy_core::credential::{JwtClaims, encode_hs256};
use tenancy_core::rbac::Role;
use tenancy_core::secret::Secret;
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::{Tenancy, TenancyConfig};

use tenancy_store_clickhouse::{ClickHouseCluster, ClickHouseStores};
use tenancy_store_redis::{RedisOptions, RedisStoreError, RedisStores};

use crate::app::App;
use crate::metrics::MetricsEndpoint;

/// The tenant created at start, home of the platform's super_admins.
pub const PLATFORM_TENANT: &str = "platform";
/// Seconds between retention sweeps unless `TENANCY_RETENTION_SWEEP_SECS`
/// says otherwise.
pub const DEFAULT_RETENTION_SWEEP_SECS: u64 = 3_600;
/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Why the server cannot start: the key and what is wrong.
#[derive(Debug)]
pub struct StartError(pub ConfigError);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        Self(e)
    }
}

/// Settings of the server process itself (the engine's come from
/// [`TenancyConfig`]).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `TENANCY_BIND`.
    pub bind: SocketAddr,
    /// TLS from `TENANCY_TLS_CERT` and `TENANCY_TLS_KEY` (both or neither),
    /// loaded and checked at start.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `TENANCY_METRICS_TOKEN`: when set, `/metrics` needs it as a bearer
    /// token from every caller (at least 16 bytes).
    pub metrics_token: Option<Secret>,
}

/// A prepared server: the application, its settings, and the banner to
/// print when the secret was generated.
pub struct Prepared {
    /// The application.
    pub app: Arc<App>,
    /// The process settings.
    pub settings: ServerSettings,
    /// Lines for stdout: the generated token and a curl line.
    pub banner: Option<String>,
}

/// Reads the settings, builds the engine on the in-memory stores, creates
/// the `platform` tenant, and, without `TENANCY_JWT_SECRET`, generates a
/// secret and a super_admin token. Runs inside a tokio runtime.
pub async fn prepare(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Prepared, StartError> {
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    let lookup: HashMap<String, String> = vars.iter().cloned().collect();
    let get = |k: &str| lookup.get(k).filter(|v| !v.is_empty()).cloned();

    let bind_text = get("TENANCY_BIND").unwrap_or_else(|| DEFAULT_BIND.to_owned());
    let bind: SocketAddr = bind_text.parse().map_err(|_| {
        ConfigError::new("TENANCY_BIND", "expected an address such as 127.0.0.1:8080")
    })?;
    let tls = match (get("TENANCY_TLS_CERT"), get("TENANCY_TLS_KEY")) {
        (Some(cert), Some(key)) => Some(tls_config(&PathBuf::from(cert), &PathBuf::from(key))?),
        (None, None) => None,
        (Some(_), None) => {
            return Err(
                ConfigError::new("TENANCY_TLS_KEY", "required with TENANCY_TLS_CERT").into(),
            );
        }
        (None, Some(_)) => {
            return Err(
                ConfigError::new("TENANCY_TLS_CERT", "required with TENANCY_TLS_KEY").into(),
            );
        }
    };
    let metrics_token = get("TENANCY_METRICS_TOKEN").map(Secret::new);
    // Whether sweeps erase tenants archived past their retention.
    let erase_archived = match get("TENANCY_ERASE_ARCHIVED").as_deref() {
        None | Some("true" | "1" | "on") => true,
        Some("false" | "0" | "off") => false,
        Some(_) => {
            return Err(ConfigError::new("TENANCY_ERASE_ARCHIVED", "must be true or false").into());
        }
    };
    // Seconds between retention sweeps; 0 turns them off.
    let retention_sweep = match get("TENANCY_RETENTION_SWEEP_SECS") {
        None => Some(std::time::Duration::from_secs(DEFAULT_RETENTION_SWEEP_SECS)),
        Some(secs) => match secs.parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(std::time::Duration::from_secs(secs)),
            Err(_) => {
                return Err(ConfigError::new(
                    "TENANCY_RETENTION_SWEEP_SECS",
                    "must be a number of seconds (0 turns the sweep off)",
                )
                .into());
            }
        },
    };
    if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
        return Err(ConfigError::new("TENANCY_METRICS_TOKEN", "must be at least 16 bytes").into());
    }
    let generated = if get("TENANCY_JWT_SECRET").is_none() {
        let secret = generate_secret()?;
        vars.retain(|(k, _)| k != "TENANCY_JWT_SECRET");
        vars.push(("TENANCY_JWT_SECRET".to_owned(), secret.expose().to_owned()));
        Some(secret)
    } else {
        None
    };
    let config = TenancyConfig::load_from(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let mut builder = Tenancy::builder(config.clone());
    let replica_acks: u32 = get("TENANCY_REDIS_REPLICA_ACKS")
        .map(|acks| acks.parse())
        .transpose()
        .map_err(|_| {
            ConfigError::new(
                "TENANCY_REDIS_REPLICA_ACKS",
                "must be a number of replicas, such as 1",
            )
        })?
        .unwrap_or(0);
    // One server, or the seed nodes of a cluster.
    let redis_target = match (get("TENANCY_REDIS_URL"), get("TENANCY_REDIS_CLUSTER_NODES")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "TENANCY_REDIS_CLUSTER_NODES",
                "set TENANCY_REDIS_URL or TENANCY_REDIS_CLUSTER_NODES, not both",
            )
            .into());
        }
        (Some(url), None) => Some((url, false)),
        (None, Some(nodes)) => Some((nodes, true)),
        (None, None) => None,
    };
    if let Some((target, cluster)) = redis_target {
        let prefix = get("TENANCY_REDIS_PREFIX").unwrap_or_else(|| "tenancy".to_owned());
        let mut options = RedisOptions::default().with_key_prefix(prefix);
        if let Some(ca) = get("TENANCY_REDIS_CA_CERT") {
            options = options.with_ca_cert(ca);
        }
        options = options.with_replica_acks(replica_acks);
        let (connected, url_key) = if cluster {
            let nodes: Vec<&str> = target.split(',').map(str::trim).collect();
            (
                RedisStores::connect_cluster(&nodes, options).await,
                "TENANCY_REDIS_CLUSTER_NODES",
            )
        } else {
            (
                RedisStores::connect(&target, options).await,
                "TENANCY_REDIS_URL",
            )
        };
        let redis = connected.map_err(|e| {
            let key = match e {
                RedisStoreError::InvalidCaCert(_) => "TENANCY_REDIS_CA_CERT",
                _ => url_key,
            };
            ConfigError::new(key, e.to_string())
        })?;
        builder = builder
            .tenant_store(Arc::new(redis.tenant_store()))
            .api_key_store(Arc::new(redis.api_key_store()))
            .realm_store(Arc::new(redis.realm_store()))
            .rate_limiter(Arc::new(redis.rate_limiter()))
            .quota_store(Arc::new(redis.quota_store()))
            .member_store(Arc::new(redis.member_store()))
            .team_store(Arc::new(redis.team_store()));
        tracing::info!(redis = ?redis, "tenants, API keys, realms, rate limits, quotas, users and teams in Redis");
    }
    let mut telemetry: Option<Arc<dyn tenancy_core::store::TelemetryStore>> = None;
    if let Some(url) = get("TENANCY_CLICKHOUSE_URL") {
        let database = get("TENANCY_CLICKHOUSE_DATABASE").unwrap_or_else(|| "tenancy".to_owned());
        let ca = get("TENANCY_CLICKHOUSE_CA_CERT");
        let (user, password) = (
            get("TENANCY_CLICKHOUSE_USER"),
            get("TENANCY_CLICKHOUSE_PASSWORD"),
        );
        // Every server, the shards of a cluster too, takes the same TLS and
        // credentials.
        let client_for = |url: &str, key: &'static str| -> Result<_, ConfigError> {
            let client = if url.starts_with("https://") {
                tenancy_store_clickhouse::https_client(ca.as_deref().map(std::path::Path::new))
                    .map_err(|e| ConfigError::new("TENANCY_CLICKHOUSE_CA_CERT", e.to_string()))?
            } else if ca.is_some() {
                return Err(ConfigError::new(
                    key,
                    "TENANCY_CLICKHOUSE_CA_CERT goes with https:// URLs only",
                ));
            } else {
                tenancy_store_clickhouse::clickhouse::Client::default()
            };
            let mut client = client.with_url(url);
            if let Some(user) = &user {
                client = client.with_user(user);
            }
            if let Some(password) = &password {
                client = client.with_password(password);
            }
            Ok(client)
        };
        let mut clickhouse =
            ClickHouseStores::new(client_for(&url, "TENANCY_CLICKHOUSE_URL")?, &database)
                .map_err(|e| ConfigError::new("TENANCY_CLICKHOUSE_DATABASE", e.to_string()))?;
        match (
            get("TENANCY_CLICKHOUSE_CLUSTER"),
            get("TENANCY_CLICKHOUSE_SHARDS"),
        ) {
            (Some(name), Some(shards)) => {
                let shards = shards
                    .split(',')
                    .map(|url| client_for(url.trim(), "TENANCY_CLICKHOUSE_SHARDS"))
                    .collect::<Result<Vec<_>, _>>()?;
                let cluster = ClickHouseCluster::new(&name, shards)
                    .map_err(|e| ConfigError::new("TENANCY_CLICKHOUSE_CLUSTER", e.to_string()))?;
                clickhouse = clickhouse.on_cluster(cluster);
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::new(
                    "TENANCY_CLICKHOUSE_CLUSTER",
                    "TENANCY_CLICKHOUSE_CLUSTER and TENANCY_CLICKHOUSE_SHARDS go together",
                )
                .into());
            }
        }
        clickhouse
            .migrate()
            .await
            .map_err(|e| ConfigError::new("TENANCY_CLICKHOUSE_URL", e.to_string()))?;
        // The engine's writer batches, retries and holds events through a
        // ClickHouse outage; the sinks only write batches.
        builder = builder
            .audit(
                Arc::new(clickhouse.audit_sink()),
                Some(Arc::new(clickhouse.audit_query())),
            )
            .usage_meter(Arc::new(clickhouse.usage_meter()));
        telemetry = Some(Arc::new(clickhouse.telemetry_store()));
        tracing::info!(clickhouse = ?clickhouse, "audit log, usage and telemetry in ClickHouse");
    }
    let tenancy = builder.build()?;
    let platform =
        TenantId::new(PLATFORM_TENANT).map_err(|e| ConfigError::new("platform", e.to_string()))?;
    if tenancy
        .tenant_store()
        .get(&platform)
        .await
        .map_err(|e| ConfigError::new("tenant store", e.to_string()))?
        .is_none()
    {
        tenancy
            .admin()
            .create_tenant(TenantRecord::new(platform, "Platform", "enterprise"))
            .await
            .map_err(|e| ConfigError::new("tenant store", e.to_string()))?;
    }

    let banner = match generated {
        Some(secret) => {
            let issuer = issuer(&config);
            let token = mint(
                &secret,
                &issuer,
                PLATFORM_TENANT,
                Role::SuperAdmin,
                "admin@platform",
                24 * 3600,
            )
            .map_err(|e| ConfigError::new("TENANCY_JWT_SECRET", e.to_string()))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            Some(format!(
                "No TENANCY_JWT_SECRET was given: generated one for this run (tokens die with the process).\n\
                 A super_admin token of the platform tenant, valid 24 hours:\n\n\
                 export TOKEN={token}\n\n\
                 Try it:\n\n\
                 curl -s -H \"Authorization: Bearer $TOKEN\" {scheme}://{bind}/api/v1/tenants\n"
            ))
        }
        None => None,
    };
    let app = match telemetry {
        Some(telemetry) => App::with_telemetry(tenancy, telemetry),
        None => App::new(tenancy),
    };
    if let Some(every) = retention_sweep {
        let platform = TenantId::new(PLATFORM_TENANT)
            .map_err(|e| ConfigError::new("platform", e.to_string()))?;
        app.spawn_retention_sweeper(every, erase_archived, platform);
    }
    Ok(Prepared {
        app,
        settings: ServerSettings {
            bind,
            tls,
            metrics_token,
        },
        banner,
    })
}

/// A rustls server configuration (aws-lc-rs, HTTP/1.1) from PEM files: the
/// certificate chain and its private key. Errors name the variable.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| ConfigError::new("TENANCY_TLS_CERT", format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            "TENANCY_TLS_CERT",
            format!("{}: no certificate", cert.display()),
        )
        .into());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ConfigError::new("TENANCY_TLS_KEY", format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("TENANCY_TLS_CERT", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::new(
                "TENANCY_TLS_KEY",
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn issuer(config: &TenancyConfig) -> String {
    config
        .realms
        .iter()
        .find(|r| r.name == ENV_REALM)
        .map_or_else(|| DEFAULT_ISSUER.to_owned(), |r| r.issuer.clone())
}

fn generate_secret() -> Result<Secret, ConfigError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|_| ConfigError::new("TENANCY_JWT_SECRET", "no OS randomness to generate one"))?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

fn mint(
    secret: &Secret,
    issuer: &str,
    tenant: &str,
    role: Role,
    subject: &str,
    ttl_secs: i64,
) -> Result<String, tenancy_core::TenancyError> {
    let ttl = std::time::Duration::from_secs(ttl_secs.unsigned_abs());
    let claims = JwtClaims::new(issuer, subject, role.as_str(), ttl).with_tenant(tenant);
    encode_hs256(secret, &claims)
}

/// `token --tenant T --role R --sub S [--ttl SECONDS]`: mints a token with
/// `TENANCY_JWT_SECRET` and `TENANCY_JWT_ISSUER` for scripts. Returns the
/// token, or what is wrong with the arguments.
pub fn token_command(
    args: &[String],
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<String, String> {
    let vars: HashMap<String, String> = vars.into_iter().collect();
    let mut tenant = None;
    let mut role = None;
    let mut sub = None;
    let mut ttl: i64 = 3600;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tenant" => {
                tenant = Some(TenantId::new(value).map_err(|e| format!("--tenant: {e}"))?)
            }
            "--role" => {
                role = Some(value.parse::<Role>().map_err(|_| {
                    "--role: expected viewer, operator, admin, super_admin or system".to_owned()
                })?)
            }
            "--sub" => sub = Some(value.clone()),
            "--ttl" => {
                ttl = value
                    .parse()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or("--ttl: expected seconds")?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let usage = "usage: token --tenant T --role R --sub S [--ttl SECONDS]";
    let (Some(tenant), Some(role), Some(sub)) = (tenant, role, sub) else {
        return Err(usage.to_owned());
    };
    let secret = vars
        .get("TENANCY_JWT_SECRET")
        .filter(|s| !s.is_empty())
        .ok_or("TENANCY_JWT_SECRET must be set to mint tokens the server accepts")?;
    let issuer = vars
        .get("TENANCY_JWT_ISSUER")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_ISSUER.to_owned());
    mint(
        &Secret::new(secret.clone()),
        &issuer,
        tenant.as_str(),
        role,
        &sub,
        ttl,
    )
    .map_err(|e| e.to_string())
}

/// What both servers have before they serve: the application, the metrics
/// endpoint, and the listening socket (non-blocking, as both runtimes take
/// it).
pub struct Started {
    /// The application and the process settings.
    pub prepared: Prepared,
    /// `GET /metrics`.
    pub metrics: MetricsEndpoint,
    /// The socket, bound to `TENANCY_BIND`.
    pub listener: std::net::TcpListener,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Started {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.prepared.settings.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Prints the listen line and the banner (the generated token and a
    /// curl line) to stdout.
    #[allow(clippy::print_stdout)]
    pub fn announce(&self, program: &str) {
        println!("{program} listening on {}://{}", self.scheme(), self.addr);
        if let Some(banner) = &self.prepared.banner {
            println!("\n{banner}");
        }
    }
}

/// Installs the metrics recorder, prepares the application from the
/// process environment and binds its socket; a failure is printed as
/// `{program}: …` and returned as the exit code (2 for a configuration
/// error).
pub async fn start(program: &str) -> Result<Started, std::process::ExitCode> {
    use std::process::ExitCode;
    let handle = MetricsEndpoint::install().map_err(|e| {
        eprintln!("{program}: cannot install the metrics recorder: {e}");
        ExitCode::FAILURE
    })?;
    let prepared = prepare(std::env::vars()).await.map_err(|e| {
        eprintln!("{program}: {e}");
        ExitCode::from(2)
    })?;
    let bind = prepared.settings.bind;
    let listener = std::net::TcpListener::bind(bind)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            eprintln!("{program}: cannot listen on {bind}: {e}");
            ExitCode::FAILURE
        })?;
    let addr = listener.local_addr().unwrap_or(bind);
    let metrics = MetricsEndpoint::new(handle, prepared.settings.metrics_token.clone());
    Ok(Started {
        prepared,
        metrics,
        listener,
        addr,
    })
}

/// When `args` (without the program name) are a `token` command, runs it:
/// prints the token on stdout, or the error on stderr; returns the exit code.
/// `None` for any other arguments.
// Printing the token is the command's purpose.
#[allow(clippy::print_stdout)]
pub fn run_token_command(program: &str, args: &[String]) -> Option<std::process::ExitCode> {
    if args.first().map(String::as_str) != Some("token") {
        return None;
    }
    Some(match token_command(&args[1..], std::env::vars()) {
        Ok(token) => {
            println!("{token}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program} token: {e}");
            std::process::ExitCode::from(2)
        }
    })
}
