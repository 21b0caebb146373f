//! `plinth bench`: the sandbox measured against the same logic as native code, side by
//! side in one run. Medians and p99 in microseconds; ratios are wasm / native.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use plinth_host::{
    Backends, Call, Extension, Grants, Invocation, Limits, Metering, Sandbox, SandboxConfig, Scope,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bench_raw::{Phases, RawComponent};
use crate::guest_build;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Measured iterations per case (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 3000)]
    pub iterations: usize,
    /// Primes below this are counted by the tight-loop case of the CPU-bound widget.
    #[arg(long, default_value_t = 200_000)]
    pub cpu_n: u32,
    /// Synthetic orders summarised by the sales case of the CPU-bound widget.
    #[arg(long, default_value_t = 20_000)]
    pub orders_n: u32,
    /// Instances held live at once for the memory-per-instance case.
    #[arg(long, default_value_t = 50)]
    pub live_instances: usize,
    /// The Redis measured by the host-call case.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// The PostgreSQL measured by the host-call case.
    #[arg(long, default_value = "postgresql://root@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// Run only the cases whose names contain this (e.g. `hello`, `cpu`, `view`, `rss`,
    /// `load`, `languages`).
    #[arg(long)]
    pub only: Option<String>,
    /// Scratch directory for the embedded backends and the compile cache.
    #[arg(long, default_value = "target/bench-data")]
    pub data_dir: PathBuf,
}

impl BenchArgs {
    fn wants(&self, case: &str) -> bool {
        self.only.as_deref().is_none_or(|only| case.contains(only))
    }
}

/// Median, p99 and mean of a sample, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        let us = |d: Duration| d.as_nanos() as f64 / 1_000.0;
        let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        Summary {
            median_us: at(0.5),
            p99_us: at(0.99),
            mean_us: samples.iter().copied().map(us).sum::<f64>() / samples.len() as f64,
        }
    }

    fn json(&self) -> Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        json!({"median_us": round(self.median_us), "p99_us": round(self.p99_us), "mean_us": round(self.mean_us)})
    }
}

fn ratio(wasm: &Summary, native: &Summary) -> Value {
    json!((wasm.median_us / native.median_us * 10.0).round() / 10.0)
}

async fn measure_calls(
    iterations: usize,
    sandbox: &Sandbox,
    extension: &Extension,
    invocation: &Invocation,
    call: &Call,
) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let report = sandbox.call(extension, invocation, call.clone()).await;
        let took = started.elapsed();
        ensure!(
            report.outcome.is_ok(),
            "benchmark call failed: {:?}",
            report.outcome
        );
        if i >= iterations / 10 {
            samples.push(took);
        }
    }
    Ok(Summary::of(samples))
}

fn measure_native(iterations: usize, mut work: impl FnMut() -> usize) -> Summary {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        std::hint::black_box(work());
        if i >= iterations / 10 {
            samples.push(started.elapsed());
        }
    }
    Summary::of(samples)
}

/// hello-metric's render as a native function: parse the config, build the card, JSON.
pub fn native_hello(config: &str) -> String {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default = "title")]
        title: String,
        #[serde(default = "value")]
        value: f64,
    }
    fn title() -> String {
        "Hello, Plinth".into()
    }
    fn value() -> f64 {
        42.0
    }
    let config: Config = serde_json::from_str(config).expect("valid config");
    json!({"views": [{
        "kind": "metric_card", "title": config.title, "value": config.value, "unit": "widgets",
        "change_percent": 4.2, "trend": "up", "caption": "rendered in a fresh sandbox",
    }]})
    .to_string()
}

fn native_view4k() -> String {
    let rows: Vec<Value> = bench_logic::report_rows()
        .into_iter()
        .map(|(region, orders, revenue)| json!([region, orders, revenue]))
        .collect();
    json!({"views": [{
        "kind": "table", "title": "Orders by region",
        "columns": [{"key": "region", "title": "Region"}, {"key": "orders", "title": "Orders"}, {"key": "revenue", "title": "Revenue"}],
        "rows": rows, "total_rows": null,
    }]})
    .to_string()
}

/// Resident memory of this process (the second field of /proc/self/statm, in pages).
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn sandbox(
    data_dir: &Path,
    epoch: bool,
    fuel: bool,
    backends: &Backends,
) -> anyhow::Result<Sandbox> {
    let config = SandboxConfig {
        epoch,
        fuel,
        cache_dir: Some(data_dir.join("compiled")),
        ..SandboxConfig::default()
    };
    Ok(Sandbox::new(config, backends.clone())?)
}

fn render(config: Value) -> Call {
    Call::Render {
        config,
        params: Vec::new(),
    }
}

/// One call of every sandbox in turn, `rounds` times: the configurations see the same
/// machine noise, which matters on shared machines.
async fn measure_interleaved(
    rounds: usize,
    cases: &[(Sandbox, Arc<Extension>)],
    invocation: &Invocation,
    call: &Call,
) -> anyhow::Result<Vec<Summary>> {
    let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..rounds + rounds / 10 {
        for ((sandbox, extension), samples) in cases.iter().zip(&mut samples) {
            let started = Instant::now();
            let report = sandbox.call(extension, invocation, call.clone()).await;
            let took = started.elapsed();
            ensure!(
                report.outcome.is_ok(),
                "benchmark call failed: {:?}",
                report.outcome
            );
            if round >= rounds / 10 {
                samples.push(took);
            }
        }
    }
    Ok(samples.into_iter().map(Summary::of).collect())
}

/// Loads of a compiled version from the compile cache by its hash, as a node does on a
/// version's first call (the component's bytes neither read nor hashed), `times` times.
fn cached_loads(sandbox: &Sandbox, hash: &str, times: usize) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(times);
    for _ in 0..times {
        sandbox.unload(hash);
        let started = Instant::now();
        let extension = sandbox
            .load_cached(hash, Metering::Fuel)?
            .context("expected a cached load")?;
        samples.push(started.elapsed());
        ensure!(
            extension.code == plinth_host::CodeSource::Cached,
            "expected a cached load"
        );
    }
    Ok(Summary::of(samples))
}

/// The native side of a workload.
type NativeWork = Box<dyn Fn() -> usize>;

struct Bench {
    args: BenchArgs,
    backends: Backends,
    invocation: Invocation,
    hello: Vec<u8>,
    widget: Vec<u8>,
}

impl Bench {
    /// Case 6: what one host call costs per backend, measured from inside a widget (a
    /// render making `n` calls, minus a render making none, over `n`), beside the same
    /// backend called natively.
    async fn host_calls(&self) -> anyhow::Result<Value> {
        use plinth_host::capability::db::StatementBounds;
        use plinth_host::{BackendsConfig, CacheConfig, DbConfig};
        let n = 200u32;
        let rounds = (self.args.iterations / 10).max(20);
        let redis = BackendsConfig {
            cache: CacheConfig::Redis {
                url: self.args.redis_url.clone(),
            },
            ..BackendsConfig::default()
        };
        let postgres = BackendsConfig {
            db: DbConfig::Postgres {
                url: self.args.postgres_url.clone(),
            },
            ..BackendsConfig::default()
        };
        let cases = [
            ("cache_in_process", BackendsConfig::default(), "cache"),
            ("cache_redis", redis, "cache"),
            ("db_sqlite", BackendsConfig::default(), "db"),
            ("db_postgres", postgres, "db"),
        ];
        let mut shown = serde_json::Map::new();
        for (name, config, capability) in cases {
            let backends = Backends::from_config(&config, &self.args.data_dir)?;
            let sandbox = Sandbox::new(
                SandboxConfig {
                    cache_dir: Some(self.args.data_dir.join("compiled")),
                    ..SandboxConfig::default()
                },
                backends.clone(),
            )?;
            let extension = sandbox.load(&self.widget)?;
            let calls =
                |n: u32| render(json!({"mode": "hostcalls", "capability": capability, "n": n}));
            let with =
                measure_calls(rounds, &sandbox, &extension, &self.invocation, &calls(n)).await?;
            let without =
                measure_calls(rounds, &sandbox, &extension, &self.invocation, &calls(0)).await?;
            let in_widget_us = (with.median_us - without.median_us) / f64::from(n);
            let tenant = &self.invocation.scope.tenant;
            let mut native = Vec::new();
            for _ in 0..rounds * 10 {
                let started = Instant::now();
                if capability == "cache" {
                    backends.cache.get(tenant, "bench:key").await?;
                } else {
                    let bounds = StatementBounds {
                        max_rows: 10,
                        max_bytes: 1 << 20,
                        deadline: Instant::now() + Duration::from_secs(5),
                    };
                    backends
                        .db
                        .query(tenant, "SELECT 1", vec![], bounds)
                        .await?;
                }
                native.push(started.elapsed());
            }
            let native = Summary::of(native);
            shown.insert(
                name.into(),
                json!({
                    "per_call_in_widget_us": (in_widget_us * 100.0).round() / 100.0,
                    "native_median_us": (native.median_us * 100.0).round() / 100.0,
                    "native_p99_us": (native.p99_us * 100.0).round() / 100.0,
                    "ratio": ((in_widget_us / native.median_us) * 10.0).round() / 10.0,
                }),
            );
        }
        Ok(Value::Object(shown))
    }

    /// Case 1: instantiate + render + drop of hello-metric, interleaved with the same
    /// component run by wasmtime alone on the same engine (one call of each in turn), and
    /// against the same logic native.
    async fn hello_metric_render(&self) -> anyhow::Result<Value> {
        let n = self.args.iterations;
        let sandbox = sandbox(&self.args.data_dir, true, true, &self.backends)?;
        let extension = sandbox.load(&self.hello)?;
        let raw = RawComponent::new(&sandbox, &extension)?;
        let call = render(json!({}));
        let (mut plinth, mut bare) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for round in 0..n + n / 10 {
            let started = Instant::now();
            let report = sandbox
                .call(&extension, &self.invocation, call.clone())
                .await;
            let took = started.elapsed();
            ensure!(
                report.outcome.is_ok(),
                "benchmark call failed: {:?}",
                report.outcome
            );
            let raw_took = raw.render("{}").await?;
            if round >= n / 10 {
                plinth.push(took);
                bare.push(raw_took);
            }
        }
        let (wasm, raw) = (Summary::of(plinth), Summary::of(bare));
        let native = measure_native(n * 10, || native_hello("{}").len());
        Ok(json!({
            "wasm": wasm.json(),
            "raw_wasmtime": raw.json(),
            "native": native.json(),
            "ratio": ratio(&wasm, &native),
            "ratio_to_raw_wasmtime": (wasm.median_us / raw.median_us * 100.0).round() / 100.0,
        }))
    }

    /// Case 2: the cost of epoch and fuel checks on CPU-bound widgets: a tight loop, the worst
    /// case for checks at loop headers, and a sales summary, typical widget work. Beside
    /// the sandboxes built each way, the server's sandbox (epoch and fuel) running the
    /// widget as it does for a tenant whose quota turns fuel metering off.
    async fn cpu_bound_limits(&self) -> anyhow::Result<Value> {
        let configurations = [(false, false), (true, false), (false, true), (true, true)];
        let mut cases = Vec::new();
        for (epoch, fuel) in configurations {
            let sandbox = sandbox(&self.args.data_dir, epoch, fuel, &self.backends)?;
            let extension = sandbox.load(&self.widget)?;
            cases.push((sandbox, extension));
        }
        let server = sandbox(&self.args.data_dir, true, true, &self.backends)?;
        let unmetered = server.load_for(&self.widget, Metering::Off)?;
        cases.push((server, unmetered));
        let mut unlimited = self.invocation.clone();
        unlimited.limits.fuel = None;
        unlimited.limits.timeout = Duration::from_secs(10);
        let rounds = (self.args.iterations / 4).max(20);
        let (cpu_n, orders_n) = (self.args.cpu_n, self.args.orders_n);
        let workloads: [(&str, Value, NativeWork); 2] = [
            (
                "tight_loop_primes",
                json!({"mode": "cpu", "n": cpu_n}),
                Box::new(move || bench_logic::primes_below(cpu_n) as usize),
            ),
            (
                "sales_summary",
                json!({"mode": "orders", "n": orders_n}),
                Box::new(move || bench_logic::order_summary(orders_n).0.len()),
            ),
        ];
        let mut shown = serde_json::Map::new();
        for (name, config, native_work) in workloads {
            let summaries =
                measure_interleaved(rounds, &cases, &unlimited, &render(config)).await?;
            let native = measure_native(rounds, native_work);
            let base = summaries[0];
            let mut workload = serde_json::Map::new();
            let on = |b: bool| if b { "on" } else { "off" };
            let names = configurations
                .into_iter()
                .map(|(epoch, fuel)| format!("epoch_{}_fuel_{}", on(epoch), on(fuel)))
                .chain(["tenant_without_fuel_metering".to_owned()]);
            for (name, summary) in names.zip(summaries) {
                workload.insert(
                    name,
                    json!({
                        "wasm": summary.json(),
                        "overhead_percent": ((summary.median_us / base.median_us - 1.0) * 1000.0).round() / 10.0,
                        "ratio_to_native": ratio(&summary, &native),
                    }),
                );
            }
            workload.insert("native".into(), native.json());
            shown.insert(name.into(), Value::Object(workload));
        }
        Ok(Value::Object(shown))
    }

    /// Case 3: a render returning a 4 KiB view.
    async fn view_4k_render(&self) -> anyhow::Result<Value> {
        let n = self.args.iterations;
        let sandbox = sandbox(&self.args.data_dir, true, true, &self.backends)?;
        let extension = sandbox.load(&self.widget)?;
        let call = render(json!({"mode": "view4k"}));
        let probe = sandbox
            .call(&extension, &self.invocation, call.clone())
            .await;
        let wasm = measure_calls(n, &sandbox, &extension, &self.invocation, &call).await?;
        let native = measure_native(n * 10, || native_view4k().len());
        Ok(json!({
            "output_bytes": probe.receipt.output_bytes,
            "wasm": wasm.json(), "native": native.json(), "ratio": ratio(&wasm, &native),
        }))
    }

    /// Case 4: memory per concurrently live instance.
    async fn rss_per_live_instance(&self) -> anyhow::Result<Value> {
        let live = self.args.live_instances;
        let sandbox = Arc::new(sandbox(&self.args.data_dir, true, true, &self.backends)?);
        let extension = sandbox.load(&self.widget)?;
        // One call first, so code and first-touch costs are not counted per instance.
        sandbox
            .call(
                &extension,
                &self.invocation,
                render(json!({"mode": "hold", "ms": 1})),
            )
            .await;
        let before = rss_bytes();
        let mut invocation = self.invocation.clone();
        invocation.limits.timeout = Duration::from_secs(5);
        let hold = render(json!({"mode": "hold", "ms": 1500}));
        let calls: Vec<_> = (0..live)
            .map(|_| {
                let (sandbox, extension, invocation, hold) = (
                    sandbox.clone(),
                    extension.clone(),
                    invocation.clone(),
                    hold.clone(),
                );
                tokio::spawn(async move { sandbox.call(&extension, &invocation, hold).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(750)).await;
        let during = rss_bytes();
        for call in calls {
            let report = call.await?;
            ensure!(
                report.outcome.is_ok(),
                "hold call failed: {:?}",
                report.outcome
            );
        }
        Ok(json!({
            "live_instances": live,
            "rss_before_bytes": before,
            "rss_during_bytes": during,
            "per_instance_bytes": during.saturating_sub(before) / live as u64,
        }))
    }

    /// Case 5: loading a component whose compiled code is on disk, against compiling it.
    async fn component_load(&self) -> anyhow::Result<Value> {
        let cached_sandbox = sandbox(&self.args.data_dir, true, true, &self.backends)?;
        let hash = cached_sandbox.load(&self.hello)?.hash.clone();
        let cached = cached_loads(&cached_sandbox, &hash, 50)?;
        let config = SandboxConfig {
            cache_dir: None,
            ..cached_sandbox.config().clone()
        };
        let compiler = Sandbox::new(config, self.backends.clone())?;
        let mut compiled = Vec::new();
        for _ in 0..5 {
            compiler.unload(&hash);
            let started = Instant::now();
            compiler.load(&self.hello)?;
            compiled.push(started.elapsed());
        }
        let compiled = Summary::of(compiled);
        Ok(json!({
            "component_bytes": self.hello.len(),
            "cached": cached.json(),
            "compiled": compiled.json(),
            "speedup": ((compiled.median_us / cached.median_us) * 10.0).round() / 10.0,
        }))
    }
}

impl Bench {
    /// Case 7: the same widget (`plinth new widget`'s template: parse the config, one
    /// cache increment, a metric card) in every language: toolchain build, compile,
    /// cached load, and instantiate + render, interleaved so every language sees the same
    /// machine noise, beside the same logic as native code on the same cache backend.
    async fn languages(&self) -> anyhow::Result<Value> {
        use crate::polyglot::Language;
        let projects = self.args.data_dir.join("languages");
        let languages = [
            ("rust", Language::Rust),
            ("js", Language::Js),
            ("python", Language::Python),
            ("c", Language::C),
        ];
        let cached_sandbox = sandbox(&self.args.data_dir, true, true, &self.backends)?;
        let compiler = Sandbox::new(
            SandboxConfig {
                cache_dir: None,
                ..cached_sandbox.config().clone()
            },
            self.backends.clone(),
        )?;
        let mut shown = serde_json::Map::new();
        let mut extensions = Vec::new();
        for (name, language) in languages {
            let dir = projects.join(format!("visits-{name}"));
            if dir.exists() {
                std::fs::remove_dir_all(&dir).context("clearing an old project")?;
            }
            crate::scaffold::widget("visits", language, Some(&dir))?;
            let started = Instant::now();
            // Rust shares the workspace's guest target dir, so the SDK is built once.
            let target = (language == Language::Rust)
                .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guests"));
            let bytes = std::fs::read(guest_build::build(&dir, target.as_deref())?)?;
            let build = started.elapsed();
            let started = Instant::now();
            let compiled = compiler.load(&bytes)?;
            let compile = started.elapsed();
            compiler.unload(&compiled.hash);
            let hash = cached_sandbox.load(&bytes)?.hash.clone();
            let cached = cached_loads(&cached_sandbox, &hash, 20)?;
            shown.insert(
                name.into(),
                json!({
                    "component_bytes": bytes.len(),
                    "build_ms": build.as_millis() as u64,
                    "compile_ms": compile.as_millis() as u64,
                    "cached_load": cached.json(),
                }),
            );
            extensions.push((name, cached_sandbox.load(&bytes)?));
        }
        let rounds = self.args.iterations;
        // `describe` does next to nothing in every language: instantiation's floor.
        let mut floors = vec![Vec::with_capacity(rounds); extensions.len()];
        for round in 0..rounds + rounds / 10 {
            for ((name, extension), samples) in extensions.iter().zip(&mut floors) {
                let started = Instant::now();
                let report = cached_sandbox
                    .call(extension, &self.invocation, Call::Describe)
                    .await;
                let took = started.elapsed();
                ensure!(report.outcome.is_ok(), "{name}: {:?}", report.outcome);
                if round >= rounds / 10 {
                    samples.push(took);
                }
            }
        }
        for ((name, _), samples) in extensions.iter().zip(floors) {
            shown[*name]["instantiate_and_describe"] = Summary::of(samples).json();
        }
        // The same `describe` by wasmtime alone, by phase: where a call's time goes.
        let raws = extensions
            .iter()
            .map(|(_, extension)| RawComponent::new(&cached_sandbox, extension))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut phases: Vec<Vec<Phases>> = vec![Vec::with_capacity(rounds); raws.len()];
        for round in 0..rounds + rounds / 10 {
            for (raw, samples) in raws.iter().zip(&mut phases) {
                let took = raw.describe().await?;
                if round >= rounds / 10 {
                    samples.push(took);
                }
            }
        }
        for ((name, _), samples) in extensions.iter().zip(phases) {
            let of = |phase: fn(&Phases) -> Duration| {
                Summary::of(samples.iter().map(phase).collect()).json()
            };
            shown[*name]["raw_wasmtime_describe"] = json!({
                "total": of(Phases::total),
                "instantiate": of(|p| p.instantiate),
                "call": of(|p| p.call),
                "drop": of(|p| p.drop),
            });
        }
        let call = render(json!({"title": "Visits"}));
        let mut samples = vec![Vec::with_capacity(rounds); extensions.len()];
        let mut native = Vec::with_capacity(rounds);
        for round in 0..rounds + rounds / 10 {
            for ((name, extension), samples) in extensions.iter().zip(&mut samples) {
                let started = Instant::now();
                let report = cached_sandbox
                    .call(extension, &self.invocation, call.clone())
                    .await;
                let took = started.elapsed();
                ensure!(report.outcome.is_ok(), "{name}: {:?}", report.outcome);
                if round >= rounds / 10 {
                    samples.push(took);
                }
            }
            let started = Instant::now();
            let card = native_visits(&self.backends, r#"{"title":"Visits"}"#).await?;
            std::hint::black_box(card);
            if round >= rounds / 10 {
                native.push(started.elapsed());
            }
        }
        let native = Summary::of(native);
        for ((name, _), samples) in extensions.iter().zip(samples) {
            let render = Summary::of(samples);
            shown[*name]["instantiate_and_render"] = render.json();
            shown[*name]["ratio_to_native"] = ratio(&render, &native);
        }
        shown.insert("native".into(), json!({ "render": native.json() }));
        // One widget called again and again, as one client refreshing it does: the
        // interleaved rounds above make every call find the caches and the pool slot as
        // another language left them.
        for (name, extension) in &extensions {
            let in_a_row =
                measure_calls(rounds, &cached_sandbox, extension, &self.invocation, &call).await?;
            shown[*name]["render_in_a_row"] = in_a_row.json();
        }
        Ok(Value::Object(shown))
    }
}

/// The template widget's render as native code: parse the config, increment the counter
/// in the same cache backend, serialize the card.
async fn native_visits(backends: &Backends, config: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Config {
        title: Option<String>,
    }
    let config: Config = serde_json::from_str(config)?;
    let renders = backends.cache.incr("bench", "renders", 1).await?;
    Ok(json!({"views": [{
        "kind": "metric_card",
        "title": config.title.unwrap_or_else(|| "visits".into()),
        "value": renders as f64,
        "caption": "renders so far",
    }]})
    .to_string())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let hello = std::fs::read(guest_build::build(
        &root.join("extensions/hello-metric"),
        None,
    )?)?;
    let widget = std::fs::read(guest_build::build(
        &root.join("tests/guests/bench-widget"),
        None,
    )?)?;
    std::fs::create_dir_all(&args.data_dir).context("creating the bench data dir")?;
    let backends = Backends::embedded(&args.data_dir)?;
    let invocation = Invocation {
        scope: Scope::new("bench", "bench")?,
        grants: Grants::all(),
        limits: Limits::default(),
    };
    let mut report = json!({
        "iterations": args.iterations,
        "cores": std::thread::available_parallelism().map_or(0, |c| c.get()),
    });
    let bench = Bench {
        args,
        backends,
        invocation,
        hello,
        widget,
    };
    if bench.args.wants("hello_metric_render") {
        report["hello_metric_render"] = bench.hello_metric_render().await?;
    }
    if bench.args.wants("cpu_bound_limits") {
        report["cpu_bound_limits"] = bench.cpu_bound_limits().await?;
    }
    if bench.args.wants("view_4k_render") {
        report["view_4k_render"] = bench.view_4k_render().await?;
    }
    if bench.args.wants("rss_per_live_instance") {
        report["rss_per_live_instance"] = bench.rss_per_live_instance().await?;
    }
    if bench.args.wants("component_load") {
        report["component_load"] = bench.component_load().await?;
    }
    if bench.args.wants("host_calls") {
        report["host_calls"] = bench.host_calls().await?;
    }
    if bench.args.wants("languages") {
        report["languages"] = bench.languages().await?;
    }
    Ok(report)
}
