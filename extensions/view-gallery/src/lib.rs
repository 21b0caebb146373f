//! View gallery: one `render` that returns every view kind of the contract once, in the
//! contract's order (metric card, KPI card, line chart, bar chart, pie chart, sparkline,
//! table, gauge, progress bar, heatmap, custom), with made-up but plausible data. The
//! console's demo dashboard and its browser tests use it to show that every kind draws.
//!
//! # Live data
//!
//! Every tick adds one to the counter `view-gallery:tick` in the tenant cache and keeps
//! the tick's due time under `view-gallery:last-tick-ms`. Every number is a pure function
//! of that counter and the config, so each tick moves the data a little (the latency
//! chart and the sparkline scroll by one point, a new order tops the table, the gauge,
//! the KPI's status and the heatmap's hot cell move) and the server's push after the tick
//! shows it, while two renders between ticks are identical. The cache is the tenant's, so
//! two installations in one tenant advance the same counter. A render that cannot read
//! the cache (the backend is down) carries on at tick 0 rather than failing.
//!
//! # Config
//!
//! `headline` titles the metric card and is the note of the table's first row and the
//! `headline` of the custom document: it is text, and the console must show it as text
//! (the browser tests install a hostile one). `currency` is the unit of money, `target`
//! the KPI card's monthly target, `rows` the table's length (1..=100).
//!
//! # Action
//!
//! `export`, body `{"format": "json" | "csv"}` (`json` when the body or the format is
//! absent): the table as shown, as a JSON array of objects keyed by column
//! (`view-gallery-orders.json`) or as CSV with a header row (`view-gallery-orders.csv`).
//! CSV fields are quoted as RFC 4180 says, and a text cell a spreadsheet would read as a
//! formula (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`.

use plinth_sdk::prelude::*;
use serde::Deserialize;

/// Ticks seen so far (a counter of the tenant cache).
const TICK_KEY: &str = "view-gallery:tick";
/// The last tick's due time, milliseconds since the Unix epoch, as decimal text.
const LAST_TICK_KEY: &str = "view-gallery:last-tick-ms";
/// The schema's bounds on `rows`, enforced here too for runs that skip validation.
const MAX_ROWS: f64 = 100.0;
/// Revenue of the month before, what the metric card's change compares against.
const LAST_MONTH_REVENUE: f64 = 46_000.0;

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_headline")]
    headline: String,
    #[serde(default = "default_currency")]
    currency: String,
    #[serde(default = "default_target")]
    target: f64,
    /// A number so that `25.0`, which JSON Schema counts as an integer, is read too.
    #[serde(default = "default_rows")]
    rows: f64,
}

fn default_headline() -> String {
    "Revenue".into()
}

fn default_currency() -> String {
    "USD".into()
}

fn default_target() -> f64 {
    50_000.0
}

fn default_rows() -> f64 {
    25.0
}

impl Config {
    fn rows(&self) -> u64 {
        self.rows.clamp(1.0, MAX_ROWS) as u64
    }

    fn target(&self) -> f64 {
        self.target.max(0.0)
    }
}

fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "headline": {
                "type": "string", "title": "Headline",
                "description": "Title of the first card",
                "maxLength": 120, "default": "Revenue"
            },
            "currency": {
                "type": "string", "title": "Currency",
                "enum": ["USD", "EUR", "GBP"], "default": "USD"
            },
            "target": {
                "type": "number", "title": "Monthly target",
                "minimum": 0, "default": 50000
            },
            "rows": {
                "type": "integer", "title": "Table rows",
                "minimum": 1, "maximum": 100, "default": 25
            }
        },
        "additionalProperties": false
    })
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fixed pseudo-random number in `[0, 1)` for the given integers.
fn noise(parts: &[u64]) -> f64 {
    let hash = parts.iter().fold(0x5EED, |acc, part| mix(acc ^ part));
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Month-to-date revenue at tick `t`: swings between about 43 000 and 51 500, so the
/// KPI card against the default target of 50 000 passes through every status.
fn revenue(t: u64) -> f64 {
    round(
        47_500.0 + 3_500.0 * (t as f64 / 6.0).sin() + 800.0 * (noise(&[1, t]) - 0.5),
        2,
    )
}

const REGIONS: [&str; 5] = ["EMEA", "NA East", "NA West", "APAC", "LATAM"];
const LAST_QUARTER: [f64; 5] = [182_000.0, 146_000.0, 121_000.0, 98_000.0, 41_000.0];
const SOURCES: [(&str, f64); 5] = [
    ("Organic search", 42.0),
    ("Direct", 23.0),
    ("Referral", 15.0),
    ("Social", 12.0),
    ("Email", 8.0),
];
const CUSTOMERS: [&str; 10] = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Vandelay Imports",
    "Soylent Foods",
    "Tyrell Systems",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One row of the orders table.
struct Order {
    id: u64,
    /// None for a guest checkout.
    customer: Option<&'static str>,
    items: i64,
    total: f64,
    note: Option<String>,
}

const COLUMNS: [(&str, &str); 5] = [
    ("order", "Order"),
    ("customer", "Customer"),
    ("items", "Items"),
    ("total", "Total"),
    ("note", "Note"),
];

impl Order {
    fn cells(&self) -> Vec<Value> {
        vec![
            format!("ORD-{}", self.id).into(),
            self.customer.into(),
            self.items.into(),
            self.total.into(),
            self.note.clone().into(),
        ]
    }
}

/// The gallery at one tick for one config.
struct Gallery {
    t: u64,
    last_tick_ms: Option<i64>,
    config: Config,
}

impl Gallery {
    /// Reads the tick counter; a cache that cannot be read counts as no ticks yet.
    fn load(config: Config) -> Self {
        let t = cache::get_i64(TICK_KEY).ok().flatten().unwrap_or(0).max(0) as u64;
        let last_tick_ms = cache::get_i64(LAST_TICK_KEY).ok().flatten();
        Gallery {
            t,
            last_tick_ms,
            config,
        }
    }

    fn views(&self) -> Vec<View> {
        vec![
            self.metric_card(),
            self.kpi_card(),
            self.line_chart(),
            self.bar_chart(),
            self.pie_chart(),
            self.sparkline(),
            self.table(),
            self.gauge(),
            self.progress_bar(),
            self.heatmap(),
            self.custom(),
        ]
    }

    fn metric_card(&self) -> View {
        let value = revenue(self.t);
        let change = round((value - LAST_MONTH_REVENUE) * 100.0 / LAST_MONTH_REVENUE, 1);
        MetricCard::new(self.config.headline.clone(), value)
            .unit(self.config.currency.clone())
            .change(change)
            .caption(format!(
                "Month to date, against last month (tick {})",
                self.t
            ))
            .into()
    }

    fn kpi_card(&self) -> View {
        KpiCard::new("Revenue vs target", revenue(self.t), self.config.target())
            .unit(self.config.currency.clone())
            .into()
    }

    /// Twelve five-minute points ending now; one point further on every tick.
    fn line_chart(&self) -> View {
        let labels = (0..12).map(|i| match 55 - i * 5 {
            0 => "now".to_string(),
            minutes => format!("-{minutes}m"),
        });
        let (mut p50, mut p95) = (Vec::new(), Vec::new());
        for i in 0..12 {
            let k = self.t + i;
            let median = 120.0 + 25.0 * (k as f64 * 0.5).sin() + 15.0 * noise(&[2, k]);
            p50.push(round(median, 1));
            p95.push(round(median * 2.0 + 40.0 + 60.0 * noise(&[3, k]), 1));
        }
        Chart::new("Response time, last hour", labels)
            .series("p50", p50)
            .series("p95", p95)
            .unit("ms")
            .line()
    }

    fn bar_chart(&self) -> View {
        let this_quarter = LAST_QUARTER
            .iter()
            .enumerate()
            .map(|(i, last)| {
                let growth = 0.95
                    + 0.15 * noise(&[4, i as u64])
                    + 0.04 * (self.t as f64 / 4.0 + i as f64).sin();
                (last * growth).round()
            })
            .collect();
        Chart::new("Revenue by region", REGIONS)
            .series("Last quarter", LAST_QUARTER.to_vec())
            .series("This quarter", this_quarter)
            .unit(self.config.currency.clone())
            .bar()
    }

    fn pie_chart(&self) -> View {
        SOURCES
            .iter()
            .enumerate()
            .fold(
                PieChart::new("Traffic sources"),
                |pie, (i, (label, share))| {
                    let wobble = 1.0 + 0.15 * (self.t as f64 / 5.0 + i as f64 * 1.3).sin();
                    pie.slice(*label, round(share * wobble, 1))
                },
            )
            .into()
    }

    /// Twenty points ending now; one point further on every tick.
    fn sparkline(&self) -> View {
        let points = (0..20)
            .map(|i| {
                let k = self.t + i;
                (30.0 + 12.0 * (k as f64 / 3.0).sin() + 8.0 * noise(&[5, k])).round()
            })
            .collect();
        Sparkline::new("Sign-ups per minute", points).into()
    }

    /// The newest orders first; one new order arrives on every tick. An order keeps its
    /// data as it moves down, as a real one would.
    fn orders(&self) -> Vec<Order> {
        let newest = 10_480 + self.t;
        (0..self.config.rows())
            .map(|i| {
                let id = newest - i;
                let customer = (noise(&[6, id]) >= 0.12)
                    .then(|| CUSTOMERS[(noise(&[7, id]) * CUSTOMERS.len() as f64) as usize]);
                let items = 1 + (noise(&[8, id]) * 6.0) as i64;
                let total = round(items as f64 * (9.5 + 80.0 * noise(&[9, id])), 2);
                let note = if i == 0 {
                    Some(self.config.headline.clone())
                } else {
                    match id % 7 {
                        0 => Some("Gift wrap".to_string()),
                        3 => Some("Express shipping".to_string()),
                        5 => Some("Paid by invoice, \"net 30\"".to_string()),
                        _ => None,
                    }
                };
                Order {
                    id,
                    customer,
                    items,
                    total,
                    note,
                }
            })
            .collect()
    }

    fn columns(&self) -> Vec<(String, String)> {
        COLUMNS
            .iter()
            .map(|(key, title)| {
                let title = if *key == "total" {
                    format!("{title} ({})", self.config.currency)
                } else {
                    title.to_string()
                };
                (key.to_string(), title)
            })
            .collect()
    }

    fn table(&self) -> View {
        let orders = self.orders();
        let total = orders.len() as u64;
        orders
            .iter()
            .fold(
                Table::new("Recent orders", self.columns()),
                |table, order| table.row(order.cells()),
            )
            .total_rows(total)
            .into()
    }

    fn gauge(&self) -> View {
        let load = 58.0 + 30.0 * (self.t as f64 / 4.0).sin() + 8.0 * noise(&[10, self.t]);
        Gauge::new("CPU load", round(load.clamp(0.0, 100.0), 1), 0.0, 100.0)
            .unit("%")
            .threshold(0.0, Status::Ok)
            .threshold(70.0, Status::Warning)
            .threshold(90.0, Status::Critical)
            .into()
    }

    fn progress_bar(&self) -> View {
        let done = (self.t % 1001 * 73 + 180) % 1001;
        ProgressBar::new("Catalogue sync", done as f64, 1000.0)
            .label(format!("{done} of 1000 products"))
            .into()
    }

    /// Orders per weekday and hour: a lunch and an evening peak, quieter weekends, a
    /// little jitter on every tick and a hot cell that walks through the week.
    fn heatmap(&self) -> View {
        let bump = |hour: f64, centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
        let hot = (self.t / 24 % 7, self.t % 24);
        let values = (0..7u64)
            .map(|day| {
                let weekday = if day >= 5 { 0.6 } else { 1.0 };
                (0..24u64)
                    .map(|hour| {
                        let h = hour as f64;
                        let profile = 4.0
                            + 10.0 * bump(h, 9.0, 2.0)
                            + 30.0 * bump(h, 13.0, 2.5)
                            + 25.0 * bump(h, 20.0, 2.0);
                        let jitter = 4.0 * noise(&[11, day, hour, self.t]);
                        let spike = if (day, hour) == hot { 15.0 } else { 0.0 };
                        (weekday * profile + jitter + spike).round()
                    })
                    .collect()
            })
            .collect();
        let hours = (0..24).map(|h| format!("{h:02}"));
        Heatmap::new("Orders by hour", hours, DAYS, values).into()
    }

    fn custom(&self) -> View {
        let value = revenue(self.t);
        let target = self.config.target();
        let attainment = (target > 0.0).then(|| round(value * 100.0 / target, 1));
        let shares: f64 = SOURCES.iter().map(|(_, share)| share).sum();
        View::custom(&serde_json::json!({
            "type": "view-gallery/summary",
            "headline": self.config.headline,
            "tick": self.t,
            "last_tick_ms": self.last_tick_ms,
            "revenue": {
                "value": value,
                "currency": self.config.currency,
                "target": target,
                "attainment_percent": attainment,
            },
            "sources": SOURCES
                .iter()
                .map(|(name, share)| serde_json::json!({
                    "name": name,
                    "share": round(share / shares, 2),
                }))
                .collect::<Vec<_>>(),
            "flags": {"demo": true, "live": self.t > 0},
        }))
    }
}

/// A CSV field, quoted when it must be, defused when a spreadsheet would run it.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn export_csv(orders: &[Order]) -> String {
    let mut csv = COLUMNS
        .iter()
        .map(|(key, _)| *key)
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for order in orders {
        csv.push_str(&format!(
            "ORD-{},{},{},{:.2},{}\n",
            order.id,
            order.customer.map(csv_field).unwrap_or_default(),
            order.items,
            order.total,
            order.note.as_deref().map(csv_field).unwrap_or_default(),
        ));
    }
    csv
}

fn export_json(orders: &[Order]) -> serde_json::Value {
    orders
        .iter()
        .map(|order| {
            serde_json::json!({
                "order": format!("ORD-{}", order.id),
                "customer": order.customer,
                "items": order.items,
                "total": order.total,
                "note": order.note,
            })
        })
        .collect()
}

struct ViewGallery;

impl Extension for ViewGallery {
    fn describe() -> Descriptor {
        Descriptor::new("view-gallery", "View gallery")
            .version("1.0.0")
            .description("Every view kind of the contract once, with live demo data")
            .category("demo")
            .icon("layout-grid")
            .size(12, 10)
            .refresh_every_ms(5_000)
            .uses("cache")
            .action(
                "export",
                "The orders table as JSON or CSV: body {\"format\": \"json\" | \"csv\"}",
            )
            .config_schema(&schema())
    }
}

impl Widget for ViewGallery {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        Ok(Gallery::load(request.config()?).views())
    }

    fn on_tick(tick: Tick) -> Result<(), Error> {
        cache::incr(TICK_KEY, 1)?;
        cache::set(
            LAST_TICK_KEY,
            tick.scheduled_at_ms.to_string().as_bytes(),
            None,
        )
    }

    fn invoke(request: ActionRequest) -> Result<ActionResponse, Error> {
        if request.name != "export" {
            return Err(Error::NotFound(format!(
                "no action named {:?}",
                request.name
            )));
        }
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            format: Option<String>,
        }
        let body: Body = if request.body.trim() == "null" {
            Body { format: None }
        } else {
            request.body()?
        };
        let orders = Gallery::load(request.config()?).orders();
        match body.format.as_deref().unwrap_or("json") {
            "json" => Ok(
                ActionResponse::json(&export_json(&orders)).download("view-gallery-orders.json")
            ),
            "csv" => Ok(ActionResponse::text("text/csv", export_csv(&orders))
                .download("view-gallery-orders.csv")),
            other => Err(Error::invalid(format!(
                "format must be \"json\" or \"csv\", not {other:?}"
            ))),
        }
    }
}

plinth_sdk::export_widget!(ViewGallery);

#[cfg(test)]
mod tests {
    use super::*;

    fn gallery(t: u64, config: &str) -> Gallery {
        Gallery {
            t,
            last_tick_ms: None,
            config: serde_json::from_str(config).unwrap(),
        }
    }

    fn kind(view: &View) -> &'static str {
        match view {
            View::MetricCard(_) => "metric_card",
            View::KpiCard(_) => "kpi_card",
            View::LineChart(_) => "line_chart",
            View::BarChart(_) => "bar_chart",
            View::PieChart(_) => "pie_chart",
            View::Sparkline(_) => "sparkline",
            View::Table(_) => "table",
            View::Gauge(_) => "gauge",
            View::ProgressBar(_) => "progress_bar",
            View::Heatmap(_) => "heatmap",
            View::Custom(_) => "custom",
        }
    }

    #[test]
    fn every_kind_once_in_order() {
        let views = gallery(0, "{}").views();
        let kinds: Vec<_> = views.iter().map(kind).collect();
        assert_eq!(
            kinds,
            [
                "metric_card",
                "kpi_card",
                "line_chart",
                "bar_chart",
                "pie_chart",
                "sparkline",
                "table",
                "gauge",
                "progress_bar",
                "heatmap",
                "custom"
            ]
        );
        let View::Table(table) = &views[6] else {
            unreachable!()
        };
        assert_eq!((table.columns.len(), table.rows.len()), (5, 25));
        assert_eq!(table.total_rows, Some(25));
        assert!(
            table
                .rows
                .iter()
                .flatten()
                .any(|c| matches!(c, Value::Null))
        );
        let View::Heatmap(heatmap) = &views[9] else {
            unreachable!()
        };
        assert_eq!((heatmap.values.len(), heatmap.values[0].len()), (7, 24));
        let View::Custom(custom) = &views[10] else {
            unreachable!()
        };
        let custom: serde_json::Value = serde_json::from_str(custom).unwrap();
        assert_eq!(custom["headline"], "Revenue");
    }

    #[test]
    fn headline_is_used_as_given_and_data_moves_with_ticks() {
        let hostile =
            r#"{"headline": "<img src=x onerror=alert(1)>", "rows": 3, "currency": "EUR"}"#;
        let (a, b) = (gallery(7, hostile).views(), gallery(8, hostile).views());
        let View::MetricCard(card) = &a[0] else {
            unreachable!()
        };
        assert_eq!(card.title, "<img src=x onerror=alert(1)>");
        assert_eq!(card.unit.as_deref(), Some("EUR"));
        let View::Table(table) = &a[6] else {
            unreachable!()
        };
        assert_eq!(table.rows.len(), 3);
        assert!(matches!(&table.rows[0][4], Value::Text(note) if *note == card.title));
        assert_ne!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(
            format!("{a:?}"),
            format!("{:?}", gallery(7, hostile).views())
        );
    }

    #[test]
    fn every_number_is_finite_over_many_ticks() {
        // The counter is a non-negative i64 of the cache.
        for t in (0..500).chain([i64::MAX as u64]) {
            let text = format!("{:?}", gallery(t, r#"{"target": 0}"#).views());
            assert!(!text.contains("NaN") && !text.contains("inf"), "tick {t}");
        }
    }

    #[test]
    fn csv_quotes_and_defuses() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("=1,2"), "\"'=1,2\"");
        let orders = gallery(0, r#"{"headline": "x,y", "rows": 2}"#).orders();
        let csv = export_csv(&orders);
        assert!(csv.starts_with("order,customer,items,total,note\nORD-10480,"));
        assert!(csv.lines().nth(1).unwrap().ends_with(",\"x,y\""));
        assert_eq!(export_json(&orders)[0]["note"], "x,y");
    }
}
