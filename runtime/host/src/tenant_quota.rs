//! Per-tenant quotas: how many calls of one tenant may run at once, and how much fuel a
//! tenant may burn per minute. They keep one busy or hostile tenant from starving the
//! others on a node; per-call limits alone cannot, since a tenant can make many calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{ErrorCode, PlinthError};
use crate::lock::Recover;

/// The fuel budget's window.
pub const FUEL_WINDOW: Duration = Duration::from_secs(60);

/// Quotas every tenant of a sandbox gets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Calls of one tenant running at once; one more is refused with `QUOTA_EXCEEDED`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub concurrent_calls: usize,
    /// Fuel one tenant may use per minute, over all its calls; `None` for no budget.
    /// A call never gets more fuel than what is left of its tenant's budget.
    pub fuel_per_minute: Option<u64>,
    /// Whether this tenant's calls count fuel (`Limits::fuel`, `fuel_per_minute`,
    /// `FUEL_EXHAUSTED`, a receipt's `fuel_used`). Off, its code is compiled without fuel
    /// checks and CPU-bound work runs faster (measured in docs/BENCHMARKS.md); the deadline
    /// still stops every call, so its CPU is bounded by `concurrent_calls` × the calls'
    /// timeouts instead of a budget. A sandbox built without fuel counts none for anyone.
    #[serde(default = "metered")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub fuel_metering: bool,
    /// Installations the tenant may have; one more is refused with `CONFLICT` (uninstall
    /// one first). Each costs its node memory (its recent receipts, its remembered copy)
    /// and, if it ticks, scheduler time.
    #[serde(default = "installations")]
    #[cfg_attr(
        feature = "openapi",
        schema(default = 1000, minimum = 1, maximum = 1_000_000)
    )]
    pub installations: u32,
}

fn metered() -> bool {
    true
}

fn installations() -> u32 {
    1_000
}

impl Default for TenantQuota {
    fn default() -> Self {
        TenantQuota {
            concurrent_calls: 16,
            // About one core busy for the whole minute.
            fuel_per_minute: Some(60_000_000_000),
            fuel_metering: true,
            installations: installations(),
        }
    }
}

impl TenantQuota {
    /// Refuses a quota that cannot be applied as written.
    pub fn validate(&self) -> Result<(), PlinthError> {
        if self.concurrent_calls == 0 || self.installations == 0 {
            return Err(PlinthError::new(
                ErrorCode::InvalidRequest,
                "concurrent_calls and installations must be at least 1",
            ));
        }
        if !self.fuel_metering && self.fuel_per_minute.is_some() {
            // Well formed, and contradictory: a value refused, as a zero limit is.
            return Err(PlinthError::new(
                ErrorCode::InvalidValue,
                "fuel_per_minute needs fuel_metering: set it to null, or turn fuel metering on",
            ));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Usage {
    /// This tenant's own quota, set by an operator; the sandbox's default otherwise.
    quota: Mutex<Option<TenantQuota>>,
    running: AtomicUsize,
    /// Start of the current window and the fuel used in it.
    window: Mutex<Option<(Instant, u64)>>,
}

/// The quotas' live accounting, per tenant.
#[derive(Default)]
pub struct TenantQuotas {
    quota: TenantQuota,
    tenants: Mutex<HashMap<String, Arc<Usage>>>,
}

/// A running call's place in its tenant's quota; freed when dropped.
pub struct Permit {
    usage: Arc<Usage>,
    budget: Option<u64>,
}

impl TenantQuotas {
    pub fn new(quota: TenantQuota) -> Self {
        TenantQuotas {
            quota,
            tenants: Mutex::default(),
        }
    }

    fn usage(&self, tenant: &str) -> Arc<Usage> {
        let mut tenants = self.tenants.lock().recover();
        // Looked up on every call: the tenant's name is copied only the first time.
        if let Some(usage) = tenants.get(tenant) {
            return usage.clone();
        }
        tenants.entry(tenant.to_owned()).or_default().clone()
    }

    /// Gives `tenant` its own quota (`None`: back to the default).
    pub fn set(&self, tenant: &str, quota: Option<TenantQuota>) {
        *self.usage(tenant).quota.lock().recover() = quota;
    }

    /// Takes their own quota from every tenant but `listed` (tenants that are gone); their
    /// live usage stays, as calls of theirs may still be running.
    pub fn keep_own_quotas_of<'a>(&self, listed: impl Iterator<Item = &'a str>) {
        let listed: std::collections::HashSet<&str> = listed.collect();
        let tenants = self.tenants.lock().recover();
        for (tenant, usage) in tenants.iter() {
            if !listed.contains(tenant.as_str()) {
                *usage.quota.lock().recover() = None;
            }
        }
    }

    /// The quota `tenant` runs under.
    pub fn quota_of(&self, tenant: &str) -> TenantQuota {
        self.usage(tenant)
            .quota
            .lock()
            .recover()
            .clone()
            .unwrap_or_else(|| self.quota.clone())
    }

    /// Calls of `tenant` running now, and fuel used in the current window.
    pub fn usage_of(&self, tenant: &str) -> (usize, u64) {
        let usage = self.usage(tenant);
        let running = usage.running.load(Ordering::Acquire);
        let window = usage.window.lock().recover();
        let used = match *window {
            Some((start, used)) if start.elapsed() < FUEL_WINDOW => used,
            _ => 0,
        };
        (running, used)
    }

    /// Admits one call of `tenant`, or says which quota it would exceed.
    pub fn admit(&self, tenant: &str) -> Result<Permit, PlinthError> {
        let usage = self.usage(tenant);
        let quota = usage
            .quota
            .lock()
            .recover()
            .clone()
            .unwrap_or_else(|| self.quota.clone());
        let running = usage.running.fetch_add(1, Ordering::AcqRel);
        let permit = Permit {
            usage,
            budget: quota.fuel_per_minute,
        };
        if running >= quota.concurrent_calls {
            // Dropping the permit gives the slot back.
            return Err(PlinthError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "tenant {tenant} already has {} calls running, its limit",
                    quota.concurrent_calls
                ),
            ));
        }
        if permit.fuel_left() == Some(0) {
            return Err(PlinthError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "tenant {tenant} used its fuel budget of {} for this minute",
                    quota.fuel_per_minute.unwrap_or(0)
                ),
            ));
        }
        Ok(permit)
    }
}

impl Permit {
    /// Fuel left in the tenant's budget for the current window; `None` without a budget.
    pub fn fuel_left(&self) -> Option<u64> {
        let budget = self.budget?;
        let mut window = self.usage.window.lock().recover();
        let now = Instant::now();
        let (_, used) = *window.get_or_insert((now, 0));
        if window.is_some_and(|(start, _)| now.duration_since(start) >= FUEL_WINDOW) {
            *window = Some((now, 0));
            return Some(budget);
        }
        Some(budget.saturating_sub(used))
    }

    /// Counts fuel a call used against its tenant's budget.
    pub fn charge(&self, fuel: u64) {
        let mut window = self.usage.window.lock().recover();
        let (_, used) = window.get_or_insert((Instant::now(), 0));
        *used = used.saturating_add(fuel);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.usage.running.fetch_sub(1, Ordering::AcqRel);
    }
}
