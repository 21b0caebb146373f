//! Example data for a demo tenant: customers, staff and orders, so widgets have
//! something real to show. Portable SQL: the same statements seed SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use plinth_host::BackendError;
use plinth_host::capability::db::{DbBackend, DbValue, StatementBounds};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
     region TEXT NOT NULL, plan TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS staff (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
     team TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, \
     staff_id BIGINT NOT NULL, status TEXT NOT NULL, total DOUBLE PRECISION NOT NULL, \
     created_at BIGINT NOT NULL)",
];

const REGIONS: [&str; 4] = ["emea", "na-east", "na-west", "apac"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const STATUSES: [&str; 4] = ["completed", "completed", "pending", "refunded"];
const STAFF: [(&str, &str); 5] = [
    ("Ada", "sales"),
    ("Grace", "sales"),
    ("Linus", "support"),
    ("Barbara", "support"),
    ("Ken", "operations"),
];

/// Creates and fills the demo tables in `tenant`'s database, once: a database that
/// already has orders is left as it is. Returns the number of orders inserted.
pub async fn seed(db: &dyn DbBackend, tenant: &str, now_ms: i64) -> Result<u64, BackendError> {
    let bounds = || StatementBounds {
        max_rows: 10,
        max_bytes: 1 << 20,
        deadline: Instant::now() + Duration::from_secs(10),
    };
    for statement in SCHEMA {
        db.execute(tenant, statement, vec![], bounds()).await?;
    }
    let existing = db
        .query(tenant, "SELECT count(*) FROM orders", vec![], bounds())
        .await?;
    if existing.rows.first().and_then(|r| r.first()) != Some(&DbValue::Integer(0)) {
        return Ok(0);
    }
    for (i, (name, team)) in STAFF.iter().enumerate() {
        let row = vec![
            DbValue::Integer(i as i64 + 1),
            DbValue::Text((*name).into()),
            DbValue::Text((*team).into()),
        ];
        db.execute(
            tenant,
            "INSERT INTO staff (id, name, team) VALUES ($1, $2, $3)",
            row,
            bounds(),
        )
        .await?;
    }
    for i in 0..40i64 {
        let row = vec![
            DbValue::Integer(i + 1),
            DbValue::Text(format!("Customer {:02}", i + 1)),
            DbValue::Text(REGIONS[(i % 4) as usize].into()),
            DbValue::Text(PLANS[(i % 3) as usize].into()),
        ];
        db.execute(
            tenant,
            "INSERT INTO customers (id, name, region, plan) VALUES ($1, $2, $3, $4)",
            row,
            bounds(),
        )
        .await?;
    }
    // Orders over the last 30 days, with fixed pseudo-random totals.
    let orders = 300i64;
    for i in 0..orders {
        let row = vec![
            DbValue::Integer(i + 1),
            DbValue::Integer(i * 7 % 40 + 1),
            DbValue::Integer(i % 5 + 1),
            DbValue::Text(STATUSES[(i * 3 % 4) as usize].into()),
            DbValue::Real(((i * 7919) % 50_000) as f64 / 100.0 + 5.0),
            DbValue::Integer(now_ms - (i * 8_640_000)),
        ];
        db.execute(
            tenant,
            "INSERT INTO orders (id, customer_id, staff_id, status, total, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            row,
            bounds(),
        )
        .await?;
    }
    Ok(orders as u64)
}
