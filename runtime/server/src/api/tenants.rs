//! Tenants, their quotas and tokens, and the caller itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use plinth_host::{ErrorCode, TenantQuota};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, Caller, Operator, Viewer};
use super::body::JsonBody;
use super::error::{ApiResult, error};
use super::paths::{TenantPath, TenantTokenPath, TokenPath};
use crate::app::App;
use crate::registry::{Principal, Role, Tenant, TenantRemoval, TokenInfo, now_ms};

/// The principal of the token.
#[utoipa::path(get, path = "/me", tag = "tokens",
    responses((status = 200, description = "Who the token acts as", body = Principal)))]
pub async fn me(Caller(principal): Caller) -> Json<Principal> {
    Json(principal)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1 to 63 of `[a-z0-9-]`, not starting with `-`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    id: String,
    /// Shown in the console; the id when absent.
    #[serde(default)]
    name: Option<String>,
}

/// Creates a tenant. Anything an earlier tenant of the same id left is dropped first.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, description = "Created", body = Tenant),
              (status = 409, description = "CONFLICT: the tenant exists", body = plinth_host::PlinthError)))]
pub async fn create_tenant(
    State(app): State<Arc<App>>,
    _: Operator,
    JsonBody(request): JsonBody<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let name = request.name.unwrap_or_else(|| request.id.clone());
    let tenant = app.tenants.create(&request.id, &name).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    tenants: Vec<Tenant>,
}

/// Every tenant.
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    responses((status = 200, description = "The tenants", body = TenantList)))]
pub async fn list_tenants(State(app): State<Arc<App>>, _: Operator) -> ApiResult<Json<TenantList>> {
    Ok(Json(TenantList {
        tenants: app.registry.tenants().await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TenantDeleted {
    deleted: String,
    removed: TenantRemoval,
}

/// Deletes a tenant and everything it has: tokens, installations, components,
/// dashboards, its database, cache keys, topics and log lines.
#[utoipa::path(delete, path = "/tenants/{tenant}", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "What was removed", body = TenantDeleted)))]
pub async fn delete_tenant(
    State(app): State<Arc<App>>,
    _: Operator,
    Path(TenantPath { tenant }): Path<TenantPath>,
) -> ApiResult<Json<TenantDeleted>> {
    let removed = app.tenants.delete(&tenant).await?;
    Ok(Json(TenantDeleted {
        deleted: tenant,
        removed,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    running_calls: usize,
    fuel_used_this_minute: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    id: String,
    name: String,
    created_ms: i64,
    /// The quota that applies: the tenant's own or the server's default.
    quota: TenantQuota,
    own_quota: bool,
    usage: Usage,
}

/// A tenant, its quota and live usage on this node.
#[utoipa::path(get, path = "/tenants/{tenant}", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The tenant", body = TenantView)))]
pub async fn get_tenant(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> ApiResult<Json<TenantView>> {
    let found = app.registry.tenant(&viewer.tenant).await?;
    let quotas = app.sandbox.tenant_quotas();
    let (running_calls, fuel_used_this_minute) = quotas.usage_of(&found.id);
    Ok(Json(TenantView {
        quota: quotas.quota_of(&found.id),
        own_quota: found.quota.is_some(),
        id: found.id,
        name: found.name,
        created_ms: found.created_ms,
        usage: Usage {
            running_calls,
            fuel_used_this_minute,
        },
    }))
}

#[derive(Serialize, ToSchema)]
pub struct QuotaView {
    quota: TenantQuota,
}

/// Sets a tenant's quota, or `null` for the server's default.
#[utoipa::path(put, path = "/tenants/{tenant}/quota", tag = "tenants", params(TenantPath),
    request_body(content = Option<TenantQuota>, description = "The tenant's own quota, or null"),
    responses((status = 200, description = "The quota that now applies", body = QuotaView),
              (status = 422, description = "INVALID_VALUE: a fuel budget with fuel metering off", body = plinth_host::PlinthError)))]
pub async fn put_quota(
    State(app): State<Arc<App>>,
    _: Operator,
    Path(TenantPath { tenant }): Path<TenantPath>,
    JsonBody(quota): JsonBody<Option<TenantQuota>>,
) -> ApiResult<Json<QuotaView>> {
    app.registry.tenant(&tenant).await?;
    let quota = app.tenants.set_quota(&tenant, quota).await?;
    Ok(Json(QuotaView { quota }))
}

/// Roles a tenant's token may have.
#[derive(Deserialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum TenantRole {
    TenantAdmin,
    Viewer,
    Publisher,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    role: TenantRole,
    #[serde(default)]
    #[schema(max_length = 200)]
    label: String,
    /// The token stops working this many seconds after it is made.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 315_360_000)]
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
                ErrorCode::InvalidValue,
                "give expires_in_s or expires_at_ms, not both",
            )),
            (Some(seconds), None) if seconds == 0 || seconds > MAX_TOKEN_LIFE_S => Err(error(
                ErrorCode::InvalidValue,
                format!("expires_in_s must be within 1..={MAX_TOKEN_LIFE_S}"),
            )),
            (Some(seconds), None) => Ok(Some(now_ms + seconds as i64 * 1_000)),
            (None, Some(at)) if at <= now_ms => Err(error(
                ErrorCode::InvalidValue,
                format!("expires_at_ms {at} is not in the future (now {now_ms})"),
            )),
            (None, Some(at)) if at > now_ms + MAX_TOKEN_LIFE_S as i64 * 1_000 => Err(error(
                ErrorCode::InvalidValue,
                "expires_at_ms is more than ten years away",
            )),
            (None, at) => Ok(at),
        }
    }
}

/// A token just made: its secret is in this answer only.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The secret: `Authorization: Bearer <token>`.
    token: String,
}

/// Creates a token of the tenant; the secret is shown once.
#[utoipa::path(post, path = "/tenants/{tenant}/tokens", tag = "tokens", params(TenantPath),
    request_body = NewToken,
    responses((status = 201, description = "Created", body = CreatedToken)))]
pub async fn create_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    JsonBody(request): JsonBody<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let expires_ms = request.expires_ms(now_ms())?;
    let role = match request.role {
        TenantRole::TenantAdmin => Role::TenantAdmin,
        TenantRole::Viewer => Role::Viewer,
        TenantRole::Publisher => Role::Publisher,
    };
    let (token, info) = app
        .registry
        .create_token_until(Some(&admin.tenant), role, &request.label, expires_ms)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenInfo>,
}

/// The tenant's tokens, never their secrets.
#[utoipa::path(get, path = "/tenants/{tenant}/tokens", tag = "tokens", params(TenantPath),
    responses((status = 200, description = "The tokens", body = TokenList)))]
pub async fn list_tokens(State(app): State<Arc<App>>, admin: Admin) -> ApiResult<Json<TokenList>> {
    Ok(Json(TokenList {
        tokens: app.registry.tokens(Some(&admin.tenant)).await?,
    }))
}

/// Revokes a token: at once on this node (its sockets here are closed too), within
/// 5 s on the others, whose sockets of it close with 4401.
#[utoipa::path(delete, path = "/tenants/{tenant}/tokens/{id}", tag = "tokens",
    params(TenantTokenPath),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(TenantTokenPath { id, .. }): Path<TenantTokenPath>,
) -> ApiResult<StatusCode> {
    app.registry.revoke_token(Some(&admin.tenant), &id).await?;
    app.hub.revoke_token(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// The operator tokens, never their secrets.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, description = "The operator tokens", body = TokenList)))]
pub async fn list_operator_tokens(
    State(app): State<Arc<App>>,
    _: Operator,
) -> ApiResult<Json<TokenList>> {
    Ok(Json(TokenList {
        tokens: app.registry.tokens(None).await?,
    }))
}

/// Revokes an operator token, the caller's own included: at once on this node and
/// within 5 s on the others. A node whose `data_dir/operator-token` no longer works
/// makes a new one when it starts.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(TokenPath),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_operator_token(
    State(app): State<Arc<App>>,
    _: Operator,
    Path(TokenPath { id }): Path<TokenPath>,
) -> ApiResult<StatusCode> {
    app.registry.revoke_token(None, &id).await?;
    app.hub.revoke_token(&id);
    Ok(StatusCode::NO_CONTENT)
}
