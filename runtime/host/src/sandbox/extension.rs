//! A loaded component: checked against the contract (imports Plinth provides, exports of
//! one of its worlds) and pre-instantiated, once per version.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use crate::compile_cache::CodeSource;
use crate::contract::{self, handler_exports, manifest_exports, widget_exports};
use crate::error::{ErrorCode, PlinthError};
use crate::grant::Capability;
use crate::sandbox::engine::Metering;
use crate::state::CallState;
use crate::wasi::{ImportKind, classify_import, removal_hint};

/// Which Plinth world a component implements, from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Widget,
    EventHandler,
    Extension,
}

impl World {
    /// `widget`, `event-handler` or `extension`.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Widget => "widget",
            World::EventHandler => "event-handler",
            World::Extension => "extension",
        }
    }

    /// Whether the world exports `widget-exports` (render, tick, actions).
    pub fn has_widget(self) -> bool {
        matches!(self, World::Widget | World::Extension)
    }

    /// Whether the world exports `handler` (events).
    pub fn has_handler(self) -> bool {
        matches!(self, World::EventHandler | World::Extension)
    }
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
    /// Whether calls of this load count fuel (its code was compiled for that engine).
    pub metering: Metering,
    pub load_time: Duration,
    /// Worked out once: every call checks its grants against them.
    capabilities: Vec<Capability>,
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) manifest: manifest_exports::GuestIndices,
    pub(crate) widget: Option<widget_exports::GuestIndices>,
    pub(crate) handler: Option<handler_exports::GuestIndices>,
    /// `name@version` from the first successful `describe`, for messages.
    pub(crate) label: OnceLock<String>,
}

impl Extension {
    /// Checks a compiled component against what the linker provides and the contract's
    /// worlds, and pre-instantiates it.
    pub(crate) fn prepare(
        engine: &Engine,
        linker: &Linker<CallState>,
        component: Component,
        hash: String,
        code: CodeSource,
        metering: Metering,
        started: Instant,
    ) -> Result<Extension, PlinthError> {
        let label = format!("component sha256:{}", &hash[..12]);
        let ty = component.component_type();
        let imports: Vec<Import> = ty
            .imports(engine)
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
                    removal_hint(&refused.name)
                ),
            ));
        }
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let speaks = format!("{}@{}", contract::PACKAGE, contract::VERSION);
        let mismatch = |message: String| {
            PlinthError::new(ErrorCode::WorldMismatch, format!("{label}: {message}"))
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| mismatch(format!("its imports do not match {speaks}: {e:#}")))?;
        let exports_interface =
            |interface: &str| exports.iter().any(|e| *e == contract::interface(interface));
        if !exports_interface("manifest") {
            let other = exports
                .iter()
                .find(|e| e.starts_with(&format!("{}/", contract::PACKAGE)));
            return Err(mismatch(match other {
                Some(name) => format!("it exports {name}, but this host speaks {speaks}"),
                None => format!(
                    "it does not export {} (exports: [{}])",
                    contract::interface("manifest"),
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
                return Err(mismatch(format!(
                    "it exports neither {} nor {}",
                    contract::interface("widget-exports"),
                    contract::interface("handler")
                )));
            }
        };
        let mut capabilities: Vec<Capability> = imports
            .iter()
            .filter_map(|i| match i.kind {
                ImportKind::Capability { capability } => Some(capability),
                _ => None,
            })
            .collect();
        capabilities.sort();
        capabilities.dedup();
        Ok(Extension {
            hash,
            world,
            capabilities,
            imports,
            exports,
            code,
            metering,
            load_time: started.elapsed(),
            pre,
            manifest,
            widget,
            handler,
            label: OnceLock::new(),
        })
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        self.pre.component()
    }

    /// The capabilities the component imports, sorted, each once.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// What an upgrade from `previous` to this version asks for beyond what `previous`
    /// imported: the capabilities a tenant admin must grant before the upgrade.
    pub fn capabilities_added_since(&self, previous: &Extension) -> Vec<Capability> {
        let before = previous.capabilities();
        self.capabilities()
            .iter()
            .filter(|c| !before.contains(c))
            .copied()
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

/// Tells a component from a core module from anything else, before compiling.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), PlinthError> {
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
