//! `plinth serve`: the server on embedded defaults, a config file or the environment.

use std::path::{Path, PathBuf};

use plinth_host::{ErrorCode, PlinthError};
use plinth_server::ServerConfig;

/// Prints a line of the start banner. A closed stdout (a pipe whose reader has gone, a
/// supervisor that closed it) must not take the server down, as `println!` would by
/// panicking on the broken pipe; the tokens it would have shown stay in their files.
macro_rules! say {
    ($($line:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($line)*);
    }};
}

/// The example extensions the demo tenant gets, built from the workspace.
const DEMO_EXTENSIONS: &[&str] = &[
    "hello-metric",
    "cache-stats",
    "sales-metrics",
    "entity-feed",
    "perf-monitor",
    "view-gallery",
];

#[derive(clap::Args)]
#[command(after_help = environment_help())]
pub struct ServeArgs {
    /// A TOML config file (see docs/operating.md); the environment overrides it.
    #[arg(long, env = "PLINTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory: SQLite files, compiled code, tokens [default: ./plinth-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Do not create the demo tenant.
    #[arg(long)]
    pub no_demo: bool,
    /// Do not post the demo tenant's synthetic orders, samples and entity changes.
    #[arg(long)]
    pub no_demo_traffic: bool,
}

fn environment_help() -> String {
    let mut help = String::from("Environment (overrides the config file):\n");
    for (name, what) in plinth_server::config::ENVIRONMENT {
        help.push_str(&format!("  {name:<24} {what}\n"));
    }
    help.push_str("  PLINTH_LOG               log filter, e.g. info or plinth_server=debug\n");
    help
}

/// Where the example extensions are: `./extensions`, or the workspace this binary was
/// built from.
fn extensions_dir() -> Option<PathBuf> {
    let here = Path::new("extensions");
    if here.join("hello-metric").is_dir() {
        return Some(here.to_owned());
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../extensions");
    built.join("hello-metric").is_dir().then_some(built)
}

pub async fn serve(args: ServeArgs) -> Result<(), PlinthError> {
    let mut config = ServerConfig::load(args.config.as_deref(), |name| std::env::var(name).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen.parse().map_err(|e| {
            PlinthError::new(ErrorCode::InvalidRequest, format!("--listen {listen}: {e}"))
        })?;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if args.no_demo {
        config.demo = false;
    }
    let demo = config.demo;
    // Everything the server creates under its data directory (tenants' databases,
    // components, compiled code, tokens) is this user's only: files 0600, dirs 0700,
    // whichever library creates them.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let server = plinth_server::start(config).await?;
    let app = server.app.clone();
    // A token is printed only by the start that creates it (it is in its 0600 file
    // from then on): logs and terminals that outlive a start do not collect secrets.
    let operator_file = app.config.data_dir.join("operator-token");
    let operator = fresh_token(&operator_file, plinth_server::operator_token(&app)).await?;
    let url = server.url();
    say!("Plinth is serving on {url}");
    match operator {
        Some(token) => {
            say!("  operator token: {token}");
            say!(
                "  (kept in {}, shown this once; API document at {url}/api/v1/openapi.json)",
                operator_file.display()
            );
        }
        None => say!(
            "  (operator token kept in {}; API document at {url}/api/v1/openapi.json)",
            operator_file.display()
        ),
    }
    if demo {
        let mut components = Vec::new();
        match extensions_dir() {
            Some(dir) => {
                for name in DEMO_EXTENSIONS {
                    let (_, bytes) = crate::component_bytes(&dir.join(name))?;
                    components.push(bytes);
                }
            }
            None => {
                tracing::warn!(
                    "the example extensions were not found; the demo tenant starts empty"
                )
            }
        }
        let demo_file = app.config.data_dir.join("demo-token");
        let mut shown = None;
        let installed = fresh_token(&demo_file, async {
            let demo = plinth_server::install_demo(&app, components).await?;
            shown = Some(demo.tenant.clone());
            Ok(demo.token)
        })
        .await?;
        let tenant = shown.unwrap_or_default();
        match installed {
            Some(token) => say!("  demo tenant {tenant:?}, token: {token} (shown this once)"),
            None => say!(
                "  demo tenant {tenant:?}, token kept in {}",
                demo_file.display()
            ),
        }
        if !args.no_demo_traffic && !tenant.is_empty() {
            say!("  posting demo events (a few orders a second); --no-demo-traffic stops it");
            tokio::spawn(plinth_server::demo::traffic(
                app.events.clone(),
                tenant.clone(),
            ));
        }
        // The console asks for the token; a URL carrying it would end up in browser
        // history and in whatever the terminal is logged to.
        say!("  console: {url}/");
        say!("  (sign in there with the demo tenant's token)");
    }
    // After the demo tenant is set up: what a supervisor (or a test) can wait for.
    tracing::info!(%url, demo, "ready");
    server
        .wait_for_signal()
        .await
        .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))
}

/// Runs `keep` (which reads a token from `file` or makes one and writes it there) and
/// answers the token if this start made it, `None` if it was there already.
async fn fresh_token(
    file: &Path,
    keep: impl std::future::Future<Output = Result<String, PlinthError>>,
) -> Result<Option<String>, PlinthError> {
    let before = std::fs::read_to_string(file).ok();
    let token = keep.await?;
    Ok((before.as_deref().map(str::trim) != Some(token.as_str())).then_some(token))
}
