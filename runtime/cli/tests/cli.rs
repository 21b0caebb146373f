//! The `plinth` binary as a user runs it: exit codes, JSON on stdout, error codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn plinth(args: &[&str], data_dir: &Path) -> (Output, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plinth"));
    command.args(args).current_dir(root());
    if matches!(args.first(), Some(&"run" | &"inspect")) {
        command.arg("--data-dir").arg(data_dir);
    }
    let output = command.output().expect("plinth runs");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (output, json)
}

#[test]
fn run_renders_an_example_and_inspect_describes_it() {
    let data = tempfile::tempdir().unwrap();
    let (output, json) = plinth(
        &[
            "run",
            "extensions/hello-metric",
            "--config",
            r#"{"title":"Signups"}"#,
        ],
        data.path(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["result"]["ok"]["views"][0]["title"], "Signups");
    assert_eq!(json["receipt"]["outcome"], "OK");
    assert!(json["receipt"]["fuel_used"].as_u64().unwrap() > 0);

    let (output, json) = plinth(&["inspect", "extensions/cache-stats"], data.path());
    assert!(output.status.success());
    assert_eq!(json["world"], "extension");
    assert_eq!(json["describe"]["name"], "Cache Statistics");
    assert_eq!(
        json["capabilities"],
        serde_json::json!(["cache", "broadcast", "log"])
    );
}

#[test]
fn a_failing_call_exits_non_zero_with_its_code() {
    let data = tempfile::tempdir().unwrap();
    let (output, json) = plinth(
        &[
            "run",
            "tests/guests/hostile",
            "--config",
            r#"{"attack":"loop"}"#,
            "--limit",
            "fuel=off",
            "--limit",
            "timeout=150ms",
        ],
        data.path(),
    );
    assert!(!output.status.success());
    assert_eq!(json["result"]["error"]["code"], "EXECUTION_TIMEOUT");
    assert_eq!(json["receipt"]["outcome"], "EXECUTION_TIMEOUT");
    assert!(String::from_utf8_lossy(&output.stderr).contains("error: EXECUTION_TIMEOUT"));

    let (output, json) = plinth(
        &["run", "extensions/hello-metric", "--limit", "colour=blue"],
        data.path(),
    );
    assert!(!output.status.success());
    assert_eq!(json["result"]["error"]["code"], "INVALID_REQUEST");

    let (output, json) = plinth(
        &["run", "extensions/cache-stats", "--grants", "log"],
        data.path(),
    );
    assert!(!output.status.success());
    assert_eq!(json["result"]["error"]["code"], "CAPABILITY_DENIED");

    let junk = data.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let (output, json) = plinth(&["run", junk.to_str().unwrap()], data.path());
    assert!(!output.status.success());
    assert_eq!(json["result"]["error"]["code"], "INVALID_COMPONENT");
}

#[test]
fn tick_event_and_action_calls() {
    let data = tempfile::tempdir().unwrap();
    let (output, json) = plinth(&["run", "extensions/cache-stats", "--tick"], data.path());
    assert!(output.status.success());
    assert_eq!(json["published"][0]["topic"], "cache-stats");

    let (output, json) = plinth(
        &[
            "run",
            "extensions/cache-stats",
            "--action",
            "export",
            "--body",
            r#"{"format":"csv"}"#,
        ],
        data.path(),
    );
    assert!(output.status.success());
    assert_eq!(json["result"]["ok"]["content_type"], "text/csv");

    let (output, json) = plinth(
        &[
            "run",
            "extensions/hello-metric",
            "--event",
            r#"{"name":"order.completed","payload":{}}"#,
        ],
        data.path(),
    );
    assert!(!output.status.success());
    assert_eq!(json["result"]["error"]["code"], "GUEST_ERROR");
}

#[test]
fn new_widget_scaffolds_a_crate_that_builds_and_runs() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("visits");
    let (output, json) = plinth(
        &["new", "widget", "visits", "--dir", dir.to_str().unwrap()],
        data.path(),
    );
    assert!(output.status.success(), "{json}");
    // Build into the shared guest target dir so the SDK's dependencies compile once.
    let wasm = plinth::guest_build::build(&dir, Some(&root().join("target/guests")))
        .expect("the scaffold builds");
    let (output, json) = plinth(&["run", wasm.to_str().unwrap()], data.path());
    assert!(output.status.success(), "{json}");
    assert_eq!(json["result"]["ok"]["views"][0]["title"], "visits");
    assert_eq!(json["result"]["ok"]["views"][0]["value"], 1.0);
    assert_eq!(json["receipt"]["host_calls"]["cache"], 1);

    let (output, json) = plinth(&["new", "widget", "Bad Name"], data.path());
    assert!(!output.status.success());
    assert_eq!(json["error"]["code"], "INVALID_REQUEST");
}

/// `plinth new widget --lang js|python|c`, then `plinth build` and `plinth run` on the
/// folder, as the language pages of the docs say; and a project whose toolchain fails
/// is a clear error, not a crash.
#[test]
fn new_widget_in_each_language_builds_and_runs() {
    let data = tempfile::tempdir().unwrap();
    for language in ["js", "python", "c"] {
        let dir = data.path().join(format!("visits-{language}"));
        let dir_arg = dir.to_str().unwrap();
        let (output, json) = plinth(
            &[
                "new", "widget", "visits", "--lang", language, "--dir", dir_arg,
            ],
            data.path(),
        );
        assert!(output.status.success(), "{language}: {json}");
        let (output, json) = plinth(&["build", dir_arg], data.path());
        assert!(output.status.success(), "{language}: {json}");
        let component = json["component"].as_str().unwrap();
        assert!(
            component.ends_with(&format!("visits-{language}.wasm")),
            "{json}"
        );
        assert!(dir.join(".plinth/wit/worlds.wit").is_file(), "{language}");

        // `plinth run DIR`, as the docs show: it builds again, then renders.
        let (output, json) = plinth(
            &["run", dir_arg, "--config", r#"{"title":"Visits"}"#],
            data.path(),
        );
        assert!(output.status.success(), "{language}: {json}");
        assert_eq!(
            json["result"]["ok"]["views"][0]["title"], "Visits",
            "{language}"
        );
        assert_eq!(json["result"]["ok"]["views"][0]["value"], 1.0, "{language}");
        assert_eq!(json["receipt"]["host_calls"]["cache"], 1, "{language}");
        // The scaffold's own error for a bad config, in the contract's terms.
        let (output, json) = plinth(
            &["run", component, "--config", r#"{"title":7}"#],
            data.path(),
        );
        assert!(!output.status.success(), "{language}");
        assert_eq!(json["result"]["error"]["code"], "GUEST_ERROR", "{language}");
        assert!(
            json["result"]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid-input: config.title must be a string"),
            "{language}: {json}"
        );
    }

    // A syntax error: the toolchain's failure is INVALID_REQUEST with what failed.
    let broken = data.path().join("visits-c");
    std::fs::write(broken.join("src/widget.c"), "this is not C").unwrap();
    let (output, json) = plinth(&["build", broken.to_str().unwrap()], data.path());
    assert!(!output.status.success());
    assert_eq!(json["error"]["code"], "INVALID_REQUEST");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clang failed"),
        "{json}"
    );
    // A folder that is no project says what a project is.
    let (output, json) = plinth(&["build", data.path().to_str().unwrap()], data.path());
    assert!(!output.status.success());
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("plinth.toml"),
        "{json}"
    );
}

/// A `plinth serve` child, killed however the test ends.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET with `Connection: close`; the whole response as text.
fn http_get(host: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A log line without the terminal colour codes the log may carry.
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('\x1b') {
        plain.push_str(&rest[..at]);
        let code = &rest[at..];
        rest = code.find('m').map_or("", |end| &code[end + 1..]);
    }
    plain.push_str(rest);
    plain
}

/// `plinth serve` with a stdout nobody reads (the reading end of its pipe closed before it
/// starts, as when piped into a program that has exited) keeps serving: its start banner
/// is lost, the server is not.
#[test]
fn serve_survives_a_closed_stdout() {
    use std::io::{BufRead, BufReader};

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args([
            "serve",
            "--no-demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .current_dir(root())
        .env("PLINTH_LOG", "info")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("plinth serve starts");
    let mut logged = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stop = Stop(child);
    let mut addr = None;
    let mut seen = Vec::new();
    for line in logged.by_ref() {
        let line = without_colours(&line.unwrap());
        if line.contains("plinth serving") {
            addr = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("addr="))
                .map(str::to_owned);
        }
        let ready = line.contains(" ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|line| line.contains(" ready")),
        "the server ended before it was ready: {seen:#?}"
    );
    // The rest of its log is read away so that stderr stays open too.
    std::thread::spawn(move || logged.for_each(drop));
    let addr = addr.unwrap_or_else(|| panic!("no address logged: {seen:#?}"));
    let response = http_get(&addr, "/healthz", None);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        stop.0.try_wait().unwrap().is_none(),
        "the server exited after its banner"
    );
}

/// `plinth serve` as the README runs it: the first start prints the tokens it makes and a
/// console URL without a token, and the demo tenant's dashboard widgets render over HTTP.
/// A second start on the same data directory prints no token at all.
#[test]
fn serve_starts_with_a_demo_tenant() {
    use std::io::{BufRead, BufReader};

    /// Starts `plinth serve` on `data`; what it printed up to the console URL.
    fn start(data: &std::path::Path) -> (Stop, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("plinth serve starts");
        let stdout = child.stdout.take().unwrap();
        let stop = Stop(child);
        let mut printed = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.trim().starts_with("console: ");
            printed.push(line);
            if done {
                break;
            }
        }
        (stop, printed)
    }

    let data = tempfile::tempdir().unwrap();
    let (first, printed) = start(data.path());
    let after = |prefix: &str| {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {printed:#?}"))
    };
    let console = after("console: ");
    let operator = after("operator token: ");
    let token = after("demo tenant \"demo\", token: ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        !console.contains("token"),
        "the console URL carries a token: {console}"
    );
    let base = console.strip_suffix('/').unwrap();
    assert!(!base.contains(['#', '?']), "{console}");
    let host = base.strip_prefix("http://").unwrap();
    let get = |path: &str| http_get(host, path, Some(&token));
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Plinth console"));
    let dashboard = get("/api/v1/tenants/demo/dashboards/overview");
    for tile in ["view-gallery", "hello-metric", "cache-stats"] {
        assert!(
            dashboard.contains(&format!("\"installation\":\"{tile}\"")),
            "{dashboard}"
        );
    }
    for widget in ["hello-metric", "cache-stats", "view-gallery"] {
        let rendered = get(&format!("/api/v1/tenants/demo/installations/{widget}/data"));
        assert!(rendered.starts_with("HTTP/1.1 200"), "{widget}: {rendered}");
        assert!(
            rendered.contains("\"kind\":\"metric_card\""),
            "{widget}: {rendered}"
        );
    }
    let token_file = std::fs::read_to_string(data.path().join("demo-token")).unwrap();
    assert_eq!(token_file.trim(), token);
    let operator_file = std::fs::read_to_string(data.path().join("operator-token")).unwrap();
    assert_eq!(operator_file.trim(), operator);
    drop(first);

    // The second start keeps both tokens and prints neither.
    let (_second, printed) = start(data.path());
    for line in &printed {
        assert!(
            !line.contains("plt_"),
            "a later start printed a token: {line}"
        );
    }
    assert!(printed.iter().any(|l| l.contains("console: ")));
    assert_eq!(
        std::fs::read_to_string(data.path().join("demo-token"))
            .unwrap()
            .trim(),
        token
    );
}
