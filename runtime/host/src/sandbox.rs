//! The sandbox: one engine for the process, one pre-instantiated component per version,
//! a fresh store per call. This is where limits are put on a call and its receipt made.
//! The engine and linker are built in [`engine`], components checked and
//! pre-instantiated in [`extension`], a call made in [`run`] and its failure named in
//! [`failure`].

pub mod engine;
pub mod extension;
mod failure;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::backends::Backends;
use crate::call::{ActionResponse, Call, CallReport, Descriptor, Invocation, Outcome, Rendered};
use crate::capability::view::{CallRecord, Publication};
use crate::compile_cache::{CodeSource, CompileCache, compile, component_hash};
use crate::error::{ErrorCode, PlinthError};
use crate::lock::Recover;
use crate::receipt::{Receipt, UsageOutcome};
use crate::scope::Scope;
use crate::state::{CallState, Limiter};
use crate::tenant_quota::{Permit, TenantQuotas};
use crate::wasi::locked_down_wasi;
use engine::{EPOCH_TICK, EpochTicker, Metering, SandboxConfig, internal};
use extension::{Extension, check_header};
use failure::Failure;
use run::run_call;

/// Extra time the outer timeout allows beyond the deadline, so the epoch trap (which
/// names the cause precisely) normally fires first. The outer timeout exists for host
/// calls that hang, where no epoch check runs.
const OUTER_GRACE: Duration = Duration::from_millis(100);

/// How long a guest runs before it yields its thread to the async runtime (and its
/// deadline is checked).
const YIELD_EVERY: Duration = Duration::from_millis(10);

/// How long a call's messages may take to hand to the broadcast backend.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes of guest stderr kept per call (a panic message lands there).
const STDERR_BYTES: usize = 8 << 10;

/// The engines with their linkers, the compile cache, the backends, and the components
/// loaded so far (the one place they are kept).
pub struct Sandbox {
    /// The engine of the sandbox's configuration (fuel if `SandboxConfig::fuel`).
    main: Runtime,
    /// The engine without fuel for tenants whose quota turns fuel metering off; built at
    /// its first use, so a node where every tenant is metered has one engine and one pool.
    unmetered: OnceLock<Runtime>,
    building: Mutex<()>,
    cache: Option<CompileCache>,
    backends: Backends,
    config: SandboxConfig,
    /// By hash: the loads that count fuel, then those that do not (looked up on every
    /// call, by `&str`).
    loaded: [Mutex<HashMap<String, Arc<Extension>>>; 2],
    loads: Arc<LoadCounts>,
    quotas: TenantQuotas,
    ticker: Option<EpochTicker>,
}

/// An engine and the linker built on it.
struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
}

impl Runtime {
    fn new(config: &SandboxConfig, fuel: bool) -> Result<Self, PlinthError> {
        let engine = engine::engine(config, fuel)?;
        let linker = engine::linker(&engine)?;
        Ok(Runtime { engine, linker })
    }
}

/// Component versions this sandbox has loaded, by where their code came from: how an
/// operator sees that a restarted node reused its compiled code.
#[derive(Debug, Default)]
pub struct LoadCounts {
    compiled: AtomicU64,
    cached: AtomicU64,
}

impl LoadCounts {
    /// Versions compiled by this sandbox (at upload, or at a first use with no artifact).
    pub fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Versions whose compiled code came from the compile cache.
    pub fn cached(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }

    fn count(&self, code: CodeSource) {
        let counter = match code {
            CodeSource::Compiled => &self.compiled,
            CodeSource::Cached => &self.cached,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Sandbox {
    /// Builds the engine (pooling allocator, epoch interruption, optional fuel) and the
    /// linker. Do this once per process.
    pub fn new(config: SandboxConfig, backends: Backends) -> Result<Self, PlinthError> {
        let main = Runtime::new(&config, config.fuel)?;
        let cache = config
            .cache_dir
            .as_deref()
            .map(CompileCache::open)
            .transpose()?;
        let ticker = config
            .epoch
            .then(|| EpochTicker::start(&main.engine))
            .transpose()?;
        Ok(Sandbox {
            main,
            unmetered: OnceLock::new(),
            building: Mutex::default(),
            cache,
            backends,
            quotas: TenantQuotas::new(config.tenant_quota.clone()),
            config,
            loaded: Default::default(),
            loads: Arc::default(),
            ticker,
        })
    }

    /// The engine of the sandbox's configuration.
    pub fn engine(&self) -> &Engine {
        &self.main.engine
    }

    /// How `tenant`'s calls are metered now: its quota's `fuel_metering`, as far as this
    /// sandbox allows.
    pub fn metering_of(&self, tenant: &str) -> Metering {
        self.effective(if self.quotas.quota_of(tenant).fuel_metering {
            Metering::Fuel
        } else {
            Metering::Off
        })
    }

    /// What `metering` comes to in this sandbox: no fuel anywhere if it counts none, and
    /// fuel always if it has no epoch deadline (its fuel limit is then all that can stop a loop).
    fn effective(&self, metering: Metering) -> Metering {
        match (self.config.fuel, self.config.epoch) {
            (false, _) => Metering::Off,
            (true, false) => Metering::Fuel,
            (true, true) => metering,
        }
    }

    /// The engine and linker calls of `metering` run on.
    fn runtime(&self, metering: Metering) -> Result<&Runtime, PlinthError> {
        // The engine of the configuration is the one, unless it counts fuel and this
        // call is to count none.
        if self.effective(metering) == Metering::Fuel || !self.config.fuel {
            return Ok(&self.main);
        }
        if let Some(runtime) = self.unmetered.get() {
            return Ok(runtime);
        }
        // One build; and its epoch is driven before any component can be loaded on it,
        // or a loop there would never meet its deadline.
        let _building = self.building.lock().recover();
        if let Some(runtime) = self.unmetered.get() {
            return Ok(runtime);
        }
        let runtime = Runtime::new(&self.config, false)?;
        if let Some(ticker) = &self.ticker {
            ticker.drive(&runtime.engine);
        }
        Ok(self.unmetered.get_or_init(|| runtime))
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

    /// How many component versions were compiled and how many came from the cache.
    pub fn load_counts(&self) -> Arc<LoadCounts> {
        self.loads.clone()
    }

    /// A component loaded before for calls of `metering`, by its hash; nothing is
    /// compiled or read.
    pub fn loaded(&self, hash: &str, metering: Metering) -> Option<Arc<Extension>> {
        self.shelf(metering).lock().recover().get(hash).cloned()
    }

    /// Where the loads of `metering` are kept.
    fn shelf(&self, metering: Metering) -> &Mutex<HashMap<String, Arc<Extension>>> {
        match self.effective(metering) {
            Metering::Fuel => &self.loaded[0],
            Metering::Off => &self.loaded[1],
        }
    }

    /// [`Sandbox::load_for`] calls that count fuel (if the sandbox counts any).
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Extension>, PlinthError> {
        self.load_for(bytes, Metering::Fuel)
    }

    /// Loads a component for calls of `metering`: checks it is a component, compiles it
    /// (or loads its cached code), checks its imports against what Plinth provides and
    /// its exports against a Plinth world, and pre-instantiates it. The same bytes load
    /// once per sandbox and metering.
    pub fn load_for(
        &self,
        bytes: &[u8],
        metering: Metering,
    ) -> Result<Arc<Extension>, PlinthError> {
        let started = Instant::now();
        check_header(bytes)?;
        let hash = component_hash(bytes);
        if let Some(found) = self.loaded(&hash, metering) {
            return Ok(found);
        }
        let runtime = self.runtime(metering)?;
        let (component, code) = match &self.cache {
            Some(cache) => cache.load_or_compile(&runtime.engine, &hash, bytes)?,
            None => (compile(&runtime.engine, bytes)?, CodeSource::Compiled),
        };
        self.prepare(runtime, metering, component, hash, code, started)
    }

    /// Checks and pre-instantiates a compiled component, and keeps it as loaded.
    fn prepare(
        &self,
        runtime: &Runtime,
        metering: Metering,
        component: Component,
        hash: String,
        code: CodeSource,
        started: Instant,
    ) -> Result<Arc<Extension>, PlinthError> {
        // Counted whether or not the component then passes the contract's checks.
        self.loads.count(code);
        let metering = self.effective(metering);
        let extension = Arc::new(Extension::prepare(
            &runtime.engine,
            &runtime.linker,
            component,
            hash.clone(),
            code,
            metering,
            started,
        )?);
        self.shelf(metering)
            .lock()
            .recover()
            .insert(hash, extension.clone());
        Ok(extension)
    }

    /// Loads a stored component version by its hash from the compile cache alone: the
    /// artifact is mapped, the component's bytes are neither read nor hashed. `None` when
    /// the cache has no valid artifact for it (the caller then reads the bytes and
    /// [`Sandbox::load`]s them).
    pub fn load_cached(
        &self,
        hash: &str,
        metering: Metering,
    ) -> Result<Option<Arc<Extension>>, PlinthError> {
        if let Some(found) = self.loaded(hash, metering) {
            return Ok(Some(found));
        }
        let started = Instant::now();
        let runtime = self.runtime(metering)?;
        let Some(component) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&runtime.engine, hash))
        else {
            return Ok(None);
        };
        self.prepare(
            runtime,
            metering,
            component,
            hash.to_owned(),
            CodeSource::Cached,
            started,
        )
        .map(Some)
    }

    /// Forgets a loaded component (for every metering); the next load reads the compile
    /// cache again.
    pub fn unload(&self, hash: &str) {
        for shelf in &self.loaded {
            shelf.lock().recover().remove(hash);
        }
    }

    /// Checks an installation's grants against the component's imports: deny by
    /// default, before anything runs.
    pub fn check_grants(
        &self,
        extension: &Extension,
        invocation: &Invocation,
    ) -> Result<(), PlinthError> {
        for capability in extension.capabilities() {
            if !invocation.grants.allows(*capability) {
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

    /// `describe`: what the extension says of itself.
    pub async fn describe(
        &self,
        extension: &Extension,
        invocation: &Invocation,
    ) -> CallReport<Descriptor> {
        self.call(extension, invocation, Call::Describe)
            .await
            .narrow(|outcome| match outcome {
                Outcome::Described(descriptor) => Some(*descriptor),
                _ => None,
            })
    }

    /// `render`: the widget's views.
    pub async fn render(
        &self,
        extension: &Extension,
        invocation: &Invocation,
        config: serde_json::Value,
        params: Vec<(String, String)>,
    ) -> CallReport<Rendered> {
        self.call(extension, invocation, Call::Render { config, params })
            .await
            .narrow(|outcome| match outcome {
                Outcome::Rendered(rendered) => Some(rendered),
                _ => None,
            })
    }

    /// `invoke`: one of the widget's actions.
    pub async fn invoke(
        &self,
        extension: &Extension,
        invocation: &Invocation,
        name: String,
        config: serde_json::Value,
        body: serde_json::Value,
    ) -> CallReport<ActionResponse> {
        self.call(extension, invocation, Call::Action { name, config, body })
            .await
            .narrow(|outcome| match outcome {
                Outcome::Answered(response) => Some(response),
                _ => None,
            })
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
        // The extension's own engine: the one its code was compiled for.
        let mut store = Store::new(
            extension.pre.engine(),
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
        let fuel_given = (extension.metering == Metering::Fuel).then(|| {
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
        let guest_error = outcome.as_ref().err().and_then(Failure::guest_case);
        let outcome = outcome
            .map_err(|failure| failure.into_error(extension, invocation, &call, limits, &state));
        if let Ok((Outcome::Described(described), _)) = &outcome {
            let _ = extension
                .label
                .set(format!("{}@{}", described.name, described.version));
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
            if !published.is_empty() {
                self.deliver(&invocation.scope, &published).await;
            }
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
            guest_error,
            ran,
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
            // Every YIELD_EVERY the guest hands its thread back to the runtime, so a
            // CPU-bound call (up to its whole deadline) never holds a worker that other
            // requests, tenants and deliveries are waiting on; past the deadline it traps.
            let ticks = YIELD_EVERY.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64;
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_callback(move |context| {
                if Instant::now() >= context.data().deadline {
                    return Ok(UpdateDeadline::Interrupt);
                }
                Ok(UpdateDeadline::YieldCustom(
                    ticks,
                    Box::pin(tokio::task::yield_now()),
                ))
            });
        }
        // Bounds what the guest can make the host copy in one transfer (amplification
        // by lists of shared strings included).
        store.set_hostcall_fuel(invocation.limits.output_bytes);
        Ok(())
    }
}
