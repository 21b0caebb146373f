//! `plinth new widget NAME [--lang rust|js|python|c]`: a widget that builds and runs as
//! it is.

use std::path::{Path, PathBuf};

use plinth_host::{ErrorCode, PlinthError};

use crate::polyglot::Language;

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

const JS_INDEX: &str = r#"// {{name}}: a Plinth widget.

import * as plinth from '../.plinth/plinth.js';

export const { manifest, widgetExports, handler } = plinth.defineExtension({
  describe: () => ({
    id: '{{name}}',
    name: '{{name}}',
    version: '0.1.0',
    description: 'Counts how often it was rendered.',
    icon: 'chart-bar',
    configSchema: { type: 'object', properties: { title: { type: 'string', default: '{{name}}' } } },
    uses: ['cache'],
  }),

  render({ config }) {
    const title = config.title ?? '{{name}}';
    if (typeof title !== 'string') throw plinth.invalid('config.title must be a string');
    const renders = plinth.cache.incr('renders', 1);
    return [plinth.metricCard(title, renders, { caption: 'renders so far' })];
  },
});
"#;

const PACKAGE_JSON: &str = r#"{
  "name": "{{name}}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": { "build": "plinth build ." },
  "devDependencies": { "@bytecodealliance/componentize-js": "0.23.0" }
}
"#;

const PYTHON_APP: &str = r#""""{{name}}: a Plinth widget."""

import plinth


class Widget(plinth.Extension):
    def describe(self):
        return (
            plinth.Descriptor("{{name}}", "{{name}}")
            .description("Counts how often it was rendered.")
            .icon("chart-bar")
            .config_schema({"type": "object",
                            "properties": {"title": {"type": "string", "default": "{{name}}"}}})
            .uses("cache")
        )

    def render(self, request):
        title = request.config.get("title", "{{name}}")
        if not isinstance(title, str):
            raise plinth.invalid("config.title must be a string")
        renders = plinth.cache.incr("renders", 1)
        return [plinth.metric_card(title, renders, caption="renders so far")]


Manifest, WidgetExports, Handler = plinth.export(Widget())
"#;

const C_SOURCE: &str = r#"/* {{name}}: a Plinth widget. */

#include "plinth.h"

void exports_plinth_extension_manifest_describe(
    exports_plinth_extension_manifest_descriptor_t *ret) {
  memset(ret, 0, sizeof *ret);
  ret->id = plinth_str("{{name}}");
  ret->name = plinth_str("{{name}}");
  ret->version = plinth_str("0.1.0");
  ret->description = plinth_str("Counts how often it was rendered.");
  ret->category = plinth_str("custom");
  ret->icon = plinth_str("chart-bar");
  ret->default_size.width = 2;
  ret->default_size.height = 1;
  ret->config_schema = plinth_str("{\"type\":\"object\"}");
  ret->capabilities.len = 1;
  ret->capabilities.ptr = calloc(1, sizeof(plinth_string_t));
  ret->capabilities.ptr[0] = plinth_str("cache");
}

bool exports_plinth_extension_widget_exports_render(
    exports_plinth_extension_widget_exports_render_request_t *request,
    exports_plinth_extension_widget_exports_list_view_t *ret, plinth_error_t *err) {
  char *title = NULL;
  if (plinth_json_string((const char *)request->config.ptr, request->config.len, "title",
                         &title) < 0)
    return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_INVALID_INPUT,
                       "config.title must be a string");
  int64_t renders;
  plinth_string_t key = plinth_borrow("renders");
  if (!plinth_extension_cache_incr(&key, 1, &renders, err)) return false;
  ret->len = 1;
  ret->ptr = calloc(1, sizeof(plinth_view_t));
  ret->ptr[0] = plinth_metric_card(title ? title : "{{name}}", (double)renders, "renders so far");
  free(title);
  exports_plinth_extension_widget_exports_render_request_free(request);
  return true;
}

/* The rest of the extension world: a widget without ticks, actions or events. */
bool exports_plinth_extension_widget_exports_on_tick(
    exports_plinth_extension_widget_exports_tick_t *tick, plinth_error_t *err) {
  (void)tick;
  return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_NOT_FOUND, "this widget has no tick");
}

bool exports_plinth_extension_widget_exports_invoke(
    exports_plinth_extension_widget_exports_action_request_t *request,
    exports_plinth_extension_widget_exports_action_response_t *ret, plinth_error_t *err) {
  (void)request;
  (void)ret;
  return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_NOT_FOUND, "no such action");
}

bool exports_plinth_extension_handler_handle(exports_plinth_extension_handler_event_t *event,
                                             plinth_error_t *err) {
  (void)event;
  return plinth_fail(err, PLINTH_EXTENSION_TYPES_ERROR_NOT_FOUND,
                     "this extension handles no events");
}
"#;

const POLYGLOT_README: &str = r#"# {{name}}

A Plinth widget in {{language}}. Build and run it:

```sh
plinth build .                   # .plinth/ gets the contract and the SDK; target/{{dir}}.wasm the component
plinth run .                     # builds, renders, prints view + receipt
plinth inspect .                 # world, imports, describe()
```

What the build needs installed: {{toolchain}}. See Plinth's docs/{{doc}}.md.
"#;

/// Creates the widget in `language` and returns its folder.
pub fn widget(name: &str, language: Language, dir: Option<&Path>) -> Result<PathBuf, PlinthError> {
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
    let folder = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name)
        .to_owned();
    let (language_name, toolchain, doc) = match language {
        Language::Rust => ("Rust", "", "writing-a-widget"),
        Language::Js => (
            "JavaScript",
            "Node.js and `npm install` (componentize-js)",
            "javascript",
        ),
        Language::Python => ("Python", crate::polyglot::COMPONENTIZE_PY, "python"),
        Language::C => ("C", crate::polyglot::C_PACKAGES, "c"),
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk_path().display().to_string())
            .replace("{{language}}", language_name)
            .replace("{{toolchain}}", toolchain)
            .replace("{{doc}}", doc)
            .replace("{{dir}}", &folder)
    };
    let io = |e: std::io::Error| {
        PlinthError::new(
            ErrorCode::Internal,
            format!("writing {}: {e}", dir.display()),
        )
    };
    let project = |language: &str| format!("language = \"{language}\"\n");
    let files: Vec<(&str, String)> = match language {
        Language::Rust => vec![
            ("Cargo.toml", fill(CARGO_TOML)),
            ("src/lib.rs", fill(LIB_RS)),
            ("README.md", fill(README)),
        ],
        Language::Js => vec![
            (crate::polyglot::PROJECT_FILE, project("js")),
            ("package.json", fill(PACKAGE_JSON)),
            ("src/index.js", fill(JS_INDEX)),
            ("README.md", fill(POLYGLOT_README)),
        ],
        Language::Python => vec![
            (crate::polyglot::PROJECT_FILE, project("python")),
            ("app.py", fill(PYTHON_APP)),
            ("README.md", fill(POLYGLOT_README)),
        ],
        Language::C => vec![
            (crate::polyglot::PROJECT_FILE, project("c")),
            ("src/widget.c", fill(C_SOURCE)),
            ("README.md", fill(POLYGLOT_README)),
        ],
    };
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(path, text).map_err(io)?;
    }
    std::fs::write(
        dir.join(".gitignore"),
        "/target\n/plinth-data\n/.plinth\n/node_modules\n__pycache__/\n",
    )
    .map_err(io)?;
    Ok(dir)
}
