//! The compile cache: reuse across sandboxes, and never trusting an artifact it did
//! not write.

use plinth_host::{Backends, CodeSource, Metering, Sandbox, SandboxConfig};
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

    // An artifact replaced by another file (rename over it) with other bytes: recompiled.
    let replacement = dir.path().join("compiled/replacement");
    let mut bytes = std::fs::read(&artifact).unwrap();
    bytes[middle] ^= 0xff;
    std::fs::write(&replacement, &bytes).unwrap();
    std::fs::rename(&replacement, &artifact).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Compiled,
        "a replaced artifact is recompiled"
    );

    // The same bytes in another file (a restore, a copy to another volume) or the same
    // file with its metadata changed (a chown, a chmod): its bytes are checked, it is
    // used, and it is tagged again, so the next load checks only the file.
    let tag = |artifact: &std::path::Path| artifact.with_extension("cwasm.tag");
    let before = std::fs::read(tag(&artifact)).unwrap();
    std::fs::copy(&artifact, &replacement).unwrap();
    std::fs::rename(&replacement, &artifact).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Cached,
        "a restored artifact is used"
    );
    let restored = std::fs::read(tag(&artifact)).unwrap();
    assert_ne!(
        before[..32],
        restored[..32],
        "tagged again for its new file"
    );
    assert_eq!(before[32..], restored[32..], "the same bytes");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Cached,
        "a chmod-ed artifact is used"
    );
    assert_ne!(
        restored[..32],
        std::fs::read(tag(&artifact)).unwrap()[..32],
        "tagged again after the chmod"
    );

    // An artifact planted by someone else (not tagged with this cache's key) is ignored,
    // with its own tag beside it too.
    let other = tempfile::tempdir().unwrap();
    sandbox_on(other.path()).load(&hello).unwrap();
    let [foreign] = artifacts(other.path()).try_into().unwrap();
    std::fs::copy(&foreign, &artifact).unwrap();
    std::fs::copy(tag(&foreign), tag(&artifact)).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Compiled
    );

    // Without its tag an artifact is not trusted either.
    std::fs::remove_file(tag(&artifact)).unwrap();
    assert_eq!(
        sandbox_on(dir.path()).load(&hello).unwrap().code,
        CodeSource::Compiled
    );
}

#[tokio::test]
async fn a_stored_version_loads_by_hash_from_the_cache_alone() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest("extensions/hello-metric");
    let hash = plinth_host::component_hash(&hello);
    assert!(
        sandbox_on(dir.path())
            .load_cached(&hash, Metering::Fuel)
            .unwrap()
            .is_none(),
        "nothing cached yet: the caller must read the bytes"
    );
    sandbox_on(dir.path()).load(&hello).unwrap();

    // A restarted node: the version loads from its hash, without the component's bytes,
    // and it runs.
    let restarted = sandbox_on(dir.path());
    let extension = restarted
        .load_cached(&hash, Metering::Fuel)
        .unwrap()
        .expect("cached");
    assert_eq!(extension.code, CodeSource::Cached);
    assert_eq!(extension.hash, hash);
    let invocation = plinth_host::Invocation {
        scope: plinth_host::Scope::new("acme", "hello").unwrap(),
        grants: plinth_host::Grants::none(),
        limits: plinth_host::Limits::default(),
    };
    let report = restarted
        .render(
            &extension,
            &invocation,
            serde_json::json!({"title": "Restarted"}),
            Vec::new(),
        )
        .await;
    let rendered = report.outcome.unwrap();
    assert!(
        serde_json::to_string(&rendered)
            .unwrap()
            .contains("Restarted"),
        "the cached code renders"
    );

    // The code compiled for calls that count no fuel is kept beside it and found again.
    assert!(
        restarted
            .load_cached(&hash, Metering::Off)
            .unwrap()
            .is_none()
    );
    restarted.load_for(&hello, Metering::Off).unwrap();
    let again = sandbox_on(dir.path())
        .load_cached(&hash, Metering::Off)
        .unwrap()
        .expect("cached without fuel");
    assert_eq!(
        (again.code, again.metering),
        (CodeSource::Cached, Metering::Off)
    );
    assert!(
        std::sync::Arc::ptr_eq(
            &extension,
            &restarted
                .load_cached(&hash, Metering::Fuel)
                .unwrap()
                .unwrap()
        ),
        "loaded once"
    );
}
