//! The REST API under `/api/v1`, the WebSocket upgrade, health, metrics and the console
//! page. Every error is `{"code", "message"}` with the status [`status_of`] its code.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
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
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
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
        if self.0.code == ErrorCode::RateLimited {
            // Slots free up within seconds (an upload, a compilation).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // Lets the metrics middleware count errors by code without parsing bodies.
        response.extensions_mut().insert(self.0.code);
        response
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError(PlinthError::new(code, message))
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// Reads a request body of at most `limit` bytes. Handlers take the body unread
/// ([`Body`]) and call this only once the headers' token is authorized: an anonymous
/// client never makes the server hold a byte of its body (nor get `100 Continue`).
/// A body over the limit is refused: its rest is read and dropped (see [`discard`]) up
/// to another `limit` bytes, so a client that sends it all before reading gets the 413
/// rather than a reset; a declared length over twice the limit is refused unread.
///
/// The whole body must arrive within `within` (`http.body_read_timeout`): a client that
/// trickles it gets `408 REQUEST_TIMEOUT`, and its upload slot is free again.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: std::time::Duration,
) -> ApiResult<Bytes> {
    tokio::time::timeout(within, read_body_within(headers, body, limit))
        .await
        .unwrap_or_else(|_| {
            Err(error(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    within.as_secs_f64()
                ),
            ))
        })
}

async fn read_body_within(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_large = || {
        error(
            ErrorCode::PayloadTooLarge,
            format!("request body over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        if declared <= 2 * limit as u64 {
            discard(&mut chunks, declared).await;
        }
        return Err(too_large());
    }
    let mut read = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                ErrorCode::InvalidRequest,
                format!("reading the request body: {e}"),
            )
        })?;
        if read.len() + chunk.len() > limit {
            discard(&mut chunks, limit as u64).await;
            return Err(too_large());
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

/// Reads and drops up to `bytes` more of a refused body, for at most 10 s: memory stays
/// flat, and only an authorized client holding its slot gets here. What is left unread
/// then closes the connection.
async fn discard(chunks: &mut axum::body::BodyDataStream, bytes: u64) {
    let mut left = bytes;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while left > 0
            && let Some(Ok(chunk)) = chunks.next().await
        {
            left = left.saturating_sub(chunk.len() as u64);
        }
    })
    .await;
}

/// A JSON request body of at most `http.max_body_bytes`; see [`read_body`].
async fn json_body<T: DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<T> {
    let bytes = small_body(app, headers, body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))
}

/// A body of at most `http.max_body_bytes`, read once the request is authorized and its
/// token holds a body slot ([`App::body_slot`]).
async fn small_body(app: &App, headers: &HeaderMap, body: Body) -> ApiResult<Bytes> {
    let _slot = app.body_slot(&token_key(headers))?;
    let http = &app.config.http;
    read_body(headers, body, http.max_body_bytes, http.body_read_timeout).await
}

/// What body slots are counted by: the token, as a hash (the secret is not kept).
fn token_key(headers: &HeaderMap) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token_of(headers).unwrap_or_default().as_bytes());
    hex::encode(&digest[..8])
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
    // Unknown, revoked or expired: UNAUTHENTICATED, the message says which.
    Ok(app.registry.principal(token).await?)
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
    let tenant_routes = Router::new()
        .route("/", get(get_tenant).delete(delete_tenant))
        .route("/quota", axum::routing::put(put_quota))
        .route("/tokens", post(create_token).get(list_tokens))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/components", post(upload).get(list_components))
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
        .route("/tokens", get(list_operator_tokens))
        .route("/tokens/{id}", axum::routing::delete(revoke_operator_token))
        .route("/ws", get(websocket))
        .nest("/tenants/{tenant}", tenant_routes);
    let mut router = Router::new()
        .route("/", get(console))
        .route("/console.js", get(console_script))
        .route("/console.css", get(console_style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    // With a metrics address of its own, /metrics is only there (`metrics_router`).
    if app.config.metrics_listen.is_none() {
        router = router.route("/metrics", get(operator_metrics));
    }
    finish(router.nest("/api/v1", api), app)
}

/// `/metrics` alone, without a token: for `metrics_listen`, an address only Prometheus
/// reaches.
pub fn metrics_router(app: Arc<App>) -> Router {
    finish(Router::new().route("/metrics", get(metrics)), app)
}

/// The fallbacks and the layers every response passes through.
fn finish(router: Router<Arc<App>>, app: Arc<App>) -> Router {
    let policy = ResponsePolicy::new(&app.config.public_origins());
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_errors,
        ))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(close_unread_bodies))
        .layer(axum::middleware::map_response_with_state(
            Arc::new(policy),
            security_headers,
        ))
        .with_state(app)
}

/// Headers on every response: no script, style or connection but the console's own,
/// no MIME sniffing, no referrer (console URLs carry a token in the fragment), and
/// nothing kept in caches (token creation answers a secret).
struct ResponsePolicy {
    content_security_policy: HeaderValue,
}

impl ResponsePolicy {
    fn new(public_origins: &[String]) -> Self {
        // The console's WebSocket: `ws:`/`wss:` of the origins it is served from.
        let sockets: Vec<String> = public_origins
            .iter()
            .filter_map(|o| {
                o.strip_prefix("https://")
                    .map(|rest| format!("wss://{rest}"))
                    .or_else(|| o.strip_prefix("http://").map(|rest| format!("ws://{rest}")))
            })
            .collect();
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sockets.join(" ")
        );
        ResponsePolicy {
            content_security_policy: HeaderValue::from_str(&policy).unwrap_or_else(|_| {
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'",
                )
            }),
        }
    }
}

async fn security_headers(
    State(policy): State<Arc<ResponsePolicy>>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        policy.content_security_policy.clone(),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answers `Connection: close` when the handler did not read the request's body to its
/// end (refused before reading it, or over the size cap): the client stops sending, and
/// the connection is not reused with a body still in it.
async fn close_unread_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(WatchedBody {
            inner,
            finished: finished.clone(),
        })
    });
    let mut response = next.run(request).await;
    if !finished.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to its end.
struct WatchedBody {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

// The console's script and style are files of their own: the Content-Security-Policy
// allows no inline script or style.
async fn console_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
}

async fn console_style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
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

/// `/metrics` on the main listener: operators only, since the series name every tenant
/// and extension.
async fn operator_metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(refused) = operator(&app, &headers).await {
        return refused.into_response();
    }
    metrics(State(app)).await
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
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    operator(&app, &headers).await?;
    let request: NewTenant = json_body(&app, &headers, body).await?;
    let name = request.name.unwrap_or_else(|| request.id.clone());
    let tenant = app.create_tenant(&request.id, &name).await?;
    Ok((StatusCode::CREATED, Json(json!(tenant))))
}

async fn list_tenants(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    operator(&app, &headers).await?;
    let tenants = app.registry.tenants().await?;
    Ok(Json(json!({ "tenants": tenants })))
}

/// Deletes a tenant with everything it has; see [`App::delete_tenant`].
async fn delete_tenant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult {
    operator(&app, &headers).await?;
    let removed = app.delete_tenant(&tenant).await?;
    Ok(Json(json!({"deleted": tenant, "removed": removed})))
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
    body: Body,
) -> ApiResult {
    operator(&app, &headers).await?;
    let quota: Option<TenantQuota> = json_body(&app, &headers, body).await?;
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
    /// The token stops working this many seconds after it is made.
    #[serde(default)]
    expires_in_s: Option<u64>,
    /// The token stops working at this time, in ms since the Unix epoch.
    #[serde(default)]
    expires_at_ms: Option<i64>,
}

/// Longest a token may be made to last when it expires: ten years.
const MAX_TOKEN_LIFE_S: u64 = 10 * 365 * 24 * 3600;

impl NewToken {
    /// When the asked token expires (ms since the Unix epoch), or never.
    fn expires_ms(&self, now_ms: i64) -> ApiResult<Option<i64>> {
        match (self.expires_in_s, self.expires_at_ms) {
            (Some(_), Some(_)) => Err(error(
                ErrorCode::InvalidRequest,
                "give expires_in_s or expires_at_ms, not both",
            )),
            (Some(seconds), None) if seconds == 0 || seconds > MAX_TOKEN_LIFE_S => Err(error(
                ErrorCode::InvalidRequest,
                format!("expires_in_s must be within 1..={MAX_TOKEN_LIFE_S}"),
            )),
            (Some(seconds), None) => Ok(Some(now_ms + seconds as i64 * 1_000)),
            (None, Some(at)) if at <= now_ms => Err(error(
                ErrorCode::InvalidRequest,
                format!("expires_at_ms {at} is not in the future (now {now_ms})"),
            )),
            (None, Some(at)) if at > now_ms + MAX_TOKEN_LIFE_S as i64 * 1_000 => Err(error(
                ErrorCode::InvalidRequest,
                "expires_at_ms is more than ten years away",
            )),
            (None, at) => Ok(at),
        }
    }
}

async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: NewToken = json_body(&app, &headers, body).await?;
    if request.role == Role::Operator {
        return Err(error(
            ErrorCode::Forbidden,
            "operator tokens are not made through a tenant",
        ));
    }
    let expires_ms = request.expires_ms(crate::registry::now_ms())?;
    let (token, info) = app
        .registry
        .create_token_until(Some(&tenant), request.role, &request.label, expires_ms)
        .await?;
    // The secret is in this answer only; listing shows the rest.
    let mut shown = json!(info);
    shown["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn list_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    Ok(Json(
        json!({"tokens": app.registry.tokens(Some(&tenant)).await?}),
    ))
}

/// Revokes a token: at once on this node (its sockets here are closed too), within
/// [`crate::registry::TOKEN_MEMORY`] on the others.
async fn revoke_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    app.registry.revoke_token(Some(&tenant), &id).await?;
    app.hub.revoke_token(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// The operator tokens, never their secrets.
async fn list_operator_tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    operator(&app, &headers).await?;
    Ok(Json(json!({"tokens": app.registry.tokens(None).await?})))
}

/// Revokes an operator token, the caller's own included: like a tenant's token, at once
/// on this node and within [`crate::registry::TOKEN_MEMORY`] on the others. A node whose
/// `data_dir/operator-token` no longer works makes a new one when it starts.
async fn revoke_operator_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    operator(&app, &headers).await?;
    app.registry.revoke_token(None, &id).await?;
    app.hub.revoke_token(&id);
    Ok(StatusCode::NO_CONTENT)
}

// ---- components ---------------------------------------------------------------------

async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    // The slot bounds how many bodies of up to `max_upload_bytes` are held at once;
    // taken before a byte is read.
    let _slot = app.upload_slot(&tenant)?;
    let http = &app.config.http;
    let bytes = read_body(
        &headers,
        body,
        http.max_upload_bytes,
        http.body_read_timeout,
    )
    .await?;
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
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let principal = authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: InstallRequest = json_body(&app, &headers, body).await?;
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
    body: Body,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: UpgradeRequest = json_body(&app, &headers, body).await?;
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
    body: Body,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let bytes = small_body(&app, &headers, body).await?;
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))?
    };
    let installation = app.installation(&tenant, &id).await?;
    // An action the extension does not declare is a missing resource, not a fault of
    // the extension: answered without calling it.
    let version = app
        .registry
        .component(&tenant, &installation.component)
        .await?;
    let declared = version.descriptor["actions"]
        .as_array()
        .is_some_and(|actions| actions.iter().any(|a| a["name"] == name.as_str()));
    if !declared {
        return Err(error(
            ErrorCode::NotFound,
            format!(
                "{}@{} declares no action {name:?}",
                version.extension, version.version
            ),
        ));
    }
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
    body: Body,
) -> ApiResult {
    authorize(&app, &headers, &tenant, Need::Admin).await?;
    let request: DashboardBody = json_body(&app, &headers, body).await?;
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

/// Whether a browser on `origin` may open the socket: the server's public origins (the
/// console page) or the configured others. Never derived from the request's `Host`,
/// which a page on any origin reaching this server (DNS rebinding) controls.
fn origin_allowed(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser: nothing for a cross-site page to abuse.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    app.config.allowed_origins.iter().any(|o| o == origin)
        || app.config.public_origins().iter().any(|o| o == origin)
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
    // Taken before the upgrade, so sockets racing each other cannot all pass the caps.
    let seat = match crate::ws::Hub::seat(&app, &principal) {
        Ok(seat) => seat,
        Err(e) => return refuse(ApiError(e)),
    };
    // The socket keeps the token's hash, not its secret, to re-check it while open.
    let token_hash = crate::registry::token_hash(token.as_deref().unwrap_or_default());
    let max = app.config.websocket.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::ws::serve(app, principal, token_hash, socket, seat))
}
