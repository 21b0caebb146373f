//! The WebSocket upgrade at `/api/v1/ws`: the origin and the token are checked and a
//! seat under the socket caps taken before the upgrade; the hub serves the rest.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use plinth_host::ErrorCode;

use super::auth::{principal_of, token_of};
use super::error::{ApiError, error};
use crate::app::App;
use crate::registry::Role;

/// The subprotocol the socket speaks; the server answers with it.
pub const PROTOCOL: &str = "plinth.v1";
/// A browser cannot set `Authorization` on a WebSocket, but it can offer subprotocols:
/// the console offers `plinth.v1` and `plinth.token.<token>` (a token is made of
/// characters a subprotocol name may hold). The server never echoes the token one.
pub const TOKEN_PROTOCOL_PREFIX: &str = "plinth.token.";

/// The token offered as a subprotocol, if any.
fn protocol_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(TOKEN_PROTOCOL_PREFIX)
                .map(str::to_owned)
        })
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
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
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
    // A token in the URL ends up in access logs, proxies and browser history: refused,
    // whether or not another one is sent too.
    // Every pair is looked at (`?token=a&token=b` too); a query that does not parse
    // names no token the server would take, and is left to the upgrade.
    if query.is_ok_and(|Query(pairs)| pairs.iter().any(|(key, _)| key == "token")) {
        return refuse(error(
            ErrorCode::InvalidRequest,
            "a token is never accepted in a URL: send Authorization: Bearer plt_… or offer \
             the subprotocols plinth.v1 and plinth.token.plt_…",
        ));
    }
    let token = token_of(&headers)
        .map(str::to_owned)
        .or_else(|| protocol_token(&headers));
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
        .protocols([PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::ws::serve(hub, principal, token_hash, socket, seat))
}
