//! Render modes, chosen by config `{"mode": …}`:
//! - `cpu` counts primes below `n` (the cost of epoch and fuel checks);
//! - `view4k` returns a table of about 4 KiB as JSON;
//! - `hold` sleeps `ms` milliseconds (many live instances at once, for memory per instance).

use plinth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
enum Config {
    Cpu { n: u32 },
    View4k,
    Hold { ms: u64 },
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
            Config::Hold { ms } => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                vec![MetricCard::new("held", ms as f64).into()]
            }
        })
    }
}

plinth_sdk::export_widget!(Bench);
