//! [`RedisApiKeyStore`].

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use redis::{AsyncCommands, Script};
use tenancy_core::credential::{ApiKeyDigest, ApiKeyRecord, KeyId};
use tenancy_core::plan::Limit;
use tenancy_core::store::{ApiKeyStore, StoreError};
use tenancy_core::tenant::TenantId;

use crate::RedisStores;
use crate::error::RedisStoreError;

static INSERT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/api_key_insert.lua")));
static UPDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/api_key_update.lua")));
static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/api_key_claim.lua")));
static ERASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/api_key_erase.lua")));
/// Key records one erasure step deletes.
const ERASE_BATCH: usize = 100;
static LIVE_EXPIRY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/api_key_live_expiry.lua")));

/// Hash fields of a key record.
const F_TENANT: &str = "tenant";
const F_KEY_ID: &str = "key_id";
const F_RECORD: &str = "record";
const F_REVOKED_AT: &str = "revoked_at";
const F_EXPIRES_AT: &str = "expires_at";
const F_LAST_USED_AT: &str = "last_used_at";
const F_LAST_USED_US: &str = "last_used_us";

/// API keys in Redis: by digest for verification, by tenant for management.
///
/// | key | type | holds |
/// |---|---|---|
/// | `<prefix>:apikey:<digest hex>` | hash | the record |
/// | `<prefix>:{<tenant>}:apikeys` | hash | key id → digest hex, the tenant's index |
/// | `<prefix>:{<tenant>}:apikeys:live` | hash | key id → expiry (unix ms, 0 for none) of the tenant's live keys |
///
/// A record hash has the fields `tenant`, `key_id`, `record` (the
/// [`ApiKeyRecord`] as JSON at issue) and the fields that change after issue,
/// `revoked_at`, `expires_at`, `last_used_at` (RFC 3339, empty for none) and
/// `last_used_us`; these override the JSON's.
///
/// **Verification** ([`find_by_digest`](ApiKeyStore::find_by_digest)) is one
/// `HGETALL` by digest, found or not. Nothing is cached in the process, so a
/// revocation is seen by every instance on its next request.
///
/// **Management** (`get`, `list`, `revoke`, `set_expiry`, `touch`) goes
/// through the tenant's index: a key id of another tenant is simply not
/// there (`None`, `false`, no-op). Changes are small Lua scripts on the one
/// record key, which check again that the record belongs to the tenant.
///
/// **Insert** touches two keys in different Cluster slots, so it cannot be
/// one transaction; it is ordered so that a failure never leaves a usable
/// key that its tenant cannot see or revoke:
///
/// 1. claim the key id in the tenant's index and live-key set, by script:
///    taken → [`StoreError::AlreadyExists`]; the tenant already has its
///    limit of live keys → refused, nothing written
///    ([`insert_within_limit`](ApiKeyStore::insert_within_limit): the count
///    and the claim are one step on the tenant's slot, so concurrent issues
///    from any number of instances never pass the limit);
/// 2. create the record by script, only if the digest is free: taken → the
///    entries of step 1 are removed again, [`StoreError::AlreadyExists`].
///
/// Revocation removes the key from the live-key set after marking the
/// record; should that second step fail, the key keeps counting against the
/// quota (never the other way round).
///
/// Should the connection fail between the steps, what is left is an index
/// entry without a record, which every read skips.
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_core::store::ApiKeyStore;
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run(digest: tenancy_core::credential::ApiKeyDigest) -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let keys: Arc<dyn ApiKeyStore> = Arc::new(redis.api_key_store());
/// let usable = match keys.find_by_digest(&digest).await? {
///     Some(record) => record.check_usable(chrono::Utc::now()).is_ok(),
///     None => false,
/// };
/// # let _ = usable;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisApiKeyStore {
    redis: RedisStores,
}

impl RedisApiKeyStore {
    /// The API key store on `redis`'s connection (also
    /// [`RedisStores::api_key_store`]).
    pub fn new(redis: RedisStores) -> Self {
        Self { redis }
    }

    /// The digest of `key_id` in `tenant`'s index.
    async fn digest_of(
        &self,
        conn: &mut crate::connection::Conn,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Option<ApiKeyDigest>, RedisStoreError> {
        let hex: Option<String> = conn
            .hget(self.redis.keys().api_key_index(tenant), key_id.as_str())
            .await?;
        hex.map(|h| {
            ApiKeyDigest::from_hex(&h)
                .ok_or_else(|| RedisStoreError::Corrupt("bad digest in an API key index".into()))
        })
        .transpose()
    }

    /// Runs the update script on `key_id` of `tenant`; whether the key is
    /// the tenant's. A `waited` change (revocation, expiry) is acknowledged
    /// by replicas as [`RedisOptions::replica_acks`](crate::RedisOptions::replica_acks)
    /// asks; `last_used` times are not.
    async fn update(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        op: &str,
        at: Option<DateTime<Utc>>,
        waited: bool,
    ) -> Result<bool, StoreError> {
        self.redis
            .run(async {
                let mut conn = if waited {
                    self.redis.write_conn()
                } else {
                    self.redis.conn()
                };
                let Some(digest) = self.digest_of(&mut conn, tenant, key_id).await? else {
                    return Ok(false);
                };
                let record = self.redis.keys().api_key(&digest);
                let micros = at.map(|t| t.timestamp_micros()).unwrap_or_default();
                let changed: i64 = UPDATE
                    .key(&record)
                    .arg(tenant.as_str())
                    .arg(op)
                    .arg(at.map(timestamp).unwrap_or_default())
                    .arg(micros)
                    .invoke_async(&mut conn)
                    .await?;
                if waited && changed == 1 {
                    self.redis.replicated(&mut conn, &[&record]).await?;
                }
                Ok(changed == 1)
            })
            .await
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(field: &str, raw: Option<&String>) -> Result<Option<DateTime<Utc>>, RedisStoreError> {
    match raw.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| RedisStoreError::Corrupt(format!("bad time stamp in API key {field}"))),
    }
}

/// The record in a hash read with `HGETALL`; `None` for an empty hash (no
/// such key).
fn decode(
    digest: &ApiKeyDigest,
    mut fields: HashMap<String, String>,
) -> Result<Option<ApiKeyRecord>, RedisStoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let json = fields
        .remove(F_RECORD)
        .ok_or_else(|| RedisStoreError::Corrupt("API key record without its JSON".into()))?;
    let mut record: ApiKeyRecord = serde_json::from_str(&json)?;
    if record.digest != *digest
        || fields.get(F_TENANT).map(String::as_str) != Some(record.tenant_id.as_str())
    {
        return Err(RedisStoreError::Corrupt(
            "API key record does not match its key".into(),
        ));
    }
    record.revoked_at = parse_time(F_REVOKED_AT, fields.get(F_REVOKED_AT))?;
    record.expires_at = parse_time(F_EXPIRES_AT, fields.get(F_EXPIRES_AT))?;
    record.last_used_at = parse_time(F_LAST_USED_AT, fields.get(F_LAST_USED_AT))?;
    Ok(Some(record))
}

#[async_trait]
impl ApiKeyStore for RedisApiKeyStore {
    async fn insert_within_limit(
        &self,
        key: ApiKeyRecord,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let keys = self.redis.keys();
        let json = serde_json::to_string(&key).map_err(StoreError::backend)?;
        let index = keys.api_key_index(&key.tenant_id);
        let live = keys.api_key_live(&key.tenant_id);
        let opt_time = |t: Option<DateTime<Utc>>| t.map(timestamp).unwrap_or_default();
        let limit = limit
            .get()
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let claimed: i64 = CLAIM
                    .key(&index)
                    .key(&live)
                    .arg(key.key_id.as_str())
                    .arg(key.digest.to_hex())
                    .arg(key.expires_at.map_or(0, |t| t.timestamp_millis()))
                    .arg(now.timestamp_millis())
                    .arg(limit)
                    .arg(key.parent_key_id.as_ref().map_or("", |p| p.as_str()))
                    .invoke_async(&mut conn)
                    .await?;
                match claimed {
                    1 => {}
                    0 => return Ok(Ok(false)),
                    -2 => return Ok(Err(StoreError::NotFound)),
                    _ => return Ok(Err(StoreError::AlreadyExists)),
                }
                let created: i64 = INSERT
                    .key(keys.api_key(&key.digest))
                    .arg(F_TENANT)
                    .arg(key.tenant_id.as_str())
                    .arg(F_KEY_ID)
                    .arg(key.key_id.as_str())
                    .arg(F_RECORD)
                    .arg(json)
                    .arg(F_REVOKED_AT)
                    .arg(opt_time(key.revoked_at))
                    .arg(F_EXPIRES_AT)
                    .arg(opt_time(key.expires_at))
                    .arg(F_LAST_USED_AT)
                    .arg(opt_time(key.last_used_at))
                    .arg(F_LAST_USED_US)
                    .arg(
                        key.last_used_at
                            .map(|t| t.timestamp_micros().to_string())
                            .unwrap_or_default(),
                    )
                    .invoke_async(&mut conn)
                    .await?;
                if created == 1 {
                    self.redis
                        .replicated(&mut conn, &[&index, &keys.api_key(&key.digest)])
                        .await?;
                    return Ok(Ok(true));
                }
                // The digest belongs to another key: undo step 1.
                let _: () = redis::pipe()
                    .hdel(&index, key.key_id.as_str())
                    .ignore()
                    .hdel(&live, key.key_id.as_str())
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(Err(StoreError::AlreadyExists))
            })
            .await?
    }

    async fn find_by_digest(
        &self,
        digest: &ApiKeyDigest,
    ) -> Result<Option<std::sync::Arc<ApiKeyRecord>>, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let fields: HashMap<String, String> =
                    conn.hgetall(self.redis.keys().api_key(digest)).await?;
                decode(digest, fields)
            })
            .await
            .map(|found| found.map(std::sync::Arc::new))
    }

    async fn get(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let Some(digest) = self.digest_of(&mut conn, tenant, key_id).await? else {
                    return Ok(None);
                };
                let fields: HashMap<String, String> =
                    conn.hgetall(self.redis.keys().api_key(&digest)).await?;
                Ok(decode(&digest, fields)?
                    .filter(|r| r.tenant_id == *tenant && r.key_id == *key_id))
            })
            .await
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let keys = self.redis.keys();
        let (index, live) = (keys.api_key_index(tenant), keys.api_key_live(tenant));
        let entries: HashMap<String, String> = self
            .redis
            .run(async {
                let mut conn = self.redis.write_conn();
                Ok(conn.hgetall(&index).await?)
            })
            .await?;
        let entries: Vec<(String, String)> = entries.into_iter().collect();
        // A batch at a time, each under a deadline of its own: the records
        // (each checked to be the tenant's, each in a slot of its own on a
        // cluster), then their entries in the tenant's index. Should this
        // stop half way, the index names what is left, and erasing again
        // finishes.
        for batch in entries.chunks(ERASE_BATCH) {
            self.redis
                .run(async {
                    let mut conn = self.redis.write_conn();
                    let mut records = Vec::with_capacity(batch.len());
                    for (_, hex) in batch {
                        if let Some(digest) = ApiKeyDigest::from_hex(hex) {
                            let record = keys.api_key(&digest);
                            let _: i64 = ERASE
                                .key(&record)
                                .arg(tenant.as_str())
                                .invoke_async(&mut conn)
                                .await?;
                            records.push(record);
                        }
                    }
                    let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
                    let _: u64 = conn.hdel(&index, &ids).await?;
                    let _: u64 = conn.hdel(&live, &ids).await?;
                    let mut written: Vec<&str> = records.iter().map(String::as_str).collect();
                    written.push(&index);
                    self.redis.replicated(&mut conn, &written).await?;
                    Ok(())
                })
                .await?;
        }
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let _: u64 = conn.del(&[&index, &live]).await?;
                self.redis.replicated(&mut conn, &[&index]).await?;
                Ok(())
            })
            .await?;
        Ok(entries.len() as u64)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let keys = self.redis.keys();
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let index: HashMap<String, String> =
                    conn.hgetall(keys.api_key_index(tenant)).await?;
                if index.is_empty() {
                    return Ok(Vec::new());
                }
                let digests: Vec<ApiKeyDigest> = index
                    .values()
                    .map(|h| {
                        ApiKeyDigest::from_hex(h).ok_or_else(|| {
                            RedisStoreError::Corrupt("bad digest in an API key index".into())
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let reads = digests
                    .iter()
                    .map(|d| redis::Cmd::hgetall(keys.api_key(d)))
                    .collect();
                // Each digest's key is in a slot of its own on a cluster.
                let hashes: Vec<HashMap<String, String>> = conn.each(reads).await?;
                let mut records = Vec::with_capacity(hashes.len());
                for (digest, fields) in digests.iter().zip(hashes) {
                    if let Some(r) = decode(digest, fields)?
                        && r.tenant_id == *tenant
                    {
                        records.push(r);
                    }
                }
                records.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
                Ok(records)
            })
            .await
    }

    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Out of the live keys first: a child claimed from now on is
        // refused, and one claimed before is in the index for the cascade.
        let live = self.redis.keys().api_key_live(tenant);
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let _: i64 = conn.hdel(&live, key_id.as_str()).await?;
                self.redis.replicated(&mut conn, &[&live]).await?;
                Ok(())
            })
            .await?;
        self.update(tenant, key_id, "revoke", Some(at), true).await
    }

    async fn set_expiry(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let changed = self
            .update(tenant, key_id, "expiry", expires_at, true)
            .await?;
        if changed {
            let live = self.redis.keys().api_key_live(tenant);
            self.redis
                .run(async {
                    let mut conn = self.redis.write_conn();
                    let _: i64 = LIVE_EXPIRY
                        .key(&live)
                        .arg(key_id.as_str())
                        .arg(expires_at.map_or(0, |t| t.timestamp_millis()))
                        .invoke_async(&mut conn)
                        .await?;
                    self.redis.replicated(&mut conn, &[&live]).await?;
                    Ok(())
                })
                .await?;
        }
        Ok(changed)
    }

    async fn touch(
        &self,
        tenant: &TenantId,
        key_id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update(tenant, key_id, "touch", Some(at), false)
            .await
            .map(|_| ())
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.health().await
    }
}
