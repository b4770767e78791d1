//! `memory_at_scale`: resident memory of the in-memory stores of
//! tenancy-core at scale.
//!
//! Fills, one after the other and in one process:
//!
//! 1. a [`MemoryTenantStore`] with 100,000 tenants (name, plan, contact
//!    address, notification settings, a feature flag on every fourth);
//! 2. a [`MemoryApiKeyStore`] with 1,000,000 API keys, ten per tenant, each
//!    with a real key id and the SHA-256 digest of a real, freshly generated
//!    secret (some with an expiry, some with their own rate limit);
//! 3. a [`MemoryRateLimiter`] checked once for each of 1,000,000 distinct
//!    [`RateLimitKey::api_key`] keys under one quota.
//!
//! It reads the resident set size (`VmRSS` of `/proc/self/status`) before and
//! after each fill and prints a markdown table: growth and bytes per tenant,
//! per key, per limiter key. The limiter is measured right after the fill,
//! then again after [`MemoryRateLimiter::evict_idle`] once every bucket is
//! full again, to show that eviction gives the memory back.
//!
//! Records share their ids the way the server's do: a key record holds the
//! tenant id of the stored tenant, a limiter key the ids of the key record.
//!
//! Run it in release: `cargo run --release -p tenancy-benches --bin memory_at_scale`.
// Printing the report is the purpose of this binary.
#![allow(clippy::print_stdout)]

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::Utc;
use tenancy_core::credential::{ApiKeyHasher, ApiKeyRecord, ApiKeySecret, KeyId, new_key_id};
use tenancy_core::limit::{RateCheck, RateLimitKey, RateQuota};
use tenancy_core::rbac::ApiKeyScope;
use tenancy_core::store::memory::{MemoryApiKeyStore, MemoryRateLimiter, MemoryTenantStore};
use tenancy_core::store::{ApiKeyStore, RateLimiter, TenantStore};
use tenancy_core::tenant::{TenantId, TenantRecord};

const TENANTS: usize = 100_000;
const KEYS_PER_TENANT: usize = 10;
const PLANS: [&str; 4] = ["free", "starter", "pro", "enterprise"];
const SCOPES: [ApiKeyScope; 3] = [
    ApiKeyScope::Ingestion,
    ApiKeyScope::Readonly,
    ApiKeyScope::Full,
];
const KEY_NAMES: [&str; 5] = ["collector", "ci-deploy", "grafana", "backfill", "on-call"];

type Failure = Box<dyn std::error::Error>;

/// Resident set size of this process, in bytes.
fn rss_bytes() -> Result<u64, Failure> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/self/status")?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

fn tenant_id(i: usize) -> Result<TenantId, Failure> {
    Ok(TenantId::new(format!("tenant-{i:06}"))?)
}

/// A tenant as a SaaS platform holds it.
fn tenant(i: usize) -> Result<TenantRecord, Failure> {
    let id = tenant_id(i)?;
    let mut t = TenantRecord::new(
        id,
        format!("TenantRecord {i:06} Ltd"),
        PLANS[i % PLANS.len()],
    );
    let contact = format!("ops@tenant-{i:06}.example.com");
    t.settings.notifications.emails = vec![contact.clone()];
    if i.is_multiple_of(3) {
        t.settings.notifications.slack_channel = Some(format!("#alerts-{i:06}"));
    }
    if i.is_multiple_of(4) {
        t.settings.features.insert("beta-ui".to_owned(), true);
    }
    t.contact_email = Some(contact);
    Ok(t)
}

/// One measured fill.
struct Row {
    what: &'static str,
    count: usize,
    unit: &'static str,
    before: u64,
    after: u64,
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn signed_mib(before: u64, after: u64) -> String {
    if after >= before {
        format!("+{}", mib(after - before))
    } else {
        format!("-{}", mib(before - after))
    }
}

fn per_item(row: &Row) -> String {
    if row.count == 0 {
        return "n/a".to_owned();
    }
    let growth = row.after as f64 - row.before as f64;
    format!("{:.0}", growth / row.count as f64)
}

async fn fill_tenants(store: &MemoryTenantStore) -> Result<(), Failure> {
    for i in 0..TENANTS {
        store.insert(tenant(i)?).await?;
    }
    Ok(())
}

async fn fill_keys(tenants: &MemoryTenantStore, keys: &MemoryApiKeyStore) -> Result<(), Failure> {
    let hasher = ApiKeyHasher::new("tnk", None);
    let now = Utc::now();
    for i in 0..TENANTS {
        // As the server does: the record's tenant id is the stored tenant's.
        let stored = tenants.get(&tenant_id(i)?).await?.ok_or("tenant missing")?;
        for j in 0..KEYS_PER_TENANT {
            let key_id = new_key_id().ok_or("no OS randomness")?;
            let secret = ApiKeySecret::generate("tnk", key_id.clone()).ok_or("no OS randomness")?;
            let digest = hasher
                .digest(secret.expose())
                .map_err(|e| format!("a fresh key was refused: {e:?}"))?;
            let n = i * KEYS_PER_TENANT + j;
            let mut record = ApiKeyRecord::new(
                key_id,
                stored.id.clone(),
                format!("{}-{j}", KEY_NAMES[n % KEY_NAMES.len()]),
                SCOPES[n % SCOPES.len()],
                digest,
                now,
            );
            if n.is_multiple_of(4) {
                record.rate_limit_rps = Some(100);
            }
            if n.is_multiple_of(5) {
                record.expires_at = Some(now + chrono::Duration::days(90));
            }
            if n.is_multiple_of(2) {
                record.last_used_at = Some(now);
            }
            keys.insert(record).await?;
        }
    }
    Ok(())
}

/// The limiter keys of every stored API key, sharing the records' ids.
async fn limiter_keys(
    tenants: &MemoryTenantStore,
    keys: &MemoryApiKeyStore,
) -> Result<Vec<RateLimitKey>, Failure> {
    let mut out = Vec::with_capacity(TENANTS * KEYS_PER_TENANT);
    for i in 0..TENANTS {
        let stored = tenants.get(&tenant_id(i)?).await?.ok_or("tenant missing")?;
        for record in keys.list(&stored.id).await? {
            let key_id: KeyId = record.key_id.clone();
            out.push(RateLimitKey::api_key(record.tenant_id.clone(), key_id));
        }
    }
    Ok(out)
}

async fn run() -> Result<(), Failure> {
    let started = Instant::now();
    let mut rows = Vec::new();

    let tenants = MemoryTenantStore::new();
    let before = rss_bytes()?;
    fill_tenants(&tenants).await?;
    rows.push(Row {
        what: "MemoryTenantStore",
        count: tenants.len(),
        unit: "tenant",
        before,
        after: rss_bytes()?,
    });

    let keys = MemoryApiKeyStore::new();
    let before = rss_bytes()?;
    fill_keys(&tenants, &keys).await?;
    rows.push(Row {
        what: "MemoryApiKeyStore",
        count: keys.len(),
        unit: "API key",
        before,
        after: rss_bytes()?,
    });

    // Built before the baseline: what the limiter holds is measured alone.
    let limit_keys = limiter_keys(&tenants, &keys).await?;
    // The slowest quota (1/s): a key becomes evictable two emission
    // intervals (2 s) after its check, so the sweeps that run every 65,536
    // checks evict none of them as long as the fill lasts under 2 s. The
    // number held right after the fill is measured, not assumed.
    let quota = RateQuota::per_second(1)
        .ok_or("zero quota")?
        .with_burst(NonZeroU32::MIN);
    let limiter = MemoryRateLimiter::new();
    let before = rss_bytes()?;
    let fill_started = Instant::now();
    let mut refused = 0usize;
    for key in &limit_keys {
        let decision = limiter
            .check(&[RateCheck {
                key: key.clone(),
                quota,
            }])
            .await?;
        if !decision.allowed {
            refused += 1;
        }
    }
    let fill_time = fill_started.elapsed();
    let held = limiter.len();
    let after_fill = rss_bytes()?;
    rows.push(Row {
        what: "MemoryRateLimiter",
        count: held,
        unit: "limiter key",
        before,
        after: after_fill,
    });

    // A bucket is full again one emission interval (1 s) after its check;
    // the sweep drops buckets whose TAT has passed.
    std::thread::sleep(Duration::from_millis(1_100));
    limiter.evict_idle();
    let left = limiter.len();
    let after_evict = rss_bytes()?;
    drop(limit_keys);

    println!("# Memory at scale: the in-memory stores of tenancy-core\n");
    println!(
        "Resident set size (VmRSS) before and after each fill, in one process; \
         release build, {} tenants, {} API keys ({} per tenant), {} limiter keys.\n",
        TENANTS,
        TENANTS * KEYS_PER_TENANT,
        KEYS_PER_TENANT,
        limiter_keys_label(held)
    );
    println!(
        "| store | items held | RSS before (MiB) | RSS after (MiB) | growth (MiB) | bytes per item |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} {}s | {} | {} | {} | {} |",
            row.what,
            row.count,
            row.unit,
            mib(row.before),
            mib(row.after),
            signed_mib(row.before, row.after),
            per_item(row),
        );
    }
    println!(
        "| MemoryRateLimiter after `evict_idle()` | {left} limiter keys | {} | {} | {} | n/a |",
        mib(after_fill),
        mib(after_evict),
        signed_mib(after_fill, after_evict),
    );
    let total: u64 = rows.iter().map(|r| r.after.saturating_sub(r.before)).sum();
    println!();
    println!(
        "The server holding: the reference server (tenancy-server, tenancy-server-actix) keeps \
         tenants, API keys and rate-limit state in exactly these stores when it runs on the \
         in-memory stores, so these growths are its growth: {} tenants, {} API keys and {} \
         active limiter keys cost it about {} MiB over its empty size.",
        rows[0].count,
        rows[1].count,
        held,
        mib(total),
    );
    println!();
    println!(
        "Limiter fill: {} checks in {:.2} s ({} refused), one quota of 1 request/s; \
         {held} keys held right after, {left} after `evict_idle()` once the buckets were full \
         again (it drops them and shrinks the maps).",
        TENANTS * KEYS_PER_TENANT,
        fill_time.as_secs_f64(),
        refused,
    );
    if held < TENANTS * KEYS_PER_TENANT {
        println!(
            "Note: the fill lasted over 2 s, so the periodic sweeps (every 65,536 checks) \
             had already evicted the earliest keys; the per-key figure divides by the {held} \
             keys held. The limiter holds the keys active in the last ~2 s, not all keys seen."
        );
    }
    println!(
        "RSS is what the allocator holds from the system: memory freed to the allocator \
         but not returned shows as unchanged RSS. Total run time {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn limiter_keys_label(held: usize) -> String {
    if held == TENANTS * KEYS_PER_TENANT {
        held.to_string()
    } else {
        format!("{} (of which {held} held)", TENANTS * KEYS_PER_TENANT)
    }
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("memory_at_scale: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory_at_scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
