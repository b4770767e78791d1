//! Smoke test: the Redis server named by `TENANCY_TEST_REDIS_URL` (started by
//! `scripts/test.sh`) is reachable and stores what it is given.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use tenancy_core::testkit::services;

/// A key no other run or test uses.
fn unique_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("tenancy:smoke:{}:{nanos}", std::process::id())
}

#[tokio::test]
async fn set_get_del_round_trip() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let client = redis::Client::open(url.as_str()).expect("valid redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"));

    let key = unique_key();
    let value = format!("value for {key}");
    let () = conn.set(&key, &value).await.expect("SET");
    let read: Option<String> = conn.get(&key).await.expect("GET");
    let deleted: u64 = conn.del(&key).await.expect("DEL");
    let after_delete: Option<String> = conn.get(&key).await.expect("GET after DEL");

    assert_eq!(read.as_deref(), Some(value.as_str()));
    assert_eq!(deleted, 1);
    assert_eq!(after_delete, None);
}
