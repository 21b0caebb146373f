//! `plinth bench-server`: the server under load on loopback, in one run.
//!
//! - `render`: wrk against the render endpoint, against a native axum handler that
//!   produces the same JSON, and against the same card as a wasi:http component served
//!   as `wasmtime serve` serves it; requests per second, p50 and p99, and the ratios.
//! - `installations`: many installations, each of a tenant's own version, idle on one
//!   node (RSS before and after each has rendered); then the node restarted and the
//!   first render of a thousand of them, which must map compiled code, not compile.
//! - `ticks`: thousands of installations ticking every 5 s; CPU used and tick lateness.
//! - `fanout`: one topic with thousands of WebSocket subscribers (in a child process,
//!   so neither side runs out of file descriptors); messages delivered per second.
//! - `events`, on the SQLite queue and on Redis Streams: events accepted durably per
//!   second (wrk posting one event per request, handlers off), events handled per second
//!   end to end, and event → WebSocket latency at light load.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use axum::http::HeaderMap;
use futures_util::{SinkExt, StreamExt};
use plinth_server::{App, Role, ServerConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchServerArgs {
    /// Run only the cases whose names contain this: `render`, `ticks`, `fanout`,
    /// `events`.
    #[arg(long)]
    pub only: Option<String>,
    /// Seconds each wrk run and the tick measurement last.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    /// Installations of the tick and installations cases.
    #[arg(long, default_value_t = 10_000)]
    pub installations: usize,
    /// Installations rendered first after the restart in the installations case.
    #[arg(long, default_value_t = 1_000)]
    pub restarted: usize,
    /// Component versions of the installations case (one per tenant).
    #[arg(long, default_value_t = 100)]
    pub versions: usize,
    /// WebSocket subscribers of the fan-out case.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Messages published in the fan-out case.
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// Events of the events case's end-to-end run.
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Redis of the events case's Redis Streams queue.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-data/server")]
    pub data_dir: PathBuf,
    /// Internal: run as the fan-out case's subscriber process against this ws:// URL.
    #[arg(long, hide = true)]
    pub subscribe_to: Option<String>,
    /// Internal: run as the installations case's restarted node on this data directory.
    #[arg(long, hide = true)]
    pub restart_in: Option<PathBuf>,
}

impl BenchServerArgs {
    fn wants(&self, case: &str) -> bool {
        self.only.as_deref().is_none_or(|only| case.contains(only))
    }
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn server(
    args: &BenchServerArgs,
    case: &str,
    edit: impl FnOnce(&mut ServerConfig),
) -> anyhow::Result<plinth_server::RunningServer> {
    let dir = args.data_dir.join(case);
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = node_config(dir)?;
    config.scheduler.enabled = false;
    edit(&mut config);
    Ok(plinth_server::start(config).await?)
}

/// A node on loopback (any port) on `dir`, without the demo tenant.
fn node_config(dir: PathBuf) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir,
        demo: false,
        ..ServerConfig::default()
    })
}

/// The `bench` tenant and a viewer token for it.
async fn bench_tenant(app: &App) -> anyhow::Result<String> {
    app.registry.create_tenant("bench", "bench").await?;
    Ok(app
        .registry
        .create_token(Some("bench"), Role::Viewer, "bench")
        .await?)
}

fn hello_bytes() -> anyhow::Result<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Ok(crate::component_bytes(&root.join("extensions/hello-metric"))?.1)
}

async fn install_hello(
    app: &App,
    tenant: &str,
    ids: impl Iterator<Item = String>,
    tick: Option<u64>,
) -> anyhow::Result<()> {
    let hash = app
        .components
        .upload(tenant, hello_bytes()?)
        .await?
        .component
        .hash;
    for id in ids {
        let request = serde_json::from_value(json!({
            "id": id, "component": hash, "tick_interval_ms": tick.unwrap_or(0),
        }))?;
        app.installer.install(tenant, request, true).await?;
    }
    Ok(())
}

/// Runs wrk and reads requests/s and latency percentiles from its report.
fn wrk(url: &str, token: &str, args: &BenchServerArgs) -> anyhow::Result<Value> {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{}", args.connections),
            &format!("-d{}s", args.duration),
            "--latency",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "wrk failed: {text}");
    ensure!(
        !text.contains("Non-2xx"),
        "the endpoint answered errors: {text}"
    );
    let field = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(prefix))?;
        let value = line.trim_start()[prefix.len()..]
            .split_whitespace()
            .next()?;
        let (number, unit) = value.split_at(
            value
                .find(|c: char| c.is_alphabetic())
                .unwrap_or(value.len()),
        );
        let number: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => number,
            "ms" => number * 1e3,
            "s" => number * 1e6,
            _ => number,
        })
    };
    Ok(json!({
        "requests_per_second": field("Requests/sec:").context("no Requests/sec in wrk output")?,
        "p50_us": field("50%"),
        "p99_us": field("99%"),
    }))
}

async fn render_case(args: &BenchServerArgs) -> anyhow::Result<Value> {
    let running = server(args, "render", |_| {}).await?;
    let app = running.app.clone();
    let token = bench_tenant(&app).await?;
    install_hello(&app, "bench", std::iter::once("hello".to_owned()), None).await?;
    let path = "/api/v1/tenants/bench/installations/hello/data";
    // The same JSON from native code: token check, the widget's logic, a receipt.
    let expected = format!("Bearer {token}");
    let native = axum::Router::new().route(
        path,
        axum::routing::get(move |headers: HeaderMap| {
            let expected = expected.clone();
            async move {
                if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(expected.as_str()) {
                    return (axum::http::StatusCode::UNAUTHORIZED, "{}".to_owned());
                }
                let started = Instant::now();
                let rendered: Value = serde_json::from_str(&crate::bench::native_hello("{}")).unwrap_or_default();
                let body = json!({
                    "views": rendered["views"],
                    "receipt": {
                        "tenant": "bench", "installation": "hello", "component": "native",
                        "call": "render", "outcome": "OK", "fuel_used": null,
                        "peak_memory_bytes": 0, "wall_time_us": started.elapsed().as_micros() as u64,
                        "host_calls": {}, "output_bytes": 0, "logs_dropped": 0,
                    },
                });
                (axum::http::StatusCode::OK, body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let native_addr = listener.local_addr()?;
    let native_task = tokio::spawn(async move { axum::serve(listener, native).await });
    let plinth_url = format!("{}{path}", running.url());
    let native_url = format!("http://{native_addr}{path}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let http_hello = crate::component_bytes(&root.join("tests/guests/http-hello"))?.1;
    let (served_addr, served_task) = crate::bench_wasi_http::serve(&http_hello, &token).await?;
    let served_url = format!("http://{served_addr}{path}");
    let check = reqwest_free_get(&served_url, &token).await?;
    ensure!(
        check.contains("metric_card"),
        "the wasi:http component does not answer: {check}"
    );
    let (url, token2) = (plinth_url.clone(), token.clone());
    let check = reqwest_free_get(&url, &token2).await?;
    ensure!(
        check.contains("metric_card"),
        "render does not work: {check}"
    );
    let args2 = args.clone();
    let (plinth, native, served) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Value, Value, Value)> {
            Ok((
                wrk(&plinth_url, &token2, &args2)?,
                wrk(&native_url, &token2, &args2)?,
                wrk(&served_url, &token2, &args2)?,
            ))
        })
        .await??;
    native_task.abort();
    served_task.abort();
    running.stop().await?;
    let rate = |report: &Value| report["requests_per_second"].as_f64().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| (a / b.max(1e-9) * 100.0).round() / 100.0;
    Ok(json!({
        "plinth": plinth,
        "native": native,
        "wasmtime_serve": served,
        "throughput_ratio": ratio(rate(&plinth), rate(&native)),
        "plinth_over_wasmtime_serve": ratio(rate(&plinth), rate(&served)),
        "connections": args.connections,
        "seconds": args.duration,
    }))
}

/// One GET over a plain TCP socket: enough to check an endpoint before loading it.
async fn reqwest_free_get(url: &str, token: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// Where a render request's time goes, without HTTP: each step of the handler timed
/// in a loop on this task (mean microseconds over 20 000 requests).
async fn phases_case(args: &BenchServerArgs) -> anyhow::Result<Value> {
    let running = server(args, "phases", |_| {}).await?;
    let app = running.app.clone();
    let token = bench_tenant(&app).await?;
    install_hello(&app, "bench", std::iter::once("hello".to_owned()), None).await?;
    let n = 20_000u32;
    let mut spent = [Duration::ZERO; 4];
    for i in 0..n + n / 10 {
        let t0 = Instant::now();
        let principal = app.registry.authenticate(&token).await?;
        ensure!(principal.is_some());
        let t1 = Instant::now();
        let installation = app.installations.get("bench", "hello").await?;
        let t2 = Instant::now();
        let report = app.calls.render(&installation, Vec::new()).await?;
        let t3 = Instant::now();
        let rendered = report.outcome?;
        let body = plinth_server::api::render_body(&rendered, &report.receipt);
        std::hint::black_box(body);
        let t4 = Instant::now();
        if i >= n / 10 {
            for (slot, took) in spent.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
                *slot += took;
            }
        }
    }
    running.stop().await?;
    let mean = |d: Duration| (d.as_nanos() as f64 / f64::from(n) / 10.0).round() / 100.0;
    Ok(json!({
        "requests": n,
        "authenticate_us": mean(spent[0]),
        "installation_us": mean(spent[1]),
        "call_us": mean(spent[2]),
        "response_json_us": mean(spent[3]),
    }))
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    (crate::bench::rss_bytes() as f64 / f64::from(1 << 20) * 10.0).round() / 10.0
}

/// hello-metric made a version of its own: the same code with a custom section naming
/// `tag`, so its hash (and its compiled artifact) differs from every other tag's.
fn hello_version(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"plinth-bench-version";
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Renders installation `id` of `tenant` as the data endpoint does (without HTTP) and
/// returns how long it took.
async fn render_once(app: &App, tenant: &str, id: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let installation = app.installations.get(tenant, id).await?;
    let report = app.calls.render(&installation, Vec::new()).await?;
    let rendered = report.outcome?;
    std::hint::black_box(plinth_server::api::render_body(&rendered, &report.receipt));
    Ok(started.elapsed())
}

fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted
        .get(at)
        .map_or(0.0, |d| (d.as_secs_f64() * 1e7).round() / 10.0)
}

/// Installations at scale on one node. `--versions` tenants each upload a version of
/// their own and install it `--installations / --versions` times; RSS is read on the
/// empty node, with everything installed, after one render of each, and after
/// [`RECENT_RECEIPTS`] renders of each (every installation's receipt ring full). Then
/// the node is stopped and started again on the same data directory, and the first
/// render of `--restarted` installations (spread over every version) is timed: each
/// version's first render must map the code compiled before the restart.
async fn installations_case(args: &BenchServerArgs) -> anyhow::Result<Value> {
    const RECENT_RECEIPTS: usize = 100;
    let versions = args.versions.max(1);
    let per_tenant = args.installations.div_ceil(versions);
    let installations = per_tenant * versions;
    let tenant = |t: usize| format!("tenant-{t}");
    let running = server(args, "installations", |c| c.scheduler.enabled = true).await?;
    let app = running.app.clone();
    let empty_mib = rss_mib();
    let bytes = hello_bytes()?;
    let started = Instant::now();
    for t in 0..versions {
        app.registry.create_tenant(&tenant(t), &tenant(t)).await?;
        let hash = app
            .components
            .upload(&tenant(t), hello_version(&bytes, &tenant(t)))
            .await?
            .component
            .hash;
        for i in 0..per_tenant {
            let request =
                serde_json::from_value(json!({"id": format!("w-{i}"), "component": hash}))?;
            app.installer.install(&tenant(t), request, true).await?;
        }
    }
    let installed_in = started.elapsed();
    let compiled_before_restart = app.sandbox.load_counts().compiled();
    let installed_mib = rss_mib();
    for i in 0..per_tenant {
        for t in 0..versions {
            render_once(&app, &tenant(t), &format!("w-{i}")).await?;
        }
    }
    let rendered_once_mib = rss_mib();
    let started = Instant::now();
    for _ in 1..RECENT_RECEIPTS {
        for i in 0..per_tenant {
            for t in 0..versions {
                render_once(&app, &tenant(t), &format!("w-{i}")).await?;
            }
        }
    }
    let ring_renders_per_second =
        (installations * (RECENT_RECEIPTS - 1)) as f64 / started.elapsed().as_secs_f64();
    let rings_full_mib = rss_mib();
    drop(app);
    running.stop().await?;

    // The same data directory (registry, blobs, compiled code), a new node in a process
    // of its own, so its memory is its own.
    let output = Command::new(std::env::current_exe()?)
        .arg("bench-server")
        .arg("--restart-in")
        .arg(args.data_dir.join("installations"))
        .args(["--restarted", &args.restarted.to_string()])
        .args(["--versions", &versions.to_string()])
        .args(["--installations", &installations.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("starting the restarted node")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "the restarted node failed: {stdout}"
    );
    let restart: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("the restarted node's report: {stdout}"))?;
    Ok(json!({
        "installations": installations,
        "versions": versions,
        "installed_in_s": (installed_in.as_secs_f64() * 10.0).round() / 10.0,
        "versions_compiled_before_restart": compiled_before_restart,
        "rss_mib": {
            "empty_node": empty_mib,
            "installed": installed_mib,
            "each_rendered_once": rendered_once_mib,
            "each_rendered_100_times": rings_full_mib,
        },
        "renders_per_second_filling_rings": ring_renders_per_second.round(),
        "restart": restart,
        "note": "in-process renders (installation lookup, call, response body), no HTTP; RSS of the whole process, which is the node",
    }))
}

/// The installations case's node after its restart, in a process of its own: the first
/// render of `--restarted` installations, spread over every version, timed one by one.
/// Fails if any version was compiled rather than mapped from the compile cache.
async fn restarted_node(args: BenchServerArgs, dir: PathBuf) -> anyhow::Result<Value> {
    let versions = args.versions.max(1);
    let installations = args.installations;
    let tenant = |t: usize| format!("tenant-{t}");
    let config = node_config(dir)?;
    let started_at = Instant::now();
    let restarted = plinth_server::start(config).await?;
    let start_s = started_at.elapsed().as_secs_f64();
    let app = restarted.app.clone();
    let restarted_mib = rss_mib();
    let first = args.restarted.min(installations);
    let mut firsts = Vec::with_capacity(first);
    let started = Instant::now();
    for n in 0..first {
        let (t, i) = (n % versions, n / versions);
        firsts.push(render_once(&app, &tenant(t), &format!("w-{i}")).await?);
    }
    let firsts_in = started.elapsed();
    let loads = app.sandbox.load_counts();
    let (compiled, cached) = (loads.compiled(), loads.cached());
    let after_firsts_mib = rss_mib();
    drop(app);
    restarted.stop().await?;
    ensure!(
        compiled == 0,
        "the restarted node compiled {compiled} versions; it should have mapped them"
    );
    firsts.sort();
    Ok(json!({
        "start_s": (start_s * 1000.0).round() / 1000.0,
        "first_renders": first,
        "versions_among_them": versions.min(first),
        "loaded_from_compile_cache": cached,
        "compiled": compiled,
        "seconds": (firsts_in.as_secs_f64() * 1000.0).round() / 1000.0,
        "first_render_p50_us": percentile_us(&firsts, 0.5),
        "first_render_p99_us": percentile_us(&firsts, 0.99),
        "first_render_max_us": percentile_us(&firsts, 1.0),
        "rss_mib_started": restarted_mib,
        "rss_mib_after_first_renders": after_firsts_mib,
    }))
}

fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn ticks_case(args: &BenchServerArgs) -> anyhow::Result<Value> {
    let running = server(args, "ticks", |c| {
        c.scheduler.enabled = true;
        c.scheduler.max_running = 64;
        c.scheduler.max_running_per_tenant = 8;
        c.pool_instances = 128;
    })
    .await?;
    let app = running.app.clone();
    let tenants = 100usize;
    let per_tenant = args.installations.div_ceil(tenants);
    let started = Instant::now();
    for t in 0..tenants {
        let tenant = format!("tenant-{t}");
        app.registry.create_tenant(&tenant, &tenant).await?;
        install_hello(
            &app,
            &tenant,
            (0..per_tenant).map(|i| format!("w-{i}")),
            Some(5_000),
        )
        .await?;
    }
    let installed_in = started.elapsed();
    // One full interval for every installation to reach its first period.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ticks_before = app.metrics.calls_of("on-tick", "OK");
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration.max(10))).await;
    let seconds = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let ticks = app.metrics.calls_of("on-tick", "OK") - ticks_before;
    let failed = app.metrics.calls_of("on-tick", "QUOTA_EXCEEDED");
    let coalesced = app.metrics.ticks_coalesced.get();
    let p50 = app.metrics.lateness_quantile(0.5);
    let p99 = app.metrics.lateness_quantile(0.99);
    running.stop().await?;
    let expected = (tenants * per_tenant) as f64 * seconds / 5.0;
    Ok(json!({
        "installations": tenants * per_tenant,
        "interval_ms": 5_000,
        "installed_in_s": (installed_in.as_secs_f64() * 10.0).round() / 10.0,
        "seconds": (seconds * 10.0).round() / 10.0,
        "ticks_run": ticks,
        "ticks_expected": expected.round(),
        "ticks_per_second": (ticks as f64 / seconds).round(),
        "ticks_coalesced": coalesced,
        "ticks_refused_by_quota": failed,
        "cpu_cores_used": (cpu / seconds * 100.0).round() / 100.0,
        "lateness_p50_ms_at_most": p50.map(|s| s * 1e3),
        "lateness_p99_ms_at_most": p99.map(|s| s * 1e3),
        "note": "each tick is on-tick, one render and one push to widget/<id>; lateness is the bucket bound of the histogram",
    }))
}

async fn fanout_case(args: &BenchServerArgs) -> anyhow::Result<Value> {
    let subscribers = args.subscribers;
    let running = server(args, "fanout", |c| {
        c.websocket.queue_messages = 1024;
        // Every subscriber is one token's socket from one address: the per-token,
        // per-tenant and per-address caps a server has against abuse are lifted here.
        c.websocket.max_sockets_per_token = subscribers + 1;
        c.websocket.max_sockets_per_tenant = subscribers + 1;
        c.http.max_connections = c.http.max_connections.max(subscribers + 64);
        c.http.max_connections_per_address = subscribers + 64;
    })
    .await?;
    let app = running.app.clone();
    let token = bench_tenant(&app).await?;
    let url = format!("ws://{}/api/v1/ws", running.addr);
    let mut child = Command::new(std::env::current_exe()?)
        .args(["bench-server", "--subscribe-to", &url])
        .env(SUBSCRIBER_TOKEN, &token)
        .args(["--subscribers", &args.subscribers.to_string()])
        .args(["--messages", &args.messages.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the subscriber process")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let line = lines.next();
        (line, lines)
    });
    let (line, mut lines) = tokio::time::timeout(Duration::from_secs(300), ready).await??;
    let line = line.context("subscriber process ended")??;
    ensure!(line.starts_with("ready"), "subscriber process: {line}");
    let payload = json!({"type": "views", "value": 42, "padding": "x".repeat(200)});
    let start_us = epoch_us();
    for _ in 0..args.messages {
        app.backends()
            .broadcast
            .publish("bench", "fanout", payload.clone())
            .await?;
        // A few milliseconds apart, as ticks and events arrive, not in one burst.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let result = tokio::task::spawn_blocking(move || lines.next()).await?;
    let result: Value = serde_json::from_str(&result.context("no result")??)?;
    let _ = child.wait();
    let delivered = result["received"].as_u64().unwrap_or(0);
    let last = result["last_received_epoch_us"]
        .as_u64()
        .unwrap_or(start_us);
    let seconds = (last.saturating_sub(start_us)) as f64 / 1e6;
    let sent = app.metrics.ws_messages_sent.get();
    let dropped = app.metrics.ws_messages_dropped.get();
    running.stop().await?;
    Ok(json!({
        "subscribers": args.subscribers,
        "messages_published": args.messages,
        "deliveries_expected": args.subscribers * args.messages,
        "delivered": delivered,
        "dropped": dropped,
        "server_writes": sent,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "delivered_per_second": (delivered as f64 / seconds.max(1e-6)).round(),
    }))
}

/// The journal handler: one row per delivery in the tenant's database, one message on
/// topic `journal`.
fn journal_bytes() -> anyhow::Result<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Ok(crate::component_bytes(&root.join("tests/guests/event-journal"))?.1)
}

/// A server for the events case, with the journal handler installed for `bench`;
/// the admin token.
async fn events_server(
    args: &BenchServerArgs,
    case: &str,
    redis: Option<&str>,
    dispatch: bool,
) -> anyhow::Result<(plinth_server::RunningServer, String)> {
    let running = server(args, case, |c| {
        if let Some(url) = redis {
            // Its own keys, apart from any server using the same Redis.
            c.events.queue = plinth_server::config::EventQueueConfig::Redis {
                url: url.into(),
                prefix: format!("plinth-bench:{case}:{}:", epoch_us()),
            };
        }
        c.events.enabled = dispatch;
        // Load, not abuse: the intake's caps are lifted.
        c.events.rate_per_second = 10_000_000;
        c.events.burst = 10_000_000;
        c.events.max_backlog = u64::MAX / 2;
        c.http.max_connections_per_address = 4_096;
        // wrk posts every body with one token.
        c.http.body_slots = 4_096;
        c.http.body_slots_per_token = 4_096;
    })
    .await?;
    let app = running.app.clone();
    app.registry.create_tenant("bench", "bench").await?;
    let token = app
        .registry
        .create_token(Some("bench"), Role::TenantAdmin, "bench")
        .await?;
    let hash = app
        .components
        .upload("bench", journal_bytes()?)
        .await?
        .component
        .hash;
    let request = serde_json::from_value(json!({
        "id": "journal", "component": hash, "grants": "db:write,broadcast,log",
    }))?;
    app.installer.install("bench", request, true).await?;
    Ok((running, token))
}

/// wrk posting `batch` events per request, each with its own id.
fn wrk_post(
    url: &str,
    token: &str,
    args: &BenchServerArgs,
    tag: &str,
    batch: usize,
) -> anyhow::Result<Value> {
    let script = args.data_dir.join(format!("post-{tag}.lua"));
    std::fs::create_dir_all(&args.data_dir)?;
    std::fs::write(
        &script,
        format!(
            r#"local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
function request()
  local events = {{}}
  for i = 1, {batch} do
    n = n + 1
    events[i] = '{{"id":"{tag}-' .. tid .. '-' .. n .. '","name":"test.bench","payload":{{"n":' .. n .. '}}}}'
  end
  local body = '[' .. table.concat(events, ',') .. ']'
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}"}}, body)
end
"#
        ),
    )?;
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{}", args.connections),
            &format!("-d{}s", args.duration),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "wrk failed: {text}");
    ensure!(
        !text.contains("Non-2xx"),
        "the intake answered errors: {text}"
    );
    let rate = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no Requests/sec in wrk output")?;
    let percentile = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    Ok(json!({
        "events_per_request": batch,
        "requests_per_second": rate.round(),
        "accepted_per_second": (rate * batch as f64).round(),
        "p50": percentile("50%"),
        "p99": percentile("99%"),
    }))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn events_case(args: &BenchServerArgs, redis: Option<&str>) -> anyhow::Result<Value> {
    let tag = if redis.is_some() { "redis" } else { "sqlite" };
    // 1. Intake alone: every event durable (and routed to the journal) before its 202;
    //    one event per request, then batches of 100.
    let mut intake = Vec::new();
    for batch in [1, 100] {
        let case = format!("events-intake-{tag}-{batch}");
        let (running, token) = events_server(args, &case, redis, false).await?;
        let url = format!("{}/api/v1/tenants/bench/events", running.url());
        let (args2, tag2) = (args.clone(), format!("{tag}-{batch}-{}", epoch_us()));
        let mut result =
            tokio::task::spawn_blocking(move || wrk_post(&url, &token, &args2, &tag2, batch))
                .await??;
        result["deliveries_stored"] = running
            .app
            .events
            .view("bench")
            .await?
            .backlog
            .waiting
            .into();
        // What was stored goes with the run (in Redis it would outlive the data directory).
        running.app.events.forget_tenant("bench").await?;
        running.stop().await?;
        intake.push(result);
    }

    // 2. End to end: N events posted in batches of 100 while handlers run.
    let (running, token) = events_server(args, &format!("events-e2e-{tag}"), redis, true).await?;
    let url = format!("{}/api/v1/tenants/bench/events", running.url());
    let http = reqwest::Client::new();
    let run = epoch_us();
    let started = Instant::now();
    let total = args.events;
    for batch in 0..total.div_ceil(100) {
        let events: Vec<Value> = (batch * 100..((batch + 1) * 100).min(total))
            .map(|i| json!({"id": format!("e2e-{run}-{i}"), "name": "test.bench"}))
            .collect();
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .body(serde_json::to_vec(&events)?)
            .send()
            .await?;
        ensure!(
            response.status().as_u16() == 202,
            "intake: {}",
            response.text().await?
        );
    }
    let posted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (running.app.metrics.event_deliveries("bench", "done") as usize) < total {
        ensure!(Instant::now() < deadline, "handlers did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handled = started.elapsed();

    // 3. Latency at light load: one event every 20 ms, timed from the POST to the
    //    handler's message on a subscribed socket.
    let (mut socket, _) = tokio_tungstenite::connect_async(socket_request(
        &format!("ws://{}/api/v1/ws", running.addr),
        &token,
    )?)
    .await?;
    socket
        .send(Message::Text(
            json!({"type": "subscribe", "topic": "journal"})
                .to_string()
                .into(),
        ))
        .await?;
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message?
            && text.contains("subscribed")
        {
            break;
        }
    }
    let mut latencies = Vec::new();
    for i in 0..200 {
        let id = format!("light-{run}-{i}");
        let sent = Instant::now();
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .body(json!({"id": id, "name": "test.light"}).to_string())
            .send()
            .await?;
        ensure!(
            response.status().as_u16() == 202,
            "intake: {}",
            response.text().await?
        );
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .context("no push within 10 s")?
                .context("socket closed")??;
            if let Message::Text(text) = message
                && text.contains(&id)
            {
                break;
            }
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);
    running.app.events.forget_tenant("bench").await?;
    running.stop().await?;
    Ok(json!({
        "intake": intake,
        "end_to_end": {
            "events": total,
            "post_seconds": (posted.as_secs_f64() * 1000.0).round() / 1000.0,
            "handled_seconds": (handled.as_secs_f64() * 1000.0).round() / 1000.0,
            "handled_per_second": (total as f64 / handled.as_secs_f64()).round(),
        },
        "event_to_websocket_ms": {
            "samples": latencies.len(),
            "p50": (quantile(&latencies, 0.5) * 100.0).round() / 100.0,
            "p99": (quantile(&latencies, 0.99) * 100.0).round() / 100.0,
        },
    }))
}

/// The fan-out subscriber process's token: in its environment, since a token is never
/// put in a URL (the server refuses it there).
const SUBSCRIBER_TOKEN: &str = "PLINTH_BENCH_TOKEN";

/// A WebSocket upgrade to `url` with `token` in its `Authorization` header.
fn socket_request(
    url: &str,
    token: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// The subscriber process: opens the sockets, subscribes, says `ready`, counts.
async fn subscriber_process(url: &str, subscribers: usize, messages: usize) -> anyhow::Result<()> {
    let token = std::env::var(SUBSCRIBER_TOKEN).context(SUBSCRIBER_TOKEN)?;
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::with_capacity(subscribers);
    for batch in (0..subscribers).collect::<Vec<_>>().chunks(200) {
        let opened = futures_util::future::join_all(batch.iter().map(|_| async {
            let (mut socket, _) =
                tokio_tungstenite::connect_async(socket_request(url, &token)?).await?;
            socket
                .send(Message::Text(
                    json!({"type": "subscribe", "topic": "fanout"})
                        .to_string()
                        .into(),
                ))
                .await?;
            // Wait for the confirmation so the publisher starts after every subscription.
            while let Some(message) = socket.next().await {
                if let Message::Text(text) = message? {
                    if text.contains("subscribed") {
                        break;
                    }
                    bail!("subscription refused: {text}");
                }
            }
            anyhow::Ok(socket)
        }))
        .await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    let expected = (subscribers * messages) as u64;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let (received, last) = (received.clone(), last.clone());
            tokio::spawn(async move {
                let mut mine = 0;
                while mine < messages {
                    match socket.next().await {
                        Some(Ok(Message::Text(_))) => {
                            mine += 1;
                            received.fetch_add(1, Ordering::Relaxed);
                            last.fetch_max(epoch_us(), Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                }
            })
        })
        .collect();
    println!("ready");
    std::io::stdout().flush()?;
    let _ = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(tasks),
    )
    .await;
    println!(
        "{}",
        json!({"received": received.load(Ordering::Relaxed), "expected": expected, "last_received_epoch_us": last.load(Ordering::Relaxed)})
    );
    Ok(())
}

pub async fn run(args: BenchServerArgs) -> anyhow::Result<Value> {
    if let Some(url) = &args.subscribe_to {
        subscriber_process(url, args.subscribers, args.messages).await?;
        std::process::exit(0);
    }
    if let Some(dir) = &args.restart_in {
        println!("{}", restarted_node(args.clone(), dir.clone()).await?);
        std::process::exit(0);
    }
    let mut report = json!({"cores": std::thread::available_parallelism().map_or(0, |c| c.get())});
    if args.wants("render") {
        report["render"] = render_case(&args).await?;
    }
    if args.wants("phases") {
        report["render_phases"] = phases_case(&args).await?;
    }
    if args.wants("installations") {
        report["installations"] = installations_case(&args).await?;
    }
    if args.wants("ticks") {
        report["ticks"] = ticks_case(&args).await?;
    }
    if args.wants("fanout") {
        report["fanout"] = fanout_case(&args).await?;
    }
    if args.wants("events") {
        report["events"] = json!({
            "sqlite": events_case(&args, None).await?,
            "redis": events_case(&args, Some(&args.redis)).await?,
        });
    }
    Ok(report)
}
