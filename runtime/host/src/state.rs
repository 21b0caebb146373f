//! The state of one call: what the store holds while a guest runs. It is built fresh for
//! every call and dropped with the store, so nothing leaks from one call to the next.

use std::fmt;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::backends::Backends;
use crate::capability::broadcast::{BroadcastBackend, BroadcastView};
use crate::capability::cache::{CacheBackend, CacheView};
use crate::capability::db::{DbBackend, DbView};
use crate::capability::log::{LogRing, LogView};
use crate::capability::view::{CallRecord, CapView};
use crate::grant::Grants;
use crate::limits::{LimitBreach, Limits};
use crate::scope::Scope;

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
    fn view<'a, B: ?Sized>(
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

impl CacheView for CallState {
    fn cache(&mut self) -> CapView<'_, dyn CacheBackend> {
        self.view(|b| &*b.cache)
    }
}

impl DbView for CallState {
    fn db(&mut self) -> CapView<'_, dyn DbBackend> {
        self.view(|b| &*b.db)
    }
}

impl BroadcastView for CallState {
    fn broadcast(&mut self) -> CapView<'_, dyn BroadcastBackend> {
        self.view(|b| &*b.broadcast)
    }
}

impl LogView for CallState {
    fn log(&mut self) -> CapView<'_, LogRing> {
        self.view(|b| &*b.log)
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

    use super::Limiter;
    use crate::limits::{LimitBreach, Limits};

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
