//! Dashboards: named layouts of tiles, one tile per installation.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use plinth_host::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::{Admin, Viewer};
use super::body::JsonBody;
use super::error::{ApiError, ApiResult, error};
use super::paths::{DashboardPath, TenantPath};
use crate::app::App;
use crate::registry::{Dashboard, Tile};

/// Tiles a dashboard may have.
const MAX_TILES: usize = 100;

#[derive(Serialize, ToSchema)]
pub struct DashboardList {
    dashboards: Vec<Dashboard>,
}

/// The tenant's dashboards.
#[utoipa::path(get, path = "/tenants/{tenant}/dashboards", tag = "dashboards",
    params(TenantPath),
    responses((status = 200, description = "The dashboards", body = DashboardList)))]
pub async fn list_dashboards(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> ApiResult<Json<DashboardList>> {
    Ok(Json(DashboardList {
        dashboards: app.registry.dashboards(&viewer.tenant).await?,
    }))
}

/// One dashboard.
#[utoipa::path(get, path = "/tenants/{tenant}/dashboards/{name}", tag = "dashboards",
    params(DashboardPath),
    responses((status = 200, description = "The dashboard", body = Dashboard)))]
pub async fn get_dashboard(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(DashboardPath { name, .. }): Path<DashboardPath>,
) -> ApiResult<Json<Dashboard>> {
    Ok(Json(app.registry.dashboard(&viewer.tenant, &name).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardBody {
    /// At most 100; each names an installation of the tenant.
    #[schema(max_items = 100)]
    tiles: Vec<Tile>,
}

/// Creates or replaces a dashboard; viewers subscribed to `dashboard/<name>` get the
/// new layout.
#[utoipa::path(put, path = "/tenants/{tenant}/dashboards/{name}", tag = "dashboards",
    params(DashboardPath), request_body = DashboardBody,
    responses((status = 200, description = "The dashboard", body = Dashboard)))]
pub async fn put_dashboard(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(DashboardPath { name, .. }): Path<DashboardPath>,
    JsonBody(request): JsonBody<DashboardBody>,
) -> ApiResult<Json<Dashboard>> {
    if request.tiles.len() > MAX_TILES {
        return Err(error(
            ErrorCode::InvalidRequest,
            format!("at most {MAX_TILES} tiles on a dashboard"),
        ));
    }
    // A tile naming no installation is a value refused, not a missing resource: the
    // dashboard's own path exists.
    for tile in &request.tiles {
        app.registry
            .installation(&admin.tenant, &tile.installation)
            .await
            .map_err(|e| match e.code {
                ErrorCode::NotFound => error(ErrorCode::InvalidValue, e.message),
                _ => ApiError(e),
            })?;
    }
    let dashboard = app
        .registry
        .put_dashboard(&admin.tenant, &name, &request.tiles)
        .await?;
    let _ = app
        .backends()
        .broadcast
        .publish(
            &admin.tenant,
            &format!("dashboard/{name}"),
            json!({"type": "layout", "dashboard": dashboard}),
        )
        .await;
    Ok(Json(dashboard))
}

/// Deletes a dashboard.
#[utoipa::path(delete, path = "/tenants/{tenant}/dashboards/{name}", tag = "dashboards",
    params(DashboardPath),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_dashboard(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(DashboardPath { name, .. }): Path<DashboardPath>,
) -> ApiResult<StatusCode> {
    app.registry.delete_dashboard(&admin.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
