//! The Redis rate limiter against its baseline: limiter checks per second
//! through `RedisRateLimiter` (16 checks in flight over one multiplexed
//! connection), and `redis-benchmark -P 16 -n 100000 -q` running `EVALSHA`
//! of the same script with the same arguments, in the same run. Prints both
//! figures and their ratio.
//!
//! ```text
//! cargo bench -p tenancy-benches --bench redis_limiter
//! TENANCY_BENCH_REDIS_URL=redis://127.0.0.1:6380/ cargo bench -p tenancy-benches --bench redis_limiter
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

/// Runs `n` checks, [`IN_FLIGHT`] at a time; the time it took.
async fn run_checks(limiter: &Arc<RedisRateLimiter>, check: &RateCheck, n: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for worker in 0..IN_FLIGHT {
        let share = n / IN_FLIGHT + u64::from(worker < n % IN_FLIGHT);
        let limiter = Arc::clone(limiter);
        let check = check.clone();
        tasks.spawn(async move {
            for _ in 0..share {
                let decision = limiter
                    .check(std::slice::from_ref(&check))
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

/// Requests per second of `redis-benchmark -P 16 -n 100000 -q EVALSHA …`.
fn redis_benchmark(url: &str, sha: &str, key: &str) -> Result<f64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr().clone() else {
        return Err("redis-benchmark needs a plain TCP address".into());
    };
    let [interval, burst] = RedisRateLimiter::script_args(quota());
    let args = [
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
    ];
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
            b.iter_custom(|iters| rt.block_on(run_checks(&limiter, &check, iters)));
        });
        group.finish();
    }
    criterion.final_summary();

    // The figures to compare, from runs of the same size.
    let ours = {
        rt.block_on(run_checks(&limiter, &check, CHECKS / 10)); // warm up
        let took = rt.block_on(run_checks(&limiter, &check, CHECKS));
        CHECKS as f64 / took.as_secs_f64()
    };
    let sha: String = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
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
    });
    let baseline = redis_benchmark(&url, &sha, &key);
    rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
        }
    });

    eprintln!("RedisRateLimiter::check ({IN_FLIGHT} in flight): {ours:.0} checks/s");
    match baseline {
        Ok(theirs) => {
            eprintln!(
                "redis-benchmark -P {IN_FLIGHT} EVALSHA (same script): {theirs:.0} requests/s"
            );
            eprintln!("ratio: {:.1} % of redis-benchmark", 100.0 * ours / theirs);
        }
        Err(e) => eprintln!("redis-benchmark baseline unavailable: {e}"),
    }
}
