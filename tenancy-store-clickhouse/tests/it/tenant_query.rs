//! Tenant-bound queries read and count only their tenant's rows.

use tenancy_core::audit::{ActorKind, AuditEvent};
use tenancy_core::store::AuditSink;
use tenancy_core::testkit::stores;
use tenancy_store_clickhouse::{TenantSql, tenant_sql};

use crate::fixture::TestDatabase;

/// A template written elsewhere in an application, checked when compiled.
const BY_ACTION: TenantSql =
    TenantSql::new("SELECT actor FROM audit_log WHERE {tenant} AND action = ? ORDER BY actor");

#[tokio::test]
async fn queries_see_only_their_tenant() {
    let Some(db) = TestDatabase::new("tenant_query").await else {
        return;
    };
    let a = stores::unique_tenant("tq");
    let b = stores::unique_tenant("tq");
    let sink = db.stores.audit_sink();
    let event = |t: &_, actor: &str, action: &str| {
        AuditEvent::new(Clone::clone(t), actor, ActorKind::User, action)
    };
    sink.record(&[
        event(&a, "alice", "user.create"),
        event(&a, "bob", "user.create"),
        event(&b, "mallory", "user.create"),
        event(&b, "mallory", "apikey.create"),
    ])
    .await
    .expect("record");

    let actors = |t| {
        db.stores
            .tenant_query(t)
            .sql(BY_ACTION)
            .bind("user.create")
            .fetch_all::<String>()
    };
    assert_eq!(actors(&a).await.expect("query"), ["alice", "bob"]);
    assert_eq!(actors(&b).await.expect("query"), ["mallory"]);

    // An OR in the caller's condition stays inside the tenant when the
    // tenant is the PREWHERE.
    let wide: u64 = db
        .stores
        .tenant_query(&a)
        .sql(tenant_sql!(
            "SELECT count() FROM audit_log PREWHERE {tenant} WHERE action = ? OR 1 = 1"
        ))
        .bind("nothing")
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(wide, 2);

    // Values are bound, never spliced: a hostile value is just a value.
    let hostile: u64 = db
        .stores
        .tenant_query(&a)
        .sql(tenant_sql!(
            "SELECT count() FROM audit_log WHERE {tenant} AND actor = ?"
        ))
        .bind("x' OR '1'='1")
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(hostile, 0);

    // Deletes go through the same door.
    db.stores
        .tenant_query(&b)
        .sql(tenant_sql!(
            "ALTER TABLE audit_log DELETE WHERE {tenant} AND action = ?"
        ))
        .bind("apikey.create")
        .execute()
        .await
        .expect("delete");
    db.stores
        .wait_for_mutations(std::time::Duration::from_secs(30))
        .await
        .expect("mutations done");
    assert_eq!(db.count("audit_log", &[b.as_str()]).await, 1);
    assert_eq!(db.count("audit_log", &[a.as_str()]).await, 2);
}
