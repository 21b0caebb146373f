//! Builds a Rust extension for `wasm32-wasip2`, so `plinth run DIR` works on sources.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The cargo profile guests build with (defined in the workspace and in scaffolds).
pub const GUEST_PROFILE: &str = "guest";

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the crate at `dir` (a folder with a `Cargo.toml`) and returns the path of its
/// component. Guests build into `target_dir`, or `<workspace>/target/guests` by default,
/// away from the host's target directory so a build can run while `cargo` holds that.
pub fn build(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
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
