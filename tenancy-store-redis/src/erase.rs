//! Deleting every key of a tenant that matches a pattern, batch by batch on
//! the node that holds the tenant's slot: what erasure uses for keys whose
//! names it cannot list (rate-limit buckets, budget counters).

use std::sync::LazyLock;

use redis::Script;
use tenancy_core::store::StoreError;
use tenancy_core::tenant::TenantId;

use crate::RedisStores;
use crate::error::RedisStoreError;

static SCAN_DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/tenant_scan_delete.lua")));

/// Keys looked at per batch: each batch is one short script.
const BATCH: u32 = 1_000;

/// Deletes the keys of `tenant` matching `pattern`, which must keep the
/// tenant's hash tag; how many there were. On a cluster the script runs on
/// the node of the tenant's slot, where every such key lives.
pub(crate) async fn delete_matching(
    redis: &RedisStores,
    tenant: &TenantId,
    pattern: &str,
) -> Result<u64, StoreError> {
    let slot_key = redis.keys().tenant(tenant);
    let mut cursor = "0".to_owned();
    let mut deleted = 0u64;
    // Each batch has the call deadline of its own: a large keyspace takes
    // many short scripts, never one long one.
    loop {
        let (next, batch): (String, u64) = redis
            .run(async {
                let mut conn = redis.write_conn();
                let reply: (String, u64) = SCAN_DELETE
                    .key(&slot_key)
                    .arg(&cursor)
                    .arg(pattern)
                    .arg(BATCH)
                    .invoke_async(&mut conn)
                    .await?;
                if reply.1 > 0 {
                    redis.replicated(&mut conn, &[&slot_key]).await?;
                }
                Ok::<_, RedisStoreError>(reply)
            })
            .await?;
        deleted += batch;
        if next == "0" {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// `text` with the glob characters of Redis `MATCH` (`*`, `?`, `[`, `]`,
/// `\`) escaped.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(super::escape_glob("app*[1]?\\"), "app\\*\\[1\\]\\?\\\\");
        assert_eq!(super::escape_glob("tenancy"), "tenancy");
    }
}
