//! The axum front end: routes of the API onto [`App`] methods, under
//! [`TenancyLayer`]. Each route's minimum role is a [`RequireRoleLayer`]
//! on its methods (`route_layer`, so a method the path does not serve still
//! answers `not_found` without meeting it), as on the actix-web front end.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Router};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use tenancy_axum::extract::{Audit, Quota};
use tenancy_axum::{RequireRoleLayer, TenancyLayer, TenancyRejection, Tenant};
use tenancy_core::error::{ErrorKind, TenancyError};
use tenancy_core::rbac::Role;

use crate::app::{App, MAX_BODY_BYTES, Reply};
use crate::metrics::MetricsEndpoint;
use crate::openapi;
use crate::wire::Health;

type Answer = Result<Response, TenancyRejection>;

/// The media type of exports.
const NDJSON: &str = "application/x-ndjson";

fn respond(reply: Result<Reply, TenancyError>) -> Answer {
    let reply = reply?;
    let mut response = match reply.body {
        Some(body) => {
            let mut r = Response::new(Body::from(body.to_string()));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => Response::new(Body::empty()),
    };
    *response.status_mut() = reply.status;
    Ok(response)
}

async fn read_body(body: Body) -> Result<Bytes, TenancyError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            TenancyError::new(ErrorKind::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            })
        })
}

/// `GET /healthz` (excluded from tenancy) and `GET /api/v1/healthz` (the
/// same answer to an admitted caller).
async fn healthz() -> Answer {
    respond(Ok(Reply::ok(&Health { status: "ok" })))
}

/// `GET /openapi.json`: the contract, byte for byte as the actix-web front
/// end serves it.
async fn openapi_document(State(app): State<Arc<App>>) -> Response {
    with_security_headers(([(CONTENT_TYPE, "application/json")], app.contract()).into_response())
}

/// `response` with [`openapi::SECURITY_HEADERS`].
fn with_security_headers(mut response: Response) -> Response {
    for (name, value) in openapi::SECURITY_HEADERS {
        response.headers_mut().insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        );
    }
    response
}

/// `GET /docs/{file}` (and `/docs/`): the Swagger UI, from inside the
/// binary.
async fn docs_file(file: Option<Path<String>>) -> Answer {
    let tail = file.as_ref().map_or("", |Path(file)| file.as_str());
    let file = openapi::docs_file(tail).ok_or(TenancyRejection(ErrorKind::NotFound.into()))?;
    Ok(with_security_headers(
        ([(CONTENT_TYPE, file.content_type)], file.bytes).into_response(),
    ))
}

/// The API router over `app`; `/metrics` serves `metrics` (see
/// [`MetricsEndpoint`] for who may read it). Serve it with connect info
/// (`into_make_service_with_connect_info`).
pub fn router(app: Arc<App>, metrics: MetricsEndpoint) -> Router {
    let tenancy = app.tenancy().clone();
    let api = Router::new()
        .route(
            "/api/v1/tenants",
            get(|State(app): State<Arc<App>>, RawQuery(q): RawQuery| async move {
                respond(app.list_tenants(q.as_deref().unwrap_or_default()).await)
            })
            .post(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, body: Body| async move {
                respond(app.create_tenant(&ctx, &audit, &read_body(body).await?).await)
            })
            .route_layer(RequireRoleLayer::new(Role::SuperAdmin)),
        )
        .route(
            "/api/v1/tenants/{id}",
            // Reading a tenant has no route policy: who may read it depends on
            // the tenant (see `App::get_tenant`).
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, Path(id): Path<String>| async move {
                respond(app.get_tenant(&ctx, &id).await)
            })
            .merge(
                patch(
                    |State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(id): Path<String>, body: Body| async move {
                        respond(app.patch_tenant(&ctx, &audit, &id, &read_body(body).await?).await)
                    },
                )
                .route_layer(RequireRoleLayer::new(Role::SuperAdmin)),
            )
            .merge(
                delete(
                    |State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(id): Path<String>| async move {
                        respond(app.erase_tenant(&ctx, &audit, &id).await)
                    },
                )
                .route_layer(RequireRoleLayer::new(Role::SuperAdmin)),
            ),
        )
        .route(
            "/api/v1/tenants/{id}/export",
            // Like reading a tenant: who may export it depends on the tenant.
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, Path(id): Path<String>| async move {
                let export = app.export(&ctx, &id).await?;
                Ok::<_, TenancyRejection>(
                    (
                        [(CONTENT_TYPE, HeaderValue::from_static(NDJSON))],
                        Body::from_stream(export.into_stream()),
                    )
                        .into_response(),
                )
            }),
        )
        .route(
            "/api/v1/apikeys",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, RawQuery(q): RawQuery| async move {
                respond(app.list_api_keys(&ctx, q.as_deref().unwrap_or_default()).await)
            })
            .post(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, body: Body| async move {
                respond(app.create_api_key(&ctx, &read_body(body).await?).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/apikeys/{key_id}",
            delete(
                |State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(key_id): Path<String>| async move {
                    respond(app.revoke_api_key(&ctx, &audit, &key_id).await)
                },
            )
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/apikeys/{key_id}/rotate",
            post(
                |State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(key_id): Path<String>, body: Body| async move {
                    respond(app.rotate_api_key(&ctx, &audit, &key_id, &read_body(body).await?).await)
                },
            )
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/security/refusals",
            get(|State(app): State<Arc<App>>| async move { respond(app.security_refusals()) })
                .route_layer(RequireRoleLayer::new(Role::SuperAdmin)),
        )
        .route(
            "/api/v1/rbac/permissions",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant| async move { respond(app.permissions(&ctx)) }),
        )
        .route(
            "/api/v1/telemetry",
            post(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, quota: Quota, body: Body| async move {
                respond(app.ingest(&ctx, &quota, &read_body(body).await?).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Operator)),
        )
        .route(
            "/api/v1/metrics/query",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, RawQuery(q): RawQuery| async move {
                respond(app.query_metrics(&ctx, q.as_deref().unwrap_or_default()).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Viewer)),
        )
        .route(
            "/api/v1/runbooks/{id}/trigger",
            post(|State(app): State<Arc<App>>, audit: Audit, Path(id): Path<String>| async move {
                respond(app.trigger_runbook(&audit, &id))
            })
            .route_layer(RequireRoleLayer::new(Role::Operator)),
        )
        .route(
            "/api/v1/incidents/{id}/ack",
            post(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(id): Path<String>| async move {
                respond(app.ack_incident(&ctx, &audit, &id))
            })
            .route_layer(RequireRoleLayer::new(Role::Operator)),
        )
        .route(
            "/api/v1/users",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, RawQuery(q): RawQuery| async move {
                respond(app.list_users(&ctx, q.as_deref().unwrap_or_default()).await)
            })
            .post(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, body: Body| async move {
                respond(app.create_user(&ctx, &audit, &read_body(body).await?).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/users/{id}",
            patch(
                |State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(id): Path<String>, body: Body| async move {
                    respond(app.patch_user(&ctx, &audit, &id, &read_body(body).await?).await)
                },
            )
            .delete(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, Path(id): Path<String>| async move {
                respond(app.delete_user(&ctx, &audit, &id).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/teams",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, RawQuery(q): RawQuery| async move {
                respond(app.list_teams(&ctx, q.as_deref().unwrap_or_default()).await)
            })
            .post(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, audit: Audit, body: Body| async move {
                respond(app.create_team(&ctx, &audit, &read_body(body).await?).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/audit",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, RawQuery(q): RawQuery| async move {
                respond(app.audit(&ctx, q.as_deref().unwrap_or_default()).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route(
            "/api/v1/usage",
            get(|State(app): State<Arc<App>>, Tenant(ctx): Tenant, RawQuery(q): RawQuery| async move {
                respond(app.usage(&ctx, q.as_deref().unwrap_or_default()).await)
            })
            .route_layer(RequireRoleLayer::new(Role::Admin)),
        )
        .route("/healthz", get(healthz))
        // The same handler behind tenancy: what tenancy costs, measured
        // against `/healthz` (benches/load.sh).
        .route("/api/v1/healthz", get(healthz))
        .route("/readyz", get(|State(app): State<Arc<App>>| async move { respond(app.ready().await) }))
        .route(openapi::DOCUMENT_PATH, get(openapi_document))
        // The Swagger UI's relative links need the trailing slash.
        .route("/docs", get(|| async { Redirect::permanent(openapi::DOCS_PATH) }))
        .route(openapi::DOCS_PATH, get(docs_file))
        .route("/docs/{*file}", get(docs_file))
        .route(
            "/metrics",
            get(
                |Extension(metrics): Extension<MetricsEndpoint>,
                 ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 headers: http::HeaderMap| async move {
                    let auth = headers.get(http::header::AUTHORIZATION).map(HeaderValue::as_bytes);
                    match metrics.render(Some(peer.ip()), auth) {
                        Ok(text) => ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
                        Err(e) => TenancyRejection(e).into_response(),
                    }
                },
            ),
        )
        .fallback(|| async { TenancyRejection(ErrorKind::NotFound.into()) })
        .method_not_allowed_fallback(|| async { TenancyRejection(ErrorKind::NotFound.into()) })
        .with_state(app);
    api.layer(Extension(metrics)).layer(
        TenancyLayer::new(tenancy)
            .exclude("/healthz")
            .exclude("/readyz")
            .exclude("/metrics")
            .exclude(openapi::DOCUMENT_PATH)
            .exclude("/docs"),
    )
}
