//! What is not the JSON API: the console page and its files, health, readiness and
//! Prometheus metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Operator;
use super::error::ApiError;
use crate::app::App;

/// The console's page: the same at every route of the console (it routes in the
/// fragment, so no path of its own carries state).
pub async fn console(State(app): State<Arc<App>>) -> Response {
    console_file(&app, "index.html")
}

/// One of the console's files (`/console/app.js`, `/console/vendor/preact.mjs`).
pub async fn console_asset(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    console_file(&app, &name)
}

fn console_file(app: &App, name: &str) -> Response {
    match crate::console::file(name, app.config.console_dir.as_deref()) {
        Some((content_type, bytes)) => {
            // Embedded files are answered from the binary as they are, not copied.
            let body = match bytes {
                std::borrow::Cow::Borrowed(embedded) => axum::body::Bytes::from_static(embedded),
                std::borrow::Cow::Owned(read) => axum::body::Bytes::from(read),
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => ApiError(plinth_host::PlinthError::new(
            plinth_host::ErrorCode::NotFound,
            format!("no console file {name:?}"),
        ))
        .into_response(),
    }
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the metadata database answers.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.registry.store().query("SELECT 1", vec![]).await {
        Ok(_) => Json(json!({"status": "ready", "node": app.node_id})).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// `/metrics` on the main listener: operators only, since the series name every tenant
/// and extension.
pub async fn operator_metrics(State(app): State<Arc<App>>, _: Operator) -> Response {
    metrics(State(app)).await
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
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
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
