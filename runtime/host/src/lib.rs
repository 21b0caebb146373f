//! # plinth-host
//!
//! The host core of Plinth: one [`Sandbox`] per process holds the wasmtime engine
//! (pooling allocator, epoch interruption, optional fuel), the linker with every
//! capability, the on-disk compile cache and the capability backends. A component is
//! [loaded](Sandbox::load) once per version; every call gets a fresh store with its
//! [`Limits`] and returns a [`CallReport`] typed by the kind of call, with a usage
//! [`Receipt`].
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
//!     .render(&extension, &invocation, serde_json::json!({}), vec![])
//!     .await;
//! println!("{}", serde_json::to_string(&report).unwrap());
//! # Ok(()) }
//! ```

pub mod backends;
pub mod call;
pub mod capability;
pub mod compile_cache;
pub mod contract;
pub mod error;
pub mod grant;
mod json;
pub mod limits;
pub mod lock;
pub mod receipt;
pub mod sandbox;
pub mod scope;
mod state;
pub mod tenant_quota;
pub mod wasi;

pub use backends::{Backends, BackendsConfig, BroadcastConfig, CacheConfig, DbConfig};
pub use call::{
    ActionInfo, ActionResponse, Call, CallReport, Descriptor, GuestErrorCase, Invocation, Outcome,
    Rendered, TileSize,
};
pub use capability::view::{LogLine, Publication};
pub use compile_cache::{CodeSource, component_hash};
pub use error::{BackendError, ErrorCode, FieldProblem, PlinthError};
pub use grant::{Capability, Grant, Grants};
pub use limits::{LimitBreach, Limits};
pub use receipt::{Receipt, UsageOutcome};
pub use sandbox::engine::{Metering, SandboxConfig};
pub use sandbox::extension::{Extension, Import, World};
pub use sandbox::{LoadCounts, Sandbox};
pub use scope::{Scope, check_identifier};
pub use tenant_quota::{TenantQuota, TenantQuotas};
pub use wasi::{ImportKind, classify_import, removal_hint};
