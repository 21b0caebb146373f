//! The console's files, embedded in the binary at build time (`build.rs` lists every
//! file under `runtime/server/console/`): running Plinth needs no Node.js and no files
//! beside the binary. `console_dir` in the config serves the same names from a
//! directory instead, so the console can be worked on without rebuilding the server.

use std::path::Path;

/// `(path under console/, bytes)`, sorted by path.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

/// The names of the embedded files.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// The file `name` (`app.js`, `vendor/preact.mjs`) and its content type: embedded, or
/// read from `dir` when one is configured. Only names the build embedded are served,
/// from either source, so the directory cannot serve anything else.
pub fn file(
    name: &str,
    dir: Option<&Path>,
) -> Option<(&'static str, std::borrow::Cow<'static, [u8]>)> {
    let index = FILES.binary_search_by(|(n, _)| n.cmp(&name)).ok()?;
    let (name, bytes) = FILES[index];
    let bytes = match dir {
        Some(dir) => std::fs::read(dir.join(name)).ok()?.into(),
        None => bytes.into(),
    };
    Some((content_type(name)?, bytes))
}

/// Content types by extension; a file of any other kind is not served (the vendored
/// licences and checksums are in the binary for the record, not for browsers).
fn content_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_directory_is_embedded_and_served_with_its_type() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let name = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    if name != "vendor/fetch" {
                        on_disk.push(name);
                    }
                }
            }
        }
        on_disk.sort();
        assert_eq!(names().collect::<Vec<_>>(), on_disk);
        for name in [
            "index.html",
            "app.js",
            "console.css",
            "vendor/preact.mjs",
            "vendor/gridstack-all.js",
        ] {
            let (kind, bytes) = file(name, None).unwrap_or_else(|| panic!("{name} is served"));
            assert!(!bytes.is_empty());
            assert!(kind.starts_with("text/"), "{name}: {kind}");
        }
        assert!(file("vendor/SHA256SUMS", None).is_none());
        assert!(file("../Cargo.toml", None).is_none());
        assert!(file("vendor/fetch", None).is_none());
    }

    #[test]
    fn the_vendored_files_are_the_ones_their_checksums_name() {
        use sha2::Digest as _;
        let sums = file_bytes("vendor/SHA256SUMS");
        let sums = std::str::from_utf8(sums).unwrap();
        let mut checked = 0;
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").unwrap();
            let bytes = file_bytes(&format!("vendor/{name}"));
            assert_eq!(hex::encode(sha2::Sha256::digest(bytes)), sum, "{name}");
            checked += 1;
        }
        assert!(checked >= 8, "SHA256SUMS names {checked} files");
    }

    fn file_bytes(name: &str) -> &'static [u8] {
        FILES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} embedded"))
            .1
    }
}
