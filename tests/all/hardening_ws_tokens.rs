//! Tokens (list, revoke, expiry), tenant deletion, and what a WebSocket client can make
//! the server hold: socket caps, relays per topic, oversized frames, floods. Every test
//! runs a real server in this process and talks to it over loopback.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use plinth_host::capability::db::StatementBounds;
use plinth_server::ServerConfig;
use plinth_server::registry::{TOKEN_MEMORY, now_ms};
use plinth_tests::{guest, socket_request, unique_tenants};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{
    Socket, TestServer, next_json, real_services, resident_bytes, send_ws, unique_schema,
};

fn embedded(_: &mut ServerConfig) {}

/// What these tests ask of the server beyond what [`TestServer`] offers.
impl TestServer {
    async fn token(&self, tenant: &str, role: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"role": role, "label": "test"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/tokens"),
            &self.operator,
            body,
        )
        .await
    }

    /// The WebSocket's upgrade request, with the token in its `Authorization` header.
    fn ws_url(&self, token: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        socket_request(&format!("ws://{}/api/v1/ws", self.server().addr), token)
    }

    /// Opens a socket, or answers the HTTP status and JSON body it was refused with.
    async fn try_socket(&self, token: &str) -> Result<Socket, (u16, Value)> {
        match tokio_tungstenite::connect_async(self.ws_url(token)).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                Err((
                    response.status().as_u16(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                ))
            }
            Err(e) => panic!("WebSocket upgrade failed otherwise: {e}"),
        }
    }

    /// The HTTP status and JSON body a socket is refused with; panics if it opens.
    async fn refused(&self, token: &str) -> (u16, Value) {
        match self.try_socket(token).await {
            Ok(_) => panic!("the socket opened"),
            Err(refused) => refused,
        }
    }
}

/// Everything the server sends until its close frame: the JSON messages and the close
/// code (`None` when the connection ended without one). Panics after `wait`.
async fn until_close(socket: &mut Socket, wait: Duration) -> (Vec<Value>, Option<u16>) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut received = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the connection ends in time");
        match next {
            Some(Ok(Message::Text(text))) => received.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return (received, frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (received, None),
        }
    }
}

/// Polls `check` every 50 ms until it is true; panics after `bound`.
async fn eventually<F: std::future::Future<Output = bool>>(
    bound: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

// ---- tokens -------------------------------------------------------------------------

/// Tokens are listed without secrets, revoked by id (at once on this node, sockets
/// included), and expire when asked to.
async fn tokens_list_revoke_expire(server: TestServer) {
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let tokens = format!("/api/v1/tenants/{tenant}/tokens");

    let (status, made) = server
        .token(&tenant, "viewer", json!({"expires_in_s": 3600}))
        .await;
    assert_eq!(status, 201, "{made}");
    assert!(made["token"].as_str().unwrap().starts_with("plt_"));
    assert_eq!(made["id"].as_str().unwrap().len(), 16);
    let expires = made["expires_ms"].as_i64().unwrap();
    assert!((expires - now_ms() - 3_600_000).abs() < 60_000, "{made}");

    // The viewer is used once, so a lookup of it is remembered by this node.
    let (status, me) = server.get("/api/v1/me", &viewer).await;
    assert_eq!(status, 200, "{me}");
    let viewer_id = me["token_id"].as_str().unwrap().to_owned();

    let (status, listed) = server.get(&tokens, &admin).await;
    assert_eq!(status, 200, "{listed}");
    let text = listed.to_string();
    assert!(!text.contains("plt_"), "a listing shows a secret: {text}");
    let listed = listed["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for token in listed {
        let keys: Vec<&str> = token
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for key in [
            "id",
            "role",
            "label",
            "created_ms",
            "expires_ms",
            "last_used_ms",
        ] {
            assert!(keys.contains(&key), "{key} missing in {token}");
        }
        assert!(
            !keys.contains(&"token") && !keys.contains(&"hash"),
            "{token}"
        );
    }
    let listed_viewer = listed
        .iter()
        .find(|t| t["id"] == viewer_id.as_str())
        .unwrap();
    assert!(
        listed_viewer["last_used_ms"].as_i64().is_some(),
        "{listed_viewer}"
    );
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == made["id"] && t["expires_ms"] == expires)
    );

    // Viewers neither list nor revoke.
    let (status, body) = server.get(&tokens, &viewer).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
    let (status, body) = server
        .send(
            "DELETE",
            &format!("{tokens}/{viewer_id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));

    // Revoked: the next request is refused at once, and its socket is closed.
    let mut socket = server.socket(&viewer).await;
    send_ws(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await["type"],
        "pong"
    );
    let (status, body) = server
        .send(
            "DELETE",
            &format!("{tokens}/{viewer_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.get("/api/v1/me", &viewer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );
    let (_, code) = until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(plinth_server::ws::CLOSE_REVOKED));
    assert!(server.try_socket(&viewer).await.is_err());
    let (_, listed) = server.get(&tokens, &admin).await;
    assert!(
        !listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == viewer_id.as_str())
    );
    // Another tenant's admin cannot revoke this tenant's token, by either path.
    let (other, _) = unique_tenants();
    let (other_admin, _) = server.tenant(&other).await;
    let made_id = made["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/tenants/{other}/tokens/{made_id}"),
        format!("{tokens}/{made_id}"),
    ] {
        let (status, body) = server.send("DELETE", &path, Some(&other_admin), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{path}"
        );
    }
    let (_, listed) = server.get(&tokens, &admin).await;
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == made_id)
    );
    // Gone is gone; ids of nothing are NOT_FOUND.
    for id in [viewer_id.as_str(), "0123456789abcdef", "nonsense"] {
        let (status, body) = server
            .send("DELETE", &format!("{tokens}/{id}"), Some(&admin), None)
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{id}"
        );
    }

    // Expiry: asked for as a time, checked at every use (even a remembered lookup).
    let at = now_ms() + 1_500;
    let (status, short) = server
        .token(&tenant, "viewer", json!({"expires_at_ms": at}))
        .await;
    assert_eq!(status, 201, "{short}");
    let short = short["token"].as_str().unwrap().to_owned();
    let (status, body) = server.get("/api/v1/me", &short).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_ms"], at);
    let (s, short_ref) = (&server, &short);
    eventually(
        Duration::from_secs(10),
        "the token expires",
        move || async move { s.get("/api/v1/me", short_ref).await.0 == 401 },
    )
    .await;
    assert!(now_ms() >= at, "refused before it expired");
    let (_, body) = server.get("/api/v1/me", &short).await;
    assert_eq!(body["code"], "UNAUTHENTICATED");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let refused = server.refused(&short).await;
    assert_eq!(refused.0, 401);

    // Outside the document's schema: 400; allowed by it but refused by the clock or
    // by each other: 422.
    for (bad, status_code) in [
        (json!({"expires_in_s": 0}), (400, "INVALID_REQUEST")),
        (
            json!({"expires_at_ms": now_ms() - 1}),
            (422, "INVALID_VALUE"),
        ),
        (
            json!({"expires_in_s": 60, "expires_at_ms": now_ms() + 60_000}),
            (422, "INVALID_VALUE"),
        ),
    ] {
        let (status, body) = server.token(&tenant, "viewer", bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (status_code.0, Some(status_code.1)),
            "{bad}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_listed_revoked_and_expire_embedded() {
    tokens_list_revoke_expire(TestServer::start(embedded).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_listed_revoked_and_expire_redis_postgres() {
    let schema = unique_schema();
    tokens_list_revoke_expire(TestServer::start(|c| real_services(c, &schema)).await).await;
}

/// Two nodes share the PostgreSQL registry: a token revoked on one stops working on the
/// other within the bound the docs state (a node remembers a lookup for TOKEN_MEMORY).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_on_one_node_stops_on_the_other_within_the_bound() {
    let schema = unique_schema();
    let one = TestServer::start(|c| real_services(c, &schema)).await;
    let two = TestServer::start(|c| real_services(c, &schema)).await;
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = one.tenant(&tenant).await;
    // Node two has looked the viewer up and remembers it.
    let (status, me) = two.get("/api/v1/me", &viewer).await;
    assert_eq!(status, 200, "{me}");
    let id = me["token_id"].as_str().unwrap().to_owned();
    let (status, body) = one
        .send(
            "DELETE",
            &format!("/api/v1/tenants/{tenant}/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(one.get("/api/v1/me", &viewer).await.0, 401);
    let (node, viewer_ref) = (&two, &viewer);
    let took = eventually(
        TOKEN_MEMORY + Duration::from_secs(2),
        "the other node refuses the revoked token",
        move || async move { node.get("/api/v1/me", viewer_ref).await.0 == 401 },
    )
    .await;
    assert!(took <= TOKEN_MEMORY + Duration::from_secs(1), "{took:?}");
    one.stop().await;
    two.stop().await;
}

// ---- tenant deletion ----------------------------------------------------------------

fn bounds() -> StatementBounds {
    StatementBounds {
        max_rows: 100,
        max_bytes: 1 << 20,
        deadline: Instant::now() + Duration::from_secs(10),
    }
}

/// DELETE /tenants/{t}: operators only; the tenant's tokens stop at once, its schedule
/// stops, its database, cache keys, topics, components, installations, dashboards and
/// tokens are gone, and a tenant made again under the same id starts empty.
async fn tenant_deletion(server: TestServer) {
    let app = server.server().app.clone();
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let base = format!("/api/v1/tenants/{tenant}");
    let (status, uploaded) = server
        .send(
            "POST",
            &format!("{base}/components"),
            Some(&admin),
            Some(guest("extensions/hello-metric")),
        )
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, body) = server
        .json(
            "POST",
            &format!("{base}/installations"),
            &admin,
            json!({"id": "ticker", "component": uploaded["hash"], "tick_interval_ms": 200}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "PUT",
            &format!("{base}/dashboards/main"),
            &admin,
            json!({"tiles": [{"installation": "ticker"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let backends = app.backends();
    backends
        .cache
        .set(&tenant, "kept", b"value".to_vec(), None)
        .await
        .unwrap();
    backends
        .db
        .execute(&tenant, "CREATE TABLE kept (x INTEGER)", vec![], bounds())
        .await
        .unwrap();
    let scope = plinth_host::Scope {
        tenant: tenant.clone(),
        installation: "ticker".into(),
    };
    let line = plinth_host::LogLine {
        level: "info",
        message: "kept".into(),
    };
    backends.log.append(&scope, &[line]);
    assert_eq!(backends.log.recent(&scope, 10).len(), 1);
    let mut socket = server.socket(&viewer).await;
    send_ws(&mut socket, json!({"type": "subscribe", "topic": "alerts"})).await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await["type"],
        "subscribed"
    );
    let relays_before = app.hub.relay_count();
    let (a, t) = (&app, &tenant);
    eventually(
        Duration::from_secs(20),
        "the installation ticks",
        move || async move {
            a.calls
                .recent_receipts(t, "ticker")
                .iter()
                .any(|r| r.call == "on-tick")
        },
    )
    .await;

    // Only an operator deletes a tenant.
    for token in [&admin, &viewer] {
        let (status, body) = server.send("DELETE", &base, Some(token), None).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "FORBIDDEN");
    }
    let (status, body) = server
        .send("DELETE", &base, Some(&server.operator), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"]["tokens"], 2, "{body}");
    assert_eq!(body["removed"]["installations"], 1, "{body}");
    assert_eq!(body["removed"]["dashboards"], 1, "{body}");
    assert_eq!(body["removed"]["components"], 1, "{body}");

    // Its tokens stop at once, its socket is closed, its topic is no longer relayed.
    for token in [&admin, &viewer] {
        let (status, body) = server.get(&base, token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
    }
    let (_, code) = until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(plinth_server::ws::CLOSE_REVOKED));
    assert_eq!(app.hub.relay_count(), relays_before - 1);
    let (status, body) = server.get(&base, &server.operator).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, _) = server
        .send("DELETE", &base, Some(&server.operator), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(backends.cache.get(&tenant, "kept").await.unwrap(), None);
    assert!(app.calls.recent_receipts(&tenant, "ticker").is_empty());
    assert!(backends.log.recent(&scope, 10).is_empty());

    // Its schedule stopped: a tick already running may still end, then none starts in
    // five of its intervals.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended = app.calls.recent_receipts(&tenant, "ticker").len();
    assert!(ended <= 1, "{ended} ticks after the deletion");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        app.calls.recent_receipts(&tenant, "ticker").len(),
        ended,
        "the deleted tenant's installation still ticks"
    );

    // The same id again is a new, empty tenant: no database table, no component, no
    // installation, no dashboard, no token but the new ones.
    let (admin, _) = server.tenant(&tenant).await;
    for (path, key) in [
        ("components", "components"),
        ("installations", "installations"),
        ("dashboards", "dashboards"),
        ("tokens", "tokens"),
    ] {
        let (status, body) = server.get(&format!("{base}/{path}"), &admin).await;
        assert_eq!(status, 200, "{body}");
        let found = body[key].as_array().unwrap().len();
        assert_eq!(found, if key == "tokens" { 2 } else { 0 }, "{path}: {body}");
    }
    let old = backends
        .db
        .query(&tenant, "SELECT x FROM kept", vec![], bounds())
        .await;
    assert!(old.is_err(), "the old database is still there: {old:?}");
    assert_eq!(backends.cache.get(&tenant, "kept").await.unwrap(), None);
    let (status, _) = server
        .send("DELETE", &base, Some(&server.operator), None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_tenant_removes_everything_it_has_embedded() {
    let server = TestServer::start(embedded).await;
    let file = server.server().app.config.data_dir.join("db");
    tenant_deletion(server).await;
    // Created again and deleted again at the end: no file of it is left.
    let left: Vec<_> = std::fs::read_dir(&file)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "files left in {}: {left:?}",
        file.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_tenant_removes_everything_it_has_redis_postgres() {
    let schema = unique_schema();
    tenant_deletion(TestServer::start(|c| real_services(c, &schema)).await).await;
}

// ---- WebSocket bounds ---------------------------------------------------------------

/// Sockets over the per-token and per-tenant caps are refused before the upgrade with
/// 429 QUOTA_EXCEEDED; a closed socket gives its seat back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_over_the_caps_are_refused() {
    let server = TestServer::start(|c| {
        c.websocket.max_sockets_per_token = 3;
        c.websocket.max_sockets_per_tenant = 5;
    })
    .await;
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.try_socket(&viewer).await.expect("under the cap"));
    }
    let (status, body) = server.refused(&viewer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("QUOTA_EXCEEDED")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_sockets_per_token")
    );
    // The tenant's cap counts all its tokens.
    for _ in 0..2 {
        open.push(server.try_socket(&admin).await.expect("under the cap"));
    }
    let (status, body) = server.refused(&admin).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("QUOTA_EXCEEDED"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_sockets_per_tenant")
    );
    // Another tenant is not affected.
    let (other, _) = unique_tenants();
    let (_, other_viewer) = server.tenant(&other).await;
    let mut theirs = server.try_socket(&other_viewer).await.expect("own caps");
    send_ws(&mut theirs, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut theirs, Duration::from_secs(5)).await["type"],
        "pong"
    );
    // Closing one frees its seat.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while let Some(Ok(_)) = first.next().await {}
    // The server notices the close asynchronously: poll, with an upper bound.
    let started = Instant::now();
    loop {
        match server.try_socket(&viewer).await {
            Ok(socket) => {
                open.push(socket);
                break;
            }
            Err((status, _)) => {
                assert_eq!(status, 429);
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the seat stays taken"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    server.stop().await;
}

/// One viewer token tries 50 sockets with 64 topics nobody publishes each (3 200
/// subscriptions, which used to pin a relay and a 1 024-message channel each): sockets
/// over the token's cap are refused, topics over the tenant's cap too, subscribers of a
/// topic share one relay, and the process's memory stays bounded (measured in a process
/// of its own, where no other test's memory counts).
#[test]
fn many_subscriptions_keep_server_memory_bounded() {
    plinth_tests::run_alone("hardening_ws_tokens::many_subscriptions_alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run alone in its own process by many_subscriptions_keep_server_memory_bounded"]
async fn many_subscriptions_alone() {
    let server = TestServer::start(|c| c.websocket.messages_per_second = 10_000).await;
    let app = server.server().app.clone();
    let settings = app.config.websocket.clone();
    let (tenant, _) = unique_tenants();
    let (_, viewer) = server.tenant(&tenant).await;
    let before = resident_bytes();
    let relays_before = app.hub.relay_count();
    let mut sockets = Vec::new();
    let mut refused = 0;
    for _ in 0..50 {
        match server.try_socket(&viewer).await {
            Ok(socket) => sockets.push(socket),
            Err((status, body)) => {
                assert_eq!(
                    (status, body["code"].as_str()),
                    (429, Some("QUOTA_EXCEEDED"))
                );
                refused += 1;
            }
        }
    }
    assert_eq!(sockets.len(), settings.max_sockets_per_token);
    assert_eq!(refused, 50 - settings.max_sockets_per_token);
    let (mut subscribed, mut over) = (0, 0);
    for (n, socket) in sockets.iter_mut().enumerate() {
        for t in 0..64 {
            send_ws(
                socket,
                json!({"type": "subscribe", "topic": format!("quiet-{n}-{t}")}),
            )
            .await;
        }
        for _ in 0..64 {
            let reply = next_json(socket, Duration::from_secs(10)).await;
            match reply["type"].as_str() {
                Some("subscribed") => subscribed += 1,
                _ => {
                    assert_eq!(reply["code"], "QUOTA_EXCEEDED", "{reply}");
                    over += 1;
                }
            }
        }
    }
    assert_eq!(subscribed, settings.max_topics_per_tenant, "{over} refused");
    assert_eq!(
        app.hub.relay_count() - relays_before,
        settings.max_topics_per_tenant
    );
    // Every socket subscribing to one topic adds one relay, not one each.
    let (other, _) = unique_tenants();
    let (_, other_viewer) = server.tenant(&other).await;
    let relays = app.hub.relay_count();
    let mut sharing = Vec::new();
    for _ in 0..8 {
        let mut socket = server.socket(&other_viewer).await;
        send_ws(&mut socket, json!({"type": "subscribe", "topic": "shared"})).await;
        assert_eq!(
            next_json(&mut socket, Duration::from_secs(5)).await["type"],
            "subscribed"
        );
        sharing.push(socket);
    }
    assert_eq!(app.hub.relay_count(), relays + 1);
    let growth = resident_bytes().saturating_sub(before);
    assert!(
        growth < 128 << 20,
        "the server's memory grew by {} MiB for one token's subscriptions",
        growth >> 20
    );
    server.stop().await;
}

/// A message over `max_message_bytes` closes the connection with 1009, as the docs say.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_message_closes_with_1009() {
    let server = TestServer::start(|c| c.websocket.max_message_bytes = 1024).await;
    let (tenant, _) = unique_tenants();
    let (_, viewer) = server.tenant(&tenant).await;
    let mut big = server.socket(&viewer).await;
    send_ws(&mut big, json!({"type": "ping"})).await;
    big.send(Message::Text("x".repeat(4096).into()))
        .await
        .unwrap();
    let (received, code) = until_close(&mut big, Duration::from_secs(10)).await;
    assert_eq!(code, Some(1009), "{received:?}");
    assert_eq!(
        received.first().map(|m| m["type"].clone()),
        Some(json!("pong"))
    );
    assert_eq!(
        received.last().map(|m| m["code"].clone()),
        Some(json!("PAYLOAD_TOO_LARGE"))
    );
    // The server carries on.
    let mut fine = server.socket(&viewer).await;
    send_ws(&mut fine, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut fine, Duration::from_secs(5)).await["type"],
        "pong"
    );
    server.stop().await;
}

/// A client flooding the socket gets the reply to every message the server accepted,
/// in order, then the RATE_LIMITED notice, then close code 4029.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_gets_every_accepted_reply_then_4029() {
    let server = TestServer::start(|c| c.websocket.messages_per_second = 5).await;
    let (tenant, _) = unique_tenants();
    let (_, viewer) = server.tenant(&tenant).await;
    for round in 0..3 {
        let mut chatty = server.socket(&viewer).await;
        for t in 0..60 {
            let topic = format!("flood-{t}");
            if chatty
                .send(Message::Text(
                    json!({"type": "subscribe", "topic": topic})
                        .to_string()
                        .into(),
                ))
                .await
                .is_err()
            {
                break;
            }
        }
        let (received, code) = until_close(&mut chatty, Duration::from_secs(20)).await;
        let (notice, replies) = received.split_last().expect("messages before the close");
        assert_eq!(
            notice["code"], "RATE_LIMITED",
            "round {round}: {received:?}"
        );
        // The burst (twice the rate) is accepted at least; each reply in order.
        assert!(replies.len() >= 10, "round {round}: {received:?}");
        for (t, reply) in replies.iter().enumerate() {
            assert_eq!(reply["type"], "subscribed", "round {round}: {received:?}");
            assert_eq!(
                reply["topic"],
                format!("flood-{t}"),
                "round {round}: {received:?}"
            );
        }
        assert_eq!(
            code,
            Some(plinth_server::ws::CLOSE_RATE_LIMITED),
            "round {round}"
        );
    }
    let metrics = &server.server().app.metrics;
    assert_eq!(metrics.ws_slow_consumers.get(), 0);
    server.stop().await;
}

// ---- tokens reach open sockets on every node ----------------------------------------

/// Two nodes share the PostgreSQL registry. Sockets open on node two are closed with
/// 4401 within TOKEN_MEMORY when their token is revoked, or their tenant deleted, on
/// node one: nothing tells node two but its sockets' own re-checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_on_another_node_close_within_the_bound_when_their_token_stops() {
    let schema = unique_schema();
    let one = TestServer::start(|c| real_services(c, &schema)).await;
    let two = TestServer::start(|c| real_services(c, &schema)).await;
    let (tenant, doomed) = unique_tenants();
    let (admin, viewer) = one.tenant(&tenant).await;
    let (_, doomed_viewer) = one.tenant(&doomed).await;
    let (status, me) = two.get("/api/v1/me", &viewer).await;
    assert_eq!(status, 200, "{me}");
    let id = me["token_id"].as_str().unwrap().to_owned();

    let mut revoked = two.socket(&viewer).await;
    let mut orphaned = two.socket(&doomed_viewer).await;
    for socket in [&mut revoked, &mut orphaned] {
        send_ws(socket, json!({"type": "ping"})).await;
        assert_eq!(
            next_json(socket, Duration::from_secs(5)).await["type"],
            "pong"
        );
    }

    let (status, body) = one
        .send(
            "DELETE",
            &format!("/api/v1/tenants/{tenant}/tokens/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = one
        .send(
            "DELETE",
            &format!("/api/v1/tenants/{doomed}"),
            Some(&one.operator),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stopped = Instant::now();

    // Polled up to 15 s so a failure says what happened; the bound is asserted after.
    for (what, socket) in [("revoked", &mut revoked), ("orphaned", &mut orphaned)] {
        let (received, code) = until_close(socket, Duration::from_secs(15)).await;
        assert_eq!(
            code,
            Some(plinth_server::ws::CLOSE_REVOKED),
            "{what}: {received:?}"
        );
        assert_eq!(
            received.last().map(|m| m["code"].clone()),
            Some(json!("UNAUTHENTICATED")),
            "{what}: {received:?}"
        );
    }
    let took = stopped.elapsed();
    assert!(took <= TOKEN_MEMORY + Duration::from_secs(2), "{took:?}");
    one.stop().await;
    two.stop().await;
}

/// A socket opened with a token that expires is closed with 4401 once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_closes_when_its_token_expires() {
    let server = TestServer::start(embedded).await;
    let (tenant, _) = unique_tenants();
    server.tenant(&tenant).await;
    let (status, made) = server
        .token(&tenant, "viewer", json!({"expires_in_s": 1}))
        .await;
    assert_eq!(status, 201, "{made}");
    let expires = made["expires_ms"].as_i64().unwrap();
    let mut socket = server.socket(made["token"].as_str().unwrap()).await;
    send_ws(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await["type"],
        "pong"
    );
    let (received, code) = until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(plinth_server::ws::CLOSE_REVOKED), "{received:?}");
    assert!(now_ms() >= expires, "closed before the token expired");
    assert!(
        received
            .last()
            .and_then(|m| m["message"].as_str())
            .is_some_and(|m| m.contains("expired")),
        "{received:?}"
    );
    server.stop().await;
}

// ---- operator tokens ----------------------------------------------------------------

/// Operator tokens are listed without secrets and revoked by id, by operators only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_tokens_are_listed_and_revoked_by_operators() {
    let server = TestServer::start(embedded).await;
    let second = server
        .server()
        .app
        .registry
        .create_token(None, plinth_server::Role::Operator, "second operator")
        .await
        .unwrap();
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let (_, me) = server.get("/api/v1/me", &admin).await;
    let admin_id = me["token_id"].as_str().unwrap().to_owned();

    let (status, listed) = server.get("/api/v1/tokens", &server.operator).await;
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.to_string().contains("plt_"), "a secret: {listed}");
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    assert!(tokens.iter().all(|t| t["role"] == "operator"
        && t["tenant"].is_null()
        && t.get("token").is_none()
        && t.get("hash").is_none()));
    let id = tokens
        .iter()
        .find(|t| t["label"] == "second operator")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();

    // Tenant tokens neither list nor revoke operator tokens.
    for token in [&admin, &viewer] {
        let (status, body) = server.get("/api/v1/tokens", token).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
        let (status, body) = server
            .send("DELETE", &format!("/api/v1/tokens/{id}"), Some(token), None)
            .await;
        assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
    }
    // This route revokes operator tokens only.
    let (status, body) = server
        .send(
            "DELETE",
            &format!("/api/v1/tokens/{admin_id}"),
            Some(&server.operator),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(server.get("/api/v1/me", &admin).await.0, 200);

    let mut socket = server.socket(&second).await;
    assert_eq!(server.get("/api/v1/tenants", &second).await.0, 200);
    let (status, body) = server
        .send(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&server.operator),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.get("/api/v1/tenants", &second).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (_, code) = until_close(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, Some(plinth_server::ws::CLOSE_REVOKED));
    let (_, listed) = server.get("/api/v1/tokens", &server.operator).await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
    for gone in [id.as_str(), "0123456789abcdef", "nonsense"] {
        let (status, body) = server
            .send(
                "DELETE",
                &format!("/api/v1/tokens/{gone}"),
                Some(&server.operator),
                None,
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{gone}"
        );
    }
    server.stop().await;
}

// ---- token lookups ------------------------------------------------------------------

/// A metadata store that counts the statements run on the `tokens` table.
struct CountingStore {
    inner: plinth_server::store::SqliteStore,
    reads: std::sync::atomic::AtomicUsize,
    writes: std::sync::atomic::AtomicUsize,
}

impl CountingStore {
    fn count(&self, sql: &str) {
        let sql = sql.trim_start().to_ascii_uppercase();
        if sql.starts_with("SELECT") && sql.contains("FROM TOKENS") {
            self.reads.fetch_add(1, Ordering::Relaxed);
        } else if sql.starts_with("UPDATE TOKENS") {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

#[async_trait::async_trait]
impl plinth_server::store::MetaStore for CountingStore {
    async fn query(
        &self,
        sql: &str,
        params: Vec<plinth_server::store::Sql>,
    ) -> Result<Vec<plinth_server::store::Row>, plinth_host::PlinthError> {
        self.count(sql);
        self.inner.query(sql, params).await
    }
    async fn execute(
        &self,
        sql: &str,
        params: Vec<plinth_server::store::Sql>,
    ) -> Result<u64, plinth_host::PlinthError> {
        self.count(sql);
        self.inner.execute(sql, params).await
    }
    async fn migrate(&self, script: &str) -> Result<(), plinth_host::PlinthError> {
        self.inner.migrate(script).await
    }
    fn blob_type(&self) -> &'static str {
        self.inner.blob_type()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
}

/// Made-up tokens cost the metadata database a read each and never a write, and however
/// many there are they do not push a working token out of a node's memory; a working
/// token's `last_used_ms` is written once per TOKEN_MEMORY, not per use.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_tokens_neither_write_nor_evict_working_ones() {
    use plinth_server::registry::{Registry, TOKEN_CACHE_ENTRIES};
    use plinth_server::store::MetaStore as _;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(CountingStore {
        inner: plinth_server::store::SqliteStore::open(&dir.path().join("meta.sqlite3")).unwrap(),
        reads: Default::default(),
        writes: Default::default(),
    });
    let registry = Registry::open(store.clone()).await.unwrap();
    let secret = registry
        .create_token(None, plinth_server::Role::Operator, "working")
        .await
        .unwrap();

    let remembered = Instant::now();
    let before = store.counts();
    for _ in 0..100 {
        registry.principal(&secret).await.unwrap();
    }
    let after = store.counts();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 1),
        "a hundred uses: one read, one last_used write"
    );
    let listed = registry.tokens(None).await.unwrap();
    assert!(listed[0].last_used_ms.is_some(), "{listed:?}");

    // More made-up tokens than a node remembers working ones.
    let made_up: Vec<String> = (0..TOKEN_CACHE_ENTRIES + 1_000)
        .map(|i| format!("plt_made-up-{i}-{}", now_ms()))
        .collect();
    let before = store.counts();
    for token in &made_up {
        assert!(registry.authenticate(token).await.unwrap().is_none());
    }
    // The latest asked again at once: remembered as unknown, so no read either.
    for token in made_up.iter().rev().take(100) {
        assert!(registry.authenticate(token).await.unwrap().is_none());
    }
    let after = store.counts();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (made_up.len(), 0),
        "made-up tokens: one read each, no write"
    );

    // The working token is still remembered: its row gone behind the registry's back,
    // it works without a read until its memory runs out.
    store
        .inner
        .execute("DELETE FROM tokens", vec![])
        .await
        .unwrap();
    let before = store.counts();
    let answer = registry.principal(&secret).await;
    let elapsed = remembered.elapsed();
    assert!(
        elapsed < TOKEN_MEMORY,
        "this machine took {elapsed:?} for the flood; the memory ran out, nothing shown"
    );
    assert!(answer.is_ok(), "the working token was evicted: {answer:?}");
    assert_eq!(store.counts(), before, "the working token was read again");
}
