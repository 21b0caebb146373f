//! The smallest widget: one metric card, configurable title and value. It calls no
//! capability, so it measures the sandbox itself (see docs/BENCHMARKS.md).

use plinth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_title")]
    title: String,
    #[serde(default = "default_value")]
    value: f64,
}

fn default_title() -> String {
    "Hello, Plinth".into()
}

fn default_value() -> f64 {
    42.0
}

struct HelloMetric;

impl Extension for HelloMetric {
    fn describe() -> Descriptor {
        Descriptor::new("hello-metric", "Hello Metric")
            .version("1.0.0")
            .description("One metric card; the smallest widget there is.")
            .category("demo")
            .icon("sparkles")
            .size(3, 2)
            .config_schema(&serde_json::json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string", "default": "Hello, Plinth", "maxLength": 80},
                    "value": {"type": "number", "default": 42}
                },
                "additionalProperties": false
            }))
    }
}

impl Widget for HelloMetric {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let config: Config = request.config()?;
        Ok(vec![
            MetricCard::new(config.title, config.value)
                .unit("widgets")
                .change(4.2)
                .caption("rendered in a fresh sandbox")
                .into(),
        ])
    }
}

plinth_sdk::export_widget!(HelloMetric);
