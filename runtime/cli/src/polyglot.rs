//! Builds extensions written in JavaScript, Python and C into components.
//!
//! A project is a folder with a `plinth.toml` that names its language. The build writes
//! what the toolchain needs into the project's `.plinth/` folder (the contract, the SDK
//! for the language, C bindings), all embedded in this binary so a build needs no
//! checkout of Plinth, then runs the language's own toolchain:
//!
//! - JavaScript: `componentize-js` (npm `@bytecodealliance/componentize-js`), with the
//!   `wasi:http` incoming handler switched off (`-d http -d fetch-event`);
//! - Python: `componentize-py` (PyPI), with `--stub-wasi`, so the component imports no
//!   WASI at all;
//! - C: bindings from `wit-bindgen`'s C generator, `clang --target=wasm32-wasi` against
//!   wasi-libc, then the core module is wrapped into a component with the WASI preview 1
//!   adapter, as `wasm-tools component new` does.
//!
//! Every language builds the `extension` world, as the Rust SDK does: exports a project
//! does not implement answer with an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The file that makes a folder a Plinth project of a language other than Rust.
pub const PROJECT_FILE: &str = "plinth.toml";

/// The world every SDK builds.
pub const WORLD: &str = "extension";

/// Where a build puts the files it generates, inside the project.
pub const GENERATED_DIR: &str = ".plinth";

/// Toolchain versions the SDKs are tested with (docs/languages.md).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
/// Debian's packages for C; the runtime package is named after clang's major version
/// (14 on Debian 12), which `guest-sdk/install-toolchains` works out.
pub const C_PACKAGES: &str = "clang lld wasi-libc libclang-rt-<clang major>-dev-wasm32";

/// A language an extension can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Js,
    Python,
    C,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    language: Language,
    /// The module the toolchain starts from: `src/index.js`, `app.py`; for C, the
    /// folder whose `.c` files are compiled (`src`).
    entry: Option<String>,
}

macro_rules! contract {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../wit/v0.1.0/", $file)))),*]
    };
}

/// The WIT contract this binary speaks, file by file.
pub const CONTRACT: &[(&str, &str)] = contract!(
    "broadcast.wit",
    "cache.wit",
    "db.wit",
    "handler.wit",
    "log.wit",
    "manifest.wit",
    "types.wit",
    "view.wit",
    "widget.wit",
    "worlds.wit",
);

/// The Python SDK, one module (`import plinth`).
pub const PYTHON_SDK: &str = include_str!("../../../guest-sdk/python/plinth/__init__.py");
/// The JavaScript SDK and its type declarations.
pub const JS_SDK: &str = include_str!("../../../guest-sdk/js/plinth.js");
pub const JS_SDK_TYPES: &str = include_str!("../../../guest-sdk/js/plinth.d.ts");
/// The C helpers over the generated bindings.
pub const C_SDK: &str = include_str!("../../../guest-sdk/c/plinth.h");

/// Builds the project at `dir` and returns its component's path:
/// `<target_dir>/<folder name>.wasm`, `target_dir` defaulting to `<dir>/target`.
pub fn build(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no project at {}", dir.display()))?;
    let text = std::fs::read_to_string(dir.join(PROJECT_FILE))
        .with_context(|| format!("reading {}", dir.join(PROJECT_FILE).display()))?;
    let project: ProjectFile =
        toml::from_str(&text).with_context(|| format!("{} in {}", PROJECT_FILE, dir.display()))?;
    let generated = dir.join(GENERATED_DIR);
    let wit = generated.join("wit");
    write_files(&wit, CONTRACT.iter().copied())?;
    // Absolute, because the toolchains run in the project's folder.
    let out_dir = match target_dir {
        None => dir.join("target"),
        Some(target) if target.is_relative() => std::env::current_dir()
            .context("the current directory")?
            .join(target),
        Some(target) => target.to_owned(),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project folder has no name")?;
    let out = out_dir.join(format!("{name}.wasm"));
    let entry = project.entry.as_deref();
    match project.language {
        Language::Js => build_js(&dir, &generated, entry.unwrap_or("src/index.js"), &out)?,
        Language::Python => build_python(&dir, &generated, entry.unwrap_or("app.py"), &out)?,
        Language::C => build_c(&dir, &generated, entry.unwrap_or("src"), &out)?,
        Language::Rust => bail!(
            "{PROJECT_FILE} says rust, but a Rust extension is a crate: it needs a Cargo.toml"
        ),
    }
    Ok(out)
}

fn write_files<'a, T: AsRef<[u8]> + 'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, T)>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, contents) in files {
        let path = dir.join(name);
        let contents = contents.as_ref();
        // Unchanged files are left alone so editors and watchers see no churn.
        if std::fs::read(&path).ok().as_deref() != Some(contents) {
            std::fs::write(&path, contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs a toolchain command; a missing tool says how to install it.
fn run(mut command: Command, tool: &str, install: &str) -> anyhow::Result<()> {
    // What the tool says goes to stderr: stdout is the JSON `plinth` prints.
    command.stdout(std::io::stderr());
    let status = match command.status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{tool} is not installed: {install} (see docs/languages.md)")
        }
        Err(e) => return Err(e).with_context(|| format!("running {tool}")),
    };
    if !status.success() {
        bail!("{tool} failed ({status}); its output is above");
    }
    Ok(())
}

fn build_js(dir: &Path, generated: &Path, entry: &str, out: &Path) -> anyhow::Result<()> {
    write_files(
        generated,
        [("plinth.js", JS_SDK), ("plinth.d.ts", JS_SDK_TYPES)],
    )?;
    // The project's own copy first (a devDependency), then one on the PATH.
    let local = dir.join("node_modules/.bin/componentize-js");
    let tool = if local.is_file() {
        local.into_os_string()
    } else {
        "componentize-js".into()
    };
    let mut command = Command::new(tool);
    command
        .current_dir(dir)
        .arg(entry)
        .arg("--wit")
        .arg(generated.join("wit"))
        .args(["--world-name", WORLD, "-o"])
        .arg(out)
        // Without these the component imports and exports wasi:http, which Plinth never
        // provides; stdio, clocks and random stay (Plinth links them locked down).
        .args(["-d", "http", "-d", "fetch-event"]);
    run(
        command,
        "componentize-js",
        &format!("`npm install -g {COMPONENTIZE_JS}`"),
    )
}

fn build_python(dir: &Path, generated: &Path, entry: &str, out: &Path) -> anyhow::Result<()> {
    write_files(
        &generated.join("python/plinth"),
        [("__init__.py", PYTHON_SDK)],
    )?;
    let entry = dir.join(entry);
    let module = entry
        .file_stem()
        .and_then(|m| m.to_str())
        .with_context(|| format!("{} is not a Python module", entry.display()))?;
    let module_dir = entry.parent().unwrap_or(dir);
    let mut command = Command::new("componentize-py");
    command
        .current_dir(dir)
        .arg("-d")
        .arg(generated.join("wit"))
        .args(["-w", WORLD, "componentize", module, "-p"])
        .arg(module_dir)
        .arg("-p")
        .arg(generated.join("python"))
        // The stubs make the component import no WASI at all: a Python extension
        // reaches the outside only through Plinth's capabilities.
        .args(["--stub-wasi", "-o"])
        .arg(out);
    run(
        command,
        "componentize-py",
        &format!("`pip install {COMPONENTIZE_PY}`"),
    )
}

fn build_c(dir: &Path, generated: &Path, sources: &str, out: &Path) -> anyhow::Result<()> {
    let bindings = generated.join("c");
    write_c_bindings(&generated.join("wit"), &bindings)?;
    write_files(&bindings, [("plinth.h", C_SDK)])?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sources))
        .with_context(|| format!("reading {}", dir.join(sources).display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "c"))
        .collect();
    if files.is_empty() {
        bail!("{} has no .c files", dir.join(sources).display());
    }
    files.sort();
    files.push(bindings.join(format!("{WORLD}.c")));
    files.push(bindings.join(format!("{WORLD}_component_type.o")));
    let core = out.with_extension("core.wasm");
    let mut command = Command::new(std::env::var_os("CLANG").unwrap_or_else(|| "clang".into()));
    command
        .current_dir(dir)
        .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2"])
        .arg(format!("--sysroot={}", wasi_sysroot().display()))
        .arg("-I")
        .arg(&bindings)
        .args(&files)
        .arg("-o")
        .arg(&core);
    run(command, "clang", &format!("`apt-get install {C_PACKAGES}`"))?;
    let module = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .context("the C module carries no component type (were the bindings linked?)")?
        .validate(true)
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("the WASI preview 1 adapter")?
        .encode()
        .context("wrapping the C module into a component")?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}

/// The wasi-libc sysroot: `WASI_SYSROOT`, else Debian's (`wasi-libc` installs under
/// /usr), else the wasi-sdk default.
fn wasi_sysroot() -> PathBuf {
    if let Some(root) = std::env::var_os("WASI_SYSROOT") {
        return root.into();
    }
    if Path::new("/usr/lib/wasm32-wasi/libc.a").is_file() {
        return "/usr".into();
    }
    "/opt/wasi-sdk/share/wasi-sysroot".into()
}

/// Writes `extension.h`, `extension.c` and `extension_component_type.o` for the world.
pub fn write_c_bindings(wit: &Path, out: &Path) -> anyhow::Result<()> {
    use wit_bindgen_core::wit_parser::Resolve;
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("parsing the contract in {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    write_files(out, files.iter())
}
