//! Calls into installations: checks an installation may run, runs the call in the
//! sandbox under its grants and limits, keeps its receipt and error for the API, counts
//! it, and feeds the circuit breaker, which parks an installation after so many guest
//! faults in a row.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use plinth_host::lock::Recover;
use plinth_host::{
    ActionResponse, Backends, Call, CallReport, Capability, ErrorCode, Extension, Invocation,
    Outcome, PlinthError, Receipt, Rendered, Sandbox, Scope, UsageOutcome,
};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use crate::components::Components;
use crate::installations::Installations;
use crate::metrics::Metrics;
use crate::registry::{Installation, Registry, now_ms};

/// Receipts and errors kept per installation for the API.
const RECENT: usize = 100;

/// Bytes of an error's message kept in an installation's recent errors: a guest's own
/// message can be as long as its output cap, and a hundred of them per installation
/// would make the host keep what the guest is not allowed to.
const KEPT_MESSAGE_BYTES: usize = 1024;

type Key = (String, String);

/// A failure recorded for an installation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorRecord {
    pub at_ms: i64,
    /// The export called (`render`, `on-tick`, `invoke`, `handle`).
    pub call: &'static str,
    pub code: ErrorCode,
    pub message: String,
}

/// A receipt as kept for the console's charts: when the call ended, and what it used.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeptReceipt {
    /// When the call ended (ms since the Unix epoch).
    pub at_ms: i64,
    #[serde(flatten)]
    pub receipt: Receipt,
}

impl std::ops::Deref for KeptReceipt {
    type Target = Receipt;

    fn deref(&self) -> &Receipt {
        &self.receipt
    }
}

/// A receipt as an installation's ring keeps it: without the tenant and installation
/// (the ring's key says them), the component's hash as bytes, host calls by capability
/// in place. About 120 bytes, against some 350 for a [`KeptReceipt`] with its strings:
/// a node keeps up to [`RECENT`] of them for every installation it has run.
#[derive(Debug, Clone)]
struct Kept {
    at_ms: i64,
    component: [u8; 32],
    call: &'static str,
    outcome: UsageOutcome,
    fuel_used: Option<u64>,
    peak_memory_bytes: u64,
    wall_time_us: u64,
    host_calls: [u32; Capability::ALL.len()],
    output_bytes: u32,
    logs_dropped: u32,
}

impl Kept {
    fn new(at_ms: i64, receipt: &Receipt) -> Self {
        let mut component = [0u8; 32];
        // Hashes are hex SHA-256; anything else is kept as zeros rather than dropped.
        let _ = hex::decode_to_slice(&receipt.component, &mut component);
        let mut host_calls = [0u32; Capability::ALL.len()];
        for (capability, count) in &receipt.host_calls {
            if let Some(i) = Capability::ALL.iter().position(|c| c == capability) {
                host_calls[i] = saturate(*count);
            }
        }
        Kept {
            at_ms,
            component,
            call: receipt.call,
            outcome: receipt.outcome,
            fuel_used: receipt.fuel_used,
            peak_memory_bytes: receipt.peak_memory_bytes,
            wall_time_us: receipt.wall_time_us,
            host_calls,
            output_bytes: saturate(receipt.output_bytes as u64),
            logs_dropped: saturate(receipt.logs_dropped),
        }
    }

    fn receipt(&self, tenant: &str, installation: &str) -> KeptReceipt {
        KeptReceipt {
            at_ms: self.at_ms,
            receipt: Receipt {
                tenant: tenant.to_owned(),
                installation: installation.to_owned(),
                component: hex::encode(self.component),
                call: self.call,
                outcome: self.outcome,
                fuel_used: self.fuel_used,
                peak_memory_bytes: self.peak_memory_bytes,
                wall_time_us: self.wall_time_us,
                host_calls: Capability::ALL
                    .iter()
                    .zip(self.host_calls)
                    .filter(|(_, n)| *n > 0)
                    .map(|(c, n)| (*c, u64::from(n)))
                    .collect(),
                output_bytes: self.output_bytes as usize,
                logs_dropped: u64::from(self.logs_dropped),
            },
        }
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// At most [`KEPT_MESSAGE_BYTES`] of `message`, cut at a character boundary, saying how
/// much was left out.
fn kept_message(message: &str) -> String {
    if message.len() <= KEPT_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = KEPT_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &message[..end], message.len() - end)
}

pub struct Calls {
    sandbox: Arc<Sandbox>,
    components: Arc<Components>,
    installations: Arc<Installations>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// Guest faults in a row that park an installation.
    breaker_failures: u32,
    receipts: Mutex<HashMap<Key, VecDeque<Kept>>>,
    errors: Mutex<HashMap<Key, VecDeque<ErrorRecord>>>,
    failures: Mutex<HashMap<Key, u32>>,
    /// `name@version` per component hash, as metrics label calls.
    labels: Mutex<HashMap<String, Arc<str>>>,
}

impl Calls {
    pub fn new(
        sandbox: Arc<Sandbox>,
        components: Arc<Components>,
        installations: Arc<Installations>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        breaker_failures: u32,
    ) -> Self {
        Calls {
            sandbox,
            components,
            installations,
            registry,
            metrics,
            breaker_failures,
            receipts: Mutex::default(),
            errors: Mutex::default(),
            failures: Mutex::default(),
            labels: Mutex::default(),
        }
    }

    fn backends(&self) -> &Backends {
        self.sandbox.backends()
    }

    /// Renders a widget with its config.
    pub async fn render(
        &self,
        installation: &Installation,
        params: Vec<(String, String)>,
    ) -> Result<CallReport<Rendered>, PlinthError> {
        let call = Call::Render {
            config: installation.config.clone(),
            params,
        };
        Ok(self.call(installation, call).await?.narrow(|o| match o {
            Outcome::Rendered(rendered) => Some(rendered),
            _ => None,
        }))
    }

    /// Runs one of a widget's actions.
    pub async fn invoke(
        &self,
        installation: &Installation,
        name: String,
        body: serde_json::Value,
    ) -> Result<CallReport<ActionResponse>, PlinthError> {
        let call = Call::Action {
            name,
            config: installation.config.clone(),
            body,
        };
        Ok(self.call(installation, call).await?.narrow(|o| match o {
            Outcome::Answered(response) => Some(response),
            _ => None,
        }))
    }

    /// Runs one call of an installation: checks it may run, calls it, keeps the
    /// receipt, counts it and feeds the circuit breaker.
    pub async fn call(
        &self,
        installation: &Installation,
        call: Call,
    ) -> Result<CallReport, PlinthError> {
        if let Some(reason) = &installation.parked {
            return Err(PlinthError::new(
                ErrorCode::InstallationParked,
                format!(
                    "installation {} of tenant {} is parked: {reason}; enable it again after fixing it",
                    installation.id, installation.tenant
                ),
            ));
        }
        if !installation.enabled {
            return Err(PlinthError::new(
                ErrorCode::InstallationDisabled,
                format!(
                    "installation {} of tenant {} is disabled",
                    installation.id, installation.tenant
                ),
            ));
        }
        let extension = self
            .components
            .extension(&installation.component, &installation.tenant)
            .await?;
        let invocation = Invocation {
            scope: Scope::new(&installation.tenant, &installation.id)?,
            grants: installation.grants.clone(),
            limits: installation.limits.clone(),
        };
        let span = tracing::info_span!(
            "call",
            tenant = %installation.tenant,
            installation = %installation.id,
            call = call.name(),
            outcome = tracing::field::Empty,
            fuel = tracing::field::Empty,
            wall_us = tracing::field::Empty,
        );
        let report = self
            .sandbox
            .call(&extension, &invocation, call)
            .instrument(span.clone())
            .await;
        let receipt = &report.receipt;
        span.record("outcome", tracing::field::display(&receipt.outcome));
        span.record("fuel", receipt.fuel_used.unwrap_or(0));
        span.record("wall_us", receipt.wall_time_us);
        self.metrics
            .record_call(receipt, &self.metrics_label(&extension));
        let key = (installation.tenant.clone(), installation.id.clone());
        let rings = || self.rings_per_tenant(&installation.tenant);
        push_recent(
            &self.receipts,
            key.clone(),
            Kept::new(now_ms(), receipt),
            rings,
        );
        match &report.outcome {
            Ok(_) => {
                self.failures.lock().recover().remove(&key);
            }
            Err(error) => {
                tracing::info!(parent: &span, code = %error.code, message = %error.message, "call failed");
                push_recent(
                    &self.errors,
                    key,
                    ErrorRecord {
                        at_ms: now_ms(),
                        call: receipt.call,
                        code: error.code,
                        message: kept_message(&error.message),
                    },
                    rings,
                );
                if error.code.is_guest_fault() {
                    self.count_fault(installation, error).await;
                }
            }
        }
        Ok(report)
    }

    /// `name@version` of a loaded extension, as metrics label it; made once per version.
    fn metrics_label(&self, extension: &Extension) -> Arc<str> {
        let mut labels = self.labels.lock().recover();
        if let Some(found) = labels.get(&extension.hash) {
            return found.clone();
        }
        let label = extension.label();
        let name: Arc<str> = Arc::from(label.split(" (").next().unwrap_or(&label));
        // Before its first `describe` a component has no name yet: not remembered.
        if !label.starts_with("component ") {
            labels.insert(extension.hash.clone(), name.clone());
        }
        name
    }

    async fn count_fault(&self, installation: &Installation, error: &PlinthError) {
        let key = (installation.tenant.clone(), installation.id.clone());
        let failures = {
            let mut all = self.failures.lock().recover();
            let n = all.entry(key).or_default();
            *n += 1;
            *n
        };
        if failures < self.breaker_failures {
            return;
        }
        let reason = format!("{failures} failures in a row, the last {}", error.code);
        match self
            .registry
            .park(&installation.tenant, &installation.id, &reason)
            .await
        {
            Ok(true) => {
                tracing::warn!(tenant = %installation.tenant, installation = %installation.id, %reason, "installation parked");
                self.metrics.installation_parked();
                self.installations
                    .changed(&installation.tenant, &installation.id);
                let _ = self
                    .backends()
                    .broadcast
                    .publish(
                        &installation.tenant,
                        &format!("installation/{}", installation.id),
                        json!({"type": "parked", "installation": installation.id, "reason": reason}),
                    )
                    .await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not park installation"),
        }
    }

    /// Starts the breaker's count of an installation over (it was enabled again).
    pub fn reset_breaker(&self, tenant: &str, id: &str) {
        self.failures
            .lock()
            .recover()
            .remove(&(tenant.to_owned(), id.to_owned()));
    }

    /// Installations' rings `tenant` may have on this node: its installations quota.
    fn rings_per_tenant(&self, tenant: &str) -> usize {
        self.sandbox.tenant_quotas().quota_of(tenant).installations as usize
    }

    /// Forgets what was kept of an uninstalled installation.
    pub fn forget(&self, tenant: &str, id: &str) {
        let key = (tenant.to_owned(), id.to_owned());
        self.failures.lock().recover().remove(&key);
        self.receipts.lock().recover().remove(&key);
        self.errors.lock().recover().remove(&key);
    }

    /// Forgets what was kept of every installation of a deleted tenant.
    pub fn forget_tenant(&self, tenant: &str) {
        let other = |key: &Key| key.0 != tenant;
        self.failures.lock().recover().retain(|key, _| other(key));
        self.receipts.lock().recover().retain(|key, _| other(key));
        self.errors.lock().recover().retain(|key, _| other(key));
    }

    pub fn recent_receipts(&self, tenant: &str, id: &str) -> Vec<KeptReceipt> {
        recent(&self.receipts, tenant, id)
            .iter()
            .map(|kept| kept.receipt(tenant, id))
            .collect()
    }

    pub fn recent_errors(&self, tenant: &str, id: &str) -> Vec<ErrorRecord> {
        recent(&self.errors, tenant, id)
    }
}

/// What a kept item says of when it happened.
trait Dated {
    fn at_ms(&self) -> i64;
}

impl Dated for Kept {
    fn at_ms(&self) -> i64 {
        self.at_ms
    }
}

impl Dated for ErrorRecord {
    fn at_ms(&self) -> i64 {
        self.at_ms
    }
}

/// Adds to an installation's ring. A tenant keeps at most `rings()` rings on this node:
/// an installation removed through another node is never forgotten here, so without this
/// a tenant installing and uninstalling through several nodes would grow each node's
/// memory without end; its least recently used ring goes first.
fn push_recent<T: Dated>(
    map: &Mutex<HashMap<Key, VecDeque<T>>>,
    key: Key,
    item: T,
    rings: impl FnOnce() -> usize,
) {
    let mut map = map.lock().recover();
    if !map.contains_key(&key) {
        let tenant = &key.0;
        let (mut count, mut stalest) = (0, None::<(i64, &Key)>);
        for (other, ring) in map.iter().filter(|(other, _)| other.0 == *tenant) {
            count += 1;
            let last = ring.back().map_or(i64::MIN, Dated::at_ms);
            if stalest.is_none_or(|(at, _)| last < at) {
                stalest = Some((last, other));
            }
        }
        if count >= rings().max(1)
            && let Some((_, stalest)) = stalest
        {
            let stalest = stalest.clone();
            map.remove(&stalest);
        }
    }
    let ring = map.entry(key).or_default();
    if ring.len() == RECENT {
        ring.pop_front();
    } else if ring.len() == ring.capacity() {
        // Grown by doubling up to exactly RECENT (not to the next power of two).
        ring.reserve_exact(ring.len().max(4).min(RECENT - ring.len()));
    }
    ring.push_back(item);
}

fn recent<T: Clone>(map: &Mutex<HashMap<Key, VecDeque<T>>>, tenant: &str, id: &str) -> Vec<T> {
    map.lock()
        .recover()
        .get(&(tenant.to_owned(), id.to_owned()))
        .map(|ring| ring.iter().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_receipt_reads_back_as_the_receipt_it_was() {
        let receipt = Receipt {
            tenant: "acme".into(),
            installation: "sales".into(),
            component: plinth_host::component_hash(b"some component"),
            call: "render",
            outcome: UsageOutcome::Error(ErrorCode::FuelExhausted),
            fuel_used: Some(u64::MAX - 1),
            peak_memory_bytes: 3 << 20,
            wall_time_us: 1234,
            host_calls: [(Capability::Db, 7), (Capability::Log, 2)].into(),
            output_bytes: 4096,
            logs_dropped: 5,
        };
        let kept = Kept::new(1_700_000_000_000, &receipt).receipt("acme", "sales");
        assert_eq!(kept.at_ms, 1_700_000_000_000);
        assert_eq!(
            serde_json::to_value(&kept.receipt).unwrap(),
            serde_json::to_value(&receipt).unwrap()
        );
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        assert_eq!(kept_message("short"), "short");
        let long = "é".repeat(KEPT_MESSAGE_BYTES); // two bytes each
        let kept = kept_message(&long);
        let (head, tail) = kept.split_once('…').unwrap();
        assert_eq!(head.len(), KEPT_MESSAGE_BYTES);
        assert_eq!(tail, format!(" ({} bytes more)", KEPT_MESSAGE_BYTES));
        // One byte over, with the cut inside a character: the character is left out whole.
        let odd = format!("a{}", "é".repeat(KEPT_MESSAGE_BYTES / 2));
        let kept = kept_message(&odd);
        assert_eq!(
            kept.split_once('…').unwrap().0.len(),
            KEPT_MESSAGE_BYTES - 1
        );
        assert!(kept.ends_with("(2 bytes more)"), "{kept}");
    }

    impl Dated for usize {
        fn at_ms(&self) -> i64 {
            *self as i64
        }
    }

    #[test]
    fn a_tenant_keeps_at_most_its_number_of_rings_the_stalest_going_first() {
        let map = Mutex::default();
        let key = |tenant: &str, id: &str| (tenant.to_owned(), id.to_owned());
        push_recent(&map, key("t", "one"), 1, || 2);
        push_recent(&map, key("t", "two"), 5, || 2);
        push_recent(&map, key("u", "one"), 0, || 2);
        push_recent(&map, key("t", "one"), 10, || 2);
        // A third installation of t: "two" was used last at 5, "one" at 10.
        push_recent(&map, key("t", "three"), 11, || 2);
        let map = map.lock().unwrap();
        let mut kept: Vec<&Key> = map.keys().collect();
        kept.sort();
        assert_eq!(
            kept,
            [&key("t", "one"), &key("t", "three"), &key("u", "one")],
            "another tenant's ring stays"
        );
        assert_eq!(map[&key("t", "one")].len(), 2);
    }

    #[test]
    fn a_full_ring_holds_exactly_recent_items() {
        let map = Mutex::default();
        let key = ("t".to_owned(), "i".to_owned());
        for n in 0..RECENT * 3 {
            push_recent(&map, key.clone(), n, || 1);
        }
        let map = map.lock().unwrap();
        let ring = &map[&key];
        assert_eq!(ring.len(), RECENT);
        assert_eq!(ring.capacity(), RECENT);
        assert_eq!(ring.front(), Some(&(RECENT * 2)));
        assert_eq!(ring.back(), Some(&(RECENT * 3 - 1)));
    }
}
