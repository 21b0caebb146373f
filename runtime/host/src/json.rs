//! What guests return, as the JSON the API and the browser see. Field names are
//! snake_case and every view carries its `kind`.

use base64::Engine as _;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::call::{ActionInfo, ActionResponse, Descriptor, TileSize};
use crate::contract::WitValue;
use crate::contract::manifest_exports::Descriptor as WitDescriptor;
use crate::contract::view::{Column, PieSlice, Series, Status, Threshold, Trend, View};
use crate::contract::widget_exports::ActionResponse as WitActionResponse;

/// A table cell: numbers as numbers (a non-finite real as `null`), blobs as base64.
struct Cell<'a>(&'a WitValue);

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            WitValue::Null => serializer.serialize_unit(),
            WitValue::Integer(n) => serializer.serialize_i64(*n),
            WitValue::Real(n) => serializer.serialize_f64(*n),
            WitValue::Text(t) => serializer.serialize_str(t),
            WitValue::Blob(b) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                )?;
                map.end()
            }
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

/// Serializes the items of `items` as `each` makes them, without collecting them.
struct Each<'a, T, F>(&'a [T], F);

impl<'a, T, F, U> Serialize for Each<'a, T, F>
where
    F: Fn(&'a T) -> U,
    U: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let items: &'a [T] = self.0;
        serializer.collect_seq(items.iter().map(&self.1))
    }
}

/// `{"name": …, "points": …}` and the like: a small object of two entries.
struct Pair<A, B>(&'static str, A, &'static str, B);

impl<A: Serialize, B: Serialize> Serialize for Pair<A, B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.0, &self.1)?;
        map.serialize_entry(self.2, &self.3)?;
        map.end()
    }
}

fn series(s: &Series) -> Pair<&String, &Vec<f64>> {
    Pair("name", &s.name, "points", &s.points)
}

fn slice(s: &PieSlice) -> Pair<&String, f64> {
    Pair("label", &s.label, "value", s.value)
}

fn column(c: &Column) -> Pair<&String, &String> {
    Pair("key", &c.key, "title", &c.title)
}

fn threshold(t: &Threshold) -> Pair<f64, &'static str> {
    Pair("min", t.min, "status", status(t.status))
}

fn cell(value: &WitValue) -> Cell<'_> {
    Cell(value)
}

// `Each` maps a function over the items of `rows`, which are `Vec`s, not slices.
#[allow(clippy::ptr_arg)]
fn row(row: &Vec<WitValue>) -> Each<'_, WitValue, fn(&WitValue) -> Cell<'_>> {
    Each(row, cell)
}

/// One view as the API shows it. Written straight from the guest's record, keys in
/// sorted order (the order they always had), with no intermediate JSON tree: this runs
/// on every render.
enum Shown<'a> {
    Typed(&'a View),
    /// A custom view's data, parsed.
    Custom(Value),
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = match self {
            Shown::Typed(view) => view,
            Shown::Custom(data) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("data", data)?;
                map.serialize_entry("kind", "custom")?;
                return map.end();
            }
        };
        let mut map = serializer.serialize_map(None)?;
        match view {
            View::MetricCard(c) => {
                map.serialize_entry("caption", &c.caption)?;
                map.serialize_entry("change_percent", &c.change_percent)?;
                map.serialize_entry("kind", "metric_card")?;
                map.serialize_entry("title", &c.title)?;
                map.serialize_entry("trend", &c.trend.map(trend))?;
                map.serialize_entry("unit", &c.unit)?;
                map.serialize_entry("value", &c.value)?;
            }
            View::KpiCard(c) => {
                map.serialize_entry("kind", "kpi_card")?;
                map.serialize_entry("status", status(c.status))?;
                map.serialize_entry("target", &c.target)?;
                map.serialize_entry("title", &c.title)?;
                map.serialize_entry("unit", &c.unit)?;
                map.serialize_entry("value", &c.value)?;
            }
            View::LineChart(c) | View::BarChart(c) => {
                let kind = match view {
                    View::LineChart(_) => "line_chart",
                    _ => "bar_chart",
                };
                map.serialize_entry("kind", kind)?;
                map.serialize_entry("labels", &c.labels)?;
                map.serialize_entry("series", &Each(&c.series, series))?;
                map.serialize_entry("title", &c.title)?;
                map.serialize_entry("unit", &c.unit)?;
            }
            View::PieChart(p) => {
                map.serialize_entry("kind", "pie_chart")?;
                map.serialize_entry("slices", &Each(&p.slices, slice))?;
                map.serialize_entry("title", &p.title)?;
            }
            View::Sparkline(s) => {
                map.serialize_entry("kind", "sparkline")?;
                map.serialize_entry("points", &s.points)?;
                map.serialize_entry("title", &s.title)?;
            }
            View::Table(t) => {
                map.serialize_entry("columns", &Each(&t.columns, column))?;
                map.serialize_entry("kind", "table")?;
                map.serialize_entry("rows", &Each(&t.rows, row))?;
                map.serialize_entry("title", &t.title)?;
                map.serialize_entry("total_rows", &t.total_rows)?;
            }
            View::Gauge(g) => {
                map.serialize_entry("kind", "gauge")?;
                map.serialize_entry("max", &g.max)?;
                map.serialize_entry("min", &g.min)?;
                map.serialize_entry("thresholds", &Each(&g.thresholds, threshold))?;
                map.serialize_entry("title", &g.title)?;
                map.serialize_entry("unit", &g.unit)?;
                map.serialize_entry("value", &g.value)?;
            }
            View::ProgressBar(p) => {
                map.serialize_entry("kind", "progress_bar")?;
                map.serialize_entry("label", &p.label)?;
                map.serialize_entry("max", &p.max)?;
                map.serialize_entry("title", &p.title)?;
                map.serialize_entry("value", &p.value)?;
            }
            View::Heatmap(h) => {
                map.serialize_entry("kind", "heatmap")?;
                map.serialize_entry("title", &h.title)?;
                map.serialize_entry("values", &h.values)?;
                map.serialize_entry("x_labels", &h.x_labels)?;
                map.serialize_entry("y_labels", &h.y_labels)?;
            }
            View::Custom(_) => unreachable!("custom views are parsed into Shown::Custom"),
        }
        map.end()
    }
}

/// The views of a render as one JSON array, serialized once; `None` when a custom
/// view is not JSON (its text is parsed so the response stays one JSON document).
pub fn views(views: &[View]) -> Option<Box<serde_json::value::RawValue>> {
    let shown = views
        .iter()
        .map(|view| match view {
            View::Custom(text) => serde_json::from_str::<Value>(text).ok().map(Shown::Custom),
            typed => Some(Shown::Typed(typed)),
        })
        .collect::<Option<Vec<_>>>()?;
    serde_json::value::to_raw_value(&shown).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::view::{
        Chart, Gauge, Heatmap, KpiCard, MetricCard, PieChart, ProgressBar, Sparkline, Table,
    };
    use serde_json::json;

    fn shown(views: &[View]) -> Value {
        serde_json::from_str(views_json(views).get()).unwrap()
    }

    fn views_json(views: &[View]) -> Box<serde_json::value::RawValue> {
        super::views(views).expect("valid views")
    }

    #[test]
    fn a_metric_card_is_written_with_sorted_keys_and_non_finite_numbers_as_null() {
        let card = View::MetricCard(MetricCard {
            title: "Orders \"today\"".into(),
            value: f64::NAN,
            unit: Some("%".into()),
            change_percent: Some(-4.5),
            trend: Some(Trend::Down),
            caption: None,
        });
        assert_eq!(
            views_json(&[card]).get(),
            r#"[{"caption":null,"change_percent":-4.5,"kind":"metric_card","title":"Orders \"today\"","trend":"down","unit":"%","value":null}]"#
        );
    }

    #[test]
    fn every_view_kind_is_written_as_the_api_documents_it() {
        let chart = Chart {
            title: "Revenue".into(),
            labels: vec!["Mon".into(), "Tue".into()],
            series: vec![Series {
                name: "EU".into(),
                points: vec![1.0, 2.5],
            }],
            unit: None,
        };
        let views = vec![
            View::KpiCard(KpiCard {
                title: "NPS".into(),
                value: 41.0,
                target: 50.0,
                unit: None,
                status: Status::Warning,
            }),
            View::LineChart(chart.clone()),
            View::BarChart(chart),
            View::PieChart(PieChart {
                title: "Share".into(),
                slices: vec![PieSlice {
                    label: "A".into(),
                    value: 0.25,
                }],
            }),
            View::Sparkline(Sparkline {
                title: "Load".into(),
                points: vec![0.5, f64::INFINITY],
            }),
            View::Table(Table {
                title: "Orders".into(),
                columns: vec![Column {
                    key: "id".into(),
                    title: "Id".into(),
                }],
                rows: vec![vec![
                    WitValue::Integer(-7),
                    WitValue::Real(1.5),
                    WitValue::Text("x".into()),
                    WitValue::Blob(vec![1, 2, 3]),
                    WitValue::Null,
                ]],
                total_rows: Some(120),
            }),
            View::Gauge(Gauge {
                title: "CPU".into(),
                value: 71.0,
                min: 0.0,
                max: 100.0,
                unit: Some("%".into()),
                thresholds: vec![Threshold {
                    min: 80.0,
                    status: Status::Critical,
                }],
            }),
            View::ProgressBar(ProgressBar {
                title: "Quota".into(),
                value: 3.0,
                max: 10.0,
                label: Some("3 of 10".into()),
            }),
            View::Heatmap(Heatmap {
                title: "Hours".into(),
                x_labels: vec!["0".into()],
                y_labels: vec!["Mon".into()],
                values: vec![vec![4.0]],
            }),
            View::Custom(r#"{ "b": [1, 2], "a": {"nested": true} }"#.into()),
        ];
        let series = json!([{"name": "EU", "points": [1.0, 2.5]}]);
        let expected = json!([
                {"kind": "kpi_card", "title": "NPS", "value": 41.0, "target": 50.0, "unit": null, "status": "warning"},
                {"kind": "line_chart", "title": "Revenue", "labels": ["Mon", "Tue"], "series": series, "unit": null},
                {"kind": "bar_chart", "title": "Revenue", "labels": ["Mon", "Tue"], "series": series, "unit": null},
                {"kind": "pie_chart", "title": "Share", "slices": [{"label": "A", "value": 0.25}]},
                {"kind": "sparkline", "title": "Load", "points": [0.5, null]},
                {"kind": "table", "title": "Orders", "columns": [{"key": "id", "title": "Id"}],
                 "rows": [[-7, 1.5, "x", {"base64": "AQID"}, null]], "total_rows": 120},
                {"kind": "gauge", "title": "CPU", "value": 71.0, "min": 0.0, "max": 100.0, "unit": "%",
                 "thresholds": [{"min": 80.0, "status": "critical"}]},
                {"kind": "progress_bar", "title": "Quota", "value": 3.0, "max": 10.0, "label": "3 of 10"},
                {"kind": "heatmap", "title": "Hours", "x_labels": ["0"], "y_labels": ["Mon"], "values": [[4.0]]},
                {"kind": "custom", "data": {"a": {"nested": true}, "b": [1, 2]}},
        ]);
        assert_eq!(shown(&views), expected);
        // Byte for byte what a `serde_json::Value` gives (keys sorted, as they always were).
        assert_eq!(
            views_json(&views).get(),
            serde_json::to_string(&expected).unwrap()
        );
        // A custom view is normalised (compact, keys sorted) like every other.
        assert!(
            views_json(&views)
                .get()
                .ends_with(r#"{"data":{"a":{"nested":true},"b":[1,2]},"kind":"custom"}]"#)
        );
    }

    #[test]
    fn a_custom_view_that_is_not_json_is_refused() {
        assert!(super::views(&[View::Custom("{not json".into())]).is_none());
    }
}
