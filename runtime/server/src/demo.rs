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

/// Events the demo tenant's example handlers take, posted a few times a second so the
/// console is alive on first start: completed orders (sales-metrics), host samples
/// (perf-monitor) and entity changes with a bulk import now and then (entity-feed).
pub async fn traffic(events: std::sync::Arc<crate::events::Events>, tenant: String) {
    use crate::events::{NewEvent, Priority};
    use serde_json::json;

    let random = |n: u64| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes) % n.max(1)
    };
    const HOSTS: [&str; 4] = ["web-1", "web-2", "db-1", "worker-1"];
    let mut tick = tokio::time::interval(Duration::from_millis(400));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for round in 0u64.. {
        tick.tick().await;
        let now = crate::registry::now_ms();
        let mut batch = vec![NewEvent {
            id: format!("demo-order-{now}"),
            name: "order.completed".into(),
            payload: json!({
                "order_id": now,
                "customer_id": random(40) + 1,
                "staff_id": random(5) + 1,
                "total": (random(50_000) as f64) / 100.0 + 5.0,
                "at_ms": now,
            }),
            priority: Priority::Normal,
            key: None,
        }];
        if round % 5 == 0 {
            for (i, host) in HOSTS.iter().enumerate() {
                let load = 20.0 + random(60) as f64 + i as f64 * 5.0;
                batch.push(NewEvent {
                    id: format!("demo-sample-{now}-{host}"),
                    name: "metric.sample".into(),
                    payload: json!({
                        "host": host,
                        "cpu": load.min(100.0),
                        "memory": 40.0 + random(50) as f64,
                        "latency_ms": 20.0 + random(300) as f64,
                    }),
                    priority: Priority::Low,
                    key: Some(format!("host-{host}")),
                });
            }
        }
        if round % 7 == 0 {
            let kind = ["created", "updated", "deleted"][random(3) as usize];
            let entity = ["customer", "invoice", "ticket"][random(3) as usize];
            batch.push(NewEvent {
                id: format!("demo-entity-{now}"),
                name: format!("entity.{kind}"),
                payload: json!({
                    "entity": entity,
                    "entity_id": format!("{}", random(1000)),
                    "fields": {"source": "demo"},
                }),
                priority: Priority::Normal,
                key: None,
            });
        }
        // A bulk import every minute or so: started, progress at high priority, done.
        let step = round % 150;
        if step < 12 {
            let operation = format!("import-{}", round / 150);
            let (name, payload) = match step {
                0 => (
                    "bulk.started",
                    json!({"operation_id": operation, "total": 1000}),
                ),
                11 => ("bulk.completed", json!({"operation_id": operation})),
                n => (
                    "bulk.progress",
                    json!({"operation_id": operation, "done": n * 100}),
                ),
            };
            batch.push(NewEvent {
                id: format!("demo-{operation}-{step}"),
                name: name.into(),
                payload,
                priority: if name == "bulk.progress" {
                    Priority::High
                } else {
                    Priority::Normal
                },
                key: Some(operation),
            });
        }
        if let Err(e) = events.accept(&tenant, batch).await {
            tracing::debug!(error = %e, "demo traffic not accepted");
        }
    }
}
