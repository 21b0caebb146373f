//! The cross-tenant suite: tenant A's guest tries to read, write, invalidate, query and
//! publish into tenant B through every trick we know, on every backend; all of it fails
//! or stays inside A, and B's data is untouched. And the demo tenant's example data.

use std::time::{Duration, Instant};

use plinth_host::capability::db::postgres::{PostgresDb, tenant_names};
use plinth_host::capability::db::{DbValue, SqliteDb, StatementBounds};
use plinth_host::{
    Backends, BackendsConfig, BroadcastConfig, CacheConfig, Call, DbConfig, Grants, Limits,
    Sandbox, SandboxConfig,
};
use plinth_tests::{guest, invocation, unique_tenants};
use serde_json::json;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const POSTGRES_URL: &str = "postgresql://root@127.0.0.1:5432/test";

fn bounds() -> StatementBounds {
    StatementBounds {
        max_rows: 100,
        max_bytes: 1 << 20,
        deadline: Instant::now() + Duration::from_secs(5),
    }
}

/// Runs the suite; returns both tenants' names, for cleaning up.
async fn tenant_a_cannot_reach_tenant_b(
    config: BackendsConfig,
    sql_attacks: impl FnOnce(&str, &std::path::Path) -> Vec<String>,
) -> [String; 2] {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::from_config(&config, dir.path()).unwrap();
    let sandbox = Sandbox::new(
        SandboxConfig {
            pool_instances: 8,
            ..SandboxConfig::default()
        },
        backends.clone(),
    )
    .unwrap();
    let hostile = sandbox.load(&guest("tests/guests/hostile")).unwrap();
    let (a, b) = unique_tenants();

    // B's data.
    backends
        .cache
        .set(&b, "secret", b"b-secret".to_vec(), None)
        .await
        .unwrap();
    backends
        .db
        .execute(&b, "CREATE TABLE secrets (v TEXT)", vec![], bounds())
        .await
        .unwrap();
    backends
        .db
        .execute(
            &b,
            "INSERT INTO secrets VALUES ('b-secret')",
            vec![],
            bounds(),
        )
        .await
        .unwrap();
    let mut b_news = backends.broadcast.subscribe(&b, "news");

    let as_a = invocation(&a, Grants::all(), Limits::default());
    let attack = |name: &str, target: &str, sql: &str| Call::Render {
        config: json!({"attack": name, "target": target, "sql": sql}),
        params: vec![],
    };
    let mut attempts = Vec::new();
    for key in [
        "secret",
        "b:secret",
        "../b:secret",
        "*",
        "{b}:c:secret",
        "plinth:{b}:c:secret",
        "secret\u{0}",
        "b/secret",
        "secret*",
        "SECRET",
    ] {
        attempts.push(attack("cache-get", key, ""));
        attempts.push(attack("cache-set", key, ""));
    }
    for prefix in ["", "*", "s", "../", "plinth:"] {
        attempts.push(attack("cache-invalidate", prefix, ""));
    }
    for topic in [
        "news",
        "../b/news",
        "{b}:b:news",
        "b:news",
        "plinth:{b}:b:news",
    ] {
        attempts.push(attack("publish", topic, ""));
    }
    for statement in sql_attacks(&b, dir.path()) {
        attempts.push(attack("query", "", &statement));
        attempts.push(attack("sql", "", &statement));
    }
    for call in attempts {
        let report = sandbox.call(&hostile, &as_a, call.clone()).await;
        let shown = serde_json::to_string(&report.outcome_json()).unwrap();
        assert!(!shown.contains("b-secret"), "{call:?} reached B: {shown}");
    }

    // B's data is untouched, and B heard nothing.
    assert_eq!(
        backends.cache.get(&b, "secret").await.unwrap().as_deref(),
        Some(&b"b-secret"[..])
    );
    let rows = backends
        .db
        .query(&b, "SELECT v FROM secrets", vec![], bounds())
        .await
        .unwrap();
    assert_eq!(rows.rows, [[DbValue::Text("b-secret".into())]]);
    assert!(
        b_news.try_recv().is_err(),
        "B's subscriber received A's message"
    );
    // What A did stayed in A's namespace.
    assert_eq!(
        backends.cache.get(&a, "secret").await.unwrap(),
        None,
        "A invalidated its own keys last"
    );
    backends.cache.invalidate_prefix(&b, "").await.unwrap();
    [a, b]
}

#[tokio::test]
async fn cross_tenant_suite_on_embedded_backends() {
    tenant_a_cannot_reach_tenant_b(BackendsConfig::default(), |b, dir| {
        let file = dir.join("db").join(format!("{b}.sqlite3"));
        vec![
            format!("ATTACH DATABASE '{}' AS other", file.display()),
            format!("ATTACH DATABASE 'file:{}?mode=ro' AS other", file.display()),
            "SELECT v FROM other.secrets".into(),
            "SELECT v FROM secrets".into(),
            "PRAGMA database_list".into(),
            format!("VACUUM INTO '{}'", dir.join("copy.sqlite3").display()),
        ]
    })
    .await;
}

#[tokio::test]
async fn cross_tenant_suite_on_redis_and_postgres() {
    // Every backend real: Redis cache, Redis pub/sub, PostgreSQL.
    let config = BackendsConfig {
        cache: CacheConfig::Redis {
            url: REDIS_URL.into(),
        },
        db: DbConfig::Postgres {
            url: POSTGRES_URL.into(),
        },
        broadcast: BroadcastConfig::Redis {
            url: REDIS_URL.into(),
        },
    };
    let tenants = tenant_a_cannot_reach_tenant_b(config, |b, _| {
        let (role, schema) = tenant_names(b);
        vec![
            format!("SELECT v FROM {schema}.secrets"),
            format!("SELECT v FROM \"{schema}\".secrets /* quoted */"),
            format!("SELECT v FROM {schema}.secrets -- commented"),
            format!("SET ROLE {role}"),
            format!("SET search_path = {schema}"),
            "SELECT v FROM secrets".into(),
            "SET ROLE root".into(),
            format!("GRANT USAGE ON SCHEMA {schema} TO PUBLIC"),
            "SELECT rolpassword FROM pg_authid".into(),
        ]
    })
    .await;
    let db = PostgresDb::new(POSTGRES_URL).unwrap();
    for tenant in &tenants {
        db.drop_tenant(tenant).await.unwrap();
    }
}

#[tokio::test]
async fn the_demo_tenant_has_data_on_both_databases() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteDb::open(dir.path()).unwrap();
    let postgres = PostgresDb::new(POSTGRES_URL).unwrap();
    let (tenant, _) = unique_tenants();
    for db in [
        &sqlite as &dyn plinth_host::capability::db::DbBackend,
        &postgres,
    ] {
        assert_eq!(
            plinth_server::demo::seed(db, &tenant, 1_800_000_000_000)
                .await
                .unwrap(),
            300
        );
        assert_eq!(
            plinth_server::demo::seed(db, &tenant, 1_800_000_000_000)
                .await
                .unwrap(),
            0,
            "seeding twice adds nothing"
        );
        let by_status = db
            .query(
                &tenant,
                "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status",
                vec![],
                bounds(),
            )
            .await
            .unwrap();
        assert_eq!(by_status.rows.len(), 3, "{by_status:?}");
        let joined = db
            .query(
                &tenant,
                "SELECT s.team, count(*) FROM orders o JOIN staff s ON s.id = o.staff_id GROUP BY s.team ORDER BY s.team",
                vec![],
                bounds(),
            )
            .await
            .unwrap();
        assert_eq!(joined.rows[0][0], DbValue::Text("operations".into()));
    }
    postgres.drop_tenant(&tenant).await.unwrap();
}
