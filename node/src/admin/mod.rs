//! The admin listener (axum): open `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json` and the dashboard page at `/admin/` (which holds no data);
//! `/admin/v1/*` behind `Authorization: Bearer <admin_token>` (constant-time
//! compare) when a token is configured. Credential views never contain a
//! token, only its version, expiry and non-secret claims.

mod cluster;
mod dashboard;
mod openapi;
mod streams;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rhizome_proto::ErrorCode;
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::credentials::source::TokenError;
use crate::credentials::CredentialView;
use crate::error::ProxyError;
use crate::App;
pub use openapi::openapi_json;

/// An admin error, answered with the common JSON error shape.
struct AdminError(ProxyError);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.0.to_response("admin").into_response()
    }
}

/// The admin router over `app`.
pub fn router(app: Arc<App>) -> Router {
    let admin = Router::new()
        .route("/admin/v1/credentials", get(list_credentials))
        .route(
            "/admin/v1/credentials/{name}/refresh",
            post(refresh_credential),
        )
        .route("/admin/v1/credentials/{name}/token", delete(delete_token))
        .route("/admin/v1/sessions", get(list_sessions))
        .route("/admin/v1/streams", get(streams::list_streams))
        .route("/admin/v1/cluster", get(cluster::cluster_view))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            require_admin_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .route("/admin", get(dashboard::to_index))
        .route("/admin/", get(dashboard::index))
        .route("/admin/dashboard.js", get(dashboard::script))
        .route("/admin/dashboard.css", get(dashboard::style))
        .merge(admin)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// A known path asked with a method it does not serve: 405 in the common
/// error shape (axum adds the `Allow` header listing the methods it serves).
async fn method_not_allowed(method: axum::http::Method) -> AdminError {
    AdminError(ProxyError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not served here; see the Allow header"),
    ))
}

async fn require_admin_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(want) = &app.admin_token_digest {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if presented.is_empty() || !bool::from(got.ct_eq(want)) {
            return AdminError(ProxyError::new(
                ErrorCode::AdminUnauthorized,
                "missing or invalid admin token",
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// Health status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `starting`.
    pub status: &'static str,
    /// Node id.
    pub node: String,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz(State(app): State<Arc<App>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        node: app.node_id.clone(),
    })
}

/// Readiness: config loaded and listeners bound.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    if app.is_ready() {
        (
            StatusCode::OK,
            Json(Health {
                status: "ready",
                node: app.node_id.clone(),
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "starting",
                node: app.node_id.clone(),
            }),
        )
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let text = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Credentials of this node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialList {
    /// Node id.
    pub node: String,
    /// One entry per configured credential.
    pub credentials: Vec<CredentialView>,
}

/// Lists credentials with owner, expiry, version, cooldown and non-secret claims.
#[utoipa::path(get, path = "/admin/v1/credentials", tag = "admin",
    responses((status = 200, body = CredentialList), (status = 401, description = "`admin_unauthorized`")),
    security(("admin_token" = [])))]
async fn list_credentials(State(app): State<Arc<App>>) -> Json<CredentialList> {
    Json(CredentialList {
        node: app.node_id.clone(),
        credentials: app
            .credentials
            .iter()
            .map(|c| c.view(&app.ownership.owner(c)))
            .collect(),
    })
}

/// Obtains a new token for the credential now.
#[utoipa::path(post, path = "/admin/v1/credentials/{name}/refresh", tag = "admin",
    params(("name" = String, Path, description = "Credential name")),
    responses((status = 200, body = CredentialView), (status = 404, description = "`not_found`"),
        (status = 502, description = "`upstream_error`: the token endpoint failed"),
        (status = 503, description = "`state_store_unavailable`: shared state failed")),
    security(("admin_token" = [])))]
async fn refresh_credential(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<CredentialView>, AdminError> {
    let cred = app.credentials.get(&name).ok_or_else(|| not_found(&name))?;
    cred.refresh().await.map_err(|e| match e {
        TokenError::StateStore(e) => AdminError(e.into()),
        e => AdminError(ProxyError::new(
            ErrorCode::UpstreamError,
            format!("refresh failed: {e}"),
        )),
    })?;
    Ok(Json(cred.view(&app.ownership.owner(cred))))
}

/// Result of dropping a token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dropped {
    /// Credential name.
    pub name: String,
    /// Version dropped, if a token was cached.
    pub dropped_version: Option<u64>,
}

/// Drops the cached token; the next request obtains a new one.
#[utoipa::path(delete, path = "/admin/v1/credentials/{name}/token", tag = "admin",
    params(("name" = String, Path, description = "Credential name")),
    responses((status = 200, body = Dropped), (status = 404, description = "`not_found`")),
    security(("admin_token" = [])))]
async fn delete_token(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<Dropped>, AdminError> {
    let cred = app.credentials.get(&name).ok_or_else(|| not_found(&name))?;
    let dropped_version = cred.clear().await.map_err(|e| AdminError(e.into()))?;
    Ok(Json(Dropped {
        name,
        dropped_version,
    }))
}

/// One MCP session as the admin API shows it (never the upstream's session id).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Proxy session id.
    pub id: String,
    /// Route.
    pub route: String,
    /// Client that owns it.
    pub client: String,
    /// Pinned upstream target.
    pub target: String,
    /// Created, Unix ms.
    pub created_ms: u64,
}

/// A page of sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Sessions on this page.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` for the next page; absent at the end.
    pub next_cursor: Option<String>,
}

/// Paging parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size (1–1000, default 100; a Redis page may hold a few more or fewer).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

impl PageQuery {
    /// The paging parameters of `query`: a malformed query string or a
    /// `limit` outside 1–1000 is a `bad_request` in the common error shape.
    fn parse(
        query: Result<axum::extract::Query<PageQuery>, QueryRejection>,
    ) -> Result<(Option<String>, usize), AdminError> {
        let bad = |msg: String| AdminError(ProxyError::new(ErrorCode::BadRequest, msg));
        let axum::extract::Query(q) = query.map_err(|e| bad(e.body_text()))?;
        match q.limit.unwrap_or(100) {
            limit @ 1..=1000 => Ok((q.cursor, limit)),
            other => Err(bad(format!("limit must be 1 to 1000, not {other}"))),
        }
    }
}

/// Lists MCP sessions with cursor pagination.
#[utoipa::path(get, path = "/admin/v1/sessions", tag = "admin", params(PageQuery),
    responses((status = 200, body = SessionList), (status = 400, description = "`bad_request`: malformed `cursor` or `limit`"),
        (status = 503, description = "`state_store_unavailable`")),
    security(("admin_token" = [])))]
async fn list_sessions(
    State(app): State<Arc<App>>,
    query: Result<axum::extract::Query<PageQuery>, QueryRejection>,
) -> Result<Json<SessionList>, AdminError> {
    let (cursor, limit) = PageQuery::parse(query)?;
    let page = app
        .sessions
        .list(cursor.as_deref(), limit)
        .await
        .map_err(|e| AdminError(e.into()))?;
    Ok(Json(SessionList {
        sessions: page
            .items
            .into_iter()
            .map(|(id, r)| SessionView {
                id,
                route: r.route,
                client: r.client,
                target: r.target,
                created_ms: r.created_ms,
            })
            .collect(),
        next_cursor: page.next,
    }))
}

fn not_found(name: &str) -> AdminError {
    AdminError(ProxyError::new(
        ErrorCode::NotFound,
        format!("no credential \"{name}\""),
    ))
}

/// The admin token's digest, for constant-time comparison.
pub fn token_digest(token: &secrecy::SecretString) -> [u8; 32] {
    Sha256::digest(token.expose_secret().as_bytes()).into()
}
