//! A resharding under load: while tasks charge quotas and check rate limits
//! of tenants on one master, `redis-cli --cluster reshard` moves every slot
//! of that master to another. The cluster client follows `MOVED` and
//! `ASK`; every call answers within its deadline, and the quotas stay
//! exact: each tenant is charged exactly up to its limit, and its counter
//! holds exactly what was charged.

mod redis_server;

use std::time::{Duration, Instant};

use chrono::Utc;
use redis_server::{Cluster, unique_prefix};
use tenancy_core::label::Label;
use tenancy_core::limit::{QuotaCharge, QuotaKey, RateCheck, RateLimitKey, RateQuota};
use tenancy_core::plan::{Limit, Period};
use tenancy_core::store::{QuotaStore, RateLimiter, StoreError};
use tenancy_core::tenant::TenantId;
use tenancy_core::testkit::services;
use tenancy_store_redis::{RedisOptions, RedisStores};

const TENANTS: usize = 12;
/// Each tenant's budget, and how many charges of 1 it gets.
const LIMIT: u64 = 400;
const ATTEMPTS: u64 = 600;
/// The longest one call may take: its deadline (250 ms) plus scheduling.
const ANSWER_LIMIT: Duration = Duration::from_millis(1000);

/// What one tenant's task saw.
#[derive(Debug, Default)]
struct Tally {
    charged: u64,
    exceeded: u64,
    failed: u64,
    longest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_stay_exact_while_slots_move() {
    // Runs where the test servers run (scripts/test.sh), which installs
    // redis-server and redis-cli.
    if services::redis_cluster_nodes().is_none() {
        return;
    }
    let cluster = Cluster::start(3, 0);
    let nodes = cluster.urls();
    let seeds: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let options = RedisOptions::default().with_key_prefix(unique_prefix("reshard"));
    let redis = RedisStores::connect_cluster(&seeds, options)
        .await
        .expect("connect to the private cluster");

    // Move every slot of the first tenant's master to another master.
    let tenants: Vec<TenantId> = (0..TENANTS)
        .map(|n| TenantId::new(format!("acme-{n}")).expect("valid"))
        .collect();
    let port = cluster.nodes[0].port();
    let slot_of = |id: &TenantId| -> u16 {
        let reply = cluster.cli(port, &["cluster", "keyslot", &format!("{{{id}}}")]);
        reply.trim().parse().expect("a slot number")
    };
    let (source, ranges) = cluster.master_of(slot_of(&tenants[0]));
    let target = (source + 1) % cluster.nodes.len();
    let id_of = |index: usize| {
        cluster
            .cli(cluster.nodes[index].port(), &["cluster", "myid"])
            .trim()
            .to_owned()
    };
    let slots: u32 = ranges
        .iter()
        .map(|&(from, to)| u32::from(to - from) + 1)
        .sum();
    let moving = tenants
        .iter()
        .filter(|id| {
            ranges
                .iter()
                .any(|&(from, to)| (from..=to).contains(&slot_of(id)))
        })
        .count();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for tenant in tenants.clone() {
        let quotas = redis.quota_store();
        let limiter = redis.rate_limiter();
        tasks.push(tokio::spawn(async move {
            let key = QuotaKey::new(
                tenant.clone(),
                Label::new("events").expect("valid"),
                Period::Day,
                Utc::now(),
            );
            let check = RateCheck {
                key: RateLimitKey::tenant(tenant.clone()),
                quota: RateQuota::per_second(1_000_000).expect("non-zero"),
            };
            let mut tally = Tally::default();
            for _ in 0..ATTEMPTS {
                let began = Instant::now();
                let limited = limiter.check(std::slice::from_ref(&check)).await;
                let charged = quotas.charge(&key, 1, Limit::Limited(LIMIT)).await;
                tally.longest = tally.longest.max(began.elapsed());
                match (limited, charged) {
                    (Ok(_), Ok(QuotaCharge::Charged { .. })) => tally.charged += 1,
                    (Ok(_), Ok(QuotaCharge::Exceeded { .. })) => tally.exceeded += 1,
                    (Err(StoreError::Timeout | StoreError::Unavailable(_)), _)
                    | (_, Err(StoreError::Timeout | StoreError::Unavailable(_))) => {
                        tally.failed += 1;
                    }
                    other => panic!("{tenant}: unexpected {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (tenant, key, tally)
        }));
    }
    // Let the traffic start, then move the slots while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (from, to) = (id_of(source), id_of(target));
    let seed = format!("127.0.0.1:{port}");
    let moved = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &seed])
            .args(["--cluster-from", &from, "--cluster-to", &to])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        (out, began.elapsed())
    })
    .await
    .expect("reshard task");
    let (out, reshard_took) = moved;
    assert!(
        out.status.success(),
        "redis-cli --cluster reshard: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("traffic task"));
    }
    let traffic_took = started.elapsed();
    eprintln!(
        "moved {slots} slots ({moving} of {TENANTS} tenants) in {reshard_took:?}, \
         while the traffic ran for {traffic_took:?}"
    );
    assert!(
        reshard_took < traffic_took,
        "the slots moved while the traffic ran"
    );
    assert_eq!(
        cluster.master_of(slot_of(&tenants[0])).0,
        target,
        "the first tenant's slot has moved"
    );
    let quotas = redis.quota_store();
    for (tenant, key, tally) in &results {
        eprintln!("{tenant}: {tally:?}");
        assert!(
            tally.longest <= ANSWER_LIMIT,
            "{tenant}: {:?}",
            tally.longest
        );
        let used = quotas.used(key).await.expect("read");
        if tally.failed == 0 {
            assert_eq!(
                (tally.charged, used),
                (LIMIT, LIMIT),
                "{tenant}: charged exactly up to the limit"
            );
        } else {
            // A failed call may or may not have been applied.
            assert!(
                tally.charged <= used && used <= LIMIT,
                "{tenant}: {tally:?}, {used} stored"
            );
        }
    }
    let failed: u64 = results.iter().map(|(_, _, t)| t.failed).sum();
    eprintln!(
        "{failed} of {} calls failed during the resharding",
        TENANTS as u64 * ATTEMPTS
    );
}
