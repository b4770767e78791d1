//! [`RedisRealmStore`].

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use tenancy_core::credential::{RealmClaim, TenantRealm, normalize_issuer};
use tenancy_core::store::{RealmStore, StoreError};
use tenancy_core::tenant::TenantId;

use crate::RedisStores;
use crate::error::RedisStoreError;

static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/realm_put.lua")));
static REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/realm_remove.lua")));
static GET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/realm_get.lua")));

/// The realms tenants bring, in Redis.
///
/// Two hashes under the hash tag `{realms}` (one slot, so each change is one
/// atomic script, on Redis Cluster too): `<prefix>:{realms}:by-issuer` maps
/// each issuer ([normalised](normalize_issuer)) to its claim (the tenant
/// and the realm, as JSON), and
/// `<prefix>:{realms}:issuer-of` maps each tenant to its realm's issuer.
/// Verification reads one field of the first ([`HGET`]) per request.
///
/// [`HGET`]: https://redis.io/commands/hget/
///
/// ```no_run
/// use std::sync::Arc;
/// use tenancy_core::credential::TenantRealm;
/// use tenancy_core::store::RealmStore;
/// use tenancy_core::tenant::TenantId;
/// use tenancy_store_redis::{RedisOptions, RedisStores};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStores::connect("redis://127.0.0.1:6379/", RedisOptions::default()).await?;
/// let realms: Arc<dyn RealmStore> = Arc::new(redis.realm_store());
/// let realm = TenantRealm::discovered("https://id.acme.example/realms/acme");
/// realms.put(&TenantId::new("acme")?, realm).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisRealmStore {
    redis: RedisStores,
}

impl RedisRealmStore {
    /// The realm store on `redis`'s connection (also
    /// [`RedisStores::realm_store`]).
    pub fn new(redis: RedisStores) -> Self {
        Self { redis }
    }
}

fn decode(json: &str) -> Result<RealmClaim, RedisStoreError> {
    Ok(serde_json::from_str(json)?)
}

#[async_trait]
impl RealmStore for RedisRealmStore {
    async fn find_by_issuer(&self, issuer: &str) -> Result<Option<RealmClaim>, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let filed = normalize_issuer(issuer);
                let by_issuer = self.redis.keys().realms_by_issuer();
                let mut json: Option<String> = conn.hget(&by_issuer, &filed).await?;
                if json.is_none() && filed != issuer {
                    // A realm set before issuers were normalised is filed
                    // under its issuer as written.
                    json = conn.hget(&by_issuer, issuer).await?;
                }
                let claim = json.map(|j| decode(&j)).transpose()?;
                match claim {
                    Some(claim) if normalize_issuer(&claim.realm.issuer) != filed => {
                        Err(RedisStoreError::Corrupt(format!(
                            "the realm filed under issuer {filed:?} has another issuer"
                        )))
                    }
                    claim => Ok(claim),
                }
            })
            .await
    }

    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantRealm>, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.conn();
                let keys = self.redis.keys();
                let json: Option<String> = GET
                    .key(keys.realms_by_issuer())
                    .key(keys.realm_issuers())
                    .arg(tenant.as_str())
                    .invoke_async(&mut conn)
                    .await?;
                match json.map(|j| decode(&j)).transpose()? {
                    Some(claim) if claim.tenant != *tenant => Err(RedisStoreError::Corrupt(
                        format!("the realm of tenant {tenant} names tenant {}", claim.tenant),
                    )),
                    claim => Ok(claim.map(|c| c.realm)),
                }
            })
            .await
    }

    async fn put(&self, tenant: &TenantId, realm: TenantRealm) -> Result<(), StoreError> {
        let issuer = normalize_issuer(&realm.issuer);
        let written = realm.issuer.clone();
        let claim = RealmClaim {
            tenant: tenant.clone(),
            realm,
        };
        let json = serde_json::to_string(&claim).map_err(StoreError::backend)?;
        if self
            .change(&PUT, &[tenant.as_str(), &issuer, &json, &written])
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn remove(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.change(&REMOVE, &[tenant.as_str()]).await
    }
}

impl RedisRealmStore {
    /// Runs `script` on the two realm hashes with `args`: whether it changed
    /// them (acknowledged by replicas as [`RedisOptions::replica_acks`](crate::RedisOptions::replica_acks) asks).
    async fn change(&self, script: &Script, args: &[&str]) -> Result<bool, StoreError> {
        self.redis
            .run(async {
                let mut conn = self.redis.write_conn();
                let keys = self.redis.keys();
                let mut call = script.key(keys.realms_by_issuer());
                call.key(keys.realm_issuers());
                for arg in args {
                    call.arg(*arg);
                }
                let changed: i64 = call.invoke_async(&mut conn).await?;
                if changed == 1 {
                    self.redis
                        .replicated(&mut conn, &[&keys.realms_by_issuer()])
                        .await?;
                }
                Ok(changed == 1)
            })
            .await
    }
}
