//! A row the reader cannot understand is skipped; the rows around it are
//! read.

use chrono::Utc;
use tenancy_core::audit::{ActorKind, AuditEvent, AuditFilter};
use tenancy_core::store::{AuditQuery, AuditSink, TelemetryStore};
use tenancy_core::telemetry::{TelemetryEvent, TelemetryFilter};
use tenancy_core::testkit::stores;

use crate::fixture::TestDatabase;

#[tokio::test]
async fn an_unreadable_row_is_skipped_and_the_others_are_read() {
    let Some(db) = TestDatabase::new("unreadable").await else {
        return;
    };
    let acme = stores::unique_tenant("unreadable");
    let now = stores::now_millis();
    let mut older = AuditEvent::new(acme.clone(), "alice", ActorKind::User, "widget.create");
    older.timestamp = now - chrono::Duration::seconds(30);
    let mut newer = AuditEvent::new(acme.clone(), "bob", ActorKind::User, "widget.delete");
    newer.timestamp = now - chrono::Duration::seconds(10);
    db.stores
        .audit_sink()
        .record(&[older, newer])
        .await
        .expect("record");
    // Between them: a row with an empty actor kind, one whose details are
    // not JSON, written as another writer might have.
    let secs = (now - chrono::Duration::seconds(20)).timestamp();
    for (kind, details) in [("", "{}"), ("user", "not json")] {
        db.client()
            .query(
                "INSERT INTO audit_log (timestamp, millis, tenant_id, actor, actor_kind, action, \
                 resource, outcome, request_id, client_addr, details) \
                 VALUES (toDateTime(?), 0, ?, 'mallory', ?, 'odd.row', NULL, 200, NULL, NULL, ?)",
            )
            .bind(secs)
            .bind(acme.as_str())
            .bind(kind)
            .bind(details)
            .execute()
            .await
            .expect("insert an odd row");
    }
    let events = db
        .stores
        .audit_query()
        .query(&acme, &AuditFilter::default())
        .await
        .expect("the read does not fail");
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["bob", "alice"]);

    // The same for telemetry: labels that are not JSON.
    db.stores
        .telemetry_store()
        .append(&acme, &[TelemetryEvent::new("metric", "cpu", 1.0)])
        .await
        .expect("append");
    db.client()
        .query(
            "INSERT INTO telemetry (timestamp, millis, tenant_id, event_type, name, value, labels) \
             VALUES (toDateTime(?), 0, ?, 'metric', 'cpu', 2, 'not json')",
        )
        .bind(Utc::now().timestamp())
        .bind(acme.as_str())
        .execute()
        .await
        .expect("insert an odd row");
    let read = db
        .stores
        .telemetry_store()
        .query(&acme, &TelemetryFilter::default())
        .await
        .expect("the read does not fail");
    assert_eq!(read.iter().map(|e| e.value).collect::<Vec<_>>(), [1.0]);
}
