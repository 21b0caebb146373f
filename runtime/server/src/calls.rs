//! Calls into installations: checks an installation may run, runs the call in the
//! sandbox under its grants and limits, keeps its receipt and error for the API, counts
//! it, and feeds the circuit breaker, which parks an installation after so many guest
//! faults in a row.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use plinth_host::lock::Recover;
use plinth_host::{
    ActionResponse, Backends, Call, CallReport, ErrorCode, Extension, Invocation, Outcome,
    PlinthError, Receipt, Rendered, Sandbox, Scope,
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

pub struct Calls {
    sandbox: Arc<Sandbox>,
    components: Arc<Components>,
    installations: Arc<Installations>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// Guest faults in a row that park an installation.
    breaker_failures: u32,
    receipts: Mutex<HashMap<Key, VecDeque<KeptReceipt>>>,
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
        let extension = self.components.extension(&installation.component).await?;
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
        push_recent(
            &self.receipts,
            key.clone(),
            KeptReceipt {
                at_ms: now_ms(),
                receipt: receipt.clone(),
            },
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
                        message: error.message.clone(),
                    },
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
    }

    pub fn recent_errors(&self, tenant: &str, id: &str) -> Vec<ErrorRecord> {
        recent(&self.errors, tenant, id)
    }
}

fn push_recent<T>(map: &Mutex<HashMap<Key, VecDeque<T>>>, key: Key, item: T) {
    let mut map = map.lock().recover();
    let ring = map.entry(key).or_default();
    if ring.len() == RECENT {
        ring.pop_front();
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
