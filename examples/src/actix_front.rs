//! The actix-web front end: routes of the API onto [`App`] methods, under
//! [`TenancyMiddleware`]. Each route's minimum role is a
//! [`RequireRoleMiddleware`] wrapping its method routes, as on the axum
//! front end.
//!
//! The policy wraps each `Route`, not the `Resource`: a resource's
//! middleware also wraps its default service, so a method the path does not
//! serve would meet the policy (`insufficient_role`, and an
//! `access.refused` event for a write) where axum's `route_layer` answers
//! `not_found`.

use std::sync::Arc;

use actix_web::http::StatusCode as ActixStatus;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse, Resource, Route};
use tenancy_actix::extract::{Audit, Quota};
use tenancy_actix::{RequireRoleMiddleware, TenancyMiddleware, TenancyRejection, Tenant};
use tenancy_core::error::{ErrorKind, TenancyError};
use tenancy_core::rbac::Role;

use crate::app::{App, MAX_BODY_BYTES, Reply};
use crate::metrics::MetricsEndpoint;
use crate::openapi;
use crate::wire::Health;

type Answer = Result<HttpResponse, TenancyRejection>;
type AppData = Data<Arc<App>>;

fn respond(reply: Result<Reply, TenancyError>) -> Answer {
    let reply = reply?;
    let status = ActixStatus::from_u16(reply.status.as_u16())
        .map_err(|_| TenancyError::internal("status out of range"))?;
    Ok(match reply.body {
        Some(body) => HttpResponse::build(status)
            .content_type("application/json")
            .body(body.to_string()),
        None => HttpResponse::build(status).finish(),
    })
}

async fn read_body(payload: web::Payload) -> Result<web::Bytes, TenancyError> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(TenancyError::invalid_request(
            "the request body could not be read",
        )),
        Err(_) => Err(ErrorKind::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
        .into()),
    }
}

async fn not_found() -> Answer {
    Err(TenancyRejection(ErrorKind::NotFound.into()))
}

/// A resource whose unmatched methods answer `not_found`, as in axum.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(not_found))
}

/// `route` for callers of `role` or higher (the counterpart of axum's
/// `MethodRouter::route_layer`).
fn at_least(role: Role, route: Route) -> Route {
    route.wrap(RequireRoleMiddleware::new(role))
}

async fn list_tenants(app: AppData, req: HttpRequest) -> Answer {
    respond(app.list_tenants(req.query_string()).await)
}
async fn create_tenant(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    body: web::Payload,
) -> Answer {
    respond(
        app.create_tenant(&ctx, &audit, &read_body(body).await?)
            .await,
    )
}
async fn get_tenant(app: AppData, Tenant(ctx): Tenant, id: web::Path<String>) -> Answer {
    respond(app.get_tenant(&ctx, &id).await)
}
async fn patch_tenant(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    id: web::Path<String>,
    body: web::Payload,
) -> Answer {
    respond(
        app.patch_tenant(&ctx, &audit, &id, &read_body(body).await?)
            .await,
    )
}
async fn export_tenant(app: AppData, Tenant(ctx): Tenant, id: web::Path<String>) -> Answer {
    let export = app.export(&ctx, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(export.into_stream()))
}
async fn erase_tenant(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    id: web::Path<String>,
) -> Answer {
    respond(app.erase_tenant(&ctx, &audit, &id).await)
}
async fn list_api_keys(app: AppData, Tenant(ctx): Tenant, req: HttpRequest) -> Answer {
    respond(app.list_api_keys(&ctx, req.query_string()).await)
}
async fn create_api_key(app: AppData, Tenant(ctx): Tenant, body: web::Payload) -> Answer {
    respond(app.create_api_key(&ctx, &read_body(body).await?).await)
}
async fn revoke_api_key(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    key_id: web::Path<String>,
) -> Answer {
    respond(app.revoke_api_key(&ctx, &audit, &key_id).await)
}
async fn rotate_api_key(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    key_id: web::Path<String>,
    body: web::Payload,
) -> Answer {
    respond(
        app.rotate_api_key(&ctx, &audit, &key_id, &read_body(body).await?)
            .await,
    )
}
async fn permissions(app: AppData, Tenant(ctx): Tenant) -> Answer {
    respond(app.permissions(&ctx))
}
async fn ingest(app: AppData, Tenant(ctx): Tenant, quota: Quota, body: web::Payload) -> Answer {
    respond(app.ingest(&ctx, &quota, &read_body(body).await?).await)
}
async fn query_metrics(app: AppData, Tenant(ctx): Tenant, req: HttpRequest) -> Answer {
    respond(app.query_metrics(&ctx, req.query_string()).await)
}
async fn trigger_runbook(app: AppData, audit: Audit, id: web::Path<String>) -> Answer {
    respond(app.trigger_runbook(&audit, &id))
}
async fn ack_incident(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    id: web::Path<String>,
) -> Answer {
    respond(app.ack_incident(&ctx, &audit, &id))
}
async fn list_users(app: AppData, Tenant(ctx): Tenant, req: HttpRequest) -> Answer {
    respond(app.list_users(&ctx, req.query_string()).await)
}
async fn create_user(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    body: web::Payload,
) -> Answer {
    respond(app.create_user(&ctx, &audit, &read_body(body).await?).await)
}
async fn patch_user(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    id: web::Path<String>,
    body: web::Payload,
) -> Answer {
    respond(
        app.patch_user(&ctx, &audit, &id, &read_body(body).await?)
            .await,
    )
}
async fn delete_user(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    id: web::Path<String>,
) -> Answer {
    respond(app.delete_user(&ctx, &audit, &id).await)
}
async fn list_teams(app: AppData, Tenant(ctx): Tenant, req: HttpRequest) -> Answer {
    respond(app.list_teams(&ctx, req.query_string()).await)
}
async fn create_team(
    app: AppData,
    Tenant(ctx): Tenant,
    audit: Audit,
    body: web::Payload,
) -> Answer {
    respond(app.create_team(&ctx, &audit, &read_body(body).await?).await)
}
async fn audit(app: AppData, Tenant(ctx): Tenant, req: HttpRequest) -> Answer {
    respond(app.audit(&ctx, req.query_string()).await)
}
async fn usage(app: AppData, Tenant(ctx): Tenant, req: HttpRequest) -> Answer {
    respond(app.usage(&ctx, req.query_string()).await)
}
/// `GET /healthz` (excluded from tenancy) and `GET /api/v1/healthz` (the
/// same answer to an admitted caller).
async fn healthz() -> Answer {
    respond(Ok(Reply::ok(&Health { status: "ok" })))
}
/// `GET /openapi.json`: the contract, byte for byte as the axum front end
/// serves it.
async fn openapi_document(app: AppData) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    with_security_headers(&mut response)
        .content_type("application/json")
        .body(app.contract())
}
/// `response` with [`openapi::SECURITY_HEADERS`].
fn with_security_headers(
    response: &mut actix_web::HttpResponseBuilder,
) -> &mut actix_web::HttpResponseBuilder {
    for header in openapi::SECURITY_HEADERS {
        response.insert_header(header);
    }
    response
}
/// `GET /docs`: the Swagger UI's relative links need the trailing slash.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, openapi::DOCS_PATH))
        .finish()
}
/// `GET /docs/{file}`: the Swagger UI, from inside the binary.
async fn docs_file(req: HttpRequest) -> Answer {
    let tail = req.match_info().get("file").unwrap_or_default();
    let file = openapi::docs_file(tail).ok_or(TenancyRejection(ErrorKind::NotFound.into()))?;
    let mut response = HttpResponse::Ok();
    Ok(with_security_headers(&mut response)
        .content_type(file.content_type)
        .body(file.bytes))
}
async fn readyz(app: AppData) -> Answer {
    respond(app.ready().await)
}
async fn metrics(endpoint: Data<MetricsEndpoint>, req: HttpRequest) -> Answer {
    let auth = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let text = endpoint.render(req.peer_addr().map(|p| p.ip()), auth)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}
async fn security_refusals(app: AppData) -> Answer {
    respond(app.security_refusals())
}

/// Registers the API on an actix `App` (call inside `HttpServer::new`).
pub fn configure(
    app: Arc<App>,
    endpoint: MetricsEndpoint,
) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let data = Data::new(app);
    let handle = Data::new(endpoint);
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(data.clone())
            .app_data(handle.clone())
            .service(
                resource("/api/v1/tenants")
                    .route(at_least(Role::SuperAdmin, web::get().to(list_tenants)))
                    .route(at_least(Role::SuperAdmin, web::post().to(create_tenant))),
            )
            .service(
                // Reading a tenant has no route policy: who may read it
                // depends on the tenant (see `App::get_tenant`).
                resource("/api/v1/tenants/{id}")
                    .get(get_tenant)
                    .route(at_least(Role::SuperAdmin, web::patch().to(patch_tenant)))
                    .route(at_least(Role::SuperAdmin, web::delete().to(erase_tenant))),
            )
            .service(
                // Like reading a tenant: who may export it depends on the
                // tenant.
                resource("/api/v1/tenants/{id}/export").get(export_tenant),
            )
            .service(
                resource("/api/v1/apikeys")
                    .route(at_least(Role::Admin, web::get().to(list_api_keys)))
                    .route(at_least(Role::Admin, web::post().to(create_api_key))),
            )
            .service(
                resource("/api/v1/apikeys/{key_id}")
                    .route(at_least(Role::Admin, web::delete().to(revoke_api_key))),
            )
            .service(
                resource("/api/v1/apikeys/{key_id}/rotate")
                    .route(at_least(Role::Admin, web::post().to(rotate_api_key))),
            )
            .service(resource("/api/v1/rbac/permissions").get(permissions))
            .service(
                resource("/api/v1/security/refusals")
                    .route(at_least(Role::SuperAdmin, web::get().to(security_refusals))),
            )
            .service(
                resource("/api/v1/telemetry")
                    .route(at_least(Role::Operator, web::post().to(ingest))),
            )
            .service(
                resource("/api/v1/metrics/query")
                    .route(at_least(Role::Viewer, web::get().to(query_metrics))),
            )
            .service(
                resource("/api/v1/runbooks/{id}/trigger")
                    .route(at_least(Role::Operator, web::post().to(trigger_runbook))),
            )
            .service(
                resource("/api/v1/incidents/{id}/ack")
                    .route(at_least(Role::Operator, web::post().to(ack_incident))),
            )
            .service(
                resource("/api/v1/users")
                    .route(at_least(Role::Admin, web::get().to(list_users)))
                    .route(at_least(Role::Admin, web::post().to(create_user))),
            )
            .service(
                resource("/api/v1/users/{id}")
                    .route(at_least(Role::Admin, web::patch().to(patch_user)))
                    .route(at_least(Role::Admin, web::delete().to(delete_user))),
            )
            .service(
                resource("/api/v1/teams")
                    .route(at_least(Role::Admin, web::get().to(list_teams)))
                    .route(at_least(Role::Admin, web::post().to(create_team))),
            )
            .service(resource("/api/v1/audit").route(at_least(Role::Admin, web::get().to(audit))))
            .service(resource("/api/v1/usage").route(at_least(Role::Admin, web::get().to(usage))))
            .service(resource("/healthz").get(healthz))
            // The same handler behind tenancy: what tenancy costs, measured
            // against `/healthz` (benches/load.sh).
            .service(resource("/api/v1/healthz").get(healthz))
            .service(resource("/readyz").get(readyz))
            .service(resource("/metrics").get(metrics))
            .service(resource(openapi::DOCUMENT_PATH).get(openapi_document))
            .service(resource("/docs").get(docs_redirect))
            .service(resource("/docs/{file:.*}").get(docs_file))
            .default_service(web::to(not_found));
    }
}

/// The tenancy middleware of the API, with health, metrics and the
/// contract excluded.
pub fn middleware(app: &App) -> TenancyMiddleware {
    TenancyMiddleware::new(app.tenancy().clone())
        .exclude("/healthz")
        .exclude("/readyz")
        .exclude("/metrics")
        .exclude(openapi::DOCUMENT_PATH)
        .exclude("/docs")
}
