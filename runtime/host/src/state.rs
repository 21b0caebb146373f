//! The state of one call: what the store holds while a guest runs. It is built fresh for
//! every call and dropped with the store, so nothing leaks from one call to the next.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use serde::Serialize;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::WitError;
use crate::capability::{BackendError, Backends, Capability, Grants, Scope};
use crate::error::ErrorCode;
use crate::limits::Limits;

/// A rule the host enforces by trapping; the call ends with its code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitBreach {
    #[error("linear memory would grow to {requested} bytes, over the cap of {cap} bytes")]
    Memory { requested: u64, cap: u64 },
    #[error("a table would grow to {requested} elements, over the cap of {cap}")]
    Table { requested: usize, cap: usize },
    #[error("more than {cap} host calls in one call")]
    HostCalls { cap: u64 },
    #[error("more than {cap} calls to the `{capability}` capability in one call")]
    CapabilityCalls { capability: Capability, cap: u64 },
    #[error("the result is {bytes} bytes as JSON, over the cap of {cap} bytes")]
    Output { bytes: usize, cap: usize },
    #[error("called the `{capability}` capability, which is not granted")]
    Ungranted { capability: Capability },
}

impl LimitBreach {
    pub fn code(&self) -> ErrorCode {
        match self {
            LimitBreach::Memory { .. } | LimitBreach::Table { .. } => ErrorCode::MemoryLimit,
            LimitBreach::HostCalls { .. } | LimitBreach::CapabilityCalls { .. } => {
                ErrorCode::QuotaExceeded
            }
            LimitBreach::Output { .. } => ErrorCode::OutputTooLarge,
            LimitBreach::Ungranted { .. } => ErrorCode::CapabilityDenied,
        }
    }
}

/// One line the guest logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// One message a call published; delivered only when the call succeeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Publication {
    pub topic: String,
    pub payload: serde_json::Value,
}

/// What a call did, kept as it runs: host calls by capability, the host's refusals,
/// log lines and pending publications.
#[derive(Debug, Default)]
pub struct CallRecord {
    pub host_calls: BTreeMap<Capability, u64>,
    pub total_host_calls: u64,
    /// Errors the host answered with, so a guest that passes one on is reported with
    /// the host's code (`QUOTA_EXCEEDED`, `CAPABILITY_DENIED`) rather than `GUEST_ERROR`.
    pub refusals: Vec<(ErrorCode, WitError)>,
    pub logs: Vec<LogLine>,
    pub dropped_logs: u64,
    pub published: Vec<Publication>,
}

/// The view of the call's state that one capability's host functions see.
pub struct CapView<'a, B: ?Sized> {
    pub record: &'a mut CallRecord,
    pub scope: &'a Scope,
    pub grants: &'a Grants,
    pub limits: &'a Limits,
    /// When the call's deadline passes; backends bound their own work by it.
    pub deadline: Instant,
    pub backend: &'a B,
}

impl<B: ?Sized> CapView<'_, B> {
    /// Counts a host call, trapping past the call's cap. The grant was checked at load;
    /// checking again here keeps a bug elsewhere from becoming a hole.
    pub fn enter(&mut self, capability: Capability) -> wasmtime::Result<()> {
        if !self.grants.allows(capability) {
            return Err(LimitBreach::Ungranted { capability }.into());
        }
        self.record.total_host_calls += 1;
        let calls = self.record.host_calls.entry(capability).or_default();
        *calls += 1;
        if *calls > self.limits.capability_calls {
            return Err(LimitBreach::CapabilityCalls {
                capability,
                cap: self.limits.capability_calls,
            }
            .into());
        }
        if self.record.total_host_calls > self.limits.host_calls {
            return Err(LimitBreach::HostCalls {
                cap: self.limits.host_calls,
            }
            .into());
        }
        Ok(())
    }

    /// Turns a backend answer into the guest's, remembering refusals.
    pub fn answer<T>(&mut self, result: Result<T, BackendError>) -> Result<T, WitError> {
        result.map_err(|error| {
            let (code, wit) = match error {
                BackendError::InvalidInput(m) => (ErrorCode::GuestError, WitError::InvalidInput(m)),
                BackendError::NotFound(m) => (ErrorCode::GuestError, WitError::NotFound(m)),
                BackendError::Denied(m) => (ErrorCode::CapabilityDenied, WitError::Denied(m)),
                BackendError::QuotaExceeded(m) => {
                    (ErrorCode::QuotaExceeded, WitError::QuotaExceeded(m))
                }
                BackendError::Unavailable(m) => (ErrorCode::GuestError, WitError::Unavailable(m)),
                BackendError::Busy(m) => (ErrorCode::DbBusy, WitError::Unavailable(m)),
                BackendError::Timeout(m) => (ErrorCode::GuestError, WitError::Timeout(m)),
            };
            if code != ErrorCode::GuestError {
                self.record.refusals.push((code, wit.clone()));
            }
            wit
        })
    }
}

/// Enforces the memory and table caps and remembers the peak.
pub struct Limiter {
    memory_cap: u64,
    table_cap: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    memory_now: u64,
    /// The growth approved last, undone if the engine then fails the grow.
    last_growth: u64,
    pub peak_memory: u64,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            memory_cap: limits.memory_bytes,
            table_cap: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            memories: limits.memories,
            memory_now: 0,
            last_growth: 0,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A grow past the memory's own declared maximum fails in the guest (-1), as
        // wasm says; it never reaches the arithmetic below.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        // Memories of one instance count together: a component may have several.
        // Checked: a 64-bit memory can ask for sizes near 2^64.
        let growth = (desired as u64).saturating_sub(current as u64);
        let requested = self.memory_now.saturating_add(growth);
        if requested > self.memory_cap {
            return Err(LimitBreach::Memory {
                requested,
                cap: self.memory_cap,
            }
            .into());
        }
        self.memory_now = requested;
        self.last_growth = growth;
        self.peak_memory = self.peak_memory.max(requested);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The engine refused a grow this limiter approved: it did not happen.
        self.memory_now -= std::mem::take(&mut self.last_growth);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_cap {
            return Err(LimitBreach::Table {
                requested: desired,
                cap: self.table_cap,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

/// Everything a store holds during one call.
pub struct CallState {
    pub scope: Scope,
    pub grants: Grants,
    pub limits: Limits,
    pub deadline: Instant,
    pub backends: Backends,
    pub record: CallRecord,
    pub limiter: Limiter,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    /// What the guest wrote to stderr (a Rust panic message lands here), bounded.
    pub stderr: MemoryOutputPipe,
}

impl fmt::Debug for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallState")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl CallState {
    pub fn view<'a, B: ?Sized>(
        &'a mut self,
        backend: impl FnOnce(&'a Backends) -> &'a B,
    ) -> CapView<'a, B> {
        CapView {
            record: &mut self.record,
            scope: &self.scope,
            grants: &self.grants,
            limits: &self.limits,
            deadline: self.deadline,
            backend: backend(&self.backends),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::{LimitBreach, Limiter};
    use crate::limits::Limits;

    #[test]
    fn the_memory_cap_holds_against_huge_and_failed_grows() {
        let mut limiter = Limiter::new(&Limits::default());
        let cap = Limits::default().memory_bytes as usize;
        // A 64-bit memory asking for nearly 2^64 bytes is a breach, not an overflow.
        let error = limiter.memory_growing(0, usize::MAX, None).unwrap_err();
        assert!(matches!(
            error.downcast_ref::<LimitBreach>(),
            Some(LimitBreach::Memory { .. })
        ));
        // Past the memory's own maximum the grow fails in the guest, counting nothing.
        assert!(!limiter.memory_growing(0, 1 << 20, Some(1 << 16)).unwrap());
        // An approved grow the engine then fails is rolled back.
        assert!(limiter.memory_growing(0, cap, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::Error::msg("engine said no"))
            .unwrap();
        assert!(
            limiter.memory_growing(0, cap, None).unwrap(),
            "the failed grow still counted"
        );
        assert!(limiter.memory_growing(cap, cap + 1, None).is_err());
    }
}
