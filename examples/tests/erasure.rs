//! A tenant leaves: archived, then erased from every store, every Redis
//! node and every ClickHouse shard; what stays is one `tenant.erase` event
//! with the counts in the platform's log, and the id starts afresh.

mod support;

use std::process::Command;

use serde_json::json;
use support::{Server, binaries, create_tenant, issue_key, root, token};

/// The tenant that leaves: an id no other key or row name contains.
const LEAVER: &str = "leaver";

/// Where the server keeps state, and how to look for what is left there.
struct Stores {
    env: Vec<(String, String)>,
    /// Every Redis node (masters and replicas), with the key prefix.
    redis: Option<(Vec<String>, String)>,
    /// Every ClickHouse server holding rows, the database, and whether the
    /// rows are in the shards' local tables.
    clickhouse: Option<(Vec<String>, String, bool)>,
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_tenant_is_erased_from_memory() {
    let stores = Stores {
        env: Vec::new(),
        redis: None,
        clickhouse: None,
    };
    erase_everywhere(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_tenant_is_erased_from_redis_and_clickhouse() {
    let (Some(redis), Some(clickhouse)) = (
        tenancy_core::testkit::services::redis_url(),
        tenancy_core::testkit::services::clickhouse_url(),
    ) else {
        return;
    };
    let prefix = unique("erase");
    let database = unique("tenancy_erase");
    let stores = Stores {
        env: vec![
            ("TENANCY_REDIS_URL".into(), redis.clone()),
            ("TENANCY_REDIS_PREFIX".into(), prefix.clone()),
            ("TENANCY_CLICKHOUSE_URL".into(), clickhouse.clone()),
            ("TENANCY_CLICKHOUSE_DATABASE".into(), database.clone()),
        ],
        redis: Some((vec![redis], prefix)),
        clickhouse: Some((vec![clickhouse], database, false)),
    };
    erase_everywhere(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_tenant_is_erased_from_a_redis_cluster_and_clickhouse_shards() {
    let (Some(nodes), Some((cluster, shards))) = (
        tenancy_core::testkit::services::redis_cluster_nodes(),
        tenancy_core::testkit::services::clickhouse_cluster(),
    ) else {
        return;
    };
    let prefix = unique("erase");
    let database = unique("tenancy_erase");
    let stores = Stores {
        env: vec![
            ("TENANCY_REDIS_CLUSTER_NODES".into(), nodes.join(",")),
            ("TENANCY_REDIS_PREFIX".into(), prefix.clone()),
            ("TENANCY_CLICKHOUSE_URL".into(), shards[0].clone()),
            ("TENANCY_CLICKHOUSE_CLUSTER".into(), cluster),
            ("TENANCY_CLICKHOUSE_SHARDS".into(), shards.join(",")),
            ("TENANCY_CLICKHOUSE_DATABASE".into(), database.clone()),
        ],
        redis: Some((nodes, prefix)),
        clickhouse: Some((shards, database, true)),
    };
    erase_everywhere(&stores).await;
}

async fn erase_everywhere(stores: &Stores) {
    for (name, bin) in binaries() {
        let env: Vec<(&str, &str)> = stores
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let s = Server::start(name, bin, &env);
        // A neighbour with the same kinds of data, which must all stay.
        for tenant in [LEAVER, "stayer"] {
            if s.get(&format!("/api/v1/tenants/{tenant}"), &root())
                .await
                .status
                == 404
            {
                create_tenant(&s, tenant, "pro").await;
            }
            fill(&s, tenant).await;
        }
        let (key, _) = issue_key(&s, LEAVER, "full", "").await;
        let leaver_admin = token(LEAVER, "admin", &format!("admin@{LEAVER}"));

        // Exported first: every kind present, no secret in the bytes; by
        // the tenant's admin too, by nobody else.
        let export = s
            .get(&format!("/api/v1/tenants/{LEAVER}/export"), &root())
            .await;
        assert_eq!(export.status, 200, "{name}: {}", export.raw);
        assert_eq!(
            export
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/x-ndjson"),
            "{name}"
        );
        let mut kinds = std::collections::BTreeSet::new();
        for line in export.raw.lines() {
            let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert!(line["data"].is_object(), "{name}: {line}");
            kinds.insert(line["type"].as_str().unwrap().to_owned());
        }
        let expected = [
            "api_key",
            "audit_event",
            "realm",
            "team",
            "telemetry",
            "tenant",
            "usage",
            "user",
        ];
        assert_eq!(
            kinds.iter().map(String::as_str).collect::<Vec<_>>(),
            expected,
            "{name}"
        );
        assert!(!export.raw.contains(&key), "{name}: a secret in the export");
        assert!(
            !export.raw.contains("digest"),
            "{name}: a digest in the export"
        );
        assert!(
            !export.raw.contains("stayer"),
            "{name}: the neighbour in the export"
        );
        let own = s
            .get(&format!("/api/v1/tenants/{LEAVER}/export"), &leaver_admin)
            .await;
        assert_eq!(own.status, 200, "{name}");
        let other = s
            .get(
                &format!("/api/v1/tenants/{LEAVER}/export"),
                &token("stayer", "admin", "admin@stayer"),
            )
            .await;
        assert_eq!((other.status, other.code()), (404, "not_found"), "{name}");

        // Only an archived tenant is erased.
        let early = call(&s, "DELETE", &format!("/api/v1/tenants/{LEAVER}"), None).await;
        assert_eq!(
            (early.status, early.code()),
            (409, "conflict"),
            "{name}: {}",
            early.raw
        );
        let archived = call(
            &s,
            "PATCH",
            &format!("/api/v1/tenants/{LEAVER}"),
            Some(r#"{"status":"archived"}"#),
        )
        .await;
        assert_eq!(archived.status, 200, "{name}: {}", archived.raw);
        let erasures = |a: &support::Answer| a.body["events"].as_array().map_or(0, Vec::len);
        let before = erasures(&s.get("/api/v1/audit?action=tenant.erase", &root()).await);
        let erased = call(&s, "DELETE", &format!("/api/v1/tenants/{LEAVER}"), None).await;
        assert_eq!(erased.status, 200, "{name}: {}", erased.raw);
        let counts = &erased.body["erased"];
        for (store, at_least) in [
            ("realm", 1),
            ("api_keys", 2),
            // Buckets expire once full again, which in Redis may already
            // have happened; the scans below show none is left.
            ("rate_limit_buckets", 0),
            ("budget_counters", 1),
            ("members", 1),
            ("teams", 1),
            ("audit_events", 3),
            ("usage_rows", 1),
            ("telemetry_events", 2),
        ] {
            assert!(
                counts[store].as_u64().unwrap_or_default() >= at_least,
                "{name}: {store}: {}",
                erased.raw
            );
        }

        // Nothing answers for it.
        let refused = s
            .call("GET", "/api/v1/metrics/query", &[("x-api-key", &key)], None)
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (401, "invalid_api_key"),
            "{name}"
        );
        assert_eq!(
            s.get(&format!("/api/v1/tenants/{LEAVER}"), &root())
                .await
                .status,
            404
        );
        let again = call(&s, "DELETE", &format!("/api/v1/tenants/{LEAVER}"), None).await;
        assert_eq!(again.status, 404, "{name}");
        // The platform's log holds the erasure, with the counts.
        let log = s
            .get_until("/api/v1/audit?action=tenant.erase", &root(), |a| {
                erasures(a) > before
            })
            .await;
        let event = &log.body["events"][0];
        assert_eq!(event["resource"], LEAVER, "{name}: {}", log.raw);
        assert_eq!(
            event["details"]["members"],
            counts["members"].as_u64().unwrap().to_string()
        );

        // Every Redis node and ClickHouse server: nothing of it.
        if let Some((nodes, prefix)) = &stores.redis {
            for node in nodes {
                for pattern in [format!("*{{{LEAVER}}}*"), format!("*{LEAVER}*")] {
                    let found = redis_cli(node, &["--scan", "--pattern", &pattern]);
                    assert_eq!(found.trim(), "", "{name}: {node} {pattern}");
                }
                for record in redis_cli(
                    node,
                    &["--scan", "--pattern", &format!("{prefix}:apikey:*")],
                )
                .lines()
                {
                    let owner = redis_cli(node, &["hget", record, "tenant"]);
                    assert_ne!(owner.trim(), LEAVER, "{name}: {node} {record}");
                }
            }
        }
        if let Some((servers, database, local)) = &stores.clickhouse {
            let suffix = if *local { "_local" } else { "" };
            let mut stayer_rows = 0u64;
            for server in servers {
                for table in ["audit_log", "usage_hourly", "telemetry"] {
                    let sql = format!(
                        "SELECT count() FROM {database}.{table}{suffix} WHERE tenant_id = '{LEAVER}'"
                    );
                    assert_eq!(clickhouse(server, &sql), "0", "{name}: {server} {table}");
                }
                let stayer = format!(
                    "SELECT count() FROM {database}.telemetry{suffix} WHERE tenant_id = 'stayer'"
                );
                stayer_rows += clickhouse(server, &stayer)
                    .parse::<u64>()
                    .unwrap_or_default();
            }
            assert!(stayer_rows >= 2, "{name}: the neighbour's rows stay");
        }

        // The neighbour has all of its own.
        let stayer = token("stayer", "admin", "admin@stayer");
        for (path, field) in [
            ("/api/v1/users", "users"),
            ("/api/v1/teams", "teams"),
            ("/api/v1/metrics/query", "events"),
            ("/api/v1/apikeys", "api_keys"),
        ] {
            let answer = s.get(path, &stayer).await;
            assert!(
                !answer.body[field]
                    .as_array()
                    .map(Vec::is_empty)
                    .unwrap_or(true),
                "{name}: {path}: {}",
                answer.raw
            );
        }
        // The id starts afresh.
        create_tenant(&s, LEAVER, "pro").await;
        for (path, field) in [
            ("/api/v1/users", "users"),
            ("/api/v1/teams", "teams"),
            ("/api/v1/metrics/query", "events"),
            ("/api/v1/apikeys", "api_keys"),
        ] {
            let answer = s.get(path, &leaver_admin).await;
            assert_eq!(
                answer.body[field],
                json!([]),
                "{name}: {path}: {}",
                answer.raw
            );
        }
        let fresh = s.get(&format!("/api/v1/tenants/{LEAVER}"), &root()).await;
        assert_eq!(fresh.body["realm"], json!(null), "{name}: {}", fresh.raw);
        // Leave it archived and erased for the next front end.
        call(
            &s,
            "PATCH",
            &format!("/api/v1/tenants/{LEAVER}"),
            Some(r#"{"status":"archived"}"#),
        )
        .await;
        call(&s, "DELETE", &format!("/api/v1/tenants/{LEAVER}"), None).await;
    }
}

/// Gives `tenant` a key that was used, a realm, a user, a team, telemetry,
/// audit events and usage.
async fn fill(s: &Server, tenant: &str) {
    let admin = token(tenant, "admin", &format!("admin@{tenant}"));
    let (key, _) = issue_key(s, tenant, "full", "").await;
    let events = r#"{"events":[{"type":"metric","name":"cpu","value":1},{"type":"log","name":"boot","value":1}]}"#;
    let sent = s
        .call(
            "POST",
            "/api/v1/telemetry",
            &[("x-api-key", &key), ("content-type", "application/json")],
            Some(events),
        )
        .await;
    assert_eq!(sent.status, 202, "{}: {}", s.name, sent.raw);
    let user = s
        .post(
            "/api/v1/users",
            &admin,
            &format!(
                r#"{{"email":"dana-{}@{tenant}.test","role":"viewer"}}"#,
                s.name
            ),
        )
        .await;
    assert_eq!(user.status, 201, "{}: {}", s.name, user.raw);
    let team = s.post("/api/v1/teams", &admin, r#"{"name":"sre"}"#).await;
    assert_eq!(team.status, 201, "{}: {}", s.name, team.raw);
    let realm = json!({ "realm": {
        "issuer": format!("https://id.{tenant}.example"),
        "discovery": true,
        "audience": ["tenancy"],
    }});
    let set = call(
        s,
        "PATCH",
        &format!("/api/v1/tenants/{tenant}"),
        Some(&realm.to_string()),
    )
    .await;
    assert_eq!(set.status, 200, "{}: {}", s.name, set.raw);
    // Written and metered before the erasure looks.
    s.get_until("/api/v1/audit", &admin, |a| a.raw.contains("team.create"))
        .await;
    s.get_until("/api/v1/usage", &admin, |a| a.raw.contains("\"metric\""))
        .await;
}

async fn call(s: &Server, method: &str, path: &str, body: Option<&str>) -> support::Answer {
    let auth = format!("Bearer {}", root());
    s.call(method, path, &[("authorization", &auth)], body)
        .await
}

fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn clickhouse(url: &str, sql: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--data-binary", sql, url])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
