//! Smoke test: the ClickHouse server named by `TENANCY_TEST_CLICKHOUSE_URL`
//! (started by `scripts/test.sh`) is reachable over HTTP and the `clickhouse`
//! client can create, insert into, read and drop tables on it.

use std::time::{SystemTime, UNIX_EPOCH};

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tenancy_core::testkit::services;

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Event {
    id: u32,
    tenant: String,
    amount: Option<i64>,
}

/// A database name no other run or test uses.
fn unique_database() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("tenancy_smoke_{}_{nanos}", std::process::id())
}

/// Creates `events` in the client's database, inserts `rows` with the typed
/// insert API and reads everything back, plus the number of `acme` rows.
async fn round_trip(
    client: &Client,
    rows: &[Event],
) -> clickhouse::error::Result<(Vec<Event>, u64)> {
    client
        .query(
            "CREATE TABLE events (id UInt32, tenant String, amount Nullable(Int64)) \
             ENGINE = MergeTree ORDER BY id",
        )
        .execute()
        .await?;

    let mut insert = client.insert::<Event>("events").await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;

    let read = client
        .query("SELECT ?fields FROM events ORDER BY id")
        .fetch_all::<Event>()
        .await?;
    let acme = client
        .query("SELECT count() FROM events WHERE tenant = ?")
        .bind("acme")
        .fetch_one::<u64>()
        .await?;
    Ok((read, acme))
}

#[tokio::test]
async fn create_insert_fetch_drop() {
    let Some(url) = services::clickhouse_url() else {
        return;
    };
    // Validation makes the client use the RowBinaryWithNamesAndTypes format and
    // the `describe_include_subcolumns` setting, both unknown to ClickHouse
    // 18.16 (Debian 12's server). Without it, plain RowBinary is used.
    let client = Client::default().with_url(&url).with_validation(false);

    let database = unique_database();
    client
        .query(&format!("CREATE DATABASE {database}"))
        .execute()
        .await
        .unwrap_or_else(|err| panic!("cannot create a database on {url}: {err}"));

    let rows = [
        Event {
            id: 1,
            tenant: "acme".into(),
            amount: Some(-42),
        },
        Event {
            id: 2,
            tenant: "globex".into(),
            amount: None,
        },
        Event {
            id: 3,
            tenant: "acme".into(),
            amount: Some(7),
        },
    ];
    // `insert("db.table")` would quote `db.table` as one name, so the database
    // is selected on the client instead.
    let result = round_trip(&client.clone().with_database(&database), &rows).await;
    let dropped = client
        .query(&format!("DROP DATABASE {database}"))
        .execute()
        .await;

    let (read, acme) = result.expect("create, insert and read back");
    dropped.expect("DROP DATABASE");
    assert_eq!(read, rows);
    assert_eq!(acme, 2);
}
