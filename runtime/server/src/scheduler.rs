//! The tick scheduler. Every installation with an interval ticks at
//! `k × interval + phase`, where the phase is derived from its name: installations made
//! together spread over the interval (the jitter), and every node computes the same due
//! times, so a claim in the shared metadata database lets exactly one node run each tick.
//!
//! A tick never overlaps the previous tick of the same installation; ticks missed while
//! one ran long, or while the node was busy, are coalesced into the next one. Due ticks
//! wait in one queue per tenant and are started round-robin between tenants, under a
//! cap per tenant and a cap per node, so a tenant with many installations cannot starve
//! the others.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_host::Call;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::calls::Calls;
use crate::config::{MAX_INTERVAL_MS, SchedulerConfig};
use crate::installations::Installations;
use crate::metrics::Metrics;
use crate::pushes::{Cause, Pushes};
use crate::registry::{Installation, Registry, now_ms};

/// How often the scheduler rereads installations without being told of a change
/// (changes made on other nodes).
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Longest the scheduler sleeps between looks at the clock.
const IDLE_WAKE: Duration = Duration::from_millis(250);

struct Entry {
    installation: Installation,
    interval: i64,
    phase: i64,
    /// Start (epoch ms) of the next period this node will tick.
    next_due: i64,
    sequence: u64,
}

/// The phase of an installation within its interval: the same on every node, whatever
/// toolchain built it (SHA-256, not the standard library's unspecified hasher).
fn phase(tenant: &str, id: &str, interval: i64, jitter: f64) -> i64 {
    let digest = Sha256::digest(format!("{tenant}\0{id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let span = ((interval as f64) * jitter * 2.0).max(1.0) as u64;
    (u64::from_le_bytes(first) % span) as i64
}

/// The first due time after `now` for an interval and phase. Intervals are at most
/// [`MAX_INTERVAL_MS`]; the arithmetic saturates rather than wrap regardless.
fn next_period(now: i64, interval: i64, phase: i64) -> i64 {
    let interval = interval.clamp(1, MAX_INTERVAL_MS as i64);
    let k = now
        .saturating_sub(phase)
        .div_euclid(interval)
        .saturating_add(1);
    k.saturating_mul(interval).saturating_add(phase)
}

#[derive(Default)]
struct State {
    entries: HashMap<(String, String), Entry>,
    /// Due times, earliest first.
    due: BTreeMap<(i64, String, String), ()>,
    /// Ticks waiting for a slot, per tenant, and the tenants in round-robin order.
    ready: HashMap<String, VecDeque<(String, i64)>>,
    turn: VecDeque<String>,
    running: HashSet<(String, String)>,
    running_per_tenant: HashMap<String, usize>,
}

/// What the scheduler works with: the installations that tick, the calls it makes, where
/// it claims ticks and pushes views.
pub struct Ticking {
    pub settings: SchedulerConfig,
    /// Whether ticks are claimed in the metadata database (nodes share it).
    pub claims: bool,
    pub node_id: String,
    pub registry: Arc<Registry>,
    pub installations: Arc<Installations>,
    pub calls: Arc<Calls>,
    pub pushes: Arc<Pushes>,
    pub metrics: Arc<Metrics>,
}

pub struct Scheduler {
    app: Ticking,
    state: Mutex<State>,
    /// Woken when a tick ends and frees a slot.
    slot_freed: tokio::sync::Notify,
}

impl Scheduler {
    pub fn new(app: Ticking) -> Arc<Self> {
        Arc::new(Scheduler {
            app,
            state: Mutex::default(),
            slot_freed: tokio::sync::Notify::new(),
        })
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut last_reload = Instant::now() - RELOAD_EVERY;
        loop {
            if last_reload.elapsed() >= RELOAD_EVERY {
                last_reload = Instant::now();
                if let Err(error) = self.reload().await {
                    tracing::warn!(%error, "scheduler could not read installations");
                }
            }
            let wait = self.dispatch().await;
            tokio::select! {
                _ = self.app.installations.next_change() => {
                    last_reload = Instant::now() - RELOAD_EVERY;
                }
                _ = self.slot_freed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Rereads installations that tick; keeps the sequence and next due time of those
    /// whose interval did not change.
    async fn reload(&self) -> Result<(), plinth_host::PlinthError> {
        let ticking = self.app.registry.ticking().await?;
        let jitter = self.app.settings.jitter;
        let now = now_ms();
        let mut state = self.state.lock().await;
        let mut entries = HashMap::with_capacity(ticking.len());
        let mut due = BTreeMap::new();
        for installation in ticking {
            let key = (installation.tenant.clone(), installation.id.clone());
            let interval = installation
                .tick_interval_ms
                .unwrap_or(0)
                .min(MAX_INTERVAL_MS) as i64;
            if interval <= 0 {
                continue;
            }
            let entry = match state.entries.remove(&key) {
                Some(mut kept) if kept.interval == interval => {
                    kept.installation = installation;
                    kept
                }
                _ => {
                    let phase = phase(&key.0, &key.1, interval, jitter);
                    Entry {
                        installation,
                        interval,
                        phase,
                        next_due: next_period(now, interval, phase),
                        sequence: 0,
                    }
                }
            };
            due.insert((entry.next_due, key.0.clone(), key.1.clone()), ());
            entries.insert(key, entry);
        }
        // Ticks of removed installations still waiting are forgotten.
        let known: HashSet<(String, String)> = entries.keys().cloned().collect();
        for (tenant, queue) in state.ready.iter_mut() {
            queue.retain(|(id, _)| known.contains(&(tenant.clone(), id.clone())));
        }
        state.entries = entries;
        state.due = due;
        Ok(())
    }

    /// Moves due ticks to their tenant's queue and starts what the caps allow; how long
    /// to sleep before the next due tick.
    async fn dispatch(self: &Arc<Self>) -> Duration {
        let now = now_ms();
        let config = &self.app.settings;
        let mut state = self.state.lock().await;
        let state = &mut *state;
        while let Some((&(due, ref tenant, ref id), ())) = state.due.first_key_value() {
            if due > now {
                break;
            }
            let (tenant, id) = (tenant.clone(), id.clone());
            state.due.pop_first();
            let key = (tenant.clone(), id.clone());
            let Some(entry) = state.entries.get_mut(&key) else {
                continue;
            };
            // The next period after now: periods missed are coalesced into this one.
            let next = next_period(now, entry.interval, entry.phase);
            let skipped = (next - due) / entry.interval - 1;
            if skipped > 0 {
                self.app.metrics.ticks_coalesced.inc_by(skipped as u64);
            }
            entry.next_due = next;
            state.due.insert((next, tenant.clone(), id.clone()), ());
            let queue = state.ready.entry(tenant.clone()).or_default();
            if state.running.contains(&key) || queue.iter().any(|(q, _)| *q == id) {
                // Still running or still waiting: this tick is coalesced into that one.
                self.app.metrics.ticks_coalesced.inc();
                continue;
            }
            if queue.is_empty() {
                state.turn.push_back(tenant.clone());
            }
            queue.push_back((id, due));
        }
        // Round-robin between tenants with ticks waiting.
        let mut passes = state.turn.len();
        while passes > 0 && state.running.len() < config.max_running {
            passes -= 1;
            let Some(tenant) = state.turn.pop_front() else {
                break;
            };
            let running = state.running_per_tenant.get(&tenant).copied().unwrap_or(0);
            let queue = state.ready.entry(tenant.clone()).or_default();
            if running >= config.max_running_per_tenant {
                state.turn.push_back(tenant);
                continue;
            }
            let Some((id, due)) = queue.pop_front() else {
                continue;
            };
            if !queue.is_empty() {
                state.turn.push_back(tenant.clone());
                passes += 1;
            }
            let key = (tenant.clone(), id.clone());
            let Some(entry) = state.entries.get_mut(&key) else {
                continue;
            };
            entry.sequence += 1;
            let installation = entry.installation.clone();
            let sequence = entry.sequence;
            state.running.insert(key);
            *state.running_per_tenant.entry(tenant).or_default() += 1;
            let scheduler = self.clone();
            tokio::spawn(async move {
                scheduler.tick(installation, sequence, due).await;
            });
        }
        let waiting: usize = state.ready.values().map(VecDeque::len).sum();
        self.app.metrics.ticks_due.set(waiting as i64);
        self.app
            .metrics
            .ticks_running
            .set(state.running.len() as i64);
        let next = state
            .due
            .first_key_value()
            .map(|(&(due, _, _), ())| Duration::from_millis((due - now).max(1) as u64))
            .unwrap_or(IDLE_WAKE);
        if waiting > 0 {
            // Ticks wait for a slot: look again soon (a finishing tick also wakes us).
            next.min(Duration::from_millis(5))
        } else {
            next.min(IDLE_WAKE)
        }
    }

    async fn tick(self: Arc<Self>, installation: Installation, sequence: u64, due: i64) {
        let key = (installation.tenant.clone(), installation.id.clone());
        let claimed = if self.app.claims {
            match self
                .app
                .registry
                .claim_tick(&key.0, &key.1, due, &self.app.node_id)
                .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "tick claim failed; skipping this tick");
                    false
                }
            }
        } else {
            true
        };
        if claimed {
            self.app
                .metrics
                .record_lateness((now_ms() - due).max(0) as f64 / 1e3);
            self.run_tick(&installation, sequence, due).await;
        } else {
            self.app.metrics.ticks_claimed_elsewhere.inc();
        }
        let mut state = self.state.lock().await;
        state.running.remove(&key);
        if let Some(n) = state.running_per_tenant.get_mut(&key.0) {
            *n = n.saturating_sub(1);
        }
        drop(state);
        self.slot_freed.notify_one();
    }

    /// `on-tick`, then one render shared by every viewer, pushed to `widget/<id>`.
    async fn run_tick(&self, installation: &Installation, sequence: u64, due: i64) {
        let tick = Call::Tick {
            config: installation.config.clone(),
            sequence,
            scheduled_at_ms: due as u64,
        };
        let ticked = match self.app.calls.call(installation, tick).await {
            Ok(report) => report.outcome.is_ok(),
            Err(error) => {
                tracing::debug!(%error, "tick refused");
                false
            }
        };
        if !ticked {
            return;
        }
        self.app
            .pushes
            .push(installation, Cause::Tick(sequence))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_the_same_on_every_node_and_spread() {
        let interval = 5_000;
        let a = phase("t", "a", interval, 0.1);
        let b = phase("t", "b", interval, 0.1);
        assert_eq!(a, phase("t", "a", interval, 0.1));
        assert!((0..1_000).contains(&a) && (0..1_000).contains(&b));
        let next = next_period(12_345, interval, a);
        assert!(next > 12_345 && next <= 12_345 + interval);
        assert_eq!((next - a) % interval, 0);
        // Exactly at a due time, the next period is one interval on.
        assert_eq!(next_period(next, interval, a), next + interval);
        // Huge intervals and phases neither wrap nor go backwards.
        let huge = i64::MAX;
        let far = next_period(12_345, huge, phase("t", "x", huge, 0.5));
        assert!(far > 12_345, "{far}");
        let spread: HashSet<i64> = (0..200)
            .map(|i| phase("t", &format!("w{i}"), interval, 0.1))
            .collect();
        assert!(spread.len() > 150, "phases collide: {}", spread.len());
    }
}
