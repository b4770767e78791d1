//! The Redis rate limiter against its baseline: limiter checks per second
//! through `RedisRateLimiter` (16 checks in flight over one multiplexed
//! connection), and `redis-benchmark -P 16 -n 100000 -q` running `EVALSHA`
//! of the same script with the same arguments, in the same run. Prints both
//! figures and their ratio.
//!
//! With `TENANCY_BENCH_REDIS_CLUSTER_NODES` (comma-separated seed nodes of
//! a Redis Cluster), it also measures the cluster: checks of 48 tenants
//! spread over every master, 16 in flight per master, next to
//! `redis-benchmark --cluster -P 16`, whose `{tag}` puts the key on every
//! master in turn.
//!
//! ```text
//! cargo bench -p tenancy-benches --bench redis_limiter
//! TENANCY_BENCH_REDIS_URL=redis://127.0.0.1:6380/ cargo bench -p tenancy-benches --bench redis_limiter
//! TENANCY_BENCH_REDIS_CLUSTER_NODES=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo bench -p tenancy-benches --bench redis_limiter
//! ```
//!
//! The server is `TENANCY_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379/`);
//! when nothing answers there, the bench says so and exits.

use std::num::NonZeroU32;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tenancy_core::limit::{RateCheck, RateLimitKey, RateQuota};
use tenancy_core::store::RateLimiter;
use tenancy_core::tenant::TenantId;
use tenancy_store_redis::redis::{self, ConnectionAddr};
use tenancy_store_redis::{RedisOptions, RedisRateLimiter, RedisStores};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const URL_VAR: &str = "TENANCY_BENCH_REDIS_URL";
const CLUSTER_VAR: &str = "TENANCY_BENCH_REDIS_CLUSTER_NODES";
/// Tenants checked on the cluster: enough that every master gets some.
const CLUSTER_TENANTS: usize = 48;
const DEFAULT_URL: &str = "redis://127.0.0.1:6379/";
/// Checks in flight at once, as `redis-benchmark -P 16` pipelines.
const IN_FLIGHT: u64 = 16;
/// Checks of the run whose rate is printed (as `redis-benchmark -n`).
const CHECKS: u64 = 100_000;

/// A quota no run of this bench exhausts: every check is allowed, so both
/// sides run the script's full path (read, decide, write).
fn quota() -> RateQuota {
    RateQuota::per_second(1_000_000)
        .expect("non-zero")
        .with_burst(NonZeroU32::new(1_000_000_000).expect("non-zero"))
}

/// Runs `n` checks, `in_flight` at a time, taking `checks` in turn; the
/// time it took.
async fn run_checks(
    limiter: &Arc<RedisRateLimiter>,
    checks: &[RateCheck],
    n: u64,
    in_flight: u64,
) -> Duration {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for worker in 0..in_flight {
        let share = n / in_flight + u64::from(worker < n % in_flight);
        let limiter = Arc::clone(limiter);
        let checks = checks.to_vec();
        tasks.spawn(async move {
            for i in 0..share {
                let check = &checks[(worker + i) as usize % checks.len()];
                let decision = limiter
                    .check(std::slice::from_ref(check))
                    .await
                    .expect("check");
                assert!(decision.allowed);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("bench task");
    }
    started.elapsed()
}

/// Checks per second of a run of [`CHECKS`], after a warm-up.
fn checks_per_sec(
    rt: &Runtime,
    limiter: &Arc<RedisRateLimiter>,
    checks: &[RateCheck],
    in_flight: u64,
) -> f64 {
    rt.block_on(run_checks(limiter, checks, CHECKS / 10, in_flight));
    let took = rt.block_on(run_checks(limiter, checks, CHECKS, in_flight));
    CHECKS as f64 / took.as_secs_f64()
}

/// `SCRIPT LOAD` of the limiter's script on the server at `url`; its SHA.
async fn load_script(url: &str) -> String {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(RedisRateLimiter::SCRIPT)
        .query_async(&mut conn)
        .await
        .expect("SCRIPT LOAD")
}

/// Requests per second of `redis-benchmark -P 16 -n 100000 -q EVALSHA …`
/// against the server at `url`, with `--cluster` when `cluster` is set.
fn redis_benchmark(url: &str, cluster: bool, sha: &str, key: &str) -> Result<f64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone() else {
        return Err("redis-benchmark needs a plain TCP address".into());
    };
    let [interval, burst] = RedisRateLimiter::script_args(quota());
    let mut args = Vec::new();
    if cluster {
        args.push("--cluster".to_owned());
    }
    args.extend([
        "-h".to_owned(),
        host,
        "-p".to_owned(),
        port.to_string(),
        "-P".to_owned(),
        IN_FLIGHT.to_string(),
        "-n".to_owned(),
        CHECKS.to_string(),
        "-q".to_owned(),
        "EVALSHA".to_owned(),
        sha.to_owned(),
        "1".to_owned(),
        key.to_owned(),
        interval.to_string(),
        burst.to_string(),
    ]);
    eprintln!("running: redis-benchmark {}", args.join(" "));
    let out = Command::new("redis-benchmark")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(['\r', '\n'])
        .filter_map(|line| line.split_once(" requests per second"))
        .filter_map(|(head, _)| head.rsplit(' ').next()?.parse::<f64>().ok())
        .next_back()
        .ok_or_else(|| format!("no rate in redis-benchmark's output: {text}"))
}

/// Prints our rate next to redis-benchmark's.
fn report(what: &str, ours: f64, in_flight: u64, baseline: Result<f64, String>) {
    eprintln!("{what}: RedisRateLimiter::check ({in_flight} in flight): {ours:.0} checks/s");
    match baseline {
        Ok(theirs) => {
            eprintln!(
                "{what}: redis-benchmark -P {IN_FLIGHT} EVALSHA (same script): {theirs:.0} requests/s"
            );
            eprintln!(
                "{what}: ratio: {:.1} % of redis-benchmark",
                100.0 * ours / theirs
            );
        }
        Err(e) => eprintln!("{what}: redis-benchmark baseline unavailable: {e}"),
    }
}

/// The cluster at `nodes`: our checks over [`CLUSTER_TENANTS`] tenants,
/// 16 in flight per master, next to `redis-benchmark --cluster`.
fn cluster(rt: &Runtime, nodes: &str, prefix: &str) {
    let nodes: Vec<&str> = nodes.split(',').map(str::trim).collect();
    let options = RedisOptions::default()
        .with_key_prefix(prefix)
        .with_command_timeout(Duration::from_secs(5));
    let redis = match rt.block_on(RedisStores::connect_cluster(&nodes, options)) {
        Ok(redis) => redis,
        Err(e) => {
            eprintln!("redis_limiter: no Redis Cluster at {CLUSTER_VAR} ({e})");
            return;
        }
    };
    let limiter = Arc::new(redis.rate_limiter());
    let checks: Vec<RateCheck> = (0..CLUSTER_TENANTS)
        .map(|n| RateCheck {
            key: RateLimitKey::tenant(TenantId::new(format!("bench-{n}")).expect("valid")),
            quota: quota(),
        })
        .collect();
    let masters: u64 = rt.block_on(async {
        let client = redis::Client::open(nodes[0]).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("cluster_size:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("cluster_size")
    });
    let in_flight = IN_FLIGHT * masters;
    let ours = checks_per_sec(rt, &limiter, &checks, in_flight);
    // Every node gets the script: redis-benchmark sends EVALSHA to each
    // master.
    let mut sha = String::new();
    for node in &nodes {
        sha = rt.block_on(load_script(node));
    }
    let baseline = redis_benchmark(nodes[0], true, &sha, &format!("{prefix}:rl:{{tag}}:tenant"));
    report(
        &format!("cluster of {masters} masters"),
        ours,
        in_flight,
        baseline,
    );
}

fn main() {
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let rt = Runtime::new().expect("tokio runtime");
    let prefix = format!("bench-{}", std::process::id());
    let options = RedisOptions::default()
        .with_key_prefix(prefix.clone())
        .with_command_timeout(Duration::from_secs(5));
    let redis = match rt.block_on(RedisStores::connect(&url, options)) {
        Ok(redis) => redis,
        Err(e) => {
            eprintln!("redis_limiter: no Redis at {URL_VAR} ({e}); nothing to measure");
            return;
        }
    };
    let limiter = Arc::new(redis.rate_limiter());
    let tenant = TenantId::new("bench").expect("valid");
    let check = RateCheck {
        key: RateLimitKey::tenant(tenant),
        quota: quota(),
    };
    let checks = [check.clone()];
    let key = format!("{prefix}:{}", check.key.to_key_string());

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("redis_limiter");
        group.throughput(Throughput::Elements(1));
        group.bench_function("RedisRateLimiter::check, 16 in flight", |b| {
            b.iter_custom(|iters| rt.block_on(run_checks(&limiter, &checks, iters, IN_FLIGHT)));
        });
        group.finish();
    }
    criterion.final_summary();

    // The figures to compare, from runs of the same size.
    let ours = checks_per_sec(&rt, &limiter, &checks, IN_FLIGHT);
    let sha = rt.block_on(load_script(&url));
    let baseline = redis_benchmark(&url, false, &sha, &key);
    rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
        }
    });
    report("one server", ours, IN_FLIGHT, baseline);

    if let Ok(nodes) = std::env::var(CLUSTER_VAR) {
        cluster(&rt, &nodes, &prefix);
    }
}
