//! # plinth-host
//!
//! The host core of Plinth: one [`Sandbox`] per process holds the wasmtime engine
//! (pooling allocator, epoch interruption, optional fuel), the linker with every
//! capability, the on-disk compile cache and the capability backends. A component is
//! [loaded](Sandbox::load) once per version; every [call](Sandbox::call) gets a fresh
//! store with its [`Limits`] and returns a [`CallReport`] with a usage [`Receipt`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), plinth_host::PlinthError> {
//! use plinth_host::*;
//! let backends = Backends::embedded(std::path::Path::new("./plinth-data"))?;
//! let sandbox = Sandbox::new(SandboxConfig::default(), backends)?;
//! let extension = sandbox.load(&std::fs::read("hello_metric.wasm").unwrap())?;
//! let invocation = Invocation {
//!     scope: Scope::new("demo", "hello")?,
//!     grants: Grants::all(),
//!     limits: Limits::default(),
//! };
//! let report = sandbox
//!     .call(&extension, &invocation, Call::Render { config: serde_json::json!({}), params: vec![] })
//!     .await;
//! println!("{}", serde_json::to_string(&report).unwrap());
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod capability;
pub mod compile_cache;
pub mod demo;
pub mod error;
mod json;
pub mod limits;
pub mod receipt;
pub mod sandbox;
mod state;
pub mod tenant_quota;
pub mod wasi;

pub use capability::{
    BackendError, Backends, BackendsConfig, BroadcastConfig, CacheConfig, Capability, DbConfig,
    Grant, Grants, Scope,
};
pub use compile_cache::{CodeSource, component_hash};
pub use error::{ErrorCode, PlinthError};
pub use limits::Limits;
pub use receipt::{Receipt, UsageOutcome};
pub use sandbox::{Call, CallReport, Extension, Import, Invocation, Sandbox, SandboxConfig, World};
pub use state::{LimitBreach, LogLine, Publication};
pub use tenant_quota::{TenantQuota, TenantQuotas};
pub use wasi::{ImportKind, classify_import, removal_hint};
