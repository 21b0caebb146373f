//! A tenant's components: upload and list.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Admin, Viewer};
use super::body::Upload;
use super::error::ApiResult;
use super::paths::{ComponentPath, TenantPath};
use crate::app::App;
use crate::components::Uploaded;
use crate::registry::ComponentVersion;

/// Uploads a component (its `.wasm` bytes): compiled, described and kept. 413 over
/// the upload limit, 429 while the compile slots are busy, 503 `COMPILE_TIMEOUT`.
#[utoipa::path(post, path = "/tenants/{tenant}/components", tag = "components",
    params(TenantPath),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "A WebAssembly component built against the contract (docs/contract.md)"),
    responses((status = 201, description = "Uploaded", body = Uploaded)))]
pub async fn upload(
    State(app): State<Arc<App>>,
    admin: Admin,
    upload: Upload,
) -> ApiResult<(StatusCode, Json<Uploaded>)> {
    let uploaded = app
        .components
        .upload(&admin.tenant, upload.bytes.to_vec())
        .await?;
    Ok((StatusCode::CREATED, Json(uploaded)))
}

#[derive(Serialize, ToSchema)]
pub struct ComponentList {
    components: Vec<ComponentVersion>,
}

/// The tenant's uploaded component versions.
#[utoipa::path(get, path = "/tenants/{tenant}/components", tag = "components",
    params(TenantPath),
    responses((status = 200, description = "The components", body = ComponentList)))]
pub async fn list_components(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> ApiResult<Json<ComponentList>> {
    Ok(Json(ComponentList {
        components: app.registry.components(&viewer.tenant).await?,
    }))
}

/// One component version and its descriptor.
#[utoipa::path(get, path = "/tenants/{tenant}/components/{hash}", tag = "components",
    params(ComponentPath),
    responses((status = 200, description = "The component", body = ComponentVersion)))]
pub async fn get_component(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ComponentPath { hash, .. }): Path<ComponentPath>,
) -> ApiResult<Json<ComponentVersion>> {
    Ok(Json(app.registry.component(&viewer.tenant, &hash).await?))
}
