//! Events: the intake (publishers and admins post), the queue's state, dead letters
//! (list, inspect, replay, purge) and each installation's deliveries.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use plinth_host::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Publisher, Viewer};
use super::body::JsonBody;
use super::error::{ApiResult, error};
use super::paths::{DeadLetterPath, InstallationPath, TenantPath};
use crate::app::App;
use crate::events::{Accepted, DeadLetter, DeliveryStats, EventBatch, QueueView, Selection};
use crate::registry::check_id;

/// Dead letters listed at most.
const MAX_LIST: usize = 1_000;

/// Posts one event or a batch. `202` only once every event is stored durably; a batch
/// is stored whole or refused whole. An id seen within the retention is listed under
/// `duplicates` and not delivered again.
#[utoipa::path(post, path = "/tenants/{tenant}/events", tag = "events",
    params(TenantPath), request_body = EventBatch,
    responses((status = 202, description = "Stored; handlers will run", body = Accepted)))]
pub async fn post_events(
    State(app): State<Arc<App>>,
    publisher: Publisher,
    JsonBody(batch): JsonBody<EventBatch>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let accepted = app
        .events
        .accept(&publisher.tenant, batch.into_events())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// The tenant's deliveries not yet settled, the oldest one's age and its dead letters.
#[utoipa::path(get, path = "/tenants/{tenant}/events/queue", tag = "events",
    params(TenantPath),
    responses((status = 200, description = "The queue", body = QueueView)))]
pub async fn queue(State(app): State<Arc<App>>, viewer: Viewer) -> ApiResult<Json<QueueView>> {
    Ok(Json(app.events.view(&viewer.tenant).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this installation's.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    installation: Option<String>,
    /// At most this many, newest first (default and most: 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    dead_letters: Vec<DeadLetter>,
}

/// Dead letters, newest first.
#[utoipa::path(get, path = "/tenants/{tenant}/dead-letters", tag = "events",
    params(TenantPath, DeadLetterQuery),
    responses((status = 200, description = "The dead letters", body = DeadLetterList)))]
pub async fn list_dead_letters(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> ApiResult<Json<DeadLetterList>> {
    let Query(query) = query.map_err(|e| error(ErrorCode::InvalidRequest, e.body_text()))?;
    if let Some(installation) = &query.installation {
        check_id("installation", installation)?;
    }
    let limit = query.limit.unwrap_or(MAX_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(error(
            ErrorCode::InvalidRequest,
            format!("limit must be 1 to {MAX_LIST}"),
        ));
    }
    Ok(Json(DeadLetterList {
        dead_letters: app
            .events
            .dead_letters(&viewer.tenant, query.installation.as_deref(), limit)
            .await?,
    }))
}

/// One dead letter: the event, the installation, the attempts, the last error and receipt.
#[utoipa::path(get, path = "/tenants/{tenant}/dead-letters/{id}", tag = "events",
    params(DeadLetterPath),
    responses((status = 200, description = "The dead letter", body = DeadLetter)))]
pub async fn get_dead_letter(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(DeadLetterPath { id, .. }): Path<DeadLetterPath>,
) -> ApiResult<Json<DeadLetter>> {
    check_letter(&id)?;
    Ok(Json(app.events.dead_letter(&viewer.tenant, &id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Dead letters put back as deliveries (attempts start over at 1).
    replayed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Purged {
    purged: u64,
}

/// A dead letter's id is 16 hex digits.
fn check_letter(id: &str) -> ApiResult<()> {
    if id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    Err(error(
        ErrorCode::InvalidRequest,
        format!("dead letter id {id:?} must be 16 hex digits"),
    ))
}

fn found(n: u64, what: String) -> ApiResult<u64> {
    if n == 0 {
        return Err(error(ErrorCode::NotFound, what));
    }
    Ok(n)
}

/// Delivers a dead letter again, to the installation's current version.
#[utoipa::path(post, path = "/tenants/{tenant}/dead-letters/{id}/replay", tag = "events",
    params(DeadLetterPath),
    responses((status = 202, description = "Put back as a delivery", body = Replayed)))]
pub async fn replay_dead_letter(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(DeadLetterPath { id, .. }): Path<DeadLetterPath>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    check_letter(&id)?;
    let n = app
        .events
        .replay(&admin.tenant, &Selection::One(id.clone()))
        .await?;
    let replayed = found(
        n,
        format!("tenant {} has no dead letter {id}", admin.tenant),
    )?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}

/// Deletes a dead letter.
#[utoipa::path(delete, path = "/tenants/{tenant}/dead-letters/{id}", tag = "events",
    params(DeadLetterPath),
    responses((status = 200, description = "Deleted", body = Purged)))]
pub async fn delete_dead_letter(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(DeadLetterPath { id, .. }): Path<DeadLetterPath>,
) -> ApiResult<Json<Purged>> {
    check_letter(&id)?;
    let n = app
        .events
        .purge(&admin.tenant, &Selection::One(id.clone()))
        .await?;
    let purged = found(
        n,
        format!("tenant {} has no dead letter {id}", admin.tenant),
    )?;
    Ok(Json(Purged { purged }))
}

/// Delivers every dead letter of an installation again.
#[utoipa::path(post, path = "/tenants/{tenant}/installations/{id}/dead-letters/replay",
    tag = "events", params(InstallationPath),
    responses((status = 202, description = "Put back as deliveries", body = Replayed)))]
pub async fn replay_installation(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    app.registry.installation(&admin.tenant, &id).await?;
    let replayed = app
        .events
        .replay(&admin.tenant, &Selection::Installation(id))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}

/// Deletes every dead letter of an installation.
#[utoipa::path(delete, path = "/tenants/{tenant}/installations/{id}/dead-letters",
    tag = "events", params(InstallationPath),
    responses((status = 200, description = "Deleted", body = Purged)))]
pub async fn purge_installation(
    State(app): State<Arc<App>>,
    admin: Admin,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<Purged>> {
    // An uninstalled installation's dead letters may still be purged: the id is checked,
    // not looked up.
    check_id("installation", &id)?;
    let purged = app
        .events
        .purge(&admin.tenant, &Selection::Installation(id))
        .await?;
    Ok(Json(Purged { purged }))
}

#[derive(Serialize, ToSchema)]
pub struct Deliveries {
    /// Counts on this node since it started.
    #[serde(flatten)]
    stats: DeliveryStats,
    /// Dead letters of the installation kept now (over every node).
    dead_letters_kept: u64,
}

/// An installation's deliveries: delivered, retried, dead-lettered, the last error.
#[utoipa::path(get, path = "/tenants/{tenant}/installations/{id}/deliveries",
    tag = "events", params(InstallationPath),
    responses((status = 200, description = "The counts", body = Deliveries)))]
pub async fn deliveries(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(InstallationPath { id, .. }): Path<InstallationPath>,
) -> ApiResult<Json<Deliveries>> {
    app.registry.installation(&viewer.tenant, &id).await?;
    let kept = app
        .events
        .dead_letters(&viewer.tenant, Some(&id), usize::MAX)
        .await?
        .len() as u64;
    Ok(Json(Deliveries {
        stats: app.events.stats(&viewer.tenant, &id),
        dead_letters_kept: kept,
    }))
}
