//! Sales Metrics: a widget and an `order.completed` handler over the tenant's sales tables
//! (`customers`, `staff`, `orders`, the demo tenant's schema).
//!
//! # Event
//!
//! `order.completed`, payload
//!
//! ```json
//! {"order_id": 42, "customer_id": 7, "staff_id": 3, "total": 129.90, "at_ms": 1767225600000}
//! ```
//!
//! `order_id`, `customer_id`, `staff_id` are integers, `total` a number ≥ 0, `at_ms`
//! (optional, milliseconds since the Unix epoch) defaults to the event's `occurred_at_ms`.
//! Unknown fields are ignored. A missing or mistyped field is `invalid-input`, which the
//! host dead-letters at once; any other event name is `rejected`.
//!
//! The handler creates the three tables if they are missing (`CREATE TABLE IF NOT EXISTS`,
//! allowed with `db:write`), inserts the order as `completed` with `ON CONFLICT (id) DO
//! NOTHING` (a redelivered or repeated order keeps its first row), recomputes the summary,
//! clears the widget's cache keys (`sales:` prefix), stores the summary under
//! `sales:summary` and publishes on topic `sales`:
//!
//! ```json
//! {"type": "order", "order_id": 42, "views": [<the four metric cards>]}
//! ```
//!
//! Each card is the JSON the host gives for a render's view (`{"kind": "metric_card",
//! "title", "value", "unit", "change_percent", "trend", "caption"}`), with the same numbers
//! render shows for the same database state. A redelivery does the same work again,
//! so the outcome does not depend on how many times an order arrives.
//!
//! # Render
//!
//! In this order: metric cards Revenue (USD), Orders, Customers and Average order value,
//! each with its change against the previous period; a line chart of revenue per hour and
//! a bar chart of orders per hour; a table of the top staff (name, orders, revenue); a pie
//! chart of customers by plan. Only `completed` orders count.
//!
//! The period is the 24 whole UTC hours ending with the hour of the newest completed
//! order, compared with the 24 hours before: anchored on the data, not on a clock, so the
//! handler and render agree and a quiet shop still shows its last day of sales.

use plinth_sdk::prelude::*;
use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;
const PERIOD_HOURS: i64 = 24;
const PERIOD_MS: i64 = PERIOD_HOURS * HOUR_MS;

/// Every key this widget caches starts with this, so one `invalidate-prefix` clears them.
const CACHE_PREFIX: &str = "sales:";
const SUMMARY_KEY: &str = "sales:summary";
const DETAIL_KEY: &str = "sales:detail";
/// Orders written by something other than this handler (a seed, another service) are
/// picked up within this long, even though only the handler invalidates the cache.
const CACHE_TTL_MS: u64 = 5 * 60_000;

const TOPIC: &str = "sales";
/// The currency is fixed rather than configured: the handler has no config, and its
/// broadcast cards must equal the ones render returns.
const CURRENCY: &str = "USD";
const TOP_STAFF: i64 = 5;
const MAX_SEGMENTS: i64 = 10;

/// The demo tenant's schema (runtime/server/src/demo.rs), statement for statement, and an
/// index for this widget's queries, which all read completed orders by time: orders keep
/// arriving, and without it every event would scan them all.
const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
     region TEXT NOT NULL, plan TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS staff (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
     team TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, \
     staff_id BIGINT NOT NULL, status TEXT NOT NULL, total DOUBLE PRECISION NOT NULL, \
     created_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS orders_status_created_at ON orders (status, created_at)",
];

/// Reads the columns this extension uses, so a table that exists but does not fit fails
/// here with the database's own message. One per statement of [`SCHEMA`].
const PROBES: [&str; 4] = [
    "SELECT id, plan FROM customers LIMIT 1",
    "SELECT id, name FROM staff LIMIT 1",
    "SELECT id, customer_id, staff_id, status, total, created_at FROM orders LIMIT 1",
    "SELECT status, created_at FROM orders LIMIT 1",
];

/// Set once the schema is in place, so events do not repeat the DDL: on PostgreSQL even
/// `CREATE INDEX IF NOT EXISTS` locks the table against inserts. Outside [`CACHE_PREFIX`],
/// which every order clears; it expires so a dropped table is recreated within the hour.
const SCHEMA_MARK_KEY: &str = "sales-metrics:schema:1";
const SCHEMA_MARK_TTL_MS: u64 = 3_600_000;

#[derive(Deserialize)]
struct OrderCompleted {
    order_id: i64,
    customer_id: i64,
    staff_id: i64,
    total: f64,
    #[serde(default)]
    at_ms: Option<i64>,
}

/// One period's numbers, rounded as shown (cents, whole counts).
#[derive(Serialize, Deserialize, Default)]
struct Totals {
    revenue: f64,
    orders: i64,
    customers: i64,
    average_order_value: f64,
}

/// What the metric cards show; cached as JSON under [`SUMMARY_KEY`].
#[derive(Serialize, Deserialize)]
struct Summary {
    /// `[start, end)` of the current period; `None` while there are no completed orders.
    period: Option<(i64, i64)>,
    current: Totals,
    previous: Totals,
}

#[derive(Serialize, Deserialize)]
struct StaffRow {
    name: String,
    orders: i64,
    revenue: f64,
}

/// What the charts, the table and the pie show; cached under [`DETAIL_KEY`] for the
/// period it was computed for.
#[derive(Serialize, Deserialize)]
struct Detail {
    period: Option<(i64, i64)>,
    hourly_revenue: Vec<f64>,
    hourly_orders: Vec<f64>,
    staff: Vec<StaffRow>,
    segments: Vec<(String, f64)>,
}

/// The same error with `context` in front of its message.
fn context(error: Error, context: &str) -> Error {
    let wrap = |message: String| format!("{context}: {message}");
    match error {
        Error::InvalidInput(m) => Error::InvalidInput(wrap(m)),
        Error::NotFound(m) => Error::NotFound(wrap(m)),
        Error::Denied(m) => Error::Denied(wrap(m)),
        Error::QuotaExceeded(m) => Error::QuotaExceeded(wrap(m)),
        Error::Unavailable(m) => Error::Unavailable(wrap(m)),
        Error::Timeout(m) => Error::Timeout(wrap(m)),
        Error::Rejected(m) => Error::Rejected(wrap(m)),
        Error::Internal(m) => Error::Internal(wrap(m)),
    }
}

/// Creates the sales tables and the index when missing. A failed `CREATE` is fine when
/// what it creates is there anyway (an installation without `db:write`, or two first
/// calls racing on PostgreSQL); otherwise the error says which tables are missing.
fn ensure_schema() -> Result<(), Error> {
    if cache::get(SCHEMA_MARK_KEY)?.is_some() {
        return Ok(());
    }
    for (ddl, probe) in SCHEMA.iter().zip(PROBES) {
        if let Err(error) = db::execute(ddl, &[]) {
            db::query(probe, &[]).map_err(|_| {
                context(
                    error,
                    "the sales tables (customers, staff, orders) are missing and cannot be created",
                )
            })?;
        }
    }
    cache::set(SCHEMA_MARK_KEY, b"1", Some(SCHEMA_MARK_TTL_MS))
}

fn round_to(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

fn cell_f64(rows: &db::Rows, row: usize, column: usize) -> f64 {
    rows.rows
        .get(row)
        .and_then(|r| r.get(column))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

fn cell_i64(rows: &db::Rows, row: usize, column: usize) -> i64 {
    rows.rows
        .get(row)
        .and_then(|r| r.get(column))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Completed orders in `[start, end)`, for `$1`, `$2`.
const IN_PERIOD: &str = "o.status = 'completed' AND o.created_at >= $1 AND o.created_at < $2";

fn period_params((start, end): (i64, i64)) -> [Value; 2] {
    [Value::Integer(start), Value::Integer(end)]
}

fn totals(period: (i64, i64)) -> Result<Totals, Error> {
    let rows = db::query(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(o.total), 0.0), COUNT(DISTINCT o.customer_id) \
             FROM orders o WHERE {IN_PERIOD}"
        ),
        &period_params(period),
    )?;
    let (orders, revenue) = (cell_i64(&rows, 0, 0), cell_f64(&rows, 0, 1));
    Ok(Totals {
        revenue: round_to(revenue, 2),
        orders,
        customers: cell_i64(&rows, 0, 2),
        average_order_value: if orders == 0 {
            0.0
        } else {
            round_to(revenue / orders as f64, 2)
        },
    })
}

/// The current period: the [`PERIOD_HOURS`] whole UTC hours up to and including the
/// hour of the newest completed order.
fn current_period() -> Result<Option<(i64, i64)>, Error> {
    let rows = db::query(
        "SELECT MAX(created_at) FROM orders WHERE status = 'completed'",
        &[],
    )?;
    Ok(rows
        .rows
        .first()
        .and_then(|row| row.first())
        .and_then(Value::as_i64)
        .map(|newest| {
            let end = (newest.div_euclid(HOUR_MS) + 1) * HOUR_MS;
            (end - PERIOD_MS, end)
        }))
}

fn compute_summary() -> Result<Summary, Error> {
    let Some(period) = current_period()? else {
        return Ok(Summary {
            period: None,
            current: Totals::default(),
            previous: Totals::default(),
        });
    };
    Ok(Summary {
        period: Some(period),
        current: totals(period)?,
        previous: totals((period.0 - PERIOD_MS, period.0))?,
    })
}

fn compute_detail(period: Option<(i64, i64)>) -> Result<Detail, Error> {
    let Some(period) = period else {
        return Ok(Detail {
            period,
            hourly_revenue: Vec::new(),
            hourly_orders: Vec::new(),
            staff: Vec::new(),
            segments: Vec::new(),
        });
    };
    let params = period_params(period);
    let mut hourly_revenue = vec![0.0; PERIOD_HOURS as usize];
    let mut hourly_orders = vec![0.0; PERIOD_HOURS as usize];
    let hours = db::query(
        &format!(
            "SELECT (o.created_at - $1) / {HOUR_MS}, COUNT(*), SUM(o.total) FROM orders o \
             WHERE {IN_PERIOD} GROUP BY 1 ORDER BY 1 LIMIT {PERIOD_HOURS}"
        ),
        &params,
    )?;
    for row in &hours.rows {
        let hour = row.first().and_then(Value::as_i64).unwrap_or(-1);
        if (0..PERIOD_HOURS).contains(&hour) {
            let slot = hour as usize;
            hourly_orders[slot] = row.get(1).and_then(Value::as_f64).unwrap_or(0.0);
            hourly_revenue[slot] = round_to(row.get(2).and_then(Value::as_f64).unwrap_or(0.0), 2);
        }
    }
    let staff = db::query(
        &format!(
            "SELECT o.staff_id, s.name, COUNT(*), SUM(o.total) FROM orders o \
             LEFT JOIN staff s ON s.id = o.staff_id WHERE {IN_PERIOD} \
             GROUP BY o.staff_id, s.name ORDER BY 4 DESC, 1 LIMIT {TOP_STAFF}"
        ),
        &params,
    )?;
    let staff = staff
        .rows
        .iter()
        .map(|row| StaffRow {
            // An order may name staff the staff table does not know (yet).
            name: row.get(1).and_then(Value::as_str).map_or_else(
                || {
                    format!(
                        "Staff #{}",
                        row.first().and_then(Value::as_i64).unwrap_or(0)
                    )
                },
                str::to_owned,
            ),
            orders: row.get(2).and_then(Value::as_i64).unwrap_or(0),
            revenue: round_to(row.get(3).and_then(Value::as_f64).unwrap_or(0.0), 2),
        })
        .collect();
    let segments = db::query(
        &format!(
            "SELECT COALESCE(c.plan, 'unknown'), COUNT(DISTINCT o.customer_id) FROM orders o \
             LEFT JOIN customers c ON c.id = o.customer_id WHERE {IN_PERIOD} \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_SEGMENTS}"
        ),
        &params,
    )?;
    let segments = segments
        .rows
        .iter()
        .map(|row| {
            (
                row.first()
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned(),
                row.get(1).and_then(Value::as_f64).unwrap_or(0.0),
            )
        })
        .collect();
    Ok(Detail {
        period: Some(period),
        hourly_revenue,
        hourly_orders,
        staff,
        segments,
    })
}

/// Caches `value` and returns what a reader of the cache gets back: the handler's
/// broadcast and every render then build their cards from the very same bytes, so the
/// numbers agree to the last bit whatever JSON does to floats.
fn cache_canonical<T: Serialize + for<'de> Deserialize<'de>>(
    key: &str,
    value: &T,
) -> Result<T, Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
    cache::set(key, &bytes, Some(CACHE_TTL_MS))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Internal(e.to_string()))
}

/// The cached value under `key`; an unreadable one (an older format) counts as missing.
fn cached<T: for<'de> Deserialize<'de>>(key: &str) -> Result<Option<T>, Error> {
    Ok(cache::get(key)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn utc(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days: the proleptic Gregorian date of a day number.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        ms_of_day / HOUR_MS,
        ms_of_day % HOUR_MS / 60_000
    )
}

/// Change from `previous` to `current` in percent (one decimal); `None` when there was
/// nothing before to compare with.
fn change_percent(current: f64, previous: f64) -> Option<f64> {
    if previous == 0.0 {
        (current == 0.0).then_some(0.0)
    } else {
        Some(round_to((current - previous) / previous * 100.0, 1))
    }
}

/// The four cards, a pure function of the summary: render and the broadcast both call it.
fn cards(summary: &Summary) -> Vec<MetricCard> {
    let caption = match summary.period {
        Some((_, end)) => format!("24 h to {} UTC vs the 24 h before", utc(end)),
        None => "no completed orders yet".to_owned(),
    };
    let card = |title: &str, current: f64, previous: f64, unit: Option<&str>| {
        let mut card = MetricCard::new(title, current).caption(caption.clone());
        if let Some(unit) = unit {
            card = card.unit(unit);
        }
        match change_percent(current, previous) {
            Some(percent) => card.change(percent),
            // Up from nothing: a direction without a finite percentage.
            None => MetricCard {
                trend: Some(Trend::Up),
                ..card
            },
        }
    };
    let (now, before) = (&summary.current, &summary.previous);
    vec![
        card("Revenue", now.revenue, before.revenue, Some(CURRENCY)),
        card("Orders", now.orders as f64, before.orders as f64, None),
        card(
            "Customers",
            now.customers as f64,
            before.customers as f64,
            None,
        ),
        card(
            "Average order value",
            now.average_order_value,
            before.average_order_value,
            Some(CURRENCY),
        ),
    ]
}

/// A metric card as the host's JSON for views (runtime/host/src/json.rs), so a browser
/// can draw a broadcast card with the code that draws a rendered one.
fn card_json(card: &MetricCard) -> serde_json::Value {
    let trend = card.trend.as_ref().map(|trend| match trend {
        Trend::Up => "up",
        Trend::Down => "down",
        Trend::Flat => "flat",
    });
    serde_json::json!({
        "kind": "metric_card",
        "title": card.title,
        "value": card.value,
        "unit": card.unit,
        "change_percent": card.change_percent,
        "trend": trend,
        "caption": card.caption,
    })
}

fn hour_labels(period: Option<(i64, i64)>) -> Vec<String> {
    let Some((start, _)) = period else {
        return Vec::new();
    };
    (0..PERIOD_HOURS)
        .map(|hour| {
            let at = start + hour * HOUR_MS;
            format!("{:02}:00", at.div_euclid(HOUR_MS).rem_euclid(24))
        })
        .collect()
}

struct SalesMetrics;

impl Extension for SalesMetrics {
    fn describe() -> Descriptor {
        Descriptor::new("sales-metrics", "Sales Metrics")
            .version("1.0.0")
            .description(
                "Revenue, orders, customers and average order value over the last 24 hours, \
                 updated live from order.completed events.",
            )
            .category("sales")
            .icon("chart-line")
            .size(12, 6)
            .config_schema(&serde_json::json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false
            }))
            .uses("cache")
            .uses("db")
            .uses("db:write")
            .uses("broadcast")
            .uses("log")
            .handles("order.completed")
    }
}

impl Widget for SalesMetrics {
    fn render(_request: RenderRequest) -> Result<Vec<View>, Error> {
        let summary = match cached::<Summary>(SUMMARY_KEY)? {
            Some(summary) => summary,
            None => {
                ensure_schema()?;
                cache_canonical(SUMMARY_KEY, &compute_summary()?)?
            }
        };
        // The detail is only good for the period it was computed for.
        let detail = match cached::<Detail>(DETAIL_KEY)? {
            Some(detail) if detail.period == summary.period => detail,
            _ => cache_canonical(DETAIL_KEY, &compute_detail(summary.period)?)?,
        };

        let mut views: Vec<View> = cards(&summary).into_iter().map(View::from).collect();
        let labels = hour_labels(detail.period);
        views.push(
            Chart::new("Revenue per hour (UTC)", labels.clone())
                .series("Revenue", detail.hourly_revenue)
                .unit(CURRENCY)
                .line(),
        );
        views.push(
            Chart::new("Orders per hour (UTC)", labels)
                .series("Orders", detail.hourly_orders)
                .bar(),
        );
        let staff = Table::new(
            "Top staff",
            [
                ("name", "Name"),
                ("orders", "Orders"),
                ("revenue", "Revenue"),
            ],
        );
        let staff = detail.staff.into_iter().fold(staff, |table, row| {
            table.row(vec![row.name.into(), row.orders.into(), row.revenue.into()])
        });
        views.push(staff.into());
        let segments = detail
            .segments
            .into_iter()
            .fold(PieChart::new("Customers by plan"), |pie, (plan, count)| {
                pie.slice(plan, count)
            });
        views.push(segments.into());
        Ok(views)
    }
}

impl EventHandler for SalesMetrics {
    fn handle(event: Event) -> Result<(), Error> {
        if event.name != "order.completed" {
            return Err(Error::reject(format!(
                "sales-metrics handles order.completed only, not {:?}",
                event.name
            )));
        }
        let order: OrderCompleted = serde_json::from_str(&event.payload).map_err(|e| {
            Error::invalid(format!(
                "order.completed needs {{\"order_id\": int, \"customer_id\": int, \
                 \"staff_id\": int, \"total\": number, \"at_ms\"?: int}}: {e}"
            ))
        })?;
        if !order.total.is_finite() || order.total < 0.0 {
            return Err(Error::invalid("total must be a number ≥ 0"));
        }
        let at_ms = match order.at_ms {
            Some(at_ms) => at_ms,
            None => i64::try_from(event.occurred_at_ms)
                .map_err(|_| Error::invalid("occurred_at_ms is out of range"))?,
        };
        if at_ms < 0 {
            return Err(Error::invalid("at_ms must be ≥ 0"));
        }

        ensure_schema()?;
        let inserted = db::execute(
            "INSERT INTO orders (id, customer_id, staff_id, status, total, created_at) \
             VALUES ($1, $2, $3, 'completed', $4, $5) ON CONFLICT (id) DO NOTHING",
            &[
                Value::Integer(order.order_id),
                Value::Integer(order.customer_id),
                Value::Integer(order.staff_id),
                Value::Real(order.total),
                Value::Integer(at_ms),
            ],
        )?;
        if inserted == 0 {
            // A redelivery, or an order some other writer recorded first: its row stays
            // as it is, and the summary below is recomputed from it all the same.
            log::info(&format!("order {} was already recorded", order.order_id));
        }

        let summary = compute_summary()?;
        // Everything cached was computed before this order; the detail is rebuilt by the
        // next render.
        cache::invalidate_prefix(CACHE_PREFIX)?;
        let summary = cache_canonical(SUMMARY_KEY, &summary)?;
        let views: Vec<serde_json::Value> = cards(&summary).iter().map(card_json).collect();
        broadcast::publish_json(
            TOPIC,
            &serde_json::json!({"type": "order", "order_id": order.order_id, "views": views}),
        )
    }
}

plinth_sdk::export_extension!(SalesMetrics);
