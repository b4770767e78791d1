//! The reference server end to end: each binary started on a free port and
//! driven over HTTP with the same cases.

mod support;

use support::{Server, binaries, create_tenant, issue_key, root, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_lifecycle() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let again = s
            .post(
                "/api/v1/tenants",
                &root(),
                r#"{"tenant_id":"acme","name":"Acme","plan":"pro"}"#,
            )
            .await;
        assert_eq!((again.status, again.code()), (409, "conflict"), "{name}");
        let got = s.get("/api/v1/tenants/acme", &root()).await;
        assert_eq!(got.body["status"], "active", "{name}");
        let list = s.get("/api/v1/tenants", &root()).await;
        let ids: Vec<&str> = list.body["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["acme", "platform"], "{name}");

        let admin = token("acme", "admin", "admin@acme");
        assert_eq!(
            s.post("/api/v1/runbooks/r1/trigger", &admin, "")
                .await
                .status,
            202,
            "{name}"
        );

        let patch = |status: &'static str| {
            let s = &s;
            async move {
                let auth = format!("Bearer {}", root());
                s.call(
                    "PATCH",
                    "/api/v1/tenants/acme",
                    &[("authorization", &auth)],
                    Some(&format!(r#"{{"status":"{status}"}}"#)),
                )
                .await
            }
        };
        assert_eq!(patch("suspended").await.status, 200, "{name}");
        let write = s.post("/api/v1/runbooks/r1/trigger", &admin, "").await;
        assert_eq!(
            (write.status, write.code()),
            (403, "tenant_suspended"),
            "{name}"
        );
        assert_eq!(
            s.get("/api/v1/metrics/query", &admin).await.status,
            200,
            "{name}: reads stay"
        );

        assert_eq!(patch("archived").await.status, 200, "{name}");
        let read = s.get("/api/v1/metrics/query", &admin).await;
        assert_eq!(
            (read.status, read.code()),
            (403, "tenant_archived"),
            "{name}"
        );
        // The super_admin still manages the record.
        assert_eq!(
            s.get("/api/v1/tenants/acme", &root()).await.body["status"],
            "archived",
            "{name}"
        );
        assert_eq!(patch("active").await.status, 200, "{name}");
        assert_eq!(
            s.post("/api/v1/runbooks/r1/trigger", &admin, "")
                .await
                .status,
            202,
            "{name}"
        );

        let bad = s
            .post(
                "/api/v1/tenants",
                &root(),
                r#"{"tenant_id":"Bad Id","name":"x"}"#,
            )
            .await;
        assert_eq!(
            (bad.status, bad.code()),
            (400, "invalid_tenant_id"),
            "{name}"
        );
        let plan = s
            .post(
                "/api/v1/tenants",
                &root(),
                r#"{"tenant_id":"x1","name":"x","plan":"gold"}"#,
            )
            .await;
        assert_eq!(
            (plan.status, plan.code()),
            (400, "invalid_request"),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matrix() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        // (method, path, body, lowest role allowed, success status)
        let routes: &[(&str, &str, Option<&str>, usize, u16)] = &[
            ("GET", "/api/v1/rbac/permissions", None, 0, 200),
            ("GET", "/api/v1/metrics/query", None, 0, 200),
            ("POST", "/api/v1/runbooks/r1/trigger", None, 1, 202),
            ("POST", "/api/v1/incidents/i1/ack", None, 1, 200),
            (
                "POST",
                "/api/v1/telemetry",
                Some(r#"{"events":[{"type":"metric","name":"cpu","value":1}]}"#),
                1,
                202,
            ),
            ("GET", "/api/v1/users", None, 2, 200),
            ("GET", "/api/v1/teams", None, 2, 200),
            (
                "POST",
                "/api/v1/teams",
                Some(r#"{"name":"sre","members":["a"],"on_call_rotation":["a"]}"#),
                2,
                201,
            ),
            ("GET", "/api/v1/apikeys", None, 2, 200),
            ("GET", "/api/v1/audit", None, 2, 200),
            ("GET", "/api/v1/usage", None, 2, 200),
            ("GET", "/api/v1/tenants", None, 3, 200),
        ];
        let roles = ["viewer", "operator", "admin", "super_admin"];
        for (level, role) in roles.iter().enumerate() {
            let t = token("acme", role, &format!("{role}@acme"));
            let auth = format!("Bearer {t}");
            for (method, path, body, lowest, ok) in routes {
                let answer = s
                    .call(method, path, &[("authorization", &auth)], *body)
                    .await;
                if level >= *lowest {
                    assert_eq!(
                        answer.status, *ok,
                        "{name}: {role} {method} {path}: {}",
                        answer.raw
                    );
                } else {
                    assert_eq!(
                        (answer.status, answer.code()),
                        (403, "insufficient_role"),
                        "{name}: {role} {method} {path}"
                    );
                }
            }
        }
        let perms = s
            .get(
                "/api/v1/rbac/permissions",
                &token("acme", "operator", "op@acme"),
            )
            .await;
        assert_eq!(perms.body["level"], 2, "{name}");
        assert!(
            perms.body["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "runbooks:trigger")
        );
        assert!(
            !perms.body["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "audit:read")
        );
        // Nobody grants a role above their own.
        let admin = token("acme", "admin", "admin@acme");
        let up = s
            .post(
                "/api/v1/users",
                &admin,
                r#"{"email":"x@acme.test","role":"super_admin"}"#,
            )
            .await;
        assert_eq!((up.status, up.code()), (403, "insufficient_role"), "{name}");

        // A method a path does not serve is not found, whoever asks: the
        // route policies guard the methods only.
        let viewer = format!("Bearer {}", token("acme", "viewer", "viewer@acme"));
        let other = s
            .call(
                "DELETE",
                "/api/v1/users",
                &[("authorization", &viewer)],
                None,
            )
            .await;
        assert_eq!((other.status, other.code()), (404, "not_found"), "{name}");

        // A write refused by a route policy is audited once, as
        // `access.refused` naming who was refused, and not again as an
        // `http.post` with its 403.
        let refusals = [
            ("viewer@acme", "/api/v1/runbooks/r1/trigger"),
            ("viewer@acme", "/api/v1/telemetry"),
            ("operator@acme", "/api/v1/teams"),
        ];
        let of = |a: &support::Answer, who: &str, path: &str| -> Vec<serde_json::Value> {
            a.body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["actor"] == who && e["resource"] == path)
                .cloned()
                .collect()
        };
        // The viewer's DELETE above is the last write: wait for it too.
        let audit = s
            .get_until("/api/v1/audit?limit=1000", &admin, |a| {
                refusals
                    .iter()
                    .all(|(who, path)| !of(a, who, path).is_empty())
                    && !of(a, "viewer@acme", "/api/v1/users").is_empty()
            })
            .await;
        for (who, path) in refusals {
            let refused = of(&audit, who, path);
            assert_eq!(refused.len(), 1, "{name}: {who} {path}: {}", audit.raw);
            let e = &refused[0];
            assert_eq!(
                (&e["action"], &e["outcome"], &e["tenant_id"]),
                (&"access.refused".into(), &403.into(), &"acme".into()),
                "{name}: {who} {path}"
            );
            assert_eq!(
                (&e["details"]["code"], &e["details"]["method"]),
                (&"insufficient_role".into(), &"POST".into()),
                "{name}: {who} {path}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_scopes_revocation_and_expiry() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let (ingest, _) = issue_key(&s, "acme", "ingestion", "").await;
        let (readonly, readonly_id) = issue_key(&s, "acme", "readonly", "").await;
        let (full, _) = issue_key(&s, "acme", "full", "").await;
        let events = r#"{"events":[{"type":"log","name":"boot","value":1}]}"#;
        let key = |k: &str| vec![("x-api-key", k.to_owned())];
        let call =
            |method: &'static str, path: &'static str, k: &str, body: Option<&'static str>| {
                let s = &s;
                let headers = key(k);
                async move {
                    let h: Vec<(&str, &str)> =
                        headers.iter().map(|(a, b)| (*a, b.as_str())).collect();
                    s.call(method, path, &h, body).await
                }
            };
        assert_eq!(
            call("POST", "/api/v1/telemetry", &ingest, Some(events))
                .await
                .status,
            202,
            "{name}"
        );
        let denied = call("GET", "/api/v1/metrics/query", &ingest, None).await;
        assert_eq!(
            (denied.status, denied.code()),
            (403, "scope_denied"),
            "{name}"
        );
        assert_eq!(
            call("GET", "/api/v1/metrics/query", &readonly, None)
                .await
                .status,
            200,
            "{name}"
        );
        let denied = call("POST", "/api/v1/telemetry", &readonly, Some(events)).await;
        assert_eq!(
            (denied.status, denied.code()),
            (403, "scope_denied"),
            "{name}"
        );
        assert_eq!(
            call("GET", "/api/v1/apikeys", &full, None).await.status,
            200,
            "{name}: full acts as admin"
        );
        let listed = call("GET", "/api/v1/apikeys", &full, None).await;
        assert!(
            !listed.raw.contains(&readonly),
            "{name}: listing never shows a secret"
        );
        let sa = call("GET", "/api/v1/tenants", &full, None).await;
        assert_eq!(
            (sa.status, sa.code()),
            (403, "insufficient_role"),
            "{name}: never super_admin"
        );

        let admin = format!("Bearer {}", token("acme", "admin", "admin@acme"));
        let del = s
            .call(
                "DELETE",
                &format!("/api/v1/apikeys/{readonly_id}"),
                &[("authorization", &admin)],
                None,
            )
            .await;
        assert_eq!(del.status, 204, "{name}");
        let revoked = call("GET", "/api/v1/metrics/query", &readonly, None).await;
        assert_eq!(
            (revoked.status, revoked.code()),
            (401, "invalid_api_key"),
            "{name}"
        );

        let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
        let (expired, _) =
            issue_key(&s, "acme", "full", &format!(r#","expires_at":"{past}""#)).await;
        let answer = call("GET", "/api/v1/metrics/query", &expired, None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "invalid_api_key"),
            "{name}"
        );
        assert_eq!(
            answer.body["detail"], "the API key is not valid",
            "{name}: the wire never tells an expired key from an unknown one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_tenant_attempts_are_refused() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        create_tenant(&s, "globex", "pro").await;
        let (globex_key, globex_key_id) = issue_key(&s, "globex", "full", "").await;
        let (acme_key, _) = issue_key(&s, "acme", "full", "").await;
        let admin = token("acme", "admin", "admin@acme");
        let auth = format!("Bearer {admin}");
        let by_header = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("authorization", &auth), ("x-tenant-id", "globex")],
                None,
            )
            .await;
        assert_eq!(
            (by_header.status, by_header.code()),
            (403, "tenant_mismatch"),
            "{name}"
        );
        let by_query = s
            .get("/api/v1/metrics/query?tenant_id=globex", &admin)
            .await;
        assert_eq!(
            (by_query.status, by_query.code()),
            (403, "tenant_mismatch"),
            "{name}"
        );
        let by_body = s
            .post(
                "/api/v1/apikeys",
                &admin,
                r#"{"tenant_id":"globex","name":"x","scope":"full"}"#,
            )
            .await;
        assert_eq!(
            (by_body.status, by_body.code()),
            (403, "tenant_mismatch"),
            "{name}"
        );
        let by_id = s
            .call(
                "DELETE",
                &format!("/api/v1/apikeys/{globex_key_id}"),
                &[("authorization", &auth)],
                None,
            )
            .await;
        assert_eq!((by_id.status, by_id.code()), (404, "not_found"), "{name}");
        let other_record = s.get("/api/v1/tenants/globex", &admin).await;
        assert_eq!(
            (other_record.status, other_record.code()),
            (404, "not_found"),
            "{name}"
        );
        let key_elsewhere = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("x-api-key", &acme_key), ("x-tenant-id", "globex")],
                None,
            )
            .await;
        assert_eq!(
            (key_elsewhere.status, key_elsewhere.code()),
            (403, "tenant_mismatch"),
            "{name}"
        );
        // The globex key still works: nothing was revoked across tenants.
        assert_eq!(
            s.call(
                "GET",
                "/api/v1/metrics/query",
                &[("x-api-key", &globex_key)],
                None
            )
            .await
            .status,
            200,
            "{name}"
        );
        // Data never crosses: acme's telemetry is not globex's.
        s.post(
            "/api/v1/telemetry",
            &admin,
            r#"{"events":[{"type":"metric","name":"acme-only","value":1}]}"#,
        )
        .await;
        let globex_view = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("x-api-key", &globex_key)],
                None,
            )
            .await;
        assert!(!globex_view.raw.contains("acme-only"), "{name}");
        // A super_admin may act on another tenant, and it is audited.
        let sa = format!("Bearer {}", root());
        let as_sa = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("authorization", &sa), ("x-tenant-id", "globex")],
                None,
            )
            .await;
        assert_eq!(as_sa.status, 200, "{name}");
        let audit = s
            .call_until(
                "/api/v1/audit?action=tenant.cross_access",
                &[("authorization", &sa), ("x-tenant-id", "globex")],
                |a| a.body["events"].as_array().is_some_and(|e| !e.is_empty()),
            )
            .await;
        assert!(
            !audit.body["events"].as_array().unwrap().is_empty(),
            "{name}: {}",
            audit.raw
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_quota_answers() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "tiny", "free").await;
        let admin = token("tiny", "admin", "admin@tiny");
        let mut limited = None;
        for _ in 0..40 {
            let a = s.get("/api/v1/rbac/permissions", &admin).await;
            if a.status == 429 {
                limited = Some(a);
                break;
            }
            assert_eq!(a.headers["ratelimit-limit"], "10", "{name}");
        }
        let limited = limited.unwrap_or_else(|| panic!("{name}: free plan's 10 rps never refused"));
        assert_eq!(limited.code(), "rate_limited", "{name}");
        assert!(limited.headers.contains_key("retry-after"), "{name}");
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

        // Count quota: the free plan allows 2 live keys.
        issue_key(&s, "tiny", "full", "").await;
        issue_key(&s, "tiny", "full", "").await;
        let third = s
            .post("/api/v1/apikeys", &admin, r#"{"name":"k3","scope":"full"}"#)
            .await;
        assert_eq!(
            (third.status, third.code()),
            (429, "quota_exceeded"),
            "{name}"
        );

        // Monthly events: lower the quota to 3 and send 4.
        let auth = format!("Bearer {}", root());
        let patch = s
            .call(
                "PATCH",
                "/api/v1/tenants/tiny",
                &[("authorization", &auth)],
                Some(r#"{"settings":{"quota_overrides":{"events_per_month":3}}}"#),
            )
            .await;
        assert_eq!(patch.status, 200, "{name}: {}", patch.raw);
        let three = r#"{"events":[{"type":"metric","name":"a","value":1},{"type":"metric","name":"b","value":2},{"type":"log","name":"c","value":3}]}"#;
        assert_eq!(
            s.post("/api/v1/telemetry", &admin, three).await.status,
            202,
            "{name}"
        );
        let over = s
            .post(
                "/api/v1/telemetry",
                &admin,
                r#"{"events":[{"type":"metric","name":"d","value":4}]}"#,
            )
            .await;
        assert_eq!(
            (over.status, over.code()),
            (429, "quota_exceeded"),
            "{name}"
        );
        let retry: u64 = over.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            retry > 0 && retry <= 31 * 24 * 3600,
            "{name}: until the month resets"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_answers_and_store_nothing() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let admin = token("acme", "admin", "admin@acme");
        for body in [
            "{",
            "[]",
            r#"{"name":"sre","unexpected":true}"#,
            r#"{"name":17}"#,
        ] {
            let a = s.post("/api/v1/teams", &admin, body).await;
            assert_eq!(
                (a.status, a.code()),
                (400, "invalid_request"),
                "{name}: {body}"
            );
        }
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2 << 20));
        // The server answers before reading all of it and closes the connection.
        let auth = format!("Bearer {admin}");
        let a = s
            .call(
                "POST",
                "/api/v1/teams",
                &[("authorization", &auth), ("connection", "close")],
                Some(&big),
            )
            .await;
        assert_eq!((a.status, a.code()), (413, "payload_too_large"), "{name}");
        let teams = s.get("/api/v1/teams", &admin).await;
        assert_eq!(
            teams.body["teams"].as_array().unwrap().len(),
            0,
            "{name}: nothing stored"
        );
        let bad_type = s
            .post(
                "/api/v1/telemetry",
                &admin,
                r#"{"events":[{"type":"a:b{c}","name":"x","value":1}]}"#,
            )
            .await;
        assert_eq!(
            (bad_type.status, bad_type.code()),
            (400, "invalid_request"),
            "{name}"
        );
        let bad_tenant = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("authorization", &auth), ("x-tenant-id", "ACME;drop")],
                None,
            )
            .await;
        assert_eq!(
            (bad_tenant.status, bad_tenant.code()),
            (400, "invalid_tenant_id"),
            "{name}"
        );
        for (path, detail) in [
            ("/api/v1/teams?limit=0", "limit must be 1 to 1000"),
            ("/api/v1/users?limit=1001", "limit must be 1 to 1000"),
            ("/api/v1/apikeys?limit=ten", "limit must be 1 to 1000"),
            ("/api/v1/metrics/query?limit=", "limit must be 1 to 1000"),
            (
                "/api/v1/audit?since=yesterday",
                "since must be an RFC 3339 time",
            ),
            (
                "/api/v1/usage?from=2026-01-01",
                "from must be an RFC 3339 time",
            ),
        ] {
            let a = s.get(path, &admin).await;
            assert_eq!(
                (a.status, a.code(), a.body["detail"].as_str()),
                (400, "invalid_request", Some(detail)),
                "{name}: {path}"
            );
        }
        let twice = s.get("/api/v1/teams?limit=1&limit=2", &admin).await;
        assert_eq!(
            (twice.status, twice.code()),
            (400, "invalid_request"),
            "{name}: a parameter given twice"
        );
        let encoded = s
            .get(
                "/api/v1/audit?since=2026-01-01T00%3A00%3A00Z&actor=a%20b+c&unknown=1",
                &admin,
            )
            .await;
        assert_eq!(encoded.status, 200, "{name}: {}", encoded.raw);
        let garbage = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("authorization", "Bearer eyJ.garbage.x")],
                None,
            )
            .await;
        assert_eq!(
            (garbage.status, garbage.code()),
            (401, "invalid_token"),
            "{name}"
        );
        let no_cred = s.call("GET", "/api/v1/metrics/query", &[], None).await;
        assert_eq!(
            (no_cred.status, no_cred.code()),
            (401, "unauthenticated"),
            "{name}"
        );
        assert_eq!(no_cred.headers["www-authenticate"], "Bearer", "{name}");
        assert_eq!(
            no_cred.headers["content-type"], "application/problem+json",
            "{name}"
        );
        let key = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("x-api-key", "tnk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
                None,
            )
            .await;
        assert_eq!((key.status, key.code()), (401, "invalid_api_key"), "{name}");
        let unknown = s.get("/api/v1/nothing-here", &admin).await;
        assert_eq!(
            (unknown.status, unknown.code()),
            (404, "not_found"),
            "{name}"
        );
        assert_eq!(
            s.call("GET", "/healthz", &[], None).await.status,
            200,
            "{name}"
        );
        assert_eq!(
            s.call("GET", "/readyz", &[], None).await.status,
            200,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_usage_show_what_happened() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let (key, key_id) = issue_key(&s, "acme", "ingestion", "").await;
        let op = token("acme", "operator", "op@acme");
        assert_eq!(
            s.post("/api/v1/runbooks/restart-db/trigger", &op, "")
                .await
                .status,
            202,
            "{name}"
        );
        assert_eq!(
            s.post("/api/v1/incidents/inc-7/ack", &op, "").await.status,
            200,
            "{name}"
        );
        let events = r#"{"events":[{"type":"metric","name":"cpu","value":1},{"type":"metric","name":"mem","value":2},{"type":"log","name":"boot","value":0}]}"#;
        let sent = s
            .call(
                "POST",
                "/api/v1/telemetry",
                &[("x-api-key", &key)],
                Some(events),
            )
            .await;
        assert_eq!(sent.status, 202, "{name}");
        assert_eq!(sent.body["accepted"], 3, "{name}");

        let admin = token("acme", "admin", "admin@acme");
        let audit = s
            .get_until("/api/v1/audit?limit=100", &admin, |a| {
                a.raw.contains("incident.ack") && a.raw.contains("/api/v1/telemetry")
            })
            .await;
        let rows = audit.body["events"].as_array().unwrap();
        let find = |action: &str| {
            rows.iter()
                .find(|e| e["action"] == action)
                .unwrap_or_else(|| panic!("{name}: no {action} in {}", audit.raw))
        };
        assert_eq!(find("apikey.create")["resource"], key_id.as_str(), "{name}");
        assert_eq!(find("runbook.trigger")["actor"], "op@acme", "{name}");
        assert_eq!(find("runbook.trigger")["resource"], "restart-db", "{name}");
        assert_eq!(find("incident.ack")["resource"], "inc-7", "{name}");
        let ingest = rows
            .iter()
            .find(|e| e["action"] == "http.post" && e["resource"] == "/api/v1/telemetry")
            .unwrap();
        assert_eq!(ingest["actor"], key_id.as_str(), "{name}");
        assert_eq!(ingest["actor_kind"], "api_key", "{name}");
        assert!(rows.iter().all(|e| e["tenant_id"] == "acme"), "{name}");
        let times: Vec<&str> = rows
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "{name}: newest first"
        );
        let by_actor = s.get("/api/v1/audit?actor=op%40acme", &admin).await;
        assert!(
            by_actor.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["actor"] == "op@acme")
        );

        let count = |usage: &support::Answer, t: &str| -> u64 {
            usage.body["usage"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r["event_type"] == t)
                        .filter_map(|r| r["count"].as_u64())
                        .sum()
                })
                .unwrap_or(0)
        };
        // Usage is added up, then written by the engine's writer: it shows
        // within a flush interval or two.
        let usage = s
            .get_until("/api/v1/usage", &admin, |u| {
                count(u, "metric") == 2 && count(u, "log") == 1
            })
            .await;
        assert_eq!(count(&usage, "metric"), 2, "{name}: {}", usage.raw);
        assert_eq!(count(&usage, "log"), 1, "{name}");
        assert!(count(&usage, "requests") >= 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_behind_tenancy_is_the_same_answer_to_admitted_callers() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        let open = s.call("GET", "/healthz", &[], None).await;
        assert_eq!(open.status, 200, "{name}");
        assert!(open.headers.get("ratelimit-limit").is_none(), "{name}");
        let refused = s.call("GET", "/api/v1/healthz", &[], None).await;
        assert_eq!(
            (refused.status, refused.code()),
            (401, "unauthenticated"),
            "{name}"
        );
        let admitted = s.get("/api/v1/healthz", &root()).await;
        assert_eq!(admitted.status, 200, "{name}");
        assert_eq!(admitted.body, open.body, "{name}: the same handler");
        assert!(admitted.headers.contains_key("ratelimit-limit"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    for (name, bin) in binaries() {
        let mut s = Server::start(name, bin, &[("RUST_LOG", "info")]);
        create_tenant(&s, "acme", "pro").await;
        let (key, _) = issue_key(&s, "acme", "full", "").await;
        s.call("GET", "/api/v1/metrics/query", &[("x-api-key", &key)], None)
            .await;
        s.call(
            "GET",
            "/api/v1/metrics/query",
            &[("x-api-key", &format!("{key}x"))],
            None,
        )
        .await;
        s.call(
            "GET",
            "/api/v1/metrics/query",
            &[("authorization", &format!("Bearer {}x", root()))],
            None,
        )
        .await;
        assert_eq!(s.terminate(), Some(0), "{name}: clean exit on SIGTERM");
        let output = s.output();
        assert!(
            output.contains("listening on"),
            "{name}: the log was captured"
        );
        assert!(
            !output.contains(support::SECRET),
            "{name}: JWT secret in the log"
        );
        assert!(!output.contains(&key), "{name}: API key secret in the log");
        assert!(
            !output.contains(&key[4..]),
            "{name}: API key secret in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_event_with_its_request_id() {
    for (name, bin) in binaries() {
        let mut s = Server::start(name, bin, &[("RUST_LOG", "info,tenancy::request=debug")]);
        let admin = format!("Bearer {}", root());
        let answered = s
            .call(
                "GET",
                "/api/v1/tenants",
                &[("authorization", &admin), ("x-request-id", "trace-me-1")],
                None,
            )
            .await;
        assert_eq!(answered.status, 200, "{name}");
        assert_eq!(answered.headers["x-request-id"], "trace-me-1", "{name}");
        let long_path = format!("/api/v1/{}", "a".repeat(8_000));
        s.call(
            "GET",
            &long_path,
            &[("authorization", &admin), ("x-request-id", "long-path")],
            None,
        )
        .await;
        let refused = s.call("GET", "/api/v1/tenants", &[], None).await;
        assert_eq!(refused.status, 401, "{name}");
        let refused_id = refused.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(s.terminate(), Some(0), "{name}: clean exit on SIGTERM");
        let output = s.output();
        let event = output
            .lines()
            .find(|l| l.contains("request_id=trace-me-1"))
            .unwrap_or_else(|| panic!("{name}: no event for the request:\n{output}"));
        for field in [
            "tenant_id=platform",
            "status=200",
            "path=/api/v1/tenants",
            "latency_us=",
        ] {
            assert!(event.contains(field), "{name}: {field} in {event}");
        }
        assert!(
            output
                .lines()
                .any(|l| l.contains(&format!("request_id={refused_id}"))
                    && l.contains("code=unauthenticated")),
            "{name}: no event for the refusal:\n{output}"
        );
        assert!(
            !output.contains('\u{1b}'),
            "{name}: colours in a log that is not a terminal"
        );
        let long = output
            .lines()
            .find(|l| l.contains("request_id=long-path"))
            .unwrap_or_else(|| panic!("{name}: no event for the long path"));
        assert!(
            long.len() < 1_000,
            "{name}: a caller's 8 KB path flooded the log ({} bytes)",
            long.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_prints_a_working_token() {
    for (name, bin) in binaries() {
        let s = Server::start_with(name, bin, &[], false);
        let mut token = None;
        for _ in 0..100 {
            token = s
                .output()
                .lines()
                .find_map(|l| l.strip_prefix("export TOKEN=").map(str::to_owned));
            if token.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let token = token.unwrap_or_else(|| panic!("{name}: no token printed: {}", s.output()));
        assert!(
            s.output()
                .contains("curl -s -H \"Authorization: Bearer $TOKEN\""),
            "{name}"
        );
        let list = s.get("/api/v1/tenants", &token).await;
        assert_eq!(list.status, 200, "{name}: {}", list.raw);
        assert_eq!(list.body["tenants"][0]["tenant_id"], "platform", "{name}");
    }
}

#[test]
fn bad_configuration_stops_the_server_naming_the_key() {
    for (name, bin) in binaries() {
        for (var, value) in [
            ("TENANCY_DEFAULT_TENANT", "Not A Slug"),
            ("TENANCY_BIND", "nowhere"),
            ("TENANCY_JWT_SECRET", "short"),
            ("TENANCY_REDIS_REPLICA_ACKS", "all"),
        ] {
            let out = std::process::Command::new(bin)
                .env_clear()
                .env(var, value)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{name}: {var}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(var) || (var == "TENANCY_JWT_SECRET" && stderr.contains("secret")),
                "{name}: {var}: {stderr}"
            );
        }
    }
}

#[test]
fn token_command_mints_tokens_the_server_accepts() {
    for (name, bin) in binaries() {
        let out = std::process::Command::new(bin)
            .args([
                "token", "--tenant", "acme", "--role", "admin", "--sub", "ci@acme",
            ])
            .env_clear()
            .env("TENANCY_JWT_SECRET", support::SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Server::start(name, bin, &[]);
            create_tenant(&s, "acme", "pro").await;
            let perms = s.get("/api/v1/rbac/permissions", &token).await;
            assert_eq!(perms.status, 200, "{name}");
            assert_eq!(perms.body["subject"], "ci@acme", "{name}");
            assert_eq!(perms.body["role"], "admin", "{name}");
        });
        let bad = std::process::Command::new(bin)
            .args(["token", "--tenant", "Bad"])
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_redis_share_keys_and_revocations() {
    let services = (
        tenancy_core::testkit::services::redis_url(),
        tenancy_core::testkit::services::redis_cluster_nodes(),
    );
    let (Some(url), Some(nodes)) = services else {
        return;
    };
    // One server, then a cluster of 3 masters and 3 replicas where every
    // acknowledged write is on a replica.
    for (var, value, acks) in [
        ("TENANCY_REDIS_URL", url, "0"),
        ("TENANCY_REDIS_CLUSTER_NODES", nodes.join(","), "1"),
    ] {
        share_keys_and_revocations(var, &value, acks).await;
    }
}

async fn share_keys_and_revocations(var: &str, value: &str, replica_acks: &str) {
    let prefix = format!(
        "e2e-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let env = [
        (var, value),
        ("TENANCY_REDIS_PREFIX", prefix.as_str()),
        ("TENANCY_REDIS_REPLICA_ACKS", replica_acks),
    ];
    let bins = binaries();
    let a = Server::start(bins[0].0, bins[0].1, &env);
    let b = Server::start(bins[1].0, bins[1].1, &env);
    create_tenant(&a, "acme", "pro").await;
    let (key, key_id) = issue_key(&a, "acme", "full", "").await;
    assert_eq!(
        b.call("GET", "/api/v1/metrics/query", &[("x-api-key", &key)], None)
            .await
            .status,
        200,
        "the key issued on {} works on {}",
        a.name,
        b.name
    );
    let listed = b.get("/api/v1/tenants", &root()).await;
    assert!(listed.raw.contains("\"acme\""), "tenants are shared");
    let admin = format!("Bearer {}", token("acme", "admin", "admin@acme"));
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/api/v1/apikeys/{key_id}"),
            &[("authorization", &admin)],
            None
        )
        .await
        .status,
        204
    );
    let refused = b
        .call("GET", "/api/v1/metrics/query", &[("x-api-key", &key)], None)
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (401, "invalid_api_key"),
        "revoked on one, refused on the other"
    );

    // Users and teams are shared, and the plan's user count (starter: 10)
    // holds across both instances: 50 creates at once, 25 through each.
    create_tenant(&a, "globex", "starter").await;
    let globex = token("globex", "admin", "admin@globex");
    let creates = (0..50).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        let body = format!(r#"{{"email":"u{i}@globex.test","role":"viewer"}}"#);
        let globex = globex.clone();
        async move { server.post("/api/v1/users", &globex, &body).await }
    });
    let answers = futures_util::future::join_all(creates).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(created, 10, "exactly the plan's users, never more");
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(
            (refused.status, refused.code()),
            (429, "quota_exceeded"),
            "{}",
            refused.raw
        );
    }
    let team = a
        .post(
            "/api/v1/teams",
            &globex,
            r#"{"name":"sre","members":["u0@globex.test"]}"#,
        )
        .await;
    assert_eq!(team.status, 201, "{}", team.raw);
    for server in [&a, &b] {
        let users = server.get("/api/v1/users", &globex).await;
        assert_eq!(
            users.body["users"].as_array().map(Vec::len),
            Some(10),
            "{}: {}",
            server.name,
            users.raw
        );
        let teams = server.get("/api/v1/teams", &globex).await;
        assert_eq!(teams.body["teams"][0]["name"], "sre", "{}", teams.raw);
    }
    // A restart loses none of them.
    let users_before = a.get("/api/v1/users", &globex).await.body["users"].clone();
    drop(a);
    let a = Server::start(bins[0].0, bins[0].1, &env);
    assert_eq!(
        a.get("/api/v1/users", &globex).await.body["users"],
        users_before
    );
    assert_eq!(
        a.get("/api/v1/teams", &globex).await.body["teams"][0]["team_id"],
        team.body["team_id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_usage_in_clickhouse() {
    let Some(url) = tenancy_core::testkit::services::clickhouse_url() else {
        return;
    };
    audit_and_usage_on(&[("TENANCY_CLICKHOUSE_URL", url.as_str())]).await;
}

/// The same calls and answers with the tables spread over the two shards,
/// queried through the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_usage_in_a_clickhouse_cluster() {
    let Some((cluster, shards)) = tenancy_core::testkit::services::clickhouse_cluster() else {
        return;
    };
    let shard_list = shards.join(",");
    audit_and_usage_on(&[
        ("TENANCY_CLICKHOUSE_URL", shards[1].as_str()),
        ("TENANCY_CLICKHOUSE_CLUSTER", cluster.as_str()),
        ("TENANCY_CLICKHOUSE_SHARDS", shard_list.as_str()),
    ])
    .await;
    // A cluster without its shards is a configuration error.
    for (name, bin) in binaries() {
        let out = std::process::Command::new(bin)
            .env_clear()
            .env("TENANCY_BIND", "127.0.0.1:0")
            .env("TENANCY_CLICKHOUSE_URL", &shards[0])
            .env("TENANCY_CLICKHOUSE_CLUSTER", &cluster)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("TENANCY_CLICKHOUSE_SHARDS"),
            "{name}: {stderr}"
        );
    }
}

/// Audit events and usage written and read back through both front ends,
/// with ClickHouse as `clickhouse` says.
async fn audit_and_usage_on(clickhouse: &[(&str, &str)]) {
    let layout = if clickhouse.len() > 1 {
        "cluster"
    } else {
        "one"
    };
    for (name, bin) in binaries() {
        let database = format!("tenancy_e2e_{layout}_{name}_{}", std::process::id());
        let mut env = clickhouse.to_vec();
        env.push(("TENANCY_CLICKHOUSE_DATABASE", database.as_str()));
        // A sweep every second.
        env.push(("TENANCY_RETENTION_SWEEP_SECS", "1"));
        let mut s = Server::start(name, bin, &env);
        create_tenant(&s, "acme", "pro").await;
        let op = token("acme", "operator", "op@acme");
        assert_eq!(
            s.post("/api/v1/runbooks/rb-ch/trigger", &op, "")
                .await
                .status,
            202,
            "{name}"
        );
        let events = r#"{"events":[{"type":"metric","name":"cpu","value":1},{"type":"trace","name":"span","value":2}]}"#;
        assert_eq!(
            s.post("/api/v1/telemetry", &op, events).await.status,
            202,
            "{name}"
        );
        let admin = token("acme", "admin", "admin@acme");
        let audit = s
            .get_until("/api/v1/audit?action=runbook.trigger", &admin, |a| {
                a.raw.contains("rb-ch")
            })
            .await;
        let rows = audit.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {}", audit.raw));
        assert_eq!(rows.len(), 1, "{name}: {}", audit.raw);
        assert_eq!(rows[0]["resource"], "rb-ch", "{name}");
        assert_eq!(rows[0]["actor"], "op@acme", "{name}");
        let usage = s
            .get_until("/api/v1/usage", &admin, |a| a.raw.contains("\"trace\""))
            .await;
        assert!(usage.raw.contains("\"trace\""), "{name}: {}", usage.raw);
        // An event older than the plan keeps (pro: 90 days) is never read
        // back, and the sweep removes it from every shard.
        let ancient = (chrono::Utc::now() - chrono::Duration::days(100)).to_rfc3339();
        let old_event = format!(
            r#"{{"events":[{{"type":"metric","name":"ancient","value":1,"timestamp":"{ancient}"}}]}}"#
        );
        assert_eq!(
            s.post("/api/v1/telemetry", &op, &old_event).await.status,
            202,
            "{name}"
        );
        let hidden = s.get("/api/v1/metrics/query?name=ancient", &admin).await;
        assert_eq!(
            hidden.body["events"],
            serde_json::json!([]),
            "{name}: {}",
            hidden.raw
        );
        let count_sql = format!(
            "SELECT count() FROM {database}.telemetry WHERE tenant_id = 'acme' AND name = 'ancient'"
        );
        let entry = clickhouse[0].1;
        let count = || {
            let out = std::process::Command::new("curl")
                .args(["-sS", "--data-binary", &count_sql, entry])
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while count() != "0" && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(count(), "0", "{name}: the sweep removed the old event");
        // It was there to remove: a sweep says so.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !s.output().contains("telemetry_events: 1") && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            s.output().contains("telemetry_events: 1"),
            "{name}: {}",
            s.output()
        );

        // Telemetry is in ClickHouse: read back, and still there after a
        // restart.
        let metrics = s.get("/api/v1/metrics/query?name=cpu", &admin).await;
        assert_eq!(
            metrics.body["events"].as_array().map(Vec::len),
            Some(1),
            "{name}: {}",
            metrics.raw
        );
        assert_eq!(s.terminate(), Some(0), "{name}");
        let mut s = Server::start(name, bin, &env);
        // Tenants are in memory here: the record comes back, the events
        // were never gone.
        create_tenant(&s, "acme", "pro").await;
        let again = s.get("/api/v1/metrics/query", &admin).await;
        assert_eq!(
            again.body["events"].as_array().map(Vec::len),
            Some(2),
            "{name}: {}",
            again.raw
        );
        assert_eq!(
            s.call("GET", "/readyz", &[], None).await.status,
            200,
            "{name}"
        );
        assert_eq!(s.terminate(), Some(0), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_brings_its_realm_through_one_instance_and_both_honour_it() {
    use jwt_simple::prelude::{Claims, Duration, RS256KeyPair, RSAKeyPairLike};
    use serde_json::json;
    use tenancy_core::testkit::idp::IdpServer;

    let Some(url) = tenancy_core::testkit::services::redis_url() else {
        return;
    };
    let prefix = format!(
        "e2e-realms-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    // Bigcorp's Keycloak: discovery and keys at Keycloak's paths, behind a
    // private CA, on the internal network the operator allows.
    let (idp, ca) = IdpServer::start_private_tls().await;
    let config = support::config_trusting(&prefix, &ca);
    let env = [
        ("TENANCY_REDIS_URL", url.as_str()),
        ("TENANCY_REDIS_PREFIX", prefix.as_str()),
        ("TENANCY_CONFIG", config.to_str().unwrap()),
        ("TENANCY_EGRESS_ALLOW", "127.0.0.1"),
    ];
    let bins = binaries();
    let a = Server::start(bins[0].0, bins[0].1, &env);
    let b = Server::start(bins[1].0, bins[1].1, &env);
    create_tenant(&a, "bigcorp", "enterprise").await;
    create_tenant(&a, "globex", "pro").await;

    let key = RS256KeyPair::from_pem(include_str!(
        "../../tenancy-core/src/credential/jwt/testdata/rsa_private.pem"
    ))
    .unwrap()
    .with_key_id("bigcorp-1");
    let jwk: serde_json::Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap();
    idp.publish_realm("bigcorp", json!({ "keys": [jwk] }));
    let issuer = idp.issuer("bigcorp");
    let token = |roles: serde_json::Value| {
        let claims = Claims::with_custom_claims(
            json!({ "aud": "tenancy", "preferred_username": "dana", "realm_access": { "roles": roles } }),
            Duration::from_mins(10),
        )
        .with_issuer(&issuer)
        .with_subject("4f1b0c2e");
        format!("Bearer {}", key.sign(claims).unwrap())
    };
    let admin = token(json!(["offline_access", "tenant-admin"]));
    async fn patch(server: &Server, tenant: &str, body: serde_json::Value) -> support::Answer {
        let auth = format!("Bearer {}", root());
        let path = format!("/api/v1/tenants/{tenant}");
        let body = body.to_string();
        server
            .call("PATCH", &path, &[("authorization", &auth)], Some(&body))
            .await
    }
    async fn query(server: &Server, auth: &str) -> support::Answer {
        server
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("authorization", auth)],
                None,
            )
            .await
    }
    assert_eq!(query(&b, &admin).await.code(), "invalid_token");

    let realm = json!({
        "issuer": issuer,
        "discovery": true,
        "audience": ["tenancy"],
        "claims": { "roles": "realm_access.roles", "subject": "preferred_username" },
    });
    let set = patch(&a, "bigcorp", json!({ "realm": realm })).await;
    assert_eq!(set.status, 200, "{}", set.raw);
    assert_eq!(set.body["realm"]["issuer"], json!(issuer));
    for server in [&b, &a] {
        let answer = query(server, &admin).await;
        assert_eq!(answer.status, 200, "{}: {}", server.name, answer.raw);
    }
    // A key its tokens mint works everywhere, until the realm goes.
    let minted = a
        .call(
            "POST",
            "/api/v1/apikeys",
            &[("authorization", &admin)],
            Some(r#"{"name":"minted","scope":"readonly"}"#),
        )
        .await;
    assert_eq!(minted.status, 201, "{}", minted.raw);
    let minted_key = minted.body["api_key"].as_str().unwrap().to_owned();
    let minted_id = minted.body["key_id"].as_str().unwrap().to_owned();
    async fn with_key(server: &Server, key: &str) -> support::Answer {
        server
            .call("GET", "/api/v1/metrics/query", &[("x-api-key", key)], None)
            .await
    }
    assert_eq!(with_key(&b, &minted_key).await.status, 200);
    // Dedicated and capped: no platform power, no other tenant.
    let platform = token(json!(["cpi-admin"]));
    assert_eq!(query(&b, &platform).await.code(), "invalid_token");
    let other = b
        .call(
            "GET",
            "/api/v1/metrics/query",
            &[("authorization", &admin), ("x-tenant-id", "globex")],
            None,
        )
        .await;
    assert_eq!((other.status, other.code()), (403, "tenant_mismatch"));
    // One issuer, one realm; bad realms are refused and change nothing.
    let variant = json!({
        "issuer": format!("{}/", issuer.to_uppercase().replace("/REALMS/BIGCORP", "/realms/bigcorp")),
        "discovery": true,
        "audience": ["tenancy"],
    });
    for taken in [realm.clone(), variant] {
        let taken = patch(&b, "globex", json!({ "realm": taken })).await;
        assert_eq!(
            (taken.status, taken.code()),
            (409, "conflict"),
            "{}",
            taken.raw
        );
    }
    for bad in [
        json!({ "issuer": issuer }),
        json!({ "issuer": "https://id.globex.example", "discovery": true }),
        json!({ "issuer": "https://id.globex.example", "jwks_url": "http://127.0.0.1:6379/", "audience": ["a"] }),
        json!({ "issuer": "https://id.globex.example", "jwks_url": "HTTP://id.globex.example/certs", "audience": ["a"] }),
        json!({ "issuer": "https://id.globex.example", "jwks_url": "https://169.254.169.254/latest/meta-data/", "audience": ["a"] }),
        json!({ "issuer": "https://10.255.255.1:8443", "discovery": true, "audience": ["a"] }),
        json!({ "issuer": "https://id.example.com", "discovery": true, "jwks_url": "https://id.example.com/certs" }),
        json!({ "issuer": "http://id.example.com", "discovery": true }),
        json!({ "issuer": issuer, "discovery": true, "claims": { "roles": "a..b" } }),
        json!({ "issuer": issuer, "discovery": true, "max_role": "super_admin" }),
    ] {
        let refused = patch(&b, "globex", json!({ "realm": bad, "name": "Renamed" })).await;
        assert_eq!(
            (refused.status, refused.code()),
            (400, "invalid_request"),
            "{bad}: {}",
            refused.raw
        );
    }
    let globex = b.get("/api/v1/tenants/globex", &root()).await;
    assert_eq!(
        (&globex.body["name"], &globex.body["realm"]),
        (&json!("globex Inc"), &json!(null))
    );

    // Removed through the other instance: refused at once on both, and the
    // key its tokens minted with it, written down in bigcorp's own log.
    let removed = patch(&b, "bigcorp", json!({ "realm": null })).await;
    assert_eq!(removed.status, 200, "{}", removed.raw);
    assert_eq!(removed.body["realm"], json!(null));
    for server in [&a, &b] {
        assert_eq!(
            query(server, &admin).await.code(),
            "invalid_token",
            "{}",
            server.name
        );
        let answer = with_key(server, &minted_key).await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "invalid_api_key"),
            "{}",
            server.name
        );
    }
    let bigcorp_admin = support::token("bigcorp", "admin", "admin@bigcorp");
    // Written by the instance that detached it (the audit log is its own
    // here: no ClickHouse).
    let log = b
        .get_until(
            "/api/v1/audit?action=apikey.revoke",
            &bigcorp_admin,
            |answer| answer.raw.contains(&minted_id),
        )
        .await;
    let events = log.body["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["resource"] == json!(minted_id)
            && e["details"]["reason"] == json!("realm_changed")
            && e["actor"] == json!("root@platform")),
        "{events:?}"
    );
}

/// Key fetches honour `HTTPS_PROXY`: a realm's discovery goes to the proxy
/// the environment names (here a listener that records what it is asked
/// and answers nothing useful), and the token is refused, closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fetches_go_through_the_proxy_the_environment_names() {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = proxy.accept().await {
            let tx = asked_tx.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                let n = stream.read(&mut head).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&head[..n]).into_owned());
                let _ = stream
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let config = std::env::temp_dir().join(format!("tenancy-proxy-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[[realms]]\nname = \"corp\"\nissuer = \"https://id.corp.example/realms/corp\"\ndiscovery = true\n",
    )
    .unwrap();
    let b64 = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"k1"}"#),
        b64(
            r#"{"iss":"https://id.corp.example/realms/corp","sub":"x","tenant_id":"acme","role":"viewer","exp":4102444800}"#
        ),
        b64("not a signature")
    );
    for (name, bin) in binaries() {
        let s = Server::start(
            name,
            bin,
            &[
                ("TENANCY_CONFIG", config.to_str().unwrap()),
                ("HTTPS_PROXY", &proxy_url),
            ],
        );
        let answer = s
            .call(
                "GET",
                "/api/v1/metrics/query",
                &[("authorization", &format!("Bearer {token}"))],
                None,
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (503, "store_unavailable"),
            "{name}: {}",
            answer.raw
        );
        let request = tokio::time::timeout(std::time::Duration::from_secs(10), asked.recv())
            .await
            .expect("the proxy was asked")
            .unwrap();
        assert!(
            request.starts_with("CONNECT id.corp.example:443 HTTP/1.1"),
            "{name}: {request}"
        );
    }
}

/// The reference server on Redis and ClickHouse over TLS:
/// `TENANCY_REDIS_CA_CERT` and `TENANCY_CLICKHOUSE_CA_CERT` name the CA;
/// with the wrong one it stops at start, naming the store's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_stores_over_tls_and_refuses_the_wrong_ca() {
    let services = (
        tenancy_core::testkit::services::redis_tls(),
        tenancy_core::testkit::services::clickhouse_tls(),
    );
    let (Some((redis, ca, other_ca)), Some((clickhouse, _, _))) = services else {
        return;
    };
    let prefix = format!("e2e-tls-{}", std::process::id());
    let database = format!("tenancy_e2e_tls_{}", std::process::id());
    let ca = ca.to_str().unwrap();
    let (name, bin) = binaries()[0];
    let s = Server::start(
        name,
        bin,
        &[
            ("TENANCY_REDIS_URL", redis.as_str()),
            ("TENANCY_REDIS_CA_CERT", ca),
            ("TENANCY_REDIS_PREFIX", prefix.as_str()),
            ("TENANCY_CLICKHOUSE_URL", clickhouse.as_str()),
            ("TENANCY_CLICKHOUSE_CA_CERT", ca),
            ("TENANCY_CLICKHOUSE_DATABASE", database.as_str()),
        ],
    );
    create_tenant(&s, "acme", "pro").await;
    let op = token("acme", "operator", "op@acme");
    assert_eq!(
        s.post("/api/v1/runbooks/rb-tls/trigger", &op, "")
            .await
            .status,
        202
    );
    let admin = token("acme", "admin", "admin@acme");
    let audit = s
        .get_until("/api/v1/audit?action=runbook.trigger", &admin, |a| {
            a.raw.contains("rb-tls")
        })
        .await;
    assert!(audit.raw.contains("rb-tls"), "{}", audit.raw);

    let other_ca = other_ca.to_str().unwrap();
    for (url_var, url, ca_var) in [
        ("TENANCY_REDIS_URL", redis.as_str(), "TENANCY_REDIS_CA_CERT"),
        (
            "TENANCY_CLICKHOUSE_URL",
            clickhouse.as_str(),
            "TENANCY_CLICKHOUSE_CA_CERT",
        ),
    ] {
        for (name, bin) in binaries() {
            let out = std::process::Command::new(bin)
                .env_clear()
                .env("TENANCY_BIND", "127.0.0.1:0")
                .env(url_var, url)
                .env(ca_var, other_ca)
                .env("TENANCY_CLICKHOUSE_DATABASE", &database)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{name}: {url_var}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(url_var) && stderr.contains("certificate"),
                "{name}: {stderr}"
            );
        }
    }
}

/// The same calls, in the same order, against a server on one Redis and
/// against each front end on the Redis Cluster: the answers (status and
/// error code) are the same, call for call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_on_a_redis_cluster_answers_as_on_one_redis() {
    let services = (
        tenancy_core::testkit::services::redis_url(),
        tenancy_core::testkit::services::redis_cluster_nodes(),
    );
    let (Some(url), Some(nodes)) = services else {
        return;
    };
    let bins = binaries();
    let one = black_box_transcript(bins[0], "TENANCY_REDIS_URL", &url).await;
    assert!(one.len() > 20, "{one:?}");
    for (step, status, code) in &one {
        eprintln!("{step}: {status} {code}");
    }
    for bin in bins {
        let on_cluster =
            black_box_transcript(bin, "TENANCY_REDIS_CLUSTER_NODES", &nodes.join(",")).await;
        assert_eq!(
            on_cluster, one,
            "{}: on the cluster against one Redis",
            bin.0
        );
    }
}

/// One call of a transcript: step name, method, path, headers, body.
type Step<'a> = (
    &'static str,
    &'static str,
    String,
    Vec<(&'a str, &'a str)>,
    Option<String>,
);

/// The headers of a call with API key `key`.
fn with_key(key: &str) -> Vec<(&str, &str)> {
    vec![("x-api-key", key)]
}

/// Runs `steps` on `s` in order, adding each answer's (step, status, code)
/// to `seen`.
async fn run_steps(s: &Server, steps: Vec<Step<'_>>, seen: &mut Vec<(&'static str, u16, String)>) {
    for (step, method, path, headers, body) in steps {
        let answer = s.call(method, &path, &headers, body.as_deref()).await;
        seen.push((step, answer.status, answer.code().to_owned()));
    }
}

/// Tenants, keys, rate limits, suspension, revocation, realms and
/// cross-tenant refusals, through a server on the Redis at `var`; each
/// call's (step, status, code).
async fn black_box_transcript(
    (name, bin): (&'static str, &'static str),
    var: &str,
    value: &str,
) -> Vec<(&'static str, u16, String)> {
    let prefix = format!(
        "e2e-black-box-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let s = Server::start(
        name,
        bin,
        &[(var, value), ("TENANCY_REDIS_PREFIX", &prefix)],
    );
    let root = format!("Bearer {}", root());
    let admin = format!("Bearer {}", token("acme", "admin", "admin@acme"));
    let globex = format!("Bearer {}", token("globex", "admin", "admin@globex"));
    let as_root = || vec![("authorization", root.as_str())];
    let create = |id: &str| {
        Some(format!(
            r#"{{"tenant_id":"{id}","name":"{id}","plan":"pro","contact_email":"ops@{id}.test"}}"#
        ))
    };
    let tenants = "/api/v1/tenants".to_owned();
    let mut seen = Vec::new();
    run_steps(
        &s,
        vec![
            (
                "create tenant",
                "POST",
                tenants.clone(),
                as_root(),
                create("acme"),
            ),
            (
                "create tenant",
                "POST",
                tenants.clone(),
                as_root(),
                create("globex"),
            ),
            (
                "create tenant",
                "POST",
                tenants.clone(),
                as_root(),
                create("acme"),
            ),
            (
                "bad tenant id",
                "POST",
                tenants.clone(),
                as_root(),
                create("Not A Slug"),
            ),
            ("list tenants", "GET", tenants.clone(), as_root(), None),
            (
                "read own tenant",
                "GET",
                format!("{tenants}/acme"),
                vec![("authorization", &admin)],
                None,
            ),
            (
                "read another tenant",
                "GET",
                format!("{tenants}/acme"),
                vec![("authorization", &globex)],
                None,
            ),
            (
                "another tenant's header",
                "GET",
                "/api/v1/apikeys".into(),
                vec![("authorization", &globex), ("x-tenant-id", "acme")],
                None,
            ),
        ],
        &mut seen,
    )
    .await;

    let (key, key_id) = issue_key(&s, "acme", "full", "").await;
    let (slow, _) = issue_key(&s, "acme", "full", r#","rate_limit_rps":1"#).await;
    let (reader, _) = issue_key(&s, "acme", "readonly", "").await;
    let (writer, _) = issue_key(&s, "acme", "full", "").await;
    let query = "/api/v1/metrics/query".to_owned();
    let trigger = "/api/v1/runbooks/rb-1/trigger".to_owned();
    let revoke = format!("/api/v1/apikeys/{key_id}");
    let realm = Some(
        r#"{"realm":{"issuer":"https://id.acme.test/realms/acme","jwks_url":"https://id.acme.test/realms/acme/certs"}}"#
            .to_owned(),
    );
    run_steps(
        &s,
        vec![
            (
                "list keys",
                "GET",
                "/api/v1/apikeys".into(),
                vec![("authorization", &admin)],
                None,
            ),
            ("key", "GET", query.clone(), with_key(&key), None),
            ("slow key", "GET", query.clone(), with_key(&slow), None),
            (
                "slow key again",
                "GET",
                query.clone(),
                with_key(&slow),
                None,
            ),
            (
                "unknown key",
                "GET",
                query.clone(),
                with_key("tk_live_nope"),
                None,
            ),
            (
                "read-only key writes",
                "POST",
                trigger.clone(),
                with_key(&reader),
                None,
            ),
            (
                "key names another tenant",
                "GET",
                query.clone(),
                vec![("x-api-key", &key), ("x-tenant-id", "globex")],
                None,
            ),
            (
                "revoke",
                "DELETE",
                revoke.clone(),
                vec![("authorization", &admin)],
                None,
            ),
            ("revoked key", "GET", query.clone(), with_key(&key), None),
            (
                "revoke again",
                "DELETE",
                revoke,
                vec![("authorization", &admin)],
                None,
            ),
            (
                "bring a realm",
                "PATCH",
                format!("{tenants}/acme"),
                as_root(),
                realm.clone(),
            ),
            (
                "claim its issuer",
                "PATCH",
                format!("{tenants}/globex"),
                as_root(),
                realm.clone(),
            ),
            (
                "drop the realm",
                "PATCH",
                format!("{tenants}/acme"),
                as_root(),
                Some(r#"{"realm":null}"#.into()),
            ),
            (
                "claim it now",
                "PATCH",
                format!("{tenants}/globex"),
                as_root(),
                realm,
            ),
            (
                "suspend",
                "PATCH",
                format!("{tenants}/acme"),
                as_root(),
                Some(r#"{"status":"suspended"}"#.into()),
            ),
            // A suspended tenant reads but does not write.
            (
                "suspended tenant reads",
                "GET",
                query,
                with_key(&writer),
                None,
            ),
            (
                "suspended tenant writes",
                "POST",
                trigger,
                with_key(&writer),
                None,
            ),
            (
                "unknown tenant",
                "GET",
                format!("{tenants}/nobody"),
                as_root(),
                None,
            ),
        ],
        &mut seen,
    )
    .await;
    seen
}

/// Both front ends serve the same contract, byte for byte, without a
/// credential, and the Swagger UI for it from inside the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_front_ends_serve_the_same_contract_and_its_docs() {
    let mut documents = Vec::new();
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        let doc = s.call("GET", "/openapi.json", &[], None).await;
        assert_eq!(doc.status, 200, "{name}: {}", doc.raw);
        assert_eq!(doc.headers["content-type"], "application/json", "{name}");
        assert_eq!(doc.body["openapi"], "3.1.0", "{name}");
        documents.push(doc.raw.clone());

        let moved = s.call("GET", "/docs", &[], None).await;
        assert_eq!(
            (moved.status, moved.headers["location"].to_str().unwrap()),
            (308, "/docs/"),
            "{name}"
        );
        let page = s.call("GET", "/docs/", &[], None).await;
        assert_eq!(page.status, 200, "{name}");
        assert!(
            page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
                && page.raw.contains("swagger-ui"),
            "{name}: {}",
            page.raw
        );
        let init = s
            .call("GET", "/docs/swagger-initializer.js", &[], None)
            .await;
        assert_eq!(init.status, 200, "{name}");
        assert!(init.raw.contains("/openapi.json"), "{name}: {}", init.raw);
        let bundle = s.call("GET", "/docs/swagger-ui-bundle.js", &[], None).await;
        assert!(bundle.status == 200 && bundle.raw.len() > 100_000, "{name}");
        // Loaded from nowhere else, framed by nobody, never sniffed.
        for answer in [&doc, &page, &init, &bundle] {
            let header = |name: &str| {
                answer
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let csp = header("content-security-policy");
            assert!(
                csp.contains("default-src 'none'")
                    && csp.contains("script-src 'self'")
                    && csp.contains("frame-ancestors 'none'")
                    && !csp.contains("unsafe-eval"),
                "{name}: {csp}"
            );
            assert_eq!(header("x-content-type-options"), "nosniff", "{name}");
            assert_eq!(header("x-frame-options"), "DENY", "{name}");
        }
        for missing in ["/docs/nope.js", "/docs/%2e%2e%2fCargo.toml"] {
            let answer = s.call("GET", missing, &[], None).await;
            assert_eq!(
                (answer.status, answer.code()),
                (404, "not_found"),
                "{name}: {missing}"
            );
        }
    }
    assert_eq!(documents[0], documents[1], "the same bytes from both");
    assert_eq!(
        documents[0].as_bytes(),
        tenancy_examples::openapi::json(&tenancy_core::TenancyConfig::default()),
        "what the code generates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stop_at_the_plans_retention() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "free").await;
        let op = token("acme", "operator", "op@acme");
        let at = |days: i64| (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
        let body = format!(
            r#"{{"events":[{{"type":"metric","name":"old","value":1,"timestamp":"{}"}},{{"type":"metric","name":"young","value":2,"timestamp":"{}"}}]}}"#,
            at(10),
            at(1)
        );
        assert_eq!(
            s.post("/api/v1/telemetry", &op, &body).await.status,
            202,
            "{name}"
        );
        // Free keeps 7 days: the 10-day-old event is never read back.
        let read = s.get("/api/v1/metrics/query", &op).await;
        let names: Vec<&str> = read.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {}", read.raw))
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["young"], "{name}");
        // Asking for older audit events or usage gets the retention's edge.
        let admin = token("acme", "admin", "admin@acme");
        let since = at(30).replace('+', "%2B");
        for path in [
            format!("/api/v1/audit?since={since}"),
            format!("/api/v1/usage?from={since}"),
        ] {
            assert_eq!(s.get(&path, &admin).await.status, 200, "{name}: {path}");
        }
        // A plan with longer retention shows it.
        let auth = format!("Bearer {}", root());
        let moved = s
            .call(
                "PATCH",
                "/api/v1/tenants/acme",
                &[("authorization", &auth)],
                Some(r#"{"plan":"starter"}"#),
            )
            .await;
        assert_eq!(moved.status, 200, "{name}");
        let read = s
            .get_until("/api/v1/metrics/query", &op, |a| a.raw.contains("\"old\""))
            .await;
        assert!(read.raw.contains("\"old\""), "{name}: {}", read.raw);
    }
}
