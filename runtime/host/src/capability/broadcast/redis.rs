//! Broadcast over Redis pub/sub, so a message published on one node reaches the
//! subscribers of every node. Channels are `plinth:{tenant}:b:{topic}`; each node
//! listens to all of them with one pattern subscription and hands messages from other
//! nodes to its local hub. A node delivers its own messages locally at once and skips
//! them when they come back from Redis (each message carries the node's id), so every
//! subscriber gets each message exactly once. While Redis is unreachable, messages reach
//! this node's subscribers only; that is counted and logged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use super::{BroadcastBackend, InProcessHub, Message};
use crate::capability::redis_link::{OPERATION_TIMEOUT, RETRY_AFTER, RedisLink};
use crate::error::BackendError;

const CHANNEL_PATTERN: &str = "plinth:{*}:b:*";

fn channel(tenant: &str, topic: &str) -> String {
    format!("plinth:{{{tenant}}}:b:{topic}")
}

/// `plinth:{tenant}:b:topic` back into its parts. Tenant names hold no `}`, so the
/// first `}:b:` ends the tenant.
fn parse_channel(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("plinth:{")?;
    rest.split_once("}:b:")
}

/// What travels through Redis: the message and the node that published it.
#[derive(serde::Deserialize)]
struct Envelope {
    node: String,
    payload: serde_json::Value,
}

pub struct RedisHub {
    /// Random per hub: tells this node's messages from other nodes'.
    node: String,
    link: RedisLink,
    local: Arc<InProcessHub>,
    listening: OnceLock<()>,
    listener_connected: Arc<AtomicBool>,
    local_only: AtomicU64,
}

impl RedisHub {
    /// A hub on the Redis at `url`. Connects lazily; the listener starts with the first
    /// subscription or publication.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        let link = RedisLink::open(url)?;
        let mut node = [0u8; 8];
        getrandom::fill(&mut node).map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(RedisHub {
            node: hex::encode(node),
            link,
            local: Arc::new(InProcessHub::default()),
            listening: OnceLock::new(),
            listener_connected: Arc::new(AtomicBool::new(false)),
            local_only: AtomicU64::new(0),
        })
    }

    /// Messages delivered to this node only because Redis was unreachable.
    pub fn local_only_deliveries(&self) -> u64 {
        self.local_only.load(Ordering::Relaxed)
    }

    /// Whether this node's pattern subscription is live.
    pub fn listening(&self) -> bool {
        self.listener_connected.load(Ordering::Relaxed)
    }

    fn start_listener(&self) {
        self.listening.get_or_init(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::error!("broadcast listener needs a tokio runtime; messages from other nodes will not arrive");
                return;
            };
            let (client, local) = (self.link.client().clone(), self.local.clone());
            let (connected, node) = (self.listener_connected.clone(), self.node.clone());
            runtime.spawn(async move {
                loop {
                    match client.get_async_pubsub().await {
                        Ok(mut pubsub) => match pubsub.psubscribe(CHANNEL_PATTERN).await {
                            Ok(()) => {
                                connected.store(true, Ordering::Relaxed);
                                let mut messages = pubsub.into_on_message();
                                while let Some(message) = messages.next().await {
                                    let Some((tenant, topic)) = parse_channel(message.get_channel_name()) else {
                                        continue;
                                    };
                                    let Ok(text) = message.get_payload::<String>() else { continue };
                                    let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else { continue };
                                    if envelope.node != node {
                                        let _ = local.publish(tenant, topic, envelope.payload).await;
                                    }
                                }
                                connected.store(false, Ordering::Relaxed);
                                tracing::warn!("redis broadcast subscription lost; reconnecting");
                            }
                            Err(error) => tracing::warn!(%error, "redis broadcast: cannot subscribe"),
                        },
                        Err(error) => tracing::debug!(%error, "redis broadcast: cannot connect"),
                    }
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            });
        });
    }

    async fn publisher(&self) -> Option<ConnectionManager> {
        self.link.connection().await.ok()
    }
}

#[async_trait]
impl BroadcastBackend for RedisHub {
    fn local_only_deliveries(&self) -> u64 {
        RedisHub::local_only_deliveries(self)
    }

    async fn publish(
        &self,
        tenant: &str,
        topic: &str,
        payload: serde_json::Value,
    ) -> Result<(), BackendError> {
        self.start_listener();
        let envelope = serde_json::json!({"node": self.node, "payload": payload}).to_string();
        let sent = match self.publisher().await {
            Some(mut connection) => {
                let publishing = connection.publish::<_, _, u64>(channel(tenant, topic), &envelope);
                let sent = matches!(
                    tokio::time::timeout(OPERATION_TIMEOUT, publishing).await,
                    Ok(Ok(_))
                );
                if !sent {
                    self.link.went_down();
                }
                sent
            }
            None => false,
        };
        if !sent {
            self.local_only.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tenant,
                topic,
                "redis unreachable: message delivered on this node only"
            );
        }
        self.local.publish(tenant, topic, payload).await
    }

    fn subscribe(&self, tenant: &str, topic: &str) -> broadcast::Receiver<Message> {
        self.start_listener();
        self.local.subscribe(tenant, topic)
    }

    /// Redis keeps nothing per topic (pub/sub is fire and forget): only this node's
    /// hub has something to close.
    fn drop_tenant(&self, tenant: &str) {
        self.local.drop_tenant(tenant);
    }
}
