//! Components: uploads (compile, `describe`, keep the bytes content-addressed) and the
//! loaded extension of a stored version. Every compilation on this node, at upload or on
//! the first call of a version this node has not loaded, takes one of the compile slots
//! and is bounded by the compile timeout. Loaded extensions are kept by the sandbox
//! alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plinth_host::lock::Recover;
use plinth_host::{
    ErrorCode, Extension, Grants, Invocation, Limits, Metering, PlinthError, Sandbox, Scope,
    component_hash,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::registry::{ComponentVersion, Registry, check_id, now_ms};

/// Scope under which `describe` runs at upload.
const UPLOAD_SCOPE: &str = "upload";

/// What an upload answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    #[serde(flatten)]
    pub component: ComponentVersion,
    /// The capabilities the component imports.
    pub capabilities: Vec<String>,
    /// Every import of the component.
    pub imports: Vec<String>,
    /// How long this node took to load the component the first time. The same for
    /// every upload of the same bytes, so a tenant cannot tell from it whether another
    /// tenant uploaded them before (the compile cache is shared).
    pub compiled_ms: u64,
}

/// How compilations are bounded on this node.
#[derive(Debug, Clone)]
pub struct CompileBounds {
    /// Compilations at once.
    pub slots: usize,
    /// Longest one may take before its caller is answered `COMPILE_TIMEOUT`.
    pub timeout: Duration,
}

pub struct Components {
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    bounds: CompileBounds,
    slots: Arc<Semaphore>,
    /// Limits `describe` runs under at upload.
    describe_limits: Limits,
    /// One load at a time per version: calls racing on a cold node wait for the first
    /// compilation rather than start their own.
    loading: Loading,
}

impl Components {
    pub fn new(
        sandbox: Arc<Sandbox>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        bounds: CompileBounds,
        describe_limits: Limits,
    ) -> Self {
        Components {
            slots: Arc::new(Semaphore::new(bounds.slots)),
            sandbox,
            registry,
            metrics,
            bounds,
            describe_limits,
            loading: Arc::default(),
        }
    }

    /// Uploads a component for `tenant`: compiles it, asks it to describe itself, keeps
    /// the bytes content-addressed and records the version.
    pub async fn upload(&self, tenant: &str, bytes: Vec<u8>) -> Result<Uploaded, PlinthError> {
        self.registry.tenant(tenant).await?;
        let hash = component_hash(&bytes);
        let size = bytes.len() as i64;
        let bytes = Arc::new(bytes);
        // An upload that finds every slot busy is told to come back (`RATE_LIMITED`):
        // its client holds a body the node should not keep waiting.
        let deadline = tokio::time::Instant::now() + self.bounds.timeout;
        // Compiled for the engine the tenant's calls run on, so its first call does not
        // compile it again.
        let metering = self.sandbox.metering_of(tenant);
        let extension = self
            .compile(bytes.clone(), metering, Admission::Now, deadline)
            .await?;
        // Not the time this upload waited: a hit in the shared compile cache would tell
        // that someone uploaded these bytes before.
        let compiled_ms = extension.load_time.as_millis() as u64;
        let invocation = Invocation {
            scope: Scope::new(tenant, UPLOAD_SCOPE)?,
            grants: Grants::none(),
            limits: self.describe_limits.clone(),
        };
        let report = self.sandbox.describe(&extension, &invocation).await;
        let descriptor = report.outcome.map_err(|e| {
            PlinthError::new(
                e.code,
                format!("describe() failed at upload: {}", e.message),
            )
        })?;
        check_id("extension id", &descriptor.id)?;
        jsonschema::validator_for(&descriptor.config_schema).map_err(|e| {
            PlinthError::new(
                ErrorCode::InvalidComponent,
                format!(
                    "{}: its config schema is not a valid JSON Schema: {e}",
                    descriptor.id
                ),
            )
        })?;
        let version = ComponentVersion {
            hash,
            extension: descriptor.id.clone(),
            version: descriptor.version.clone(),
            world: extension.world,
            descriptor,
            size,
            uploaded_ms: now_ms(),
        };
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        self.registry.put_component(tenant, &version, bytes).await?;
        Ok(Uploaded {
            component: version,
            capabilities: extension
                .capabilities()
                .iter()
                .map(|c| c.to_string())
                .collect(),
            imports: extension.imports.iter().map(|i| i.name.clone()).collect(),
            compiled_ms,
        })
    }

    /// The loaded extension of a stored component, for the calls of `tenant` (loaded for
    /// its metering); compiled (or read from the compile cache) on its first use on this
    /// node, under the same slots and timeout as an upload. Calls racing on a cold node
    /// wait for one compilation of the version (up to the compile timeout), which holds
    /// its turn until it ends, a timed-out one too.
    pub async fn extension(&self, hash: &str, tenant: &str) -> Result<Arc<Extension>, PlinthError> {
        let metering = self.sandbox.metering_of(tenant);
        if let Some(found) = self.sandbox.loaded(hash, metering) {
            return Ok(found);
        }
        let deadline = tokio::time::Instant::now() + self.bounds.timeout;
        let turn = Turn::take(&self.loading, &format!("{}:{hash}", metering.as_str()));
        let mine = tokio::time::timeout_at(deadline, turn.lock().lock_owned())
            .await
            .map_err(|_| self.timed_out())?;
        if let Some(found) = self.sandbox.loaded(hash, metering) {
            return Ok(found);
        }
        // Compiled before on this node (before a restart too): the artifact is mapped,
        // the stored bytes are not read. A few milliseconds even for an 18 MB
        // component, so not under the compile slots.
        let sandbox = self.sandbox.clone();
        let wanted = hash.to_owned();
        let cached = tokio::task::spawn_blocking(move || sandbox.load_cached(&wanted, metering))
            .await
            .map_err(|join| {
                PlinthError::new(ErrorCode::Internal, format!("loading failed: {join}"))
            })??;
        if let Some(found) = cached {
            return Ok(found);
        }
        let bytes = self.registry.blob(hash).await?;
        self.compile(
            Arc::new(bytes),
            metering,
            Admission::Wait(mine, turn),
            deadline,
        )
        .await
    }

    fn timed_out(&self) -> PlinthError {
        PlinthError::new(
            ErrorCode::CompileTimeout,
            format!(
                "compiling took longer than {} ms",
                self.bounds.timeout.as_millis()
            ),
        )
    }

    /// Compiles on a blocking thread, one of a bounded number at a time, until
    /// `deadline`. The compilation goes on after it (Cranelift cannot be interrupted),
    /// still holding its slot and its version's turn, so timed-out callers cannot pile
    /// up compilations either.
    async fn compile(
        &self,
        bytes: Arc<Vec<u8>>,
        metering: Metering,
        admission: Admission,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<Extension>, PlinthError> {
        let busy = || {
            PlinthError::new(
                ErrorCode::RateLimited,
                format!(
                    "{} components are being compiled already; try again shortly",
                    self.bounds.slots
                ),
            )
        };
        let (permit, turn) = match admission {
            Admission::Now => (
                self.slots.clone().try_acquire_owned().map_err(|_| busy())?,
                None,
            ),
            Admission::Wait(mine, turn) => {
                let permit = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
                    .await
                    .map_err(|_| self.timed_out())?
                    .map_err(|_| busy())?;
                (permit, Some((mine, turn)))
            }
        };
        let sandbox = self.sandbox.clone();
        let _running = self.metrics.compile_started();
        let work = tokio::task::spawn_blocking(move || {
            let loaded = sandbox.load_for(&bytes, metering);
            // The slot, then the version's guard, then its turn (the turn's cleanup
            // counts who still holds the version).
            drop(permit);
            drop(turn);
            loaded
        });
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(join)) => Err(PlinthError::new(
                ErrorCode::Internal,
                format!("compilation failed: {join}"),
            )),
            Err(_) => Err(self.timed_out()),
        }
    }
}

/// The versions being loaded, each with the mutex its callers queue on.
type Loading = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// How a compilation gets its slot.
enum Admission {
    /// An upload: a slot now or `RATE_LIMITED` (its client holds a body the node should
    /// not keep waiting).
    Now,
    /// A call's first use of a version: wait for a slot, holding the version's turn.
    Wait(tokio::sync::OwnedMutexGuard<()>, Turn),
}

/// One version's turn to be loaded (per metering): calls wanting the same version queue on its mutex.
/// The entry leaves the map with the last turn, whether it finished, timed out (its
/// compilation then ends the turn) or was dropped.
struct Turn {
    loading: Loading,
    hash: String,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Turn {
    fn take(loading: &Loading, hash: &str) -> Self {
        let lock = loading
            .lock()
            .recover()
            .entry(hash.to_owned())
            .or_default()
            .clone();
        Turn {
            loading: loading.clone(),
            hash: hash.to_owned(),
            lock: Some(lock),
        }
    }

    fn lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.lock.clone().unwrap_or_default()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Under the map's lock: the map holds one reference, each turn one, each guard
        // one; a count of one left means this was the last turn.
        let mut loading = self.loading.lock().recover();
        drop(self.lock.take());
        if loading
            .get(&self.hash)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            loading.remove(&self.hash);
        }
    }
}
