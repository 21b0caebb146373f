//! Compiled code cached on disk, keyed by the component's hash and the engine's
//! fingerprint. Only artifacts this cache wrote are ever deserialized: beside every
//! artifact lies a tag of two HMACs under a key kept beside the artifacts, both over the
//! artifact's name, one over the identity of the file as written (device, inode, size,
//! modification and change times), one over its bytes.
//!
//! A load checks the identity and maps the file (`Component::deserialize_file`): the
//! artifact is not read, its code and memory images are paged in as they are used.
//! Hashing a 40 MB artifact would take longer than the whole load (docs/BENCHMARKS.md).
//! A file whose identity changed since it was tagged (a `chown`, a restore, a copy to
//! another volume, or tampering) is read and its bytes checked once, then loaded from
//! what was checked and tagged again; one whose bytes do not match either is
//! recompiled. What the identity check gives up is said in docs/security.md.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
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

/// Bytes of one HMAC-SHA256; a tag holds two.
const MAC_BYTES: usize = 32;

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
    /// Opens (creating, readable by this user only) the cache directory and its
    /// artifact key.
    pub fn open(path: &Path) -> Result<Self, PlinthError> {
        let io = |e: std::io::Error| {
            PlinthError::new(
                ErrorCode::Internal,
                format!("compile cache {}: {e}", path.display()),
            )
        };
        if !path.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io)?;
        }
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(io)?;
        let key = read_or_create_key(&dir).map_err(io)?;
        Ok(CompileCache { dir, key })
    }

    /// The artifact's name: the component's hash and the engine's fingerprint.
    fn artifact_name(engine: &Engine, hash: &str) -> String {
        format!("{hash}-{}.cwasm", engine_fingerprint(engine))
    }

    /// The MAC of the artifact file `name` whose metadata is `file`. The name is in
    /// both MACs: a valid artifact moved under another component's name does not verify.
    fn identity_mac(&self, name: &str, file: &std::fs::Metadata) -> HmacSha256 {
        use std::os::unix::fs::MetadataExt;
        let mut mac = self.mac(b"plinth-artifact-identity-2", name);
        for field in [
            file.dev(),
            file.ino(),
            file.size(),
            file.mtime() as u64,
            file.mtime_nsec() as u64,
            file.ctime() as u64,
            file.ctime_nsec() as u64,
        ] {
            mac.update(&field.to_le_bytes());
        }
        mac
    }

    /// The MAC of the artifact `name`'s bytes.
    fn content_mac(&self, name: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = self.mac(b"plinth-artifact-content-2", name);
        mac.update(artifact);
        mac
    }

    fn mac(&self, purpose: &[u8], name: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(purpose);
        mac.update(&[0]);
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac
    }

    /// The component's cached code, when a valid artifact is there (`None`, silently,
    /// when there is none). Nothing is read but
    /// the tag and the file's metadata when the file is the one tagged; it is mapped.
    pub fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let name = Self::artifact_name(engine, hash);
        let file = self.dir.open(&name).ok()?.into_std();
        let discard = |why: &str| {
            tracing::warn!(artifact = %name, why, "discarding a compiled artifact that failed its check");
            None
        };
        let (Ok(metadata), Ok(tag)) = (file.metadata(), self.dir.read(format!("{name}.tag")))
        else {
            return discard("no tag");
        };
        if tag.len() != 2 * MAC_BYTES {
            return discard("a tag of another format");
        }
        let (identity, content) = tag.split_at(MAC_BYTES);
        let loaded = if self
            .identity_mac(&name, &metadata)
            .verify_slice(identity)
            .is_ok()
        {
            // SAFETY: the file is the one this cache wrote from `Component::serialize`
            // for an engine with the same fingerprint (its identity's MAC matches under
            // our key), unchanged since; wasmtime checks the engine compatibility again.
            // It is mapped through the descriptor just checked, so a file swapped in
            // under the name since is not the one mapped. Artifacts are only ever
            // replaced by rename, never written in place, so the mapping stays what was
            // checked.
            unsafe { deserialize_open(engine, &file) }
        } else {
            // Another file, or this one with its metadata changed: its bytes decide.
            let mut bytes = Vec::with_capacity(metadata.len() as usize);
            if std::io::Read::read_to_end(&mut &file, &mut bytes).is_err()
                || self
                    .content_mac(&name, &bytes)
                    .verify_slice(content)
                    .is_err()
            {
                return discard("neither the file nor its bytes are the ones tagged");
            }
            if let Err(error) = self.write_tag(&name, &metadata, content) {
                tracing::warn!(artifact = %name, %error, "could not tag a checked artifact again");
            }
            // SAFETY: the bytes are the ones this cache serialized (their MAC matches
            // under our key), for an engine with the same fingerprint; they are loaded
            // from the copy that was checked.
            unsafe { Component::deserialize(engine, &bytes) }
        };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(artifact = %name, %error, "a cached artifact did not load");
                None
            }
        }
    }

    /// The component's code: from the cache when a valid artifact is there, otherwise
    /// compiled and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(Component, CodeSource), PlinthError> {
        if let Some(component) = self.load(engine, hash) {
            return Ok((component, CodeSource::Cached));
        }
        let component = compile(engine, bytes)?;
        let name = Self::artifact_name(engine, hash);
        if let Err(e) = self.store(&name, &component) {
            // A full disk must not stop the call: the code is compiled, only not cached.
            tracing::warn!(artifact = %name, error = %e, "could not store compiled code");
        }
        Ok((component, CodeSource::Compiled))
    }

    /// Writes the artifact under a temporary name, renames it into place, then tags the
    /// file it wrote (its metadata read through the descriptor it wrote with, after the
    /// rename, which changes the change time).
    fn store(&self, name: &str, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let content = self.content_mac(name, &artifact).finalize().into_bytes();
        let written = temporary(name);
        let stored = (|| -> std::io::Result<()> {
            let mut file = self.dir.open_with(&written, &private_new_file())?;
            file.write_all(&artifact)?;
            file.sync_data()?;
            // Rename is atomic: a reader sees the whole artifact or none.
            self.dir.rename(&written, &self.dir, name)?;
            self.write_tag(name, &file.into_std().metadata()?, &content)
        })();
        if stored.is_err() {
            // A full disk must not keep a partial artifact either.
            let _ = self.dir.remove_file(&written);
        }
        Ok(stored?)
    }

    /// Tags the artifact `name` whose file has `metadata` and whose bytes' MAC is
    /// `content`.
    fn write_tag(
        &self,
        name: &str,
        metadata: &std::fs::Metadata,
        content: &[u8],
    ) -> std::io::Result<()> {
        let identity = self.identity_mac(name, metadata).finalize().into_bytes();
        let tag_name = format!("{name}.tag");
        let written = temporary(&tag_name);
        let stored = (|| -> std::io::Result<()> {
            let mut file = self.dir.open_with(&written, &private_new_file())?;
            file.write_all(&identity)?;
            file.write_all(content)?;
            self.dir.rename(&written, &self.dir, &tag_name)
        })();
        if stored.is_err() {
            let _ = self.dir.remove_file(&written);
        }
        stored
    }
}

/// A temporary name beside `name`, unique to this process and write.
fn temporary(name: &str) -> String {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for a file that must not exist yet, readable by this user only.
fn private_new_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    cap_std::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Maps an artifact from an open file. wasmtime maps files by path; on Linux the
/// descriptor's own path under `/proc/self/fd` names exactly the file already opened
/// and checked. Elsewhere (or without `/proc`) the file is read from the descriptor.
///
/// # Safety
/// As `Component::deserialize`: the file must hold an artifact of `Component::serialize`
/// for a compatible engine, and must not be modified while the component lives.
unsafe fn deserialize_open(engine: &Engine, file: &std::fs::File) -> wasmtime::Result<Component> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let by_descriptor = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if by_descriptor.exists() {
            // SAFETY: the caller's contract; the path is the descriptor's own file.
            return unsafe { Component::deserialize_file(engine, &by_descriptor) };
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &*file, &mut bytes)?;
    // SAFETY: the caller's contract.
    unsafe { Component::deserialize(engine, &bytes) }
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
