"""Plinth's Python SDK: typed views, the capabilities and the error of the contract.

The same shape as the Rust SDK (`plinth_sdk`): `cache`, `db`, `broadcast` and `log` wrap
the host's capabilities, the view functions build what the console draws, and `export`
turns one class into the exports `componentize-py` looks for. `plinth build` puts this
package and the generated `wit_world` bindings on the path; nothing is installed.

    import plinth

    class Orders(plinth.Extension):
        def describe(self):
            return plinth.Descriptor("orders", "Orders").uses("cache")

        def render(self, request):
            n = plinth.cache.incr("renders", 1)
            return [plinth.metric_card("Renders", n)]

    Manifest, WidgetExports, Handler = plinth.export(Orders())
"""

import json as _json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.exports import handler as _handler
from wit_world.exports import manifest as _manifest
from wit_world.exports import widget_exports as _widget
from wit_world.imports import broadcast as _broadcast
from wit_world.imports import cache as _cache_wit
from wit_world.imports import db as _db_wit
from wit_world.imports import log as _log_wit
from wit_world.imports import types as _types
from wit_world.imports import view as _view

# --- errors -----------------------------------------------------------------------------
#
# Raise one of these from an export to return the contract's `error`; the host maps each
# case to a stable code. Any other exception traps the call (GUEST_TRAP), as a Rust panic
# does.


def invalid(message: str) -> Err:
    """The input (config, request, payload) is not acceptable: INVALID_INPUT."""
    return Err(_types.Error_InvalidInput(message))


def not_found(message: str) -> Err:
    """The thing asked for does not exist (an unknown action, a missing row)."""
    return Err(_types.Error_NotFound(message))


def retry(message: str) -> Err:
    """A dependency is down or busy: an event is retried with backoff."""
    return Err(_types.Error_Unavailable(message))


def reject(message: str) -> Err:
    """A handler refuses this event for good; it is dead-lettered, never retried."""
    return Err(_types.Error_Rejected(message))


def internal(message: str) -> Err:
    """A bug in the extension itself; an event is retried."""
    return Err(_types.Error_Internal(message))


# --- values -----------------------------------------------------------------------------


def value(v: Any) -> "_types.Value":
    """A Python value as a contract `value`: None, bool/int, float, str, bytes."""
    if v is None:
        return _types.Value_Null()
    if isinstance(v, (bool, int)):
        if not -(1 << 63) <= v < (1 << 63):
            raise invalid(f"{v} does not fit a 64-bit integer")
        return _types.Value_Integer(int(v))
    if isinstance(v, float):
        return _types.Value_Real(v)
    if isinstance(v, str):
        return _types.Value_Text(v)
    if isinstance(v, (bytes, bytearray)):
        return _types.Value_Blob(bytes(v))
    raise TypeError(f"no contract value for {type(v).__name__}")


def from_value(v: "_types.Value") -> Any:
    """A contract `value` as a Python value."""
    return None if isinstance(v, _types.Value_Null) else v.value


# --- capabilities -----------------------------------------------------------------------


class cache:
    """The tenant's cache (needs the `cache` grant)."""

    @staticmethod
    def get(key: str) -> Optional[bytes]:
        return _cache_wit.get(key)

    @staticmethod
    def set(key: str, value: Any, ttl_ms: Optional[int] = None) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        _cache_wit.set(key, data, ttl_ms)

    @staticmethod
    def delete(key: str) -> bool:
        return _cache_wit.delete(key)

    @staticmethod
    def incr(key: str, delta: int = 1) -> int:
        return _cache_wit.incr(key, delta)

    @staticmethod
    def invalidate_prefix(prefix: str) -> int:
        return _cache_wit.invalidate_prefix(prefix)

    @staticmethod
    def stats(top: int = 10) -> "_cache_wit.Statistics":
        return _cache_wit.stats(top)

    @staticmethod
    def get_json(key: str) -> Any:
        data = _cache_wit.get(key)
        if data is None:
            return None
        try:
            return _json.loads(data)
        except ValueError as e:
            raise internal(f"the cache entry {key} is not JSON: {e}")

    @staticmethod
    def set_json(key: str, value: Any, ttl_ms: Optional[int] = None) -> None:
        _cache_wit.set(key, _json.dumps(value).encode(), ttl_ms)


class Rows:
    """A result set: `columns` and `rows` of Python values."""

    def __init__(self, raw: "_db_wit.Rows"):
        self.columns: List[str] = list(raw.columns)
        self.rows: List[List[Any]] = [[from_value(c) for c in row] for row in raw.rows]

    def column(self, name: str) -> Optional[int]:
        return self.columns.index(name) if name in self.columns else None

    def dicts(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class db:
    """The tenant's database (needs `db`; writes need `db:write`). Parameters bind to
    `$1`, `$2`, ... in order."""

    @staticmethod
    def query(sql: str, *params: Any) -> Rows:
        return Rows(_db_wit.query(sql, [value(p) for p in params]))

    @staticmethod
    def execute(sql: str, *params: Any) -> int:
        return _db_wit.execute(sql, [value(p) for p in params])


class broadcast:
    """Pushes to every browser subscribed to a topic of the tenant (needs `broadcast`)."""

    @staticmethod
    def publish(topic: str, payload: Any) -> None:
        _broadcast.publish(topic, _json.dumps(payload))


class log:
    """The installation's log (needs `log`)."""

    @staticmethod
    def trace(message: str) -> None:
        _log_wit.write(_log_wit.Level.TRACE, message)

    @staticmethod
    def debug(message: str) -> None:
        _log_wit.write(_log_wit.Level.DEBUG, message)

    @staticmethod
    def info(message: str) -> None:
        _log_wit.write(_log_wit.Level.INFO, message)

    @staticmethod
    def warn(message: str) -> None:
        _log_wit.write(_log_wit.Level.WARN, message)

    @staticmethod
    def error(message: str) -> None:
        _log_wit.write(_log_wit.Level.ERROR, message)


# --- views ------------------------------------------------------------------------------

UP, DOWN, FLAT = _view.Trend.UP, _view.Trend.DOWN, _view.Trend.FLAT
OK, WARNING, CRITICAL = _view.Status.OK, _view.Status.WARNING, _view.Status.CRITICAL


def metric_card(title: str, value: float, *, unit: Optional[str] = None,
                change: Optional[float] = None, caption: Optional[str] = None) -> "_view.View":
    """One big number; `change` (percent) also sets the trend."""
    trend = None
    if change is not None:
        trend = UP if change > 0 else DOWN if change < 0 else FLAT
    return _view.View_MetricCard(_view.MetricCard(title, float(value), unit, change, trend, caption))


def kpi_card(title: str, value: float, target: float, *, unit: Optional[str] = None,
             status: "_view.Status" = OK) -> "_view.View":
    return _view.View_KpiCard(_view.KpiCard(title, float(value), float(target), unit, status))


def _chart(title, labels, series, unit) -> "_view.Chart":
    return _view.Chart(title, list(labels),
                       [_view.Series(name, [float(p) for p in points]) for name, points in series.items()],
                       unit)


def line_chart(title: str, labels: Sequence[str], series: Dict[str, Sequence[float]], *,
               unit: Optional[str] = None) -> "_view.View":
    """A line chart: `series` maps each series' name to one point per label."""
    return _view.View_LineChart(_chart(title, labels, series, unit))


def bar_chart(title: str, labels: Sequence[str], series: Dict[str, Sequence[float]], *,
              unit: Optional[str] = None) -> "_view.View":
    return _view.View_BarChart(_chart(title, labels, series, unit))


def pie_chart(title: str, slices: Sequence[Tuple[str, float]]) -> "_view.View":
    return _view.View_PieChart(_view.PieChart(title, [_view.PieSlice(l, float(v)) for l, v in slices]))


def sparkline(title: str, points: Sequence[float]) -> "_view.View":
    return _view.View_Sparkline(_view.Sparkline(title, [float(p) for p in points]))


def table(title: str, columns: Sequence[Tuple[str, str]], rows: Sequence[Sequence[Any]], *,
          total_rows: Optional[int] = None) -> "_view.View":
    """Rows of cells; `columns` are (key, title) pairs; cells are Python values."""
    return _view.View_Table(_view.Table(
        title,
        [_view.Column(key, header) for key, header in columns],
        [[value(cell) for cell in row] for row in rows],
        total_rows,
    ))


def gauge(title: str, value: float, minimum: float, maximum: float, *, unit: Optional[str] = None,
          thresholds: Sequence[Tuple[float, "_view.Status"]] = ()) -> "_view.View":
    return _view.View_Gauge(_view.Gauge(title, float(value), float(minimum), float(maximum), unit,
                                        [_view.Threshold(float(m), s) for m, s in thresholds]))


def progress_bar(title: str, value: float, maximum: float, *,
                 label: Optional[str] = None) -> "_view.View":
    return _view.View_ProgressBar(_view.ProgressBar(title, float(value), float(maximum), label))


def heatmap(title: str, x_labels: Sequence[str], y_labels: Sequence[str],
            values: Sequence[Sequence[float]]) -> "_view.View":
    return _view.View_Heatmap(_view.Heatmap(title, list(x_labels), list(y_labels),
                                            [[float(v) for v in row] for row in values]))


def custom(document: Any) -> "_view.View":
    """Any JSON document, for a console plugin that knows how to draw it."""
    return _view.View_Custom(_json.dumps(document))


# --- requests ---------------------------------------------------------------------------


class RenderRequest:
    def __init__(self, raw: "_widget.RenderRequest"):
        self.config: Dict[str, Any] = _config(raw.config)
        self.params: Dict[str, str] = dict(raw.params)

    def param(self, name: str) -> Optional[str]:
        return self.params.get(name)


class Tick:
    def __init__(self, raw: "_widget.Tick"):
        self.config: Dict[str, Any] = _config(raw.config)
        self.sequence: int = raw.sequence
        self.scheduled_at_ms: int = raw.scheduled_at_ms


class ActionRequest:
    def __init__(self, raw: "_widget.ActionRequest"):
        self.name: str = raw.name
        self.config: Dict[str, Any] = _config(raw.config)
        self.body: Any = _parse("the action's body", raw.body)


class Event:
    def __init__(self, raw: "_handler.Event"):
        self.id: str = raw.id
        self.name: str = raw.name
        self.payload: Any = _parse("the event's payload", raw.payload)
        self.occurred_at_ms: int = raw.occurred_at_ms
        self.attempt: int = raw.attempt


def _parse(what: str, text: str) -> Any:
    try:
        return _json.loads(text)
    except ValueError as e:
        raise invalid(f"{what} is not JSON: {e}")


def _config(text: str) -> Dict[str, Any]:
    config = _parse("the config", text)
    if not isinstance(config, dict):
        raise invalid("the config is not a JSON object")
    return config


class Response:
    """What an action returns."""

    def __init__(self, content_type: str, body: Any, filename: Optional[str] = None):
        self.content_type = content_type
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.filename = filename

    @staticmethod
    def json(document: Any) -> "Response":
        return Response("application/json", _json.dumps(document))

    @staticmethod
    def text(content_type: str, body: str) -> "Response":
        return Response(content_type, body)

    def download(self, filename: str) -> "Response":
        self.filename = filename
        return self


# --- the extension ----------------------------------------------------------------------


class Descriptor:
    """What the extension says about itself (`describe`), built step by step."""

    def __init__(self, id: str, name: str):
        self._d = _manifest.Descriptor(
            id=id, name=name, version="0.1.0", description="", category="custom", icon="",
            default_size=_types.Size(2, 1), config_schema="{}", refresh_interval_ms=None,
            capabilities=[], event_patterns=[], actions=[],
        )

    def version(self, version: str) -> "Descriptor":
        self._d.version = version
        return self

    def description(self, text: str) -> "Descriptor":
        self._d.description = text
        return self

    def category(self, category: str) -> "Descriptor":
        self._d.category = category
        return self

    def icon(self, icon: str) -> "Descriptor":
        self._d.icon = icon
        return self

    def size(self, width: int, height: int) -> "Descriptor":
        self._d.default_size = _types.Size(width, height)
        return self

    def config_schema(self, schema: Dict[str, Any]) -> "Descriptor":
        self._d.config_schema = _json.dumps(schema)
        return self

    def refresh_every_ms(self, interval_ms: int) -> "Descriptor":
        self._d.refresh_interval_ms = interval_ms
        return self

    def uses(self, capability: str) -> "Descriptor":
        self._d.capabilities.append(capability)
        return self

    def handles(self, pattern: str) -> "Descriptor":
        self._d.event_patterns.append(pattern)
        return self

    def action(self, name: str, description: str) -> "Descriptor":
        self._d.actions.append(_manifest.Action(name, description))
        return self


class Extension:
    """Override what the extension does; what is not overridden answers with an error."""

    def describe(self) -> Descriptor:
        raise NotImplementedError("describe() is required")

    def render(self, request: RenderRequest) -> List["_view.View"]:
        raise not_found("this extension is not a widget")

    def on_tick(self, tick: Tick) -> None:
        raise not_found("this widget has no tick")

    def invoke(self, request: ActionRequest) -> Response:
        raise not_found(f"no action {request.name!r}")

    def handle(self, event: Event) -> None:
        raise not_found("this extension handles no events")


def export(extension: Extension):
    """The three export classes of the `extension` world, bound to `extension`:
    `Manifest, WidgetExports, Handler = plinth.export(MyWidget())`."""

    class Manifest(_exports.Manifest):
        def describe(self) -> _manifest.Descriptor:
            return extension.describe()._d

    class WidgetExports(_exports.WidgetExports):
        def render(self, request: _widget.RenderRequest) -> List[_view.View]:
            return list(extension.render(RenderRequest(request)))

        def on_tick(self, tick: _widget.Tick) -> None:
            extension.on_tick(Tick(tick))

        def invoke(self, request: _widget.ActionRequest) -> _widget.ActionResponse:
            response = extension.invoke(ActionRequest(request))
            return _widget.ActionResponse(response.content_type, response.body, response.filename)

    class Handler(_exports.Handler):
        def handle(self, event: _handler.Event) -> None:
            extension.handle(Event(event))

    return Manifest, WidgetExports, Handler
