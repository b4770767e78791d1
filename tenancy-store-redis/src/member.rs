//! [`RedisMemberStore`] and [`RedisTeamStore`]: each tenant's members and
//! teams as one collection of three keys in the tenant's slot.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenancy_core::member::{Member, RecordId, Team};
use tenancy_core::plan::Limit;
use tenancy_core::rbac::Role;
use tenancy_core::store::{MemberStore, StoreError, TeamStore};
use tenancy_core::tenant::TenantId;

use crate::RedisStores;
use crate::error::RedisStoreError;

static INSERT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/records_insert.lua")));
static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/records_list.lua")));
static SWAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/records_swap.lua")));
static REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/records_remove.lua")));
static ERASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/records_erase.lua")));

/// Most records one round trip of `list` reads.
const LIST_BATCH: usize = 500;

/// One kind of record, kept per tenant in a collection named `name`.
#[derive(Debug, Clone)]
struct Collection {
    redis: RedisStores,
    name: &'static str,
}

/// The three keys of one tenant's collection.
struct Keys {
    records: String,
    order: String,
    unique: String,
}

impl Collection {
    fn keys(&self, tenant: &TenantId) -> Keys {
        let records = self.redis.keys().collection(tenant, self.name);
        Keys {
            order: format!("{records}:order"),
            unique: format!("{records}:unique"),
            records,
        }
    }

    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        id: &RecordId,
        record: &impl Serialize,
        unique: Option<String>,
        limit: Limit,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record).map_err(StoreError::backend)?;
        let limit = limit
            .get()
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let keys = self.keys(tenant);
        let added: i64 = self
            .redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let added: i64 = INSERT
                    .key(&keys.records)
                    .key(&keys.order)
                    .key(&keys.unique)
                    .arg(id.as_str())
                    .arg(json)
                    .arg(unique.unwrap_or_default())
                    .arg(limit)
                    .invoke_async(&mut conn)
                    .await?;
                if added == 1 {
                    self.redis.replicated(&mut conn, &[&keys.records]).await?;
                }
                Ok(added)
            })
            .await?;
        match added {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    /// The record's JSON as stored.
    async fn get_raw(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<String>, StoreError> {
        let key = self.keys(tenant).records;
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let json: Option<String> = redis::cmd("HGET")
                    .arg(&key)
                    .arg(id.as_str())
                    .query_async(&mut conn)
                    .await?;
                Ok(json)
            })
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        id: &RecordId,
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(tenant, id)
            .await?
            .map(|json| decode(&json))
            .transpose()
    }

    async fn list<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let keys = self.keys(tenant);
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let mut out = Vec::new();
                let mut start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
                while out.len() < limit {
                    let batch = (limit - out.len()).min(LIST_BATCH);
                    let page: Vec<String> = LIST
                        .key(&keys.records)
                        .key(&keys.order)
                        .arg(&start)
                        .arg(batch)
                        .invoke_async(&mut conn)
                        .await?;
                    let mut last = None;
                    for pair in page.chunks_exact(2) {
                        out.push(
                            serde_json::from_str::<T>(&pair[1]).map_err(RedisStoreError::from)?,
                        );
                        last = Some(&pair[0]);
                    }
                    match last {
                        // The next page starts after the last id read.
                        Some(last) if page.len() == 2 * batch => start = format!("({last}"),
                        _ => break,
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Replaces the record `id` if its JSON is still `old`.
    async fn swap(
        &self,
        tenant: &TenantId,
        id: &RecordId,
        old: &str,
        new: &impl Serialize,
    ) -> Result<bool, StoreError> {
        let new = serde_json::to_string(new).map_err(StoreError::backend)?;
        let key = self.keys(tenant).records;
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let swapped: i64 = SWAP
                    .key(&key)
                    .arg(id.as_str())
                    .arg(old)
                    .arg(new)
                    .invoke_async(&mut conn)
                    .await?;
                if swapped == 1 {
                    self.redis.replicated(&mut conn, &[&key]).await?;
                }
                Ok(swapped == 1)
            })
            .await
    }

    /// Removes `id` if its JSON is still `expected` (any when `None`).
    async fn remove(
        &self,
        tenant: &TenantId,
        id: &RecordId,
        expected: Option<&str>,
    ) -> Result<bool, StoreError> {
        let keys = self.keys(tenant);
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let removed: i64 = REMOVE
                    .key(&keys.records)
                    .key(&keys.order)
                    .key(&keys.unique)
                    .arg(id.as_str())
                    .arg(expected.unwrap_or_default())
                    .invoke_async(&mut conn)
                    .await?;
                if removed == 1 {
                    self.redis.replicated(&mut conn, &[&keys.records]).await?;
                }
                Ok(removed == 1)
            })
            .await
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let keys = self.keys(tenant);
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let count: u64 = ERASE
                    .key(&keys.records)
                    .key(&keys.order)
                    .key(&keys.unique)
                    .invoke_async(&mut conn)
                    .await?;
                self.redis.replicated(&mut conn, &[&keys.records]).await?;
                Ok(count)
            })
            .await
    }
}

fn decode<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| RedisStoreError::from(e).into())
}

/// Members in Redis.
///
/// Each tenant's members are three keys in its slot: a hash of id to JSON
/// (`<prefix>:{<tenant>}:members`), a sorted set of ids for paging
/// (`…:members:order`) and a hash of e-mail addresses taken
/// (`…:members:unique`). Every change is one Lua script over the three, so
/// the plan's user count holds across instances, and the store runs on
/// Redis Cluster.
///
/// ```no_run
/// use tenancy_core::member::Member;
/// use tenancy_core::plan::Limit;
/// use tenancy_core::rbac::Role;
/// use tenancy_core::store::MemberStore;
/// use tenancy_core::tenant::TenantId;
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let members = redis.member_store();
/// let acme = TenantId::new("acme")?;
/// members
///     .insert_within_limit(&acme, Member::new("alice@acme.example", Role::Admin), Limit::Limited(10))
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisMemberStore {
    rows: Collection,
}

impl RedisMemberStore {
    /// The member store on `redis`'s connection (also
    /// [`RedisStores::member_store`]).
    pub fn new(redis: RedisStores) -> Self {
        Self {
            rows: Collection {
                redis,
                name: "members",
            },
        }
    }
}

#[async_trait]
impl MemberStore for RedisMemberStore {
    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        member: Member,
        limit: Limit,
    ) -> Result<bool, StoreError> {
        self.rows
            .insert_within_limit(
                tenant,
                &member.user_id,
                &member,
                Some(member.email_key()),
                limit,
            )
            .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
    ) -> Result<Option<Member>, StoreError> {
        self.rows.get(tenant, user_id).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Member>, StoreError> {
        self.rows.list(tenant, after, limit).await
    }

    async fn set_role(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
        expected: Role,
        role: Role,
    ) -> Result<bool, StoreError> {
        let Some(old) = self.rows.get_raw(tenant, user_id).await? else {
            return Ok(false);
        };
        let mut member: Member = decode(&old)?;
        if member.role != expected {
            return Ok(false);
        }
        member.role = role;
        // The role is the only field that changes: a failed swap means it
        // changed in between, or the member went.
        self.rows.swap(tenant, user_id, &old, &member).await
    }

    async fn remove(
        &self,
        tenant: &TenantId,
        user_id: &RecordId,
        role: Role,
    ) -> Result<bool, StoreError> {
        let Some(old) = self.rows.get_raw(tenant, user_id).await? else {
            return Ok(false);
        };
        let member: Member = decode(&old)?;
        if member.role != role {
            return Ok(false);
        }
        // Removed only while the record is what was read: a role changed
        // in between keeps the member.
        self.rows.remove(tenant, user_id, Some(&old)).await
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.rows.erase(tenant).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.rows.redis.health().await
    }
}

/// Teams in Redis: each tenant's teams as a hash of id to JSON
/// (`<prefix>:{<tenant>}:teams`) and a sorted set of ids for paging, in the
/// tenant's slot, changed by Lua scripts as [`RedisMemberStore`].
///
/// ```no_run
/// use tenancy_core::member::Team;
/// use tenancy_core::plan::Limit;
/// use tenancy_core::store::TeamStore;
/// use tenancy_core::tenant::TenantId;
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let teams = redis.team_store();
/// let acme = TenantId::new("acme")?;
/// teams.insert_within_limit(&acme, Team::new("sre"), Limit::Limited(100)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisTeamStore {
    rows: Collection,
}

impl RedisTeamStore {
    /// The team store on `redis`'s connection (also
    /// [`RedisStores::team_store`]).
    pub fn new(redis: RedisStores) -> Self {
        Self {
            rows: Collection {
                redis,
                name: "teams",
            },
        }
    }
}

#[async_trait]
impl TeamStore for RedisTeamStore {
    async fn insert_within_limit(
        &self,
        tenant: &TenantId,
        team: Team,
        limit: Limit,
    ) -> Result<bool, StoreError> {
        self.rows
            .insert_within_limit(tenant, &team.team_id, &team, None, limit)
            .await
    }

    async fn get(&self, tenant: &TenantId, team_id: &RecordId) -> Result<Option<Team>, StoreError> {
        self.rows.get(tenant, team_id).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Team>, StoreError> {
        self.rows.list(tenant, after, limit).await
    }

    async fn remove(&self, tenant: &TenantId, team_id: &RecordId) -> Result<bool, StoreError> {
        self.rows.remove(tenant, team_id, None).await
    }

    async fn erase(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.rows.erase(tenant).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.rows.redis.health().await
    }
}
