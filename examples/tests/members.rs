//! Users, teams, key rotation and a tenant's own record of its life, through
//! both front ends on the embedded stores.

mod support;

use support::{Server, binaries, create_tenant, issue_key, root, token};

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> support::Answer {
    let auth = format!("Bearer {token}");
    s.call(method, path, &[("authorization", &auth)], body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_change_within_the_callers_own_and_every_change_is_audited() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let admin = token("acme", "admin", "admin@acme");
        let viewer = s
            .post(
                "/api/v1/users",
                &admin,
                r#"{"email":"dana@acme.test","role":"viewer"}"#,
            )
            .await;
        assert_eq!(viewer.status, 201, "{name}: {}", viewer.raw);
        let id = viewer.body["user_id"].as_str().unwrap().to_owned();
        // The same address in another case is the same user.
        let twice = s
            .post(
                "/api/v1/users",
                &admin,
                r#"{"email":"DANA@acme.test","role":"viewer"}"#,
            )
            .await;
        assert_eq!((twice.status, twice.code()), (409, "conflict"), "{name}");

        let promoted = call(
            &s,
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &admin,
            Some(r#"{"role":"operator"}"#),
        )
        .await;
        assert_eq!(promoted.status, 200, "{name}: {}", promoted.raw);
        assert_eq!(promoted.body["role"], "operator", "{name}");
        // Never above the caller's own role.
        let above = call(
            &s,
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &admin,
            Some(r#"{"role":"super_admin"}"#),
        )
        .await;
        assert_eq!(
            (above.status, above.code()),
            (403, "insufficient_role"),
            "{name}"
        );
        // A user above the caller cannot be changed or removed by it.
        let root_user = s
            .post(
                "/api/v1/users",
                &token("acme", "super_admin", "root@acme"),
                r#"{"email":"boss@acme.test","role":"super_admin"}"#,
            )
            .await;
        assert_eq!(root_user.status, 201, "{name}: {}", root_user.raw);
        let boss = root_user.body["user_id"].as_str().unwrap().to_owned();
        let demote = call(
            &s,
            "PATCH",
            &format!("/api/v1/users/{boss}"),
            &admin,
            Some(r#"{"role":"viewer"}"#),
        )
        .await;
        assert_eq!(
            (demote.status, demote.code()),
            (403, "insufficient_role"),
            "{name}"
        );
        let remove = call(&s, "DELETE", &format!("/api/v1/users/{boss}"), &admin, None).await;
        assert_eq!(
            (remove.status, remove.code()),
            (403, "insufficient_role"),
            "{name}"
        );
        // Another tenant's user does not exist here; nor does a malformed id.
        create_tenant(&s, "globex", "pro").await;
        let other = token("globex", "admin", "admin@globex");
        for path in [
            format!("/api/v1/users/{id}"),
            "/api/v1/users/a:%7Bb%7D".to_owned(),
        ] {
            let answer = call(&s, "DELETE", &path, &other, None).await;
            assert_eq!(
                (answer.status, answer.code()),
                (404, "not_found"),
                "{name}: {path}"
            );
        }
        // Operators may not manage users at all.
        let op = call(
            &s,
            "DELETE",
            &format!("/api/v1/users/{id}"),
            &token("acme", "operator", "op@acme"),
            None,
        )
        .await;
        assert_eq!((op.status, op.code()), (403, "insufficient_role"), "{name}");

        let removed = call(&s, "DELETE", &format!("/api/v1/users/{id}"), &admin, None).await;
        assert_eq!(removed.status, 204, "{name}: {}", removed.raw);
        let gone = call(
            &s,
            "PATCH",
            &format!("/api/v1/users/{id}"),
            &admin,
            Some(r#"{"role":"viewer"}"#),
        )
        .await;
        assert_eq!((gone.status, gone.code()), (404, "not_found"), "{name}");
        let users = s.get("/api/v1/users", &admin).await;
        assert_eq!(
            users.body["users"].as_array().map(Vec::len),
            Some(1),
            "{name}: {}",
            users.raw
        );

        let change = s
            .get_until("/api/v1/audit?action=user.role_change", &admin, |a| {
                a.raw.contains(&id)
            })
            .await;
        let event = &change.body["events"][0];
        assert_eq!(
            (
                &event["resource"],
                &event["details"]["old_role"],
                &event["details"]["new_role"]
            ),
            (
                &serde_json::json!(id),
                &serde_json::json!("viewer"),
                &serde_json::json!("operator")
            ),
            "{name}: {}",
            change.raw
        );
        let deleted = s
            .get_until("/api/v1/audit?action=user.delete", &admin, |a| {
                a.raw.contains(&id)
            })
            .await;
        assert_eq!(deleted.body["events"][0]["actor"], "admin@acme", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_take_the_seeds_body_and_a_super_admin_may_name_the_tenant() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        create_tenant(&s, "globex", "pro").await;
        let admin = token("acme", "admin", "admin@acme");
        let own = s
            .post("/api/v1/teams", &admin, r#"{"tenant_id":"acme","name":"sre","members":["a@acme.test"],"on_call_rotation":["a@acme.test"]}"#)
            .await;
        assert_eq!(own.status, 201, "{name}: {}", own.raw);
        let other = s
            .post(
                "/api/v1/teams",
                &admin,
                r#"{"tenant_id":"globex","name":"sre"}"#,
            )
            .await;
        assert_eq!(
            (other.status, other.code()),
            (403, "tenant_mismatch"),
            "{name}"
        );
        let by_root = s
            .post(
                "/api/v1/teams",
                &root(),
                r#"{"tenant_id":"globex","name":"ops"}"#,
            )
            .await;
        assert_eq!(by_root.status, 201, "{name}: {}", by_root.raw);
        let globex = token("globex", "admin", "admin@globex");
        let teams = s.get("/api/v1/teams", &globex).await;
        assert_eq!(
            teams.body["teams"].as_array().map(Vec::len),
            Some(1),
            "{name}"
        );
        assert_eq!(teams.body["teams"][0]["name"], "ops", "{name}");
        // Written in the team's tenant's log.
        let log = s
            .get_until("/api/v1/audit?action=team.create", &globex, |a| {
                a.raw.contains("ops") || a.raw.contains("team_")
            })
            .await;
        assert_eq!(
            log.body["events"][0]["resource"], by_root.body["team_id"],
            "{name}: {}",
            log.raw
        );
        // Pages follow creation order.
        let second = s.post("/api/v1/teams", &admin, r#"{"name":"dev"}"#).await;
        assert_eq!(second.status, 201, "{name}");
        let after = own.body["team_id"].as_str().unwrap();
        let page = s
            .get(&format!("/api/v1/teams?limit=1&after={after}"), &admin)
            .await;
        assert_eq!(page.body["teams"][0]["name"], "dev", "{name}: {}", page.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_gets_a_new_secret_once_and_the_old_one_lives_out_its_grace() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        create_tenant(&s, "acme", "pro").await;
        let admin = token("acme", "admin", "admin@acme");
        let (old, old_id) = issue_key(&s, "acme", "full", "").await;
        let rotated = s
            .post(
                &format!("/api/v1/apikeys/{old_id}/rotate"),
                &admin,
                r#"{"grace_period_secs":600}"#,
            )
            .await;
        assert_eq!(rotated.status, 201, "{name}: {}", rotated.raw);
        let new = rotated.body["api_key"].as_str().unwrap().to_owned();
        assert_ne!(new, old, "{name}");
        for key in [&old, &new] {
            let answer = s
                .call("GET", "/api/v1/metrics/query", &[("x-api-key", key)], None)
                .await;
            assert_eq!(answer.status, 200, "{name}: both work during the grace");
        }
        let listed = s.get("/api/v1/apikeys", &admin).await;
        assert!(
            !listed.raw.contains(&new),
            "{name}: the secret is shown once"
        );
        // No grace: the old secret ends at once.
        let new_id = rotated.body["key_id"].as_str().unwrap().to_owned();
        let now = s
            .post(
                &format!("/api/v1/apikeys/{new_id}/rotate"),
                &admin,
                r#"{"grace_period_secs":0}"#,
            )
            .await;
        assert_eq!(now.status, 201, "{name}: {}", now.raw);
        let ended = s
            .call("GET", "/api/v1/metrics/query", &[("x-api-key", &new)], None)
            .await;
        assert_eq!(
            (ended.status, ended.code()),
            (401, "invalid_api_key"),
            "{name}"
        );
        // Rotations count against the plan's keys: on free (2 keys), with
        // two live, a rotation with grace is refused and one without takes
        // the old key's place.
        create_tenant(&s, "tiny", "free").await;
        let tiny = token("tiny", "admin", "admin@tiny");
        let (_, first) = issue_key(&s, "tiny", "full", "").await;
        let _ = issue_key(&s, "tiny", "full", "").await;
        let full = s
            .post(&format!("/api/v1/apikeys/{first}/rotate"), &tiny, "")
            .await;
        assert_eq!(
            (full.status, full.code()),
            (429, "quota_exceeded"),
            "{name}: {}",
            full.raw
        );
        let swapped = s
            .post(
                &format!("/api/v1/apikeys/{first}/rotate"),
                &tiny,
                r#"{"grace_period_secs":0}"#,
            )
            .await;
        assert_eq!(swapped.status, 201, "{name}: {}", swapped.raw);
        let keys = s.get("/api/v1/apikeys", &tiny).await;
        let live = keys.body["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["revoked_at"].is_null())
            .count();
        assert_eq!(live, 2, "{name}: {}", keys.raw);

        // Bounds, other tenants, and keys that would climb to their parent.
        let long = s
            .post(
                &format!("/api/v1/apikeys/{old_id}/rotate"),
                &admin,
                r#"{"grace_period_secs":604801}"#,
            )
            .await;
        assert_eq!(
            (long.status, long.code()),
            (400, "invalid_request"),
            "{name}"
        );
        create_tenant(&s, "globex", "pro").await;
        let elsewhere = s
            .post(
                &format!("/api/v1/apikeys/{old_id}/rotate"),
                &token("globex", "admin", "admin@globex"),
                "",
            )
            .await;
        assert_eq!(
            (elsewhere.status, elsewhere.code()),
            (404, "not_found"),
            "{name}"
        );
        let (parent, parent_id) = issue_key(&s, "acme", "full", "").await;
        let child = s
            .call(
                "POST",
                "/api/v1/apikeys",
                &[("x-api-key", &parent)],
                Some(r#"{"name":"child","scope":"full"}"#),
            )
            .await;
        assert_eq!(child.status, 201, "{name}: {}", child.raw);
        let child_key = child.body["api_key"].as_str().unwrap();
        let climb = s
            .call(
                "POST",
                &format!("/api/v1/apikeys/{parent_id}/rotate"),
                &[("x-api-key", child_key)],
                Some(""),
            )
            .await;
        assert_eq!(
            (climb.status, climb.code()),
            (404, "not_found"),
            "{name}: a key never gets its parent's secret"
        );
        let audit = s
            .get_until("/api/v1/audit?action=apikey.rotate", &admin, |a| {
                a.raw.contains(&old_id)
            })
            .await;
        assert!(audit.raw.contains(&new_id), "{name}: {}", audit.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_own_log_shows_its_creation_and_every_change() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        let created = s
            .post(
                "/api/v1/tenants",
                &root(),
                r#"{"tenant_id":"acme","name":"Acme","plan":"free","description":"Widgets for everyone"}"#,
            )
            .await;
        assert_eq!(created.status, 201, "{name}: {}", created.raw);
        assert_eq!(
            created.body["description"], "Widgets for everyone",
            "{name}"
        );
        let patch = |body: &'static str| {
            let s = &s;
            async move { call(s, "PATCH", "/api/v1/tenants/acme", &root(), Some(body)).await }
        };
        assert_eq!(
            patch(r#"{"plan":"pro","description":"Gadgets too"}"#)
                .await
                .status,
            200,
            "{name}"
        );
        assert_eq!(
            patch(r#"{"status":"suspended"}"#).await.status,
            200,
            "{name}"
        );
        let long = format!(r#"{{"description":"{}"}}"#, "x".repeat(1025));
        let refused = call(&s, "PATCH", "/api/v1/tenants/acme", &root(), Some(&long)).await;
        assert_eq!(
            (refused.status, refused.code()),
            (400, "invalid_request"),
            "{name}"
        );
        let got = s.get("/api/v1/tenants/acme", &root()).await;
        assert_eq!(got.body["description"], "Gadgets too", "{name}");

        // acme's admin reads acme's log (reads are allowed while suspended).
        let admin = token("acme", "admin", "admin@acme");
        let log = s
            .get_until("/api/v1/audit", &admin, |a| {
                a.raw.matches("tenant.update").count() == 2
            })
            .await;
        let events = log.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {}", log.raw));
        let actions: Vec<&str> = events
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["tenant.update", "tenant.update", "tenant.create"],
            "{name}: {}",
            log.raw
        );
        let suspended = &events[0]["details"];
        assert_eq!(
            (&suspended["old_status"], &suspended["new_status"]),
            (
                &serde_json::json!("active"),
                &serde_json::json!("suspended")
            ),
            "{name}"
        );
        let moved = &events[1]["details"];
        assert_eq!(
            (&moved["old_plan"], &moved["new_plan"], &moved["changed"]),
            (
                &serde_json::json!("free"),
                &serde_json::json!("pro"),
                &serde_json::json!("description,plan")
            ),
            "{name}"
        );
        assert!(
            events.iter().all(|e| e["actor"] == "root@platform"),
            "{name}: who"
        );
        // A super_admin acting for another tenant writes a change to a third
        // tenant into its home (platform) and that tenant, never the one it
        // acted for.
        create_tenant(&s, "hooli", "free").await;
        let auth = format!("Bearer {}", root());
        let across = s
            .call(
                "POST",
                "/api/v1/tenants",
                &[("authorization", &auth), ("x-tenant-id", "hooli")],
                Some(r#"{"tenant_id":"initech","name":"Initech","plan":"free"}"#),
            )
            .await;
        assert_eq!(across.status, 201, "{name}: {}", across.raw);
        let initech = s
            .get_until(
                "/api/v1/audit",
                &token("initech", "admin", "admin@initech"),
                |a| a.raw.contains("tenant.create"),
            )
            .await;
        assert_eq!(
            initech.body["events"][0]["resource"], "initech",
            "{name}: {}",
            initech.raw
        );
        let platform_create = s
            .get_until("/api/v1/audit?action=tenant.create", &root(), |a| {
                a.raw.contains("initech")
            })
            .await;
        assert!(platform_create.raw.contains("initech"), "{name}");
        let acme_log = s.get("/api/v1/audit?action=tenant.create", &admin).await;
        assert!(
            !acme_log.raw.contains("initech"),
            "{name}: {}",
            acme_log.raw
        );

        // And the platform's log holds them too.
        let platform = s
            .get_until("/api/v1/audit?action=tenant.update", &root(), |a| {
                a.raw.matches("tenant.update").count() == 2
            })
            .await;
        assert_eq!(
            platform.body["events"].as_array().map(Vec::len),
            Some(2),
            "{name}"
        );
    }
}
