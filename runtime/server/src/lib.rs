//! # plinth-server
//!
//! `plinth serve`: the registry (tenants, tokens, components, installations,
//! dashboards), the REST API under `/api/v1`, the WebSocket hub, the tick scheduler,
//! the event queue and its dispatcher, health and Prometheus metrics, over one [`plinth_host::Sandbox`].

pub mod api;
pub mod app;
pub mod calls;
pub mod components;
pub mod config;
pub mod connections;
pub mod console;
pub mod demo;
pub mod events;
pub mod installations;
pub mod installer;
pub mod metrics;
pub mod pushes;
pub mod registry;
pub mod scheduler;
pub mod schema;
pub mod slots;
pub mod store;
pub mod tenants;
pub mod ws;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use plinth_host::{ErrorCode, PlinthError};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use app::App;
pub use config::ServerConfig;
pub use registry::Role;

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served without a token, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    metrics_task: Option<JoinHandle<std::io::Result<()>>>,
    scheduler: Option<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
    quotas: JoinHandle<()>,
}

/// How long a stop waits for its WebSockets' close frames to go out.
const SOCKETS_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl RunningServer {
    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish, closes the WebSockets (1001),
    /// stops the scheduler.
    pub async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.app.hub.close_all();
        // The close frames are written by the sockets' own tasks: they get a moment to
        // go out before the process may end (clients then see 1001, not a reset).
        self.app.hub.closed(SOCKETS_CLOSE_GRACE).await;
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.abort();
        }
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.abort();
        }
        self.quotas.abort();
        if let Some(metrics) = self.metrics_task.take() {
            metrics.await.map_err(std::io::Error::other)??;
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Runs until the process gets Ctrl-C or SIGTERM.
    pub async fn wait_for_signal(self) -> std::io::Result<()> {
        let terminate = async {
            #[cfg(unix)]
            if let Ok(mut signal) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                signal.recv().await;
                return;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// Opens the registry and backends and starts serving on `config.listen` (port 0 picks
/// a free port; see [`RunningServer::addr`]), and `/metrics` on `config.metrics_listen`
/// if set.
pub async fn start(mut config: ServerConfig) -> Result<RunningServer, PlinthError> {
    let listener = bind(config.listen).await?;
    // The bound address, so that the default public origins name the real port.
    config.listen = local_addr(&listener)?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => {
            let listener = bind(at).await?;
            config.metrics_listen = Some(local_addr(&listener)?);
            Some(listener)
        }
        None => None,
    };
    private_dir(&config.data_dir)?;
    let (addr, metrics_addr) = (config.listen, config.metrics_listen);
    let scheduler_enabled = config.scheduler.enabled;
    let app = App::new(config).await?;
    let (shutdown, stopped) = watch::channel(false);
    let serve = |listener, router, stopped| {
        let http = app.config.http.clone();
        tokio::spawn(async move { connections::serve(listener, router, &http, stopped).await })
    };
    let task = serve(listener, api::router(app.clone()), stopped.clone());
    let metrics_task =
        metrics_listener.map(|l| serve(l, api::metrics_router(app.clone()), stopped));
    let scheduler = scheduler_enabled.then(|| {
        let ticks = scheduler::Scheduler::new(scheduler::Ticking {
            settings: app.config.scheduler.clone(),
            claims: app.config.claims_ticks(),
            node_id: app.node_id.clone(),
            registry: app.registry.clone(),
            installations: app.installations.clone(),
            calls: app.calls.clone(),
            pushes: app.pushes.clone(),
            metrics: app.metrics.clone(),
        });
        tokio::spawn(ticks.run())
    });
    let dispatcher = app.config.events.enabled.then(|| app.events.start());
    let quotas = tokio::spawn(refresh_quotas(app.clone()));
    tracing::info!(%addr, ?metrics_addr, node = %app.node_id, events = app.events.queue().kind(), "plinth serving");
    Ok(RunningServer {
        addr,
        metrics_addr,
        app,
        shutdown,
        task,
        metrics_task,
        scheduler,
        dispatcher,
        quotas,
    })
}

/// Reads every tenant's quota again every [`tenants::QUOTA_REFRESH`]; a metadata
/// database that cannot be reached leaves the quotas as they were.
async fn refresh_quotas(app: Arc<App>) {
    let mut every = tokio::time::interval(tenants::QUOTA_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(error) = app.tenants.load_quotas().await {
            tracing::warn!(%error, "tenant quotas not read again");
        }
    }
}

async fn bind(at: SocketAddr) -> Result<tokio::net::TcpListener, PlinthError> {
    tokio::net::TcpListener::bind(at).await.map_err(|e| {
        PlinthError::new(
            ErrorCode::Unavailable,
            format!("cannot listen on {at}: {e}"),
        )
    })
}

fn local_addr(listener: &tokio::net::TcpListener) -> Result<SocketAddr, PlinthError> {
    listener
        .local_addr()
        .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))
}

/// The data directory, readable by this user only (0700): it holds tenants' databases,
/// components, compiled code and tokens. `plinth serve` also creates every file 0600
/// (its umask); this covers a server started any other way.
fn private_dir(dir: &Path) -> Result<(), PlinthError> {
    let failed = |e: std::io::Error| {
        PlinthError::new(
            ErrorCode::Internal,
            format!("cannot create {}: {e}", dir.display()),
        )
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        builder.mode(0o700);
        builder.create(dir).map_err(failed)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(failed)?;
    Ok(())
}

/// Reads a token kept in a file of the data directory, or makes one and keeps it there
/// (mode 0600). The registry keeps only the hash; the file is how the operator sees it.
async fn kept_token(
    app: &App,
    file: &Path,
    tenant: Option<&str>,
    role: Role,
    label: &str,
) -> Result<String, PlinthError> {
    if let Ok(token) = std::fs::read_to_string(file) {
        let token = token.trim().to_owned();
        if app.registry.authenticate(&token).await?.is_some() {
            return Ok(token);
        }
    }
    let token = app.registry.create_token(tenant, role, label).await?;
    write_private(file, &token)?;
    Ok(token)
}

fn write_private(file: &Path, text: &str) -> Result<(), PlinthError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            PlinthError::new(
                ErrorCode::Internal,
                format!("cannot write {}: {e}", file.display()),
            )
        })
}

/// The operator token, made at first start and kept in `data_dir/operator-token`.
pub async fn operator_token(app: &App) -> Result<String, PlinthError> {
    kept_token(
        app,
        &app.config.data_dir.join("operator-token"),
        None,
        Role::Operator,
        "first operator",
    )
    .await
}

/// What the demo tenant looks like once set up.
pub struct Demo {
    pub tenant: String,
    pub token: String,
    pub installations: Vec<String>,
}

/// A tile of a demo dashboard on the 12-column grid: `(installation, x, y, w, h)`.
type DemoTile = (&'static str, u32, u32, u32, u32);

/// The demo tenant's dashboards.
const DEMO_DASHBOARDS: &[(&str, &[DemoTile])] = &[
    (
        "overview",
        &[
            ("view-gallery", 0, 0, 12, 17),
            ("hello-metric", 0, 17, 3, 4),
            ("cache-stats", 3, 17, 9, 8),
        ],
    ),
    ("sales", &[("sales-metrics", 0, 0, 12, 12)]),
    (
        "operations",
        &[("perf-monitor", 0, 0, 12, 7), ("entity-feed", 0, 7, 12, 8)],
    ),
];

/// The demo tenant: example data in its database, the given components uploaded and
/// installed with the capabilities they declare, and its dashboards ([`DEMO_DASHBOARDS`],
/// each made once). Safe to run at every start: what exists is kept, newer builds are
/// upgraded to.
pub async fn install_demo(app: &App, components: Vec<Vec<u8>>) -> Result<Demo, PlinthError> {
    const TENANT: &str = "demo";
    match app.tenants.create(TENANT, "Demo company").await {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::Conflict => {}
        Err(e) => return Err(e),
    }
    let token = kept_token(
        app,
        &app.config.data_dir.join("demo-token"),
        Some(TENANT),
        Role::TenantAdmin,
        "demo",
    )
    .await?;
    demo::seed(app.backends().db.as_ref(), TENANT, registry::now_ms())
        .await
        .map_err(|e| PlinthError::new(ErrorCode::Unavailable, format!("demo data: {e}")))?;
    let mut installations = Vec::new();
    for bytes in components {
        let uploaded = app.components.upload(TENANT, bytes).await?;
        let id = uploaded.component.extension.clone();
        let grants = uploaded.component.descriptor.capabilities.join(",");
        match app.registry.installation(TENANT, &id).await {
            Ok(existing) if existing.component == uploaded.component.hash => {}
            Ok(_) => {
                app.installer
                    .upgrade(
                        TENANT,
                        &id,
                        serde_json::from_value(json!({
                            "component": uploaded.component.hash,
                            "grants": grants,
                        }))
                        .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))?,
                    )
                    .await?;
            }
            Err(e) if e.code == ErrorCode::NotFound => {
                app.installer
                    .install(
                        TENANT,
                        serde_json::from_value(json!({
                            "id": id,
                            "component": uploaded.component.hash,
                            "grants": grants,
                        }))
                        .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))?,
                        true,
                    )
                    .await?;
            }
            Err(e) => return Err(e),
        }
        installations.push(id);
    }
    // The demo's dashboards, made once: a layout changed in the console is kept
    // across restarts. Tiles of extensions that are not installed are left out.
    for (name, layout) in DEMO_DASHBOARDS {
        match app.registry.dashboard(TENANT, name).await {
            Ok(_) => continue,
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        let tiles: Vec<registry::Tile> = layout
            .iter()
            .filter(|(id, ..)| installations.iter().any(|i| i == id))
            .map(|&(id, x, y, w, h)| registry::Tile {
                installation: id.to_owned(),
                x,
                y,
                w,
                h,
            })
            .collect();
        if !tiles.is_empty() {
            app.registry.put_dashboard(TENANT, name, &tiles).await?;
        }
    }
    Ok(Demo {
        tenant: TENANT.to_owned(),
        token,
        installations,
    })
}
