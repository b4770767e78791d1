//! [`RedisTenantStore`].

use async_trait::async_trait;
use redis::AsyncCommands;
use tenancy_core::store::{StoreError, TenantStore};
use tenancy_core::tenant::{TenantId, TenantRecord};

use crate::RedisStores;
use crate::error::RedisStoreError;

/// How many ids one round trip of [`TenantStore::list`] reads at most.
const LIST_BATCH: usize = 500;

/// Tenant records in Redis.
///
/// Each tenant is one JSON string at `<prefix>:{<id>}:tenant`; the sorted
/// set `<prefix>:tenants` holds every id (score 0), so
/// [`list`](TenantStore::list) pages in id order with `ZRANGEBYLEX`.
///
/// The record is the authority; the index may briefly hold an id whose
/// record is gone, and `list` skips those. Every command touches one key,
/// so the store also runs on Redis Cluster, where the record (in the
/// tenant's slot) and the index (in its own) cannot share a transaction:
///
/// - `insert` is `SET NX` on the record (which alone decides
///   [`StoreError::AlreadyExists`]), then `ZADD` of the id (pipelined in one
///   round trip on one server; two on a cluster);
/// - `update` is `SET XX` ([`StoreError::NotFound`] when absent);
/// - `delete` is `DEL`, `ZREM`, then `EXISTS`: should an insert of the same
///   id have slipped in between, the id is added back, so a record is never
///   left out of the index.
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_core::store::TenantStore;
/// use tenancy_core::tenant::{TenantRecord, TenantId};
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let tenants: Arc<dyn TenantStore> = Arc::new(redis.tenant_store());
/// tenants.insert(TenantRecord::new(TenantId::new("acme")?, "Acme", "pro")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisTenantStore {
    redis: RedisStores,
}

impl RedisTenantStore {
    /// The tenant store on `redis`'s connection (also
    /// [`RedisStores::tenant_store`]).
    pub fn new(redis: RedisStores) -> Self {
        Self { redis }
    }
}

fn decode(id: &TenantId, json: &str) -> Result<TenantRecord, RedisStoreError> {
    let tenant: TenantRecord = serde_json::from_str(json)?;
    if tenant.id != *id {
        return Err(RedisStoreError::Corrupt(format!(
            "the record of tenant {id} names tenant {}",
            tenant.id
        )));
    }
    Ok(tenant)
}

#[async_trait]
impl TenantStore for RedisTenantStore {
    async fn insert(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        let keys = self.redis.keys();
        let json = serde_json::to_string(&tenant).map_err(StoreError::backend)?;
        let (created,): (Option<String>,) = self
            .redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let mut set = redis::cmd("SET");
                set.arg(keys.tenant(&tenant.id)).arg(json).arg("NX");
                let mut index = redis::cmd("ZADD");
                index
                    .arg(keys.tenant_index())
                    .arg(0)
                    .arg(tenant.id.as_str());
                let replies: Vec<Option<String>> = conn.each(vec![set, index]).await?;
                let created = replies.into_iter().next().flatten();
                if created.is_some() {
                    self.redis
                        .replicated(&mut conn, &[&keys.tenant(&tenant.id), &keys.tenant_index()])
                        .await?;
                }
                Ok((created,))
            })
            .await?;
        match created {
            Some(_) => Ok(()),
            None => Err(StoreError::AlreadyExists),
        }
    }

    async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let json: Option<String> = conn.get(self.redis.keys().tenant(id)).await?;
                json.map(|j| decode(id, &j)).transpose()
            })
            .await
    }

    async fn update(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&tenant).map_err(StoreError::backend)?;
        let replaced: Option<String> = self
            .redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let key = self.redis.keys().tenant(&tenant.id);
                let replaced: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("XX")
                    .query_async(&mut conn)
                    .await?;
                if replaced.is_some() {
                    self.redis.replicated(&mut conn, &[&key]).await?;
                }
                Ok(replaced)
            })
            .await?;
        match replaced {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let keys = self.redis.keys();
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let mut out = Vec::new();
                let mut cursor = after.map(|a| format!("({a}")).unwrap_or_else(|| "-".into());
                while out.len() < limit {
                    let batch = (limit - out.len()).min(LIST_BATCH);
                    let ids: Vec<String> = conn
                        .zrangebylex_limit(keys.tenant_index(), &cursor, "+", 0, batch as isize)
                        .await?;
                    let Some(last) = ids.last() else { break };
                    cursor = format!("({last}");
                    let ids: Vec<TenantId> = ids
                        .iter()
                        .map(|raw| {
                            TenantId::new(raw).map_err(|_| {
                                RedisStoreError::Corrupt("the tenant index holds a bad id".into())
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    let gets = ids
                        .iter()
                        .map(|id| redis::Cmd::get(keys.tenant(id)))
                        .collect();
                    let records: Vec<Option<String>> = conn.each(gets).await?;
                    for (id, json) in ids.iter().zip(records) {
                        // An id without a record is left over from a delete.
                        if let Some(json) = json {
                            out.push(decode(id, &json)?);
                        }
                    }
                    if ids.len() < batch {
                        break;
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn delete(&self, id: &TenantId) -> Result<bool, StoreError> {
        let keys = self.redis.keys();
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                // One key per command: the record and the index are in
                // different slots on a cluster.
                let deleted: u64 = conn.del(keys.tenant(id)).await?;
                let () = conn.zrem(keys.tenant_index(), id.as_str()).await?;
                let reinserted: bool = conn.exists(keys.tenant(id)).await?;
                if reinserted {
                    let () = conn.zadd(keys.tenant_index(), id.as_str(), 0).await?;
                }
                self.redis
                    .replicated(&mut conn, &[&keys.tenant(id), &keys.tenant_index()])
                    .await?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.health().await
    }
}
