//! What a tenant's SQL can reach on the embedded database, and what it costs the host:
//! every case goes through a real guest (the hostile test guest) and the sandbox.
//! SQL functions and table-valued functions are allow-lists: the tests enumerate what
//! this SQLite has and prove that nothing outside the lists is callable.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use plinth_host::capability::db::sqlite::{ALLOWED_FUNCTIONS, ALLOWED_TABLE_FUNCTIONS};
use plinth_host::{Call, ErrorCode, Grants, Limits, PlinthError};
use plinth_tests::{TestSandbox, guest, invocation, run_alone, sandbox};
use serde_json::{Value, json};

struct Tenant {
    test: TestSandbox,
    hostile: std::sync::Arc<plinth_host::Extension>,
    limits: Limits,
}

impl Tenant {
    fn new() -> Tenant {
        Tenant::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Tenant {
        let test = sandbox();
        let hostile = test
            .sandbox
            .load(&guest("tests/guests/hostile"))
            .expect("hostile loads");
        Tenant {
            test,
            hostile,
            limits,
        }
    }

    async fn call(&self, config: Value) -> Result<Value, PlinthError> {
        self.test
            .sandbox
            .call(
                &self.hostile,
                &invocation("acme", Grants::all(), self.limits.clone()),
                Call::Render {
                    config,
                    params: vec![],
                },
            )
            .await
            .outcome_json()
    }

    /// The first value of a query's first row, as the guest shows it.
    async fn value(&self, sql: &str, params: Value) -> Result<String, PlinthError> {
        let outcome = self
            .call(json!({"attack": "query-value", "sql": sql, "params": params}))
            .await?;
        Ok(first_cell(&outcome).unwrap_or_else(|| panic!("no cell in {outcome}")))
    }

    async fn execute(&self, sql: &str) -> Result<Value, PlinthError> {
        self.call(json!({"attack": "execute-params", "sql": sql}))
            .await
    }
}

/// The first cell of the first table in a render outcome.
fn first_cell(outcome: &Value) -> Option<String> {
    match outcome {
        Value::Object(map) => {
            if let Some(Value::Array(rows)) = map.get("rows")
                && let Some(Value::Array(cells)) = rows.first()
            {
                return cells.first().map(|cell| match cell {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
            map.values().find_map(first_cell)
        }
        Value::Array(items) => items.iter().find_map(first_cell),
        _ => None,
    }
}

fn denied(result: Result<impl std::fmt::Debug, PlinthError>, what: &str) {
    let error = result.expect_err(what);
    assert_eq!(
        error.code,
        ErrorCode::CapabilityDenied,
        "{what}: {}",
        error.message
    );
}

/// A connection of the test's own, after Plinth has set SQLite's allocator (which must
/// come before any connection of the process).
fn plain_connection() -> rusqlite::Connection {
    plinth_host::capability::db::statement_budget::install().unwrap();
    rusqlite::Connection::open_in_memory().unwrap()
}

/// SQLite's own list of its functions (name, arity), from the same SQLite the host
/// links, read on a connection of the test's own.
fn sqlite_functions() -> Vec<(String, i64)> {
    let connection = plain_connection();
    let mut statement = connection
        .prepare("SELECT DISTINCT name, narg FROM pragma_function_list ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn fts3_tokenizer_cannot_take_a_pointer_or_leak_an_address() {
    let acme = Tenant::new();
    // A pointer from a bound parameter: the call that crashed the host.
    let pointer = json!([{"blob": [0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41]}]);
    denied(
        acme.value("SELECT fts3_tokenizer('simple', $1)", pointer)
            .await,
        "fts3_tokenizer with a pointer",
    );
    // The one-argument form answers a host address.
    denied(
        acme.value("SELECT hex(fts3_tokenizer('simple'))", json!([]))
            .await,
        "fts3_tokenizer's address",
    );
    // Through a view the tenant made, too: a view is checked each time it is used.
    acme.execute("CREATE VIEW leak AS SELECT fts3_tokenizer('simple') AS p")
        .await
        .unwrap();
    // Refused twice over: the schema is untrusted, and the function is not listed.
    let error = acme
        .value("SELECT hex(p) FROM leak", json!([]))
        .await
        .expect_err("fts3_tokenizer in a view");
    assert!(
        error.code == ErrorCode::CapabilityDenied || error.message.contains("unsafe use"),
        "{error:?}"
    );
    // The host is still here and serves the tenant.
    assert_eq!(acme.value("SELECT 40 + 2", json!([])).await.unwrap(), "42");
}

#[tokio::test]
async fn no_sql_function_outside_the_allow_list_is_callable() {
    let functions = sqlite_functions();
    let names: HashSet<&str> = functions.iter().map(|(name, _)| name.as_str()).collect();
    // The enumeration is SQLite's real list: the dangerous ones are in it.
    for known in [
        "fts3_tokenizer",
        "load_extension",
        "abs",
        "json_extract",
        "count",
    ] {
        assert!(names.contains(known), "{known} missing from {names:?}");
    }
    let acme = Tenant::new();
    let mut refused = 0;
    for (name, narg) in &functions {
        let arity = if *narg < 0 { 1 } else { *narg as usize };
        let args = vec!["NULL"; arity].join(", ");
        let sql = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            format!("SELECT {name}({args})")
        } else {
            // Operators (`->`, `->>`) are functions too.
            format!("SELECT NULL {name} NULL")
        };
        let result = acme.value(&sql, json!([])).await;
        let allowed = ALLOWED_FUNCTIONS
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name));
        if allowed {
            if let Err(error) = &result {
                assert_ne!(
                    error.code,
                    ErrorCode::CapabilityDenied,
                    "{sql} is on the allow-list: {}",
                    error.message
                );
            }
        } else {
            denied(result, &sql);
            refused += 1;
        }
    }
    assert!(refused >= 5, "only {refused} functions refused");
    // Allow-listed functions work for real.
    let cases = [
        ("SELECT abs(-3)", "3"),
        ("SELECT json_extract('{\"a\": [1, 2]}', '$.a[1]')", "2"),
        ("SELECT '{\"a\": 5}' ->> 'a'", "5"),
        ("SELECT strftime('%Y', '2026-11-29')", "2026"),
        ("SELECT count(*) FROM json_each('[1, 2, 3]')", "3"),
        (
            "SELECT sum(x) OVER () FROM (SELECT 1 AS x UNION ALL SELECT 2)",
            "3",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(acme.value(sql, json!([])).await.unwrap(), expected, "{sql}");
    }
}

#[tokio::test]
async fn virtual_tables_are_out_of_reach_but_the_allowed_table_functions() {
    let modules: Vec<String> = {
        let connection = plain_connection();
        let mut statement = connection
            .prepare("SELECT name FROM pragma_module_list ORDER BY name")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(modules.iter().any(|m| m == "dbstat"), "{modules:?}");
    assert!(modules.iter().any(|m| m == "fts5"), "{modules:?}");
    let acme = Tenant::new();
    acme.execute("CREATE TABLE t (x)").await.unwrap();
    for module in &modules {
        denied(
            acme.execute(&format!(
                "CREATE VIRTUAL TABLE v_{module} USING {module}(x)"
            ))
            .await,
            &format!("CREATE VIRTUAL TABLE USING {module}"),
        );
        let read = acme
            .value(&format!("SELECT count(*) FROM {module}"), json!([]))
            .await;
        if ALLOWED_TABLE_FUNCTIONS.contains(&module.as_str()) {
            assert_eq!(read.unwrap(), "0", "{module}");
        } else if let Err(error) = read {
            // Eponymous modules (dbstat, …) are refused; the others are no table at all,
            // or cannot be used without arguments.
            assert!(
                error.code == ErrorCode::CapabilityDenied
                    || error.message.contains("no such table")
                    || error.message.contains("invalid arguments"),
                "{module}: {error:?}"
            );
        } else {
            panic!("{module} was readable");
        }
    }
    denied(
        acme.value("SELECT count(*) FROM dbstat", json!([])).await,
        "dbstat",
    );
    // PRAGMAs as table-valued functions: only the read-only ones.
    assert_eq!(
        acme.value("SELECT name FROM pragma_table_info('t')", json!([]))
            .await
            .unwrap(),
        "x"
    );
    for pragma in [
        "pragma_journal_mode",
        "pragma_compile_options",
        "pragma_database_list",
    ] {
        denied(
            acme.value(&format!("SELECT * FROM {pragma}"), json!([]))
                .await,
            pragma,
        );
    }
}

#[tokio::test]
async fn temp_objects_and_sqlite_tables_are_refused_and_ordinary_ddl_works() {
    let acme = Tenant::new();
    for statement in [
        "CREATE TEMP TABLE scratch (x)",
        "CREATE TABLE temp.scratch (x)",
        "CREATE TEMP VIEW scratch AS SELECT 1",
        "PRAGMA temp_store = FILE",
        "PRAGMA writable_schema = ON",
    ] {
        denied(acme.execute(statement).await, statement);
    }
    // Sorts and other temporary b-trees stay in memory, within the statement's budget,
    // instead of spilling to files in the host's temp dir.
    // 200 MB of distinct 10 KB keys: the budget stops it after 64 MiB, long before the
    // deadline (10 s here) even on a busy machine.
    let patient = Tenant::with_limits(Limits {
        timeout: Duration::from_secs(10),
        ..Limits::default()
    });
    let sort = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
                SELECT count(*) FROM (SELECT DISTINCT randomblob(10000) FROM n)";
    let error = patient
        .value(sort, json!([]))
        .await
        .expect_err("a 200 MB b-tree");
    assert_eq!(error.code, ErrorCode::QuotaExceeded, "{error:?}");
    assert!(error.message.contains("MiB of memory"), "{error:?}");
    // What a widget does with its own tables still works, with SQLite's bookkeeping.
    for statement in [
        "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, total REAL)",
        "INSERT INTO orders (total) VALUES (1.5), (2.5)",
        "CREATE INDEX orders_total ON orders (total)",
        "ALTER TABLE orders ADD COLUMN note TEXT",
        "ALTER TABLE orders RENAME TO sales",
        "CREATE VIEW big AS SELECT * FROM sales WHERE total > 2",
        "CREATE TRIGGER stamp AFTER INSERT ON sales BEGIN UPDATE sales SET note = 'new' WHERE id = NEW.id; END",
        "INSERT INTO sales (total) VALUES (9)",
        "ANALYZE",
    ] {
        acme.execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
    assert_eq!(
        acme.value("SELECT note FROM big WHERE total = 9", json!([]))
            .await
            .unwrap(),
        "new"
    );
    // SQLite's own tables: defensive mode refuses the schema table, the authorizer the
    // others.
    for statement in [
        "UPDATE sqlite_schema SET sql = 'x'",
        "DELETE FROM sqlite_master",
    ] {
        let error = acme.execute(statement).await.expect_err(statement);
        assert!(error.message.contains("may not be modified"), "{error:?}");
    }
    for statement in [
        "DELETE FROM sqlite_stat1",
        "INSERT INTO sqlite_stat1 VALUES ('sales', NULL, '1')",
    ] {
        denied(acme.execute(statement).await, statement);
    }
    assert_eq!(
        acme.value(
            "SELECT seq FROM sqlite_sequence WHERE name = 'sales'",
            json!([])
        )
        .await
        .unwrap(),
        "3"
    );
}

#[tokio::test]
async fn a_preparation_that_explodes_ends_within_the_deadline() {
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let acme = Tenant::with_limits(limits);
    acme.execute("CREATE TABLE t (x)").await.unwrap();
    acme.execute("CREATE VIEW v0 AS SELECT x FROM t")
        .await
        .unwrap();
    // Each view uses the one below twice: v30 expands to 2^30 copies of t.
    let mut refused_at = None;
    for level in 1..=30 {
        let below = level - 1;
        let sql = format!(
            "CREATE VIEW v{level} AS SELECT a.x FROM v{below} a UNION ALL SELECT b.x FROM v{below} b"
        );
        let started = Instant::now();
        let result = acme.execute(&sql).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{sql}");
        if result.is_err() {
            refused_at = Some(level);
            break;
        }
    }
    let top = refused_at.map_or(30, |level| level - 1);
    let started = Instant::now();
    let error = acme
        .value(&format!("SELECT count(*) FROM v{top}"), json!([]))
        .await
        .expect_err("an exploding preparation is stopped");
    stopped_in_time(&acme, error, started.elapsed()).await;
    // CTEs over no table at all: 2^30 copies, bounded by nothing but the budget.
    let mut ctes = vec!["c0 AS (SELECT 1 AS x)".to_owned()];
    for i in 1..=30 {
        ctes.push(format!(
            "c{i} AS (SELECT a.x FROM c{below} a UNION ALL SELECT b.x FROM c{below} b)",
            below = i - 1
        ));
    }
    let sql = format!("WITH {} SELECT count(*) FROM c30", ctes.join(", "));
    let started = Instant::now();
    let error = acme
        .value(&sql, json!([]))
        .await
        .expect_err("an exploding CTE is stopped");
    stopped_in_time(&acme, error, started.elapsed()).await;
    assert_eq!(
        acme.value("SELECT count(*) FROM v3", json!([]))
            .await
            .unwrap(),
        "0"
    );
}

/// A runaway statement ended near the call's deadline (1 s), with a limit's code, and
/// left the tenant's connection free: the next statement answers at once.
async fn stopped_in_time(acme: &Tenant, error: PlinthError, took: Duration) {
    let error = &error;
    // `quota-exceeded` past a statement limit; the guest passing on `timeout`; or the
    // call's own deadline, which is the statement's too, firing first.
    assert!(
        error.code == ErrorCode::QuotaExceeded
            || error.code == ErrorCode::ExecutionTimeout
            || (error.code == ErrorCode::GuestError && error.message.contains("deadline")),
        "{error:?}"
    );
    assert!(took < Duration::from_millis(1_750), "took {took:?}");
    let started = Instant::now();
    assert_eq!(acme.value("SELECT 7", json!([])).await.unwrap(), "7");
    let next = started.elapsed();
    assert!(
        next < Duration::from_millis(500),
        "the next statement waited {next:?} after {took:?} ({error:?})"
    );
}

/// Peak resident memory of this process since the last reset, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

fn current_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Starts counting the peak from the current resident size.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
}

const MIB: u64 = 1 << 20;

#[test]
fn a_wide_row_of_large_values_stays_within_host_memory() {
    run_alone("sql_hardening::wide_row_alone");
}

#[tokio::test]
#[ignore = "run alone in its own process by a_wide_row_of_large_values_stays_within_host_memory"]
async fn wide_row_alone() {
    let acme = Tenant::new();
    assert_eq!(acme.value("SELECT 1", json!([])).await.unwrap(), "1");
    // (columns, value size, how much the peak may grow): past the column limit; past the
    // statement's 64 MiB budget; and within every SQLite limit, where only the check
    // before copying stops the row (SQLite holds its 40 MiB, the host copies none).
    for (columns, bytes, bound) in [
        (200, 4 << 20, 300 * MIB),
        (100, 1 << 20, 300 * MIB),
        (40, 1 << 20, 64 * MIB),
    ] {
        let values = vec![format!("randomblob({bytes})"); columns].join(", ");
        reset_peak_rss();
        let before = peak_rss();
        let error = acme
            .value(&format!("SELECT {values}"), json!([]))
            .await
            .expect_err("the row is refused");
        let grew = peak_rss().saturating_sub(before);
        if columns > 100 {
            // Past the column limit: refused while it is prepared.
            assert!(error.message.contains("too many columns"), "{error:?}");
        } else {
            assert_eq!(error.code, ErrorCode::QuotaExceeded, "{error:?}");
        }
        eprintln!("{columns} × {bytes} B: peak grew {} MiB", grew / MIB);
        // One row of 200 × 4 MiB used to take the host past 1.6 GB.
        assert!(
            grew < bound,
            "{columns} × {bytes}: peak grew {} MiB",
            grew / MIB
        );
    }
}

#[test]
fn long_log_lines_do_not_keep_their_allocation() {
    run_alone("sql_hardening::long_log_lines_alone");
}

#[tokio::test]
#[ignore = "run alone in its own process by long_log_lines_do_not_keep_their_allocation"]
async fn long_log_lines_alone() {
    let test = sandbox();
    let hostile = test.sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let flood = |lines: usize, line_bytes: usize| Call::Render {
        config: json!({"attack": "log-flood", "lines": lines, "line_bytes": line_bytes}),
        params: vec![],
    };
    let acme = invocation("acme", Grants::all(), Limits::default());
    // Warm: the pool slot, the instance's memory, the log ring.
    let warm = test.sandbox.call(&hostile, &acme, flood(200, 10)).await;
    assert!(warm.outcome_json().is_ok(), "{:?}", warm.outcome_json());
    let before = current_rss();
    let report = test
        .sandbox
        .call(&hostile, &acme, flood(200, 1 << 20))
        .await;
    assert!(report.outcome_json().is_ok(), "{:?}", report.outcome_json());
    assert_eq!(report.logs.len(), 200);
    assert!(report.logs.iter().all(|line| line.message.len() <= 4_100));
    let held = current_rss().saturating_sub(before);
    eprintln!("200 lines of 1 MiB: {} MiB held", held / MIB);
    // The 200 lines are kept (in the report); cut to 4 KiB they are under 1 MiB.
    assert!(held < 48 * MIB, "{} MiB held", held / MIB);
    drop(report);
}
