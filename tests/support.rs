//! Shared test support: guests built once per test run, sandboxes on embedded backends
//! in a temporary directory, and components assembled from WAT for the cases a Rust
//! guest cannot express.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use plinth_host::{Backends, Grants, Invocation, Limits, Sandbox, SandboxConfig, Scope};
use tempfile::TempDir;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// Where test builds of guests go: away from the target dir `cargo test` holds.
pub fn guest_target_dir() -> PathBuf {
    workspace_root().join("target").join("guests")
}

/// The component built from the crate at `relative` (e.g. `extensions/hello-metric`),
/// built once per test binary.
pub fn guest(relative: &str) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    let path = match built.get(relative) {
        Some(path) => path.clone(),
        None => {
            let path = plinth::guest_build::build(
                &workspace_root().join(relative),
                Some(&guest_target_dir()),
            )
            .unwrap_or_else(|e| panic!("building {relative}: {e:#}"));
            built.insert(relative.to_owned(), path.clone());
            path
        }
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A sandbox on embedded backends in its own temporary directory.
pub struct TestSandbox {
    pub sandbox: Sandbox,
    pub dir: TempDir,
}

pub fn sandbox() -> TestSandbox {
    sandbox_with(SandboxConfig::default())
}

pub fn sandbox_with(config: SandboxConfig) -> TestSandbox {
    let dir = tempfile::tempdir().expect("temp dir");
    let backends = Backends::embedded(dir.path()).expect("embedded backends");
    let config = SandboxConfig {
        pool_instances: 16,
        cache_dir: config
            .cache_dir
            .or_else(|| Some(dir.path().join("compiled"))),
        ..config
    };
    TestSandbox {
        sandbox: Sandbox::new(config, backends).expect("sandbox"),
        dir,
    }
}

pub fn invocation(tenant: &str, grants: Grants, limits: Limits) -> Invocation {
    Invocation {
        scope: Scope::new(tenant, "test").expect("valid scope"),
        grants,
        limits,
    }
}

/// A component for the `widget` world whose core module is Plinth's dummy module
/// (every export traps) edited by `edit` on its WAT text: the way to build components
/// with start functions, odd memories or tables.
pub fn widget_from_wat(edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(workspace_root().join("wit/v0.1.0"))
        .expect("the contract parses");
    let world = resolve
        .select_world(&[package], Some("widget"))
        .expect("widget world");
    let dummy =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    let text = wasmprinter::print_bytes(&dummy).expect("print dummy module");
    let edited = edit(text);
    let mut module =
        wat::parse_str(&edited).unwrap_or_else(|e| panic!("edited WAT: {e}\n{edited}"));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed metadata");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode component")
}

/// Inserts `items` (functions, tables, a start) at the end of the module's text.
pub fn append_to_module(text: String, items: &str) -> String {
    let end = text.rfind(')').expect("module text ends with )");
    format!("{}{items}\n)", &text[..end])
}

/// Two tenant names no other run uses, so runs against a shared Redis or PostgreSQL
/// never collide.
pub fn unique_tenants() -> (String, String) {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (format!("a-{nanos}-{n}"), format!("b-{nanos}-{n}"))
}

/// Runs the ignored test `name` (its full path in this binary, e.g.
/// `sql_hardening::wide_row_alone`) alone in a child process, so that what it measures
/// of the process (resident memory) is its own and not that of tests running beside it.
pub fn run_alone(name: &str) {
    // /proc/self/exe, not the path: it runs even if a rebuild has replaced the file.
    let output = std::process::Command::new("/proc/self/exe")
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("running the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} alone failed:\n{stdout}\n{stderr}"
    );
    eprint!("{stderr}");
}

/// A WebSocket upgrade request to `url` with `token` in its `Authorization` header (the
/// server refuses a token in the URL).
pub fn socket_request(
    url: &str,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request().expect("a ws:// URL");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    );
    request
}
