//! The broadcast capability: backend trait, the in-process hub, the Redis pub/sub hub
//! ([`redis`]), and the host side of `plinth:extension/broadcast`. Publications are held by the call and handed to the
//! backend only when the call succeeds.

pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::capability::view::{CapView, Publication};
use crate::contract::WitError;
use crate::contract::broadcast as wit;
use crate::error::BackendError;
use crate::grant::Capability;
use crate::lock::Recover;
use crate::scope::check_name;
use wasmtime::component::{HasData, Linker};

/// A store's data as the `broadcast` capability sees it; the linker's getter.
pub trait BroadcastView: Send {
    fn broadcast(&mut self) -> CapView<'_, dyn BroadcastBackend>;
}

/// Marks the data the `broadcast` host functions get ([`HasData`]).
struct BroadcastData;

impl HasData for BroadcastData {
    type Data<'a> = CapView<'a, dyn BroadcastBackend>;
}

/// Links `plinth:extension/broadcast` into `linker`, its host functions given the view
/// [`BroadcastView`] takes of the store's data.
pub fn add_to_linker<T: BroadcastView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, BroadcastData>(linker, T::broadcast)
}

/// Longest topic name a guest may use, in bytes.
pub const MAX_TOPIC_BYTES: usize = 100;

/// Messages a slow subscriber may fall behind before it misses some. Each topic with a
/// subscriber allocates this many slots up front, whether anything is published or not;
/// the server's relay (the only subscriber per topic on a node) never waits while
/// forwarding, so it needs little slack, and a relay that falls behind tells its clients
/// to resync.
const HUB_CAPACITY: usize = 256;

/// One delivered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub tenant: String,
    pub topic: String,
    pub payload: Arc<serde_json::Value>,
}

/// A broadcast backend. Topics arrive relative to the tenant.
#[async_trait]
pub trait BroadcastBackend: Send + Sync {
    async fn publish(
        &self,
        tenant: &str,
        topic: &str,
        payload: serde_json::Value,
    ) -> Result<(), BackendError>;

    /// Receives what is published to `topic` of `tenant` from now on.
    fn subscribe(&self, tenant: &str, topic: &str) -> broadcast::Receiver<Message>;

    /// Messages delivered to this node only because the shared bus was down (a metric).
    fn local_only_deliveries(&self) -> u64 {
        0
    }

    /// Closes every topic of `tenant` on this node: the tenant is being deleted. Its
    /// subscribers' receivers end (`RecvError::Closed`).
    fn drop_tenant(&self, tenant: &str);
}

/// The embedded hub: one channel per (tenant, topic) in this process.
#[derive(Default)]
pub struct InProcessHub {
    topics: Mutex<HashMap<(String, String), broadcast::Sender<Message>>>,
}

impl InProcessHub {
    fn sender(&self, tenant: &str, topic: &str) -> broadcast::Sender<Message> {
        let mut topics = self.topics.lock().recover();
        // Channels nobody listens to any more are dropped as we go, so the map stays
        // as large as the set of live subscriptions.
        topics.retain(|_, sender| sender.receiver_count() > 0);
        topics
            .entry((tenant.to_owned(), topic.to_owned()))
            .or_insert_with(|| broadcast::channel(HUB_CAPACITY).0)
            .clone()
    }
}

#[async_trait]
impl BroadcastBackend for InProcessHub {
    async fn publish(
        &self,
        tenant: &str,
        topic: &str,
        payload: serde_json::Value,
    ) -> Result<(), BackendError> {
        let sender = {
            let topics = self.topics.lock().recover();
            topics.get(&(tenant.to_owned(), topic.to_owned())).cloned()
        };
        if let Some(sender) = sender {
            // No receiver is not an error: nobody is watching that dashboard right now.
            let _ = sender.send(Message {
                tenant: tenant.to_owned(),
                topic: topic.to_owned(),
                payload: Arc::new(payload),
            });
        }
        Ok(())
    }

    fn subscribe(&self, tenant: &str, topic: &str) -> broadcast::Receiver<Message> {
        self.sender(tenant, topic).subscribe()
    }

    fn drop_tenant(&self, tenant: &str) {
        self.topics
            .lock()
            .recover()
            .retain(|(owner, _), _| owner != tenant);
    }
}

impl wit::Host for CapView<'_, dyn BroadcastBackend> {
    async fn publish(
        &mut self,
        topic: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        self.enter(Capability::Broadcast)?;
        let result = (|| {
            check_name("topic", &topic, MAX_TOPIC_BYTES, false)?;
            if payload.len() > self.limits.broadcast_bytes {
                return Err(BackendError::QuotaExceeded(format!(
                    "message of {} bytes is over the cap of {} bytes",
                    payload.len(),
                    self.limits.broadcast_bytes
                )));
            }
            if self.record.published.len() >= self.limits.broadcast_messages {
                return Err(BackendError::QuotaExceeded(format!(
                    "more than {} messages in one call",
                    self.limits.broadcast_messages
                )));
            }
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| BackendError::InvalidInput(format!("payload is not JSON: {e}")))?;
            Ok(payload)
        })();
        let result =
            result.map(|payload| self.record.published.push(Publication { topic, payload }));
        Ok(self.answer(result))
    }
}
