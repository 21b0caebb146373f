//! The compile cache: reuse across sandboxes, and never trusting an artifact it did
//! not write.

use plinth_host::{Backends, CodeSource, Sandbox, SandboxConfig};
use plinth_tests::guest;

fn sandbox_on(dir: &std::path::Path) -> Sandbox {
    let backends = Backends::embedded(dir).unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.join("compiled")),
        pool_instances: 4,
        ..SandboxConfig::default()
    };
    Sandbox::new(config, backends).unwrap()
}

fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

#[test]
fn compiled_code_is_reused_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest("extensions/hello-metric");
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Compiled
    );
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Cached
    );

    let [artifact] = artifacts(dir.path()).try_into().unwrap();
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Compiled,
        "a tampered artifact is recompiled"
    );
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Cached,
        "and the fresh one is trusted"
    );

    // An artifact planted by someone else (not tagged with this cache's key) is ignored.
    let other = tempfile::tempdir().unwrap();
    sandbox_on(other.path()).load(&hello).unwrap();
    let [foreign] = artifacts(other.path()).try_into().unwrap();
    std::fs::copy(&foreign, &artifact).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Compiled
    );
}
