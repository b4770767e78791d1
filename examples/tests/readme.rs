//! The README's walk-through, pasted as printed into one shell against a
//! fresh server, shows the writes it made: the audit log and usage it reads
//! at the end hold what it did a moment before.

mod support;

use std::process::Command;

use support::{Server, binaries, root};

const README: &str = include_str!("../../README.md");
/// The address the walk-through is written for.
const PRINTED_BASE: &str = "http://127.0.0.1:8080";

/// The first `sh` block after the `## Walk-through` heading.
fn walk_through() -> String {
    let section = README
        .split("## Walk-through")
        .nth(1)
        .expect("README has a walk-through");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the walk-through has a sh block");
    block.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walk_through_pasted_in_one_go_shows_its_own_writes() {
    for (name, bin) in binaries() {
        let s = Server::start(name, bin, &[]);
        let script = walk_through().replace(PRINTED_BASE, &s.base);
        let out = Command::new("bash")
            .args(["-c", &script])
            .env("TOKEN", root())
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The audit read, right after the writes: the key it issued and
        // the tenant it created are in acme's log. (curl prints no newline
        // after a body, so the answers run together.)
        let audit_at = stdout
            .find("{\"events\":[")
            .unwrap_or_else(|| panic!("{name}: no audit log in\n{stdout}"));
        let usage_at = stdout
            .find("{\"tenant_id\":\"acme\",\"usage\"")
            .unwrap_or_else(|| panic!("{name}: no usage in\n{stdout}"));
        let audit = &stdout[audit_at..usage_at];
        for action in ["apikey.create", "tenant.create"] {
            assert!(
                audit.contains(action),
                "{name}: {action} missing from {audit}"
            );
        }
        let usage = &stdout[usage_at..];
        let usage = &usage[..usage.find('}').map_or(usage.len(), |end| {
            usage[end..]
                .find("]}")
                .map_or(usage.len(), |close| end + close + 2)
        })];
        for event_type in ["\"metric\"", "\"log\""] {
            assert!(
                usage.contains(event_type),
                "{name}: {event_type} missing from {usage}"
            );
        }
        assert!(
            stdout.contains("\"role\":\"operator\""),
            "{name}: the role change in\n{stdout}"
        );
    }
}
