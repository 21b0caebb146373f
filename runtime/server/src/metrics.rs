//! Prometheus metrics, encoded by the `prometheus-client` crate in the classic text
//! format (0.0.4): counters and gauges, histograms with fixed buckets, and calls by
//! tenant, extension, export and outcome. Bucket bounds are written as Go's client
//! writes them (`le="2.5e-05"`, `le="1e+06"`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use plinth_host::{LoadCounts, Receipt, UsageOutcome};
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
    prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

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

/// Buckets of event accepted → handler done, in seconds.
const HANDLED_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    tenant: String,
    outcome: &'static str,
}

/// The event pipeline's series.
#[derive(Debug, Default)]
struct EventSeries {
    accepted: Family<TenantLabels, Counter>,
    duplicates: Family<TenantLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    retries: Family<TenantLabels, Counter>,
    dead_letters: Family<TenantLabels, Counter>,
    depth: Family<TenantLabels, Gauge>,
    lag: Family<TenantLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// A counter of the server's own, registered and encoded by prometheus-client.
#[derive(Debug, Clone, Default)]
pub struct Count(Counter);

impl Count {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl EncodeMetric for Count {
    fn encode(&self, encoder: MetricEncoder) -> std::fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// An outcome as a label value: `OK` or the error code.
struct Outcome(UsageOutcome);

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(outcome_str(self.0))
    }
}

fn outcome_str(outcome: UsageOutcome) -> &'static str {
    match outcome {
        UsageOutcome::Ok => "OK",
        UsageOutcome::Error(code) => code.as_str(),
    }
}

#[derive(EncodeLabelSet)]
struct CallLabels {
    tenant: Arc<str>,
    extension: Arc<str>,
    call: &'static str,
    outcome: Outcome,
}

/// Calls of one tenant by (extension, export, outcome).
type TenantCalls = HashMap<(Arc<str>, &'static str, UsageOutcome), u64>;

/// `plinth_calls_total`: counts behind one lock, found without allocating on the hot
/// path (a [`Family`] needs an owned label set for each lookup and cannot be iterated
/// for [`Metrics::calls_of`]); labelled and encoded at scrape time.
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<HashMap<Arc<str>, TenantCalls>>>);

impl EncodeMetric for Calls {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        // Copied out first: the hot path does not wait for the encoding.
        let mut series: Vec<(CallLabels, u64)> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(tenant, calls)| {
                calls.iter().map(move |((extension, call, outcome), n)| {
                    let labels = CallLabels {
                        tenant: tenant.clone(),
                        extension: extension.clone(),
                        call,
                        outcome: Outcome(*outcome),
                    };
                    (labels, *n)
                })
            })
            .collect();
        series.sort_by(|(a, _), (b, _)| {
            (&a.tenant, &a.extension, a.call, outcome_str(a.outcome.0)).cmp(&(
                &b.tenant,
                &b.extension,
                b.call,
                outcome_str(b.outcome.0),
            ))
        });
        for (labels, n) in &series {
            ConstCounter::new(*n).encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[derive(EncodeLabelSet)]
struct LoadLabels {
    code: &'static str,
}

/// `plinth_component_loads_total`: the sandbox's own counts, read at scrape time.
#[derive(Debug, Clone, Default)]
struct ComponentLoads(Arc<OnceLock<Arc<LoadCounts>>>);

impl EncodeMetric for ComponentLoads {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let (compiled, cached) = self
            .0
            .get()
            .map_or((0, 0), |counts| (counts.compiled(), counts.cached()));
        for (code, n) in [("cached", cached), ("compiled", compiled)] {
            ConstCounter::new(n).encode(encoder.encode_family(&LoadLabels { code })?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
}

/// `plinth_http_errors_total`: a [`Family`] that keeps its `# HELP` and `# TYPE` lines
/// while no error has been counted yet.
#[derive(Debug, Clone, Default)]
struct HttpErrors(Family<ErrorLabels, Counter>);

impl EncodeMetric for HttpErrors {
    fn encode(&self, encoder: MetricEncoder) -> std::fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram whose buckets can be read back, for [`Metrics::lateness_quantile`]
/// (prometheus-client's [`Histogram`] does not show its buckets).
#[derive(Debug, Clone)]
struct Buckets(Arc<Mutex<BucketCounts>>);

#[derive(Debug, Clone)]
struct BucketCounts {
    /// Upper bound and the observations in that bucket only (not cumulative).
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl Buckets {
    fn new(bounds: &[f64]) -> Self {
        Buckets(Arc::new(Mutex::new(BucketCounts {
            buckets: bounds.iter().map(|bound| (*bound, 0)).collect(),
            sum: 0.0,
            count: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketCounts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe(&self, value: f64) {
        let mut h = self.lock();
        if let Some((_, count)) = h.buckets.iter_mut().find(|(bound, _)| value <= *bound) {
            *count += 1;
        }
        h.sum += value;
        h.count += 1;
    }

    /// The upper bound of the bucket holding quantile `q`: "p99 ≤ this".
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        let h = self.lock();
        if h.count == 0 {
            return None;
        }
        let wanted = (h.count as f64 * q).ceil() as u64;
        let mut cumulative = 0;
        Some(
            h.buckets
                .iter()
                .find(|(_, count)| {
                    cumulative += count;
                    cumulative >= wanted
                })
                .map_or(f64::INFINITY, |(bound, _)| *bound),
        )
    }
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let h = self.lock().clone();
        encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    calls: Calls,
    duration: Histogram,
    fuel: Histogram,
    memory: Histogram,
    lateness: Buckets,
    http_errors: HttpErrors,
    pub ws_connections: Gauge,
    pub ws_messages_sent: Count,
    pub ws_messages_dropped: Count,
    pub ws_slow_consumers: Count,
    pub ws_rejected: Count,
    pub ticks_due: Gauge,
    pub ticks_running: Gauge,
    pub ticks_coalesced: Count,
    pub ticks_claimed_elsewhere: Count,
    pub compiles_running: Gauge,
    component_loads: ComponentLoads,
    pub installations_parked: Count,
    events: EventSeries,
    handled: Histogram,
}

/// Registers under the exposed name: prometheus-client adds `_total` to a counter's
/// name and a full stop to its help, so both are taken off first.
fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    let name = match metric.metric_type() {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            calls: Calls::default(),
            duration: Histogram::new(DURATION_BUCKETS.iter().copied()),
            fuel: Histogram::new(FUEL_BUCKETS.iter().copied()),
            memory: Histogram::new(MEMORY_BUCKETS.iter().copied()),
            lateness: Buckets::new(LATENESS_BUCKETS),
            http_errors: HttpErrors::default(),
            ws_connections: Gauge::default(),
            ws_messages_sent: Count::default(),
            ws_messages_dropped: Count::default(),
            ws_slow_consumers: Count::default(),
            ws_rejected: Count::default(),
            ticks_due: Gauge::default(),
            ticks_running: Gauge::default(),
            ticks_coalesced: Count::default(),
            ticks_claimed_elsewhere: Count::default(),
            compiles_running: Gauge::default(),
            component_loads: ComponentLoads::default(),
            installations_parked: Count::default(),
            events: EventSeries::default(),
            handled: Histogram::new(HANDLED_BUCKETS.iter().copied()),
        };
        let r = &mut m.registry;
        register(
            r,
            "plinth_calls_total",
            "Calls into extensions by tenant, extension, export and outcome code.",
            m.calls.clone(),
        );
        register(
            r,
            "plinth_call_duration_seconds",
            "Wall time of a call: instantiate, run, convert.",
            m.duration.clone(),
        );
        register(
            r,
            "plinth_call_fuel",
            "Fuel a call consumed.",
            m.fuel.clone(),
        );
        register(
            r,
            "plinth_call_peak_memory_bytes",
            "Largest linear memory a call reached.",
            m.memory.clone(),
        );
        register(
            r,
            "plinth_tick_lateness_seconds",
            "How long after its due time a tick started.",
            m.lateness.clone(),
        );
        register(
            r,
            "plinth_http_errors_total",
            "API errors by code.",
            m.http_errors.clone(),
        );
        register(
            r,
            "plinth_ws_connections",
            "Open WebSocket connections.",
            m.ws_connections.clone(),
        );
        register(
            r,
            "plinth_ws_messages_sent_total",
            "Messages written to WebSocket clients.",
            m.ws_messages_sent.clone(),
        );
        register(
            r,
            "plinth_ws_messages_dropped_total",
            "Messages dropped because a client's queue was full.",
            m.ws_messages_dropped.clone(),
        );
        register(
            r,
            "plinth_ws_slow_consumers_total",
            "Connections closed for falling behind.",
            m.ws_slow_consumers.clone(),
        );
        register(
            r,
            "plinth_ws_rejected_total",
            "WebSocket upgrades refused (token or origin).",
            m.ws_rejected.clone(),
        );
        register(
            r,
            "plinth_scheduler_due",
            "Ticks due and waiting for a slot.",
            m.ticks_due.clone(),
        );
        register(
            r,
            "plinth_scheduler_running",
            "Ticks running now.",
            m.ticks_running.clone(),
        );
        register(
            r,
            "plinth_ticks_coalesced_total",
            "Ticks skipped because the previous one was still running or late.",
            m.ticks_coalesced.clone(),
        );
        register(
            r,
            "plinth_ticks_claimed_elsewhere_total",
            "Ticks another node claimed first.",
            m.ticks_claimed_elsewhere.clone(),
        );
        register(
            r,
            "plinth_compiles_running",
            "Uploads being compiled.",
            m.compiles_running.clone(),
        );
        register(
            r,
            "plinth_component_loads_total",
            "Component versions loaded on this node, by where their code came from: compiled, or mapped from the compile cache.",
            m.component_loads.clone(),
        );
        register(
            r,
            "plinth_installations_parked_total",
            "Installations the circuit breaker parked.",
            m.installations_parked.clone(),
        );
        let e = &m.events;
        register(
            r,
            "plinth_events_accepted_total",
            "Events accepted (stored durably) by tenant.",
            e.accepted.clone(),
        );
        register(
            r,
            "plinth_events_duplicates_total",
            "Events posted again within the retention, acknowledged and not delivered again.",
            e.duplicates.clone(),
        );
        register(
            r,
            "plinth_event_deliveries_total",
            "Delivery attempts by tenant and outcome (done, retried, dead, waited, void).",
            e.deliveries.clone(),
        );
        register(
            r,
            "plinth_event_retries_total",
            "Deliveries scheduled for another attempt.",
            e.retries.clone(),
        );
        register(
            r,
            "plinth_event_dead_letters_total",
            "Deliveries given up on and kept as dead letters.",
            e.dead_letters.clone(),
        );
        register(
            r,
            "plinth_event_queue_depth",
            "Deliveries waiting, running or to be retried, by tenant.",
            e.depth.clone(),
        );
        register(
            r,
            "plinth_event_queue_lag_seconds",
            "Age of the oldest open delivery, by tenant.",
            e.lag.clone(),
        );
        register(
            r,
            "plinth_event_handled_seconds",
            "From an event's acceptance to its handler's success.",
            m.handled.clone(),
        );
        m
    }
}

impl Metrics {
    /// Exports the sandbox's counts of compiled and cached component loads.
    pub fn watch_component_loads(&self, counts: Arc<LoadCounts>) {
        let _ = self.component_loads.0.set(counts);
    }

    pub fn events_accepted(&self, tenant: &str, accepted: u64, duplicates: u64) {
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        if accepted > 0 {
            self.events.accepted.get_or_create(&labels).inc_by(accepted);
        }
        if duplicates > 0 {
            self.events
                .duplicates
                .get_or_create(&labels)
                .inc_by(duplicates);
        }
    }

    /// One delivery attempt's outcome: `done`, `retried`, `dead`, `waited` or `void`.
    pub fn event_delivery(&self, tenant: &str, outcome: &'static str) {
        self.events
            .deliveries
            .get_or_create(&DeliveryLabels {
                tenant: tenant.to_owned(),
                outcome,
            })
            .inc();
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        match outcome {
            "retried" => {
                self.events.retries.get_or_create(&labels).inc();
            }
            "dead" => {
                self.events.dead_letters.get_or_create(&labels).inc();
            }
            _ => {}
        }
    }

    /// Deliveries of a tenant by outcome, on this node.
    pub fn event_deliveries(&self, tenant: &str, outcome: &'static str) -> u64 {
        self.events
            .deliveries
            .get_or_create(&DeliveryLabels {
                tenant: tenant.to_owned(),
                outcome,
            })
            .get()
    }

    pub fn event_handled(&self, seconds: f64) {
        self.handled.observe(seconds);
    }

    pub fn event_queue(&self, tenant: &str, depth: u64, lag_seconds: f64) {
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        self.events.depth.get_or_create(&labels).set(depth as i64);
        self.events.lag.get_or_create(&labels).set(lag_seconds);
    }

    /// Records one call from its receipt; `extension` is `name@version`.
    pub fn record_call(&self, receipt: &Receipt, extension: &Arc<str>) {
        {
            let mut calls = self.calls.0.lock().unwrap_or_else(|p| p.into_inner());
            let tenant = match calls.get_mut(receipt.tenant.as_str()) {
                Some(tenant) => tenant,
                None => calls.entry(Arc::from(receipt.tenant.as_str())).or_default(),
            };
            *tenant
                .entry((extension.clone(), receipt.call, receipt.outcome))
                .or_default() += 1;
        }
        self.duration.observe(receipt.wall_time_us as f64 / 1e6);
        if let Some(fuel) = receipt.fuel_used {
            self.fuel.observe(fuel as f64);
        }
        self.memory.observe(receipt.peak_memory_bytes as f64);
    }

    /// Counts a compilation running until the guard is dropped.
    pub fn compile_started(&self) -> CompileRunning<'_> {
        self.compiles_running.inc();
        CompileRunning(self)
    }

    pub fn installation_parked(&self) {
        self.installations_parked.inc();
    }

    pub fn ws_refused(&self) {
        self.ws_rejected.inc();
    }

    pub fn record_lateness(&self, seconds: f64) {
        self.lateness.observe(seconds);
    }

    /// Tick lateness at quantile `q`, as the bound of its histogram bucket, in seconds.
    pub fn lateness_quantile(&self, q: f64) -> Option<f64> {
        self.lateness.quantile_bound(q)
    }

    /// Calls of one export (`render`, `on-tick`, …) with one outcome, over all tenants.
    pub fn calls_of(&self, call: &str, outcome: &str) -> u64 {
        self.calls
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|tenant| tenant.iter())
            .filter(|((_, c, o), _)| *c == call && outcome_str(*o) == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn record_http_error(&self, code: &'static str) {
        self.http_errors
            .0
            .get_or_create(&ErrorLabels { code })
            .inc();
    }

    /// The exposition text; `extra` are gauges read at scrape time (name, help, value).
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut scraped = Registry::default();
        for (name, help, value) in extra {
            register(&mut scraped, name, help, ConstGauge::new(*value));
        }
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scraped);
        out
    }
}

/// A compilation counted in `plinth_compiles_running` while it lives.
pub struct CompileRunning<'a>(&'a Metrics);

impl Drop for CompileRunning<'_> {
    fn drop(&mut self) {
        self.0.compiles_running.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plinth_host::ErrorCode;

    fn receipt(tenant: &str, call: &'static str, outcome: UsageOutcome) -> Receipt {
        Receipt {
            tenant: tenant.into(),
            installation: "i".into(),
            component: "c".into(),
            call,
            outcome,
            fuel_used: Some(12_345),
            peak_memory_bytes: 100_000,
            wall_time_us: 250,
            host_calls: Default::default(),
            output_bytes: 0,
            logs_dropped: 0,
        }
    }

    /// Names, types and help texts are those dashboards and tests read.
    #[test]
    fn every_series_keeps_its_name_type_and_help() {
        let metrics = Metrics::default();
        let empty = metrics.render(&[]);
        assert!(
            empty.contains("# TYPE plinth_calls_total counter\n")
                && empty.contains("# TYPE plinth_http_errors_total counter\n"),
            "{empty}"
        );
        let extension: Arc<str> = Arc::from("Clock \"Q\"@1.0.0");
        metrics.record_call(&receipt("acme", "render", UsageOutcome::Ok), &extension);
        metrics.record_call(&receipt("acme", "render", UsageOutcome::Ok), &extension);
        let fault = UsageOutcome::Error(ErrorCode::FuelExhausted);
        metrics.record_call(&receipt("beta", "on-tick", fault), &extension);
        metrics.record_http_error("NOT_FOUND");
        metrics.record_lateness(0.003);
        metrics.ws_connections.inc();
        metrics.ws_slow_consumers.inc();
        let text = metrics.render(&[(
            "plinth_uptime_seconds",
            "Seconds since this node started.",
            1.5,
        )]);
        for (name, kind, help) in [
            (
                "plinth_calls_total",
                "counter",
                "Calls into extensions by tenant, extension, export and outcome code.",
            ),
            (
                "plinth_call_duration_seconds",
                "histogram",
                "Wall time of a call: instantiate, run, convert.",
            ),
            ("plinth_call_fuel", "histogram", "Fuel a call consumed."),
            (
                "plinth_call_peak_memory_bytes",
                "histogram",
                "Largest linear memory a call reached.",
            ),
            (
                "plinth_tick_lateness_seconds",
                "histogram",
                "How long after its due time a tick started.",
            ),
            ("plinth_http_errors_total", "counter", "API errors by code."),
            (
                "plinth_ws_connections",
                "gauge",
                "Open WebSocket connections.",
            ),
            (
                "plinth_ws_messages_sent_total",
                "counter",
                "Messages written to WebSocket clients.",
            ),
            (
                "plinth_ws_messages_dropped_total",
                "counter",
                "Messages dropped because a client's queue was full.",
            ),
            (
                "plinth_ws_slow_consumers_total",
                "counter",
                "Connections closed for falling behind.",
            ),
            (
                "plinth_ws_rejected_total",
                "counter",
                "WebSocket upgrades refused (token or origin).",
            ),
            (
                "plinth_scheduler_due",
                "gauge",
                "Ticks due and waiting for a slot.",
            ),
            ("plinth_scheduler_running", "gauge", "Ticks running now."),
            (
                "plinth_ticks_coalesced_total",
                "counter",
                "Ticks skipped because the previous one was still running or late.",
            ),
            (
                "plinth_ticks_claimed_elsewhere_total",
                "counter",
                "Ticks another node claimed first.",
            ),
            (
                "plinth_compiles_running",
                "gauge",
                "Uploads being compiled.",
            ),
            (
                "plinth_component_loads_total",
                "counter",
                "Component versions loaded on this node, by where their code came from: compiled, or mapped from the compile cache.",
            ),
            (
                "plinth_installations_parked_total",
                "counter",
                "Installations the circuit breaker parked.",
            ),
            (
                "plinth_uptime_seconds",
                "gauge",
                "Seconds since this node started.",
            ),
        ] {
            let header = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
            assert!(text.contains(&header), "{header}missing from\n{text}");
        }
        for line in [
            "plinth_calls_total{tenant=\"acme\",extension=\"Clock \\\"Q\\\"@1.0.0\",call=\"render\",outcome=\"OK\"} 2\n",
            "plinth_calls_total{tenant=\"beta\",extension=\"Clock \\\"Q\\\"@1.0.0\",call=\"on-tick\",outcome=\"FUEL_EXHAUSTED\"} 1\n",
            "plinth_http_errors_total{code=\"NOT_FOUND\"} 1\n",
            "plinth_call_duration_seconds_bucket{le=\"0.0005\"} 3\n",
            "plinth_call_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "plinth_call_duration_seconds_count 3\n",
            "plinth_tick_lateness_seconds_bucket{le=\"0.002\"} 0\n",
            "plinth_tick_lateness_seconds_bucket{le=\"0.005\"} 1\n",
            "plinth_tick_lateness_seconds_bucket{le=\"+Inf\"} 1\n",
            "plinth_ws_connections 1\n",
            "plinth_ws_slow_consumers_total 1\n",
            "plinth_ticks_coalesced_total 0\n",
            "plinth_component_loads_total{code=\"compiled\"} 0\n",
            "plinth_uptime_seconds 1.5\n",
        ] {
            assert!(text.contains(line), "{line}missing from\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        assert_eq!(metrics.calls_of("render", "OK"), 2);
        assert_eq!(metrics.calls_of("on-tick", "FUEL_EXHAUSTED"), 1);
        assert_eq!(metrics.lateness_quantile(0.99), Some(0.005));
        assert_eq!(metrics.ws_slow_consumers.get(), 1);
    }
}
