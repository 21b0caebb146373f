//! One conformance suite for every SDK. The same extension, written in Rust, JavaScript,
//! Python and C (tests/guests/conformance-*), goes through the same cases: describe,
//! render (config, cache, database, a metric card and a table), events (idempotent
//! inserts, rejection), a tick that publishes, the guest's own errors, and each hostile
//! case with the code Rust gets. The toolchains must be installed (`.ci/run` does); a
//! missing one fails the build with the command that installs it.

use std::time::Duration;

use plinth_host::{Call, CallReport, ErrorCode, Extension, Grants, ImportKind, Limits};
use plinth_tests::{TestSandbox, guest, invocation, sandbox, workspace_root};
use serde_json::{Value, json};

fn component(language: &str) -> Vec<u8> {
    guest(&format!("tests/guests/conformance-{language}"))
}

async fn call(test: &TestSandbox, extension: &Extension, limits: Limits, call: Call) -> CallReport {
    test.sandbox
        .call(
            extension,
            &invocation("conformance", Grants::all(), limits),
            call,
        )
        .await
}

fn render(config: Value, params: &[(&str, &str)]) -> Call {
    Call::Render {
        config,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn order(id: &str, payload: Value, attempt: u32) -> Call {
    Call::Event {
        id: id.into(),
        name: "order.completed".into(),
        payload,
        occurred_at_ms: 1_700_000_000_000,
        attempt,
    }
}

fn action(name: &str) -> Call {
    Call::Action {
        name: name.into(),
        config: json!({}),
        body: Value::Null,
    }
}

/// Numbers compared as numbers: JSON from JavaScript and C writes 20.0 as 20.
fn assert_number(value: &Value, expected: f64, what: &str) {
    assert_eq!(value.as_f64(), Some(expected), "{what}: {value}");
}

fn expect_guest_error(report: &CallReport, case: &str, language: &str) {
    let error = report.outcome.as_ref().expect_err(language);
    assert_eq!(
        error.code,
        ErrorCode::GuestError,
        "{language}: {}",
        error.message
    );
    assert!(
        error.message.contains(case),
        "{language}: {case} in {}",
        error.message
    );
}

async fn conformance(language: &str) {
    let test = sandbox();
    let extension = test
        .sandbox
        .load(&component(language))
        .unwrap_or_else(|e| panic!("{language}: load: {e}"));
    let l = language;

    // Imports: the four capabilities, and nothing Plinth refuses. Python imports no WASI
    // at all (--stub-wasi); JavaScript and C exactly what their pinned toolchains emit,
    // all of it linked locked down.
    assert_eq!(
        extension
            .capabilities()
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["cache", "db", "broadcast", "log"],
        "{l}"
    );
    assert!(
        extension
            .imports
            .iter()
            .all(|i| !matches!(i.kind, ImportKind::Unsupported)),
        "{l}: {:?}",
        extension.imports
    );
    let mut wasi: Vec<&str> = extension
        .imports
        .iter()
        .filter(|i| i.kind == ImportKind::LockedDownWasi)
        .map(|i| i.name.split('@').next().unwrap_or(&i.name))
        .collect();
    wasi.sort_unstable();
    let stdio = [
        "wasi:cli/stderr",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:clocks/wall-clock",
        "wasi:filesystem/preopens",
        "wasi:filesystem/types",
        "wasi:io/error",
        "wasi:io/streams",
    ];
    let expected: Vec<&str> = match language {
        "python" => vec![],
        "c" => stdio.to_vec(),
        "js" => {
            let mut js = stdio.to_vec();
            js.extend([
                "wasi:cli/terminal-input",
                "wasi:cli/terminal-output",
                "wasi:cli/terminal-stderr",
                "wasi:cli/terminal-stdin",
                "wasi:cli/terminal-stdout",
                "wasi:clocks/monotonic-clock",
                "wasi:io/poll",
                "wasi:random/random",
            ]);
            js.sort_unstable();
            js
        }
        // Rust's std imports what the toolchain of the day chooses; not pinned here.
        _ => wasi.clone(),
    };
    assert_eq!(wasi, expected, "{l}");

    // describe: the same descriptor, field for field.
    let descriptor = call(&test, &extension, Limits::default(), Call::Describe)
        .await
        .outcome_json()
        .unwrap_or_else(|e| panic!("{l}: describe: {e}"));
    assert_eq!(
        descriptor,
        json!({
            "id": "conformance", "name": "Conformance", "version": "1.0.0",
            "description": "Orders today: the widget every SDK implements alike.",
            "category": "testing", "icon": "check",
            "default_size": { "width": 4, "height": 2 },
            "config_schema": { "type": "object", "properties": { "title": { "type": "string" } } },
            "refresh_interval_ms": 1000,
            "capabilities": ["cache", "db:write", "broadcast", "log"],
            "event_patterns": ["order.*"],
            "actions": [
                { "name": "loop", "description": "Spins forever." },
                { "name": "memory-bomb", "description": "Allocates until it cannot." },
                { "name": "panic", "description": "Fails the way the language fails." }
            ]
        }),
        "{l}"
    );

    // A first render: the default title, one render counted, no orders yet.
    let first = call(&test, &extension, Limits::default(), render(json!({}), &[]))
        .await
        .outcome_json()
        .unwrap_or_else(|e| panic!("{l}: render: {e}"));
    let views = first["views"].as_array().expect("views");
    assert_eq!(views.len(), 2, "{l}: {first}");
    assert_eq!(views[0]["kind"], "metric_card", "{l}");
    assert_eq!(views[0]["title"], "Orders", "{l}");
    assert_eq!(views[0]["caption"], "renders", "{l}");
    assert_number(&views[0]["value"], 1.0, l);
    assert_eq!(views[1]["kind"], "table", "{l}");
    assert_eq!(
        views[1]["columns"],
        json!([{ "key": "id", "title": "Order" }, { "key": "total", "title": "Total" }]),
        "{l}"
    );
    assert_eq!(views[1]["rows"], json!([]), "{l}");
    assert_eq!(views[1]["total_rows"], 0, "{l}");

    // Events: two orders, then a redelivery of the first that must not count twice.
    for (id, total, attempt) in [("o-1", 12.5, 1), ("o-2", 7.5, 1), ("o-1", 12.5, 2)] {
        let report = call(
            &test,
            &extension,
            Limits::default(),
            order(id, json!({ "id": id, "total": total }), attempt),
        )
        .await;
        assert_eq!(report.outcome_json(), Ok(Value::Null), "{l}: event {id}");
        assert_eq!(report.published.len(), 1, "{l}");
        assert_eq!(report.published[0].topic, "orders", "{l}");
        assert_eq!(
            report.published[0].payload,
            json!({ "completed": id }),
            "{l}"
        );
    }
    // Another event name matches the pattern and is ignored.
    let ignored = call(
        &test,
        &extension,
        Limits::default(),
        Call::Event {
            id: "r-1".into(),
            name: "order.refunded".into(),
            payload: json!({}),
            occurred_at_ms: 0,
            attempt: 1,
        },
    )
    .await;
    assert_eq!(ignored.outcome_json(), Ok(Value::Null), "{l}");
    assert!(ignored.published.is_empty(), "{l}");

    // The second render: its config's title, the counter, one page of two orders.
    let second = call(
        &test,
        &extension,
        Limits::default(),
        render(json!({ "title": "Orders today" }), &[("limit", "1")]),
    )
    .await
    .outcome_json()
    .unwrap_or_else(|e| panic!("{l}: render: {e}"));
    assert_eq!(second["views"][0]["title"], "Orders today", "{l}");
    assert_number(&second["views"][0]["value"], 2.0, l);
    assert_eq!(second["views"][1]["rows"], json!([["o-1", 12.5]]), "{l}");
    assert_eq!(second["views"][1]["total_rows"], 2, "{l}");

    // The tick: a summary published and logged.
    let tick = call(
        &test,
        &extension,
        Limits::default(),
        Call::Tick {
            config: json!({}),
            sequence: 7,
            scheduled_at_ms: 1_700_000_000_000,
        },
    )
    .await;
    assert_eq!(tick.outcome_json(), Ok(Value::Null), "{l}: tick");
    assert_eq!(tick.published.len(), 1, "{l}");
    let summary = &tick.published[0].payload;
    assert_eq!(tick.published[0].topic, "orders", "{l}");
    assert_number(&summary["sequence"], 7.0, l);
    assert_number(&summary["orders"], 2.0, l);
    assert_number(&summary["revenue"], 20.0, l);
    assert_eq!(tick.logs.len(), 1, "{l}");
    assert_eq!(tick.logs[0].level, "info", "{l}");
    assert_eq!(tick.logs[0].message, "tick 7: 2 orders", "{l}");

    // An id the guest must escape to publish it as JSON; it is stored like any other.
    let odd_id = "q\"\\1";
    let odd = call(
        &test,
        &extension,
        Limits::default(),
        order(odd_id, json!({ "id": odd_id, "total": 1.0 }), 1),
    )
    .await;
    assert_eq!(
        odd.outcome_json(),
        Ok(Value::Null),
        "{l}: event with an odd id"
    );
    assert_eq!(
        odd.published[0].payload,
        json!({ "completed": odd_id }),
        "{l}"
    );

    // The guest's own errors, each the contract's case.
    let bad_order = call(
        &test,
        &extension,
        Limits::default(),
        order("o-3", json!({ "id": "o-3" }), 1),
    )
    .await;
    expect_guest_error(
        &bad_order,
        "rejected: an order needs a string id and a numeric total",
        l,
    );
    assert!(bad_order.published.is_empty(), "{l}");
    let bad_config = call(
        &test,
        &extension,
        Limits::default(),
        render(json!({ "title": 3 }), &[]),
    )
    .await;
    expect_guest_error(
        &bad_config,
        "invalid-input: config.title must be a string",
        l,
    );
    let unknown = call(&test, &extension, Limits::default(), action("nope")).await;
    expect_guest_error(&unknown, "not-found: no action nope", l);

    // A capability the installation was not granted is refused before the guest runs.
    let denied = test
        .sandbox
        .call(
            &extension,
            &invocation(
                "conformance",
                "cache,broadcast,log".parse().unwrap(),
                Limits::default(),
            ),
            render(json!({}), &[]),
        )
        .await;
    assert_eq!(
        denied.outcome_json().unwrap_err().code,
        ErrorCode::CapabilityDenied,
        "{l}"
    );

    // Hostile: the same code as in Rust, whatever the language.
    let limited = |edit: fn(&mut Limits)| {
        let mut limits = Limits::default();
        edit(&mut limits);
        limits
    };
    let cases = [
        (
            "loop",
            limited(|l| l.fuel = Some(50_000_000)),
            ErrorCode::FuelExhausted,
        ),
        (
            "loop",
            limited(|l| {
                l.fuel = None;
                l.timeout = Duration::from_millis(300);
            }),
            ErrorCode::ExecutionTimeout,
        ),
        ("memory-bomb", Limits::default(), ErrorCode::MemoryLimit),
        ("panic", Limits::default(), ErrorCode::GuestTrap),
    ];
    for (name, limits, expected) in cases {
        let report = call(&test, &extension, limits, action(name)).await;
        let error = report.outcome_json().expect_err(name);
        assert_eq!(error.code, expected, "{l}: {name}: {}", error.message);
        // What the guest said on its way down is in the message, where the language has a
        // stderr: Rust's panic message, JavaScript's exception, C's fputs. A Python
        // component built with --stub-wasi has none.
        if name == "panic" && language != "python" {
            assert!(
                error.message.contains("fails on purpose"),
                "{l}: {}",
                error.message
            );
        }
    }

    // The engine is healthy afterwards: the next render sees all earlier state.
    let after = call(&test, &extension, Limits::default(), render(json!({}), &[]))
        .await
        .outcome_json()
        .unwrap_or_else(|e| panic!("{l}: render after the hostile cases: {e}"));
    assert_number(&after["views"][0]["value"], 3.0, l);
}

#[tokio::test]
async fn rust_passes_the_conformance_suite() {
    conformance("rust").await;
}

#[tokio::test]
async fn javascript_passes_the_conformance_suite() {
    conformance("js").await;
}

#[tokio::test]
async fn python_passes_the_conformance_suite() {
    conformance("python").await;
}

#[tokio::test]
async fn c_passes_the_conformance_suite() {
    conformance("c").await;
}

/// componentize-js without `-d http -d fetch-event` emits a component that imports
/// wasi:http: Plinth refuses it at load, names the import and the switch.
#[test]
fn a_javascript_component_with_wasi_http_is_refused_with_the_switch_that_removes_it() {
    // The build writes the SDK and the contract into the project's .plinth folder.
    component("js");
    let project = workspace_root().join("tests/guests/conformance-js");
    let out = tempfile::tempdir().expect("temp dir");
    let wasm = out.path().join("with-http.wasm");
    let status = std::process::Command::new("componentize-js")
        .current_dir(&project)
        .arg("src/index.js")
        .arg("--wit")
        .arg(project.join(".plinth/wit"))
        .args(["--world-name", "extension", "-o"])
        .arg(&wasm)
        .status()
        .expect("componentize-js is installed (npm install -g @bytecodealliance/componentize-js)");
    assert!(status.success());
    let Err(error) = sandbox().sandbox.load(&std::fs::read(&wasm).unwrap()) else {
        panic!("a component importing wasi:http loaded");
    };
    assert_eq!(error.code, ErrorCode::CapabilityDenied, "{}", error.message);
    assert!(error.message.contains("wasi:http/"), "{}", error.message);
    assert!(
        error.message.contains("-d http -d fetch-event"),
        "{}",
        error.message
    );
}
