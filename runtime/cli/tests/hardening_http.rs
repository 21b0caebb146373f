//! `plinth serve` as a process against hostile clients: its memory measured from
//! `/proc/<pid>/status`, its files from the data directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `plinth serve` child, killed however the test ends.
struct Serve {
    child: Child,
    host: String,
    operator: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `plinth serve` on a free port; returns once it has printed `last_line`
    /// (the operator token line, or the console URL once the demo is set up).
    fn start(data: &Path, demo: bool, last_line: &str) -> Serve {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut command = Command::new(env!("CARGO_BIN_EXE_plinth"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .current_dir(root)
            .stdout(Stdio::piped());
        if !demo {
            command.arg("--no-demo");
        }
        let mut child = command.spawn().expect("plinth serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut serve = Serve {
            child,
            host: String::new(),
            operator: String::new(),
        };
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("Plinth is serving on http://") {
                serve.host = url.trim().to_owned();
            }
            if let Some(token) = line.trim().strip_prefix("operator token: ") {
                serve.operator = token.to_owned();
            }
            if line.trim().starts_with(last_line) {
                break;
            }
        }
        assert!(!serve.host.is_empty() && !serve.operator.is_empty());
        serve
    }

    /// One request with `Connection: close`; the whole response as text.
    fn request(&self, method: &str, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(&self.host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.operator,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// A field of `/proc/<pid>/status`, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }
}

/// Twenty anonymous clients each announce and send a 32 MiB component (all but its last
/// byte, then the last byte once every client has sent the rest, so a server that buffers
/// bodies before checking the token would hold all twenty at once). The server's peak
/// resident memory (`VmHWM`, so no moment is missed) stays within 64 MiB of where it
/// was: it refuses each from the headers and reads none of the bodies.
#[test]
fn anonymous_uploads_do_not_grow_server_memory() {
    const CLIENTS: usize = 20;
    const BODY: usize = 32 << 20;
    let data = tempfile::tempdir().unwrap();
    let serve = Serve::start(data.path(), false, "(kept in");
    let created = serve.request("POST", "/api/v1/tenants", r#"{"id":"acme"}"#);
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let before = serve.status_kib("VmRSS");

    let all_but_last = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let host = serve.host.clone();
            let all_but_last = all_but_last.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&host).unwrap();
                // Upper bounds only: a server that reads nothing must not hang the test.
                stream
                    .set_write_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let head = format!(
                    "POST /api/v1/tenants/acme/components HTTP/1.1\r\nHost: {host}\r\n\
                     Content-Length: {BODY}\r\n\r\n"
                );
                let mut writing = stream.write_all(head.as_bytes()).is_ok();
                let chunk = vec![0u8; 64 << 10];
                let mut sent = 0;
                while writing && sent + chunk.len() < BODY {
                    writing = stream.write_all(&chunk).is_ok();
                    sent += chunk.len();
                }
                if writing {
                    writing = stream.write_all(&chunk[..BODY - 1 - sent]).is_ok();
                }
                all_but_last.wait();
                if writing {
                    let _ = stream.write_all(&[0]);
                }
                let mut response = Vec::new();
                let _ = stream.read_to_end(&mut response);
                String::from_utf8_lossy(&response).into_owned()
            })
        })
        .collect();
    for client in clients {
        let response = client.join().unwrap();
        // A reset may cut the answer of a client still sending; any answer is the 401.
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 401"),
            "{response}"
        );
    }
    let peak = serve.status_kib("VmHWM");
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "resident memory peaked {grown_mib} MiB above the {} MiB before",
        before / 1024
    );
    // The server still serves.
    let health = serve.request("GET", "/healthz", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// Every file `plinth serve` creates under its data directory (metadata, tenants'
/// databases, components, compiled code, tokens) is 0600 and every directory 0700.
#[cfg(unix)]
#[test]
fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let _serve = Serve::start(&dir, true, "console: ");
    let mut pending = vec![dir.clone()];
    let mut files = 0;
    while let Some(at) = pending.pop() {
        let mode = std::fs::metadata(&at).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}: {mode:o}", at.display());
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{}: {mode:o}", path.display());
                files += 1;
            }
        }
    }
    // Metadata, the demo tenant's database, compiled code, the two tokens at least.
    assert!(files >= 5, "only {files} files under {}", dir.display());
}
