//! The API's contract: an OpenAPI 3.1 document generated from the code
//! (the [`wire`](crate::wire) types and the operations below), served at
//! `GET /openapi.json` by both front ends, and a Swagger UI for it at
//! `GET /docs/`, whose files are inside the binary.
//!
//! Each operation below names its path, parameters, body and successful
//! answer. What every operation under `/api/v1` shares is added by
//! [`Contract`]: the two credentials, the tenant header and query
//! parameter, the `RateLimit-*` headers, and every problem it can answer,
//! as `application/problem+json` under its status.
//!
//! The names a deployment configures (the tenant header and query
//! parameter, the API key header) come from its [`TenancyConfig`]:
//!
//! ```
//! use tenancy_core::TenancyConfig;
//!
//! let config = TenancyConfig::builder().tenant_header("X-Org").build()?;
//! let doc: serde_json::Value = serde_json::from_slice(&tenancy_examples::openapi::json(&config))?;
//! assert_eq!(doc["openapi"], "3.1.0");
//! let create = &doc["paths"]["/api/v1/tenants"]["post"];
//! assert_eq!(create["parameters"][0]["name"], "X-Org");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, LazyLock};

use tenancy_core::TenancyConfig;
use tenancy_core::error::{PROBLEM_CONTENT_TYPE, Problem};
use tenancy_core::tenant::TenantId;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, OpenApi as Document, Ref, Required};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where the Swagger UI is served (`/docs` redirects here).
pub const DOCS_PATH: &str = "/docs/";

/// The document of a server with `config`, as served: pretty JSON. The
/// application builds it once ([`App::contract`](crate::app::App::contract)).
pub fn json(config: &TenancyConfig) -> Vec<u8> {
    let mut document = ApiDoc::openapi();
    Contract {
        tenant_header: &config.resolution.tenant_header,
        tenant_query: &config.resolution.query_param,
        api_key_header: &config.auth.api_key_header,
    }
    .modify(&mut document);
    document
        .to_pretty_json()
        .map(String::into_bytes)
        // Serialising the document's own types cannot fail.
        .unwrap_or_default()
}

/// Headers of the contract and of every Swagger UI file: a content
/// security policy that lets the page load its own files and nothing else
/// (no inline script, no other origin, no framing), no content sniffing, no
/// framing for browsers that predate `frame-ancestors`.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

/// One file of the Swagger UI: its content type and bytes.
pub struct DocsFile {
    /// Content type.
    pub content_type: String,
    /// Bytes: the binary's own for the Swagger UI's files (no copy per
    /// request), built for its initializer.
    pub bytes: bytes::Bytes,
}

/// The Swagger UI file at `tail` (the path under [`DOCS_PATH`]; empty for
/// its page), pointed at [`DOCUMENT_PATH`]; `None` when there is no such
/// file.
pub fn docs_file(tail: &str) -> Option<DocsFile> {
    static CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
        LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::from(DOCUMENT_PATH)));
    let tail = if tail.is_empty() { "index.html" } else { tail };
    match utoipa_swagger_ui::serve(tail, CONFIG.clone()) {
        Ok(Some(file)) => Some(DocsFile {
            content_type: file.content_type,
            bytes: match file.bytes {
                std::borrow::Cow::Borrowed(embedded) => bytes::Bytes::from_static(embedded),
                std::borrow::Cow::Owned(built) => bytes::Bytes::from(built),
            },
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "the Swagger UI file cannot be served");
            None
        }
    }
}

/// The reference server's API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenancy reference server",
        description = "A multi-tenant API behind the tenancy middleware: tenants, API keys, \
            telemetry, runbooks, incidents, users, teams, audit log and usage. Every call under \
            `/api/v1` acts for one tenant, named by the credential (or, where the credential \
            allows, by the tenant header or query parameter, by default `X-Tenant-ID` and \
            `?tenant_id=`), and refusals are \
            `application/problem+json` with a stable `code`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        operations::healthz, operations::readyz, operations::prometheus_metrics, operations::openapi_document, operations::docs_redirect, operations::docs_files, operations::api_healthz, operations::list_tenants, operations::create_tenant, operations::get_tenant, operations::patch_tenant, operations::erase_tenant, operations::export_tenant, operations::list_api_keys, operations::create_api_key, operations::revoke_api_key, operations::rotate_api_key, operations::security_refusals, operations::permissions, operations::ingest_telemetry, operations::query_metrics, operations::trigger_runbook, operations::ack_incident, operations::create_user, operations::list_users, operations::patch_user, operations::delete_user, operations::create_team, operations::list_teams, operations::audit_log, operations::usage,
    ),
    components(schemas(Problem)),
    tags(
        (name = "service", description = "Liveness, readiness, metrics and this contract."),
        (name = "tenants", description = "Tenants and their lifecycle (super_admin)."),
        (name = "api keys", description = "A tenant's API keys (admin)."),
        (name = "identity", description = "Who the caller is, and who was refused."),
        (name = "domain", description = "What a tenant does: telemetry, runbooks, incidents, users, teams."),
        (name = "records", description = "A tenant's audit log and usage (admin)."),
    ),
)]
pub struct ApiDoc;

/// What every operation under `/api/v1` shares: credentials, tenant
/// selection, rate-limit headers and problem answers, under the names the
/// server is configured with.
pub struct Contract<'a> {
    /// The tenant header.
    pub tenant_header: &'a str,
    /// The tenant query parameter.
    pub tenant_query: &'a str,
    /// The API key header.
    pub api_key_header: &'a str,
}

/// The problems a status carries, as `(status, reason, codes)`.
const PROBLEMS: [(&str, &str, &str); 9] = [
    (
        "400",
        "Bad request",
        "`invalid_request`, `invalid_tenant_id`, `tenant_required`",
    ),
    (
        "401",
        "No valid credential (`WWW-Authenticate` names the scheme on bearer failures)",
        "`unauthenticated`, `invalid_token`, `token_expired`, `invalid_api_key`",
    ),
    (
        "403",
        "The credential may not do this here",
        "`tenant_not_allowed`, `unknown_tenant`, `tenant_mismatch`, `tenant_suspended`, \
         `tenant_archived`, `insufficient_role`, `scope_denied`",
    ),
    (
        "404",
        "Not found, or not the caller's to see",
        "`not_found`",
    ),
    ("409", "Conflicts with what exists", "`conflict`"),
    ("413", "The body is over 1 MiB", "`payload_too_large`"),
    (
        "429",
        "Over a rate limit or a quota (`Retry-After` says when the limit or the quota's period \
         resets; count quotas such as users and teams do not reset)",
        "`rate_limited`, `quota_exceeded`",
    ),
    ("500", "A fault of the server", "`internal_error`"),
    ("503", "A store did not answer", "`store_unavailable`"),
];

fn problem_response(reason: &str, codes: &str, status: &str) -> utoipa::openapi::Response {
    let mut response = ResponseBuilder::new()
        .description(format!("{reason}: {codes}."))
        .content(
            PROBLEM_CONTENT_TYPE,
            Content::new(Some(Ref::from_schema_name(Problem::name()))),
        );
    if status == "401" {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(string_schema())
                .description(Some("The scheme and the error, as RFC 6750 says."))
                .build(),
        );
    }
    if status == "429" {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(integer_schema())
                .description(Some("Seconds until the call may succeed."))
                .build(),
        );
    }
    response.build()
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::new(Type::String))
}

fn integer_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .minimum(Some(0))
}

/// The `RateLimit-*` headers of an answer under a rate limit.
fn with_rate_limit_headers(response: &mut utoipa::openapi::Response) {
    for (name, description) in [
        ("RateLimit-Limit", "Requests allowed in the window."),
        ("RateLimit-Remaining", "Requests left in the window."),
        ("RateLimit-Reset", "Seconds until the window is full again."),
    ] {
        response.headers.insert(
            name.to_owned(),
            HeaderBuilder::new()
                .schema(integer_schema())
                .description(Some(description))
                .build(),
        );
    }
}

impl Contract<'_> {
    fn operation(&self, operation: &mut Operation, writes: bool) {
        operation.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        parameters.push(
            ParameterBuilder::new()
                .name(self.tenant_header)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The tenant to act for, where the credential may name one (super_admin \
                     tokens); otherwise it must be the credential's own.",
                ))
                .schema(Some(TenantId::schema()))
                .build(),
        );
        parameters.push(
            ParameterBuilder::new()
                .name(self.tenant_query)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("The tenant to act for, as the tenant header."))
                .schema(Some(TenantId::schema()))
                .build(),
        );
        let responses = &mut operation.responses.responses;
        for response in responses.values_mut() {
            if let utoipa::openapi::RefOr::T(response) = response {
                with_rate_limit_headers(response);
            }
        }
        for (status, reason, codes) in PROBLEMS {
            // Only writes take a body, or can conflict with what exists.
            if matches!(status, "409" | "413") && !writes {
                continue;
            }
            let mut response = problem_response(reason, codes, status);
            if status == "429" {
                with_rate_limit_headers(&mut response);
            }
            responses
                .entry(status.to_owned())
                .or_insert(utoipa::openapi::RefOr::T(response));
        }
    }
}

impl Modify for Contract<'_> {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT of a configured realm, or of the realm a tenant brought.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                self.api_key_header,
                "An API key; it names its tenant.",
            ))),
        );
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for (operation, writes) in [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, false),
            ] {
                if let Some(operation) = operation {
                    self.operation(operation, writes);
                }
            }
        }
    }
}

/// The operations: each function carries one operation's path,
/// parameters, body and answers for `#[utoipa::path]`, and is never called
/// (the front ends route to [`App`](crate::app::App)).
#[allow(dead_code)]
mod operations {
    use tenancy_core::error::Problem;
    use tenancy_core::label::Label;
    use tenancy_core::tenant::TenantId;

    use tenancy_core::member::{Member, RecordId, Team};

    use crate::wire::{
        Accepted, ApiKeyList, AuditLog, CreateApiKey, CreateTeam, CreateTenant, CreateUser, Health,
        IncidentAcknowledged, Ingest, IssuedApiKey, Metrics, PatchTenant, PatchUser, Permissions,
        RotateApiKey, RunbookTriggered, SecurityRefusals, TeamList, Tenant, TenantErased,
        TenantList, TenantWithRealm, Usage, UserList,
    };

    /// Liveness: the process answers. No credential.
    #[utoipa::path(get, path = "/healthz", tag = "service",
        responses((status = 200, description = "Alive.", body = Health)))]
    fn healthz() {}

    /// Readiness: every configured store answers within 800 ms. No credential.
    #[utoipa::path(get, path = "/readyz", tag = "service",
        responses(
            (status = 200, description = "Every store answers.", body = Health),
            (status = 503, description = "A store did not answer: `store_unavailable`.",
                body = Problem, content_type = "application/problem+json"),
        ))]
    fn readyz() {}

    /// Prometheus metrics, per tenant: with the metrics bearer token when
    /// one is set, otherwise for loopback callers only.
    #[utoipa::path(get, path = "/metrics", tag = "service",
        responses(
            (status = 200, description = "The Prometheus text format.", body = String,
                content_type = "text/plain"),
            (status = 404, description = "Not this caller's to read: `not_found` (the page \
                does not admit it exists).",
                body = Problem, content_type = "application/problem+json"),
        ))]
    fn prometheus_metrics() {}

    /// This document. No credential.
    #[utoipa::path(get, path = "/openapi.json", tag = "service",
        responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)))]
    fn openapi_document() {}

    /// The Swagger UI of this document lives under `/docs/`.
    #[utoipa::path(get, path = "/docs", tag = "service",
        responses((status = 308, description = "To `/docs/`.",
            headers(("Location" = String, description = "`/docs/`")))))]
    fn docs_redirect() {}

    /// A file of the Swagger UI (`index.html` for its page). No credential.
    #[utoipa::path(get, path = "/docs/{file}", tag = "service",
        params(("file" = String, Path, description = "A file of the Swagger UI.")),
        responses(
            (status = 200, description = "The file.", content(
                (String = "text/html"), (String = "text/css"), (String = "application/javascript"),
                (String = "image/png"), (String = "application/json"),
            )),
            (status = 404, description = "No such file: `not_found`.",
                body = Problem, content_type = "application/problem+json"),
        ))]
    fn docs_files() {}

    /// The liveness answer behind the middleware: what tenancy costs, measured
    /// against `/healthz`.
    #[utoipa::path(get, path = "/api/v1/healthz", tag = "service",
        responses((status = 200, description = "Alive, and the caller admitted.", body = Health)))]
    fn api_healthz() {}

    /// Lists tenants by id (super_admin).
    #[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
        params(
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows, 1 to 1,000 (100)."),
            ("after" = Option<TenantId>, Query, description = "Start after this id."),
        ),
        responses((status = 200, description = "The tenants.", body = TenantList)))]
    fn list_tenants() {}

    /// Creates a tenant (super_admin).
    #[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants",
        request_body = CreateTenant,
        responses((status = 201, description = "Created.", body = Tenant)))]
    fn create_tenant() {}

    /// A tenant and the realm it brings (super_admin, or admin of that tenant;
    /// anyone else gets `not_found`).
    #[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants",
        params(("id" = TenantId, Path, description = "The tenant.")),
        responses((status = 200, description = "The tenant.", body = TenantWithRealm)))]
    fn get_tenant() {}

    /// Changes a tenant: name, plan, status, settings, its realm (super_admin).
    #[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants",
        params(("id" = TenantId, Path, description = "The tenant.")),
        request_body = PatchTenant,
        responses((status = 200, description = "The tenant as changed.", body = TenantWithRealm)))]
    fn patch_tenant() {}

    /// Erases an archived tenant from every store: record, realm, keys,
    /// limits, budgets, users, teams, audit log, usage and telemetry
    /// (super_admin). `conflict` unless it is archived. What stays is one
    /// `tenant.erase` event with the counts in the caller's home tenant.
    #[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants",
        params(("id" = TenantId, Path, description = "The tenant.")),
        responses(
            (status = 200, description = "Erased: what went, per store.", body = TenantErased),
            (status = 409, description = "`conflict`: the tenant is not archived, or is the caller's own.", body = Problem, content_type = "application/problem+json"),
        ))]
    fn erase_tenant() {}

    /// Everything the tenant has, streamed as NDJSON: one
    /// `{"type", "data"}` object per line, of the types `tenant`, `realm`,
    /// `api_key` (never a secret), `user`, `team`, `audit_event`, `usage`
    /// and `telemetry` (super_admin, or admin of that tenant; anyone else
    /// gets `not_found`).
    #[utoipa::path(get, path = "/api/v1/tenants/{id}/export", tag = "tenants",
        params(("id" = TenantId, Path, description = "The tenant.")),
        responses((status = 200, description = "The tenant's data, one typed record per line.", content_type = "application/x-ndjson", body = String)))]
    fn export_tenant() {}

    /// The tenant's API keys, oldest first, never a secret (admin).
    #[utoipa::path(get, path = "/api/v1/apikeys", tag = "api keys",
        params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows, 1 to 1,000 (100).")),
        responses((status = 200, description = "The keys.", body = ApiKeyList)))]
    fn list_api_keys() {}

    /// Issues an API key; the secret is in this answer only (admin).
    #[utoipa::path(post, path = "/api/v1/apikeys", tag = "api keys",
        request_body = CreateApiKey,
        responses((status = 201, description = "Issued.", body = IssuedApiKey)))]
    fn create_api_key() {}

    /// Revokes an API key of the tenant, and the keys it issued (admin).
    #[utoipa::path(delete, path = "/api/v1/apikeys/{key_id}", tag = "api keys",
        params(("key_id" = String, Path, description = "The key's id.")),
        responses((status = 204, description = "Revoked (or already).")))]
    fn revoke_api_key() {}

    /// Rotates an API key of the tenant: a new secret, in this answer only;
    /// the old one keeps working for the grace period. A key may rotate
    /// itself and the keys it issued (admin).
    #[utoipa::path(post, path = "/api/v1/apikeys/{key_id}/rotate", tag = "api keys",
        params(("key_id" = String, Path, description = "The key's id.")),
        request_body(content = Option<RotateApiKey>, description = "Optional; an empty body takes the default grace period."),
        responses((status = 201, description = "The new key.", body = IssuedApiKey)))]
    fn rotate_api_key() {}

    /// Refusals of callers without a verified credential, per client address
    /// and reason (super_admin).
    #[utoipa::path(get, path = "/api/v1/security/refusals", tag = "identity",
        responses((status = 200, description = "Most refused first.", body = SecurityRefusals)))]
    fn security_refusals() {}

    /// Who the caller is: tenant, subject, role, scope and permissions.
    #[utoipa::path(get, path = "/api/v1/rbac/permissions", tag = "identity",
        responses((status = 200, description = "The caller.", body = Permissions)))]
    fn permissions() {}

    /// Ingests telemetry, charged to the monthly event quota (operator,
    /// ingestion keys).
    #[utoipa::path(post, path = "/api/v1/telemetry", tag = "domain",
        request_body = Ingest,
        responses((status = 202, description = "Accepted.", body = Accepted)))]
    fn ingest_telemetry() {}

    /// The tenant's telemetry, newest first (viewer, read-only keys).
    #[utoipa::path(get, path = "/api/v1/metrics/query", tag = "domain",
        params(
            ("name" = Option<String>, Query, description = "Only events of this name."),
            ("type" = Option<String>, Query, description = "Only events of this type."),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows, 1 to 1,000 (100)."),
        ),
        responses((status = 200, description = "The events.", body = Metrics)))]
    fn query_metrics() {}

    /// Triggers a runbook, audited (operator).
    #[utoipa::path(post, path = "/api/v1/runbooks/{id}/trigger", tag = "domain",
        params(("id" = Label, Path, description = "The runbook.")),
        responses((status = 202, description = "Triggered.", body = RunbookTriggered)))]
    fn trigger_runbook() {}

    /// Acknowledges an incident, audited (operator).
    #[utoipa::path(post, path = "/api/v1/incidents/{id}/ack", tag = "domain",
        params(("id" = Label, Path, description = "The incident.")),
        responses((status = 200, description = "Acknowledged.", body = IncidentAcknowledged)))]
    fn ack_incident() {}

    /// Creates a user, within the plan's user count; no one grants a role
    /// above their own (admin).
    #[utoipa::path(post, path = "/api/v1/users", tag = "domain",
        request_body = CreateUser,
        responses((status = 201, description = "Created.", body = Member)))]
    fn create_user() {}

    /// The tenant's users, oldest first (admin).
    #[utoipa::path(get, path = "/api/v1/users", tag = "domain",
        params(
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows, 1 to 1,000 (100)."),
            ("after" = Option<RecordId>, Query, description = "Start after this user id."),
        ),
        responses((status = 200, description = "The users.", body = UserList)))]
    fn list_users() {}

    /// Changes a user's role, audited as `user.role_change`; never to a role
    /// above the caller's, nor of a user above the caller (admin).
    #[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "domain",
        params(("id" = RecordId, Path, description = "The user.")),
        request_body = PatchUser,
        responses((status = 200, description = "The user as changed.", body = Member)))]
    fn patch_user() {}

    /// Removes a user, audited as `user.delete`; never one above the caller
    /// (admin).
    #[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "domain",
        params(("id" = RecordId, Path, description = "The user.")),
        responses(
            (status = 204, description = "Removed."),
            (status = 409, description = "`conflict`: the user changed (or went) since it was checked.", body = Problem, content_type = "application/problem+json"),
        ))]
    fn delete_user() {}

    /// Creates a team, at most 100 per tenant, in the caller's tenant or the
    /// one a super_admin names (admin).
    #[utoipa::path(post, path = "/api/v1/teams", tag = "domain",
        request_body = CreateTeam,
        responses((status = 201, description = "Created.", body = Team)))]
    fn create_team() {}

    /// The tenant's teams, oldest first (admin).
    #[utoipa::path(get, path = "/api/v1/teams", tag = "domain",
        params(
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows, 1 to 1,000 (100)."),
            ("after" = Option<RecordId>, Query, description = "Start after this team id."),
        ),
        responses((status = 200, description = "The teams.", body = TeamList)))]
    fn list_teams() {}

    /// The tenant's audit log, newest first (admin).
    #[utoipa::path(get, path = "/api/v1/audit", tag = "records",
        params(
            ("actor" = Option<String>, Query, description = "Only this actor's events."),
            ("action" = Option<String>, Query, description = "Only this action."),
            ("since" = Option<String>, Query, format = DateTime, description = "Only events from this time on (RFC 3339)."),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows, 1 to 1,000 (100)."),
        ),
        responses((status = 200, description = "The events.", body = AuditLog)))]
    fn audit_log() {}

    /// The tenant's hourly usage by event type (admin).
    #[utoipa::path(get, path = "/api/v1/usage", tag = "records",
        params(
            ("from" = Option<String>, Query, format = DateTime, description = "From this time (RFC 3339; 25 hours before `to`)."),
            ("to" = Option<String>, Query, format = DateTime, description = "Up to this time (RFC 3339; the next hour)."),
        ),
        responses((status = 200, description = "The counts.", body = Usage)))]
    fn usage() {}
}
