//! Compiled code cached on disk, keyed by the component's hash and the engine's
//! fingerprint. Only artifacts this cache wrote are ever deserialized: every artifact
//! carries an HMAC under a key kept beside the artifacts, and one that fails the check
//! (corrupt, truncated, or not written by Plinth) is recompiled instead.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::{ErrorCode, PlinthError};

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "artifact.key";
const TAG_BYTES: usize = 32;

/// How a component's code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodeSource {
    /// Compiled now (and written to the cache if there is one).
    Compiled,
    /// Loaded from the on-disk cache.
    Cached,
}

/// The on-disk cache. All file access goes through a capability handle on the cache
/// directory, so artifact names can never reach outside it.
pub struct CompileCache {
    dir: Dir,
    key: [u8; 32],
}

impl CompileCache {
    /// Opens (creating) the cache directory and its artifact key.
    pub fn open(path: &Path) -> Result<Self, PlinthError> {
        let io = |e: std::io::Error| {
            PlinthError::new(
                ErrorCode::Internal,
                format!("compile cache {}: {e}", path.display()),
            )
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(io)?;
        let key = read_or_create_key(&dir).map_err(io)?;
        Ok(CompileCache { dir, key })
    }

    /// The MAC covers the artifact's name too: a valid artifact copied under another
    /// component's name does not verify.
    fn mac(&self, name: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }

    /// The component's code: from the cache when a valid artifact is there, otherwise
    /// compiled and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(Component, CodeSource), PlinthError> {
        let name = format!("{hash}-{}.cwasm", engine_fingerprint(engine));
        if let Ok(stored) = self.dir.read(&name)
            && stored.len() > TAG_BYTES
        {
            let (artifact, tag) = stored.split_at(stored.len() - TAG_BYTES);
            if self.mac(&name, artifact).verify_slice(tag).is_ok() {
                // SAFETY: the artifact was produced by `Component::serialize` of this
                // cache (its HMAC matches under our key) for an engine with the same
                // fingerprint; wasmtime checks the engine compatibility again.
                if let Ok(component) = unsafe { Component::deserialize(engine, artifact) } {
                    return Ok((component, CodeSource::Cached));
                }
            }
            tracing::warn!(artifact = %name, "discarding a compiled artifact that failed its check");
        }
        let component = compile(engine, bytes)?;
        if let Err(e) = self.store(&name, &component) {
            // A full disk must not stop the call: the code is compiled, only not cached.
            tracing::warn!(artifact = %name, error = %e, "could not store compiled code");
        }
        Ok((component, CodeSource::Compiled))
    }

    fn store(&self, name: &str, component: &Component) -> wasmtime::Result<()> {
        let mut artifact = component.serialize()?;
        let tag = self.mac(name, &artifact).finalize().into_bytes();
        artifact.extend_from_slice(&tag);
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let temporary = format!(
            "{name}.{}.{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        );
        self.dir.write(&temporary, &artifact)?;
        // Rename is atomic: a reader sees the whole artifact or none.
        self.dir.rename(&temporary, &self.dir, name)?;
        Ok(())
    }
}

/// The cache's key: read if present, created once (readable by this user only)
/// otherwise. A key that exists but cannot be read is an error, never replaced silently.
fn read_or_create_key(dir: &Dir) -> std::io::Result<[u8; 32]> {
    let read = |dir: &Dir| -> std::io::Result<[u8; 32]> {
        let bytes = dir.read(KEY_FILE)?;
        bytes.try_into().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{KEY_FILE} is not 32 bytes"),
            )
        })
    };
    match read(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        found => return found,
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(std::io::Error::other)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    cap_std::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match dir.open_with(KEY_FILE, &options) {
        Ok(mut file) => {
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => read(dir),
        Err(error) => Err(error),
    }
}

/// Compiles a component, mapping failures to `INVALID_COMPONENT`.
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, PlinthError> {
    Component::new(engine, bytes).map_err(|e| {
        PlinthError::new(
            ErrorCode::InvalidComponent,
            format!("the component does not validate: {e:#}"),
        )
    })
}

/// The SHA-256 of a component's bytes, hex.
pub fn component_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Changes whenever compiled code from one engine would not load in another.
fn engine_fingerprint(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}
