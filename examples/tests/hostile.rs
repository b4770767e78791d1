//! The reference server against hostile callers: each finding written as the
//! attack that used to work, asserting it now fails safely, on both front
//! ends.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, binaries, create_tenant, issue_key, root, token};
use tenancy_core::credential::{ApiKeySecret, JwtClaims, encode_hs256, new_key_id};
use tenancy_core::secret::Secret;

const BIGCORP_ISSUER: &str = "https://id.bigcorp.example";
const BIGCORP_SECRET: &str = "bigcorp-idp-secret-0123456789abcdef";

/// A config file with a realm dedicated to `bigcorp`, its own identity
/// provider.
fn bigcorp_config() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tenancy-hostile-{}-{}.toml",
        std::process::id(),
        new_key_id().unwrap()
    ));
    std::fs::write(
        &path,
        format!(
            "[[realms]]\nname = \"bigcorp\"\nissuer = \"{BIGCORP_ISSUER}\"\ntenant = \"bigcorp\"\n\
             [[realms.keys]]\nalgorithm = \"HS256\"\nsecret = \"{BIGCORP_SECRET}\"\n"
        ),
    )
    .unwrap();
    path
}

fn bigcorp_token(role: &str) -> String {
    let claims = JwtClaims::new(BIGCORP_ISSUER, "it@bigcorp", role, Duration::from_secs(600));
    encode_hs256(&Secret::new(BIGCORP_SECRET), &claims).unwrap()
}

async fn get_as(s: &Server, path: &str, token: &str, tenant: &str) -> support::Answer {
    let auth = format!("Bearer {token}");
    s.call(
        "GET",
        path,
        &[("authorization", &auth), ("x-tenant-id", tenant)],
        None,
    )
    .await
}

async fn patch(s: &Server, path: &str, token: &str, body: &str) -> support::Answer {
    let auth = format!("Bearer {token}");
    s.call("PATCH", path, &[("authorization", &auth)], Some(body))
        .await
}

/// The failure allowance the throttle tests run with: the default burst
/// (50) and one failure per second, so a block outlasts the test's next
/// request.
const SLOW_REFILL: (&str, &str) = ("TENANCY_AUTH_FAILURES_PER_SEC", "1");

/// Waits until the address is within its failure allowance again.
async fn let_throttle_recover() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Finding 1: a tenant's identity provider minted super_admin and crossed
/// into other tenants; cross-tenant calls skipped the caller's home status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_identity_provider_cannot_mint_platform_power() {
    let config = bigcorp_config();
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[("TENANCY_CONFIG", config.to_str().unwrap())]);
        for tenant in ["acme", "bigcorp", "ops"] {
            create_tenant(&s, tenant, "pro").await;
        }
        for role in ["super_admin", "cpi-admin", "system"] {
            let answer = get_as(&s, "/api/v1/rbac/permissions", &bigcorp_token(role), "acme").await;
            assert_eq!(
                (answer.status, answer.code()),
                (401, "invalid_token"),
                "{name}: {role}"
            );
            let answer = patch(
                &s,
                "/api/v1/tenants/acme",
                &bigcorp_token(role),
                r#"{"status":"archived"}"#,
            )
            .await;
            assert_eq!(answer.status, 401, "{name}: {role}");
        }
        let answer = get_as(&s, "/api/v1/audit", &bigcorp_token("tenant-admin"), "acme").await;
        assert_eq!(
            (answer.status, answer.code()),
            (403, "tenant_mismatch"),
            "{name}"
        );
        let own = s
            .get("/api/v1/rbac/permissions", &bigcorp_token("admin"))
            .await;
        assert_eq!(
            (own.status, own.body["level"].as_u64()),
            (200, Some(3)),
            "{name}"
        );

        // The platform's super_admin, at home in `ops`, crosses while ops
        // is active, and not once ops is archived.
        let staff = token("ops", "super_admin", "staff@ops");
        assert_eq!(
            get_as(&s, "/api/v1/rbac/permissions", &staff, "acme")
                .await
                .status,
            200,
            "{name}"
        );
        assert_eq!(
            patch(
                &s,
                "/api/v1/tenants/ops",
                &root(),
                r#"{"status":"archived"}"#
            )
            .await
            .status,
            200
        );
        let answer = get_as(&s, "/api/v1/rbac/permissions", &staff, "acme").await;
        assert_eq!(
            (answer.status, answer.code()),
            (403, "tenant_archived"),
            "{name}"
        );
    }
    let _ = std::fs::remove_file(config);
}

/// Finding 2: anonymous requests naming a tenant wrote `auth.refused`
/// events into its audit log and pushed its real history out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_floods_never_reach_a_tenants_audit_log() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[SLOW_REFILL]);
        create_tenant(&s, "acme", "pro").await;
        let (_, key_id) = issue_key(&s, "acme", "full", "").await;
        let long_path = format!("/api/v1/{}", "x".repeat(8 * 1024));
        let mut statuses = std::collections::BTreeMap::new();
        for i in 0..300 {
            let tenant = if i % 2 == 0 {
                "acme".to_owned()
            } else {
                format!("t{i}")
            };
            let answer = s
                .call("GET", &long_path, &[("x-tenant-id", &tenant)], None)
                .await;
            *statuses.entry(answer.status).or_insert(0) += 1;
        }
        // The burst of 50, plus one per second the flood lasted.
        let refused = statuses.get(&401).copied().unwrap_or(0);
        let throttled = statuses.get(&429).copied().unwrap_or(0);
        assert!((50..60).contains(&refused), "{name}: {statuses:?}");
        assert_eq!(refused + throttled, 300, "{name}: {statuses:?}");
        let_throttle_recover().await;

        let admin = token("acme", "admin", "admin@acme");
        let audit = s
            .get_until("/api/v1/audit?limit=1000", &admin, |a| {
                a.raw.contains("apikey.create")
            })
            .await;
        assert_eq!(audit.status, 200, "{name}: {}", audit.raw);
        let events = audit.body["events"].as_array().unwrap();
        assert!(
            events
                .iter()
                .all(|e| e["actor"] != "anonymous" && e["action"] != "auth.refused"),
            "{name}: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["action"] == "apikey.create" && e["resource"] == key_id.as_str()),
            "{name}: acme's history is intact"
        );

        let log = s.get("/api/v1/security/refusals", &root()).await;
        let rows = log.body["refusals"].as_array().unwrap();
        let count = |reason: &str| {
            rows.iter()
                .filter(|r| r["reason"] == reason && r["client_addr"] == "127.0.0.1")
                .map(|r| r["count"].as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(
            (count("unauthenticated"), count("rate_limited")),
            (refused, throttled),
            "{name}: {rows:?}"
        );
        let forbidden = s.get("/api/v1/security/refusals", &admin).await;
        assert_eq!(
            forbidden.status, 403,
            "{name}: tenant admins do not read it"
        );
    }
}

/// Finding 3 (keys): every random well-formed key cost a store lookup, with
/// no throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_api_keys_are_throttled_per_address() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[SLOW_REFILL]);
        create_tenant(&s, "acme", "pro").await;
        let (good, _) = issue_key(&s, "acme", "readonly", "").await;
        let mut answers = Vec::new();
        for _ in 0..80 {
            let guess = ApiKeySecret::generate("tnk", new_key_id().unwrap()).unwrap();
            let a = s
                .call(
                    "GET",
                    "/api/v1/metrics/query",
                    &[("x-api-key", guess.expose())],
                    None,
                )
                .await;
            answers.push((
                a.status,
                a.code().to_owned(),
                a.headers.contains_key("retry-after"),
            ));
        }
        assert!(
            answers[..50].iter().all(|a| a.1 == "invalid_api_key"),
            "{name}"
        );
        let throttled = answers[50..]
            .iter()
            .filter(|a| a.0 == 429 && a.1 == "rate_limited" && a.2)
            .count();
        assert!(throttled >= 25, "{name}: {:?}", &answers[50..]);
        assert!(
            answers[50..]
                .iter()
                .all(|a| a.1 == "rate_limited" || a.1 == "invalid_api_key"),
            "{name}"
        );
        // Over the allowance a key not yet known good waits: the address is
        // refused before any credential is looked up.
        let good_key = [("x-api-key", good.as_str())];
        let with_good_key = || s.call("GET", "/api/v1/metrics/query", &good_key, None);
        assert_eq!(with_good_key().await.status, 429, "{name}");
        let_throttle_recover().await;
        let a = with_good_key().await;
        assert_eq!(a.status, 200, "{name}: {}", a.raw);
    }
}

/// Finding 5: a full key minted full keys with no expiry that survived
/// their parent; unknown, revoked and expired keys answered differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_outgrow_their_parent_and_bad_keys_look_alike() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let expires = (chrono::Utc::now() + chrono::Duration::seconds(60))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (parent, parent_id) =
            issue_key(&s, "acme", "full", &format!(r#","expires_at":"{expires}""#)).await;
        let child = s
            .call(
                "POST",
                "/api/v1/apikeys",
                &[("x-api-key", &parent)],
                Some(r#"{"name":"child","scope":"full"}"#),
            )
            .await;
        assert_eq!(child.status, 201, "{name}: {}", child.raw);
        let parse = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(
            parse(&child.body["expires_at"]),
            parse(&Value::from(expires.clone())),
            "{name}"
        );
        let child_key = child.body["api_key"].as_str().unwrap().to_owned();
        let child_id = child.body["key_id"].as_str().unwrap().to_owned();
        assert_eq!(
            s.call("GET", "/api/v1/apikeys", &[("x-api-key", &child_key)], None)
                .await
                .status,
            200,
            "{name}"
        );

        let admin = token("acme", "admin", "admin@acme");
        let auth = format!("Bearer {admin}");
        let revoked = s
            .call(
                "DELETE",
                &format!("/api/v1/apikeys/{parent_id}"),
                &[("authorization", &auth)],
                None,
            )
            .await;
        assert_eq!(revoked.status, 204, "{name}");
        let refused = s
            .call("GET", "/api/v1/apikeys", &[("x-api-key", &child_key)], None)
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (401, "invalid_api_key"),
            "{name}"
        );
        let audit = s
            .get_until("/api/v1/audit?action=apikey.revoke", &admin, |a| {
                a.raw.contains("revoked_with")
            })
            .await;
        assert!(
            audit.body["events"].as_array().unwrap().iter().any(|e| {
                e["resource"] == child_id.as_str()
                    && e["details"]["revoked_with"] == parent_id.as_str()
            }),
            "{name}: {}",
            audit.raw
        );

        // Unknown, revoked and expired: one body.
        let past = (chrono::Utc::now() - chrono::Duration::seconds(5))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (expired, _) =
            issue_key(&s, "acme", "full", &format!(r#","expires_at":"{past}""#)).await;
        let unknown = ApiKeySecret::generate("tnk", new_key_id().unwrap()).unwrap();
        let mut bodies = Vec::new();
        for key in [unknown.expose(), parent.as_str(), expired.as_str()] {
            let a = s
                .call("GET", "/api/v1/apikeys", &[("x-api-key", key)], None)
                .await;
            bodies.push((a.status, a.raw));
        }
        assert_eq!(bodies[0], bodies[1], "{name}");
        assert_eq!(bodies[1], bodies[2], "{name}");
    }
}

/// Finding 4 and server hygiene: `/metrics` behind a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token_even_from_loopback() {
    const SCRAPE: &str = "scrape-token-0123456789";
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[("TENANCY_METRICS_TOKEN", SCRAPE)]);
        let open = s.call("GET", "/metrics", &[], None).await;
        assert_eq!((open.status, open.code()), (404, "not_found"), "{name}");
        let wrong = s
            .call("GET", "/metrics", &[("authorization", "Bearer nope")], None)
            .await;
        assert_eq!(wrong.status, 404, "{name}");
        let auth = format!("Bearer {SCRAPE}");
        let ok = s
            .call("GET", "/metrics", &[("authorization", &auth)], None)
            .await;
        assert_eq!(ok.status, 200, "{name}");
    }
}

/// Server hygiene: a client trickling its headers, or idling on a
/// keep-alive connection, is cut off within 10 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_off() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        let addr = s.base.trim_start_matches("http://").to_owned();
        let trickle = {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&addr).unwrap();
                let started = Instant::now();
                conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
                for i in 0..30 {
                    std::thread::sleep(Duration::from_millis(500));
                    if conn
                        .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                        .is_err()
                    {
                        break;
                    }
                    let mut buf = [0u8; 512];
                    conn.set_read_timeout(Some(Duration::from_millis(1)))
                        .unwrap();
                    if matches!(conn.read(&mut buf), Ok(0)) {
                        break;
                    }
                }
                started.elapsed()
            })
        };
        let idle = std::thread::spawn(move || {
            let mut conn = TcpStream::connect(&addr).unwrap();
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 4096];
            // The answer, then the end of the connection.
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            started.elapsed()
        });
        let trickled = trickle.join().unwrap();
        assert!(
            trickled < Duration::from_secs(10),
            "{name}: trickling went on for {trickled:?}"
        );
        let idled = idle.join().unwrap();
        assert!(
            idled < Duration::from_secs(10),
            "{name}: an idle connection stayed {idled:?}"
        );
    }
}

/// The in-memory tenant store, whose health check never answers: a store
/// frozen mid-flight (as with SIGSTOP).
#[derive(Default)]
struct FrozenTenants(tenancy_core::store::memory::MemoryTenantStore);

#[async_trait::async_trait]
impl tenancy_core::store::TenantStore for FrozenTenants {
    async fn insert(
        &self,
        t: tenancy_core::tenant::TenantRecord,
    ) -> Result<(), tenancy_core::store::StoreError> {
        self.0.insert(t).await
    }
    async fn get(
        &self,
        id: &tenancy_core::tenant::TenantId,
    ) -> Result<Option<tenancy_core::tenant::TenantRecord>, tenancy_core::store::StoreError> {
        self.0.get(id).await
    }
    async fn update(
        &self,
        t: tenancy_core::tenant::TenantRecord,
    ) -> Result<(), tenancy_core::store::StoreError> {
        self.0.update(t).await
    }
    async fn list(
        &self,
        after: Option<&tenancy_core::tenant::TenantId>,
        limit: usize,
    ) -> Result<Vec<tenancy_core::tenant::TenantRecord>, tenancy_core::store::StoreError> {
        self.0.list(after, limit).await
    }
    async fn delete(
        &self,
        id: &tenancy_core::tenant::TenantId,
    ) -> Result<bool, tenancy_core::store::StoreError> {
        self.0.delete(id).await
    }
    async fn health(&self) -> Result<(), tenancy_core::store::StoreError> {
        std::future::pending().await
    }
}

/// Server hygiene: `/readyz` answered nothing within 10 s while a store
/// hung; now it says "not ready" within a second.
#[tokio::test]
async fn readiness_answers_within_a_second_when_a_store_hangs() {
    let tenancy = tenancy_core::Tenancy::builder(tenancy_core::TenancyConfig::default())
        .tenant_store(std::sync::Arc::new(FrozenTenants::default()))
        .build()
        .unwrap();
    let app = tenancy_examples::app::App::new(tenancy);
    let started = Instant::now();
    let err = app.ready().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (503, "store_unavailable")
    );
    app.shutdown().await;
}

/// Finding 3 (reference server): one 900 kB event name counted as one
/// event, teams had no limit, and tenant settings took any quota override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_teams_users_and_settings_are_bounded() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "enterprise").await;
        create_tenant(&s, "tiny", "starter").await;
        let op = token("acme", "operator", "op@acme");
        let event = |name: &str, labels: &str| {
            format!(r#"{{"type":"metric","name":"{name}","value":1,"labels":{{{labels}}}}}"#)
        };
        let body = |events: Vec<String>| format!(r#"{{"events":[{}]}}"#, events.join(","));
        let many_labels: Vec<String> = (0..33).map(|i| format!(r#""l{i}":"v""#)).collect();
        for (what, events) in [
            ("1,001 events", vec![event("cpu", ""); 1001]),
            ("a 900 kB name", vec![event(&"n".repeat(900_000), "")]),
            ("33 labels", vec![event("cpu", &many_labels.join(","))]),
            (
                "a long label value",
                vec![event("cpu", &format!(r#""host":"{}""#, "h".repeat(300)))],
            ),
            (
                "a label name with braces",
                vec![event("cpu", r#""{x}":"v""#)],
            ),
        ] {
            let a = s.post("/api/v1/telemetry", &op, &body(events)).await;
            assert_eq!(
                (a.status, a.code()),
                (400, "invalid_request"),
                "{name}: {what}"
            );
        }
        let huge = body(vec![event(&"n".repeat(200), ""); 6000]);
        let a = s.post("/api/v1/telemetry", &op, &huge).await;
        assert_eq!((a.status, a.code()), (413, "payload_too_large"), "{name}");
        let ok = s
            .post(
                "/api/v1/telemetry",
                &op,
                &body(vec![event("cpu", r#""host":"a""#)]),
            )
            .await;
        assert_eq!(ok.status, 202, "{name}: {}", ok.raw);

        let admin = token("acme", "admin", "admin@acme");
        for i in 0..100 {
            let a = s
                .post("/api/v1/teams", &admin, &format!(r#"{{"name":"t{i}"}}"#))
                .await;
            assert_eq!(a.status, 201, "{name}: team {i}");
        }
        let a = s
            .post("/api/v1/teams", &admin, r#"{"name":"one-too-many"}"#)
            .await;
        assert_eq!((a.status, a.code()), (429, "quota_exceeded"), "{name}");
        let crowd: Vec<String> = (0..101).map(|i| format!(r#""u{i}""#)).collect();
        let tiny_admin = token("tiny", "admin", "admin@tiny");
        let a = s
            .post(
                "/api/v1/teams",
                &tiny_admin,
                &format!(r#"{{"name":"big","members":[{}]}}"#, crowd.join(",")),
            )
            .await;
        assert_eq!((a.status, a.code()), (400, "invalid_request"), "{name}");

        // 50 concurrent user creates on a plan of 10 users leave exactly 10.
        let creates = (0..50).map(|i| {
            let (s, t) = (&s, &tiny_admin);
            async move {
                s.post(
                    "/api/v1/users",
                    t,
                    &format!(r#"{{"email":"u{i}@tiny.test","role":"viewer"}}"#),
                )
                .await
                .status
            }
        });
        let statuses = futures_util::future::join_all(creates).await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            10,
            "{name}: {statuses:?}"
        );
        let users = s.get("/api/v1/users", &tiny_admin).await;
        assert_eq!(
            users.body["users"].as_array().map(Vec::len),
            Some(10),
            "{name}: {}",
            users.raw
        );

        for settings in [
            r#"{"quota_overrides":{"rps":0}}"#,
            r#"{"quota_overrides":{"budgets":{"a:{b}":{"limit":1,"period":"day"}}}}"#,
        ] {
            let a = patch(
                &s,
                "/api/v1/tenants/acme",
                &root(),
                &format!(r#"{{"settings":{settings}}}"#),
            )
            .await;
            assert_eq!(
                (a.status, a.code()),
                (400, "invalid_request"),
                "{name}: {settings}"
            );
        }
    }
}

/// Sends 60 concurrent key creates for acme (pro plan: 20 keys), spread over
/// `servers`; returns how many were created and the live keys listed after.
async fn race_key_creates(servers: &[&Server]) -> (usize, usize) {
    let admin = token("acme", "admin", "admin@acme");
    let creates = (0..60).map(|i| {
        let (s, admin) = (servers[i % servers.len()], &admin);
        async move {
            s.post(
                "/api/v1/apikeys",
                admin,
                &format!(r#"{{"name":"k{i}","scope":"readonly"}}"#),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(creates).await;
    for a in &answers {
        assert!(
            a.status == 201 || (a.status, a.code()) == (429, "quota_exceeded"),
            "{}",
            a.raw
        );
    }
    let created = answers.iter().filter(|a| a.status == 201).count();
    let listed = servers[0].get("/api/v1/apikeys", &admin).await;
    let live = listed.body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["revoked_at"].is_null())
        .count();
    (created, live)
}

/// Finding 5 (counts): on Redis, 60 concurrent key creates on a pro tenant
/// (20 keys) left 21.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_key_creates_never_pass_the_plan() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        assert_eq!(race_key_creates(&[&s]).await, (20, 20), "{name}");
    }
    let Some(url) = tenancy_core::testkit::services::redis_url() else {
        return;
    };
    let prefix = format!("hostile-{}-{}", std::process::id(), new_key_id().unwrap());
    let env = [
        ("TENANCY_REDIS_URL", url.as_str()),
        ("TENANCY_REDIS_PREFIX", prefix.as_str()),
    ];
    let bins = binaries();
    let a = Server::start(bins[0].0, bins[0].1, &env);
    let b = Server::start(bins[1].0, bins[1].1, &env);
    create_tenant(&a, "acme", "pro").await;
    assert_eq!(
        race_key_creates(&[&a, &b]).await,
        (20, 20),
        "two instances on one Redis"
    );
}

/// Finding 3 (metering): a burst of distinct event types from one tenant
/// escaped metering and cost another tenant its counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_event_types_neither_escapes_metering_nor_costs_others() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "enterprise").await;
        create_tenant(&s, "globex", "pro").await;
        let acme = token("acme", "operator", "op@acme");
        let globex = token("globex", "operator", "op@globex");
        let calls = 70;
        for call in 0..calls {
            let events: Vec<String> = (0..1000)
                .map(|i| format!(r#"{{"type":"t{call}x{i}","name":"n","value":1}}"#))
                .collect();
            let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
            let a = s.post("/api/v1/telemetry", &acme, &body).await;
            assert_eq!(a.status, 202, "{name}: {}", a.raw);
            if call % 7 == 0 {
                let one = r#"{"events":[{"type":"metric","name":"cpu","value":1},{"type":"metric","name":"cpu","value":2}]}"#;
                assert_eq!(
                    s.post("/api/v1/telemetry", &globex, one).await.status,
                    202,
                    "{name}"
                );
            }
        }
        let total = |a: &support::Answer, skip_requests: bool| -> u64 {
            a.body["usage"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| !skip_requests || r["event_type"] != "requests")
                        .map(|r| r["count"].as_u64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0)
        };
        let acme_admin = token("acme", "admin", "admin@acme");
        let usage = s
            .get_until("/api/v1/usage", &acme_admin, |a| {
                total(a, true) >= calls * 1000
            })
            .await;
        assert_eq!(
            total(&usage, true),
            calls * 1000,
            "{name}: every event metered"
        );
        let rows = usage.body["usage"].as_array().unwrap();
        assert!(rows.len() <= 2 * 101 + 2, "{name}: {} rows", rows.len());
        assert!(
            rows.iter().any(|r| r["event_type"] == "other_types"),
            "{name}"
        );
        let globex_admin = token("globex", "admin", "admin@globex");
        let theirs = s
            .get_until("/api/v1/usage", &globex_admin, |a| total(a, true) >= 20)
            .await;
        assert_eq!(total(&theirs, true), 20, "{name}: globex lost nothing");
    }
}

/// Issue 23, finding 3: one client sending forged tokens locked out every
/// good caller on its address. Credentials known good (a key that verified
/// within the minute, a token in the verified-token cache) are served while
/// the address is throttled; unknown ones are still refused before any
/// lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_good_credential_is_served_while_another_client_floods_its_address() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[SLOW_REFILL]);
        create_tenant(&s, "acme", "pro").await;
        let (good, _) = issue_key(&s, "acme", "readonly", "").await;
        let (unused, _) = issue_key(&s, "acme", "readonly", "").await;
        let query = |headers: Vec<(&'static str, String)>| {
            let s = &s;
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                s.call("GET", "/api/v1/metrics/query", &headers, None).await
            }
        };
        // One token, sent as it is each time (a new one is a new token).
        let root_token = root();
        let root_bearer = format!("Bearer {root_token}");
        // Each good credential is used once, and so becomes known.
        assert_eq!(
            query(vec![("x-api-key", good.clone())]).await.status,
            200,
            "{name}"
        );
        let rbac = s.get("/api/v1/rbac/permissions", &root_token).await;
        assert_eq!(rbac.status, 200, "{name}: {}", rbac.raw);

        // Another client on the same address floods forged tokens.
        let mut flood = std::collections::BTreeMap::new();
        let mut served = Vec::new();
        for i in 0..200 {
            let forged = query(vec![("authorization", "Bearer x.y.z".to_owned())]).await;
            *flood.entry(forged.status).or_insert(0) += 1;
            if i % 20 == 19 {
                let with_key = query(vec![("x-api-key", good.clone())]).await;
                let with_token = s
                    .call(
                        "GET",
                        "/api/v1/rbac/permissions",
                        &[("authorization", &root_bearer)],
                        None,
                    )
                    .await;
                served.push((with_key.status, with_token.status));
            }
        }
        assert!(
            flood.get(&429).copied().unwrap_or(0) >= 140,
            "{name}: {flood:?}"
        );
        assert!(
            served.iter().all(|&s| s == (200, 200)),
            "{name}: the good callers were refused: {served:?}"
        );
        // A credential never seen is refused before any lookup.
        let unknown = query(vec![("x-api-key", unused.clone())]).await;
        assert_eq!(
            (unknown.status, unknown.code()),
            (429, "rate_limited"),
            "{name}"
        );
        let fresh = token("acme", "viewer", "new@acme");
        let unknown = s.get("/api/v1/metrics/query", &fresh).await;
        assert_eq!(
            (unknown.status, unknown.code()),
            (429, "rate_limited"),
            "{name}"
        );
        let_throttle_recover().await;
    }
}

/// Issue 23, finding 3: behind a load balancer every caller shared one
/// address. With the balancer trusted, each client counts under its own
/// address, in the throttle and in the security log; a client that is not
/// behind a trusted proxy cannot pick its address with the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_behind_one_trusted_proxy_are_throttled_apart() {
    for (name, bin) in binaries() {
        for trusted in [true, false] {
            let mut env = vec![SLOW_REFILL];
            if trusted {
                env.push(("TENANCY_TRUSTED_PROXIES", "127.0.0.0/8"));
            }
            let s = Server::start(name, bin, &env);
            let forged = |client: &'static str| {
                let s = &s;
                async move {
                    s.call(
                        "GET",
                        "/api/v1/metrics/query",
                        &[
                            ("authorization", "Bearer x.y.z"),
                            ("x-forwarded-for", &format!("203.0.113.77, {client}")),
                        ],
                        None,
                    )
                    .await
                    .status
                }
            };
            let mut first = Vec::new();
            for _ in 0..80 {
                first.push(forged("198.51.100.1").await);
            }
            assert!(first.iter().filter(|&&s| s == 429).count() >= 25, "{name}");
            // The other client, behind the same proxy.
            let second = forged("198.51.100.2").await;
            let_throttle_recover().await;
            let log = s.get("/api/v1/security/refusals", &root()).await;
            let rows = log.body["refusals"].as_array().unwrap().clone();
            let addrs: std::collections::BTreeSet<&str> = rows
                .iter()
                .filter_map(|r| r["client_addr"].as_str())
                .collect();
            if trusted {
                assert_eq!(second, 401, "{name}: not throttled with the first");
                assert!(
                    addrs.contains("198.51.100.1") && addrs.contains("198.51.100.2"),
                    "{name}: {rows:?}"
                );
                assert!(!addrs.contains("127.0.0.1"), "{name}: {rows:?}");
            } else {
                // The header of an untrusted peer is not believed.
                assert_eq!(second, 429, "{name}");
                assert_eq!(
                    addrs.into_iter().collect::<Vec<_>>(),
                    ["127.0.0.1"],
                    "{name}"
                );
            }
        }
    }
}

/// Issue 23, finding 2: a tenant's realm made the server fetch loopback,
/// private and metadata addresses, chosen by the realm or by its discovery
/// document. Literal internal addresses are refused when the realm is set;
/// names are checked on the address they resolve to, when the server
/// connects; nothing reaches the internal port, and a forged token naming
/// such a realm counts as a failure of its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_realm_never_makes_the_server_reach_an_internal_address() {
    use serde_json::json;
    use tenancy_core::testkit::idp::{IdpServer, Reply, Trap};

    let internal = Trap::bind("127.0.0.1").await;
    let port = internal.addr().port();
    // Bigcorp's identity provider, on the internal network the operator
    // allows (127.0.0.1 only): its discovery document names another
    // internal host.
    let (idp, ca) = IdpServer::start_private_tls().await;
    let elsewhere = Trap::bind("127.0.0.2").await;
    let issuer = idp.issuer("bigcorp");
    let mut document = tenancy_core::testkit::idp::keycloak_discovery(&issuer);
    document["jwks_uri"] = json!(format!(
        "HTTPS://127.0.0.2:{}/certs",
        elsewhere.addr().port()
    ));
    idp.set(
        &IdpServer::discovery_path("bigcorp"),
        Reply::json(&document),
    );
    let config = support::config_trusting("tenancy-egress", &ca);

    let forged = |issuer: &str| {
        let b64 = |v: serde_json::Value| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "Bearer {}.{}.c2lnbmF0dXJl",
            b64(json!({ "alg": "RS256" })),
            b64(
                json!({ "iss": issuer, "sub": "x", "aud": "tenancy", "role": "admin", "exp": 4102444800u64 })
            )
        )
    };
    let servers = binaries()
        .into_iter()
        .flat_map(|(name, bin)| [(name, bin, false), (name, bin, true)]);
    for (name, bin, allowed) in servers {
        let mut env = vec![("TENANCY_CONFIG", config.to_str().unwrap())];
        if allowed {
            env.push(("TENANCY_EGRESS_ALLOW", "127.0.0.1"));
        }
        let s = Server::start(name, bin, &env);
        create_tenant(&s, "mallory", "enterprise").await;
        let set_realm = |realm: serde_json::Value| {
            let s = &s;
            async move {
                patch(
                    s,
                    "/api/v1/tenants/mallory",
                    &root(),
                    &json!({ "realm": realm }).to_string(),
                )
                .await
            }
        };
        // Refused when set: plain http in any case, metadata and private
        // addresses written in the URL.
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("HTTP://127.0.0.1:{port}/internal"),
            format!("http://localhost:{port}/?query=SELECT%201"),
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "https://10.255.255.1:8443/jwks".to_owned(),
            "https://[::ffff:169.254.169.254]/latest".to_owned(),
            "https://2852039166/latest".to_owned(),
        ] {
            let refused = set_realm(json!({
                "issuer": "https://id.mallory.example",
                "jwks_url": url,
                "audience": ["tenancy"],
            }))
            .await;
            assert_eq!(
                (refused.status, refused.code()),
                (400, "invalid_request"),
                "{name}: {url}: {}",
                refused.raw
            );
        }
        // Accepted, as names, and refused where the server connects:
        // without an allowance, names of the loopback address; with
        // 127.0.0.1 allowed, a discovery document there naming another
        // internal host.
        let cases = if allowed {
            vec![(
                json!({ "issuer": issuer, "discovery": true, "audience": ["tenancy"] }),
                issuer.clone(),
            )]
        } else {
            vec![
                (
                    json!({ "issuer": "https://id.mallory.example", "jwks_url": format!("https://localhost:{port}/certs"), "audience": ["tenancy"] }),
                    "https://id.mallory.example".to_owned(),
                ),
                (
                    json!({ "issuer": format!("https://LocalHost:{port}/realms/x"), "discovery": true, "audience": ["tenancy"] }),
                    format!("https://LocalHost:{port}/realms/x"),
                ),
            ]
        };
        for (realm, issuer) in cases {
            let set = set_realm(realm.clone()).await;
            assert_eq!(set.status, 200, "{name}: {realm}: {}", set.raw);
            let answer = s
                .call(
                    "GET",
                    "/api/v1/metrics/query",
                    &[("authorization", &forged(&issuer))],
                    None,
                )
                .await;
            assert!(
                matches!(answer.code(), "store_unavailable" | "invalid_token"),
                "{name}: {realm}: {}",
                answer.raw
            );
            let cleared = set_realm(json!(null)).await;
            assert_eq!(cleared.status, 200, "{name}");
        }
    }
    assert_eq!(internal.connections(), 0, "the internal port was reached");
    assert_eq!(
        elsewhere.connections(),
        0,
        "the document's jwks_uri was fetched"
    );
}
