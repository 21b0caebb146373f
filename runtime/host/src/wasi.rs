//! Which imports a component may have. Plinth's own capabilities need a grant; a small
//! set of WASI interfaces that polyglot toolchains import is always linked but locked
//! down (see [`locked_down_wasi`]); everything else is refused at load.

use serde::Serialize;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::contract;
use crate::grant::Capability;

/// What Plinth makes of one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImportKind {
    /// A Plinth capability; needs a grant.
    Capability { capability: Capability },
    /// An interface of the contract that only defines types (`types`, `view`).
    ContractTypes,
    /// WASI that Plinth links with nothing behind it (no files, env or network) or
    /// with harmless behaviour (clocks, random).
    LockedDownWasi,
    /// Something Plinth never provides (sockets, HTTP, unknown packages).
    Unsupported,
}

/// Interfaces of the contract that carry types only.
const CONTRACT_TYPES: &[&str] = &["types", "view"];

/// WASI interfaces (by name without version) a guest may import.
const LOCKED_DOWN_WASI: &[&str] = &[
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Classifies an import by its interface name, e.g. `wasi:io/streams@0.2.6`.
///
/// ```
/// # use plinth_host::{Capability, ImportKind, classify_import};
/// assert_eq!(classify_import("plinth:extension/db@0.1.0"),
///            ImportKind::Capability { capability: Capability::Db });
/// assert_eq!(classify_import("wasi:random/random@0.2.3"), ImportKind::LockedDownWasi);
/// assert_eq!(classify_import("wasi:sockets/tcp@0.2.3"), ImportKind::Unsupported);
/// ```
pub fn classify_import(name: &str) -> ImportKind {
    if let Some(capability) = Capability::of_interface(name) {
        return ImportKind::Capability { capability };
    }
    if contract::interface_name(name).is_some_and(|n| CONTRACT_TYPES.contains(&n)) {
        return ImportKind::ContractTypes;
    }
    let unversioned = name.split('@').next().unwrap_or(name);
    if LOCKED_DOWN_WASI.contains(&unversioned) {
        ImportKind::LockedDownWasi
    } else {
        ImportKind::Unsupported
    }
}

/// How to build without an import Plinth refuses, for the toolchains that add it by
/// default; empty when no switch is known.
///
/// ```
/// # use plinth_host::removal_hint;
/// assert!(removal_hint("wasi:http/incoming-handler@0.2.3").contains("-d http"));
/// assert_eq!(removal_hint("acme:evil/thing"), "");
/// ```
pub fn removal_hint(name: &str) -> &'static str {
    if name.starts_with("wasi:http/") {
        "; componentize-js adds it unless run with `-d http -d fetch-event` (`plinth build` \
         passes both)"
    } else if name.starts_with("wasi:sockets/") {
        "; componentize-py leaves it out with `--stub-wasi` (`plinth build` passes it), and a \
         C or Rust guest that opens no sockets does not import it"
    } else {
        ""
    }
}

/// WASI for polyglot guests: clocks and random work; there are no preopened
/// directories, no environment, no arguments, no network; stdin is empty and stderr
/// is kept (bounded) so a panic message can be reported; stdout is discarded.
pub(crate) fn locked_down_wasi(stderr: &MemoryOutputPipe) -> wasmtime_wasi::WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}
