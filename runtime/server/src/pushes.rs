//! Views pushed to `widget/<installation>`: one render shared by every viewer, after
//! every successful tick and after handled events. Events are coalesced: one render of
//! an installation at a time, beginning at least [`EVENT_PUSH_GAP`] after the last, so a
//! burst of a thousand events costs a render or two, not a thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plinth_host::World;
use plinth_host::capability::broadcast::BroadcastBackend;
use plinth_host::lock::Recover;
use serde_json::{Value, json};

use crate::calls::Calls;
use crate::installations::Installations;
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
    installations: Arc<Installations>,
    broadcast: Arc<dyn BroadcastBackend>,
    /// Per installation that handled events on this node: its event-driven push.
    coalesced: Mutex<HashMap<(String, String), Coalesced>>,
    /// Whether a component version (by hash) exports `render`; a version never changes.
    widgets: Mutex<HashMap<String, bool>>,
}

/// One installation's event-driven pushes: at most one task, rendering one at a time.
#[derive(Default)]
struct Coalesced {
    /// A task is waiting for its turn or rendering.
    busy: bool,
    /// Events were handled after the task's render began: it renders once more.
    dirty: bool,
    /// When the last render began.
    last: Option<Instant>,
}

/// Entries kept before idle ones are dropped (an idle entry only remembers its last
/// render, to keep the gap).
const KEPT_ENTRIES: usize = 4096;

impl Pushes {
    pub fn new(
        calls: Arc<Calls>,
        registry: Arc<Registry>,
        installations: Arc<Installations>,
        broadcast: Arc<dyn BroadcastBackend>,
    ) -> Self {
        Pushes {
            calls,
            registry,
            installations,
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

    /// After `tenant`'s installation `id` handled an event: push its views if it is also
    /// a widget. One task per installation at a time: renders begin at least
    /// [`EVENT_PUSH_GAP`] apart, never overlap, and the events handled during one render
    /// share the next.
    pub fn after_event(self: &Arc<Self>, tenant: &str, id: &str) {
        let key = (tenant.to_owned(), id.to_owned());
        {
            let mut coalesced = self.coalesced.lock().recover();
            if coalesced.len() >= KEPT_ENTRIES {
                coalesced
                    .retain(|_, c| c.busy || c.last.is_some_and(|l| l.elapsed() < EVENT_PUSH_GAP));
            }
            let entry = coalesced.entry(key.clone()).or_default();
            if entry.busy {
                entry.dirty = true;
                return;
            }
            entry.busy = true;
        }
        let pushes = self.clone();
        tokio::spawn(async move { pushes.run(key).await });
    }

    /// The installation's push task: waits for the gap, renders, and again while events
    /// came in meanwhile.
    async fn run(&self, key: (String, String)) {
        loop {
            let wait = {
                let mut coalesced = self.coalesced.lock().recover();
                let Some(entry) = coalesced.get_mut(&key) else {
                    return;
                };
                entry.dirty = false;
                let wait = entry
                    .last
                    .map(|last| (last + EVENT_PUSH_GAP).saturating_duration_since(Instant::now()))
                    .unwrap_or_default();
                entry.last = Some(Instant::now() + wait);
                wait
            };
            tokio::time::sleep(wait).await;
            // As it is now: disabled, parked, upgraded or uninstalled meanwhile counts.
            if let Ok(installation) = self.installations.get(&key.0, &key.1).await
                && installation.enabled
                && installation.parked.is_none()
                && self.is_widget(&installation).await
            {
                self.push(&installation, Cause::Event).await;
            }
            let mut coalesced = self.coalesced.lock().recover();
            let Some(entry) = coalesced.get_mut(&key) else {
                return;
            };
            if !entry.dirty {
                entry.busy = false;
                return;
            }
        }
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

    /// Forgets a deleted tenant's installations; a task of theirs ends at its next turn.
    pub fn forget_tenant(&self, tenant: &str) {
        self.coalesced
            .lock()
            .recover()
            .retain(|(t, _), _| t != tenant);
    }
}
