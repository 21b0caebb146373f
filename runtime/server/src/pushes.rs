//! Views pushed to `widget/<installation>`: one render shared by every viewer, after
//! every successful tick and after handled events. Events are coalesced: at most one
//! render per installation every [`EVENT_PUSH_GAP`], so a burst of a thousand events
//! costs a render or two, not a thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plinth_host::capability::broadcast::BroadcastBackend;
use plinth_host::lock::Recover;
use serde_json::{Value, json};

use crate::calls::Calls;
use plinth_host::World;

use crate::registry::{Installation, Registry};

/// The shortest time between two event-driven pushes of one installation.
pub const EVENT_PUSH_GAP: Duration = Duration::from_millis(500);

/// Why views were pushed.
pub enum Cause {
    /// The tick of this sequence number ran.
    Tick(u64),
    /// The installation's handler took one or more events.
    Event,
}

pub struct Pushes {
    calls: Arc<Calls>,
    registry: Arc<Registry>,
    broadcast: Arc<dyn BroadcastBackend>,
    /// Per installation: whether an event-driven push is waiting, and when the last went
    /// out. One entry per installation that handled events on this node.
    coalesced: Mutex<HashMap<(String, String), Coalesced>>,
    /// Whether a component version (by hash) exports `render`; a version never changes.
    widgets: Mutex<HashMap<String, bool>>,
}

#[derive(Default)]
struct Coalesced {
    waiting: bool,
    last: Option<Instant>,
}

impl Pushes {
    pub fn new(
        calls: Arc<Calls>,
        registry: Arc<Registry>,
        broadcast: Arc<dyn BroadcastBackend>,
    ) -> Self {
        Pushes {
            calls,
            registry,
            broadcast,
            coalesced: Mutex::default(),
            widgets: Mutex::default(),
        }
    }

    /// Renders `installation` once and publishes its views on `widget/<id>`. A failed
    /// render pushes nothing: viewers keep the last views (the failure is in its logs).
    pub async fn push(&self, installation: &Installation, cause: Cause) {
        let Ok(report) = self.calls.render(installation, Vec::new()).await else {
            return;
        };
        let Ok(rendered) = report.outcome else {
            return;
        };
        let views = match serde_json::from_str::<Value>(rendered.views().get()) {
            Ok(views) => views,
            Err(error) => {
                tracing::warn!(%error, "a widget's views did not read back");
                return;
            }
        };
        let mut message = json!({
            "type": "views",
            "installation": installation.id,
            "views": views,
        });
        match cause {
            Cause::Tick(sequence) => {
                message["cause"] = json!("tick");
                message["sequence"] = json!(sequence);
            }
            Cause::Event => message["cause"] = json!("event"),
        }
        let topic = format!("widget/{}", installation.id);
        if let Err(error) = self
            .broadcast
            .publish(&installation.tenant, &topic, message)
            .await
        {
            tracing::warn!(%error, "could not push a widget's views");
        }
    }

    /// After `installation` handled an event: push its views if it is also a widget,
    /// at once or when [`EVENT_PUSH_GAP`] has passed since its last event-driven push.
    /// Events handled while one is waiting share it.
    pub fn after_event(self: &Arc<Self>, installation: &Installation) {
        let key = (installation.tenant.clone(), installation.id.clone());
        let wait = {
            let mut coalesced = self.coalesced.lock().recover();
            let entry = coalesced.entry(key.clone()).or_default();
            if entry.waiting {
                return;
            }
            entry.waiting = true;
            entry
                .last
                .map(|last| (last + EVENT_PUSH_GAP).saturating_duration_since(Instant::now()))
                .unwrap_or_default()
        };
        let pushes = self.clone();
        let installation = installation.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            // Cleared before the render: an event handled while it runs gets a push
            // of its own after it.
            if let Some(entry) = pushes.coalesced.lock().recover().get_mut(&key) {
                entry.waiting = false;
                entry.last = Some(Instant::now());
            }
            if pushes.is_widget(&installation).await {
                pushes.push(&installation, Cause::Event).await;
            }
        });
    }

    async fn is_widget(&self, installation: &Installation) -> bool {
        if let Some(known) = self.widgets.lock().recover().get(&installation.component) {
            return *known;
        }
        let Ok(component) = self
            .registry
            .component(&installation.tenant, &installation.component)
            .await
        else {
            return false;
        };
        let widget = matches!(component.world, World::Widget | World::Extension);
        self.widgets
            .lock()
            .recover()
            .insert(installation.component.clone(), widget);
        widget
    }

    /// Forgets a deleted tenant's installations.
    pub fn forget_tenant(&self, tenant: &str) {
        self.coalesced
            .lock()
            .recover()
            .retain(|(t, _), _| t != tenant);
    }
}
