//! The engine a sandbox runs every call on: the pooling allocator sized from the
//! limits, epoch interruption with the thread that drives it, optional fuel, and the
//! linker with WASI and every capability.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::capability::{broadcast, cache, db, log};
use crate::error::{ErrorCode, PlinthError};
use crate::limits::{MAX_MEMORY_BYTES, SLOT_INSTANCES, SLOT_MEMORIES, SLOT_TABLES};
use crate::lock::Recover;
use crate::state::CallState;
use crate::tenant_quota::TenantQuota;

/// How often the epoch advances. A call's deadline is a number of these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Linear memory kept resident in a pool slot between calls: a Rust guest's stack, data
/// and first heap pages fit.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;

/// Fiber stack kept resident between calls.
const KEEP_RESIDENT_STACK: usize = 128 << 10;

/// Engine-wide settings, fixed for the life of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Fuel metering. Calls then honour `Limits::fuel`.
    pub fuel: bool,
    /// Epoch interruption: the deadline of a call that loops in wasm. Off only to
    /// measure its cost; without it only fuel stops a loop.
    pub epoch: bool,
    /// Where compiled code is cached; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Concurrent instances the pooling allocator holds slots for.
    pub pool_instances: u32,
    /// Unused memory slots the pool keeps warm for the component that last used them
    /// (`max_unused_warm_slots`): a call of a version that finds its warm slot does not
    /// map the version's memory image again. More warm slots suit a node cycling through
    /// many versions, and let a quiet node keep up to that many slots' kept-resident memory
    /// (2 MiB of linear memory each).
    pub pool_warm_slots: u32,
    /// Native stack a guest may use, in bytes.
    pub max_wasm_stack: usize,
    /// What every tenant may use at once and per minute.
    pub tenant_quota: TenantQuota,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            fuel: true,
            epoch: true,
            cache_dir: None,
            pool_instances: 64,
            // wasmtime's own default.
            pool_warm_slots: 100,
            max_wasm_stack: 512 << 10,
            tenant_quota: TenantQuota::default(),
        }
    }
}

/// Whether a call counts fuel. Fuel checks are compiled into the code, so each kind has
/// its own engine, and a component is loaded once per kind it runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metering {
    /// Fuel counted: `Limits::fuel`, the tenant's fuel budget and `fuel_used` apply.
    Fuel,
    /// No fuel counted; the deadline (epoch interruption) still stops the call.
    Off,
}

impl Metering {
    pub fn as_str(self) -> &'static str {
        match self {
            Metering::Fuel => "fuel",
            Metering::Off => "off",
        }
    }
}

pub(crate) fn internal(context: &str) -> impl Fn(wasmtime::Error) -> PlinthError + '_ {
    move |e| PlinthError::new(ErrorCode::Internal, format!("{context}: {e:#}"))
}

/// Builds an engine: pooling allocator, epoch interruption, fuel if `fuel`.
pub(crate) fn engine(config: &SandboxConfig, fuel: bool) -> Result<Engine, PlinthError> {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(config.epoch)
        .consume_fuel(fuel)
        .max_wasm_stack(config.max_wasm_stack)
        .async_stack_size(config.max_wasm_stack + (1 << 20));
    let n = config.pool_instances;
    let mut pool = PoolingAllocationConfig::new();
    // Each slot's share of the pool covers one call's caps (Limits::validate allows
    // no more), so one tenant's calls cannot take more than their share of slots.
    pool.total_component_instances(n)
        .total_core_instances(n * SLOT_INSTANCES as u32)
        .total_memories(n * SLOT_MEMORIES as u32)
        .total_tables(n * SLOT_TABLES as u32)
        .total_stacks(n)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .table_elements(100_000)
        .max_core_instances_per_component(SLOT_INSTANCES as u32)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .max_unused_warm_slots(config.pool_warm_slots)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        // Between calls, a slot's dirty pages are found with PAGEMAP_SCAN (Linux 6.7+)
        // and reset in place, up to these sizes, instead of being unmapped: the next
        // call then takes no page faults. Without the ioctl this falls back to memset
        // of the low pages. Measured in docs/BENCHMARKS.md.
        .pagemap_scan(if swap_in_use() {
            // wasmtime 48's scan reports present pages only: a page the last guest
            // wrote that was swapped out since is neither reset nor decommitted, and
            // the next instance in the slot (another tenant's) would read it. With swap
            // on, slots are reset the plain way (memset of the low pages, the rest
            // decommitted), which swap does not fool.
            tracing::warn!("swap is on: pool slots are reset without PAGEMAP_SCAN (slower calls)");
            Enabled::No
        } else {
            Enabled::Auto
        })
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(KEEP_RESIDENT_STACK);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(internal("cannot build the engine"))
}

/// Whether any swap area is active (`/proc/swaps` lists one beyond its header). Unknown
/// counts as in use.
fn swap_in_use() -> bool {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(swaps) => swaps.lines().skip(1).any(|line| !line.trim().is_empty()),
        Err(_) => cfg!(target_os = "linux"),
    }
}

/// The linker: the locked-down WASI of polyglot guests, then each capability, which
/// links itself.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<CallState>, PlinthError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(internal("linking WASI"))?;
    cache::add_to_linker(&mut linker).map_err(internal("linking cache"))?;
    db::add_to_linker(&mut linker).map_err(internal("linking db"))?;
    broadcast::add_to_linker(&mut linker).map_err(internal("linking broadcast"))?;
    log::add_to_linker(&mut linker).map_err(internal("linking log"))?;
    Ok(linker)
}

/// Advances the epoch of a sandbox's engines every [`EPOCH_TICK`] on one thread of its
/// own; stops it when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    engines: Arc<Mutex<Vec<Engine>>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Result<Self, PlinthError> {
        let stop = Arc::new(AtomicBool::new(false));
        let engines = Arc::new(Mutex::new(vec![engine.clone()]));
        let (ticking, flag) = (engines.clone(), stop.clone());
        std::thread::Builder::new()
            .name("plinth-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in ticking.lock().recover().iter() {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(|e| PlinthError::new(ErrorCode::Internal, format!("epoch thread: {e}")))?;
        Ok(EpochTicker { stop, engines })
    }

    /// Advances `engine`'s epoch too, from the next tick on.
    pub(crate) fn drive(&self, engine: &Engine) {
        self.engines.lock().recover().push(engine.clone());
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
