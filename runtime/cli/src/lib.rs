//! The `plinth` command as a library, so tests drive exactly what users run.

pub mod bench;
mod bench_raw;
pub mod bench_server;
mod bench_wasi_http;
pub mod guest_build;
pub mod polyglot;
pub mod scaffold;
pub mod serve;

use std::path::{Path, PathBuf};

use plinth_host::{
    Backends, BackendsConfig, Call, ErrorCode, Extension, Grants, Invocation, Limits, PlinthError,
    Sandbox, SandboxConfig, Scope,
};
use serde_json::{Value, json};

/// Reads a component, building it first when `path` is a Rust crate's folder.
pub fn component_bytes(path: &Path) -> Result<(PathBuf, Vec<u8>), PlinthError> {
    let wasm = if path.is_dir() {
        guest_build::build(path, None)
            .map_err(|e| PlinthError::new(ErrorCode::InvalidRequest, format!("{e:#}")))?
    } else {
        path.to_owned()
    };
    let bytes = std::fs::read(&wasm).map_err(|e| {
        PlinthError::new(
            ErrorCode::InvalidRequest,
            format!("cannot read {}: {e}", wasm.display()),
        )
    })?;
    Ok((wasm, bytes))
}

/// A sandbox on the configured backends (embedded ones under `data_dir`), with compiled
/// code cached in `data_dir/compiled`.
pub fn sandbox(
    data_dir: &Path,
    fuel: bool,
    backends: &BackendsConfig,
) -> Result<Sandbox, PlinthError> {
    let backends = Backends::from_config(backends, data_dir)?;
    let config = SandboxConfig {
        fuel,
        cache_dir: Some(data_dir.join("compiled")),
        ..SandboxConfig::default()
    };
    Sandbox::new(config, backends)
}

/// What `plinth run` does once its arguments are parsed.
pub struct RunRequest {
    pub component: PathBuf,
    pub call: Call,
    pub scope: Scope,
    pub grants: Grants,
    pub limits: Limits,
    pub data_dir: PathBuf,
    pub backends: BackendsConfig,
}

/// Runs one call; the JSON printed by `plinth run` and whether it succeeded.
pub async fn run(request: RunRequest) -> (Value, bool) {
    let loaded = (|| {
        let (_, bytes) = component_bytes(&request.component)?;
        let sandbox = sandbox(
            &request.data_dir,
            request.limits.fuel.is_some(),
            &request.backends,
        )?;
        let extension = sandbox.load(&bytes)?;
        Ok::<_, PlinthError>((sandbox, extension))
    })();
    let (sandbox, extension) = match loaded {
        Ok(found) => found,
        Err(error) => return (json!({ "result": { "error": error } }), false),
    };
    let invocation = Invocation {
        scope: request.scope,
        grants: request.grants,
        limits: request.limits,
    };
    let report = sandbox.call(&extension, &invocation, request.call).await;
    let ok = report.outcome.is_ok();
    let mut shown = serde_json::to_value(&report)
        .unwrap_or_else(|e| json!({"result": {"error": e.to_string()}}));
    shown["component"] = component_summary(&extension);
    (shown, ok)
}

fn component_summary(extension: &Extension) -> Value {
    json!({
        "sha256": extension.hash,
        "world": extension.world,
        "code": extension.code,
        "load_time_us": extension.load_time.as_micros() as u64,
    })
}

/// What `plinth inspect` prints: world, imports, exports and `describe()`.
pub async fn inspect(path: &Path, data_dir: &Path) -> (Value, bool) {
    let loaded = (|| {
        let (wasm, bytes) = component_bytes(path)?;
        let sandbox = sandbox(data_dir, true, &BackendsConfig::default())?;
        let extension = sandbox.load(&bytes)?;
        Ok::<_, PlinthError>((wasm, bytes.len(), sandbox, extension))
    })();
    let (wasm, size, sandbox, extension) = match loaded {
        Ok(found) => found,
        Err(error) => return (json!({ "error": error }), false),
    };
    // describe() runs like any call: fresh store and default limits. Every grant is
    // given because inspecting is not installing; the imports are listed either way.
    let invocation = Invocation {
        scope: Scope::new("inspect", "inspect").expect("valid names"),
        grants: Grants::all(),
        limits: Limits::default(),
    };
    let report = sandbox.describe(&extension, &invocation).await;
    let mut shown = component_summary(&extension);
    shown["path"] = json!(wasm);
    shown["size_bytes"] = json!(size);
    shown["imports"] = json!(extension.imports);
    shown["exports"] = json!(extension.exports);
    shown["capabilities"] = json!(extension.capabilities());
    let ok = report.outcome.is_ok();
    shown["describe"] = match report.outcome {
        Ok(descriptor) => json!(descriptor),
        Err(error) => json!({ "error": error }),
    };
    (shown, ok)
}

/// Prints a report as `plinth` does: pretty JSON on stdout.
pub fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
