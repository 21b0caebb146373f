//! The console in a real browser: Debian's chromium driven by playwright-core
//! (`tests/browser/console.mjs`) against a server with the demo tenant. Sign-in, every
//! view kind drawn, live updates from a tick and from a posted event, the upload →
//! grant → configure → install flow with the server's validation message at its field,
//! a viewer without management controls (and the API refusing them anyway), hostile
//! widget text shown as text, no console errors, axe-core clean; screenshots go to
//! `docs/screenshots/`. The tools come from `tests/install-tools`; without them this
//! test fails, it never skips.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use plinth_tests::{guest, workspace_root};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::server::TestServer;

/// The example extensions the demo tenant gets (as `plinth serve` installs them).
const DEMO: &[&str] = &[
    "extensions/hello-metric",
    "extensions/cache-stats",
    "extensions/sales-metrics",
    "extensions/entity-feed",
    "extensions/perf-monitor",
    "extensions/view-gallery",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_browser() {
    let root = workspace_root();
    let node_modules = root.join(".test-tools/node/node_modules");
    for needed in [
        Path::new("/usr/bin/chromium").to_owned(),
        node_modules.join("playwright-core"),
        node_modules.join("axe-core"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: run tests/install-tools (the README's test command does)",
            needed.display()
        );
    }

    let mut server = TestServer::start(|_| {}).await;
    let addr = server.server().addr;
    let app = server.server().app.clone();
    let components = DEMO.iter().map(|d| guest(d)).collect();
    let demo = plinth_server::install_demo(&app, components)
        .await
        .expect("the demo tenant installs");
    drop(app);
    let (status, viewer) = server
        .json(
            "POST",
            "/api/v1/tenants/demo/tokens",
            &demo.token,
            json!({"role": "viewer", "label": "Vera (viewer)"}),
        )
        .await;
    assert_eq!(status, 201, "{viewer}");
    let viewer = viewer["token"].as_str().unwrap().to_owned();

    // The component the browser uploads: the gallery again, installed a second time
    // with a hostile headline.
    let upload = tempfile::Builder::new()
        .prefix("view-gallery-")
        .suffix(".wasm")
        .tempfile()
        .unwrap();
    std::fs::write(upload.path(), guest("extensions/view-gallery")).unwrap();

    let screenshots = root.join("docs/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/console.mjs"))
        .env("NODE_PATH", &node_modules)
        .env("PLINTH_URL", server.url(""))
        .env("ADMIN_TOKEN", &demo.token)
        .env("VIEWER_TOKEN", &viewer)
        .env("OPERATOR_TOKEN", &server.operator)
        .env("UPLOAD_WASM", upload.path())
        .env("SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (installed by guest-sdk/install-toolchains)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = String::new();
    // The script's lines; it asks for the server to be restarted (to see the console
    // reconnect) and waits for the answer on its stdin.
    let run = async move {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("{line}");
            output.push_str(&line);
            output.push('\n');
            if line == "request: restart the server" {
                let dir = server.stop_keeping_dir().await;
                server = TestServer::start_in(dir, |c| c.listen = addr).await;
                stdin.write_all(b"restarted\n").await.unwrap();
            }
        }
        (child.wait().await.unwrap(), output, server)
    };
    let (status, output, server) = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the browser test ends within 10 minutes");
    assert!(status.success(), "the browser test failed:\n{output}");
    // Every step reports itself; a script that stopped early cannot pass.
    assert!(output.contains("ok: all steps"), "{output}");

    // What the browser did through the UI is there on the server.
    let (status, installed) = server
        .get(
            "/api/v1/tenants/demo/installations/gallery-two",
            &demo.token,
        )
        .await;
    assert_eq!(status, 200, "{installed}");
    assert_eq!(installed["config"]["target"], 42000, "{installed}");
    server.stop().await;
}
