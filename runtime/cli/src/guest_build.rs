//! Builds a Rust extension for `wasm32-wasip2`, so `plinth run DIR` works on sources.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The cargo profile guests build with (defined in the workspace and in scaffolds).
pub const GUEST_PROFILE: &str = "guest";

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the extension at `dir` and returns the path of its component: a Rust crate
/// (a `Cargo.toml`) with cargo, or a JavaScript, Python or C project (a `plinth.toml`)
/// with its language's toolchain (see `polyglot`).
pub fn build(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if dir.join("Cargo.toml").is_file() {
        build_rust(dir, target_dir)
    } else if dir.join(crate::polyglot::PROJECT_FILE).is_file() {
        crate::polyglot::build(dir, target_dir)
    } else {
        bail!(
            "{} is neither a Rust crate (Cargo.toml) nor a Plinth project ({}); \
             `plinth new widget NAME --lang rust|js|python|c` creates one",
            dir.display(),
            crate::polyglot::PROJECT_FILE
        )
    }
}

/// Builds the crate at `dir` (a folder with a `Cargo.toml`). Guests build into
/// `target_dir`, or `<workspace>/target/guests` by default, away from the host's target
/// directory so a build can run while `cargo` holds that.
fn build_rust(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .with_context(|| format!("{} has no Cargo.toml", dir.display()))?;
    let target_dir = match target_dir {
        Some(dir) => dir.to_owned(),
        None => workspace_root(&manifest)?.join("target").join("guests"),
    };
    let output = cargo()
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            GUEST_PROFILE,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !output.status.success() {
        bail!(
            "cargo build of {} failed (is the target installed? `rustup target add wasm32-wasip2`)",
            dir.display()
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .with_context(|| {
            format!(
                "cargo built {} but produced no .wasm (is it a cdylib?)",
                dir.display()
            )
        })
}

fn workspace_root(manifest: &Path) -> anyhow::Result<PathBuf> {
    let output = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed for {}", manifest.display());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    metadata["workspace_root"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no workspace_root")
}
