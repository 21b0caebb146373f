//! The API against its own contract: schemathesis (PyPI, installed by
//! `tests/install-tools`) runs every check it has against a live server's
//! `/api/v1/openapi.json`: documented statuses, content types and headers, responses
//! matching their schemas, schema-valid requests accepted, invalid ones refused, 405
//! with `Allow` for undeclared methods, authentication not ignored, and its stateful
//! sequences. Once with a tenant-admin token and once with an operator token, each
//! bounded in time, against a server of its own whose `{tenant}` is pinned to the one
//! tenant the run may touch.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::server::TestServer;
use plinth_tests::{guest, workspace_root};

/// Examples per operation and phase: each run takes about a minute on a busy 2-core
/// machine. (`--max-time` is not a bound: schemathesis fills it.)
const EXAMPLES: &str = "30";

fn schemathesis() -> PathBuf {
    let path = workspace_root().join(".test-tools/venv/bin/schemathesis");
    assert!(
        path.exists(),
        "{} is missing: run tests/install-tools (the README's test command does)",
        path.display()
    );
    path
}

/// The run's configuration: every `{tenant}` of a path is the run's own tenant, so
/// nothing else can be reached; `more` is added as it is.
fn config(tenant: &str, more: &str) -> String {
    format!(
        r#"[parameters]
"path.tenant" = "{tenant}"

# A request the document allows may still be refused for what only the server can
# know: 404 (no such resource), 409 (a conflict), 422 (random bytes that are not a
# component; INVALID_VALUE: an expiry in the past, a tick interval outside this
# server's range). Never 400: that is for requests the document does not allow, and
# the server checks JSON bodies against the document itself.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
{more}"#
    )
}

/// Runs schemathesis with `token` against `server` under `config`.
async fn run(server: &TestServer, token: &str, config_text: String, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, config_text).unwrap();
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args(["--checks", "all"])
        .args(["--max-examples", EXAMPLES])
        // One worker: hypothesis describes its strategies from lambdas' source through a
        // cache that two threads can corrupt (a runtime error in the tool, not the API).
        .args(["--workers", "1"])
        .args(["--seed", "20261129"])
        .args(["--request-timeout", "30"])
        .args(["--no-color", "--output-truncate", "false"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .current_dir(dir.path())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("schemathesis finishes within 10 minutes")
        .expect("schemathesis runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis with the {label} token found failures:\n{said}"
    );
    // A run that tested nothing would pass too: it must have exercised the API.
    assert!(
        said.contains("passed") && !said.contains("0 selected"),
        "schemathesis with the {label} token tested nothing:\n{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_contract_failures() {
    let server = TestServer::start(|_| {}).await;
    let tenant = "contract";
    let (admin, _) = server.tenant(tenant).await;
    // Something for the installation routes to find: a widget installed with its grants.
    let (status, uploaded) = server
        .upload(tenant, &admin, guest("extensions/hello-metric"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/installations"),
            &admin,
            json!({"id": "hello", "component": uploaded["hash"], "grants": uploaded["descriptor"]["capabilities"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    run(&server, &admin, config(tenant, ""), "tenant-admin").await;
    // The operator may delete the tenant every `{tenant}` is pinned to, and revoke the
    // run's own token: either would leave the rest of the run testing a tenant that is
    // gone with a token that no longer works. Other tests delete tenants and revoke
    // operator tokens and check what follows.
    let keep = r#"
[[operations]]
include-name = "DELETE /api/v1/tenants/{tenant}"
enabled = false

[[operations]]
include-name = "DELETE /api/v1/tokens/{id}"
enabled = false
"#;
    let operator = server.operator.clone();
    run(&server, &operator, config(tenant, keep), "operator").await;
    server.stop().await;
}

/// What the document allows is what the server takes, and what it refuses is a 400
/// naming where: whole numbers sent as floats are integers where the schema says so, an
/// array is not an object, an operator token is not made through a tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_are_read_as_the_document_says() {
    let server = TestServer::start(|_| {}).await;
    let tenant = "bodies";
    let (admin, _) = server.tenant(tenant).await;
    let operator = server.operator.clone();
    let quota = format!("/api/v1/tenants/{tenant}/quota");
    let (status, body) = server
        .json(
            "PUT",
            &quota,
            &operator,
            json!({"concurrent_calls": 4.0, "fuel_per_minute": 1e9}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["quota"],
        json!({"concurrent_calls": 4, "fuel_per_minute": 1_000_000_000u64, "fuel_metering": true,
               "installations": 1000})
    );
    for (bad, at) in [
        (json!([4, 1_000_000]), "/"),
        // The body is `null` or a quota: the message shows the body that is neither.
        (
            json!({"concurrent_calls": 4.5, "fuel_per_minute": null}),
            "4.5",
        ),
        (
            json!({"concurrent_calls": 0, "fuel_per_minute": null}),
            "\"concurrent_calls\":0",
        ),
        (
            json!({"concurrent_calls": 1, "fuel_per_minute": 1e19}),
            "fuel_per_minute",
        ),
    ] {
        let (status, body) = server.json("PUT", &quota, &operator, bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{bad}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(at),
            "{bad}: {body}"
        );
    }
    // No body for an optional one: the default quota again.
    let (status, body) = server.send("PUT", &quota, Some(&operator), None).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/tokens"),
            &admin,
            json!({"role": "operator"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );
    let (status, body) = server
        .json(
            "PUT",
            &format!("/api/v1/tenants/{tenant}/dashboards/main"),
            &admin,
            json!({"tiles": [["hello", 1, 2, 3, 4]]}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );
    server.stop().await;
}
