//! Prometheus metrics in the text exposition format: counters and gauges with labels,
//! and histograms with fixed buckets. Small on purpose: the server needs a dozen series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use std::collections::HashMap;
use std::sync::Arc;

use plinth_host::{Receipt, UsageOutcome};

/// Buckets of the call duration histogram, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.000_025, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];
/// Buckets of the fuel histogram.
const FUEL_BUCKETS: &[f64] = &[1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
/// Buckets of the peak memory histogram, in bytes.
const MEMORY_BUCKETS: &[f64] = &[
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
];
/// Buckets of tick lateness, in seconds.
const LATENESS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    /// The upper bound of the bucket holding quantile `q`: "p99 ≤ this".
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        let wanted = (self.count as f64 * q).ceil() as u64;
        if self.count == 0 {
            return None;
        }
        Some(
            self.bounds
                .iter()
                .zip(&self.counts)
                .find(|(_, count)| **count >= wanted)
                .map_or(f64::INFINITY, |(bound, _)| *bound),
        )
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

struct Histograms {
    duration: Histogram,
    fuel: Histogram,
    memory: Histogram,
    lateness: Histogram,
}

/// Calls of one tenant by (extension, export, outcome).
type TenantCalls = HashMap<(Arc<str>, &'static str, UsageOutcome), u64>;

/// Every metric the server exports.
pub struct Metrics {
    /// Calls by tenant; looked up without allocating on the hot path.
    calls: Mutex<HashMap<String, TenantCalls>>,
    histograms: Mutex<Histograms>,
    pub ws_connections: AtomicI64,
    pub ws_messages_sent: AtomicU64,
    pub ws_messages_dropped: AtomicU64,
    pub ws_slow_consumers: AtomicU64,
    pub ws_rejected: AtomicU64,
    pub ticks_due: AtomicI64,
    pub ticks_running: AtomicI64,
    pub ticks_coalesced: AtomicU64,
    pub ticks_claimed_elsewhere: AtomicU64,
    pub compiles_running: AtomicI64,
    pub installations_parked: AtomicU64,
    pub http_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            calls: Mutex::default(),
            histograms: Mutex::new(Histograms {
                duration: Histogram::new(DURATION_BUCKETS),
                fuel: Histogram::new(FUEL_BUCKETS),
                memory: Histogram::new(MEMORY_BUCKETS),
                lateness: Histogram::new(LATENESS_BUCKETS),
            }),
            ws_connections: AtomicI64::new(0),
            ws_messages_sent: AtomicU64::new(0),
            ws_messages_dropped: AtomicU64::new(0),
            ws_slow_consumers: AtomicU64::new(0),
            ws_rejected: AtomicU64::new(0),
            ticks_due: AtomicI64::new(0),
            ticks_running: AtomicI64::new(0),
            ticks_coalesced: AtomicU64::new(0),
            ticks_claimed_elsewhere: AtomicU64::new(0),
            compiles_running: AtomicI64::new(0),
            installations_parked: AtomicU64::new(0),
            http_errors: Mutex::default(),
        }
    }
}

/// Escapes a label value for the exposition format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one call from its receipt; `extension` is `name@version`.
    pub fn record_call(&self, receipt: &Receipt, extension: &Arc<str>) {
        {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let tenant = match calls.get_mut(&receipt.tenant) {
                Some(tenant) => tenant,
                None => calls.entry(receipt.tenant.clone()).or_default(),
            };
            *tenant
                .entry((extension.clone(), receipt.call, receipt.outcome))
                .or_default() += 1;
        }
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        h.duration.observe(receipt.wall_time_us as f64 / 1e6);
        if let Some(fuel) = receipt.fuel_used {
            h.fuel.observe(fuel as f64);
        }
        h.memory.observe(receipt.peak_memory_bytes as f64);
    }

    /// Counts a compilation running until the guard is dropped.
    pub fn compile_started(&self) -> CompileRunning<'_> {
        self.compiles_running.fetch_add(1, Ordering::Relaxed);
        CompileRunning(self)
    }

    pub fn installation_parked(&self) {
        self.installations_parked.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_refused(&self) {
        self.ws_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_lateness(&self, seconds: f64) {
        self.histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lateness
            .observe(seconds);
    }

    /// Tick lateness at quantile `q`, as the bound of its histogram bucket, in seconds.
    pub fn lateness_quantile(&self, q: f64) -> Option<f64> {
        self.histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lateness
            .quantile_bound(q)
    }

    /// Calls of one export (`render`, `on-tick`, …) with one outcome, over all tenants.
    pub fn calls_of(&self, call: &str, outcome: &str) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|tenant| tenant.iter())
            .filter(|((_, c, o), _)| *c == call && o.to_string() == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn record_http_error(&self, code: &'static str) {
        *self
            .http_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }

    /// The exposition text; `extra` are gauges read at scrape time (name, help, value).
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP plinth_calls_total Calls into extensions by tenant, extension, export and outcome code.\n\
             # TYPE plinth_calls_total counter\n",
        );
        let mut series: Vec<(String, String, &'static str, String, u64)> = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(tenant, calls)| {
                calls.iter().map(move |((extension, call, outcome), n)| {
                    (
                        tenant.clone(),
                        extension.to_string(),
                        *call,
                        outcome.to_string(),
                        *n,
                    )
                })
            })
            .collect();
        series.sort();
        for (tenant, extension, call, outcome, n) in &series {
            let _ = writeln!(
                out,
                "plinth_calls_total{{tenant=\"{}\",extension=\"{}\",call=\"{call}\",outcome=\"{outcome}\"}} {n}",
                label(tenant),
                label(extension)
            );
        }
        {
            let h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
            h.duration.render(
                &mut out,
                "plinth_call_duration_seconds",
                "Wall time of a call: instantiate, run, convert.",
            );
            h.fuel
                .render(&mut out, "plinth_call_fuel", "Fuel a call consumed.");
            h.memory.render(
                &mut out,
                "plinth_call_peak_memory_bytes",
                "Largest linear memory a call reached.",
            );
            h.lateness.render(
                &mut out,
                "plinth_tick_lateness_seconds",
                "How long after its due time a tick started.",
            );
        }
        out.push_str(
            "# HELP plinth_http_errors_total API errors by code.\n# TYPE plinth_http_errors_total counter\n",
        );
        for (code, n) in self
            .http_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "plinth_http_errors_total{{code=\"{code}\"}} {n}");
        }
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64;
        let gauge = |v: &AtomicI64| v.load(Ordering::Relaxed) as f64;
        let series: Vec<(&str, &str, &str, f64)> = vec![
            (
                "plinth_ws_connections",
                "gauge",
                "Open WebSocket connections.",
                gauge(&self.ws_connections),
            ),
            (
                "plinth_ws_messages_sent_total",
                "counter",
                "Messages written to WebSocket clients.",
                load(&self.ws_messages_sent),
            ),
            (
                "plinth_ws_messages_dropped_total",
                "counter",
                "Messages dropped because a client's queue was full.",
                load(&self.ws_messages_dropped),
            ),
            (
                "plinth_ws_slow_consumers_total",
                "counter",
                "Connections closed for falling behind.",
                load(&self.ws_slow_consumers),
            ),
            (
                "plinth_ws_rejected_total",
                "counter",
                "WebSocket upgrades refused (token or origin).",
                load(&self.ws_rejected),
            ),
            (
                "plinth_scheduler_due",
                "gauge",
                "Ticks due and waiting for a slot.",
                gauge(&self.ticks_due),
            ),
            (
                "plinth_scheduler_running",
                "gauge",
                "Ticks running now.",
                gauge(&self.ticks_running),
            ),
            (
                "plinth_ticks_coalesced_total",
                "counter",
                "Ticks skipped because the previous one was still running or late.",
                load(&self.ticks_coalesced),
            ),
            (
                "plinth_ticks_claimed_elsewhere_total",
                "counter",
                "Ticks another node claimed first.",
                load(&self.ticks_claimed_elsewhere),
            ),
            (
                "plinth_compiles_running",
                "gauge",
                "Uploads being compiled.",
                gauge(&self.compiles_running),
            ),
            (
                "plinth_installations_parked_total",
                "counter",
                "Installations the circuit breaker parked.",
                load(&self.installations_parked),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// A compilation counted in `plinth_compiles_running` while it lives.
pub struct CompileRunning<'a>(&'a Metrics);

impl Drop for CompileRunning<'_> {
    fn drop(&mut self) {
        self.0.compiles_running.fetch_sub(1, Ordering::Relaxed);
    }
}
