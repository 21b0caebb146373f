//! The same component run by wasmtime alone, for `plinth bench`: a store with WASI
//! (Plinth's capabilities, where imported, linked as traps), fuel and an epoch deadline
//! (the engine has both on, as Plinth's does), instantiate, call, drop. No limits beyond
//! those, no grants, quota, receipt, logs or JSON: the floor Plinth's own work per call
//! sits on, and where a call's time goes inside the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use plinth_host::contract::{manifest_exports, widget_exports};
use plinth_host::{Extension, Sandbox};
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Instance, InstancePre, Linker};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One call's time, by phase.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// `Store::new` and `instantiate`.
    pub instantiate: Duration,
    /// The export's call.
    pub call: Duration,
    /// Dropping the store (the pool slot's reset).
    pub drop: Duration,
}

impl Phases {
    pub fn total(&self) -> Duration {
        self.instantiate + self.call + self.drop
    }
}

/// A component pre-instantiated with WASI alone, on the sandbox's own engine (same
/// pool, same epoch ticker, same compiled code).
pub struct RawComponent {
    pre: InstancePre<Bare>,
    manifest: manifest_exports::GuestIndices,
    widget: Option<widget_exports::GuestIndices>,
}

impl RawComponent {
    pub fn new(sandbox: &Sandbox, extension: &Arc<Extension>) -> anyhow::Result<Self> {
        let component = extension.component();
        let mut linker = Linker::new(sandbox.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime_error)?;
        // Plinth's capabilities, where imported, as functions that fail: the phases
        // measured call none of them.
        for (name, item) in component.component_type().imports(sandbox.engine()) {
            let ComponentItem::ComponentInstance(interface) = item.ty else {
                continue;
            };
            if !name.starts_with(plinth_host::contract::PACKAGE) {
                continue;
            }
            let mut instance = linker.instance(name).map_err(wasmtime_error)?;
            for (function, item) in interface.exports(sandbox.engine()) {
                if let ComponentItem::ComponentFunc(_) = item.ty {
                    instance
                        .func_new(function, |_, _, _, _| {
                            Err(wasmtime::Error::msg("not linked in the raw case"))
                        })
                        .map_err(wasmtime_error)?;
                }
            }
        }
        let pre = linker
            .instantiate_pre(component)
            .map_err(wasmtime_error)
            .context("linking WASI alone")?;
        let manifest = manifest_exports::GuestIndices::new(&pre).map_err(wasmtime_error)?;
        let widget = widget_exports::GuestIndices::new(&pre).ok();
        Ok(RawComponent {
            pre,
            manifest,
            widget,
        })
    }

    async fn instantiate(&self) -> anyhow::Result<(Store<Bare>, Instance)> {
        let mut store = Store::new(
            self.pre.engine(),
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_fuel(u64::MAX).map_err(wasmtime_error)?;
        store.set_epoch_deadline(1_000);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(wasmtime_error)?;
        Ok((store, instance))
    }

    /// Instantiate, `render` with `config`, drop; the whole call's time.
    pub async fn render(&self, config: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let (mut store, instance) = self.instantiate().await?;
        let widget = self.widget.as_ref().context("not a widget")?;
        let guest = widget.load(&mut store, &instance).map_err(wasmtime_error)?;
        let request = widget_exports::RenderRequest {
            config: config.to_owned(),
            params: Vec::new(),
        };
        let views = guest
            .call_render(&mut store, &request)
            .await
            .map_err(wasmtime_error)?;
        ensure!(views.is_ok_and(|views| !views.is_empty()), "render failed");
        drop(store);
        Ok(started.elapsed())
    }

    /// Instantiate, `describe`, drop, each timed: `describe` does next to nothing in
    /// any language, so this splits a call into what instantiation costs, what a first
    /// call into a fresh instance costs and what the slot's reset costs.
    pub async fn describe(&self) -> anyhow::Result<Phases> {
        let started = Instant::now();
        let (mut store, instance) = self.instantiate().await?;
        let instantiated = Instant::now();
        let guest = self
            .manifest
            .load(&mut store, &instance)
            .map_err(wasmtime_error)?;
        let descriptor = guest
            .call_describe(&mut store)
            .await
            .map_err(wasmtime_error)?;
        ensure!(!descriptor.id.is_empty(), "describe failed");
        let called = Instant::now();
        drop(store);
        Ok(Phases {
            instantiate: instantiated - started,
            call: called - instantiated,
            drop: called.elapsed(),
        })
    }
}

fn wasmtime_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}
