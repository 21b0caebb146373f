//! Builders for every kind of [`View`]. Each builder converts into a `View` with `.into()`.

use crate::{
    Chart, Column, Gauge, Heatmap, KpiCard, MetricCard, PieChart, PieSlice, ProgressBar, Series,
    Sparkline, Status, Table, Threshold, Trend, Value, View,
};

impl MetricCard {
    /// One big number.
    ///
    /// ```
    /// # use plinth_sdk::{MetricCard, Trend, View};
    /// let view: View = MetricCard::new("Revenue", 1234.5).unit("USD").change(3.2).into();
    /// assert!(matches!(view, View::MetricCard(ref c) if c.trend == Some(Trend::Up)));
    /// ```
    pub fn new(title: impl Into<String>, value: f64) -> Self {
        MetricCard {
            title: title.into(),
            value,
            unit: None,
            change_percent: None,
            trend: None,
            caption: None,
        }
    }

    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Change against the previous period in percent; sets the trend from its sign.
    pub fn change(mut self, percent: f64) -> Self {
        self.change_percent = Some(percent);
        self.trend = Some(if percent > 0.0 {
            Trend::Up
        } else if percent < 0.0 {
            Trend::Down
        } else {
            Trend::Flat
        });
        self
    }

    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }
}

impl KpiCard {
    /// A number against its target; the status is `ok` at or above target, `warning`
    /// within 10 % below, `critical` further below.
    ///
    /// ```
    /// # use plinth_sdk::{KpiCard, Status};
    /// assert_eq!(KpiCard::new("Conversion", 95.0, 100.0).status, Status::Warning);
    /// ```
    pub fn new(title: impl Into<String>, value: f64, target: f64) -> Self {
        let status = if value >= target {
            Status::Ok
        } else if value >= target * 0.9 {
            Status::Warning
        } else {
            Status::Critical
        };
        KpiCard {
            title: title.into(),
            value,
            target,
            unit: None,
            status,
        }
    }

    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    pub fn status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }
}

impl Chart {
    /// A chart over the given x-axis labels; add series with [`Chart::series`], then
    /// convert with [`Chart::line`] or [`Chart::bar`].
    ///
    /// ```
    /// # use plinth_sdk::{Chart, View};
    /// let view = Chart::new("Sales", ["Mon", "Tue"]).series("EU", vec![3.0, 4.0]).bar();
    /// assert!(matches!(view, View::BarChart(_)));
    /// ```
    pub fn new<L: Into<String>>(
        title: impl Into<String>,
        labels: impl IntoIterator<Item = L>,
    ) -> Self {
        Chart {
            title: title.into(),
            labels: labels.into_iter().map(Into::into).collect(),
            series: Vec::new(),
            unit: None,
        }
    }

    pub fn series(mut self, name: impl Into<String>, points: Vec<f64>) -> Self {
        self.series.push(Series {
            name: name.into(),
            points,
        });
        self
    }

    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    pub fn line(self) -> View {
        View::LineChart(self)
    }

    pub fn bar(self) -> View {
        View::BarChart(self)
    }
}

impl PieChart {
    /// ```
    /// # use plinth_sdk::{PieChart, View};
    /// let view: View = PieChart::new("Plans").slice("Free", 70.0).slice("Pro", 30.0).into();
    /// assert!(matches!(view, View::PieChart(ref p) if p.slices.len() == 2));
    /// ```
    pub fn new(title: impl Into<String>) -> Self {
        PieChart {
            title: title.into(),
            slices: Vec::new(),
        }
    }

    pub fn slice(mut self, label: impl Into<String>, value: f64) -> Self {
        self.slices.push(PieSlice {
            label: label.into(),
            value,
        });
        self
    }
}

impl Sparkline {
    /// ```
    /// # use plinth_sdk::{Sparkline, View};
    /// let view: View = Sparkline::new("Latency", vec![1.0, 3.0, 2.0]).into();
    /// assert!(matches!(view, View::Sparkline(_)));
    /// ```
    pub fn new(title: impl Into<String>, points: Vec<f64>) -> Self {
        Sparkline {
            title: title.into(),
            points,
        }
    }
}

impl Table {
    /// A table with `(key, title)` columns; add rows with [`Table::row`].
    ///
    /// ```
    /// # use plinth_sdk::{Table, Value, View};
    /// let view: View = Table::new("Top keys", [("key", "Key"), ("hits", "Hits")])
    ///     .row(vec![Value::Text("a".into()), Value::Integer(3)])
    ///     .into();
    /// assert!(matches!(view, View::Table(ref t) if t.rows.len() == 1));
    /// ```
    pub fn new<K: Into<String>, T: Into<String>>(
        title: impl Into<String>,
        columns: impl IntoIterator<Item = (K, T)>,
    ) -> Self {
        Table {
            title: title.into(),
            columns: columns
                .into_iter()
                .map(|(key, title)| Column {
                    key: key.into(),
                    title: title.into(),
                })
                .collect(),
            rows: Vec::new(),
            total_rows: None,
        }
    }

    pub fn row(mut self, cells: Vec<Value>) -> Self {
        self.rows.push(cells);
        self
    }

    /// Rows in the whole result when this table shows one page of it.
    pub fn total_rows(mut self, total: u64) -> Self {
        self.total_rows = Some(total);
        self
    }
}

impl Gauge {
    /// ```
    /// # use plinth_sdk::{Gauge, Status, View};
    /// let view: View = Gauge::new("CPU", 73.0, 0.0, 100.0)
    ///     .threshold(70.0, Status::Warning)
    ///     .threshold(90.0, Status::Critical)
    ///     .unit("%")
    ///     .into();
    /// assert!(matches!(view, View::Gauge(ref g) if g.thresholds.len() == 2));
    /// ```
    pub fn new(title: impl Into<String>, value: f64, min: f64, max: f64) -> Self {
        Gauge {
            title: title.into(),
            value,
            min,
            max,
            unit: None,
            thresholds: Vec::new(),
        }
    }

    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    pub fn threshold(mut self, from: f64, status: Status) -> Self {
        self.thresholds.push(Threshold { min: from, status });
        self
    }
}

impl ProgressBar {
    /// ```
    /// # use plinth_sdk::{ProgressBar, View};
    /// let view: View = ProgressBar::new("Import", 40.0, 100.0).label("40 of 100 rows").into();
    /// assert!(matches!(view, View::ProgressBar(_)));
    /// ```
    pub fn new(title: impl Into<String>, value: f64, max: f64) -> Self {
        ProgressBar {
            title: title.into(),
            value,
            max,
            label: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

impl Heatmap {
    /// `values[y][x]`, one row per y label.
    ///
    /// ```
    /// # use plinth_sdk::{Heatmap, View};
    /// let view: View = Heatmap::new("Orders by hour", ["00", "01"], ["Mon"], vec![vec![1.0, 2.0]]).into();
    /// assert!(matches!(view, View::Heatmap(_)));
    /// ```
    pub fn new<X: Into<String>, Y: Into<String>>(
        title: impl Into<String>,
        x_labels: impl IntoIterator<Item = X>,
        y_labels: impl IntoIterator<Item = Y>,
        values: Vec<Vec<f64>>,
    ) -> Self {
        Heatmap {
            title: title.into(),
            x_labels: x_labels.into_iter().map(Into::into).collect(),
            y_labels: y_labels.into_iter().map(Into::into).collect(),
            values,
        }
    }
}

impl View {
    /// Any JSON document, drawn by the tenant's own console code.
    ///
    /// ```
    /// # use plinth_sdk::View;
    /// let view = View::custom(&serde_json::json!({"kind": "map", "pins": []}));
    /// assert!(matches!(view, View::Custom(_)));
    /// ```
    pub fn custom(value: &serde_json::Value) -> Self {
        View::Custom(value.to_string())
    }
}

macro_rules! into_view {
    ($($ty:ident => $case:ident),* $(,)?) => {
        $(impl From<$ty> for View {
            fn from(view: $ty) -> Self {
                View::$case(view)
            }
        })*
    };
}

into_view! {
    MetricCard => MetricCard,
    KpiCard => KpiCard,
    PieChart => PieChart,
    Sparkline => Sparkline,
    Table => Table,
    Gauge => Gauge,
    ProgressBar => ProgressBar,
    Heatmap => Heatmap,
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.into())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Integer(number)
    }
}

impl From<f64> for Value {
    fn from(number: f64) -> Self {
        Value::Real(number)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}
