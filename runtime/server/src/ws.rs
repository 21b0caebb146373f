//! The WebSocket hub at `/api/v1/ws`.
//!
//! Each node subscribes to the broadcast backend once per (tenant, topic) that has a
//! local subscriber, serializes each message once, and hands it to every subscribed
//! connection's bounded queue. A connection whose queue is full when a message arrives
//! is a slow consumer: it is told (`{"type":"slow_consumer"}`) and closed with code
//! 4008, and its queue is freed. So the server holds at most `queue_messages` messages
//! per connection, whatever a client does.
//!
//! Client messages (JSON text, at most `max_message_bytes`, at most
//! `messages_per_second` per second with a burst of twice that):
//! `{"type":"subscribe","topic":T}`, `{"type":"unsubscribe","topic":T}`,
//! `{"type":"ping"}`; an operator adds `"tenant"`. Topics: `widget/<installation>`
//! (fresh views after each tick), `installation/<id>` (parked, …),
//! `dashboard/<name>` (layout changes), and any topic extensions publish to
//! (`alerts`, `cache-stats`, …).
//!
//! A socket lives no longer than its token: revoked, expired or its tenant deleted, on
//! this node or another sharing the metadata database, it is closed with 4401 within
//! [`TOKEN_MEMORY`] (see `TOKEN_RECHECK`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use plinth_host::capability::broadcast::BroadcastBackend;
use plinth_host::lock::Recover;
use plinth_host::{ErrorCode, PlinthError};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::config::WebSocketConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::registry::{Principal, Role, TOKEN_MEMORY, now_ms};

/// Close code for a connection closed for falling behind.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for a connection that sent too many messages.
pub const CLOSE_RATE_LIMITED: u16 = 4029;
/// Close code for a connection whose token was revoked or whose tenant was deleted.
pub const CLOSE_REVOKED: u16 = 4401;
/// The server is stopping (RFC 6455's "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a client message over `max_message_bytes` (RFC 6455: message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// How long the farewell to a closed connection may take before the socket is dropped.
const FAREWELL: Duration = Duration::from_secs(5);
/// How often an open socket checks that its token still works. Revocation and tenant
/// deletion on another node reach no socket here directly: this check does. It accepts
/// a lookup younger than `TOKEN_MEMORY - TOKEN_RECHECK`, so it reads the metadata
/// database at most that often per token (not per socket) and a token that stops
/// working anywhere closes its sockets here within TOKEN_MEMORY.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// One connection as the relays see it.
struct Connection {
    queue: mpsc::Sender<Utf8Bytes>,
    overflowed: AtomicBool,
    dropped: AtomicU64,
    /// Why the writer must say goodbye and close.
    closing: Mutex<Option<Farewell>>,
    wake: Notify,
}

/// How a connection is closed: a last JSON notice, then a close frame.
struct Farewell {
    code: u16,
    reason: &'static str,
    notice: serde_json::Value,
    /// Send what is queued first: replies to messages the server accepted are owed to
    /// the client. A slow consumer's queue is dropped instead (it would not be read).
    after_queue: bool,
}

impl Connection {
    /// Queues a message, or marks the connection a slow consumer.
    fn offer(&self, metrics: &Metrics, text: Utf8Bytes) {
        if self.overflowed.load(Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics.ws_messages_dropped.inc();
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(text) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics.ws_messages_dropped.inc();
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                metrics.ws_slow_consumers.inc();
                self.close_with(
                    CLOSE_SLOW_CONSUMER,
                    false,
                    "slow consumer",
                    json!({
                        "type": "slow_consumer",
                        "message": "this connection fell behind and is closed; reconnect and resubscribe",
                    }),
                );
            }
        }
    }

    /// Asks the writer to send `notice` (after the queue when `after_queue`), then a
    /// close frame, then stop.
    fn close_with(
        &self,
        code: u16,
        after_queue: bool,
        reason: &'static str,
        notice: serde_json::Value,
    ) {
        let mut closing = self.closing.lock().recover();
        if closing.is_none() {
            *closing = Some(Farewell {
                code,
                reason,
                notice,
                after_queue,
            });
            self.wake.notify_one();
        }
    }

    /// Whether the closing asked for must not wait for the message being sent.
    fn interrupts(&self) -> bool {
        self.closing
            .lock()
            .recover()
            .as_ref()
            .is_some_and(|f| !f.after_queue)
    }
}

struct Relay {
    connections: HashMap<u64, Arc<Connection>>,
    task: JoinHandle<()>,
}

/// A socket open on this node: whom it acts for, so it can be counted and closed.
struct OpenSocket {
    token_id: String,
    tenant: Option<String>,
    /// Set once the upgrade completes; a seat is taken before it.
    connection: Option<Arc<Connection>>,
    /// Why it was revoked before it had a connection to close: closed when it gets one.
    revoked: Option<&'static str>,
}

/// The node's subscriptions: one relay per (tenant, topic), shared by every local
/// subscriber of that topic; and its open sockets.
pub struct Hub {
    settings: WebSocketConfig,
    /// Where tokens are re-checked and topics' installations and dashboards looked up.
    registry: Arc<Registry>,
    broadcast: Arc<dyn BroadcastBackend>,
    metrics: Arc<Metrics>,
    /// Relays by tenant, then topic.
    relays: Mutex<HashMap<String, HashMap<String, Relay>>>,
    sockets: Mutex<HashMap<u64, OpenSocket>>,
    next_id: AtomicU64,
    /// Set when the server stops: sockets are closed with [`CLOSE_GOING_AWAY`], and one
    /// upgraded after that is closed at once.
    stopping: AtomicBool,
    /// Notified when the last socket of this node ends.
    emptied: Notify,
}

/// A socket's place on this node, taken before the upgrade so that sockets racing
/// each other cannot pass the caps together; given back when dropped.
pub struct Seat {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut sockets = self.hub.sockets.lock().recover();
        sockets.remove(&self.id);
        if sockets.is_empty() {
            self.hub.emptied.notify_waiters();
        }
    }
}

impl Hub {
    pub fn new(
        settings: WebSocketConfig,
        registry: Arc<Registry>,
        broadcast: Arc<dyn BroadcastBackend>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Hub {
            settings,
            registry,
            broadcast,
            metrics,
            relays: Mutex::default(),
            sockets: Mutex::default(),
            stopping: AtomicBool::new(false),
            emptied: Notify::new(),
            next_id: AtomicU64::new(0),
        }
    }

    /// A seat for a socket of `principal`, unless its token or tenant holds as many
    /// sockets as `websocket.max_sockets_per_token` / `max_sockets_per_tenant` allow.
    pub fn seat(self: &Arc<Self>, principal: &Principal) -> Result<Seat, PlinthError> {
        let settings = &self.settings;
        let hub = self;
        let mut sockets = hub.sockets.lock().recover();
        let (mut of_token, mut of_tenant) = (0, 0);
        for socket in sockets.values() {
            of_token += usize::from(socket.token_id == principal.token_id);
            of_tenant +=
                usize::from(principal.tenant.is_some() && socket.tenant == principal.tenant);
        }
        let refused = if of_token >= settings.max_sockets_per_token {
            Some(format!(
                "this token has {of_token} sockets open on this node, the most it may \
                 (websocket.max_sockets_per_token)"
            ))
        } else if principal.tenant.is_some() && of_tenant >= settings.max_sockets_per_tenant {
            Some(format!(
                "this tenant has {of_tenant} sockets open on this node, the most it may \
                 (websocket.max_sockets_per_tenant)"
            ))
        } else {
            None
        };
        if let Some(message) = refused {
            return Err(PlinthError::new(ErrorCode::QuotaExceeded, message));
        }
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        sockets.insert(
            id,
            OpenSocket {
                token_id: principal.token_id.clone(),
                tenant: principal.tenant.clone(),
                connection: None,
                revoked: None,
            },
        );
        Ok(Seat {
            hub: self.clone(),
            id,
        })
    }

    fn attach(&self, seat: &Seat, connection: Arc<Connection>) {
        let mut sockets = self.sockets.lock().recover();
        // Under the lock `close_all` sets the flag under: a socket attached after it
        // looked is closed here.
        if self.stopping.load(Ordering::Relaxed) {
            close_going_away(&connection);
        }
        if let Some(socket) = sockets.get_mut(&seat.id) {
            // Revoked between the token check and the upgrade: the revocation found no
            // connection to close, so it is closed now instead of living on.
            if let Some(why) = socket.revoked {
                close_revoked(&connection, why);
            }
            socket.connection = Some(connection);
        }
    }

    /// Closes every socket with [`CLOSE_GOING_AWAY`]: the server is stopping. An upgraded
    /// socket is a task of its own that the HTTP server's graceful stop does not reach;
    /// closed, its client reconnects (to another node, or to this one when it is back).
    pub fn close_all(&self) {
        let sockets = self.sockets.lock().recover();
        self.stopping.store(true, Ordering::Relaxed);
        for socket in sockets.values() {
            if let Some(connection) = &socket.connection {
                close_going_away(connection);
            }
        }
    }

    /// Returns when no socket is open on this node, or after `grace`.
    pub async fn closed(&self, grace: Duration) {
        let _ = tokio::time::timeout(grace, async {
            loop {
                let emptied = self.emptied.notified();
                tokio::pin!(emptied);
                emptied.as_mut().enable();
                if self.socket_count() == 0 {
                    return;
                }
                emptied.await;
            }
        })
        .await;
    }

    /// Sockets open on this node.
    pub fn socket_count(&self) -> usize {
        self.sockets.lock().recover().len()
    }

    fn join(
        self: &Arc<Self>,
        tenant: &str,
        topic: &str,
        id: u64,
        connection: Arc<Connection>,
    ) -> Result<(), PlinthError> {
        let mut relays = self.relays.lock().recover();
        let topics = relays.entry(tenant.to_owned()).or_default();
        if let Some(relay) = topics.get_mut(topic) {
            relay.connections.insert(id, connection);
            return Ok(());
        }
        let max = self.settings.max_topics_per_tenant;
        if topics.len() >= max {
            return Err(PlinthError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "this node relays {max} topics of this tenant already, the most it may \
                     (websocket.max_topics_per_tenant)"
                ),
            ));
        }
        topics.insert(
            topic.to_owned(),
            Relay {
                connections: HashMap::from([(id, connection)]),
                task: tokio::spawn(relay(self.clone(), tenant.to_owned(), topic.to_owned())),
            },
        );
        Ok(())
    }

    fn leave(&self, tenant: &str, topic: &str, id: u64) {
        let mut relays = self.relays.lock().recover();
        let Some(topics) = relays.get_mut(tenant) else {
            return;
        };
        if let Some(relay) = topics.get_mut(topic) {
            relay.connections.remove(&id);
            if relay.connections.is_empty() {
                relay.task.abort();
                topics.remove(topic);
            }
        }
        if topics.is_empty() {
            relays.remove(tenant);
        }
    }

    fn targets(&self, tenant: &str, topic: &str) -> Vec<Arc<Connection>> {
        let relays = self.relays.lock().recover();
        relays
            .get(tenant)
            .and_then(|topics| topics.get(topic))
            .map(|r| r.connections.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Relays running on this node (one per subscribed tenant topic).
    pub fn relay_count(&self) -> usize {
        self.relays
            .lock()
            .recover()
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Closes the sockets `which` matches with [`CLOSE_REVOKED`]; one not yet attached
    /// is closed when it attaches.
    fn revoke(&self, which: impl Fn(&OpenSocket) -> bool, why: &'static str) {
        let mut sockets = self.sockets.lock().recover();
        for socket in sockets.values_mut().filter(|s| which(s)) {
            match &socket.connection {
                Some(connection) => close_revoked(connection, why),
                None => socket.revoked = Some(why),
            }
        }
    }

    /// Closes this node's sockets of a revoked token.
    pub fn revoke_token(&self, token_id: &str) {
        self.revoke(|s| s.token_id == token_id, "this token was revoked");
    }

    /// Stops relaying a deleted tenant's topics and closes its sockets on this node.
    pub fn drop_tenant(&self, tenant: &str) {
        let dropped = self.relays.lock().recover().remove(tenant);
        for relay in dropped.into_iter().flat_map(HashMap::into_values) {
            relay.task.abort();
        }
        self.revoke(
            |s| s.tenant.as_deref() == Some(tenant),
            "this token's tenant was deleted",
        );
    }
}

fn close_going_away(connection: &Connection) {
    connection.close_with(
        CLOSE_GOING_AWAY,
        false,
        "server stopping",
        json!({"type": "error", "code": ErrorCode::Unavailable, "message": "this server is stopping; connect again"}),
    );
}

fn close_revoked(connection: &Connection, why: &str) {
    connection.close_with(
        CLOSE_REVOKED,
        false,
        "revoked",
        json!({"type": "error", "code": ErrorCode::Unauthenticated, "message": why}),
    );
}

/// Closes `connection` with [`CLOSE_REVOKED`] once its token stops working: revoked or
/// its tenant deleted on any node (seen through the shared metadata database), or
/// expired (checked at `expires_ms` itself, not only at the next round).
async fn watch_token(
    hub: Arc<Hub>,
    token_hash: String,
    expires_ms: Option<i64>,
    connection: Arc<Connection>,
) {
    loop {
        let mut wait = TOKEN_RECHECK;
        if let Some(at) = expires_ms {
            // One millisecond past, since the check refuses from `expires_ms` on.
            let left = (at - now_ms() + 1).max(0) as u64;
            wait = wait.min(Duration::from_millis(left));
        }
        tokio::time::sleep(wait).await;
        match hub
            .registry
            .principal_of_hash(&token_hash, TOKEN_MEMORY - TOKEN_RECHECK)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::Unauthenticated => {
                let why = if expires_ms.is_some_and(|at| now_ms() >= at) {
                    "this token expired"
                } else {
                    "this token was revoked or its tenant deleted"
                };
                close_revoked(&connection, why);
                return;
            }
            // The metadata database did not answer: the token is not known to be bad,
            // and closing every socket during an outage would only make clients
            // reconnect into it. The next round asks again.
            Err(_) => {}
        }
    }
}

/// Forwards one tenant topic from the broadcast backend to local connections.
async fn relay(hub: Arc<Hub>, tenant: String, topic: String) {
    let mut receiver = hub.broadcast.subscribe(&tenant, &topic);
    loop {
        let text = match receiver.recv().await {
            Ok(message) => Utf8Bytes::from(
                json!({"type": "message", "tenant": tenant, "topic": topic, "payload": *message.payload})
                    .to_string(),
            ),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                // The relay itself fell behind the backend: tell clients to refetch.
                hub.metrics.ws_messages_dropped.inc_by(missed);
                Utf8Bytes::from(
                    json!({"type": "resync", "topic": topic, "missed": missed}).to_string(),
                )
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        for connection in hub.targets(&tenant, &topic) {
            connection.offer(&hub.metrics, text.clone());
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        topic: String,
        #[serde(default)]
        tenant: Option<String>,
    },
    Unsubscribe {
        topic: String,
        #[serde(default)]
        tenant: Option<String>,
    },
    Ping,
}

fn error_text(error: &PlinthError) -> Utf8Bytes {
    Utf8Bytes::from(
        json!({"type": "error", "code": error.code, "message": error.message}).to_string(),
    )
}

/// Checks that `principal` may subscribe to `topic` of `tenant`.
async fn check_topic(
    registry: &Registry,
    principal: &Principal,
    tenant: Option<String>,
    topic: &str,
) -> Result<String, PlinthError> {
    let tenant = match (&principal.tenant, tenant) {
        (Some(own), None) => own.clone(),
        (Some(own), Some(asked)) if *own == asked => asked,
        (Some(_), Some(asked)) => {
            return Err(PlinthError::new(
                ErrorCode::Forbidden,
                format!("this token cannot subscribe to tenant {asked}'s topics"),
            ));
        }
        (None, Some(asked)) if principal.role == Role::Operator => asked,
        (None, _) => {
            return Err(PlinthError::new(
                ErrorCode::InvalidRequest,
                "an operator names the tenant: {\"type\":\"subscribe\",\"tenant\":…,\"topic\":…}",
            ));
        }
    };
    let exists = match topic.split_once('/') {
        Some(("widget" | "installation", id)) => {
            registry.installation(&tenant, id).await.map(|_| ())
        }
        Some(("dashboard", name)) => registry.dashboard(&tenant, name).await.map(|_| ()),
        Some(_) => Err(PlinthError::new(
            ErrorCode::InvalidRequest,
            format!("unknown topic kind in {topic:?}: widget/, installation/ or dashboard/"),
        )),
        None => {
            let ok = !topic.is_empty()
                && topic.len() <= 100
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
            if ok {
                registry.tenant(&tenant).await.map(|_| ())
            } else {
                Err(PlinthError::new(
                    ErrorCode::InvalidRequest,
                    format!("topic {topic:?}: use [A-Za-z0-9._:-], at most 100 bytes"),
                ))
            }
        }
    };
    // Another tenant's installation and a missing one look the same: NOT_FOUND.
    exists.map(|()| tenant)
}

/// Sends the reason a connection is closed (after what is queued, when the closing
/// asks for it), then the close frame, waiting at most [`FAREWELL`]: a slow consumer's
/// socket may not take even this.
async fn farewell(
    sink: &mut SplitSink<WebSocket, Message>,
    outgoing: &mut mpsc::Receiver<Utf8Bytes>,
    metrics: &Metrics,
    connection: &Connection,
) {
    let Some(mut farewell) = connection.closing.lock().recover().take() else {
        return;
    };
    if farewell.code == CLOSE_SLOW_CONSUMER {
        farewell.notice["dropped"] = connection.dropped.load(Ordering::Relaxed).into();
    }
    let _ = tokio::time::timeout(FAREWELL, async {
        if farewell.after_queue {
            while let Ok(text) = outgoing.try_recv() {
                sink.send(Message::Text(text)).await?;
                metrics.ws_messages_sent.inc();
            }
        }
        sink.send(Message::Text(farewell.notice.to_string().into()))
            .await?;
        sink.send(Message::Close(Some(CloseFrame {
            code: farewell.code,
            reason: farewell.reason.into(),
        })))
        .await
    })
    .await;
}

/// Whether a read failed because the client's message is over the size limit.
fn too_big(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// Reads what the client still sends after the server's close frame, until its own
/// close frame, the end of the stream or [`FAREWELL`]. Closing a TCP socket with unread
/// data makes the kernel reset the connection, and a reset can destroy the close frame
/// before the client reads it: draining first lets the close code arrive.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(FAREWELL, async {
        let mut errors = 0;
        while let Some(next) = stream.next().await {
            match next {
                Ok(Message::Close(_)) => return,
                Ok(_) => {}
                // After an oversized frame the rest of it reads as garbage: skip it,
                // but not forever.
                Err(_) => {
                    errors += 1;
                    if errors > 64 {
                        return;
                    }
                }
            }
        }
    })
    .await;
}

/// Serves one upgraded connection until it closes. `seat` is its place under the
/// socket caps, held until it ends; `token_hash` ([`crate::registry::token_hash`]) names
/// the token it was opened with, re-checked while it is open.
pub async fn serve(
    hub: Arc<Hub>,
    principal: Principal,
    token_hash: String,
    socket: WebSocket,
    seat: Seat,
) {
    let settings = hub.settings.clone();
    let id = seat.id;
    let (queue, mut outgoing) = mpsc::channel::<Utf8Bytes>(settings.queue_messages);
    let connection = Arc::new(Connection {
        queue,
        overflowed: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        closing: Mutex::new(None),
        wake: Notify::new(),
    });
    hub.attach(&seat, connection.clone());
    let watcher = tokio::spawn(watch_token(
        hub.clone(),
        token_hash,
        principal.expires_ms,
        connection.clone(),
    ));
    hub.metrics.ws_connections.inc();
    let (mut sink, mut stream) = socket.split();
    let subscriptions: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let last_heard = Arc::new(Mutex::new(Instant::now()));

    // Reads client messages: subscriptions, pings, the rate limit. Ends with whether the
    // server is closing the connection, and hands the stream back for the lingering.
    let reader = {
        let (hub, connection, subscriptions, last_heard) = (
            hub.clone(),
            connection.clone(),
            subscriptions.clone(),
            last_heard.clone(),
        );
        async move {
            let rate = f64::from(settings.messages_per_second);
            let mut tokens = rate * 2.0;
            let mut refilled = Instant::now();
            while let Some(next) = stream.next().await {
                let message = match next {
                    Ok(message) => message,
                    Err(e) if too_big(&e) => {
                        connection.close_with(
                            CLOSE_TOO_BIG,
                            true,
                            "message too big",
                            json!({
                                "type": "error",
                                "code": ErrorCode::PayloadTooLarge,
                                "message": format!(
                                    "messages are at most {} bytes; closing", settings.max_message_bytes
                                ),
                            }),
                        );
                        return (true, stream);
                    }
                    Err(_) => return (false, stream),
                };
                *last_heard.lock().recover() = Instant::now();
                if let Message::Close(_) = message {
                    return (false, stream);
                }
                // Every frame counts against the rate, whatever its kind.
                tokens = (tokens + refilled.elapsed().as_secs_f64() * rate).min(rate * 2.0);
                refilled = Instant::now();
                if tokens < 1.0 {
                    connection.close_with(
                        CLOSE_RATE_LIMITED,
                        true,
                        "rate limited",
                        json!({
                            "type": "error",
                            "code": ErrorCode::RateLimited,
                            "message": format!(
                                "more than {} messages per second; closing", settings.messages_per_second
                            ),
                        }),
                    );
                    return (true, stream);
                }
                tokens -= 1.0;
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        connection.offer(
                            &hub.metrics,
                            error_text(&PlinthError::new(
                                ErrorCode::InvalidRequest,
                                "messages are JSON text",
                            )),
                        );
                        continue;
                    }
                    _ => continue,
                };
                let reply = match serde_json::from_str::<ClientMessage>(&text) {
                    Err(e) => error_text(&PlinthError::new(
                        ErrorCode::InvalidRequest,
                        format!("not a client message: {e}"),
                    )),
                    Ok(ClientMessage::Ping) => Utf8Bytes::from_static("{\"type\":\"pong\"}"),
                    Ok(ClientMessage::Subscribe { topic, tenant }) => {
                        match check_topic(&hub.registry, &principal, tenant, &topic).await {
                            Err(e) => error_text(&e),
                            Ok(tenant) => {
                                let mut subscribed = subscriptions.lock().recover();
                                let key = (tenant.clone(), topic.clone());
                                if subscribed.contains(&key) {
                                    Utf8Bytes::from(
                                        json!({"type": "subscribed", "topic": topic}).to_string(),
                                    )
                                } else if subscribed.len() >= settings.max_subscriptions {
                                    error_text(&PlinthError::new(
                                        ErrorCode::QuotaExceeded,
                                        format!(
                                            "at most {} subscriptions per connection",
                                            settings.max_subscriptions
                                        ),
                                    ))
                                } else {
                                    match hub.join(&tenant, &topic, id, connection.clone()) {
                                        Ok(()) => {
                                            subscribed.insert(key);
                                            Utf8Bytes::from(
                                                json!({"type": "subscribed", "topic": topic})
                                                    .to_string(),
                                            )
                                        }
                                        Err(e) => error_text(&e),
                                    }
                                }
                            }
                        }
                    }
                    Ok(ClientMessage::Unsubscribe { topic, tenant }) => {
                        let tenant = tenant.or(principal.tenant.clone()).unwrap_or_default();
                        subscriptions
                            .lock()
                            .recover()
                            .remove(&(tenant.clone(), topic.clone()));
                        hub.leave(&tenant, &topic, id);
                        Utf8Bytes::from(json!({"type": "unsubscribed", "topic": topic}).to_string())
                    }
                };
                connection.offer(&hub.metrics, reply);
            }
            (false, stream)
        }
    };

    // Writes queued messages and heartbeats; says goodbye when the connection is closed.
    let writer = {
        let (hub, connection, last_heard) = (hub.clone(), connection.clone(), last_heard.clone());
        async move {
            let mut heartbeat = tokio::time::interval(settings.heartbeat);
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    biased;
                    _ = connection.wake.notified() => {
                        farewell(&mut sink, &mut outgoing, &hub.metrics, &connection).await;
                        return;
                    }
                    next = outgoing.recv() => {
                        let Some(text) = next else { return };
                        // A send blocks while the client does not read; being told to
                        // close must not wait behind it, unless the closing waits for
                        // the queue anyway (then this message is finished first: a send
                        // dropped halfway may lose it).
                        let (sent, woken) = {
                            let mut send = std::pin::pin!(sink.send(Message::Text(text)));
                            let mut woken = false;
                            let sent = loop {
                                tokio::select! {
                                    sent = &mut send => break Some(sent),
                                    _ = connection.wake.notified(), if !woken => {
                                        woken = true;
                                        if connection.interrupts() {
                                            break None;
                                        }
                                    }
                                }
                            };
                            (sent, woken)
                        };
                        match sent {
                            Some(Ok(())) => {
                                hub.metrics.ws_messages_sent.inc();
                            }
                            Some(Err(_)) => return,
                            None => {}
                        }
                        if woken {
                            farewell(&mut sink, &mut outgoing, &hub.metrics, &connection).await;
                            return;
                        }
                    }
                    _ = heartbeat.tick() => {
                        let silent = last_heard.lock().recover().elapsed();
                        if silent > settings.heartbeat * 3 {
                            let _ = tokio::time::timeout(FAREWELL, sink.close()).await;
                            return;
                        }
                        if sink.send(Message::Ping(Default::default())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    };

    let mut writer = tokio::spawn(writer);
    tokio::select! {
        (closing, mut stream) = reader => {
            if closing {
                // The writer says why and closes; it gets a bounded time for that. Then
                // the client's last frames are read so the close frame is not reset away.
                if tokio::time::timeout(FAREWELL * 2, &mut writer).await.is_ok() {
                    linger(&mut stream).await;
                }
            }
            writer.abort();
        }
        _ = &mut writer => {}
    }
    watcher.abort();
    for (tenant, topic) in subscriptions.lock().recover().drain() {
        hub.leave(&tenant, &topic, id);
    }
    hub.metrics.ws_connections.dec();
    drop(seat);
}
