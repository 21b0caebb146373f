//! Host bindings of the WIT contract, generated once for the `extension` world (it has
//! every export). A component of the `widget` or `event-handler` world is handled through
//! the per-interface export indices, so each export is looked up only if present.

wasmtime::component::bindgen!({
    world: "extension",
    path: "../../wit/v0.1.0",
    imports: { default: async | trappable | tracing },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use exports::plinth::extension::handler as handler_exports;
pub use exports::plinth::extension::manifest as manifest_exports;
pub use exports::plinth::extension::widget_exports;
pub use plinth::extension::types::{Error as WitError, Value as WitValue};
