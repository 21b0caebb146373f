//! `plinth serve`: the server on embedded defaults, a config file or the environment.

use std::path::{Path, PathBuf};

use plinth_host::{ErrorCode, PlinthError};
use plinth_server::ServerConfig;

/// The example extensions the demo tenant gets, built from the workspace.
const DEMO_EXTENSIONS: &[&str] = &["hello-metric", "cache-stats"];

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
    let server = plinth_server::start(config).await?;
    let app = server.app.clone();
    let operator = plinth_server::operator_token(&app).await?;
    let url = server.url();
    println!("Plinth is serving on {url}");
    println!("  operator token: {operator}");
    println!(
        "  (kept in {}; API document at {url}/api/v1/openapi.json)",
        app.config.data_dir.join("operator-token").display()
    );
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
                eprintln!("the example extensions were not found; the demo tenant starts empty")
            }
        }
        let demo = plinth_server::install_demo(&app, components).await?;
        println!(
            "  demo tenant {:?}, token: {}\n  console: {url}/#tenant={}&token={}",
            demo.tenant, demo.token, demo.tenant, demo.token
        );
    }
    server
        .wait_for_signal()
        .await
        .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))
}
