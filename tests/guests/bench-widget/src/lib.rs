//! Render modes, chosen by config `{"mode": …}`:
//! - `cpu` counts primes below `n` (a tight loop: the worst case for epoch and fuel checks);
//! - `orders` summarises `n` synthetic orders (what a sales widget computes);
//! - `view4k` returns a table of about 4 KiB as JSON;
//! - `hold` sleeps `ms` milliseconds (many live instances at once, for memory per instance);
//! - `hostcalls` makes `n` calls to one capability (`cache`: a get; `db`: `SELECT 1`), for
//!   the cost of a host call per backend.

use plinth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
enum Config {
    Cpu { n: u32 },
    Orders { n: u32 },
    View4k,
    Hold { ms: u64 },
    Hostcalls { capability: String, n: u32 },
}

struct Bench;

impl Extension for Bench {
    fn describe() -> Descriptor {
        Descriptor::new("bench-widget", "Benchmark widget").category("benchmark")
    }
}

impl Widget for Bench {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        Ok(match request.config()? {
            Config::Cpu { n } => {
                vec![MetricCard::new("primes", bench_logic::primes_below(n) as f64).into()]
            }
            Config::Orders { n } => {
                let (regions, median, p95) = bench_logic::order_summary(n);
                let mut chart =
                    Chart::new("Revenue by region", regions.iter().map(|(r, _)| r.clone()));
                chart = chart.series("revenue", regions.iter().map(|(_, v)| *v).collect());
                vec![
                    chart.bar(),
                    MetricCard::new("median order", median).into(),
                    MetricCard::new("p95 order", p95).into(),
                ]
            }
            Config::View4k => {
                let table = bench_logic::report_rows().into_iter().fold(
                    Table::new(
                        "Orders by region",
                        [
                            ("region", "Region"),
                            ("orders", "Orders"),
                            ("revenue", "Revenue"),
                        ],
                    ),
                    |table, (region, orders, revenue)| {
                        table.row(vec![region.into(), orders.into(), revenue.into()])
                    },
                );
                vec![table.into()]
            }
            Config::Hostcalls { capability, n } => {
                for _ in 0..n {
                    match capability.as_str() {
                        "cache" => drop(cache::get("bench:key")?),
                        "db" => drop(db::query("SELECT 1", &[])?),
                        other => return Err(Error::invalid(format!("no capability {other:?}"))),
                    }
                }
                vec![MetricCard::new("host calls", n as f64).into()]
            }
            Config::Hold { ms } => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                vec![MetricCard::new("held", ms as f64).into()]
            }
        })
    }
}

plinth_sdk::export_widget!(Bench);
