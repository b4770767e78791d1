//! The JSON bodies the API takes and answers, as types: the application
//! core parses requests into them and builds its answers from them, and the
//! OpenAPI document ([`crate::openapi`]) takes their schemas from them, so
//! the contract and the server cannot say different things.
//!
//! Request bodies refuse unknown fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenancy_core::audit::AuditEvent;
use tenancy_core::credential::{ApiKeyRecord, KeyId, TenantRealm};
use tenancy_core::engine::SecurityLogEntry;
use tenancy_core::label::Label;
use tenancy_core::member::{Member, Team};
use tenancy_core::rbac::{ApiKeyScope, Role};
use tenancy_core::telemetry::TelemetryEvent;
use tenancy_core::tenant::{TenantId, TenantRecord, TenantSettings, TenantStatus};
use utoipa::ToSchema;

/// `POST /api/v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The new tenant's id.
    #[schema(value_type = TenantId)]
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// Its plan, one of the server's (by default `free`, `starter`, `pro`,
    /// `enterprise`); the default plan when absent.
    #[serde(default)]
    #[schema(example = "pro")]
    pub plan: Option<String>,
    /// Contact e-mail.
    #[serde(default)]
    pub contact_email: Option<String>,
    /// What the tenant is, at most 1,024 bytes.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

/// `PATCH /api/v1/tenants/{id}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// What the tenant is, at most 1,024 bytes (empty removes it).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Plan.
    #[serde(default)]
    pub plan: Option<String>,
    /// Lifecycle status.
    #[serde(default)]
    pub status: Option<TenantStatus>,
    /// Settings, replaced whole.
    #[serde(default)]
    pub settings: Option<TenantSettings>,
    /// The realm the tenant brings: absent leaves it, `null` removes it, an
    /// object sets it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TenantRealm>)]
    pub realm: Option<Option<TenantRealm>>,
}

/// A field that is present, even as `null` (`Some(None)`), told from one
/// that is absent (`None`, through `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /api/v1/apikeys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// The tenant of the key: another than the caller's only for
    /// super_admin.
    #[serde(default)]
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    /// Name, 1 to 128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// What the key may do.
    pub scope: ApiKeyScope,
    /// The key's own requests per second, at least 1.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub rate_limit_rps: Option<u32>,
    /// When it stops working.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/telemetry`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    /// 1 to 1,000 events.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<TelemetryEvent>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// E-mail address.
    #[schema(
        pattern = "^[^@]*@[^@]*$",
        max_length = 254,
        example = "dana@acme.example"
    )]
    pub email: String,
    /// Display name, at most 256 bytes.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: Option<String>,
    /// Role: at most the caller's.
    pub role: Role,
}

/// `PATCH /api/v1/users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// The new role: at most the caller's.
    pub role: Role,
}

/// `POST /api/v1/apikeys/{key_id}/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the old secret keeps working, in seconds (0 to 604,800, a
    /// week; 0 ends it at once). 3,600 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_period_secs: Option<u64>,
}

/// `POST /api/v1/teams`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// The tenant of the team: the caller's (when absent), or another for
    /// super_admin.
    #[serde(default)]
    #[schema(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
    /// Name, 1 to 128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Members (user ids or e-mails).
    #[serde(default)]
    pub members: Vec<String>,
    /// On-call order.
    #[serde(default)]
    pub on_call_rotation: Vec<String>,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    /// Id.
    pub tenant_id: TenantId,
    /// Display name.
    pub name: String,
    /// Plan.
    pub plan: String,
    /// Lifecycle status.
    pub status: TenantStatus,
    /// Settings.
    pub settings: TenantSettings,
    /// Contact e-mail.
    pub contact_email: Option<String>,
    /// What the tenant is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&TenantRecord> for Tenant {
    fn from(t: &TenantRecord) -> Self {
        Self {
            tenant_id: t.id.clone(),
            name: t.name.clone(),
            plan: t.plan.clone(),
            status: t.status,
            settings: t.settings.clone(),
            contact_email: t.contact_email.clone(),
            description: t.description.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// `DELETE /api/v1/tenants/{id}`: what went, per store.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantErased {
    /// The tenant erased.
    pub tenant_id: TenantId,
    /// How many of each kind of record were removed.
    pub erased: tenancy_core::admin::Erasure,
}

/// One tenant as `GET` and `PATCH /api/v1/tenants/{id}` answer it: the
/// record and the realm it brings.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantWithRealm {
    /// The record.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// The realm the tenant brings, `null` when none.
    pub realm: Option<TenantRealm>,
}

/// `GET /api/v1/tenants`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// By id.
    pub tenants: Vec<Tenant>,
}

/// An API key, never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// Id.
    pub key_id: KeyId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Name.
    pub name: String,
    /// Scope.
    pub scope: ApiKeyScope,
    /// The key's own requests per second, if any.
    pub rate_limit_rps: Option<u32>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKey {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            key_id: k.key_id.clone(),
            tenant_id: k.tenant_id.clone(),
            name: k.name.to_string(),
            scope: k.scope,
            rate_limit_rps: k.rate_limit_rps,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// `GET /api/v1/apikeys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Oldest first.
    pub api_keys: Vec<ApiKey>,
}

/// `POST /api/v1/apikeys`: the only answer that holds the secret. Its
/// `Debug` leaves the secret out.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiKey {
    /// Id.
    pub key_id: KeyId,
    /// The secret, for the `X-API-Key` header.
    pub api_key: String,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Scope.
    pub scope: ApiKeyScope,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IssuedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedApiKey")
            .field("key_id", &self.key_id)
            .field("api_key", &"[redacted]")
            .field("tenant_id", &self.tenant_id)
            .field("scope", &self.scope)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `GET /api/v1/security/refusals`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityRefusals {
    /// Per client address and reason, most refused first.
    pub refusals: Vec<SecurityLogEntry>,
}

/// `GET /api/v1/rbac/permissions`: who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Permissions {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Subject (user, key id or service).
    pub subject: String,
    /// Role.
    pub role: Role,
    /// The role's level, 1 (viewer) to 5 (system).
    pub level: u8,
    /// An API key's scope.
    pub scope: Option<ApiKeyScope>,
    /// What the role may do.
    pub permissions: Vec<String>,
}

/// `POST /api/v1/telemetry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Events accepted.
    pub accepted: u64,
}

/// `GET /api/v1/metrics/query`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Metrics {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Newest first.
    pub events: Vec<TelemetryEvent>,
}

/// `POST /api/v1/runbooks/{id}/trigger`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunbookTriggered {
    /// Runbook.
    pub runbook_id: Label,
    /// This execution.
    pub execution_id: String,
    /// Always `triggered`.
    pub status: &'static str,
}

/// `POST /api/v1/incidents/{id}/ack`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentAcknowledged {
    /// Incident.
    pub incident_id: Label,
    /// Always `acknowledged`.
    pub status: &'static str,
    /// Who acknowledged it.
    pub acknowledged_by: String,
}

/// `GET /api/v1/users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Oldest first.
    pub users: Vec<Member>,
}

/// `GET /api/v1/teams`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamList {
    /// Oldest first.
    pub teams: Vec<Team>,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Newest first.
    pub events: Vec<AuditEvent>,
}

/// One hour of one event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Event type.
    pub event_type: Label,
    /// Events.
    pub count: u64,
}

/// `GET /api/v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Tenant.
    pub tenant_id: TenantId,
    /// By hour, then event type.
    pub usage: Vec<UsageRow>,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready` (every store answers).
    pub status: &'static str,
}
