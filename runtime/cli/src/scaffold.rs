//! `plinth new widget NAME`: a Rust widget crate that builds and runs as it is.

use std::path::{Path, PathBuf};

use plinth_host::{ErrorCode, PlinthError};

/// Where this `plinth` found the Rust SDK when it was built.
fn sdk_path() -> PathBuf {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
    sdk.canonicalize().unwrap_or(sdk)
}

const LIB_RS: &str = r#"//! {{name}}: a Plinth widget.

use plinth_sdk::prelude::*;
use serde::Deserialize;

/// The installation's config; the schema in `describe` says the same to the console.
#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_title")]
    title: String,
}

fn default_title() -> String {
    "{{name}}".into()
}

struct Component;

impl Extension for Component {
    fn describe() -> Descriptor {
        Descriptor::new("{{name}}", "{{name}}")
            .version("0.1.0")
            .description("Counts how often it was rendered.")
            .category("custom")
            .icon("chart-bar")
            .uses("cache")
            .config_schema(&serde_json::json!({
                "type": "object",
                "properties": { "title": { "type": "string", "default": "{{name}}" } }
            }))
    }
}

impl Widget for Component {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let config: Config = request.config()?;
        let renders = cache::incr("renders", 1)?;
        Ok(vec![MetricCard::new(config.title, renders as f64).caption("renders so far").into()])
    }
}

plinth_sdk::export_widget!(Component);
"#;

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
plinth-sdk = { path = "{{sdk}}" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# A workspace of its own, so the widget builds wherever it is created.
[workspace]

# `plinth run .` builds with this profile: small and fast components.
[profile.guest]
inherits = "release"
debug = false
strip = true
lto = true
codegen-units = 1
"#;

const README: &str = r#"# {{name}}

A Plinth widget. Build and run it:

```sh
rustup target add wasm32-wasip2
plinth run .                     # builds for wasm32-wasip2, renders, prints view + receipt
plinth inspect .                 # world, imports, describe()
```

The component lands in `target/guests/wasm32-wasip2/guest/{{crate}}.wasm`.
"#;

/// Creates the widget crate and returns its folder.
pub fn widget(name: &str, dir: Option<&Path>) -> Result<PathBuf, PlinthError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(PlinthError::new(
            ErrorCode::InvalidRequest,
            format!("widget name {name:?} must start with a letter and use only [a-z0-9-]"),
        ));
    }
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_owned);
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(PlinthError::new(
            ErrorCode::InvalidRequest,
            format!("{} already exists and is not empty", dir.display()),
        ));
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk_path().display().to_string())
    };
    let io = |e: std::io::Error| {
        PlinthError::new(
            ErrorCode::Internal,
            format!("writing {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir.join("src")).map_err(io)?;
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO_TOML)).map_err(io)?;
    std::fs::write(dir.join("src/lib.rs"), fill(LIB_RS)).map_err(io)?;
    std::fs::write(dir.join("README.md"), fill(README)).map_err(io)?;
    std::fs::write(dir.join(".gitignore"), "/target\n/plinth-data\n").map_err(io)?;
    Ok(dir)
}
