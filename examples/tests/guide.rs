//! `docs/keycloak.md` works as printed: its TOML is a configuration the
//! reference server starts with, and its `curl` calls against the reference
//! server (the blocks marked `<!-- checked: … -->`) onboard and offboard a
//! tenant with its own realm, then export and erase it, on both front ends.

mod support;

use std::process::Command;

use support::{Server, binaries, root};
use tenancy_core::TenancyConfig;

const GUIDE: &str = include_str!("../../docs/keycloak.md");

/// The fenced blocks of `lang`, each with the `<!-- checked: NAME -->`
/// marker on the line before it, if any.
fn blocks(lang: &str) -> Vec<(Option<&'static str>, String)> {
    let mut out = Vec::new();
    let mut lines = GUIDE.lines().peekable();
    let mut previous: Option<&str> = None;
    while let Some(line) = lines.next() {
        if line.trim() == format!("```{lang}") {
            let marker = previous
                .and_then(|p| p.trim().strip_prefix("<!-- checked: "))
                .and_then(|p| p.strip_suffix(" -->"));
            let mut body = String::new();
            for inner in lines.by_ref() {
                if inner.trim() == "```" {
                    break;
                }
                body.push_str(inner);
                body.push('\n');
            }
            out.push((marker, body));
        }
        previous = Some(line);
    }
    out
}

fn checked(name: &str) -> String {
    blocks("sh")
        .into_iter()
        .find(|(marker, _)| *marker == Some(name))
        .unwrap_or_else(|| panic!("docs/keycloak.md has no block marked {name}"))
        .1
}

/// Runs a block of the guide with bash, as a reader's shell would.
fn run(script: &str, server: &Server) -> String {
    let dir = std::env::temp_dir();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("TENANCY_URL", &server.base)
        .env("TOKEN", root())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {script}\nstdout: {stdout}\nstderr: {}",
        server.name,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_guide_toml_is_a_configuration_with_a_discovered_keycloak_realm() {
    let tomls = blocks("toml");
    assert!(!tomls.is_empty());
    for (_, toml) in &tomls {
        let config = TenancyConfig::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let realm = &config.realms[0];
        assert!(realm.discovery && realm.keys.is_empty());
        assert_eq!(realm.claims.roles.as_str(), "realm_access.roles");
        assert_eq!(realm.claims.subject.as_str(), "preferred_username");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_onboards_and_offboards_a_tenant_with_its_own_realm() {
    let (_, toml) = blocks("toml").remove(0);
    let config = std::env::temp_dir().join(format!("tenancy-guide-{}.toml", std::process::id()));
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap().to_owned();
    for (name, bin) in binaries() {
        // The server runs with the guide's configuration (its Keycloak is
        // not reachable here; keys are fetched on the first token only).
        let s = Server::start(name, bin, &[("TENANCY_CONFIG", &config)]);
        let shown = run(&checked("onboard"), &s);
        assert!(
            shown.contains("\"issuer\":\"https://id.bigcorp.example/realms/bigcorp\""),
            "{name}: {shown}"
        );
        let tenant = s.get("/api/v1/tenants/bigcorp", &root()).await;
        assert_eq!(
            tenant.body["realm"]["claims"]["roles"], "realm_access.roles",
            "{name}"
        );
        assert_eq!(tenant.body["realm"]["audience"][0], "tenancy-api", "{name}");

        run(&checked("offboard"), &s);
        let tenant = s.get("/api/v1/tenants/bigcorp", &root()).await;
        assert_eq!(tenant.body["realm"], serde_json::Value::Null, "{name}");

        let left = run(&checked("leave"), &s);
        assert!(left.contains("\"tenant_id\":\"bigcorp\""), "{name}: {left}");
        assert!(left.contains("\"erased\""), "{name}: {left}");
        let export = std::fs::read_to_string(std::env::temp_dir().join("bigcorp.ndjson"))
            .expect("the export was written");
        assert!(
            export.starts_with("{\"type\":\"tenant\""),
            "{name}: {export}"
        );
        assert_eq!(
            s.get("/api/v1/tenants/bigcorp", &root()).await.status,
            404,
            "{name}"
        );
    }
}
