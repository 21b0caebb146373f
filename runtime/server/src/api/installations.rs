//! Installations: install, upgrade, enable, disable, uninstall; render, actions,
//! receipts and logs.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use plinth_host::capability::log::StoredLine;
use plinth_host::{ActionResponse, ErrorCode, Receipt, Rendered, Scope};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::auth::{Admin, Viewer};
use super::body::{JsonBody, OptionalJson};
use super::error::{ApiError, ApiResult, error};
use super::paths::{ActionPath, InstallationPath, TenantPath};
use crate::app::App;
use crate::calls::ErrorRecord;
use crate::installer::{InstallRequest, PermissionDiff, UpgradeRequest};
use crate::registry::Installation;

/// Installs an uploaded component: grants checked against its imports, config
/// against its schema, limits against the server's.
#[utoipa::path(post, path = "/tenants/{tenant}/installations", tag = "installations",
    params(TenantPath), request_body = InstallRequest,
    responses((status = 201, description = "Installed", body = Installation),
              (status = 409, description = "CONFLICT: the id is taken, or the tenant has as many installations as its quota allows", body = plinth_host::PlinthError)))]
pub async fn install(
    State(app): State<Arc<App>>,
    admin: Admin,
    JsonBody(request): JsonBody<InstallRequest>,
) -> ApiResult<(StatusCode, Json<Installation>)> {
    let installation = app
        .installer
        .install(&admin.tenant, request, admin.may_raise_limits())
        .await?;
    Ok((StatusCode::CREATED, Json(installation)))
}

#[derive(Serialize, ToSchema)]
pub struct InstallationList {
    installations: Vec<Installation>,
}

/// The tenant's installations.
#[utoipa::path(get, path = "/tenants/{tenant}/installations", tag = "installations",
    params(TenantPath),
    responses((status = 200, description = "The installations", body = InstallationList)))]
pub async fn list_installations(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> ApiResult<Json<InstallationList>> {
    Ok(Json(InstallationList {
        installations: app.registry.installations(&viewer.tenant).await?,
    }))
}

/// Whether an installation runs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Enabled,
    Disabled,
    /// The circuit breaker stopped it; enabling it again resumes it.
    Parked,
}

#[derive(Serialize, ToSchema)]
pub struct InstallationView {
    #[serde(flatten)]
    installation: Installation,
    status: Status,
}

/// One installation and whether it runs.
#[utoipa::path(get, path = "/tenants/{tenant}/installations/{id}", tag = "installations",
    params(InstallationPath),
    responses((status = 200, description = "The installation", body = InstallationView)))]
pub async fn get_installation(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<InstallationView>> {
    let installation = app.registry.installation(&viewer.tenant, &id).await?;
    let status = match (&installation.parked, installation.enabled) {
        (Some(_), _) => Status::Parked,
        (None, true) => Status::Enabled,
        (None, false) => Status::Disabled,
    };
    Ok(Json(InstallationView {
        installation,
        status,
    }))
}

/// Uninstalls: its ticks stop, what was kept of its calls is forgotten.
#[utoipa::path(delete, path = "/tenants/{tenant}/installations/{id}", tag = "installations",
    params(InstallationPath),
    responses((status = 204, description = "Uninstalled")))]
pub async fn uninstall(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<StatusCode> {
    app.installer.uninstall(&admin.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Upgraded {
    diff: PermissionDiff,
    installation: Installation,
}

/// Upgrades to another uploaded version; `GRANTS_REQUIRED` (409) when it imports
/// capabilities the grants do not cover. `dry_run` only reports the permission diff.
#[utoipa::path(post, path = "/tenants/{tenant}/installations/{id}/upgrade",
    tag = "installations", params(InstallationPath), request_body = UpgradeRequest,
    responses((status = 200, description = "The diff, and the installation after", body = Upgraded)))]
pub async fn upgrade(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
    JsonBody(request): JsonBody<UpgradeRequest>,
) -> ApiResult<Json<Upgraded>> {
    let (diff, installation) = app.installer.upgrade(&admin.tenant, &id, request).await?;
    Ok(Json(Upgraded { diff, installation }))
}

/// Enables an installation; a parked one is unparked and its breaker starts over.
#[utoipa::path(post, path = "/tenants/{tenant}/installations/{id}/enable",
    tag = "installations", params(InstallationPath),
    responses((status = 200, description = "The installation", body = Installation)))]
pub async fn enable(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<Installation>> {
    Ok(Json(
        app.installer.set_enabled(&admin.tenant, &id, true).await?,
    ))
}

/// Disables an installation: calls are refused with `INSTALLATION_DISABLED`.
#[utoipa::path(post, path = "/tenants/{tenant}/installations/{id}/disable",
    tag = "installations", params(InstallationPath),
    responses((status = 200, description = "The installation", body = Installation)))]
pub async fn disable(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<Installation>> {
    Ok(Json(
        app.installer.set_enabled(&admin.tenant, &id, false).await?,
    ))
}

/// A render as the API answers it (for the document; the body is written from the
/// call's serialized views, see [`render_body`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RenderBody {
    /// The widget's views; each has a `kind` (`metric_card`, `line_chart`, …; see
    /// docs/contract.md).
    views: Vec<serde_json::Map<String, serde_json::Value>>,
    receipt: Receipt,
}

/// The body of a render: `{"views": […], "receipt": {…}}`, written straight from the
/// views the sandbox serialized once.
pub fn render_body(rendered: &Rendered, receipt: &Receipt) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        views: &'a RawValue,
        receipt: &'a Receipt,
    }
    serde_json::to_vec(&Body {
        views: rendered.views(),
        receipt,
    })
    .unwrap_or_default()
}

/// Renders a widget: its views and the call's receipt. Query parameters are passed to
/// the widget (time range, page, filters).
#[utoipa::path(get, path = "/tenants/{tenant}/installations/{id}/data", tag = "installations",
    params(InstallationPath),
    responses((status = 200, description = "The views", body = RenderBody),
              (status = 502, description = "The extension failed: its code", body = plinth_host::PlinthError),
              (status = 504, description = "EXECUTION_TIMEOUT", body = plinth_host::PlinthError)))]
pub async fn render(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(params) = query.map_err(|e| error(ErrorCode::InvalidRequest, e.body_text()))?;
    let installation = app.installations.get(&viewer.tenant, &id).await?;
    let report = app.calls.render(&installation, params).await?;
    let rendered = report.outcome.map_err(ApiError)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        render_body(&rendered, &report.receipt),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ActionResult {
    response: ActionResponse,
    receipt: Receipt,
}

/// Runs an action the extension declares, with the request's JSON body (`null` when
/// empty).
#[utoipa::path(post, path = "/tenants/{tenant}/installations/{id}/actions/{action}",
    tag = "installations", params(ActionPath),
    request_body(content = serde_json::Value, description = "Any JSON, given to the action; none is null"),
    responses((status = 200, description = "The action's response", body = ActionResult),
              (status = 502, description = "The extension failed: its code", body = plinth_host::PlinthError),
              (status = 504, description = "EXECUTION_TIMEOUT", body = plinth_host::PlinthError)))]
pub async fn action(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(ActionPath { id, action, .. }): Path<ActionPath>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<Json<ActionResult>> {
    let installation = app.installations.get(&admin.tenant, &id).await?;
    // An action the extension does not declare is a missing resource, not a fault of
    // the extension: answered without calling it.
    let version = app
        .registry
        .component(&admin.tenant, &installation.component)
        .await?;
    if !version.descriptor.declares_action(&action) {
        return Err(error(
            ErrorCode::NotFound,
            format!(
                "{}@{} declares no action {action:?}",
                version.extension, version.version
            ),
        ));
    }
    let report = app.calls.invoke(&installation, action, body).await?;
    let receipt = report.receipt;
    let response = report.outcome.map_err(ApiError)?;
    Ok(Json(ActionResult { response, receipt }))
}

#[derive(Serialize, ToSchema)]
pub struct ReceiptList {
    receipts: Vec<crate::calls::KeptReceipt>,
}

/// The installation's recent receipts on this node (fuel, memory, wall time, host
/// calls), oldest first.
#[utoipa::path(get, path = "/tenants/{tenant}/installations/{id}/receipts",
    tag = "installations", params(InstallationPath),
    responses((status = 200, description = "Recent receipts", body = ReceiptList)))]
pub async fn receipts(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<ReceiptList>> {
    app.registry.installation(&viewer.tenant, &id).await?;
    Ok(Json(ReceiptList {
        receipts: app.calls.recent_receipts(&viewer.tenant, &id),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Logs {
    /// What the extension logged, oldest first.
    lines: Vec<StoredLine>,
    /// Its recent failures on this node.
    errors: Vec<ErrorRecord>,
}

/// The installation's recent log lines and errors.
#[utoipa::path(get, path = "/tenants/{tenant}/installations/{id}/logs", tag = "installations",
    params(InstallationPath),
    responses((status = 200, description = "Recent lines and errors", body = Logs)))]
pub async fn logs(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<Logs>> {
    app.registry.installation(&viewer.tenant, &id).await?;
    let scope = Scope::new(&viewer.tenant, &id)?;
    Ok(Json(Logs {
        lines: app.backends().log.recent(&scope, 200),
        errors: app.calls.recent_errors(&viewer.tenant, &id),
    }))
}
