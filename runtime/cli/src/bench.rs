//! `plinth bench`: the sandbox measured against the same logic as native code, side by
//! side in one run. Medians and p99 in microseconds; ratios are wasm / native.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use plinth_host::{
    Backends, Call, Extension, Grants, Invocation, Limits, Sandbox, SandboxConfig, Scope,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::guest_build;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Measured iterations per case (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 3000)]
    pub iterations: usize,
    /// Primes below this are counted by the CPU-bound widget.
    #[arg(long, default_value_t = 200_000)]
    pub cpu_n: u32,
    /// Instances held live at once for the memory-per-instance case.
    #[arg(long, default_value_t = 50)]
    pub live_instances: usize,
    /// Scratch directory for the embedded backends and the compile cache.
    #[arg(long, default_value = "target/bench-data")]
    pub data_dir: PathBuf,
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

fn rss_bytes() -> u64 {
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

pub async fn run(args: BenchArgs) -> anyhow::Result<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let hello = std::fs::read(guest_build::build(
        &root.join("extensions/hello-metric"),
        None,
    )?)?;
    let bench = std::fs::read(guest_build::build(
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
    let n = args.iterations;
    let mut report = json!({
        "iterations": n,
        "cores": std::thread::available_parallelism().map_or(0, |c| c.get()),
    });

    // 1. instantiate + render + drop of hello-metric, against the same logic native.
    let main = sandbox(&args.data_dir, true, true, &backends)?;
    let hello_ext = main.load(&hello)?;
    let wasm = measure_calls(n, &main, &hello_ext, &invocation, &render(json!({}))).await?;
    let native = measure_native(n * 10, || native_hello("{}").len());
    report["hello_metric_render"] =
        json!({"wasm": wasm.json(), "native": native.json(), "ratio": ratio(&wasm, &native)});

    // 2. the cost of epoch and fuel checks on a CPU-bound widget.
    let cpu = render(json!({"mode": "cpu", "n": args.cpu_n}));
    let native = measure_native(n / 10, || bench_logic::primes_below(args.cpu_n) as usize);
    let mut limits = serde_json::Map::new();
    let mut baseline = None;
    for (epoch, fuel) in [(false, false), (true, false), (false, true), (true, true)] {
        let sandbox = sandbox(&args.data_dir, epoch, fuel, &backends)?;
        let extension = sandbox.load(&bench)?;
        let mut unlimited = invocation.clone();
        unlimited.limits.fuel = None;
        unlimited.limits.timeout = Duration::from_secs(10);
        let summary = measure_calls(n / 10, &sandbox, &extension, &unlimited, &cpu).await?;
        let base = *baseline.get_or_insert(summary);
        limits.insert(
            format!("epoch_{}_fuel_{}", if epoch { "on" } else { "off" }, if fuel { "on" } else { "off" }),
            json!({
                "wasm": summary.json(),
                "overhead_vs_no_checks_percent": ((summary.median_us / base.median_us - 1.0) * 1000.0).round() / 10.0,
                "ratio_to_native": ratio(&summary, &native),
            }),
        );
    }
    limits.insert("native".into(), native.json());
    report["cpu_bound_limits"] = Value::Object(limits);

    // 3. a render returning a 4 KiB view.
    let bench_ext = main.load(&bench)?;
    let view4k = render(json!({"mode": "view4k"}));
    let probe = main.call(&bench_ext, &invocation, view4k.clone()).await;
    let wasm = measure_calls(n, &main, &bench_ext, &invocation, &view4k).await?;
    let native = measure_native(n * 10, || native_view4k().len());
    report["view_4k_render"] = json!({
        "output_bytes": probe.receipt.output_bytes,
        "wasm": wasm.json(), "native": native.json(), "ratio": ratio(&wasm, &native),
    });

    // 4. memory per concurrently live instance.
    let live = args.live_instances;
    let shared = Arc::new(main);
    let before = rss_bytes();
    let hold = render(json!({"mode": "hold", "ms": 1500}));
    let mut calls = Vec::new();
    for _ in 0..live {
        let (sandbox, extension, invocation, hold) = (
            shared.clone(),
            bench_ext.clone(),
            invocation.clone(),
            hold.clone(),
        );
        calls.push(tokio::spawn(async move {
            let mut invocation = invocation;
            invocation.limits.timeout = Duration::from_secs(5);
            sandbox.call(&extension, &invocation, hold).await
        }));
    }
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
    report["rss_per_live_instance"] = json!({
        "live_instances": live,
        "rss_before_bytes": before,
        "rss_during_bytes": during,
        "per_instance_bytes": during.saturating_sub(before) / live as u64,
    });

    // 5. loading a component whose compiled code is on disk, against compiling it.
    let main = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("sandbox still shared"))?;
    let mut cached = Vec::new();
    for _ in 0..50 {
        main.unload(&hello_ext.hash);
        let started = Instant::now();
        let extension = main.load(&hello)?;
        cached.push(started.elapsed());
        ensure!(
            extension.code == plinth_host::CodeSource::Cached,
            "expected a cached load"
        );
    }
    let compiler = Sandbox::new(
        SandboxConfig {
            cache_dir: None,
            ..main.config().clone()
        },
        backends.clone(),
    )?;
    let mut compiled = Vec::new();
    for _ in 0..5 {
        compiler.unload(&hello_ext.hash);
        let started = Instant::now();
        compiler.load(&hello)?;
        compiled.push(started.elapsed());
    }
    let cached = Summary::of(cached);
    let compiled = Summary::of(compiled);
    report["component_load"] = json!({
        "component_bytes": hello.len(),
        "cached": cached.json(),
        "compiled": compiled.json(),
        "speedup": ((compiled.median_us / cached.median_us) * 10.0).round() / 10.0,
    });
    Ok(report)
}
