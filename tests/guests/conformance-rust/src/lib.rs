//! The conformance extension: the widget and handler that every SDK implements alike
//! (tests/guests/conformance-{js,python,c}) and tests/all/conformance.rs runs them all
//! through the same cases. It reads its config, uses the cache and the database, returns
//! a metric card and a table, publishes on tick, records orders from events, and has an
//! action for each way a guest can go wrong.

use plinth_sdk::prelude::*;
use serde::Deserialize;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL NOT NULL)";

#[derive(Deserialize)]
struct Config {
    title: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Order {
    id: String,
    total: f64,
}

struct Conformance;

impl Extension for Conformance {
    fn describe() -> Descriptor {
        Descriptor::new("conformance", "Conformance")
            .version("1.0.0")
            .description("Orders today: the widget every SDK implements alike.")
            .category("testing")
            .icon("check")
            .size(4, 2)
            .config_schema(&serde_json::json!({
                "type": "object", "properties": { "title": { "type": "string" } }
            }))
            .refresh_every_ms(1000)
            .uses("cache")
            .uses("db:write")
            .uses("broadcast")
            .uses("log")
            .handles("order.*")
            .action("loop", "Spins forever.")
            .action("memory-bomb", "Allocates until it cannot.")
            .action("panic", "Fails the way the language fails.")
    }
}

impl Widget for Conformance {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let config: Config = request.config()?;
        let title = match config.title {
            None => "Orders".to_owned(),
            Some(serde_json::Value::String(title)) => title,
            Some(_) => return Err(Error::invalid("config.title must be a string")),
        };
        let limit: i64 = request.param("limit").unwrap_or("10").parse().unwrap_or(10);
        let renders = cache::incr("renders", 1)?;
        db::execute(SCHEMA, &[])?;
        let rows = db::query(
            "SELECT id, total FROM orders ORDER BY id LIMIT $1",
            &[Value::Integer(limit)],
        )?;
        let count = db::query("SELECT COUNT(*) FROM orders", &[])?.rows[0][0].as_i64();
        let mut table = Table::new("Orders", [("id", "Order"), ("total", "Total")])
            .total_rows(count.unwrap_or(0) as u64);
        for row in rows.rows {
            table = table.row(row);
        }
        Ok(vec![
            MetricCard::new(title, renders as f64)
                .caption("renders")
                .into(),
            table.into(),
        ])
    }

    fn on_tick(tick: Tick) -> Result<(), Error> {
        db::execute(SCHEMA, &[])?;
        let rows = db::query(
            "SELECT COUNT(*), COALESCE(SUM(total), 0.0) FROM orders",
            &[],
        )?;
        let count = rows.rows[0][0].as_f64().unwrap_or(0.0) as i64;
        let revenue = rows.rows[0][1].as_f64().unwrap_or(0.0);
        let summary = serde_json::json!({
            "sequence": tick.sequence, "orders": count, "revenue": revenue
        });
        cache::set_json("summary", &summary, None)?;
        broadcast::publish_json("orders", &summary)?;
        log::info(&format!("tick {}: {count} orders", tick.sequence));
        Ok(())
    }

    fn invoke(request: ActionRequest) -> Result<ActionResponse, Error> {
        match request.name.as_str() {
            "loop" => loop {
                std::hint::black_box(());
            },
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "panic" => panic!("fails on purpose"),
            other => Err(Error::NotFound(format!("no action {other}"))),
        }
    }
}

impl EventHandler for Conformance {
    fn handle(event: Event) -> Result<(), Error> {
        if event.name != "order.completed" {
            return Ok(());
        }
        let order: Order = event
            .payload_json()
            .map_err(|_| Error::reject("an order needs a string id and a numeric total"))?;
        db::execute(SCHEMA, &[])?;
        db::execute(
            "INSERT INTO orders (id, total) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[Value::Text(order.id.clone()), Value::Real(order.total)],
        )?;
        cache::invalidate_prefix("summary")?;
        broadcast::publish_json("orders", &serde_json::json!({ "completed": order.id }))
    }
}

plinth_sdk::export_extension!(Conformance);
