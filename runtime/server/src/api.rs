//! The REST API under `/api/v1`, the WebSocket upgrade, health, metrics and the console
//! page. Every error is `{"code", "message"}` with the status [`status_of`] its code.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plinth_host::{Call, ErrorCode, PlinthError, TenantQuota};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::compression::CompressionLayer;

use crate::app::{App, InstallRequest, UpgradeRequest};
use crate::registry::{Principal, Role, Tile};

/// The HTTP status of each error code; one status per code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::CapabilityDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict
        | ErrorCode::GrantsRequired
        | ErrorCode::InstallationDisabled
        | ErrorCode::InstallationParked => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotAComponent
        | ErrorCode::InvalidComponent
        | ErrorCode::WorldMismatch
        | ErrorCode::InvalidConfig => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::RateLimited | ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // The extension failed: the server is a gateway to the tenant's code.
        ErrorCode::FuelExhausted
        | ErrorCode::MemoryLimit
        | ErrorCode::StackOverflow
        | ErrorCode::OutputTooLarge
        | ErrorCode::GuestTrap
        | ErrorCode::GuestAbiError
        | ErrorCode::GuestError => StatusCode::BAD_GATEWAY,
        ErrorCode::CompileTimeout | ErrorCode::Unavailable | ErrorCode::DbBusy => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::ExecutionTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// An API error: the response is `{"code", "message"}`.
pub struct ApiError(pub PlinthError);

impl From<PlinthError> for ApiError {
    fn from(error: PlinthError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let mut response = (status, Json(&self.0)).into_response();
        // Lets the metrics middleware count errors by code without parsing bodies.
        response.extensions_mut().insert(self.0.code);
        response
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError(PlinthError::new(code, message))
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

fn body_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                ErrorCode::PayloadTooLarge,
                format!("request body too large: {}", rejection.body_text()),
            )
        } else {
            error(ErrorCode::InvalidRequest, rejection.body_text())
        }
    })
}

fn token_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn principal_of(app: &App, token: Option<&str>) -> ApiResult<Principal> {
    let Some(token) = token else {
        return Err(error(
            ErrorCode::Unauthenticated,
            "send a token: Authorization: Bearer plt_…",
        ));
    };
    app.registry
        .authenticate(token)
        .await?
        .ok_or_else(|| error(ErrorCode::Unauthenticated, "unknown token"))
}

/// What a principal needs for a request on `tenant`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// Read: viewers, tenant admins, operators.
    View,
    /// Change: tenant admins and operators.
    Admin,
}

async fn authorize(
    app: &App,
    headers: &HeaderMap,
    tenant: &str,
    need: Need,
) -> ApiResult<Principal> {
    let principal = principal_of(app, token_of(headers)).await?;
    let allowed = match principal.role {
        Role::Operator => true,
        Role::TenantAdmin => principal.tenant.as_deref() == Some(tenant),
        Role::Viewer => principal.tenant.as_deref() == Some(tenant) && need == Need::View,
    };
    if !allowed {
        // Another tenant's token learns nothing about this tenant.
        return Err(
            if principal.tenant.as_deref() != Some(tenant) && principal.role != Role::Operator {
                error(ErrorCode::NotFound, format!("no tenant {tenant}"))
            } else {
                error(
                    ErrorCode::Forbidden,
                    format!("a {:?} token cannot do this", principal.role).to_lowercase(),
                )
            },
        );
    }
    if principal.role == Role::Operator {
        app.registry.tenant(tenant).await?;
    }
    Ok(principal)
}

async fn operator(app: &App, headers: &HeaderMap) -> ApiResult<Principal> {
    let principal = principal_of(app, token_of(headers)).await?;
    if principal.role != Role::Operator {
        return Err(error(ErrorCode::Forbidden, "operators only"));
    }
    Ok(principal)
}

pub fn router(app: Arc<App>) -> Router {
    let http = app.config.http.clone();
    let tenant_routes = Router::new()
        .route("/", get(get_tenant))
        .route("/quota", axum::routing::put(put_quota))
        .route("/tokens", post(create_token))
        .route(
            "/components",
            post(upload)
                .get(list_components)
                .layer(DefaultBodyLimit::max(http.max_upload_bytes)),
        )
        .route("/components/{hash}", get(get_component))
        .route("/installations", post(install).get(list_installations))
        .route(
            "/installations/{id}",
            get(get_installation).delete(uninstall),
        )
        .route("/installations/{id}/upgrade", post(upgrade))
        .route("/installations/{id}/enable", post(enable))
        .route("/installations/{id}/disable", post(disable))
        .route("/installations/{id}/data", get(render))
        .route("/installations/{id}/actions/{action}", post(action))
        .route("/installations/{id}/receipts", get(receipts))
        .route("/installations/{id}/logs", get(logs))
        .route("/dashboards", get(list_dashboards))
        .route(
            "/dashboards/{name}",
            get(get_dashboard)
                .put(put_dashboard)
                .delete(delete_dashboard),
        );
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/me", get(me))
        .route("/tenants", post(create_tenant).get(list_tenants))
        .route("/ws", get(websocket))
        .nest("/tenants/{tenant}", tenant_routes)
        .layer(DefaultBodyLimit::max(http.max_body_bytes));
    Router::new()
        .route("/", get(console))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_errors,
        ))
        .layer(CompressionLayer::new())
        .with_state(app)
}

async fn count_errors(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        app.metrics.record_http_error(code.as_str());
    }
    response
}

async fn not_found() -> ApiError {
    error(
        ErrorCode::NotFound,
        "no such route; see /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    error(
        ErrorCode::InvalidRequest,
        "method not allowed on this route; see /api/v1/openapi.json",
    )
}

async fn console() -> Html<&'static str> {
    Html(include_str!("console.html"))
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the metadata database answers.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.registry.store().query("SELECT 1", vec![]).await {
        Ok(_) => Json(json!({"status": "ready", "node": app.node_id})).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let backends = app.backends();
    let text = app.metrics.render(&[
        (
            "plinth_cache_fallback_calls",
            "Cache calls answered in-process while Redis was unreachable.",
            backends.cache.fallback_calls() as f64,
        ),
        (
            "plinth_broadcast_local_only_deliveries",
            "Messages delivered on this node only while Redis was unreachable.",
            backends.broadcast.local_only_deliveries() as f64,
        ),
        (
            "plinth_ws_relays",
            "Tenant topics this node relays to WebSocket clients.",
            app.hub.relay_count() as f64,
        ),
        (
            "plinth_uptime_seconds",
            "Seconds since this node started.",
            app.uptime().as_secs_f64(),
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let principal = principal_of(&app, token_of(&headers)).await?;
    Ok(Json(json!(principal)))
}

// ---- tenants and tokens -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

async fn create_tenant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    operator(&app, &headers).await?;
    let request: NewTenant = body_json(body)?;
    let name = request.name.unwrap_or_else(|| request.id.clone());
    let tenant = app.registry.create_tenant(&request.id, &name).await?;
    Ok((StatusCode::CREATED, Json(json!(tenant))))
}

async fn list_tenants(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    operator(&app, &headers).await?;
    let tenants = app.registry.tenants().await?;
    Ok(Json(json!({ "tenants": tenants })))
}

async fn get_tenant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    let found = app.registry.tenant(&tenant).await?;
    let quotas = app.sandbox.tenant_quotas();
    let (running, fuel_used) = quotas.usage_of(&tenant);
    Ok(Json(json!({
        "id": found.id,
        "name": found.name,
        "created_ms": found.created_ms,
        "quota": quotas.quota_of(&tenant),
        "own_quota": found.quota.is_some(),
        "usage": {"running_calls": running, "fuel_used_this_minute": fuel_used},
    })))
}

async fn put_quota(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    operator(&app, &headers).await?;
    let quota: Option<TenantQuota> = body_json(body)?;
    if quota.as_ref().is_some_and(|q| q.concurrent_calls == 0) {
        return Err(error(
            ErrorCode::InvalidRequest,
            "concurrent_calls must be at least 1",
        ));
    }
    app.registry.set_quota(&tenant, quota.as_ref()).await?;
    app.sandbox.tenant_quotas().set(&tenant, quota);
    Ok(Json(
        json!({"quota": app.sandbox.tenant_quotas().quota_of(&tenant)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    role: Role,
    #[serde(default)]
    label: String,
}

async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: NewToken = body_json(body)?;
    if request.role == Role::Operator {
        return Err(error(
            ErrorCode::Forbidden,
            "operator tokens are not made through a tenant",
        ));
    }
    let token = app
        .registry
        .create_token(Some(&tenant), request.role, &request.label)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "role": request.role, "tenant": tenant})),
    ))
}

// ---- components ---------------------------------------------------------------------

async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let bytes = body_bytes(body)?;
    if bytes.is_empty() {
        return Err(error(
            ErrorCode::InvalidRequest,
            "send the component's bytes as the request body",
        ));
    }
    let uploaded = app.upload(&tenant, bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(json!(uploaded))))
}

async fn list_components(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    Ok(Json(
        json!({"components": app.registry.components(&tenant).await?}),
    ))
}

async fn get_component(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, hash)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    Ok(Json(json!(app.registry.component(&tenant, &hash).await?)))
}

// ---- installations ------------------------------------------------------------------

async fn install(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let principal = authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: InstallRequest = body_json(body)?;
    let installation = app
        .install(&tenant, request, principal.role == Role::Operator)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(installation))))
}

async fn list_installations(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    Ok(Json(
        json!({"installations": app.registry.installations(&tenant).await?}),
    ))
}

async fn get_installation(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    let installation = app.registry.installation(&tenant, &id).await?;
    let mut shown = json!(installation);
    shown["status"] = json!(match (&installation.parked, installation.enabled) {
        (Some(_), _) => "parked",
        (None, true) => "enabled",
        (None, false) => "disabled",
    });
    Ok(Json(shown))
}

async fn uninstall(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    app.uninstall(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn upgrade(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: UpgradeRequest = body_json(body)?;
    let (diff, installation) = app.upgrade(&tenant, &id, request).await?;
    Ok(Json(json!({"diff": diff, "installation": installation})))
}

async fn enable(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    Ok(Json(json!(app.set_enabled(&tenant, &id, true).await?)))
}

async fn disable(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    Ok(Json(json!(app.set_enabled(&tenant, &id, false).await?)))
}

/// The body of a render: `{"views": […], "receipt": {…}}`, serialized straight from the
/// call's result (the hot path: no intermediate JSON tree for the receipt).
pub fn render_body(rendered: &Value, receipt: &plinth_host::Receipt) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        views: &'a Value,
        receipt: &'a plinth_host::Receipt,
    }
    serde_json::to_vec(&Body {
        views: &rendered["views"],
        receipt,
    })
    .unwrap_or_default()
}

async fn render(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    authorize(&app, &headers, &tenant, Need::View).await?;
    let Query(params) = query.map_err(|e| error(ErrorCode::InvalidRequest, e.body_text()))?;
    let installation = app.installation(&tenant, &id).await?;
    let report = app.render(&installation, params).await?;
    let rendered = report.outcome.map_err(ApiError)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        render_body(&rendered, &report.receipt),
    ))
}

async fn action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id, name)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let bytes = body_bytes(body)?;
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))?
    };
    let installation = app.installation(&tenant, &id).await?;
    let report = app
        .call(
            &installation,
            Call::Action {
                name,
                config: installation.config.clone(),
                body,
            },
        )
        .await?;
    let receipt = report.receipt;
    let response = report.outcome.map_err(ApiError)?;
    Ok(Json(json!({"response": response, "receipt": receipt})))
}

async fn receipts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    app.registry.installation(&tenant, &id).await?;
    Ok(Json(json!({"receipts": app.recent_receipts(&tenant, &id)})))
}

async fn logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    app.registry.installation(&tenant, &id).await?;
    let scope = plinth_host::Scope::new(&tenant, &id)?;
    Ok(Json(json!({
        "lines": app.backends().log.recent(&scope, 200),
        "errors": app.recent_errors(&tenant, &id),
    })))
}

// ---- dashboards ---------------------------------------------------------------------

async fn list_dashboards(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    Ok(Json(
        json!({"dashboards": app.registry.dashboards(&tenant).await?}),
    ))
}

async fn get_dashboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::View).await?;
    Ok(Json(json!(app.registry.dashboard(&tenant, &name).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardBody {
    tiles: Vec<Tile>,
}

async fn put_dashboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: DashboardBody = body_json(body)?;
    if request.tiles.len() > 100 {
        return Err(error(
            ErrorCode::InvalidRequest,
            "at most 100 tiles on a dashboard",
        ));
    }
    for tile in &request.tiles {
        app.registry
            .installation(&tenant, &tile.installation)
            .await?;
    }
    let dashboard = app
        .registry
        .put_dashboard(&tenant, &name, &request.tiles)
        .await?;
    let _ = app
        .backends()
        .broadcast
        .publish(
            &tenant,
            &format!("dashboard/{name}"),
            json!({"type": "layout", "dashboard": dashboard}),
        )
        .await;
    Ok(Json(json!(dashboard)))
}

async fn delete_dashboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    app.registry.delete_dashboard(&tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- WebSocket ----------------------------------------------------------------------

#[derive(Deserialize)]
struct WsQuery {
    #[serde(default)]
    token: Option<String>,
}

/// Whether a browser on `origin` may open the socket: the configured origins, or the
/// server's own (the console page).
fn origin_allowed(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser: nothing for a cross-site page to abuse.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if app.config.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

async fn websocket(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let refuse = |e: ApiError| {
        app.metrics.ws_rejected.fetch_add(1, Ordering::Relaxed);
        e.into_response()
    };
    if !origin_allowed(&app, &headers) {
        return refuse(error(
            ErrorCode::Forbidden,
            "this Origin may not open the WebSocket; see allowed_origins",
        ));
    }
    let query_token = query.ok().and_then(|Query(q)| q.token);
    let token = token_of(&headers).map(str::to_owned).or(query_token);
    let principal = match principal_of(&app, token.as_deref()).await {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return refuse(error(
                ErrorCode::InvalidRequest,
                format!("not a WebSocket upgrade: {}", e.body_text()),
            ));
        }
    };
    let max = app.config.websocket.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::ws::serve(app, principal, socket))
}
