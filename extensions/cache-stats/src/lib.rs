//! Cache Statistics: the tenant cache's hit rate, misses, key count, memory and most-read
//! keys, straight from the cache backend. Every tick it records a sample, publishes it to
//! the `cache-stats` topic and raises an alert on `alerts` when the hit rate falls below
//! the configured threshold. The `export` action returns the history as JSON or CSV.

use plinth_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Where the samples of past ticks are kept, newest last.
const HISTORY_KEY: &str = "cache-stats:history";
const MAX_HISTORY: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default = "default_true")]
    show_top_keys: bool,
    #[serde(default = "default_threshold")]
    alert_threshold: f64,
}

fn default_true() -> bool {
    true
}

fn default_threshold() -> f64 {
    70.0
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Sample {
    at_ms: u64,
    hits: u64,
    misses: u64,
    hit_rate: f64,
    keys: u64,
    memory_bytes: u64,
}

impl Sample {
    fn from_stats(stats: &cache::Stats, at_ms: u64) -> Self {
        Sample {
            at_ms,
            hits: stats.hits,
            misses: stats.misses,
            hit_rate: hit_rate(stats),
            keys: stats.keys,
            memory_bytes: stats.memory_bytes,
        }
    }
}

fn hit_rate(stats: &cache::Stats) -> f64 {
    let total = stats.hits + stats.misses;
    if total == 0 {
        0.0
    } else {
        stats.hits as f64 * 100.0 / total as f64
    }
}

fn history() -> Result<Vec<Sample>, Error> {
    Ok(cache::get_json(HISTORY_KEY)?.unwrap_or_default())
}

struct CacheStats;

impl Extension for CacheStats {
    fn describe() -> Descriptor {
        Descriptor::new("cache-stats", "Cache Statistics")
            .version("1.0.0")
            .description("Real-time cache performance monitoring")
            .category("monitoring")
            .icon("database")
            .size(6, 4)
            .refresh_every_ms(5_000)
            .uses("cache")
            .uses("broadcast")
            .uses("log")
            .action(
                "export",
                "History as JSON or CSV: body {\"format\": \"json\" | \"csv\"}",
            )
            .config_schema(&serde_json::json!({
                "type": "object",
                "properties": {
                    "showTopKeys": {
                        "type": "boolean", "default": true,
                        "description": "Display top cache keys"
                    },
                    "alertThreshold": {
                        "type": "number", "default": 70, "minimum": 0, "maximum": 100,
                        "description": "Alert when hit rate falls below %"
                    }
                },
                "additionalProperties": false
            }))
    }
}

impl Widget for CacheStats {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let config: Config = request.config()?;
        let stats = cache::stats(5)?;
        let rate = hit_rate(&stats);
        let mut views = vec![
            MetricCard::new("Hit rate", rate)
                .unit("%")
                .caption(format!("{} hits, {} misses", stats.hits, stats.misses))
                .into(),
            MetricCard::new("Keys", stats.keys as f64).into(),
            MetricCard::new("Memory", stats.memory_bytes as f64 / (1024.0 * 1024.0))
                .unit("MiB")
                .into(),
            Gauge::new("Hit rate", rate, 0.0, 100.0)
                .unit("%")
                .threshold(0.0, Status::Critical)
                .threshold(config.alert_threshold, Status::Ok)
                .into(),
        ];
        let samples = history()?;
        if !samples.is_empty() {
            views.push(
                Sparkline::new("Hit rate", samples.iter().map(|s| s.hit_rate).collect()).into(),
            );
        }
        if config.show_top_keys {
            let table = stats.top_keys.iter().fold(
                Table::new(
                    "Top keys",
                    [("key", "Key"), ("size", "Size (bytes)"), ("hits", "Hits")],
                ),
                |table, key| {
                    table.row(vec![
                        key.key.clone().into(),
                        (key.size_bytes as i64).into(),
                        (key.hits as i64).into(),
                    ])
                },
            );
            views.push(table.into());
        }
        Ok(views)
    }

    fn on_tick(tick: Tick) -> Result<(), Error> {
        let config: Config = tick.config()?;
        let stats = cache::stats(5)?;
        let sample = Sample::from_stats(&stats, tick.scheduled_at_ms);
        let mut samples = history()?;
        samples.push(sample.clone());
        if samples.len() > MAX_HISTORY {
            samples.drain(..samples.len() - MAX_HISTORY);
        }
        cache::set_json(HISTORY_KEY, &samples, None)?;
        broadcast::publish_json("cache-stats", &sample)?;
        if sample.hits + sample.misses > 0 && sample.hit_rate < config.alert_threshold {
            let message = format!(
                "cache hit rate {:.1}% is below {:.1}%",
                sample.hit_rate, config.alert_threshold
            );
            log::warn(&message);
            broadcast::publish_json(
                "alerts",
                &serde_json::json!({"severity": "warning", "message": message}),
            )?;
        }
        Ok(())
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
        let samples = history()?;
        match body.format.as_deref().unwrap_or("json") {
            "json" => {
                Ok(ActionResponse::json(&serde_json::to_value(&samples)?)
                    .download("cache-stats.json"))
            }
            "csv" => {
                let mut csv = String::from("at_ms,hits,misses,hit_rate,keys,memory_bytes\n");
                for s in &samples {
                    csv.push_str(&format!(
                        "{},{},{},{:.2},{},{}\n",
                        s.at_ms, s.hits, s.misses, s.hit_rate, s.keys, s.memory_bytes
                    ));
                }
                Ok(ActionResponse::text("text/csv", csv).download("cache-stats.csv"))
            }
            other => Err(Error::invalid(format!(
                "format must be \"json\" or \"csv\", not {other:?}"
            ))),
        }
    }
}

plinth_sdk::export_widget!(CacheStats);
