//! Performance Monitor: a widget and a `metric.sample` handler for hosts' CPU, memory
//! and latency.
//!
//! # Event
//!
//! `metric.sample`, payload
//!
//! ```json
//! {"host": "web-1", "cpu": 73.5, "memory": 61.0, "latency_ms": 180, "at_ms": 1767225600000}
//! ```
//!
//! `host` is a string of 1..=200 bytes, `cpu` and `memory` percentages in 0..=100,
//! `latency_ms` a number ≥ 0, `at_ms` (optional, milliseconds since the Unix epoch)
//! defaults to the event's `occurred_at_ms`. A missing or mistyped field is
//! `invalid-input` (dead-lettered at once); another event name is `rejected`.
//!
//! Each sample is stored once per event id in `perf_samples` (the newest 2000 are kept)
//! and published on topic `perf` as `{"type": "sample", "host", "cpu", "memory",
//! "latency_ms", "at_ms"}`. When a metric crosses a threshold, that is when its status
//! (ok, warning, critical) differs from the host's previous sample's and is not ok, the
//! handler publishes on topic `alerts`:
//!
//! ```json
//! {"type": "alert", "host": "web-1", "metric": "cpu", "value": 93.0, "status": "critical",
//!  "threshold": 90.0}
//! ```
//!
//! `metric` is `cpu`, `memory` or `latency_ms`; `threshold` the one crossed. A sample that
//! stays above a threshold raises nothing more; one that falls back below raises nothing.
//!
//! # Thresholds
//!
//! The config sets the gauges' thresholds (`cpuWarning` 70, `cpuCritical` 90,
//! `memoryWarning` 80, `memoryCritical` 95, `latencyWarningMs` 250, `latencyCriticalMs`
//! 1000 by default). A handler receives no config in this contract, so alerts always use
//! those defaults (the `DEFAULTS` constant). Handing the handler an installation's
//! thresholds through the cache was rejected: the cache is shared by the whole tenant, so
//! two installations with different configs would overwrite each other, and nothing
//! would be there before the first render; fixed thresholds keep alerts predictable.
//!
//! # Render
//!
//! Gauges for CPU, memory and latency, each the average over every host's latest sample
//! in the last 12 hours, with the configured thresholds; then a heatmap of average CPU
//! per host (y, the first 20 by name) per hour (x, the 12 UTC hours up to and including
//! the newest sample's; an hour without samples shows 0).

use plinth_sdk::prelude::*;
use serde::Deserialize;

const HOUR_MS: i64 = 3_600_000;
const HEATMAP_HOURS: i64 = 12;
const MAX_HOSTS: usize = 20;
/// How many hosts' latest samples the gauges average at most.
const MAX_GAUGE_HOSTS: i64 = 500;
/// Samples kept; older ones are deleted as new ones arrive.
const KEEP_SAMPLES: i64 = 2000;
/// At most this many old samples go per event: one sample comes in per event, so the
/// table stays at KEEP_SAMPLES while no single delete grows unbounded.
const DELETE_BATCH: i64 = 500;

const SAMPLES_TOPIC: &str = "perf";
const ALERTS_TOPIC: &str = "alerts";

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS perf_samples (event_id TEXT PRIMARY KEY, host TEXT NOT NULL, \
     cpu DOUBLE PRECISION NOT NULL, memory DOUBLE PRECISION NOT NULL, \
     latency_ms DOUBLE PRECISION NOT NULL, at_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS perf_samples_host_at ON perf_samples (host, at_ms)",
    "CREATE INDEX IF NOT EXISTS perf_samples_at ON perf_samples (at_ms)",
];
const PROBE: &str =
    "SELECT event_id, host, cpu, memory, latency_ms, at_ms FROM perf_samples LIMIT 1";

/// One metric's thresholds: from `warning` up it is a warning, from `critical` up critical.
#[derive(Clone, Copy)]
struct Limits {
    warning: f64,
    critical: f64,
}

impl Limits {
    fn status(self, value: f64) -> Status {
        if value >= self.critical {
            Status::Critical
        } else if value >= self.warning {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

#[derive(Clone, Copy)]
struct Thresholds {
    cpu: Limits,
    memory: Limits,
    latency_ms: Limits,
}

/// The config schema's defaults, and the thresholds the handler's alerts use.
const DEFAULTS: Thresholds = Thresholds {
    cpu: Limits {
        warning: 70.0,
        critical: 90.0,
    },
    memory: Limits {
        warning: 80.0,
        critical: 95.0,
    },
    latency_ms: Limits {
        warning: 250.0,
        critical: 1000.0,
    },
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default = "default_cpu_warning")]
    cpu_warning: f64,
    #[serde(default = "default_cpu_critical")]
    cpu_critical: f64,
    #[serde(default = "default_memory_warning")]
    memory_warning: f64,
    #[serde(default = "default_memory_critical")]
    memory_critical: f64,
    #[serde(default = "default_latency_warning")]
    latency_warning_ms: f64,
    #[serde(default = "default_latency_critical")]
    latency_critical_ms: f64,
}

fn default_cpu_warning() -> f64 {
    DEFAULTS.cpu.warning
}
fn default_cpu_critical() -> f64 {
    DEFAULTS.cpu.critical
}
fn default_memory_warning() -> f64 {
    DEFAULTS.memory.warning
}
fn default_memory_critical() -> f64 {
    DEFAULTS.memory.critical
}
fn default_latency_warning() -> f64 {
    DEFAULTS.latency_ms.warning
}
fn default_latency_critical() -> f64 {
    DEFAULTS.latency_ms.critical
}

impl Config {
    /// The thresholds, refused when a warning sits above its critical level: a JSON
    /// Schema cannot compare two fields, so the host's validation lets that through.
    fn thresholds(&self) -> Result<Thresholds, Error> {
        let limits = |name: &str, warning: f64, critical: f64| {
            if warning <= critical {
                Ok(Limits { warning, critical })
            } else {
                Err(Error::invalid(format!(
                    "{name}: the warning threshold ({warning}) is above the critical one \
                     ({critical})"
                )))
            }
        };
        Ok(Thresholds {
            cpu: limits("cpu", self.cpu_warning, self.cpu_critical)?,
            memory: limits("memory", self.memory_warning, self.memory_critical)?,
            latency_ms: limits("latency", self.latency_warning_ms, self.latency_critical_ms)?,
        })
    }
}

#[derive(Deserialize)]
struct Sample {
    host: String,
    cpu: f64,
    memory: f64,
    latency_ms: f64,
    #[serde(default)]
    at_ms: Option<i64>,
}

impl Sample {
    fn validate(&self) -> Result<(), Error> {
        if self.host.is_empty() || self.host.len() > 200 {
            return Err(Error::invalid("host must be 1 to 200 bytes"));
        }
        for (name, value) in [("cpu", self.cpu), ("memory", self.memory)] {
            if !(0.0..=100.0).contains(&value) {
                return Err(Error::invalid(format!(
                    "{name} is a percentage, 0 to 100, not {value}"
                )));
            }
        }
        if !self.latency_ms.is_finite() || self.latency_ms < 0.0 {
            return Err(Error::invalid("latency_ms must be a number ≥ 0"));
        }
        Ok(())
    }

    /// `(metric, value, limits)` for each metric, in the order alerts are published.
    fn metrics(&self, thresholds: &Thresholds) -> [(&'static str, f64, Limits); 3] {
        [
            ("cpu", self.cpu, thresholds.cpu),
            ("memory", self.memory, thresholds.memory),
            ("latency_ms", self.latency_ms, thresholds.latency_ms),
        ]
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Warning => "warning",
        Status::Critical => "critical",
    }
}

/// Creates the table and its indexes when missing; a failed `CREATE` is fine when the
/// table is there anyway (two first calls racing on PostgreSQL, or an installation
/// without `db:write`).
fn ensure_schema() -> Result<(), Error> {
    // They are created together, so a table that answers has its indexes: one read per
    // call rather than the DDL, which on PostgreSQL locks the table against inserts.
    if db::query(PROBE, &[]).is_ok() {
        return Ok(());
    }
    for ddl in SCHEMA {
        if let Err(error) = db::execute(ddl, &[])
            && db::query(PROBE, &[]).is_err()
        {
            log::error("perf_samples is missing and cannot be created");
            return Err(error);
        }
    }
    Ok(())
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

struct PerfMonitor;

impl Extension for PerfMonitor {
    fn describe() -> Descriptor {
        // (key, default, maximum, what it sets); percentages stop at 100.
        let fields = [
            (
                "cpuWarning",
                DEFAULTS.cpu.warning,
                Some(100.0),
                "CPU % shown as a warning",
            ),
            (
                "cpuCritical",
                DEFAULTS.cpu.critical,
                Some(100.0),
                "CPU % shown as critical",
            ),
            (
                "memoryWarning",
                DEFAULTS.memory.warning,
                Some(100.0),
                "Memory % shown as a warning",
            ),
            (
                "memoryCritical",
                DEFAULTS.memory.critical,
                Some(100.0),
                "Memory % shown as critical",
            ),
            (
                "latencyWarningMs",
                DEFAULTS.latency_ms.warning,
                None,
                "Latency (ms) shown as a warning",
            ),
            (
                "latencyCriticalMs",
                DEFAULTS.latency_ms.critical,
                None,
                "Latency (ms) shown as critical",
            ),
        ];
        let mut properties = serde_json::Map::new();
        for (key, default, maximum, description) in fields {
            let mut schema = serde_json::json!({
                "type": "number", "minimum": 0, "default": default, "description": description
            });
            if let Some(maximum) = maximum {
                schema["maximum"] = maximum.into();
            }
            properties.insert(key.to_owned(), schema);
        }
        Descriptor::new("perf-monitor", "Performance Monitor")
            .version("1.0.0")
            .description("CPU, memory and latency of your hosts, with threshold alerts.")
            .category("monitoring")
            .icon("gauge")
            .size(8, 6)
            .config_schema(&serde_json::json!({
                "type": "object",
                "properties": properties,
                "additionalProperties": false
            }))
            .uses("db")
            .uses("db:write")
            .uses("broadcast")
            .uses("log")
            .handles("metric.sample")
    }
}

impl Widget for PerfMonitor {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let thresholds = request.config::<Config>()?.thresholds()?;
        ensure_schema()?;
        let newest = db::query("SELECT MAX(at_ms) FROM perf_samples", &[])?
            .rows
            .first()
            .and_then(|row| row.first())
            .and_then(Value::as_i64);
        // Relative to the newest sample, not a clock: a guest has none it should trust,
        // and a monitor whose feed stopped still shows its last twelve hours.
        let (start, end) = match newest {
            Some(newest) => {
                let end = (newest.div_euclid(HOUR_MS) + 1) * HOUR_MS;
                (end - HEATMAP_HOURS * HOUR_MS, end)
            }
            None => (0, 0),
        };

        // Each host's latest sample, for hosts seen in the window.
        let latest = db::query(
            "SELECT s.host, s.cpu, s.memory, s.latency_ms FROM perf_samples s \
             WHERE s.at_ms >= $1 AND s.at_ms = \
             (SELECT MAX(t.at_ms) FROM perf_samples t WHERE t.host = s.host) \
             ORDER BY s.host, s.event_id LIMIT $2",
            &[Value::Integer(start), Value::Integer(MAX_GAUGE_HOSTS)],
        )?;
        let (mut hosts, mut sums) = (0usize, [0.0f64; 3]);
        let mut previous_host: Option<&str> = None;
        for row in &latest.rows {
            let host = row.first().and_then(Value::as_str);
            // Two samples of one host in the same millisecond: the first counts.
            if host == previous_host {
                continue;
            }
            previous_host = host;
            hosts += 1;
            for (sum, cell) in sums.iter_mut().zip(&row[1..]) {
                *sum += cell.as_f64().unwrap_or(0.0);
            }
        }
        let average = |i: usize| {
            if hosts == 0 {
                0.0
            } else {
                round1(sums[i] / hosts as f64)
            }
        };
        let gauge = |title: &str, value: f64, max: f64, unit: &str, limits: Limits| -> View {
            Gauge::new(title, value, 0.0, max)
                .unit(unit)
                .threshold(0.0, Status::Ok)
                .threshold(limits.warning, Status::Warning)
                .threshold(limits.critical, Status::Critical)
                .into()
        };
        let latency = average(2);
        // The dial reaches well past critical, and past the value when it is worse.
        let latency_max = (thresholds.latency_ms.critical * 1.5).max(latency).ceil();
        let mut views = vec![
            gauge("CPU", average(0), 100.0, "%", thresholds.cpu),
            gauge("Memory", average(1), 100.0, "%", thresholds.memory),
            gauge("Latency", latency, latency_max, "ms", thresholds.latency_ms),
        ];

        let cells = db::query(
            "SELECT host, (at_ms - $1) / 3600000, AVG(cpu) FROM perf_samples \
             WHERE at_ms >= $1 AND at_ms < $2 GROUP BY 1, 2 ORDER BY 1, 2 LIMIT $3",
            &[
                Value::Integer(start),
                Value::Integer(end),
                Value::Integer(MAX_HOSTS as i64 * HEATMAP_HOURS),
            ],
        )?;
        let mut y_labels: Vec<String> = Vec::new();
        let mut values: Vec<Vec<f64>> = Vec::new();
        for row in &cells.rows {
            let (Some(host), Some(hour), Some(cpu)) = (
                row.first().and_then(Value::as_str),
                row.get(1).and_then(Value::as_i64),
                row.get(2).and_then(Value::as_f64),
            ) else {
                continue;
            };
            if y_labels.last().map(String::as_str) != Some(host) {
                if y_labels.len() == MAX_HOSTS {
                    break;
                }
                y_labels.push(host.to_owned());
                values.push(vec![0.0; HEATMAP_HOURS as usize]);
            }
            if let (Some(line), Ok(hour)) = (values.last_mut(), usize::try_from(hour))
                && hour < line.len()
            {
                line[hour] = round1(cpu);
            }
        }
        let x_labels: Vec<String> = if newest.is_some() {
            (0..HEATMAP_HOURS)
                .map(|hour| {
                    let at = start + hour * HOUR_MS;
                    format!("{:02}:00", at.div_euclid(HOUR_MS).rem_euclid(24))
                })
                .collect()
        } else {
            Vec::new()
        };
        views.push(Heatmap::new("CPU % by host and hour (UTC)", x_labels, y_labels, values).into());
        Ok(views)
    }
}

impl EventHandler for PerfMonitor {
    fn handle(event: Event) -> Result<(), Error> {
        if event.name != "metric.sample" {
            return Err(Error::reject(format!(
                "perf-monitor handles metric.sample only, not {:?}",
                event.name
            )));
        }
        let sample: Sample = serde_json::from_str(&event.payload).map_err(|e| {
            Error::invalid(format!(
                "metric.sample needs {{\"host\": string, \"cpu\": number, \"memory\": number, \
                 \"latency_ms\": number, \"at_ms\"?: int}}: {e}"
            ))
        })?;
        sample.validate()?;
        let at_ms = match sample.at_ms {
            Some(at_ms) if at_ms >= 0 => at_ms,
            Some(_) => return Err(Error::invalid("at_ms must be ≥ 0")),
            None => i64::try_from(event.occurred_at_ms)
                .map_err(|_| Error::invalid("occurred_at_ms is out of range"))?,
        };

        ensure_schema()?;
        // The host's sample before this one, in (time, event id) order: the same answer
        // on a redelivery, so a retried event raises the same alerts again, not others.
        let previous = db::query(
            "SELECT cpu, memory, latency_ms FROM perf_samples \
             WHERE host = $1 AND (at_ms < $2 OR (at_ms = $2 AND event_id < $3)) \
             ORDER BY at_ms DESC, event_id DESC LIMIT 1",
            &[
                sample.host.as_str().into(),
                Value::Integer(at_ms),
                event.id.as_str().into(),
            ],
        )?;
        let previous: Option<Vec<f64>> = previous.rows.first().map(|row| {
            row.iter()
                .map(|cell| cell.as_f64().unwrap_or(0.0))
                .collect()
        });
        db::execute(
            "INSERT INTO perf_samples (event_id, host, cpu, memory, latency_ms, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            &[
                event.id.as_str().into(),
                sample.host.as_str().into(),
                Value::Real(sample.cpu),
                Value::Real(sample.memory),
                Value::Real(sample.latency_ms),
                Value::Integer(at_ms),
            ],
        )?;
        db::execute(
            "DELETE FROM perf_samples WHERE event_id IN (SELECT event_id FROM perf_samples \
             ORDER BY at_ms DESC, event_id DESC LIMIT $1 OFFSET $2)",
            &[Value::Integer(DELETE_BATCH), Value::Integer(KEEP_SAMPLES)],
        )?;

        broadcast::publish_json(
            SAMPLES_TOPIC,
            &serde_json::json!({
                "type": "sample",
                "host": sample.host,
                "cpu": sample.cpu,
                "memory": sample.memory,
                "latency_ms": sample.latency_ms,
                "at_ms": at_ms,
            }),
        )?;
        for (i, (metric, value, limits)) in sample.metrics(&DEFAULTS).into_iter().enumerate() {
            let status = limits.status(value);
            let before = previous
                .as_ref()
                .and_then(|values| values.get(i))
                .map_or(Status::Ok, |value| limits.status(*value));
            if status == Status::Ok || status == before {
                continue;
            }
            let threshold = if status == Status::Critical {
                limits.critical
            } else {
                limits.warning
            };
            log::warn(&format!(
                "{}: {metric} {value} is {} (threshold {threshold})",
                sample.host,
                status_name(status)
            ));
            broadcast::publish_json(
                ALERTS_TOPIC,
                &serde_json::json!({
                    "type": "alert",
                    "host": sample.host,
                    "metric": metric,
                    "value": value,
                    "status": status_name(status),
                    "threshold": threshold,
                }),
            )?;
        }
        Ok(())
    }
}

plinth_sdk::export_extension!(PerfMonitor);
