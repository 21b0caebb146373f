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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use plinth_host::{ErrorCode, PlinthError};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::registry::{Principal, Role};

/// Close code for a connection closed for falling behind.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for a connection that sent too many messages.
pub const CLOSE_RATE_LIMITED: u16 = 4029;
/// How long the farewell to a closed connection may take before the socket is dropped.
const FAREWELL: Duration = Duration::from_secs(5);

/// One connection as the relays see it.
struct Connection {
    queue: mpsc::Sender<Utf8Bytes>,
    overflowed: AtomicBool,
    dropped: AtomicU64,
    /// Why the writer must say goodbye and close: (close code, reason, farewell JSON).
    closing: Mutex<Option<(u16, &'static str, serde_json::Value)>>,
    wake: Notify,
}

impl Connection {
    /// Queues a message, or marks the connection a slow consumer.
    fn offer(&self, app: &App, text: Utf8Bytes) {
        if self.overflowed.load(Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            app.metrics
                .ws_messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(text) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            app.metrics
                .ws_messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                app.metrics
                    .ws_slow_consumers
                    .fetch_add(1, Ordering::Relaxed);
                self.close_with(
                    CLOSE_SLOW_CONSUMER,
                    "slow consumer",
                    json!({
                        "type": "slow_consumer",
                        "message": "this connection fell behind and is closed; reconnect and resubscribe",
                    }),
                );
            }
        }
    }

    /// Asks the writer to send `farewell`, then a close frame, then stop.
    fn close_with(&self, code: u16, reason: &'static str, farewell: serde_json::Value) {
        let mut closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        if closing.is_none() {
            *closing = Some((code, reason, farewell));
            self.wake.notify_one();
        }
    }
}

struct Relay {
    connections: HashMap<u64, Arc<Connection>>,
    task: JoinHandle<()>,
}

/// The node's subscriptions: one relay per (tenant, topic).
#[derive(Default)]
pub struct Hub {
    relays: Mutex<HashMap<(String, String), Relay>>,
    next_id: AtomicU64,
}

impl Hub {
    fn join(
        &self,
        app: &Arc<App>,
        tenant: &str,
        topic: &str,
        id: u64,
        connection: Arc<Connection>,
    ) {
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), topic.to_owned());
        let relay = relays.entry(key.clone()).or_insert_with(|| Relay {
            connections: HashMap::new(),
            task: tokio::spawn(relay(app.clone(), key.0.clone(), key.1.clone())),
        });
        relay.connections.insert(id, connection);
    }

    fn leave(&self, tenant: &str, topic: &str, id: u64) {
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), topic.to_owned());
        if let Some(relay) = relays.get_mut(&key) {
            relay.connections.remove(&id);
            if relay.connections.is_empty() {
                relay.task.abort();
                relays.remove(&key);
            }
        }
    }

    fn targets(&self, tenant: &str, topic: &str) -> Vec<Arc<Connection>> {
        let relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        relays
            .get(&(tenant.to_owned(), topic.to_owned()))
            .map(|r| r.connections.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Relays running on this node (one per subscribed tenant topic).
    pub fn relay_count(&self) -> usize {
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Forwards one tenant topic from the broadcast backend to local connections.
async fn relay(app: Arc<App>, tenant: String, topic: String) {
    let mut receiver = app.backends().broadcast.subscribe(&tenant, &topic);
    loop {
        let text = match receiver.recv().await {
            Ok(message) => Utf8Bytes::from(
                json!({"type": "message", "topic": topic, "payload": *message.payload}).to_string(),
            ),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                // The relay itself fell behind the backend: tell clients to refetch.
                app.metrics
                    .ws_messages_dropped
                    .fetch_add(missed, Ordering::Relaxed);
                Utf8Bytes::from(
                    json!({"type": "resync", "topic": topic, "missed": missed}).to_string(),
                )
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        for connection in app.hub.targets(&tenant, &topic) {
            connection.offer(&app, text.clone());
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
    app: &App,
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
            app.registry.installation(&tenant, id).await.map(|_| ())
        }
        Some(("dashboard", name)) => app.registry.dashboard(&tenant, name).await.map(|_| ()),
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
                app.registry.tenant(&tenant).await.map(|_| ())
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

/// Sends the reason a connection is closed, then the close frame, waiting at most
/// [`FAREWELL`]: a slow consumer's socket may not take even this.
async fn farewell(sink: &mut SplitSink<WebSocket, Message>, connection: &Connection) {
    let Some((code, reason, mut farewell)) = connection
        .closing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    farewell["dropped"] = connection.dropped.load(Ordering::Relaxed).into();
    let _ = tokio::time::timeout(FAREWELL, async {
        sink.send(Message::Text(farewell.to_string().into()))
            .await?;
        sink.send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await
    })
    .await;
}

/// Serves one upgraded connection until it closes.
pub async fn serve(app: Arc<App>, principal: Principal, socket: WebSocket) {
    let settings = app.config.websocket.clone();
    let id = app.hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (queue, mut outgoing) = mpsc::channel::<Utf8Bytes>(settings.queue_messages);
    let connection = Arc::new(Connection {
        queue,
        overflowed: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        closing: Mutex::new(None),
        wake: Notify::new(),
    });
    app.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let subscriptions: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let last_heard = Arc::new(Mutex::new(Instant::now()));

    // Reads client messages: subscriptions, pings, the rate limit.
    let reader = {
        let (app, connection, subscriptions, last_heard) = (
            app.clone(),
            connection.clone(),
            subscriptions.clone(),
            last_heard.clone(),
        );
        async move {
            let rate = f64::from(settings.messages_per_second);
            let mut tokens = rate * 2.0;
            let mut refilled = Instant::now();
            while let Some(Ok(message)) = stream.next().await {
                *last_heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                if let Message::Close(_) = message {
                    return false;
                }
                // Every frame counts against the rate, whatever its kind.
                tokens = (tokens + refilled.elapsed().as_secs_f64() * rate).min(rate * 2.0);
                refilled = Instant::now();
                if tokens < 1.0 {
                    connection.close_with(
                        CLOSE_RATE_LIMITED,
                        "rate limited",
                        json!({
                            "type": "error",
                            "code": ErrorCode::RateLimited,
                            "message": format!(
                                "more than {} messages per second; closing", settings.messages_per_second
                            ),
                        }),
                    );
                    return true;
                }
                tokens -= 1.0;
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        connection.offer(
                            &app,
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
                        match check_topic(&app, &principal, tenant, &topic).await {
                            Err(e) => error_text(&e),
                            Ok(tenant) => {
                                let mut subscribed =
                                    subscriptions.lock().unwrap_or_else(|p| p.into_inner());
                                if subscribed.len() >= settings.max_subscriptions
                                    && !subscribed.contains(&(tenant.clone(), topic.clone()))
                                {
                                    error_text(&PlinthError::new(
                                        ErrorCode::QuotaExceeded,
                                        format!(
                                            "at most {} subscriptions per connection",
                                            settings.max_subscriptions
                                        ),
                                    ))
                                } else {
                                    subscribed.insert((tenant.clone(), topic.clone()));
                                    app.hub.join(&app, &tenant, &topic, id, connection.clone());
                                    Utf8Bytes::from(
                                        json!({"type": "subscribed", "topic": topic}).to_string(),
                                    )
                                }
                            }
                        }
                    }
                    Ok(ClientMessage::Unsubscribe { topic, tenant }) => {
                        let tenant = tenant.or(principal.tenant.clone()).unwrap_or_default();
                        subscriptions
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&(tenant.clone(), topic.clone()));
                        app.hub.leave(&tenant, &topic, id);
                        Utf8Bytes::from(json!({"type": "unsubscribed", "topic": topic}).to_string())
                    }
                };
                connection.offer(&app, reply);
            }
            false
        }
    };

    // Writes queued messages and heartbeats; says goodbye to a slow consumer.
    let writer = {
        let (app, connection, last_heard) = (app.clone(), connection.clone(), last_heard.clone());
        async move {
            let mut heartbeat = tokio::time::interval(settings.heartbeat);
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    biased;
                    _ = connection.wake.notified() => {
                        farewell(&mut sink, &connection).await;
                        return;
                    }
                    next = outgoing.recv() => {
                        let Some(text) = next else { return };
                        // A send blocks while the client does not read; being told to
                        // close must not wait behind it.
                        tokio::select! {
                            sent = sink.send(Message::Text(text)) => {
                                if sent.is_err() {
                                    return;
                                }
                                app.metrics.ws_messages_sent.fetch_add(1, Ordering::Relaxed);
                            }
                            _ = connection.wake.notified() => {
                                farewell(&mut sink, &connection).await;
                                return;
                            }
                        }
                    }
                    _ = heartbeat.tick() => {
                        let silent = last_heard.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
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
        closing = reader => {
            if closing {
                // The writer says why and closes; it gets a bounded time for that.
                let _ = tokio::time::timeout(FAREWELL * 2, &mut writer).await;
            }
            writer.abort();
        }
        _ = &mut writer => {}
    }
    for (tenant, topic) in subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
    {
        app.hub.leave(&tenant, &topic, id);
    }
    app.metrics.ws_connections.fetch_sub(1, Ordering::Relaxed);
}
