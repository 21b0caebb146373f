//! The WIT contract this host speaks, named once: the package, its version and the host
//! bindings generated from `wit/v0.1.0`. A second version would be a module beside
//! [`v0_1_0`], its bindings delegating to the newer ones.

/// The contract's package.
pub const PACKAGE: &str = "plinth:extension";

/// The version of the contract components are built against.
pub const VERSION: &str = "0.1.0";

/// The full name of one of the contract's interfaces: `plinth:extension/cache@0.1.0`.
pub fn interface(name: &str) -> String {
    format!("{PACKAGE}/{name}@{VERSION}")
}

/// The interface an import or export names, if it is one of the contract's (of this
/// version): `cache` for `plinth:extension/cache@0.1.0`.
pub fn interface_name(full: &str) -> Option<&str> {
    let rest = full.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (name, version) = rest.split_once('@')?;
    (version == VERSION).then_some(name)
}

/// Host bindings of `plinth:extension@0.1.0`, generated once for the `extension` world
/// (it has every export). A component of the `widget` or `event-handler` world is handled
/// through the per-interface export indices, so each export is looked up only if present.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "extension",
        path: "../../wit/v0.1.0",
        imports: { default: async | trappable | tracing },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub use v0_1_0::exports::plinth::extension::handler as handler_exports;
pub use v0_1_0::exports::plinth::extension::manifest as manifest_exports;
pub use v0_1_0::exports::plinth::extension::widget_exports;
pub use v0_1_0::plinth::extension::types::{Error as WitError, Value as WitValue};
pub use v0_1_0::plinth::extension::{broadcast, cache, db, log, view};
