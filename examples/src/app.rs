//! The framework-free application core of the reference server: every
//! endpoint of the API as a method that takes the admitted
//! [`TenantContext`] and the raw request parts it needs, and returns a
//! [`Reply`] or a [`TenancyError`].
//!
//! Both front ends (axum and actix-web) call these methods and nothing else,
//! so they answer every request the same way. Bodies are parsed here, with
//! unknown fields refused and a size limit, so a malformed body gets the same
//! `invalid_request` / `payload_too_large` answer on both; query strings are
//! parsed here too ([`parse_query`]).
//!
//! Minimum roles are not checked here: each front end puts them on its
//! routes as the library's route policies (`RequireRoleLayer`,
//! `RequireRoleMiddleware`), and a method's doc names the role its route
//! requires. The methods check only what depends on the data: which tenant a
//! caller may see or name, and which role a caller may grant. Domain audit
//! events go through the request's [`Audit`] handle, and budgets are charged
//! through its [`Quota`] handle (both handed out by the front ends'
//! extractors), except where an event belongs in another tenant's log.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy_core::Tenancy;
use tenancy_core::admin::NewApiKey;
use tenancy_core::audit::AuditFilter;
use tenancy_core::context::TenantContext;
use tenancy_core::credential::KeyId;
use tenancy_core::error::{ErrorKind, TenancyError};
use tenancy_core::guard::require_role;
use tenancy_core::handle::{Audit, Quota};
use tenancy_core::label::Label;
use tenancy_core::member::{Member, RecordId, Team};
use tenancy_core::plan::Limit;
use tenancy_core::rbac::Role;
use tenancy_core::store::TelemetryStore;
use tenancy_core::store::memory::MemoryTelemetryStore;
use tenancy_core::telemetry::{TelemetryEvent, TelemetryFilter};
use tenancy_core::tenant::{TENANT_DESCRIPTION_MAX_BYTES, TenantId, TenantRecord};

use crate::export::Export;
use crate::wire::{
    Accepted, ApiKey, ApiKeyList, AuditLog, CreateApiKey, CreateTeam, CreateTenant, CreateUser,
    Health, IncidentAcknowledged, Ingest, IssuedApiKey, Metrics, PatchTenant, PatchUser,
    Permissions, RotateApiKey, RunbookTriggered, SecurityRefusals, TeamList, Tenant, TenantErased,
    TenantList, TenantWithRealm, Usage, UsageRow, UserList,
};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Teams per tenant.
pub const MAX_TEAMS: usize = 100;
/// Longest user display name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 256;
/// Members (and on-call entries) per team.
pub const MAX_TEAM_MEMBERS: usize = 100;
/// Longest member entry (user id or e-mail), in bytes.
pub const MAX_MEMBER_BYTES: usize = 254;
/// Rows a list endpoint answers when no `limit` is given.
pub const LIST_DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a list or query endpoint takes.
pub const LIST_MAX_LIMIT: usize = 1_000;
/// Longest wait for the stores' health on `/readyz`.
pub const READY_DEADLINE: std::time::Duration = std::time::Duration::from_millis(800);
/// Events accepted in one telemetry call.
pub const MAX_EVENTS_PER_CALL: usize = 1_000;
/// The grace period of a rotated key when the call names none.
pub const DEFAULT_ROTATION_GRACE_SECS: u64 = 3_600;
/// The longest grace period of a rotated key, in seconds (a week).
pub const MAX_ROTATION_GRACE_SECS: u64 = 7 * 24 * 3_600;

/// An answer: status and optional JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// JSON body; `None` for 204.
    pub body: Option<Value>,
}

impl Reply {
    /// `body` as JSON with `status`.
    pub fn json(status: StatusCode, body: &impl Serialize) -> Self {
        Self {
            status,
            // The wire types hold strings, numbers, times and maps with
            // string keys: serialising them cannot fail.
            body: Some(serde_json::to_value(body).unwrap_or(Value::Null)),
        }
    }

    /// `body` as JSON with 200.
    pub fn ok(body: &impl Serialize) -> Self {
        Self::json(StatusCode::OK, body)
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }
}

type Result<T> = std::result::Result<T, TenancyError>;

fn count_quota(name: &str) -> TenancyError {
    ErrorKind::QuotaExceeded {
        budget: name.to_owned(),
        retry_after: None,
    }
    .into()
}

/// Parses a JSON body: `payload_too_large` over [`MAX_BODY_BYTES`],
/// `invalid_request` for malformed JSON or unknown fields.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ErrorKind::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
        .into());
    }
    serde_json::from_slice(body)
        .map_err(|e| TenancyError::invalid_request(format!("malformed JSON body: {e}")))
}

/// A telemetry body: its events, each checked, and their counts by event
/// type. `payload_too_large` over [`MAX_BODY_BYTES`], `invalid_request` for
/// anything else wrong, before anything is charged or stored.
pub fn parse_telemetry(body: &[u8]) -> Result<(Vec<TelemetryEvent>, BTreeMap<Label, u64>)> {
    let req: Ingest = parse_body(body)?;
    if req.events.is_empty() || req.events.len() > MAX_EVENTS_PER_CALL {
        return Err(TenancyError::invalid_request(format!(
            "events must hold 1 to {MAX_EVENTS_PER_CALL} events"
        )));
    }
    let mut by_type: BTreeMap<Label, u64> = BTreeMap::new();
    for event in &req.events {
        *by_type.entry(event.validate()?).or_default() += 1;
    }
    Ok((req.events, by_type))
}

/// The query of `GET /api/v1/apikeys`.
#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<String>,
}

/// The query of `GET /api/v1/users` and `/api/v1/teams`.
#[derive(Debug, Deserialize)]
struct RecordsQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// The query of `GET /api/v1/tenants`.
#[derive(Debug, Deserialize)]
struct TenantsQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// The query of `GET /api/v1/metrics/query`.
#[derive(Debug, Deserialize)]
struct MetricsQuery {
    name: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<String>,
}

/// The query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

/// The query of `GET /api/v1/usage`.
#[derive(Debug, Deserialize)]
struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Parses a query string (`application/x-www-form-urlencoded`, without the
/// `?`) into `T`: parameters `T` does not name are ignored (the tenant
/// parameter among them); `invalid_request` when the string does not fit
/// `T`, such as a parameter given twice.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T> {
    serde_urlencoded::from_str(query)
        .map_err(|e| TenancyError::invalid_request(format!("malformed query string: {e}")))
}

/// A `limit` parameter's value: `default` when absent, `invalid_request`
/// unless it is a number from 1 to `max`.
pub fn parse_limit(value: Option<&str>, default: usize, max: usize) -> Result<usize> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(TenancyError::invalid_request(format!(
                "limit must be 1 to {max}"
            ))),
        },
    }
}

/// The value of the time parameter `name`: `None` when absent,
/// `invalid_request` unless it is an RFC 3339 time.
pub fn parse_time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    TenancyError::invalid_request(format!("{name} must be an RFC 3339 time"))
                })
        })
        .transpose()
}

fn label(value: &str, what: &str) -> Result<Label> {
    Label::new(value).map_err(|e| TenancyError::invalid_request(format!("{what}: {e}")))
}

fn not_found() -> TenancyError {
    ErrorKind::NotFound.into()
}

/// A tenant description: at most [`TENANT_DESCRIPTION_MAX_BYTES`];
/// empty means none.
fn description(text: Option<String>) -> Result<Option<String>> {
    match text {
        Some(text) if text.len() > TENANT_DESCRIPTION_MAX_BYTES => {
            Err(TenancyError::invalid_request(format!(
                "description is at most {TENANT_DESCRIPTION_MAX_BYTES} bytes"
            )))
        }
        Some(text) if text.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Records `event` of a change to `tenant` in the acting caller's home
/// tenant and in `tenant`'s own log (once when they are one). Never in a
/// third tenant the request happened to act for.
fn record_home_and_in(
    ctx: &TenantContext,
    audit: &Audit,
    tenant: &TenantId,
    event: tenancy_core::audit::AuditEvent,
) {
    let home = ctx.home_tenant().unwrap_or(ctx.tenant_id());
    if home != tenant {
        audit.record_for(home, event.clone());
    }
    audit.record_for(tenant, event);
}

/// The `after` and `limit` of a page of users or teams.
fn records_page(query: &str) -> Result<(Option<RecordId>, usize)> {
    let query: RecordsQuery = parse_query(query)?;
    let limit = parse_limit(query.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
    let after = query
        .after
        .map(|a| {
            RecordId::parse(&a).map_err(|_| TenancyError::invalid_request("after must be an id"))
        })
        .transpose()?;
    Ok((after, limit))
}

/// `event` with the counts of `erasure`, one detail per store.
fn erasure_details(
    event: tenancy_core::audit::AuditEvent,
    erasure: &tenancy_core::admin::Erasure,
) -> tenancy_core::audit::AuditEvent {
    let counts = [
        ("realm", erasure.realm),
        ("api_keys", erasure.api_keys),
        ("rate_limit_buckets", erasure.rate_limit_buckets),
        ("budget_counters", erasure.budget_counters),
        ("members", erasure.members),
        ("teams", erasure.teams),
        ("audit_events", erasure.audit_events),
        ("usage_rows", erasure.usage_rows),
        ("telemetry_events", erasure.telemetry_events),
    ];
    counts.into_iter().fold(event, |event, (store, count)| {
        event.detail(store, count.to_string())
    })
}

/// An id from a request path or query: `not_found` when it cannot be one.
fn record_id(id: &str) -> Result<RecordId> {
    RecordId::parse(id).map_err(|_| not_found())
}

fn new_id(prefix: &str) -> String {
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

/// The application: the tenancy engine and the telemetry store. It keeps
/// no state of its own: members and teams are in the engine's stores, so
/// every instance on the same stores answers alike.
pub struct App {
    tenancy: Tenancy,
    telemetry: Arc<dyn TelemetryStore>,
    /// The OpenAPI document, built once for the engine's configuration.
    contract: bytes::Bytes,
}

impl App {
    /// An application over `tenancy`, with telemetry in memory.
    pub fn new(tenancy: Tenancy) -> Arc<Self> {
        Self::with_telemetry(tenancy, Arc::new(MemoryTelemetryStore::new()))
    }

    /// An application over `tenancy`, with telemetry in `telemetry`.
    pub fn with_telemetry(tenancy: Tenancy, telemetry: Arc<dyn TelemetryStore>) -> Arc<Self> {
        Arc::new(Self {
            contract: crate::openapi::json(tenancy.config()).into(),
            tenancy,
            telemetry,
        })
    }

    /// The engine.
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// The telemetry store.
    pub fn telemetry(&self) -> &Arc<dyn TelemetryStore> {
        &self.telemetry
    }

    /// `GET /api/v1/tenants/{id}/export` (super_admin, or admin of that
    /// tenant; anyone else gets `not_found`): everything the tenant has, as
    /// NDJSON (see [`export`](crate::export)), streamed. The checks happen
    /// before the answer begins.
    pub async fn export(self: &Arc<Self>, ctx: &TenantContext, id: &str) -> Result<Export> {
        let tenant = self.visible_tenant(ctx, id).await?;
        Ok(Export::new(Arc::clone(self), tenant))
    }

    /// `GET /openapi.json`: the API's contract as this server is configured
    /// (see [`openapi`](crate::openapi)); cheap to clone.
    pub fn contract(&self) -> bytes::Bytes {
        self.contract.clone()
    }

    /// Writes everything buffered: the engine's audit, usage and key
    /// last-use writers.
    pub async fn shutdown(&self) {
        self.tenancy.shutdown().await;
    }

    /// The time before which the caller's tenant's rows are past its plan's
    /// retention.
    fn retention_cutoff(&self, ctx: &TenantContext) -> DateTime<Utc> {
        self.tenancy
            .admin()
            .retention_cutoff(ctx.tenant(), Utc::now())
    }

    /// Removes every tenant's audit events, usage hours and telemetry past
    /// its plan's retention (see `TenancyAdmin::sweep_retention`); run on a
    /// schedule by [`spawn_retention_sweeper`](Self::spawn_retention_sweeper).
    ///
    /// With `erase_archived`, tenants archived for longer than their
    /// retention are erased, each with a `tenant.erase` event (actor
    /// `retention-sweep`) in `platform`'s log.
    pub async fn sweep_retention(
        &self,
        erase_archived: bool,
        platform: &TenantId,
    ) -> Result<tenancy_core::admin::RetentionSweep> {
        let sweep = self
            .tenancy
            .admin()
            .sweep_retention(Some(&*self.telemetry), erase_archived)
            .await?;
        for (tenant, erasure) in &sweep.erased {
            let event = tenancy_core::audit::AuditEvent::new(
                platform.clone(),
                "retention-sweep",
                tenancy_core::audit::ActorKind::Service,
                "tenant.erase",
            )
            .resource(tenant.as_str())
            .detail("reason", "archived_past_retention");
            self.tenancy.record_audit(erasure_details(event, erasure));
        }
        Ok(sweep)
    }

    /// `DELETE /api/v1/tenants/{id}` (route: super_admin): erases an
    /// archived tenant from every store (`conflict` for an active or
    /// suspended one, or the caller's own); answers what went, per store.
    /// What stays is one `tenant.erase` event with those counts in the
    /// caller's home tenant.
    pub async fn erase_tenant(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        id: &str,
    ) -> Result<Reply> {
        // The route requires it too; erasure checks for itself.
        require_role(ctx, Role::SuperAdmin)?;
        let id = TenantId::new(id).map_err(|_| not_found())?;
        let home = ctx.home_tenant().unwrap_or(ctx.tenant_id());
        if id == *home {
            return Err(ErrorKind::Conflict("a caller cannot erase its own tenant".into()).into());
        }
        let erasure = self
            .tenancy
            .admin()
            .erase_tenant(&id, Some(&*self.telemetry))
            .await?;
        let event = audit
            .event("tenant.erase")
            .resource(id.as_str())
            .outcome(200);
        audit.record_for(home, erasure_details(event, &erasure));
        Ok(Reply::ok(&TenantErased {
            tenant_id: id,
            erased: erasure,
        }))
    }

    /// Sweeps retention every `every`, the first time one period after
    /// start, until the runtime stops (see
    /// [`sweep_retention`](Self::sweep_retention)). A failed sweep is
    /// logged and tried again at the next period.
    pub fn spawn_retention_sweeper(
        self: &Arc<Self>,
        every: std::time::Duration,
        erase_archived: bool,
        platform: TenantId,
    ) {
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: skip it.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(app) = app.upgrade() else { return };
                match app.sweep_retention(erase_archived, &platform).await {
                    Ok(sweep) => tracing::info!(?sweep, "retention sweep"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        });
    }

    /// `GET /readyz`: every configured store answers, within
    /// [`READY_DEADLINE`] (a store that hangs is not ready).
    pub async fn ready(&self) -> Result<Reply> {
        let health = async {
            self.tenancy.health().await?;
            self.telemetry.health().await.map_err(TenancyError::from)
        };
        match tokio::time::timeout(READY_DEADLINE, health).await {
            Ok(health) => health?,
            Err(_) => {
                tracing::error!(deadline = ?READY_DEADLINE, "a store did not answer the readiness check in time");
                return Err(tenancy_core::store::StoreError::unavailable(
                    "the readiness check timed out",
                )
                .into());
            }
        }
        Ok(Reply::ok(&Health { status: "ready" }))
    }

    /// `POST /api/v1/tenants` (route: super_admin).
    pub async fn create_tenant(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        body: &[u8],
    ) -> Result<Reply> {
        let req: CreateTenant = parse_body(body)?;
        let id = TenantId::new(&req.tenant_id)?;
        let plan = req
            .plan
            .unwrap_or_else(|| self.tenancy.config().default_plan.clone());
        if !self.tenancy.plans().contains(&plan) {
            return Err(TenancyError::invalid_request(format!(
                "unknown plan {plan:?}"
            )));
        }
        let mut tenant = TenantRecord::new(id, req.name, plan);
        tenant.contact_email = req.contact_email;
        tenant.description = description(req.description)?;
        self.tenancy.admin().create_tenant(tenant.clone()).await?;
        // In the acting caller's log and in the new tenant's own.
        let event = audit
            .event("tenant.create")
            .resource(tenant.id.as_str())
            .outcome(201)
            .detail("plan", tenant.plan.clone())
            .detail("status", tenant.status.as_str());
        record_home_and_in(ctx, audit, &tenant.id, event);
        Ok(Reply::json(StatusCode::CREATED, &Tenant::from(&tenant)))
    }

    /// `GET /api/v1/tenants` (route: super_admin): by id, `limit` at a time
    /// (default 100, at most 1,000), from after the id `after`.
    pub async fn list_tenants(&self, query: &str) -> Result<Reply> {
        let query: TenantsQuery = parse_query(query)?;
        let limit = parse_limit(query.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
        let after = query
            .after
            .map(|a| TenantId::new(a).map_err(TenancyError::from))
            .transpose()?;
        let tenants = self
            .tenancy
            .tenant_store()
            .list(after.as_ref(), limit)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::ok(&TenantList {
            tenants: tenants.iter().map(Tenant::from).collect(),
        }))
    }

    /// The tenant `id`, when `ctx` may see it: super_admin, or admin of it.
    /// Anything else is `not_found`, so callers cannot probe for tenants.
    async fn visible_tenant(&self, ctx: &TenantContext, id: &str) -> Result<TenantRecord> {
        let id = TenantId::new(id).map_err(|_| not_found())?;
        let own = *ctx.tenant_id() == id;
        if ctx.role() < Role::SuperAdmin {
            if !own {
                return Err(not_found());
            }
            require_role(ctx, Role::Admin)?;
        }
        self.tenancy
            .tenant_store()
            .get(&id)
            .await
            .map_err(TenancyError::from)?
            .ok_or_else(not_found)
    }

    /// `GET /api/v1/tenants/{id}` (super_admin, or admin of that tenant): no
    /// route policy, as the role a caller needs depends on the tenant asked
    /// for, and a caller who may not see it gets `not_found` whatever its
    /// role.
    pub async fn get_tenant(&self, ctx: &TenantContext, id: &str) -> Result<Reply> {
        let tenant = self.visible_tenant(ctx, id).await?;
        let realm = self.tenancy.admin().tenant_realm(&tenant.id).await?;
        Ok(Reply::ok(&TenantWithRealm {
            tenant: Tenant::from(&tenant),
            realm,
        }))
    }

    /// `PATCH /api/v1/tenants/{id}` (route: super_admin).
    pub async fn patch_tenant(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        id: &str,
        body: &[u8],
    ) -> Result<Reply> {
        let patch: PatchTenant = parse_body(body)?;
        let mut tenant = self.visible_tenant(ctx, id).await?;
        if let Some(plan) = &patch.plan
            && !self.tenancy.plans().contains(plan)
        {
            return Err(TenancyError::invalid_request(format!(
                "unknown plan {plan:?}"
            )));
        }
        let description = patch
            .description
            .map(|d| description(Some(d)))
            .transpose()?;
        let before = tenant.clone();
        let mut changed = Vec::new();
        // The realm first: a refused one (invalid, or its issuer taken)
        // leaves the record as it was.
        if let Some(realm) = patch.realm {
            let revoked = self
                .tenancy
                .admin()
                .set_tenant_realm(&tenant.id, realm)
                .await?;
            // The keys its old identity provider's tokens issued die with
            // it, written down in the tenant's own log.
            for key_id in revoked {
                audit.record_for(
                    &tenant.id,
                    audit
                        .event("apikey.revoke")
                        .resource(key_id.as_str())
                        .detail("reason", "realm_changed"),
                );
            }
            changed.push("realm");
        }
        if let Some(name) = patch.name {
            tenant.name = name;
            changed.push("name");
        }
        if let Some(description) = description {
            tenant.description = description;
            changed.push("description");
        }
        if let Some(plan) = patch.plan {
            tenant.plan = plan;
            changed.push("plan");
        }
        if let Some(status) = patch.status {
            tenant.status = status;
            changed.push("status");
        }
        if let Some(settings) = patch.settings {
            tenant.settings = settings;
            changed.push("settings");
        }
        tenant.updated_at = Utc::now();
        self.tenancy.admin().update_tenant(tenant.clone()).await?;
        // Who changed what, with the old and new values of the fields that
        // have one, in the acting caller's log and in the tenant's own.
        let mut event = audit
            .event("tenant.update")
            .resource(tenant.id.as_str())
            .detail("changed", changed.join(","))
            .detail("status", tenant.status.as_str());
        let values = [
            ("name", before.name.clone(), tenant.name.clone()),
            ("plan", before.plan.clone(), tenant.plan.clone()),
            (
                "status",
                before.status.as_str().to_owned(),
                tenant.status.as_str().to_owned(),
            ),
        ];
        for (field, old, new) in values {
            if changed.contains(&field) {
                event = event
                    .detail(format!("old_{field}"), old)
                    .detail(format!("new_{field}"), new);
            }
        }
        record_home_and_in(ctx, audit, &tenant.id, event);
        let realm = self.tenancy.admin().tenant_realm(&tenant.id).await?;
        Ok(Reply::ok(&TenantWithRealm {
            tenant: Tenant::from(&tenant),
            realm,
        }))
    }

    /// The tenant a body names, or the caller's: another tenant only for
    /// super_admin (`tenant_mismatch` otherwise).
    async fn target_tenant(
        &self,
        ctx: &TenantContext,
        named: Option<&str>,
    ) -> Result<TenantRecord> {
        let Some(named) = named else {
            return Ok(ctx.tenant().as_ref().clone());
        };
        let id = TenantId::new(named)?;
        if id == *ctx.tenant_id() {
            return Ok(ctx.tenant().as_ref().clone());
        }
        if ctx.role() < Role::SuperAdmin {
            return Err(ErrorKind::TenantMismatch.into());
        }
        self.tenancy
            .tenant_store()
            .get(&id)
            .await
            .map_err(TenancyError::from)?
            .ok_or_else(|| ErrorKind::UnknownTenant.into())
    }

    /// `POST /api/v1/apikeys` (route: admin+). The secret is in this answer
    /// only. Its event goes to the key's tenant, which a super_admin may name
    /// in the body, so it is recorded through the engine rather than the
    /// request's [`Audit`] handle (which writes only into the request's
    /// tenant).
    pub async fn create_api_key(&self, ctx: &TenantContext, body: &[u8]) -> Result<Reply> {
        let req: CreateApiKey = parse_body(body)?;
        if req.name.is_empty() || req.name.len() > 128 {
            return Err(TenancyError::invalid_request(
                "name must be 1 to 128 characters",
            ));
        }
        if req.rate_limit_rps == Some(0) {
            return Err(TenancyError::invalid_request(
                "rate_limit_rps must be at least 1",
            ));
        }
        let tenant = self.target_tenant(ctx, req.tenant_id.as_deref()).await?;
        let issued = self
            .tenancy
            .admin()
            .issue_api_key_as(
                ctx,
                &tenant,
                NewApiKey {
                    name: req.name,
                    scope: req.scope,
                    rate_limit_rps: req.rate_limit_rps,
                    expires_at: req.expires_at,
                },
            )
            .await?;
        let mut event = self
            .tenancy
            .audit_event(ctx, "apikey.create")
            .resource(issued.record.key_id.as_str())
            .outcome(201)
            .detail("scope", issued.record.scope.as_str());
        if let Some(parent) = &issued.record.parent_key_id {
            event = event.detail("parent_key_id", parent.as_str());
        }
        event.tenant_id = tenant.id.clone();
        self.tenancy.record_audit(event);
        Ok(Reply::json(
            StatusCode::CREATED,
            &IssuedApiKey {
                key_id: issued.record.key_id.clone(),
                api_key: issued.secret.expose().to_owned(),
                tenant_id: tenant.id,
                scope: issued.record.scope,
                created_at: issued.record.created_at,
                expires_at: issued.record.expires_at,
            },
        ))
    }

    /// `GET /api/v1/apikeys` (route: admin+): the tenant's keys, oldest
    /// first, `limit` at a time (default 100, at most 1,000), never a secret.
    pub async fn list_api_keys(&self, ctx: &TenantContext, query: &str) -> Result<Reply> {
        let query: PageQuery = parse_query(query)?;
        let limit = parse_limit(query.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
        let mut keys = self
            .tenancy
            .api_key_store()
            .list(ctx.tenant_id())
            .await
            .map_err(TenancyError::from)?;
        keys.truncate(limit);
        Ok(Reply::ok(&ApiKeyList {
            api_keys: keys.iter().map(ApiKey::from).collect(),
        }))
    }

    /// `DELETE /api/v1/apikeys/{key_id}` (route: admin+): 204; `not_found`
    /// for another tenant's key.
    pub async fn revoke_api_key(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        key_id: &str,
    ) -> Result<Reply> {
        let key_id = KeyId::new(key_id).map_err(|_| not_found())?;
        let cascaded = self
            .tenancy
            .admin()
            .revoke_api_key(ctx.tenant_id(), &key_id)
            .await?;
        audit.record_event(
            audit
                .event("apikey.revoke")
                .resource(key_id.as_str())
                .outcome(204),
        );
        // Keys the revoked key issued end with it, each on the record.
        for child in cascaded {
            audit.record_event(
                audit
                    .event("apikey.revoke")
                    .resource(child.as_str())
                    .outcome(204)
                    .detail("revoked_with", key_id.as_str()),
            );
        }
        Ok(Reply::no_content())
    }

    /// `POST /api/v1/apikeys/{key_id}/rotate` (route: admin+): a new
    /// secret, in this answer only, for a key of the caller's tenant; the
    /// old one keeps working for `grace_period_secs` (default
    /// [`DEFAULT_ROTATION_GRACE_SECS`], at most [`MAX_ROTATION_GRACE_SECS`]).
    /// A key may rotate itself and the keys it issued, never its parent.
    pub async fn rotate_api_key(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        key_id: &str,
        body: &[u8],
    ) -> Result<Reply> {
        let key_id = KeyId::new(key_id).map_err(|_| not_found())?;
        let req: RotateApiKey = if body.is_empty() {
            RotateApiKey::default()
        } else {
            parse_body(body)?
        };
        let grace = req.grace_period_secs.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
        if grace > MAX_ROTATION_GRACE_SECS {
            return Err(TenancyError::invalid_request(format!(
                "grace_period_secs is at most {MAX_ROTATION_GRACE_SECS}"
            )));
        }
        let grace = (grace > 0).then(|| std::time::Duration::from_secs(grace));
        let issued = self
            .tenancy
            .admin()
            .rotate_api_key_as(ctx, &key_id, grace)
            .await?;
        audit.record_event(
            audit
                .event("apikey.rotate")
                .resource(key_id.as_str())
                .outcome(201)
                .detail("new_key_id", issued.record.key_id.as_str())
                .detail(
                    "grace_period_secs",
                    req.grace_period_secs
                        .unwrap_or(DEFAULT_ROTATION_GRACE_SECS)
                        .to_string(),
                ),
        );
        Ok(Reply::json(
            StatusCode::CREATED,
            &IssuedApiKey {
                key_id: issued.record.key_id.clone(),
                api_key: issued.secret.expose().to_owned(),
                tenant_id: issued.record.tenant_id.clone(),
                scope: issued.record.scope,
                created_at: issued.record.created_at,
                expires_at: issued.record.expires_at,
            },
        ))
    }

    /// `GET /api/v1/security/refusals` (route: super_admin): the platform
    /// security log, refusals of callers without a verified credential per
    /// client address and reason, most refused first.
    pub fn security_refusals(&self) -> Result<Reply> {
        Ok(Reply::ok(&SecurityRefusals {
            refusals: self.tenancy.security_log(),
        }))
    }

    /// `GET /api/v1/rbac/permissions` (any authenticated caller: no route
    /// policy).
    pub fn permissions(&self, ctx: &TenantContext) -> Result<Reply> {
        Ok(Reply::ok(&Permissions {
            tenant_id: ctx.tenant_id().clone(),
            subject: ctx.principal().subject.as_ref().to_owned(),
            role: ctx.role(),
            level: ctx.role().level(),
            scope: ctx.scope(),
            permissions: ctx
                .role()
                .permissions()
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        }))
    }

    /// `POST /api/v1/telemetry` (route: operator+, the lowest role with
    /// `telemetry:write`; ingestion keys act as operator): charges
    /// events/month through the request's [`Quota`] handle, meters by event
    /// type.
    pub async fn ingest(&self, ctx: &TenantContext, quota: &Quota, body: &[u8]) -> Result<Reply> {
        let (events, by_type) = parse_telemetry(body)?;
        let accepted = events.len() as u64;
        quota.charge("events", accepted).await?;
        for (event_type, count) in &by_type {
            self.tenancy.meter(ctx, event_type, *count);
        }
        self.telemetry
            .append(ctx.tenant_id(), &events)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::json(StatusCode::ACCEPTED, &Accepted { accepted }))
    }

    /// `GET /api/v1/metrics/query` (route: viewer+ / readonly keys): the
    /// caller's tenant's telemetry, newest first; filters `name`, `type`,
    /// `limit`.
    pub async fn query_metrics(&self, ctx: &TenantContext, query: &str) -> Result<Reply> {
        let MetricsQuery {
            name,
            event_type,
            limit,
        } = parse_query(query)?;
        let filter = TelemetryFilter {
            name,
            event_type,
            since: Some(self.retention_cutoff(ctx)),
            until: None,
            limit: parse_limit(limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?,
        };
        let events = self
            .telemetry
            .query(ctx.tenant_id(), &filter)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::ok(&Metrics {
            tenant_id: ctx.tenant_id().clone(),
            events,
        }))
    }

    /// `POST /api/v1/runbooks/{id}/trigger` (route: operator+): an audited
    /// action.
    pub fn trigger_runbook(&self, audit: &Audit, id: &str) -> Result<Reply> {
        let id = label(id, "runbook id")?;
        let execution_id = new_id("exec");
        audit.record_event(
            audit
                .event("runbook.trigger")
                .resource(id.as_str())
                .outcome(202)
                .detail("execution_id", execution_id.clone()),
        );
        Ok(Reply::json(
            StatusCode::ACCEPTED,
            &RunbookTriggered {
                runbook_id: id,
                execution_id,
                status: "triggered",
            },
        ))
    }

    /// `POST /api/v1/incidents/{id}/ack` (route: operator+): an audited
    /// action.
    pub fn ack_incident(&self, ctx: &TenantContext, audit: &Audit, id: &str) -> Result<Reply> {
        let id = label(id, "incident id")?;
        audit.record("incident.ack", Some(id.as_str()));
        Ok(Reply::ok(&IncidentAcknowledged {
            incident_id: id,
            status: "acknowledged",
            acknowledged_by: ctx.principal().subject.as_ref().to_owned(),
        }))
    }

    /// `POST /api/v1/users` (route: admin+): the plan's user count is
    /// enforced, counted and added in one step of the member store; no one
    /// grants a role above their own.
    pub async fn create_user(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        body: &[u8],
    ) -> Result<Reply> {
        let req: CreateUser = parse_body(body)?;
        if !req.email.contains('@') || req.email.len() > 254 {
            return Err(TenancyError::invalid_request(
                "email must be an e-mail address",
            ));
        }
        if req.role > ctx.role() {
            return Err(ErrorKind::InsufficientRole { required: req.role }.into());
        }
        if req
            .name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_USER_NAME_BYTES)
        {
            return Err(TenancyError::invalid_request(format!(
                "name is at most {MAX_USER_NAME_BYTES} bytes"
            )));
        }
        let mut user = Member::new(req.email, req.role);
        user.name = req.name;
        self.tenancy
            .admin()
            .add_member(ctx.tenant(), user.clone())
            .await?;
        audit.record_event(
            audit
                .event("user.create")
                .resource(user.user_id.as_str())
                .outcome(201)
                .detail("role", user.role.as_str()),
        );
        Ok(Reply::json(StatusCode::CREATED, &user))
    }

    /// `GET /api/v1/users` (route: admin+): oldest first, `limit` at a time
    /// (default 100, at most 1,000), from after the id `after`.
    pub async fn list_users(&self, ctx: &TenantContext, query: &str) -> Result<Reply> {
        let (after, limit) = records_page(query)?;
        let users = self
            .tenancy
            .member_store()
            .list(ctx.tenant_id(), after.as_ref(), limit)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::ok(&UserList { users }))
    }

    /// The user `id` of the caller's tenant, when the caller may manage it:
    /// `not_found` for none (or another tenant's), `insufficient_role` for
    /// a user whose role is above the caller's.
    async fn managed_user(&self, ctx: &TenantContext, id: &str) -> Result<Member> {
        let id = record_id(id)?;
        let user = self
            .tenancy
            .member_store()
            .get(ctx.tenant_id(), &id)
            .await
            .map_err(TenancyError::from)?
            .ok_or_else(not_found)?;
        if user.role > ctx.role() {
            return Err(ErrorKind::InsufficientRole {
                required: user.role,
            }
            .into());
        }
        Ok(user)
    }

    /// `PATCH /api/v1/users/{id}` (route: admin+): changes a user's role,
    /// never to one above the caller's, nor of a user above the caller;
    /// `conflict` when the role changed in between. Audited as
    /// `user.role_change` with the old and new role.
    pub async fn patch_user(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        id: &str,
        body: &[u8],
    ) -> Result<Reply> {
        let req: PatchUser = parse_body(body)?;
        let mut user = self.managed_user(ctx, id).await?;
        if req.role > ctx.role() {
            return Err(ErrorKind::InsufficientRole { required: req.role }.into());
        }
        let old = user.role;
        if old != req.role {
            let changed = self
                .tenancy
                .member_store()
                .set_role(ctx.tenant_id(), &user.user_id, old, req.role)
                .await
                .map_err(TenancyError::from)?;
            if !changed {
                return Err(ErrorKind::Conflict(format!(
                    "user {} changed meanwhile; read it again",
                    user.user_id
                ))
                .into());
            }
            user.role = req.role;
            audit.record_event(
                audit
                    .event("user.role_change")
                    .resource(user.user_id.as_str())
                    .detail("old_role", old.as_str())
                    .detail("new_role", user.role.as_str()),
            );
        }
        Ok(Reply::ok(&user))
    }

    /// `DELETE /api/v1/users/{id}` (route: admin+): removes a user (never
    /// one above the caller) → 204; audited as `user.delete`.
    pub async fn delete_user(&self, ctx: &TenantContext, audit: &Audit, id: &str) -> Result<Reply> {
        let user = self.managed_user(ctx, id).await?;
        let removed = self
            .tenancy
            .member_store()
            .remove(ctx.tenant_id(), &user.user_id, user.role)
            .await
            .map_err(TenancyError::from)?;
        if !removed {
            // Gone, or its role changed since it was checked.
            return Err(ErrorKind::Conflict(format!(
                "user {} changed meanwhile; read it again",
                user.user_id
            ))
            .into());
        }
        audit.record_event(
            audit
                .event("user.delete")
                .resource(user.user_id.as_str())
                .outcome(204)
                .detail("role", user.role.as_str()),
        );
        Ok(Reply::no_content())
    }

    /// `POST /api/v1/teams` (route: admin+): in the caller's tenant, or the
    /// one a super_admin names in `tenant_id`; at most [`MAX_TEAMS`] per
    /// tenant.
    pub async fn create_team(
        &self,
        ctx: &TenantContext,
        audit: &Audit,
        body: &[u8],
    ) -> Result<Reply> {
        let req: CreateTeam = parse_body(body)?;
        if req.name.is_empty() || req.name.len() > 128 {
            return Err(TenancyError::invalid_request(
                "name must be 1 to 128 characters",
            ));
        }
        let members = req.members.iter().chain(&req.on_call_rotation);
        if req.members.len() > MAX_TEAM_MEMBERS
            || req.on_call_rotation.len() > MAX_TEAM_MEMBERS
            || members
                .into_iter()
                .any(|m| m.is_empty() || m.len() > MAX_MEMBER_BYTES)
        {
            return Err(TenancyError::invalid_request(format!(
                "members and on_call_rotation hold at most {MAX_TEAM_MEMBERS} entries of 1 to {MAX_MEMBER_BYTES} bytes"
            )));
        }
        let tenant = self.target_tenant(ctx, req.tenant_id.as_deref()).await?;
        let mut team = Team::new(req.name);
        team.members = req.members;
        team.on_call_rotation = req.on_call_rotation;
        let added = self
            .tenancy
            .team_store()
            .insert_within_limit(&tenant.id, team.clone(), Limit::Limited(MAX_TEAMS as u64))
            .await
            .map_err(TenancyError::from)?;
        if !added {
            return Err(count_quota("teams"));
        }
        audit.record_for(
            &tenant.id,
            audit
                .event("team.create")
                .resource(team.team_id.as_str())
                .outcome(201),
        );
        Ok(Reply::json(StatusCode::CREATED, &team))
    }

    /// `GET /api/v1/teams` (route: admin+): oldest first, `limit` at a time
    /// (default 100, at most 1,000), from after the id `after`.
    pub async fn list_teams(&self, ctx: &TenantContext, query: &str) -> Result<Reply> {
        let (after, limit) = records_page(query)?;
        let teams = self
            .tenancy
            .team_store()
            .list(ctx.tenant_id(), after.as_ref(), limit)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::ok(&TeamList { teams }))
    }

    /// `GET /api/v1/audit` (route: admin+): newest first; filters `actor`,
    /// `action`, `since` (RFC 3339), `limit`. On the in-memory log a read
    /// sees every event written before it (see `Tenancy::catch_up`); in
    /// ClickHouse, events arrive within the buffers' flush interval (1 s by
    /// default), and no read forces every tenant's buffers out.
    pub async fn audit(&self, ctx: &TenantContext, query: &str) -> Result<Reply> {
        let query: AuditQuery = parse_query(query)?;
        let mut filter = AuditFilter::default().limit(parse_limit(
            query.limit.as_deref(),
            LIST_DEFAULT_LIMIT,
            LIST_MAX_LIMIT,
        )?);
        filter.actor = query.actor;
        filter.action = query.action;
        // Never older than the plan keeps, whatever the store still holds.
        let cutoff = self.retention_cutoff(ctx);
        filter.since = Some(
            parse_time("since", query.since.as_deref())?.map_or(cutoff, |since| since.max(cutoff)),
        );
        let Some(log) = self.tenancy.audit_query() else {
            return Err(TenancyError::internal("the audit sink cannot be queried"));
        };
        self.tenancy.catch_up().await;
        let events = log
            .query(ctx.tenant_id(), &filter)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::ok(&AuditLog {
            tenant_id: ctx.tenant_id().clone(),
            events,
        }))
    }

    /// `GET /api/v1/usage` (route: admin+): hourly counts by event type;
    /// `from` and `to` (RFC 3339) default to the last 24 hours. Like the
    /// audit log, it reads its own writes on the in-memory meter.
    pub async fn usage(&self, ctx: &TenantContext, query: &str) -> Result<Reply> {
        let query: UsageQuery = parse_query(query)?;
        let to = parse_time("to", query.to.as_deref())?
            .unwrap_or_else(|| Utc::now() + chrono::Duration::hours(1));
        let from =
            parse_time("from", query.from.as_deref())?.unwrap_or(to - chrono::Duration::hours(25));
        let from = from.max(self.retention_cutoff(ctx));
        self.tenancy.catch_up().await;
        let rows = self
            .tenancy
            .usage_meter()
            .usage(ctx.tenant_id(), from, to)
            .await
            .map_err(TenancyError::from)?;
        Ok(Reply::ok(&Usage {
            tenant_id: ctx.tenant_id().clone(),
            usage: rows
                .into_iter()
                .map(|r| UsageRow {
                    hour: r.hour,
                    event_type: r.event_type,
                    count: r.count,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let q: AuditQuery =
            parse_query("since=2026-01-01T00%3A00%3A00Z&actor=a%20b+c&action=bad%zz%&limit=%4")
                .unwrap();
        assert_eq!(q.since.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(q.actor.as_deref(), Some("a b c"));
        // Malformed escapes stay as they are.
        assert_eq!(q.action.as_deref(), Some("bad%zz%"));
        assert_eq!(q.limit.as_deref(), Some("%4"));
        let since = parse_time("since", q.since.as_deref()).unwrap();
        assert_eq!(since.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn queries_ignore_unknown_parameters_and_refuse_repeated_ones() {
        let q: MetricsQuery = parse_query("tenant_id=globex&type=metric&name=cpu&x&y=").unwrap();
        assert_eq!(q.event_type.as_deref(), Some("metric"));
        assert_eq!(q.name.as_deref(), Some("cpu"));
        assert_eq!(q.limit, None);
        let empty: UsageQuery = parse_query("").unwrap();
        assert_eq!((empty.from, empty.to), (None, None));
        let err = parse_query::<PageQuery>("limit=1&limit=2").unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        // A parameter with no value is present and empty.
        let q: TenantsQuery = parse_query("after&limit=").unwrap();
        assert_eq!(
            (q.after.as_deref(), q.limit.as_deref()),
            (Some(""), Some(""))
        );
    }

    #[test]
    fn limits_and_times_are_checked() {
        let limit = |v| parse_limit(v, LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT);
        assert_eq!(limit(None).unwrap(), LIST_DEFAULT_LIMIT);
        assert_eq!(limit(Some("1")).unwrap(), 1);
        assert_eq!(limit(Some("1000")).unwrap(), LIST_MAX_LIMIT);
        for bad in ["0", "1001", "-1", "abc", "", " 5"] {
            let err = limit(Some(bad)).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{bad}");
            assert_eq!(err.detail(), "limit must be 1 to 1000", "{bad}");
        }
        assert_eq!(parse_time("from", None).unwrap(), None);
        let err = parse_time("from", Some("yesterday")).unwrap_err();
        assert_eq!(
            (err.code(), err.detail().as_ref()),
            ("invalid_request", "from must be an RFC 3339 time")
        );
    }

    #[test]
    fn bodies_are_refused_cleanly() {
        let err = parse_body::<CreateTeam>(b"{").unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        let err = parse_body::<CreateTeam>(br#"{"name":"a","extra":1}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_body::<CreateTeam>(&big).unwrap_err().code(),
            "payload_too_large"
        );
    }
}
