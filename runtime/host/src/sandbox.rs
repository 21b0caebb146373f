//! The sandbox: one engine for the process, one pre-instantiated component per version,
//! a fresh store per call. This is where limits are put on a call and its receipt made.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::component::HasData;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::{WitError, handler_exports, manifest_exports, plinth, widget_exports};
use crate::capability::broadcast::BroadcastBackend;
use crate::capability::cache::CacheBackend;
use crate::capability::db::DbBackend;
use crate::capability::log::LogRing;
use crate::capability::{Backends, Capability, Grants, Scope};
use crate::compile_cache::{CodeSource, CompileCache, compile, component_hash};
use crate::error::{ErrorCode, PlinthError};
use crate::json;
use crate::limits::{Limits, MAX_MEMORY_BYTES, SLOT_INSTANCES, SLOT_MEMORIES, SLOT_TABLES};
use crate::receipt::{Receipt, UsageOutcome};
use crate::state::{CallRecord, CallState, CapView, LimitBreach, Limiter, LogLine, Publication};
use crate::tenant_quota::{Permit, TenantQuota, TenantQuotas};
use crate::wasi::{ImportKind, classify_import};

/// How often the epoch advances. A call's deadline is a number of these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Extra time the outer timeout allows beyond the deadline, so the epoch trap (which
/// names the cause precisely) normally fires first. The outer timeout exists for host
/// calls that hang, where no epoch check runs.
const OUTER_GRACE: Duration = Duration::from_millis(100);

/// Linear memory kept resident in a pool slot between calls: a Rust guest's stack, data
/// and first heap pages fit.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;

/// Fiber stack kept resident between calls.
const KEEP_RESIDENT_STACK: usize = 128 << 10;

/// How long a call's messages may take to hand to the broadcast backend.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes of guest stderr kept per call (a panic message lands there).
const STDERR_BYTES: usize = 8 << 10;

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
            max_wasm_stack: 512 << 10,
            tenant_quota: TenantQuota::default(),
        }
    }
}

/// Which Plinth world a component implements, from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Widget,
    EventHandler,
    Extension,
}

/// One import of a component and what Plinth makes of it.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    pub name: String,
    #[serde(flatten)]
    pub kind: ImportKind,
}

/// A loaded component version: compiled, checked against the contract, pre-instantiated.
pub struct Extension {
    pub hash: String,
    pub world: World,
    pub imports: Vec<Import>,
    pub exports: Vec<String>,
    pub code: CodeSource,
    pub load_time: Duration,
    pre: InstancePre<CallState>,
    manifest: manifest_exports::GuestIndices,
    widget: Option<widget_exports::GuestIndices>,
    handler: Option<handler_exports::GuestIndices>,
    /// `name@version` from the first successful `describe`, for messages.
    label: OnceLock<String>,
}

impl Extension {
    /// The capabilities the component imports.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut found: Vec<Capability> = self
            .imports
            .iter()
            .filter_map(|i| match i.kind {
                ImportKind::Capability { capability } => Some(capability),
                _ => None,
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// What an upgrade from `previous` to this version asks for beyond what `previous`
    /// imported: the capabilities a tenant admin must grant before the upgrade.
    pub fn capabilities_added_since(&self, previous: &Extension) -> Vec<Capability> {
        let before = previous.capabilities();
        self.capabilities()
            .into_iter()
            .filter(|c| !before.contains(c))
            .collect()
    }

    /// How messages name this extension: `name@version (sha256:…)` once described.
    pub fn label(&self) -> String {
        match self.label.get() {
            Some(label) => format!("{label} (sha256:{})", &self.hash[..12]),
            None => format!("component sha256:{}", &self.hash[..12]),
        }
    }
}

/// Who a call runs for and under which grants and limits.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub scope: Scope,
    pub grants: Grants,
    pub limits: Limits,
}

/// One call into an extension.
#[derive(Debug, Clone)]
pub enum Call {
    Describe,
    Render {
        config: serde_json::Value,
        params: Vec<(String, String)>,
    },
    Tick {
        config: serde_json::Value,
        sequence: u64,
        scheduled_at_ms: u64,
    },
    Action {
        name: String,
        config: serde_json::Value,
        body: serde_json::Value,
    },
    Event {
        id: String,
        name: String,
        payload: serde_json::Value,
        occurred_at_ms: u64,
        attempt: u32,
    },
}

impl Call {
    pub fn name(&self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Render { .. } => "render",
            Call::Tick { .. } => "on-tick",
            Call::Action { .. } => "invoke",
            Call::Event { .. } => "handle",
        }
    }
}

/// What a call produced, what it used, and what it said.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    #[serde(serialize_with = "serialize_outcome", rename = "result")]
    pub outcome: Result<serde_json::Value, PlinthError>,
    pub receipt: Receipt,
    pub logs: Vec<LogLine>,
    pub published: Vec<Publication>,
}

fn serialize_outcome<S: serde::Serializer>(
    outcome: &Result<serde_json::Value, PlinthError>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Shown<'a> {
        Ok(&'a serde_json::Value),
        Error(&'a PlinthError),
    }
    match outcome {
        Ok(value) => Shown::Ok(value).serialize(serializer),
        Err(error) => Shown::Error(error).serialize(serializer),
    }
}

/// Stops the epoch thread when the sandbox goes away.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine, the linker with every capability, the compile cache and the backends.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<CompileCache>,
    backends: Backends,
    config: SandboxConfig,
    loaded: Mutex<HashMap<String, Arc<Extension>>>,
    quotas: TenantQuotas,
    _ticker: Option<EpochTicker>,
}

struct CacheCap;
impl HasData for CacheCap {
    type Data<'a> = CapView<'a, dyn CacheBackend>;
}
struct DbCap;
impl HasData for DbCap {
    type Data<'a> = CapView<'a, dyn DbBackend>;
}
struct BroadcastCap;
impl HasData for BroadcastCap {
    type Data<'a> = CapView<'a, dyn BroadcastBackend>;
}
struct LogCap;
impl HasData for LogCap {
    type Data<'a> = CapView<'a, LogRing>;
}

fn cache_view(state: &mut CallState) -> CapView<'_, dyn CacheBackend> {
    state.view(|b| &*b.cache)
}
fn db_view(state: &mut CallState) -> CapView<'_, dyn DbBackend> {
    state.view(|b| &*b.db)
}
fn broadcast_view(state: &mut CallState) -> CapView<'_, dyn BroadcastBackend> {
    state.view(|b| &*b.broadcast)
}
fn log_view(state: &mut CallState) -> CapView<'_, LogRing> {
    state.view(|b| &*b.log)
}

fn internal(context: &str) -> impl Fn(wasmtime::Error) -> PlinthError + '_ {
    move |e| PlinthError::new(ErrorCode::Internal, format!("{context}: {e:#}"))
}

impl Sandbox {
    /// Builds the engine (pooling allocator, epoch interruption, optional fuel) and the
    /// linker. Do this once per process.
    pub fn new(config: SandboxConfig, backends: Backends) -> Result<Self, PlinthError> {
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(config.epoch)
            .consume_fuel(config.fuel)
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
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            // Between calls, a slot's dirty pages are found with PAGEMAP_SCAN (Linux 6.7+)
            // and reset in place, up to these sizes, instead of being unmapped: the next
            // call then takes no page faults. Without the ioctl this falls back to memset
            // of the low pages. Measured in docs/BENCHMARKS.md.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(KEEP_RESIDENT_STACK);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(internal("cannot build the engine"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(internal("linking WASI"))?;
        plinth::extension::cache::add_to_linker::<_, CacheCap>(&mut linker, cache_view)
            .map_err(internal("linking cache"))?;
        plinth::extension::db::add_to_linker::<_, DbCap>(&mut linker, db_view)
            .map_err(internal("linking db"))?;
        plinth::extension::broadcast::add_to_linker::<_, BroadcastCap>(&mut linker, broadcast_view)
            .map_err(internal("linking broadcast"))?;
        plinth::extension::log::add_to_linker::<_, LogCap>(&mut linker, log_view)
            .map_err(internal("linking log"))?;

        let cache = config
            .cache_dir
            .as_deref()
            .map(CompileCache::open)
            .transpose()?;
        let ticker = config.epoch.then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let (engine, flag) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("plinth-epoch".into())
                .spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map(|_| EpochTicker { stop })
        });
        let ticker = ticker
            .transpose()
            .map_err(|e| PlinthError::new(ErrorCode::Internal, format!("epoch thread: {e}")))?;
        Ok(Sandbox {
            engine,
            linker,
            cache,
            backends,
            quotas: TenantQuotas::new(config.tenant_quota.clone()),
            config,
            loaded: Mutex::default(),
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The per-tenant quotas and their live usage.
    pub fn tenant_quotas(&self) -> &TenantQuotas {
        &self.quotas
    }

    /// Loads a component: checks it is a component, compiles it (or loads its cached
    /// code), checks its imports against what Plinth provides and its exports against a
    /// Plinth world, and pre-instantiates it. The same bytes load once per sandbox.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Extension>, PlinthError> {
        let started = Instant::now();
        check_header(bytes)?;
        let hash = component_hash(bytes);
        if let Some(found) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
        {
            return Ok(found.clone());
        }
        let (component, code) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &hash, bytes)?,
            None => (compile(&self.engine, bytes)?, CodeSource::Compiled),
        };
        let extension = Arc::new(self.prepare(component, hash.clone(), code, started)?);
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, extension.clone());
        Ok(extension)
    }

    /// Forgets a loaded component; the next load reads the compile cache again.
    pub fn unload(&self, hash: &str) {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    fn prepare(
        &self,
        component: Component,
        hash: String,
        code: CodeSource,
        started: Instant,
    ) -> Result<Extension, PlinthError> {
        let label = format!("component sha256:{}", &hash[..12]);
        let ty = component.component_type();
        let imports: Vec<Import> = ty
            .imports(&self.engine)
            .map(|(name, _)| Import {
                name: name.to_owned(),
                kind: classify_import(name),
            })
            .collect();
        if let Some(refused) = imports
            .iter()
            .find(|i| matches!(i.kind, ImportKind::Unsupported))
        {
            return Err(PlinthError::new(
                ErrorCode::CapabilityDenied,
                format!(
                    "{label} imports {}, which Plinth never provides (no filesystem, network, \
                     HTTP or environment; see docs/limits.md){}",
                    refused.name,
                    crate::wasi::removal_hint(&refused.name)
                ),
            ));
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let mismatch = |message: String| {
            PlinthError::new(ErrorCode::WorldMismatch, format!("{label}: {message}"))
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            mismatch(format!(
                "its imports do not match plinth:extension@0.1.0: {e:#}"
            ))
        })?;
        let exports_interface = |interface: &str| {
            exports
                .iter()
                .any(|e| e == &format!("plinth:extension/{interface}@0.1.0"))
        };
        if !exports_interface("manifest") {
            let other = exports.iter().find(|e| e.starts_with("plinth:extension/"));
            return Err(mismatch(match other {
                Some(name) => {
                    format!("it exports {name}, but this host speaks plinth:extension@0.1.0")
                }
                None => format!(
                    "it does not export plinth:extension/manifest@0.1.0 (exports: [{}])",
                    exports.join(", ")
                ),
            }));
        }
        let typed =
            |e: wasmtime::Error| mismatch(format!("its exports do not match the contract: {e:#}"));
        let manifest = manifest_exports::GuestIndices::new(&pre).map_err(typed)?;
        let widget = exports_interface("widget-exports")
            .then(|| widget_exports::GuestIndices::new(&pre))
            .transpose()
            .map_err(typed)?;
        let handler = exports_interface("handler")
            .then(|| handler_exports::GuestIndices::new(&pre))
            .transpose()
            .map_err(typed)?;
        let world = match (&widget, &handler) {
            (Some(_), Some(_)) => World::Extension,
            (Some(_), None) => World::Widget,
            (None, Some(_)) => World::EventHandler,
            (None, None) => {
                return Err(mismatch(
                    "it exports neither plinth:extension/widget-exports nor plinth:extension/handler".into(),
                ));
            }
        };
        Ok(Extension {
            hash,
            world,
            imports,
            exports,
            code,
            load_time: started.elapsed(),
            pre,
            manifest,
            widget,
            handler,
            label: OnceLock::new(),
        })
    }

    /// Checks an installation's grants against the component's imports: deny by
    /// default, before anything runs.
    pub fn check_grants(
        &self,
        extension: &Extension,
        invocation: &Invocation,
    ) -> Result<(), PlinthError> {
        for capability in extension.capabilities() {
            if !invocation.grants.allows(capability) {
                return Err(PlinthError::new(
                    ErrorCode::CapabilityDenied,
                    format!(
                        "{} of {} imports the `{capability}` capability (plinth:extension/{capability}), \
                         which is not granted",
                        invocation.scope,
                        extension.label()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs one call in a fresh store under the invocation's limits. Never panics on
    /// guest behaviour; every failure is a code in the report.
    pub async fn call(
        &self,
        extension: &Extension,
        invocation: &Invocation,
        call: Call,
    ) -> CallReport {
        let started = Instant::now();
        let limits = &invocation.limits;
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let mut store = Store::new(
            &self.engine,
            CallState {
                scope: invocation.scope.clone(),
                grants: invocation.grants.clone(),
                limits: limits.clone(),
                deadline: started + limits.timeout,
                backends: self.backends.clone(),
                record: CallRecord::default(),
                limiter: Limiter::new(limits),
                wasi: locked_down_wasi(&stderr),
                table: ResourceTable::new(),
                stderr,
            },
        );
        // Held to the end of the call: the tenant's running calls and fuel budget.
        let permit = self.quotas.admit(&invocation.scope.tenant);
        let budget_left = permit.as_ref().ok().and_then(Permit::fuel_left);
        let fuel_given = self.config.fuel.then(|| {
            limits
                .fuel
                .unwrap_or(u64::MAX)
                .min(budget_left.unwrap_or(u64::MAX))
        });
        let admitted = permit.as_ref().map(|_| ()).map_err(Clone::clone);
        let prepared = admitted.and_then(|()| {
            self.prepare_store(&mut store, extension, &call, invocation, fuel_given)
        });
        // A call refused before it runs has used no fuel (its store was never fuelled).
        let ran = prepared.is_ok();
        let outcome = match prepared {
            Ok(()) => {
                let run = run_call(&mut store, extension, &call, limits.output_bytes);
                match tokio::time::timeout(limits.timeout + OUTER_GRACE, run).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::Timeout),
                }
            }
            Err(error) => Err(Failure::Refused(error)),
        };
        let fuel_used = fuel_given.map(|given| match store.get_fuel() {
            Ok(left) if ran => given - left,
            _ => 0,
        });
        if let (Ok(permit), Some(used)) = (&permit, fuel_used) {
            permit.charge(used);
        }
        let state = store.into_data();
        let outcome = outcome
            .map_err(|failure| failure.into_error(extension, invocation, &call, limits, &state));
        if let (Call::Describe, Ok((described, _))) = (&call, &outcome) {
            let _ = extension.label.set(format!(
                "{}@{}",
                described["name"].as_str().unwrap_or("?"),
                described["version"].as_str().unwrap_or("?")
            ));
        }
        let CallRecord {
            host_calls,
            logs,
            dropped_logs,
            published,
            ..
        } = state.record;
        self.backends.log.append(&invocation.scope, &logs);
        let published = if outcome.is_ok() {
            self.deliver(&invocation.scope, &published).await;
            published
        } else {
            // A failed call's messages are never delivered.
            Vec::new()
        };
        let receipt = Receipt {
            tenant: invocation.scope.tenant.clone(),
            installation: invocation.scope.installation.clone(),
            component: extension.hash.clone(),
            call: call.name(),
            outcome: match &outcome {
                Ok(_) => UsageOutcome::Ok,
                Err(error) => UsageOutcome::Error(error.code),
            },
            fuel_used,
            peak_memory_bytes: state.limiter.peak_memory,
            wall_time_us: started.elapsed().as_micros() as u64,
            host_calls,
            output_bytes: outcome.as_ref().map_or(0, |(_, bytes)| *bytes),
            logs_dropped: dropped_logs,
        };
        tracing::debug!(scope = %invocation.scope, call = call.name(), outcome = %receipt.outcome, "call finished");
        CallReport {
            outcome: outcome.map(|(value, _)| value),
            receipt,
            logs,
            published,
        }
    }

    /// Hands a successful call's messages to the broadcast backend, within a bound so a
    /// slow backend cannot hold the call's caller.
    async fn deliver(&self, scope: &Scope, published: &[Publication]) {
        let delivering = async {
            for message in published {
                let publishing = self.backends.broadcast.publish(
                    &scope.tenant,
                    &message.topic,
                    message.payload.clone(),
                );
                if let Err(error) = publishing.await {
                    tracing::warn!(%scope, topic = %message.topic, %error, "broadcast failed");
                }
            }
        };
        if tokio::time::timeout(DELIVERY_TIMEOUT, delivering)
            .await
            .is_err()
        {
            tracing::warn!(%scope, "broadcast delivery took too long; the rest was dropped");
        }
    }

    fn prepare_store(
        &self,
        store: &mut Store<CallState>,
        extension: &Extension,
        call: &Call,
        invocation: &Invocation,
        fuel: Option<u64>,
    ) -> Result<(), PlinthError> {
        invocation.limits.validate()?;
        // `describe` runs at upload, before anything is granted: it may run with no
        // grants, and any capability it tries is refused by the host function.
        if !matches!(call, Call::Describe) {
            self.check_grants(extension, invocation)?;
        }
        store.limiter(|state| &mut state.limiter);
        if let Some(fuel) = fuel {
            store.set_fuel(fuel).map_err(internal("setting fuel"))?;
        }
        if self.config.epoch {
            let ticks = invocation
                .limits
                .timeout
                .as_nanos()
                .div_ceil(EPOCH_TICK.as_nanos());
            store.set_epoch_deadline(ticks as u64);
            store.epoch_deadline_trap();
        }
        // Bounds what the guest can make the host copy in one transfer (amplification
        // by lists of shared strings included).
        store.set_hostcall_fuel(invocation.limits.output_bytes);
        Ok(())
    }
}

/// Why a call failed, before it is put in words.
enum Failure {
    Refused(PlinthError),
    Timeout,
    NotExported(&'static str),
    Guest(WitError),
    Output(LimitBreach),
    BadJson(&'static str),
    Wasm {
        instantiating: bool,
        error: wasmtime::Error,
    },
}

impl Failure {
    fn into_error(
        self,
        extension: &Extension,
        invocation: &Invocation,
        call: &Call,
        limits: &Limits,
        state: &CallState,
    ) -> PlinthError {
        let who = format!(
            "{} of {}: {}",
            invocation.scope,
            extension.label(),
            call.name()
        );
        let (code, detail) = match self {
            Failure::Refused(error) => return error,
            Failure::Timeout => (
                ErrorCode::ExecutionTimeout,
                format!(
                    "did not finish within {} ms (a host call hung)",
                    limits.timeout.as_millis()
                ),
            ),
            Failure::NotExported(interface) => (
                ErrorCode::WorldMismatch,
                format!(
                    "the component does not export plinth:extension/{interface} (world {:?})",
                    extension.world
                ),
            ),
            Failure::Guest(error) => {
                // A guest passing on the host's refusal keeps the host's code.
                let code = state
                    .record
                    .refusals
                    .iter()
                    .find(|(_, refused)| *refused == error)
                    .map_or(ErrorCode::GuestError, |(code, _)| *code);
                (
                    code,
                    format!(
                        "the extension returned an error: {}",
                        describe_wit_error(&error)
                    ),
                )
            }
            Failure::Output(breach) => (breach.code(), breach.to_string()),
            Failure::BadJson(what) => (
                ErrorCode::GuestError,
                format!("the extension returned {what} that is not JSON"),
            ),
            Failure::Wasm {
                instantiating,
                error,
            } => classify(&error, instantiating, limits, state),
        };
        PlinthError::new(code, format!("{who}: {detail}"))
    }
}

fn describe_wit_error(error: &WitError) -> String {
    let (case, message) = match error {
        WitError::InvalidInput(m) => ("invalid-input", m),
        WitError::NotFound(m) => ("not-found", m),
        WitError::Denied(m) => ("denied", m),
        WitError::QuotaExceeded(m) => ("quota-exceeded", m),
        WitError::Unavailable(m) => ("unavailable", m),
        WitError::Timeout(m) => ("timeout", m),
        WitError::Rejected(m) => ("rejected", m),
        WitError::Internal(m) => ("internal", m),
    };
    format!("{case}: {message}")
}

/// Names the cause of a wasmtime error: limits first, then traps, then the ABI.
fn classify(
    error: &wasmtime::Error,
    instantiating: bool,
    limits: &Limits,
    state: &CallState,
) -> (ErrorCode, String) {
    if let Some(breach) = error.downcast_ref::<LimitBreach>() {
        return (breach.code(), breach.to_string());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => (
                ErrorCode::ExecutionTimeout,
                format!("ran past its deadline of {} ms", limits.timeout.as_millis()),
            ),
            Trap::OutOfFuel => (
                ErrorCode::FuelExhausted,
                format!(
                    "used all of its fuel ({})",
                    limits.fuel.map_or("unmetered".into(), |f| f.to_string())
                ),
            ),
            Trap::StackOverflow => (ErrorCode::StackOverflow, "overflowed its wasm stack".into()),
            other => {
                let stderr = state.stderr.contents();
                let said = String::from_utf8_lossy(&stderr);
                let said = said.trim();
                let tail = said
                    .char_indices()
                    .rev()
                    .nth(500)
                    .map_or(said, |(i, _)| &said[i..]);
                if tail.is_empty() {
                    (ErrorCode::GuestTrap, format!("the guest trapped: {other}"))
                } else {
                    (
                        ErrorCode::GuestTrap,
                        format!("the guest trapped: {other}; stderr: {tail}"),
                    )
                }
            }
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            ErrorCode::GuestTrap,
            format!("the guest called exit({})", exit.0),
        );
    }
    let text = format!("{error:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return (
            ErrorCode::OutputTooLarge,
            format!(
                "more than {} bytes crossed from the guest to the host in one transfer",
                limits.output_bytes
            ),
        );
    }
    if instantiating {
        return (
            ErrorCode::InvalidComponent,
            format!("could not be instantiated: {text}"),
        );
    }
    // What remains are failures to lift the guest's values: invalid UTF-8, pointers out
    // of bounds, bad discriminants. The guest broke the canonical ABI.
    (ErrorCode::GuestAbiError, text)
}

/// Instantiates and makes the call; returns the result as JSON.
async fn run_call(
    store: &mut Store<CallState>,
    extension: &Extension,
    call: &Call,
    output_cap: usize,
) -> Result<(serde_json::Value, usize), Failure> {
    let wasm = |instantiating| {
        move |error| Failure::Wasm {
            instantiating,
            error,
        }
    };
    let instance = extension
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(wasm(true))?;
    let widget = || {
        extension
            .widget
            .as_ref()
            .ok_or(Failure::NotExported("widget-exports@0.1.0"))
    };
    let value = match call {
        Call::Describe => {
            let guest = extension
                .manifest
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let descriptor = guest
                .call_describe(&mut *store)
                .await
                .map_err(wasm(false))?;
            json::descriptor(&descriptor).ok_or(Failure::BadJson("a config schema"))?
        }
        Call::Render { config, params } => {
            let guest = widget()?
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let request = widget_exports::RenderRequest {
                config: config.to_string(),
                params: params.clone(),
            };
            let views = guest
                .call_render(&mut *store, &request)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            let views = views
                .iter()
                .map(json::view)
                .collect::<Option<Vec<_>>>()
                .ok_or(Failure::BadJson("a custom view"))?;
            serde_json::json!({ "views": views })
        }
        Call::Tick {
            config,
            sequence,
            scheduled_at_ms,
        } => {
            let guest = widget()?
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let tick = widget_exports::Tick {
                config: config.to_string(),
                sequence: *sequence,
                scheduled_at_ms: *scheduled_at_ms,
            };
            guest
                .call_on_tick(&mut *store, &tick)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            serde_json::Value::Null
        }
        Call::Action { name, config, body } => {
            let guest = widget()?
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let request = widget_exports::ActionRequest {
                name: name.clone(),
                config: config.to_string(),
                body: body.to_string(),
            };
            let response = guest
                .call_invoke(&mut *store, &request)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            json::action_response(&response)
        }
        Call::Event {
            id,
            name,
            payload,
            occurred_at_ms,
            attempt,
        } => {
            let handler = extension
                .handler
                .as_ref()
                .ok_or(Failure::NotExported("handler@0.1.0"))?;
            let guest = handler.load(&mut *store, &instance).map_err(wasm(false))?;
            let event = handler_exports::Event {
                id: id.clone(),
                name: name.clone(),
                payload: payload.to_string(),
                occurred_at_ms: *occurred_at_ms,
                attempt: *attempt,
            };
            guest
                .call_handle(&mut *store, &event)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            serde_json::Value::Null
        }
    };
    let bytes = value.to_string().len();
    if bytes > output_cap {
        return Err(Failure::Output(LimitBreach::Output {
            bytes,
            cap: output_cap,
        }));
    }
    Ok((value, bytes))
}

/// WASI for polyglot guests: clocks and random work; there are no preopened
/// directories, no environment, no arguments, no network; stdin is empty and stderr
/// is kept (bounded) so a panic message can be reported; stdout is discarded.
fn locked_down_wasi(stderr: &MemoryOutputPipe) -> wasmtime_wasi::WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Tells a component from a core module from anything else, before compiling.
fn check_header(bytes: &[u8]) -> Result<(), PlinthError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PlinthError::new(
            ErrorCode::InvalidComponent,
            "not WebAssembly: the file does not start with the wasm magic number",
        ));
    }
    match (
        u16::from_le_bytes([bytes[4], bytes[5]]),
        u16::from_le_bytes([bytes[6], bytes[7]]),
    ) {
        (_, 1) => Ok(()),
        (1, 0) => Err(PlinthError::new(
            ErrorCode::NotAComponent,
            "this is a core WebAssembly module; Plinth runs components (build for wasm32-wasip2, \
             or wrap the module with `wasm-tools component new`)",
        )),
        (version, layer) => Err(PlinthError::new(
            ErrorCode::InvalidComponent,
            format!("unknown WebAssembly version {version} layer {layer}"),
        )),
    }
}
