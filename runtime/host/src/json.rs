//! What guests return, as the JSON the API and the browser see. Field names are
//! snake_case and every view carries its `kind`.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::call::{ActionInfo, ActionResponse, Descriptor, TileSize};
use crate::contract::WitValue;
use crate::contract::manifest_exports::Descriptor as WitDescriptor;
use crate::contract::view::{Chart, Status, Trend, View};
use crate::contract::widget_exports::ActionResponse as WitActionResponse;

pub fn value(value: &WitValue) -> Value {
    match value {
        WitValue::Null => Value::Null,
        WitValue::Integer(n) => json!(n),
        WitValue::Real(n) => json!(n),
        WitValue::Text(t) => json!(t),
        WitValue::Blob(b) => {
            json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Warning => "warning",
        Status::Critical => "critical",
    }
}

fn trend(trend: Trend) -> &'static str {
    match trend {
        Trend::Up => "up",
        Trend::Down => "down",
        Trend::Flat => "flat",
    }
}

fn chart(kind: &str, c: &Chart) -> Value {
    json!({
        "kind": kind,
        "title": c.title,
        "labels": c.labels,
        "series": c.series.iter().map(|s| json!({"name": s.name, "points": s.points})).collect::<Vec<_>>(),
        "unit": c.unit,
    })
}

/// A custom view's JSON is parsed so the response stays one JSON document; text that
/// is not JSON is refused (`None`).
pub fn view(view: &View) -> Option<Value> {
    Some(match view {
        View::MetricCard(c) => json!({
            "kind": "metric_card", "title": c.title, "value": c.value, "unit": c.unit,
            "change_percent": c.change_percent, "trend": c.trend.map(trend), "caption": c.caption,
        }),
        View::KpiCard(c) => json!({
            "kind": "kpi_card", "title": c.title, "value": c.value, "target": c.target,
            "unit": c.unit, "status": status(c.status),
        }),
        View::LineChart(c) => chart("line_chart", c),
        View::BarChart(c) => chart("bar_chart", c),
        View::PieChart(p) => json!({
            "kind": "pie_chart", "title": p.title,
            "slices": p.slices.iter().map(|s| json!({"label": s.label, "value": s.value})).collect::<Vec<_>>(),
        }),
        View::Sparkline(s) => json!({"kind": "sparkline", "title": s.title, "points": s.points}),
        View::Table(t) => json!({
            "kind": "table", "title": t.title,
            "columns": t.columns.iter().map(|c| json!({"key": c.key, "title": c.title})).collect::<Vec<_>>(),
            "rows": t.rows.iter().map(|row| row.iter().map(value).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "total_rows": t.total_rows,
        }),
        View::Gauge(g) => json!({
            "kind": "gauge", "title": g.title, "value": g.value, "min": g.min, "max": g.max,
            "unit": g.unit,
            "thresholds": g.thresholds.iter().map(|t| json!({"min": t.min, "status": status(t.status)})).collect::<Vec<_>>(),
        }),
        View::ProgressBar(p) => json!({
            "kind": "progress_bar", "title": p.title, "value": p.value, "max": p.max, "label": p.label,
        }),
        View::Heatmap(h) => json!({
            "kind": "heatmap", "title": h.title, "x_labels": h.x_labels, "y_labels": h.y_labels,
            "values": h.values,
        }),
        View::Custom(text) => {
            json!({"kind": "custom", "data": serde_json::from_str::<Value>(text).ok()?})
        }
    })
}

/// The views of a render as one JSON array, serialized once; `None` when a custom
/// view is not JSON.
pub fn views(views: &[View]) -> Option<Box<serde_json::value::RawValue>> {
    let views = views.iter().map(view).collect::<Option<Vec<_>>>()?;
    serde_json::value::to_raw_value(&views).ok()
}

/// A descriptor; the config schema is parsed (`None` when it is not JSON).
pub fn descriptor(d: &WitDescriptor) -> Option<Descriptor> {
    Some(Descriptor {
        id: d.id.clone(),
        name: d.name.clone(),
        version: d.version.clone(),
        description: d.description.clone(),
        category: d.category.clone(),
        icon: d.icon.clone(),
        default_size: TileSize {
            width: d.default_size.width,
            height: d.default_size.height,
        },
        config_schema: serde_json::from_str::<Value>(&d.config_schema).ok()?,
        refresh_interval_ms: d.refresh_interval_ms,
        capabilities: d.capabilities.clone(),
        event_patterns: d.event_patterns.clone(),
        actions: d
            .actions
            .iter()
            .map(|a| ActionInfo {
                name: a.name.clone(),
                description: a.description.clone(),
            })
            .collect(),
    })
}

/// An action's response: text bodies as text, anything else as base64.
pub fn action_response(r: &WitActionResponse) -> ActionResponse {
    let textual = r.content_type.starts_with("text/") || r.content_type.contains("json");
    let (body, body_base64) = match std::str::from_utf8(&r.body) {
        Ok(text) if textual => (Some(text.to_owned()), None),
        _ => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&r.body)),
        ),
    };
    ActionResponse {
        content_type: r.content_type.clone(),
        filename: r.filename.clone(),
        body,
        body_base64,
    }
}
