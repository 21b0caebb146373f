//! The database capability: one test body run against SQLite and PostgreSQL (a real
//! server at 127.0.0.1:5432), and one tenant trying to reach another's data.

use std::time::{Duration, Instant};

use plinth_host::BackendError;
use plinth_host::capability::db::postgres::{PostgresDb, tenant_names};
use plinth_host::capability::db::{DbBackend, DbValue, SqliteDb, StatementBounds};
use plinth_tests::unique_tenants;

/// The PostgreSQL every machine of this project runs (see .ci/run); its user provisions
/// tenants' roles and schemas.
const POSTGRES_URL: &str = "postgresql://root@127.0.0.1:5432/test";

fn bounds(max_rows: usize, within: Duration) -> StatementBounds {
    StatementBounds {
        max_rows,
        max_bytes: 1 << 20,
        deadline: Instant::now() + within,
    }
}

const FOREVER: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";

async fn keeps_the_contract(db: &dyn DbBackend, a: &str, b: &str) {
    let ok = bounds(100, Duration::from_secs(5));
    db.execute(
        a,
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, total DOUBLE PRECISION, note TEXT, raw BYTEA)",
        vec![],
        ok,
    )
    .await
    .unwrap();
    let insert = "INSERT INTO orders (id, total, note, raw) VALUES ($1, $2, $3, $4)";
    let first = vec![
        DbValue::Integer(1),
        DbValue::Real(12.5),
        DbValue::Text("first".into()),
        DbValue::Blob(vec![0, 255]),
    ];
    assert_eq!(db.execute(a, insert, first, ok).await.unwrap(), 1);
    let second = vec![
        DbValue::Integer(2),
        DbValue::Real(7.0),
        DbValue::Null,
        DbValue::Null,
    ];
    assert_eq!(db.execute(a, insert, second, ok).await.unwrap(), 1);

    let rows = db
        .query(
            a,
            "SELECT id, total, note, raw FROM orders ORDER BY id",
            vec![],
            ok,
        )
        .await
        .unwrap();
    assert_eq!(rows.columns, ["id", "total", "note", "raw"]);
    use DbValue::*;
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
    let count = db
        .query(
            a,
            "SELECT count(*) AS n FROM orders WHERE total > $1",
            vec![Real(10.0)],
            ok,
        )
        .await
        .unwrap();
    assert_eq!(count.rows, [[Integer(1)]]);

    // Caps and deadlines.
    let capped = db
        .query(
            a,
            "SELECT id FROM orders",
            vec![],
            bounds(1, Duration::from_secs(5)),
        )
        .await;
    assert!(
        matches!(capped, Err(BackendError::QuotaExceeded(_))),
        "{capped:?}"
    );
    let started = Instant::now();
    let forever = db
        .query(a, FOREVER, vec![], bounds(10, Duration::from_millis(300)))
        .await;
    assert!(
        matches!(forever, Err(BackendError::Timeout(_))),
        "{forever:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // query reads only.
    let write = db.query(a, "DELETE FROM orders", vec![], ok).await;
    assert!(
        matches!(write, Err(BackendError::InvalidInput(_))),
        "{write:?}"
    );
    assert_eq!(
        db.query(a, "SELECT count(*) FROM orders", vec![], ok)
            .await
            .unwrap()
            .rows,
        [[Integer(2)]]
    );

    // Another tenant has its own database: the table is not there.
    let other = db.query(b, "SELECT * FROM orders", vec![], ok).await;
    assert!(
        matches!(other, Err(BackendError::InvalidInput(_))),
        "{other:?}"
    );
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = unique_tenants();
    keeps_the_contract(&SqliteDb::open(dir.path()).unwrap(), &a, &b).await;
}

#[tokio::test]
async fn postgres_keeps_the_contract() {
    let (a, b) = unique_tenants();
    let db = PostgresDb::new(POSTGRES_URL).unwrap();
    keeps_the_contract(&db, &a, &b).await;
    for tenant in [&a, &b] {
        db.drop_tenant(tenant).await.unwrap();
    }
    let gone = db
        .query(
            &a,
            "SELECT * FROM orders",
            vec![],
            bounds(1, Duration::from_secs(5)),
        )
        .await;
    assert!(
        matches!(gone, Err(BackendError::InvalidInput(_))),
        "a dropped tenant starts empty: {gone:?}"
    );
    db.drop_tenant(&a).await.unwrap();
}

#[tokio::test]
async fn postgres_keeps_tenants_apart_whatever_they_try() {
    let (a, b) = unique_tenants();
    let db = PostgresDb::new(POSTGRES_URL).unwrap();
    let ok = bounds(100, Duration::from_secs(5));
    db.execute(&a, "CREATE TABLE secrets (v TEXT)", vec![], ok)
        .await
        .unwrap();
    db.execute(&a, "INSERT INTO secrets VALUES ('a-only')", vec![], ok)
        .await
        .unwrap();
    db.execute(&b, "CREATE TABLE mine (v TEXT)", vec![], ok)
        .await
        .unwrap();
    let (role_a, schema_a) = tenant_names(&a);
    let attempts = [
        format!("SELECT v FROM {schema_a}.secrets"),
        format!("SELECT v FROM \"{schema_a}\".\"secrets\""),
        format!("SELECT v FROM {schema_a}.secrets -- comment"),
        format!("SELECT v FROM /* hidden */ {schema_a}.secrets"),
        format!("SET ROLE {role_a}"),
        "SET ROLE postgres".to_owned(),
        "SET ROLE root".to_owned(),
        "SET SESSION AUTHORIZATION root".to_owned(),
        format!("CREATE SCHEMA {schema_a}_copy"),
        "SELECT rolpassword FROM pg_authid".to_owned(),
        format!("ALTER ROLE {role_a} PASSWORD 'x'"),
        format!("DROP SCHEMA {schema_a} CASCADE"),
    ];
    for statement in &attempts {
        let result = db.execute(&b, statement, vec![], ok).await;
        assert!(
            matches!(result, Err(BackendError::Denied(_))),
            "{statement} must be denied, got {result:?}"
        );
    }
    // Switching search_path is allowed but reaches nothing.
    db.execute(&b, &format!("SET search_path = {schema_a}"), vec![], ok)
        .await
        .unwrap();
    let result = db.query(&b, "SELECT v FROM secrets", vec![], ok).await;
    assert!(result.is_err(), "{result:?}");
    // A guest's own SET of statement_timeout does not lift the call's deadline.
    db.execute(&b, "SET statement_timeout = 0", vec![], ok)
        .await
        .unwrap();
    let forever = db
        .query(&b, FOREVER, vec![], bounds(10, Duration::from_millis(300)))
        .await;
    assert!(
        matches!(forever, Err(BackendError::Timeout(_))),
        "{forever:?}"
    );
    // A's data is untouched.
    let rows = db
        .query(&a, "SELECT v FROM secrets", vec![], ok)
        .await
        .unwrap();
    assert_eq!(rows.rows, [[DbValue::Text("a-only".into())]]);
    for tenant in [&a, &b] {
        db.drop_tenant(tenant).await.unwrap();
    }
}

#[tokio::test]
async fn one_tenants_long_statement_does_not_hold_up_another() {
    let (a, b) = unique_tenants();
    let db = PostgresDb::new(POSTGRES_URL).unwrap();
    let ok = bounds(10, Duration::from_secs(5));
    // Both tenants exist and have connections.
    db.query(&a, "SELECT 1", vec![], ok).await.unwrap();
    db.query(&b, "SELECT 1", vec![], ok).await.unwrap();
    let long = async {
        let started = Instant::now();
        db.query(
            &a,
            "SELECT pg_sleep(1.5)::text",
            vec![],
            bounds(10, Duration::from_secs(5)),
        )
        .await
        .unwrap();
        started.elapsed()
    };
    let short = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A second call of the busy tenant waits for its own connection, but B does not.
        let started = Instant::now();
        db.query(&b, "SELECT 2", vec![], bounds(10, Duration::from_secs(5)))
            .await
            .unwrap();
        started.elapsed()
    };
    let busy_again = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        db.query(&a, "SELECT 3", vec![], bounds(10, Duration::from_secs(5)))
            .await
            .unwrap();
    };
    let (long, short, ()) = tokio::join!(long, short, busy_again);
    assert!(long >= Duration::from_millis(1_400), "{long:?}");
    assert!(
        short < Duration::from_millis(700),
        "tenant B waited on tenant A: {short:?}"
    );
    for tenant in [&a, &b] {
        db.drop_tenant(tenant).await.unwrap();
    }
}

#[tokio::test]
async fn postgres_tenants_see_nothing_of_the_catalog() {
    let (a, b) = unique_tenants();
    let db = PostgresDb::new(POSTGRES_URL).unwrap();
    let ok = bounds(100, Duration::from_secs(5));
    db.execute(&b, "CREATE TABLE secret_orders (id BIGINT)", vec![], ok)
        .await
        .unwrap();
    db.execute(
        &b,
        "CREATE VIEW secret_view AS SELECT 42 AS answer",
        vec![],
        ok,
    )
    .await
    .unwrap();
    db.execute(&a, "CREATE TABLE mine (id BIGINT)", vec![], ok)
        .await
        .unwrap();
    for sql in [
        "SELECT nspname FROM pg_namespace",
        "SELECT rolname FROM pg_roles",
        "SELECT rolname FROM pg_authid",
        "SELECT relname, n_live_tup FROM pg_stat_user_tables",
        "SELECT relname FROM pg_class",
        "SELECT tablename FROM pg_tables",
        "SELECT attname FROM pg_attribute",
        "SELECT usename FROM pg_stat_activity",
        "SELECT viewname, definition FROM pg_views",
        "SELECT pg_stat_get_live_tuples(c) FROM (SELECT 'pg_class'::regclass::oid AS c) o",
        "SELECT pg_get_userbyid(10)",
        "SELECT pg_get_viewdef(c) FROM (SELECT 'pg_class'::regclass::oid AS c) o",
        "SELECT pg_total_relation_size('pg_class')",
    ] {
        let error = db.query(&a, sql, vec![], ok).await.unwrap_err();
        assert!(matches!(error, BackendError::Denied(_)), "{sql}: {error:?}");
    }
    // information_schema still answers, with the tenant's own tables only.
    let tables = db
        .query(
            &a,
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
            vec![],
            ok,
        )
        .await
        .unwrap();
    let (_, schema) = tenant_names(&a);
    assert_eq!(
        tables.rows,
        [vec![DbValue::Text(schema), DbValue::Text("mine".into())]]
    );
    // TEMP tables would live outside the tenant's schema.
    let error = db
        .execute(&a, "CREATE TEMP TABLE scratch (x INT)", vec![], ok)
        .await
        .unwrap_err();
    assert!(matches!(error, BackendError::Denied(_)), "{error:?}");
    for tenant in [&a, &b] {
        db.drop_tenant(tenant).await.unwrap();
    }
}
