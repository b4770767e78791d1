//! A master of a Redis Cluster killed under traffic.
//!
//! The test starts a private cluster of 3 masters with 2 replicas each
//! (node timeout 1 s), puts two engines on it (rate limits and quotas fail
//! open on one, closed on the other) with `replica_acks = 1`, runs requests,
//! quota charges, tenant creations and key issues from several tasks, and
//! kills one master with SIGKILL. The engines cache tenants for 5 s, as by
//! default, so a request whose tenant lives on the dead master still
//! reaches its rate limit and quota checks. It reports how many operations got which
//! answer before, during and after the failover and the longest answer,
//! and checks that:
//!
//! - every answer came within the call deadlines, and followed the policy:
//!   a failing limiter or quota store lets the request through on the open
//!   engine and refuses it with `store_unavailable` on the closed one; no
//!   request is ever refused for a reason it did not have;
//! - once a replica is promoted, every operation succeeds again;
//! - nothing acknowledged is lost: every tenant and key whose creation
//!   returned, and every charge the store counted, is there afterwards, as
//!   a third engine, with nothing cached, finds.

mod redis_server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_server::{Cluster, unique_prefix};
use tenancy_core::admin::NewApiKey;
use tenancy_core::config::FailurePolicy;
use tenancy_core::engine::RequestHead;
use tenancy_core::label::Label;
use tenancy_core::limit::{QuotaCharge, QuotaKey};
use tenancy_core::plan::{Limit, Period};
use tenancy_core::store::QuotaStore;
use tenancy_core::tenant::{TenantId, TenantRecord};
use tenancy_core::testkit::services;
use tenancy_core::{Tenancy, TenancyConfig};
use tenancy_store_redis::{RedisOptions, RedisStores};

const MASTERS: usize = 3;
const REPLICAS_PER_MASTER: usize = 2;
/// The tenants set up before the failover: spread over all masters.
const TENANTS: usize = 24;
const TASKS: usize = 6;
/// How long operations run before the kill.
const BEFORE: Duration = Duration::from_secs(2);
/// How long everything must keep succeeding to count as recovered.
const RECOVERED_FOR: Duration = Duration::from_secs(2);
/// The longest the failover may take.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// The longest one operation may take: each does at most three store
/// calls of 250 ms each, plus scheduling on a busy machine.
const ANSWER_LIMIT: Duration = Duration::from_millis(1500);

async fn stores(nodes: &[String], prefix: &str) -> RedisStores {
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let options = RedisOptions::default()
        .with_key_prefix(prefix)
        .with_replica_acks(1);
    RedisStores::connect_cluster(&nodes, options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the private cluster: {e}"))
}

async fn engine(nodes: &[String], prefix: &str, policy: FailurePolicy) -> Tenancy {
    let redis = stores(nodes, prefix).await;
    let config = TenancyConfig::builder()
        .on_store_failure(policy)
        .build()
        .expect("valid config");
    redis_server::engine(&redis, config)
}

fn request(key: &str) -> http::request::Parts {
    http::Request::get("/api/v1/metrics/query")
        .header("x-api-key", key)
        .body(())
        .expect("request")
        .into_parts()
        .0
}

/// The phase an operation started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    /// From the kill until everything has succeeded for [`RECOVERED_FOR`].
    Failover,
    After,
}

/// What the tasks saw and what the stores acknowledged.
#[derive(Default)]
struct Record {
    /// (phase, engine policy, operation, answer) → how many.
    answers: BTreeMap<(Phase, &'static str, &'static str, String), u64>,
    longest: BTreeMap<Phase, Duration>,
    /// Tenants whose creation returned `Ok`.
    tenants: Vec<TenantId>,
    /// Secrets of keys whose issue returned `Ok`.
    keys: Vec<(TenantId, String)>,
    /// Charges the quota store counted (`used` > 0), per tenant.
    charged: BTreeMap<TenantId, u64>,
    /// Charges attempted, per tenant.
    attempted: BTreeMap<TenantId, u64>,
}

struct Shared {
    record: Mutex<Record>,
    started: Instant,
    /// Set at the kill, and when recovery is declared.
    kill_at: Mutex<Option<Duration>>,
    recovered_at: Mutex<Option<Duration>>,
    /// Time of the last failed operation since the kill.
    last_failure: Mutex<Option<Duration>>,
    stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn phase(&self, at: Duration) -> Phase {
        let kill = *self.kill_at.lock().unwrap();
        let recovered = *self.recovered_at.lock().unwrap();
        match (kill, recovered) {
            (Some(k), _) if at < k => Phase::Before,
            (None, _) => Phase::Before,
            (Some(_), Some(r)) if at >= r => Phase::After,
            _ => Phase::Failover,
        }
    }

    /// Counts an operation that started at `at` and took `took`, in the
    /// phase it ended in.
    fn note(
        &self,
        at: Duration,
        took: Duration,
        policy: &'static str,
        op: &'static str,
        answer: String,
        failed: bool,
    ) {
        let at = at + took;
        let phase = self.phase(at);
        if failed && phase != Phase::Before {
            let mut last = self.last_failure.lock().unwrap();
            *last = Some(last.map_or(at, |l| l.max(at)));
        }
        let mut record = self.record.lock().unwrap();
        *record
            .answers
            .entry((phase, policy, op, answer))
            .or_default() += 1;
        let longest = record.longest.entry(phase).or_default();
        *longest = (*longest).max(took);
    }
}

fn policy_name(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::Open => "open",
        FailurePolicy::Closed => "closed",
    }
}

/// One task: requests and charges on the set-up tenants, and now and then
/// a new tenant or a new key, alternating between the two engines.
async fn traffic(
    task: usize,
    engines: Arc<[(FailurePolicy, Tenancy); 2]>,
    setup: Arc<Vec<(TenantId, String)>>,
    shared: Arc<Shared>,
) {
    let mut n = 0usize;
    while !shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        // Every kind of operation on both engines.
        let (policy, engine) = &engines[(n + n / 10) % 2];
        let policy_label = policy_name(*policy);
        let (tenant, key) = &setup[(task * 7 + n) % setup.len()];
        let at = shared.started.elapsed();
        let began = Instant::now();
        match n % 10 {
            // A new tenant.
            0 => {
                let id = TenantId::new(format!("fo-{task}-{n}")).expect("valid id");
                let result = engine
                    .admin()
                    .create_tenant(TenantRecord::new(id.clone(), "Failover", "pro"))
                    .await;
                let took = began.elapsed();
                let answer = result
                    .as_ref()
                    .map_or_else(|e| e.code().to_owned(), |()| "ok".into());
                if result.is_ok() {
                    shared.record.lock().unwrap().tenants.push(id);
                }
                shared.note(
                    at,
                    took,
                    policy_label,
                    "create tenant",
                    answer,
                    result.is_err(),
                );
            }
            // A new key.
            5 => {
                let result = engine
                    .admin()
                    .issue_api_key(tenant, NewApiKey::new(format!("failover-{task}-{n}")))
                    .await;
                let took = began.elapsed();
                let answer = result
                    .as_ref()
                    .map_or_else(|e| e.code().to_owned(), |_| "ok".into());
                let failed = result.is_err();
                if let Ok(issued) = result {
                    shared
                        .record
                        .lock()
                        .unwrap()
                        .keys
                        .push((tenant.clone(), issued.secret.expose().to_owned()));
                }
                shared.note(at, took, policy_label, "issue key", answer, failed);
            }
            // A request, and a charge of one event.
            _ => {
                let parts = request(key);
                let admitted = engine.admit(&RequestHead::from(&parts)).await;
                let (answer, failed, charge) = match &admitted {
                    Ok(admission) => match admission.context() {
                        Some(ctx) => ("ok".to_owned(), false, Some(ctx.clone())),
                        None => ("ok without a tenant".to_owned(), true, None),
                    },
                    Err(refusal) => (refusal.error().code().to_owned(), true, None),
                };
                shared.note(at, began.elapsed(), policy_label, "request", answer, failed);
                if let Some(ctx) = charge {
                    let began = Instant::now();
                    let charged = engine.charge(&ctx, "events", 1).await;
                    let took = began.elapsed();
                    let (answer, failed) = match &charged {
                        Ok(QuotaCharge::Charged { used: 0 }) => ("let through".to_owned(), true),
                        Ok(QuotaCharge::Charged { .. }) => ("counted".to_owned(), false),
                        Ok(QuotaCharge::Exceeded { .. }) => ("exceeded".to_owned(), true),
                        Err(e) => (e.code().to_owned(), true),
                    };
                    {
                        let mut record = shared.record.lock().unwrap();
                        *record.attempted.entry(tenant.clone()).or_default() += 1;
                        if answer == "counted" {
                            *record.charged.entry(tenant.clone()).or_default() += 1;
                        }
                    }
                    shared.note(at, took, policy_label, "charge", answer, failed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_traffic_loses_nothing_acknowledged() {
    // Runs where the test servers run (scripts/test.sh), which installs
    // redis-server and redis-cli.
    if services::redis_cluster_nodes().is_none() {
        return;
    }
    let mut cluster = Cluster::start(MASTERS, REPLICAS_PER_MASTER);
    let nodes = cluster.urls();
    let prefix = unique_prefix("failover");
    let engines = Arc::new([
        (
            FailurePolicy::Open,
            engine(&nodes, &prefix, FailurePolicy::Open).await,
        ),
        (
            FailurePolicy::Closed,
            engine(&nodes, &prefix, FailurePolicy::Closed).await,
        ),
    ]);

    let mut setup = Vec::new();
    for i in 0..TENANTS {
        let id = TenantId::new(format!("acme-{i}")).expect("valid id");
        let admin = engines[0].1.admin();
        let mut tenant = TenantRecord::new(id.clone(), "Acme", "pro");
        // Keys are issued throughout the test.
        tenant.settings.quota_overrides.api_keys = Some(Limit::Unlimited);
        admin.create_tenant(tenant).await.expect("create tenant");
        let issued = admin
            .issue_api_key(&id, NewApiKey::new("traffic"))
            .await
            .expect("issue key");
        setup.push((id, issued.secret.expose().to_owned()));
    }
    let setup = Arc::new(setup);
    let shared = Arc::new(Shared {
        record: Mutex::new(Record::default()),
        started: Instant::now(),
        kill_at: Mutex::new(None),
        recovered_at: Mutex::new(None),
        last_failure: Mutex::new(None),
        stop: std::sync::atomic::AtomicBool::new(false),
    });
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            tokio::spawn(traffic(
                task,
                engines.clone(),
                setup.clone(),
                shared.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(BEFORE).await;
    // The master of the first tenant, and the tenants it serves.
    let slot_of = |id: &TenantId| -> u16 {
        let reply = cluster.cli(
            cluster.nodes[0].port(),
            &["cluster", "keyslot", &format!("{{{id}}}")],
        );
        reply.trim().parse().expect("a slot number")
    };
    let (victim, ranges) = cluster.master_of(slot_of(&setup[0].0));
    let on_victim: Vec<(TenantId, String)> = setup
        .iter()
        .filter(|(id, _)| {
            ranges
                .iter()
                .any(|&(from, to)| (from..=to).contains(&slot_of(id)))
        })
        .cloned()
        .collect();
    let victim_port = cluster.nodes[victim].port();
    cluster.nodes[victim].kill();
    let kill_at = shared.started.elapsed();
    *shared.kill_at.lock().unwrap() = Some(kill_at);

    // At once, before any replica can be promoted (the node timeout is
    // 1 s): a request of every tenant on the dead master, on both engines.
    // Their tenants are cached; their limiter is down.
    let probes = on_victim.iter().flat_map(|(_, key)| {
        engines.iter().map(move |(policy, engine)| async move {
            let parts = request(key);
            let answer = match engine.admit(&RequestHead::from(&parts)).await {
                Ok(_) => "ok".to_owned(),
                Err(refusal) => refusal.error().code().to_owned(),
            };
            (policy_name(*policy), answer)
        })
    });
    let probed = futures_util::future::join_all(probes).await;
    let probe_took = shared.started.elapsed() - kill_at;

    // Recovered: nothing failed for RECOVERED_FOR, after some failure was
    // seen (or after the failover limit, which then fails below).
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = shared.started.elapsed();
        let quiet_since = (*shared.last_failure.lock().unwrap()).unwrap_or(kill_at);
        if now - quiet_since >= RECOVERED_FOR || now - kill_at > FAILOVER_LIMIT {
            *shared.recovered_at.lock().unwrap() = Some(now);
            break;
        }
    }
    tokio::time::sleep(RECOVERED_FOR).await;
    shared
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("traffic task");
    }
    let recovered_at = shared.recovered_at.lock().unwrap().expect("set");
    let record = std::mem::take(&mut *shared.record.lock().unwrap());

    // The report.
    eprintln!(
        "killed the master on port {victim_port} at {kill_at:?}; \
         everything succeeded again from {:?} on ({:?} after the kill)",
        recovered_at - RECOVERED_FOR,
        recovered_at - RECOVERED_FOR - kill_at,
    );
    for ((phase, policy, op, answer), n) in &record.answers {
        eprintln!("{phase:?}\t{policy}\t{op}\t{answer}\t{n}");
    }
    for (phase, longest) in &record.longest {
        eprintln!("{phase:?}\tlongest answer {longest:?}");
    }
    eprintln!(
        "{} tenants on the dead master; their requests right after the kill \
         (answered within {probe_took:?}): {probed:?}",
        on_victim.len()
    );

    // Within the deadlines, and by the policy.
    for (phase, longest) in &record.longest {
        assert!(
            *longest <= ANSWER_LIMIT,
            "{phase:?}: an answer took {longest:?}"
        );
    }
    assert!(
        recovered_at - kill_at <= FAILOVER_LIMIT,
        "no recovery within {FAILOVER_LIMIT:?}"
    );
    for ((phase, policy, op, answer), n) in &record.answers {
        let allowed: &[&str] = match (*phase, *policy, *op) {
            (Phase::Before | Phase::After, _, "charge") => &["counted"],
            (Phase::Before | Phase::After, _, _) => &["ok"],
            // A failing key or tenant store is 503 on both engines; a
            // failing limiter or quota store lets through or refuses by
            // policy.
            (Phase::Failover, "open", "charge") => &["counted", "let through"],
            (Phase::Failover, "closed", "charge") => &["counted", "store_unavailable"],
            (Phase::Failover, _, _) => &["ok", "store_unavailable"],
        };
        assert!(
            allowed.contains(&answer.as_str()),
            "{phase:?} {policy} {op}: {n} × {answer}, allowed {allowed:?}"
        );
    }
    let failed_during: u64 = record
        .answers
        .iter()
        .filter(|((phase, _, _, answer), _)| {
            *phase == Phase::Failover && answer != "ok" && answer != "counted"
        })
        .map(|(_, n)| n)
        .sum();
    assert!(failed_during > 0, "the kill was felt: some calls failed");
    // With its limiter down, a request is let through by the open engine
    // (unless its key's record was on the dead master too) and refused by
    // the closed one.
    assert!(!on_victim.is_empty());
    for (policy, answer) in &probed {
        let allowed: &[&str] = match *policy {
            "open" => &["ok", "store_unavailable"],
            _ => &["store_unavailable"],
        };
        assert!(allowed.contains(&answer.as_str()), "{policy}: {answer}");
    }
    assert!(
        probed
            .iter()
            .any(|(policy, answer)| *policy == "open" && answer == "ok"),
        "the open engine let requests through: {probed:?}"
    );

    // Nothing acknowledged is lost: a fresh engine with nothing cached.
    let check = engine(&nodes, &prefix, FailurePolicy::Closed).await;
    for id in record.tenants.iter().chain(setup.iter().map(|(id, _)| id)) {
        assert!(
            check.tenant_store().get(id).await.expect("read").is_some(),
            "tenant {id} was acknowledged and is gone"
        );
    }
    for (tenant, key) in record.keys.iter().chain(setup.iter()) {
        let parts = request(key);
        let admitted = check
            .admit(&RequestHead::from(&parts))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a key of {tenant} was acknowledged and is refused: {}",
                    e.error()
                )
            });
        assert_eq!(admitted.context().map(|c| c.tenant_id()), Some(tenant));
    }
    let redis = stores(&nodes, &prefix).await;
    let events = Label::new("events").expect("label");
    for (tenant, counted) in &record.charged {
        let key = QuotaKey::new(
            tenant.clone(),
            events.clone(),
            Period::Month,
            chrono::Utc::now(),
        );
        let used = redis.quota_store().used(&key).await.expect("read");
        let attempted = record.attempted[tenant];
        assert!(
            *counted <= used && used <= attempted,
            "{tenant}: {counted} charges counted, {attempted} attempted, {used} stored"
        );
    }
    eprintln!(
        "acknowledged and found afterwards: {} tenants, {} keys, {} charges",
        record.tenants.len() + setup.len(),
        record.keys.len() + setup.len(),
        record.charged.values().sum::<u64>()
    );
}
