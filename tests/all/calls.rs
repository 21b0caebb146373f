//! Calls as a user drives them: render, describe, tick, action, event; grants, scoping,
//! logs, broadcast delivered only on success, and the database's confinement.

use plinth_host::{Call, ErrorCode, Grants, Limits};
use plinth_tests::{guest, invocation, sandbox};
use serde_json::{Value, json};

fn render(config: Value) -> Call {
    Call::Render {
        config,
        params: vec![],
    }
}

#[tokio::test]
async fn hello_metric_renders_a_metric_card_with_a_receipt() {
    let test = sandbox();
    let hello = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let report = test
        .sandbox
        .call(
            &hello,
            &invocation("acme", Grants::none(), Limits::default()),
            render(json!({"title": "Orders", "value": 7})),
        )
        .await;
    let result = report.outcome_json().expect("renders");
    assert_eq!(result["views"][0]["kind"], "metric_card");
    assert_eq!(result["views"][0]["title"], "Orders");
    assert_eq!(result["views"][0]["value"], 7.0);
    let receipt = &report.receipt;
    assert_eq!(receipt.outcome.to_string(), "OK");
    assert_eq!(receipt.call, "render");
    assert!(receipt.fuel_used.unwrap() > 0);
    assert!(receipt.peak_memory_bytes >= 65_536);
    assert!(receipt.wall_time_us > 0);
    assert_eq!(receipt.output_bytes, result.to_string().len());
    assert_eq!(receipt.component, hello.hash);
}

#[tokio::test]
async fn a_bad_config_is_the_guests_invalid_input() {
    let test = sandbox();
    let hello = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let report = test
        .sandbox
        .call(
            &hello,
            &invocation("acme", Grants::none(), Limits::default()),
            render(json!({"value": "lots"})),
        )
        .await;
    let error = report.outcome_json().unwrap_err();
    assert_eq!(error.code, ErrorCode::GuestError);
    assert!(error.message.contains("invalid-input"), "{}", error.message);
}

#[tokio::test]
async fn describe_reports_the_cache_stats_widget() {
    let test = sandbox();
    let widget = test.sandbox.load(&guest("extensions/cache-stats")).unwrap();
    let report = test
        .sandbox
        .call(
            &widget,
            &invocation("acme", Grants::all(), Limits::default()),
            Call::Describe,
        )
        .await;
    let descriptor = report.outcome_json().unwrap();
    assert_eq!(descriptor["id"], "cache-stats");
    assert_eq!(descriptor["refresh_interval_ms"], 5000);
    assert_eq!(descriptor["actions"][0]["name"], "export");
    assert_eq!(
        descriptor["config_schema"]["properties"]["alertThreshold"]["maximum"],
        100
    );
    assert_eq!(
        widget
            .capabilities()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["cache", "broadcast", "log"]
    );
    assert!(
        widget.label().starts_with("Cache Statistics@1.0.0"),
        "{}",
        widget.label()
    );
}

#[tokio::test]
async fn cache_stats_shows_the_tenants_real_numbers_and_only_theirs() {
    let test = sandbox();
    let cache = test.sandbox.backends().cache.clone();
    for key in ["orders:today", "orders:week", "users:count"] {
        cache
            .set("acme", key, b"12345".to_vec(), None)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        cache.get("acme", "orders:today").await.unwrap();
    }
    cache.get("acme", "missing").await.unwrap();
    cache
        .set("globex", "secret", vec![0; 1000], None)
        .await
        .unwrap();
    cache.get("globex", "secret").await.unwrap();

    let widget = test.sandbox.load(&guest("extensions/cache-stats")).unwrap();
    let grants: Grants = "cache,broadcast,log".parse().unwrap();
    let report = test
        .sandbox
        .call(
            &widget,
            &invocation("acme", grants, Limits::default()),
            render(json!({})),
        )
        .await;
    let views = report.outcome_json().unwrap()["views"].clone();
    // Statistics are read before the widget reads its own history, so they are exactly
    // what happened above: 3 hits and 1 miss for acme.
    assert_eq!(views[0]["title"], "Hit rate");
    assert_eq!(views[0]["caption"], "3 hits, 1 misses");
    assert_eq!(views[0]["value"], 75.0);
    assert_eq!(
        views[1]["value"], 3.0,
        "acme has 3 keys; globex's are not counted"
    );
    let table = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "table")
        .unwrap();
    assert_eq!(table["rows"][0], json!(["orders:today", 5, 3]));
    assert!(!table.to_string().contains("secret"));
    assert_eq!(report.receipt.host_calls.values().sum::<u64>(), 2);
}

#[tokio::test]
async fn ticks_publish_to_subscribers_and_feed_the_export() {
    let test = sandbox();
    let widget = test.sandbox.load(&guest("extensions/cache-stats")).unwrap();
    let mut subscriber = test
        .sandbox
        .backends()
        .broadcast
        .subscribe("acme", "cache-stats");
    let mut other_tenant = test
        .sandbox
        .backends()
        .broadcast
        .subscribe("globex", "cache-stats");
    let mut alerts = test
        .sandbox
        .backends()
        .broadcast
        .subscribe("acme", "alerts");
    let grants: Grants = "cache,broadcast,log".parse().unwrap();
    let acme = invocation("acme", grants, Limits::default());
    // The first tick sees an untouched cache (no alert) but its own history read is a
    // miss; the second sees a hit rate of 0 %, under the default 70 %, and alerts.
    for (sequence, topics) in [(0, vec!["cache-stats"]), (1, vec!["cache-stats", "alerts"])] {
        let tick = Call::Tick {
            config: json!({}),
            sequence,
            scheduled_at_ms: 0,
        };
        let report = test.sandbox.call(&widget, &acme, tick).await;
        assert_eq!(
            report
                .published
                .iter()
                .map(|p| p.topic.as_str())
                .collect::<Vec<_>>(),
            topics
        );
        subscriber.recv().await.unwrap();
    }
    assert!(
        alerts.recv().await.unwrap().payload["message"]
            .as_str()
            .unwrap()
            .contains("below 70.0%")
    );
    test.sandbox
        .backends()
        .cache
        .invalidate_prefix("acme", "")
        .await
        .unwrap();
    for sequence in 1..=3 {
        let config = json!({"alertThreshold": 0});
        let tick = Call::Tick {
            config,
            sequence,
            scheduled_at_ms: 1_000 * sequence,
        };
        let report = test.sandbox.call(&widget, &acme, tick).await;
        assert!(report.outcome_json().is_ok(), "{:?}", report.outcome_json());
        assert_eq!(report.published.len(), 1);
        let message = subscriber.recv().await.unwrap();
        assert_eq!(message.tenant, "acme");
        assert_eq!(message.payload["atMs"], 1_000 * sequence);
    }
    assert!(
        other_tenant.try_recv().is_err(),
        "another tenant's subscriber hears nothing"
    );

    let export = Call::Action {
        name: "export".into(),
        config: json!({}),
        body: json!({"format": "csv"}),
    };
    let report = test.sandbox.call(&widget, &acme, export).await;
    let response = report.outcome_json().unwrap();
    assert_eq!(response["content_type"], "text/csv");
    assert_eq!(response["filename"], "cache-stats.csv");
    let csv = response["body"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 4, "header and three samples:\n{csv}");

    let unknown = Call::Action {
        name: "delete-everything".into(),
        config: json!({}),
        body: Value::Null,
    };
    let error = test
        .sandbox
        .call(&widget, &acme, unknown)
        .await
        .outcome_json()
        .unwrap_err();
    assert!(error.message.contains("not-found"), "{}", error.message);
}

#[tokio::test]
async fn a_failed_call_publishes_nothing() {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let mut subscriber = test.sandbox.backends().broadcast.subscribe("acme", "news");
    let report = test
        .sandbox
        .call(
            &hostile,
            &invocation("acme", Grants::all(), Limits::default()),
            render(json!({"attack": "publish-then-fail"})),
        )
        .await;
    assert_eq!(
        report.outcome_json().unwrap_err().code,
        ErrorCode::GuestError
    );
    assert_eq!(
        report.receipt.host_calls[&plinth_host::Capability::Broadcast],
        1
    );
    assert!(report.published.is_empty());
    assert!(subscriber.try_recv().is_err());
}

#[tokio::test]
async fn an_event_sent_to_a_widget_is_rejected() {
    let test = sandbox();
    let hello = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let event = Call::Event {
        id: "e1".into(),
        name: "order.completed".into(),
        payload: json!({"total": 10}),
        occurred_at_ms: 0,
        attempt: 1,
    };
    let error = test
        .sandbox
        .call(
            &hello,
            &invocation("acme", Grants::none(), Limits::default()),
            event,
        )
        .await
        .outcome_json()
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::GuestError);
    assert!(error.message.contains("rejected"), "{}", error.message);
}

#[tokio::test]
async fn logs_reach_the_report_and_the_installation_ring() {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let acme = invocation("acme", Grants::all(), Limits::default());
    let report = test
        .sandbox
        .call(&hostile, &acme, render(json!({"attack": "log"})))
        .await;
    assert!(report.outcome_json().is_ok());
    let levels: Vec<_> = report
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        levels,
        [("info", "one"), ("warn", "two"), ("error", "three")]
    );
    let ring = test.sandbox.backends().log.recent(&acme.scope, 10);
    assert_eq!(ring.len(), 3);
    // A flood keeps only the per-call cap of lines and counts the rest.
    let few = Limits {
        log_lines: 5,
        host_calls: 2_000_000,
        capability_calls: 2_000_000,
        timeout: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let flood = test
        .sandbox
        .call(
            &hostile,
            &invocation("acme", Grants::all(), few),
            render(json!({"attack": "host-calls"})),
        )
        .await;
    assert!(flood.outcome_json().is_ok(), "{:?}", flood.outcome_json());
    assert_eq!(flood.logs.len(), 5);
    assert_eq!(flood.receipt.logs_dropped, 1_000_000 - 5);
}

async fn sql(statement: &str, grants: &str) -> Result<Value, plinth_host::PlinthError> {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let grants: Grants = grants.parse().unwrap();
    let call = render(json!({"attack": "sql", "sql": statement}));
    test.sandbox
        .call(
            &hostile,
            &invocation("acme", grants, Limits::default()),
            call,
        )
        .await
        .outcome_json()
}

#[tokio::test]
async fn the_tenant_database_reads_and_writes_typed_values() {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let acme = invocation("acme", Grants::all(), Limits::default());
    for statement in [
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL, note TEXT, raw BLOB)",
        "INSERT INTO orders (total, note, raw) VALUES (12.5, 'first', x'00ff'), (7, NULL, NULL)",
    ] {
        let report = test
            .sandbox
            .call(
                &hostile,
                &acme,
                render(json!({"attack": "sql", "sql": statement})),
            )
            .await;
        assert!(
            report.outcome_json().is_ok(),
            "{statement}: {:?}",
            report.outcome_json()
        );
    }
    let rows = test
        .sandbox
        .backends()
        .db
        .query(
            "acme",
            "SELECT id, total, note, raw FROM orders ORDER BY id",
            vec![],
            plinth_host::capability::db::StatementBounds {
                max_rows: 10,
                max_bytes: 1 << 20,
                deadline: std::time::Instant::now() + std::time::Duration::from_secs(1),
            },
        )
        .await
        .unwrap();
    use plinth_host::capability::db::DbValue::*;
    assert_eq!(rows.columns, ["id", "total", "note", "raw"]);
    assert_eq!(
        rows.rows[0],
        [
            Integer(1),
            Real(12.5),
            Text("first".into()),
            Blob(vec![0, 255])
        ]
    );
    assert_eq!(rows.rows[1], [Integer(2), Real(7.0), Null, Null]);
    // Another tenant's database is another file: the table does not exist there.
    let other = test
        .sandbox
        .call(
            &hostile,
            &invocation("globex", Grants::all(), Limits::default()),
            render(json!({"attack": "query", "sql": "SELECT * FROM orders"})),
        )
        .await;
    assert!(
        other
            .outcome_json()
            .unwrap_err()
            .message
            .contains("no such table")
    );
}

#[tokio::test]
async fn a_read_only_grant_cannot_write() {
    let error = sql("CREATE TABLE t (x)", "cache,db,broadcast,log")
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::CapabilityDenied, "{}", error.message);
    assert!(error.message.contains("db:write"), "{}", error.message);
}

#[tokio::test]
async fn the_database_cannot_be_escaped() {
    for statement in [
        "ATTACH DATABASE '/tmp/plinth-escape.sqlite3' AS other",
        "PRAGMA writable_schema = 1",
        "PRAGMA journal_mode = DELETE",
        "VACUUM INTO '/tmp/plinth-escape-copy.sqlite3'",
        // A transaction left open would outlive the call on the tenant's connection.
        "BEGIN",
        "SAVEPOINT keep",
    ] {
        let error = sql(statement, "cache,db:write,broadcast,log")
            .await
            .unwrap_err();
        assert_eq!(
            error.code,
            ErrorCode::CapabilityDenied,
            "{statement}: {error:?}"
        );
        assert!(!std::path::Path::new("/tmp/plinth-escape.sqlite3").exists());
        assert!(!std::path::Path::new("/tmp/plinth-escape-copy.sqlite3").exists());
    }
    // Through `query` too, which a read-only grant may use.
    for statement in [
        "SELECT load_extension('/tmp/evil.so')",
        "ROLLBACK",
        "PRAGMA key_list",
    ] {
        let test = sandbox();
        let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
        let grants: Grants = "cache,db,broadcast,log".parse().unwrap();
        let call = render(json!({"attack": "query", "sql": statement}));
        let error = test
            .sandbox
            .call(
                &hostile,
                &invocation("acme", grants, Limits::default()),
                call,
            )
            .await
            .outcome_json()
            .unwrap_err();
        assert_eq!(
            error.code,
            ErrorCode::CapabilityDenied,
            "{statement}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_query_returning_too_many_bytes_is_refused() {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let huge = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT zeroblob(1000000) FROM n";
    let call = render(json!({"attack": "query", "sql": huge}));
    let error = test
        .sandbox
        .call(
            &hostile,
            &invocation("acme", Grants::all(), Limits::default()),
            call,
        )
        .await
        .outcome_json()
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::QuotaExceeded, "{error:?}");
    assert!(error.message.contains("bytes"), "{}", error.message);
}

#[tokio::test]
async fn a_locked_tenant_database_is_db_busy() {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let acme = invocation("acme", Grants::all(), Limits::default());
    let create = render(json!({"attack": "sql", "sql": "CREATE TABLE t (x)"}));
    assert!(
        test.sandbox
            .call(&hostile, &acme, create)
            .await
            .outcome_json()
            .is_ok()
    );
    // Other work holds the write lock on acme's file past the busy timeout.
    let other = rusqlite::Connection::open(test.dir.path().join("db/acme.sqlite3")).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
        .unwrap();
    let insert = render(json!({"attack": "sql", "sql": "INSERT INTO t VALUES (2)"}));
    let error = test
        .sandbox
        .call(&hostile, &acme, insert.clone())
        .await
        .outcome_json()
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::DbBusy, "{error:?}");
    other.execute_batch("COMMIT").unwrap();
    assert!(
        test.sandbox
            .call(&hostile, &acme, insert)
            .await
            .outcome_json()
            .is_ok()
    );
}

#[tokio::test]
async fn an_upgrade_that_imports_more_shows_the_difference_and_needs_a_grant() {
    let test = sandbox();
    let old = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let new = test.sandbox.load(&guest("extensions/cache-stats")).unwrap();
    use plinth_host::Capability::*;
    assert_eq!(new.capabilities_added_since(&old), [Cache, Broadcast, Log]);
    assert!(old.capabilities_added_since(&new).is_empty());
    // The old installation's grants do not cover the new version.
    let installed = invocation("acme", Grants::none(), Limits::default());
    assert!(test.sandbox.check_grants(&old, &installed).is_ok());
    let refused = test.sandbox.check_grants(&new, &installed).unwrap_err();
    assert_eq!(refused.code, ErrorCode::CapabilityDenied);
    let upgraded = invocation(
        "acme",
        "cache,broadcast,log".parse().unwrap(),
        Limits::default(),
    );
    assert!(test.sandbox.check_grants(&new, &upgraded).is_ok());
}
