//! A private `redis-server` process for tests that stop, restart or
//! reconfigure their server: on a free loopback port, without persistence,
//! in its own temporary directory, killed when dropped.

// Each test file uses part of this module.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tenancy_core::{Tenancy, TenancyConfig};
use tenancy_store_redis::RedisStores;

/// How long a started server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A key prefix no other test or run uses.
pub(crate) fn unique_prefix(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("test-{tag}-{}-{nanos:x}", std::process::id())
}

/// A running (or killed) private `redis-server`.
pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port with `args` added.
    pub(crate) fn start(args: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tenancy-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = Self {
            port,
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on (also while killed: a restart reuses it).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it accepts
    /// connections.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh makes sure)");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Redis Cluster of `redis-server` nodes, stopped when dropped.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<RedisServer>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each, node timeout
    /// 1 s, and waits until every node sees the cluster as ok and every
    /// replica has its replication link up.
    pub(crate) fn start(masters: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string()])
            .arg("--cluster-yes")
            .output()
            .expect("redis-cli is installed (scripts/test.sh makes sure)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|n| cluster.ready(n.port())) {
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// The nodes' `redis://` URLs.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// What `redis-cli` against the node on `port` prints.
    pub(crate) fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the node sees the cluster as ok and, as a replica, has its
    /// replication link up.
    fn ready(&self, port: u16) -> bool {
        let replication = self.cli(port, &["info", "replication"]);
        self.cli(port, &["cluster", "info"])
            .contains("cluster_state:ok")
            && (replication.contains("role:master")
                || replication.contains("master_link_status:up"))
    }

    /// The index of the node that is master of `slot`, and its slot
    /// ranges, from `CLUSTER NODES`.
    pub(crate) fn master_of(&self, slot: u16) -> (usize, Vec<(u16, u16)>) {
        let listing = self.cli(self.nodes[0].port(), &["cluster", "nodes"]);
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let ranges: Vec<(u16, u16)> = fields[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| {
                    let (from, to) = r.split_once('-').unwrap_or((r, r));
                    (from.parse().expect("slot"), to.parse().expect("slot"))
                })
                .collect();
            if ranges.iter().any(|&(from, to)| (from..=to).contains(&slot)) {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("ip:port@bus");
                let index = self
                    .nodes
                    .iter()
                    .position(|n| n.port() == port)
                    .expect("one of ours");
                return (index, ranges);
            }
        }
        panic!("no master serves slot {slot}: {listing}")
    }
}

/// An engine with `config` whose five stores are `redis`'s.
pub(crate) fn engine(redis: &RedisStores, config: TenancyConfig) -> Tenancy {
    Tenancy::builder(config)
        .tenant_store(Arc::new(redis.tenant_store()))
        .api_key_store(Arc::new(redis.api_key_store()))
        .rate_limiter(Arc::new(redis.rate_limiter()))
        .quota_store(Arc::new(redis.quota_store()))
        .realm_store(Arc::new(redis.realm_store()))
        .build()
        .expect("the engine builds")
}
