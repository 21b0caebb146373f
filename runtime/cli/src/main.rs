//! `plinth`: run, inspect, scaffold and benchmark Plinth extensions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use plinth::{RunRequest, bench, print, scaffold};
use plinth_host::{BackendsConfig, CacheConfig};
use plinth_host::{Call, ErrorCode, Limits, PlinthError, Scope};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "plinth",
    version,
    about = "Runs tenants' WebAssembly widgets and event handlers in a sandbox."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one call of an extension on the embedded capabilities and prints the result,
    /// the usage receipt, the log lines and the published messages as JSON. Exits 1 with
    /// the error code when the call fails.
    Run(Box<RunArgs>),
    /// Prints a component's world, imports, exports and `describe()`.
    Inspect {
        /// A component (.wasm), or a Rust extension's folder to build first.
        extension: PathBuf,
        #[arg(long, default_value = "./plinth-data")]
        data_dir: PathBuf,
    },
    /// Builds an extension (a Rust crate, or a JavaScript, Python or C project with a
    /// plinth.toml) into a component and prints its path.
    Build {
        /// The extension's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the component goes (default: the project's target folder).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Scaffolds a new extension.
    New {
        #[command(subcommand)]
        kind: NewKind,
    },
    /// Measures the sandbox against the same logic as native code (see docs/BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Runs the server: REST API, WebSocket hub, scheduler and console. With no
    /// arguments: 127.0.0.1:8080, embedded backends under ./plinth-data, and a demo
    /// tenant with the example extensions.
    Serve(plinth::serve::ServeArgs),
    /// Loads the server on loopback: render throughput against native axum (wrk), 10 000
    /// ticking installations, fan-out to 10 000 WebSocket subscribers.
    BenchServer(plinth::bench_server::BenchServerArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// A component (.wasm), or a Rust extension's folder to build first.
    extension: PathBuf,
    /// The installation's config (JSON) passed to render, tick and actions.
    #[arg(long, default_value = "{}")]
    config: String,
    /// Call `on-tick` instead of `render`.
    #[arg(long, conflicts_with_all = ["event", "action"])]
    tick: bool,
    /// Call `handle` with this event: {"name": "order.completed", "payload": {...}}.
    #[arg(long, conflicts_with = "action")]
    event: Option<String>,
    /// Call the named action (`invoke`).
    #[arg(long)]
    action: Option<String>,
    /// The action's body (JSON).
    #[arg(long, default_value = "null", requires = "action")]
    body: String,
    /// A render query parameter, `name=value`; repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// A limit, `name=value` (fuel, memory, timeout, host-calls, output, table-elements,
    /// instances, log-lines, db-rows, broadcast-messages, broadcast-bytes); repeatable.
    #[arg(long = "limit", value_name = "NAME=VALUE")]
    limits: Vec<String>,
    /// Capabilities granted: any of cache, db, db:write, broadcast, log, or none.
    #[arg(long, default_value = "cache,db:write,broadcast,log")]
    grants: String,
    #[arg(long, default_value = "dev")]
    tenant: String,
    #[arg(long, default_value = "local")]
    installation: String,
    /// Where the embedded backends and the compile cache keep their files.
    #[arg(long, default_value = "./plinth-data")]
    data_dir: PathBuf,
    /// Use the Redis at this URL as the cache (e.g. redis://127.0.0.1:6379) instead of
    /// the in-process cache.
    #[arg(long, value_name = "URL")]
    redis_cache: Option<String>,
}

#[derive(Subcommand)]
enum NewKind {
    /// A widget, ready to build and run.
    Widget {
        /// The widget's id: lowercase letters, digits and dashes.
        name: String,
        /// The language it is written in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: plinth::polyglot::Language,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn invalid(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::InvalidRequest, message)
}

fn parse_json(what: &str, text: &str) -> Result<Value, PlinthError> {
    serde_json::from_str(text).map_err(|e| invalid(format!("--{what} is not JSON: {e}")))
}

fn pair(text: &str) -> Result<(&str, &str), PlinthError> {
    text.split_once('=')
        .ok_or_else(|| invalid(format!("expected NAME=VALUE, got {text:?}")))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_request(args: Box<RunArgs>) -> Result<RunRequest, PlinthError> {
    let RunArgs {
        extension,
        config,
        tick,
        event,
        action,
        body,
        params,
        limits,
        grants,
        tenant,
        installation,
        data_dir,
        redis_cache,
    } = *args;
    let config = parse_json("config", &config)?;
    let call = if tick {
        Call::Tick {
            config,
            sequence: 1,
            scheduled_at_ms: now_ms(),
        }
    } else if let Some(event) = event {
        let event = parse_json("event", &event)?;
        let name = event["name"]
            .as_str()
            .ok_or_else(|| invalid("--event needs a string \"name\"".into()))?
            .to_owned();
        Call::Event {
            id: event["id"]
                .as_str()
                .map_or_else(|| format!("evt-{}", now_ms()), str::to_owned),
            name,
            payload: event.get("payload").cloned().unwrap_or(Value::Null),
            occurred_at_ms: now_ms(),
            attempt: 1,
        }
    } else if let Some(name) = action {
        Call::Action {
            name,
            config,
            body: parse_json("body", &body)?,
        }
    } else {
        let params = params
            .iter()
            .map(|p| pair(p).map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect::<Result<_, _>>()?;
        Call::Render { config, params }
    };
    let mut parsed = Limits::default();
    for limit in &limits {
        let (key, value) = pair(limit)?;
        parsed.set(key, value)?;
    }
    Ok(RunRequest {
        component: extension,
        call,
        scope: Scope::new(&tenant, &installation)?,
        grants: grants.parse()?,
        limits: parsed,
        data_dir,
        backends: BackendsConfig {
            cache: redis_cache.map_or(CacheConfig::InProcess, |url| CacheConfig::Redis { url }),
            ..BackendsConfig::default()
        },
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    // The server logs what it does by default; one-shot commands only their errors.
    let default_filter = if matches!(command, Command::Serve(_)) {
        "info"
    } else {
        "error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let (value, ok) = match command {
        Command::Serve(args) => {
            return match plinth::serve::serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {}: {}", error.code, error.message);
                    ExitCode::FAILURE
                }
            };
        }
        Command::Run(args) => match run_request(args) {
            Ok(request) => plinth::run(request).await,
            Err(error) => (json!({ "result": { "error": error } }), false),
        },
        Command::Inspect {
            extension,
            data_dir,
        } => plinth::inspect(&extension, &data_dir).await,
        Command::New {
            kind: NewKind::Widget { name, lang, dir },
        } => match scaffold::widget(&name, lang, dir.as_deref()) {
            Ok(path) => (
                json!({ "created": path, "next": format!("plinth run {}", path.display()) }),
                true,
            ),
            Err(error) => (json!({ "error": error }), false),
        },
        Command::Build { dir, target_dir } => {
            match plinth::guest_build::build(&dir, target_dir.as_deref()) {
                Ok(path) => (json!({ "component": path }), true),
                Err(error) => (
                    json!({ "error": { "code": ErrorCode::InvalidRequest, "message": format!("{error:#}") } }),
                    false,
                ),
            }
        }
        Command::BenchServer(args) => match plinth::bench_server::run(args).await {
            Ok(report) => (report, true),
            Err(error) => (json!({ "error": format!("{error:#}") }), false),
        },
        Command::Bench(args) => match bench::run(args).await {
            Ok(report) => (report, true),
            Err(error) => (json!({ "error": format!("{error:#}") }), false),
        },
    };
    print(&value);
    if ok {
        ExitCode::SUCCESS
    } else {
        let error = value
            .pointer("/result/error")
            .or_else(|| value.get("error"));
        if let Some(code) = error.and_then(|e| e.get("code")).and_then(Value::as_str) {
            eprintln!(
                "error: {code}: {}",
                error.and_then(|e| e["message"].as_str()).unwrap_or("")
            );
        }
        ExitCode::FAILURE
    }
}
