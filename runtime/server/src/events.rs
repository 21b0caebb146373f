//! Events: accepted durably, routed to the installations whose handlers match them, and
//! delivered each in a fresh sandbox, retried with backoff, dead-lettered when given up
//! on. The queue is a backend chosen by configuration ([`queue::EventQueue`]): SQLite
//! in the data directory, or Redis Streams shared by every node.
//!
//! An event is routed when it is accepted: every enabled (or parked) installation of the
//! tenant whose component exports `handler` and whose `describe()` event patterns match
//! the name gets its own delivery. The dispatcher takes due deliveries tenant by tenant
//! in turn (a busy tenant cannot starve a calm one), high priority first, and runs each
//! under the installation's grants and limits; the handler's answer decides the fate.

pub mod queue;
pub mod redis;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_host::lock::Recover;
use plinth_host::{BackendError, Call, CallReport, ErrorCode, GuestErrorCase, PlinthError, World};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use crate::calls::Calls;
use crate::config::EventsConfig;
use crate::installations::Installations;
use crate::metrics::Metrics;
use crate::pushes::Pushes;
use crate::registry::{Registry, now_ms};
use queue::{Acceptance, Delivery, Routed};
pub use queue::{Backlog, DeadLetter, EventQueue, Fate, Priority, Selection, StoredEvent};

/// How long a node trusts its routes of a tenant (changes made on this node are seen
/// at once, through the installations' generation).
const ROUTE_MEMORY: Duration = Duration::from_secs(1);
/// A delivery of a parked or disabled installation is looked at again after this.
const PARKED_WAIT_MS: i64 = 5_000;
/// How long the dispatcher sleeps when there is nothing due and nobody woke it: the
/// longest a retry waits past its due time, or an event accepted on another node waits.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Longest event name, id or key.
const MAX_NAME: usize = 200;

/// An event as a publisher posts it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Idempotency key: 1 to 200 of `[A-Za-z0-9._:-]`. A repeat within the retention
    /// is acknowledged and not delivered again.
    #[schema(min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9._:-]+$")]
    pub id: String,
    /// Dotted name, e.g. `order.completed`: segments of `[A-Za-z0-9_-]`.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$"
    )]
    pub name: String,
    /// Any JSON, up to the payload cap (64 KiB by default).
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub priority: Priority,
    /// Ordering key: deliveries with the same key (to one installation) run in order.
    #[schema(min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9._:-]+$")]
    #[serde(default)]
    pub key: Option<String>,
}

/// One event or a batch, accepted or refused as a whole.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventBatch {
    One(NewEvent),
    Many(Vec<NewEvent>),
}

impl EventBatch {
    pub fn into_events(self) -> Vec<NewEvent> {
        match self {
            EventBatch::One(event) => vec![event],
            EventBatch::Many(events) => events,
        }
    }
}

/// What an intake answers: the ids stored now, and those seen before.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted: Vec<String>,
    pub duplicates: Vec<String>,
}

/// What happened to an installation's deliveries, on this node since it started.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeliveryStats {
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub waited: u64,
    pub last_error: Option<PlinthError>,
    pub last_error_ms: Option<i64>,
}

/// Where a tenant's deliveries stand.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// `sqlite` or `redis`.
    pub backend: &'static str,
    #[serde(flatten)]
    pub backlog: Backlog,
    /// Age of the oldest open delivery, in milliseconds.
    pub lag_ms: Option<i64>,
}

/// A handler an event may be routed to.
#[derive(Clone)]
struct Route {
    installation: String,
    patterns: Vec<String>,
}

/// A tenant's routes: when read, at which generation of the installations.
type Routes = (Instant, u64, Arc<Vec<Route>>);

/// A tenant's rate: a token bucket, refilled at `rate` per second up to `burst`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Events {
    queue: Arc<dyn EventQueue>,
    config: EventsConfig,
    registry: Arc<Registry>,
    installations: Arc<Installations>,
    calls: Arc<Calls>,
    pushes: Arc<Pushes>,
    metrics: Arc<Metrics>,
    wake: Notify,
    routes: std::sync::Mutex<HashMap<String, Routes>>,
    /// Event patterns of each component version (a version never changes).
    patterns: std::sync::Mutex<HashMap<String, Option<Vec<String>>>>,
    buckets: std::sync::Mutex<HashMap<String, Bucket>>,
    running: std::sync::Mutex<HashMap<String, usize>>,
    stats: std::sync::Mutex<HashMap<(String, String), DeliveryStats>>,
    /// Tenants whose queue gauges were last set above zero.
    gauged: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Whether an event name matches a pattern: segment by segment, `*` standing for any one
/// segment, a final `**` for one or more.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut names = name.split('.');
    let mut patterns = pattern.split('.').peekable();
    while let Some(p) = patterns.next() {
        if p == "**" && patterns.peek().is_none() {
            return names.next().is_some();
        }
        match names.next() {
            Some(n) if p == "*" || p == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAME
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

fn backend(e: BackendError) -> PlinthError {
    PlinthError::new(ErrorCode::Unavailable, e.to_string())
}

impl Events {
    pub fn new(
        queue: Arc<dyn EventQueue>,
        config: EventsConfig,
        registry: Arc<Registry>,
        installations: Arc<Installations>,
        calls: Arc<Calls>,
        pushes: Arc<Pushes>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Events {
            queue,
            config,
            registry,
            installations,
            calls,
            pushes,
            metrics,
            wake: Notify::new(),
            routes: Default::default(),
            patterns: Default::default(),
            buckets: Default::default(),
            running: Default::default(),
            stats: Default::default(),
            gauged: Default::default(),
        }
    }

    pub fn queue(&self) -> &Arc<dyn EventQueue> {
        &self.queue
    }

    /// Checks a batch, routes it and stores it durably; answers once it is stored. A
    /// batch with one bad event is refused whole, and nothing of it is stored.
    pub async fn accept(
        &self,
        tenant: &str,
        events: Vec<NewEvent>,
    ) -> Result<Accepted, PlinthError> {
        if events.is_empty() {
            // Nothing to store: an empty batch is accepted as it is.
            return Ok(Accepted {
                accepted: Vec::new(),
                duplicates: Vec::new(),
            });
        }
        if events.len() > self.config.max_batch {
            return Err(PlinthError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "{} events in one batch; at most {} (events.max_batch)",
                    events.len(),
                    self.config.max_batch
                ),
            ));
        }
        for (i, event) in events.iter().enumerate() {
            let at = if events.len() > 1 {
                format!("event {i} ({:?})", event.id)
            } else {
                format!("event {:?}", event.id)
            };
            if !id_ok(&event.id) {
                return Err(PlinthError::new(
                    ErrorCode::InvalidRequest,
                    format!("{at}: id must be 1 to {MAX_NAME} of [A-Za-z0-9._:-]"),
                ));
            }
            if !name_ok(&event.name) {
                return Err(PlinthError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "{at}: name {:?} must be dotted segments of [A-Za-z0-9_-], e.g. order.completed, at most {MAX_NAME} bytes",
                        event.name
                    ),
                ));
            }
            if let Some(key) = &event.key
                && !id_ok(key)
            {
                return Err(PlinthError::new(
                    ErrorCode::InvalidRequest,
                    format!("{at}: key must be 1 to {MAX_NAME} of [A-Za-z0-9._:-]"),
                ));
            }
            let size = serde_json::to_vec(&event.payload).map_or(usize::MAX, |v| v.len());
            if size > self.config.max_payload_bytes {
                return Err(PlinthError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "{at}: payload of {size} bytes; at most {} (events.max_payload_bytes)",
                        self.config.max_payload_bytes
                    ),
                ));
            }
        }
        self.admit_rate(tenant, events.len())?;
        let routes = self.routes(tenant).await?;
        let now = now_ms();
        let routed: Vec<Routed> = events
            .into_iter()
            .map(|event| Routed {
                installations: routes
                    .iter()
                    .filter(|r| r.patterns.iter().any(|p| matches(p, &event.name)))
                    .map(|r| r.installation.clone())
                    .collect(),
                event: StoredEvent {
                    id: event.id,
                    name: event.name,
                    payload: event.payload,
                    priority: event.priority,
                    key: event.key,
                    accepted_ms: now,
                },
            })
            .collect();
        let deliveries = routed.iter().any(|r| !r.installations.is_empty());
        // The backlog cap is checked by the queue in the same transaction as the
        // insert: concurrent batches cannot pass it together.
        let Acceptance {
            accepted,
            duplicates,
        } = self
            .queue
            .accept(
                tenant,
                routed,
                self.config.retention.as_millis() as i64,
                self.config.max_backlog,
            )
            .await
            .map_err(|e| match e {
                BackendError::QuotaExceeded(message) => PlinthError::new(
                    ErrorCode::RateLimited,
                    format!("tenant {tenant} has {message}"),
                ),
                other => backend(other),
            })?;
        self.metrics
            .events_accepted(tenant, accepted.len() as u64, duplicates.len() as u64);
        if deliveries {
            self.wake.notify_one();
        }
        Ok(Accepted {
            accepted,
            duplicates,
        })
    }

    /// Takes `n` events from the tenant's bucket, or refuses with the wait in seconds.
    fn admit_rate(&self, tenant: &str, n: usize) -> Result<(), PlinthError> {
        let rate = self.config.rate_per_second as f64;
        let burst = rate.max(self.config.burst as f64);
        let mut buckets = self.buckets.lock().recover();
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: Instant::now(),
        });
        bucket.tokens = (bucket.tokens + bucket.at.elapsed().as_secs_f64() * rate).min(burst);
        bucket.at = Instant::now();
        if bucket.tokens >= n as f64 {
            bucket.tokens -= n as f64;
            return Ok(());
        }
        let wait = ((n as f64 - bucket.tokens) / rate).ceil().max(1.0);
        Err(PlinthError::new(
            ErrorCode::RateLimited,
            format!(
                "tenant {tenant} posts more than {} events per second (events.rate_per_second); retry after {wait} s",
                self.config.rate_per_second
            ),
        ))
    }

    /// The handlers of a tenant and their patterns.
    async fn routes(&self, tenant: &str) -> Result<Arc<Vec<Route>>, PlinthError> {
        let generation = self.installations.generation();
        if let Some((at, seen, routes)) = self.routes.lock().recover().get(tenant)
            && *seen == generation
            && at.elapsed() < ROUTE_MEMORY
        {
            return Ok(routes.clone());
        }
        let mut routes = Vec::new();
        for installation in self.registry.installations(tenant).await? {
            if !installation.enabled {
                continue;
            }
            if let Some(patterns) = self.patterns_of(tenant, &installation.component).await? {
                routes.push(Route {
                    installation: installation.id,
                    patterns,
                });
            }
        }
        let routes = Arc::new(routes);
        self.routes.lock().recover().insert(
            tenant.to_owned(),
            (Instant::now(), generation, routes.clone()),
        );
        Ok(routes)
    }

    /// The event patterns of a component version, none when it has no handler.
    async fn patterns_of(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<Vec<String>>, PlinthError> {
        if let Some(found) = self.patterns.lock().recover().get(hash) {
            return Ok(found.clone());
        }
        let component = self.registry.component(tenant, hash).await?;
        let patterns = matches!(component.world, World::EventHandler | World::Extension)
            .then(|| component.descriptor.event_patterns.clone());
        self.patterns
            .lock()
            .recover()
            .insert(hash.to_owned(), patterns.clone());
        Ok(patterns)
    }

    /// Runs the dispatcher until the task is aborted (the server stops).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let events = self.clone();
        tokio::spawn(async move { events.dispatch().await })
    }

    async fn dispatch(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.config.max_running));
        let mut turn = 0usize;
        let mut gauges_at = Instant::now();
        loop {
            if gauges_at.elapsed() >= Duration::from_secs(1) {
                gauges_at = Instant::now();
                self.update_gauges().await;
                if let Err(e) = self.queue.sweep().await {
                    tracing::warn!(error = %e, "event queue housekeeping failed");
                }
            }
            let tenants = match self.queue.tenants().await {
                Ok(tenants) => tenants,
                Err(e) => {
                    tracing::warn!(error = %e, "event queue unreachable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut took = 0;
            if !tenants.is_empty() {
                turn = turn.wrapping_add(1);
                let free = slots.available_permits();
                // Each tenant in turn gets an equal share of the free slots, at least one,
                // and never more than its own cap: fairness between tenants.
                let share = (free / tenants.len()).max(1);
                for i in 0..tenants.len() {
                    let tenant = &tenants[(turn + i) % tenants.len()];
                    let running = self.running.lock().recover().get(tenant).copied();
                    let room = self
                        .config
                        .max_running_per_tenant
                        .saturating_sub(running.unwrap_or(0))
                        .min(share)
                        .min(slots.available_permits());
                    if room == 0 {
                        continue;
                    }
                    let taken = match self.queue.take(tenant, room, self.lease_ms()).await {
                        Ok(taken) => taken,
                        Err(e) => {
                            tracing::warn!(%tenant, error = %e, "taking deliveries failed");
                            continue;
                        }
                    };
                    for delivery in taken {
                        took += 1;
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        *self
                            .running
                            .lock()
                            .recover()
                            .entry(delivery.tenant.clone())
                            .or_default() += 1;
                        let events = self.clone();
                        tokio::spawn(async move {
                            let tenant = delivery.tenant.clone();
                            events.deliver(delivery).await;
                            if let Some(n) = events.running.lock().recover().get_mut(&tenant) {
                                *n = n.saturating_sub(1);
                            }
                            drop(permit);
                            events.wake.notify_one();
                        });
                    }
                }
            }
            if took == 0 {
                let _ = tokio::time::timeout(IDLE_POLL, self.wake.notified()).await;
            }
        }
    }

    /// How long a taken delivery stays this node's without a renewal before another node
    /// may take it over (renewed every third of it while its handler runs).
    fn lease_ms(&self) -> i64 {
        self.config.lease.as_millis() as i64
    }

    /// Runs one delivery and settles it.
    async fn deliver(&self, delivery: Delivery) {
        let started = now_ms();
        // While it runs, the delivery is claimed again every third of the lease, so a
        // handler allowed longer than the lease is not taken over by another node.
        let keep = async {
            let period = (self.config.lease / 3).max(Duration::from_millis(100));
            let mut every = tokio::time::interval(period);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = self.queue.touch(&delivery).await {
                    tracing::warn!(event = %delivery.event.id, error = %e, "could not extend a delivery's lease");
                }
            }
        };
        let (fate, outcome, error) = tokio::select! {
            ran = self.run(&delivery) => ran,
            () = keep => unreachable!("the lease keeper never ends"),
        };
        let key = (delivery.tenant.clone(), delivery.installation.clone());
        {
            let mut stats = self.stats.lock().recover();
            let stats = stats.entry(key).or_default();
            match &fate {
                Fate::Done => stats.delivered += 1,
                Fate::Retry { .. } => stats.retried += 1,
                Fate::Dead { .. } => stats.dead_lettered += 1,
                Fate::Wait { .. } => stats.waited += 1,
                Fate::Void => {}
            }
            if let Some(error) = error {
                stats.last_error = Some(error);
                stats.last_error_ms = Some(started);
            }
        }
        if matches!(fate, Fate::Done) {
            let seconds = (now_ms() - delivery.event.accepted_ms).max(0) as f64 / 1e3;
            self.metrics.event_handled(seconds);
        }
        self.metrics.event_delivery(&delivery.tenant, outcome);
        // Until it is recorded the delivery stays taken (and would run again after the
        // lease or a restart), so the settle is tried until the queue takes it.
        let mut pause = Duration::from_millis(100);
        loop {
            match self.queue.settle(&delivery, fate.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(tenant = %delivery.tenant, event = %delivery.event.id, error = %e, "settling a delivery failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Runs a delivery's handler: its fate, the outcome metrics name, its error.
    async fn run(&self, delivery: &Delivery) -> (Fate, &'static str, Option<PlinthError>) {
        let installation = match self
            .installations
            .get(&delivery.tenant, &delivery.installation)
            .await
        {
            Ok(installation) => installation,
            Err(e) if e.code == ErrorCode::NotFound => return (Fate::Void, "void", None),
            Err(e) => {
                let due_ms = now_ms() + PARKED_WAIT_MS;
                return (Fate::Wait { due_ms }, "waited", Some(e));
            }
        };
        if installation.parked.is_some() || !installation.enabled {
            let due_ms = now_ms() + PARKED_WAIT_MS;
            return (Fate::Wait { due_ms }, "waited", None);
        }
        // Its id may now name another installation (uninstalled, installed again) whose
        // handler does not take this event: not delivered to it.
        match self
            .patterns_of(&delivery.tenant, &installation.component)
            .await
        {
            Ok(Some(patterns)) if patterns.iter().any(|p| matches(p, &delivery.event.name)) => {}
            Ok(_) => return (Fate::Void, "void", None),
            Err(e) => {
                let due_ms = now_ms() + PARKED_WAIT_MS;
                return (Fate::Wait { due_ms }, "waited", Some(e));
            }
        }
        let event = &delivery.event;
        let call = Call::Event {
            id: event.id.clone(),
            name: event.name.clone(),
            payload: event.payload.clone(),
            occurred_at_ms: event.accepted_ms.max(0) as u64,
            attempt: delivery.attempt,
        };
        match self.calls.call(&installation, call).await {
            Ok(report) => {
                let judged = self.judge(delivery, report);
                if matches!(judged.0, Fate::Done) {
                    // Viewers of its widget see what the event changed.
                    self.pushes
                        .after_event(&installation.tenant, &installation.id);
                }
                judged
            }
            // Refused before it ran (parked or disabled meanwhile, or its code could not be
            // loaded): the handler never saw it, so no attempt is used.
            Err(e) => {
                let due_ms = now_ms() + PARKED_WAIT_MS;
                (Fate::Wait { due_ms }, "waited", Some(e))
            }
        }
    }

    fn judge(
        &self,
        delivery: &Delivery,
        report: CallReport,
    ) -> (Fate, &'static str, Option<PlinthError>) {
        let error = match report.outcome {
            Ok(_) => return (Fate::Done, "done", None),
            Err(error) => error,
        };
        // The tenant's quota refused the call before it ran: the handler never saw it.
        if !report.ran && error.code == ErrorCode::QuotaExceeded {
            let due_ms = now_ms() + self.backoff_ms(1);
            return (Fate::Wait { due_ms }, "waited", Some(error));
        }
        let retryable = match report.guest_error {
            Some(case) => case.is_retryable(),
            None => !matches!(
                error.code,
                ErrorCode::CapabilityDenied
                    | ErrorCode::WorldMismatch
                    | ErrorCode::InvalidRequest
                    | ErrorCode::InvalidConfig
            ),
        };
        // A guest passing on the host's `denied` is its own rejection.
        let retryable = retryable && report.guest_error != Some(GuestErrorCase::Denied);
        self.failed(delivery, error, Some(Box::new(report.receipt)), retryable)
    }

    fn failed(
        &self,
        delivery: &Delivery,
        error: PlinthError,
        receipt: Option<Box<plinth_host::Receipt>>,
        retryable: bool,
    ) -> (Fate, &'static str, Option<PlinthError>) {
        if retryable && delivery.attempt < self.config.max_attempts {
            return (
                Fate::Retry {
                    due_ms: now_ms() + self.backoff_ms(delivery.attempt),
                },
                "retried",
                Some(error),
            );
        }
        (
            Fate::Dead {
                error: error.clone(),
                receipt,
            },
            "dead",
            Some(error),
        )
    }

    /// Exponential backoff with jitter: half the step fixed, half random.
    fn backoff_ms(&self, attempt: u32) -> i64 {
        let base = self.config.backoff_base.as_millis() as f64;
        let max = self.config.backoff_max.as_millis() as f64;
        let step = (base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32)).min(max);
        let mut random = [0u8; 4];
        let fraction = match getrandom::fill(&mut random) {
            Ok(()) => u32::from_le_bytes(random) as f64 / u32::MAX as f64,
            Err(_) => 0.5,
        };
        (step / 2.0 + step / 2.0 * fraction) as i64
    }

    /// Queue depth and lag of the tenants with work, and zero for those that had some
    /// at the last update.
    async fn update_gauges(&self) {
        let Ok(busy) = self.queue.tenants().await else {
            return;
        };
        let now = now_ms();
        let mut shown = self.gauged.lock().recover().clone();
        shown.extend(busy);
        let mut nonzero = std::collections::BTreeSet::new();
        for tenant in shown {
            if let Ok(backlog) = self.queue.backlog(&tenant).await {
                let lag = backlog.oldest_ms.map_or(0, |o| (now - o).max(0));
                self.metrics
                    .event_queue(&tenant, backlog.waiting, lag as f64 / 1e3);
                if backlog.waiting > 0 {
                    nonzero.insert(tenant);
                }
            }
        }
        *self.gauged.lock().recover() = nonzero;
    }

    pub async fn view(&self, tenant: &str) -> Result<QueueView, PlinthError> {
        let backlog = self.queue.backlog(tenant).await.map_err(backend)?;
        Ok(QueueView {
            backend: self.queue.kind(),
            lag_ms: backlog.oldest_ms.map(|o| (now_ms() - o).max(0)),
            backlog,
        })
    }

    pub fn stats(&self, tenant: &str, installation: &str) -> DeliveryStats {
        self.stats
            .lock()
            .recover()
            .get(&(tenant.to_owned(), installation.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    pub async fn dead_letters(
        &self,
        tenant: &str,
        installation: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, PlinthError> {
        self.queue
            .dead_letters(tenant, installation, limit)
            .await
            .map_err(backend)
    }

    pub async fn dead_letter(&self, tenant: &str, id: &str) -> Result<DeadLetter, PlinthError> {
        self.queue
            .dead_letter(tenant, id)
            .await
            .map_err(backend)?
            .ok_or_else(|| {
                PlinthError::new(
                    ErrorCode::NotFound,
                    format!("tenant {tenant} has no dead letter {id}"),
                )
            })
    }

    pub async fn replay(&self, tenant: &str, which: &Selection) -> Result<u64, PlinthError> {
        let n = self.queue.replay(tenant, which).await.map_err(backend)?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n)
    }

    pub async fn purge(&self, tenant: &str, which: &Selection) -> Result<u64, PlinthError> {
        self.queue.purge(tenant, which).await.map_err(backend)
    }

    /// Drops the queue of a deleted tenant.
    pub async fn forget_tenant(&self, tenant: &str) -> Result<(), PlinthError> {
        self.routes.lock().recover().remove(tenant);
        self.buckets.lock().recover().remove(tenant);
        self.stats.lock().recover().retain(|key, _| key.0 != tenant);
        self.pushes.forget_tenant(tenant);
        self.queue.forget_tenant(tenant).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segment_by_segment() {
        assert!(matches("order.completed", "order.completed"));
        assert!(matches("order.*", "order.completed"));
        assert!(!matches("order.*", "order.item.added"));
        assert!(matches("order.**", "order.item.added"));
        assert!(!matches("order.**", "order"));
        assert!(matches("*.completed", "order.completed"));
        assert!(!matches("order.completed", "order.completed.late"));
        assert!(!matches("order", "orders"));
        assert!(matches("**", "anything.at.all"));
    }

    #[test]
    fn names_and_ids_are_checked() {
        assert!(name_ok("order.completed"));
        assert!(name_ok("tick"));
        assert!(!name_ok("order..completed"));
        assert!(!name_ok(".order"));
        assert!(!name_ok("order.com pleted"));
        assert!(!name_ok(""));
        assert!(id_ok("ord-1:2.3_x"));
        assert!(!id_ok("a b"));
        assert!(!id_ok(&"x".repeat(201)));
    }
}
