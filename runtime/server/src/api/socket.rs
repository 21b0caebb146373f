//! The WebSocket upgrade at `/api/v1/ws`: the origin and the token are checked and a
//! seat under the socket caps taken before the upgrade; the hub serves the rest.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use plinth_host::ErrorCode;
use serde::Deserialize;

use super::auth::{principal_of, token_of};
use super::error::{ApiError, error};
use crate::app::App;
use crate::registry::Role;

#[derive(Deserialize)]
pub struct WsQuery {
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

/// Opens a WebSocket: subscribe to topics, get their messages. See docs/server.md.
pub async fn websocket(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let refuse = |e: ApiError| {
        app.metrics.ws_refused();
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
    if principal.role == Role::Publisher {
        return refuse(error(
            ErrorCode::Forbidden,
            "a publisher token posts events and does nothing else",
        ));
    }
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
    let seat = match app.hub.seat(&principal) {
        Ok(seat) => seat,
        Err(e) => return refuse(ApiError(e)),
    };
    // The socket keeps the token's hash, not its secret, to re-check it while open.
    let token_hash = crate::registry::token_hash(token.as_deref().unwrap_or_default());
    let max = app.config.websocket.max_message_bytes;
    let hub = app.hub.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::ws::serve(hub, principal, token_hash, socket, seat))
}
