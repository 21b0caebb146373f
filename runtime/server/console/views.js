// Draws the typed views a widget returns (runtime/host/src/json.rs, wit/v0.1.0/view.wit).
//
// Everything in a view is the tenant's data: it reaches the page only as Preact text
// nodes and attributes, as SVG geometry, or as text uPlot paints on its canvas. Nothing
// is ever set as HTML, and styles are set as objects (CSSOM), never as strings.
import { html, useState, useEffect, useRef, useMemo } from "./ui.js";
import { Component } from "./vendor/preact.mjs";
import uPlot from "./vendor/uPlot.esm.js";
import { formatNumber, formatParts, formatPercentChange, formatCount, formatShare, formatCellNumber } from "./format.js";

// ---- Helpers -------------------------------------------------------------------------

const arr = (v) => (Array.isArray(v) ? v : []);
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
/** Any JSON value as text, without calling anything the value carries. */
function str(v) {
  if (v == null) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return "";
  }
}
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const STATUSES = ["ok", "warning", "critical"];
const STATUS_TEXT = { ok: "OK", warning: "Warning", critical: "Critical" };
const STATUS_ICON = { ok: "✓", warning: "!", critical: "✕" };
const status = (v) => (STATUSES.includes(v) ? v : null);

/** Series colours: distinguishable, colour-blind friendly, 3:1 on white. */
export const PALETTE = ["#3274d9", "#e06c1f", "#2f8a3e", "#c4314b", "#8250df", "#1a8f9d", "#a86b00", "#5c6b7a", "#d6409f", "#6b7f00"];
const color = (i) => PALETTE[i % PALETTE.length];

let nextId = 0;
const useId = () => useState(() => "pv" + (++nextId).toString(36))[0];

/** The content box of `ref`'s element, kept current with a ResizeObserver; `deps`
 *  say when the element may have come or gone. */
function useSize(ref, deps = []) {
  const [size, setSize] = useState({ width: 0, height: 0 });
  useEffect(() => {
    const el = ref.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(([entry]) => {
      const { width, height } = entry.contentRect;
      setSize((s) => (s.width === width && s.height === height ? s : { width, height }));
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, deps);
  return size;
}

/** A formatted number whose unit is drawn smaller. */
function Amount({ value, unit, class: cls, options }) {
  const parts = formatParts(value, unit, options);
  const text = parts.map((p) => p.text).join("");
  return html`<span class=${"amount " + (cls || "")} title=${text}>${parts.map((p) =>
    p.type === "unit" ? html`<span class="amount-unit">${p.text}</span>` : p.text)}</span>`;
}

function StatusBadge({ status: s }) {
  if (!s) return null;
  return html`<span class=${"status-badge status-" + s}><span class="status-icon" aria-hidden="true">${STATUS_ICON[s]}</span>${STATUS_TEXT[s]}</span>`;
}

function NoData({ children }) {
  return html`<p class="view-nodata">${children || "No data"}</p>`;
}

/** The frame every view shares: `<section class="view view-KIND">` with its title. */
function Frame({ kind, title, children }) {
  const t = str(title);
  return html`<section class=${"view view-" + kind} aria-label=${t || undefined}>
    ${t && html`<h3 class="view-title" title=${t}>${t}</h3>`}
    ${children}
  </section>`;
}

// ---- Metric and KPI cards -------------------------------------------------------------

const TREND = {
  up: { icon: "▲", text: "Up" },
  down: { icon: "▼", text: "Down" },
  flat: { icon: "▶", text: "Flat" },
};

function MetricCard({ view }) {
  const trend = TREND[view.trend] ? view.trend : null;
  const change = num(view.change_percent);
  const caption = str(view.caption);
  return html`<${Frame} kind="metric_card" title=${view.title}>
    <p class="metric-value"><${Amount} value=${num(view.value)} unit=${view.unit} /></p>
    ${(trend || change != null) && html`<p class=${"metric-change trend-" + (trend || "none")}>
      ${trend && html`<span class="trend-icon" aria-hidden="true">${TREND[trend].icon}</span>`}
      ${trend && html`<span class="view-sr">${TREND[trend].text}${change != null ? ", " : ""}</span>`}
      ${change != null && html`<span class="metric-change-value">${formatPercentChange(change)}</span>`}
    </p>`}
    ${caption && html`<p class="metric-caption" title=${caption}>${caption}</p>`}
  <//>`;
}

function KpiCard({ view }) {
  const value = num(view.value);
  const target = num(view.target);
  const s = status(view.status);
  // The bar spans the larger of value and target; the mark shows the target.
  const domain = Math.max(value ?? 0, target ?? 0);
  const fill = domain > 0 && value != null ? clamp(value / domain, 0, 1) : 0;
  const mark = domain > 0 && target != null ? clamp(target / domain, 0, 1) : null;
  const share = target ? (value ?? 0) / target : null;
  return html`<${Frame} kind="kpi_card" title=${view.title}>
    <p class="metric-value kpi-value">
      <${Amount} value=${value} unit=${view.unit} />
      <span class="kpi-target">/ ${formatNumber(target, view.unit)} target</span>
    </p>
    <div class="kpi-bar" aria-hidden="true">
      <div class=${"kpi-fill fill-" + (s || "none")} style=${{ width: fill * 100 + "%" }}></div>
      ${mark != null && html`<div class="kpi-mark" style=${{ left: mark * 100 + "%" }}></div>`}
    </div>
    <p class="kpi-foot">
      <${StatusBadge} status=${s} />
      ${share != null && Number.isFinite(share) && html`<span class="kpi-share">${formatShare(share)} of target</span>`}
    </p>
  <//>`;
}

// ---- Line and bar charts (uPlot) ------------------------------------------------------

const ellipsize = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

let measureCtx = null;
function textWidth(text, font) {
  measureCtx ??= document.createElement("canvas").getContext("2d");
  if (!measureCtx) return text.length * 7;
  measureCtx.font = font;
  return measureCtx.measureText(text).width;
}

/** Grouped bars: series `i` of `k` takes its slot in each label's column. */
function groupedBars(i, k) {
  const group = 0.8;
  const slot = group / k;
  return uPlot.paths.bars({
    disp: {
      x0: { unit: 1, values: (u) => u.data[0].map((x) => x - group / 2 + i * slot + slot * 0.06) },
      size: { unit: 1, values: () => [slot * 0.88] },
    },
  });
}

function chartModel(view) {
  const labels = arr(view.labels).map(str);
  const series = arr(view.series).map((s, i) => ({
    name: str(s?.name) || `Series ${i + 1}`,
    points: arr(s?.points).map(num),
    color: color(i),
  }));
  const n = Math.max(labels.length, 0, ...series.map((s) => s.points.length));
  const hasData = series.some((s) => s.points.some((p) => p != null));
  return { labels, series, n, hasData, unit: typeof view.unit === "string" ? view.unit : null };
}

function Chart({ view, bars }) {
  const kind = bars ? "bar_chart" : "line_chart";
  const model = useMemo(() => chartModel(view), [view]);
  const key = useMemo(() => JSON.stringify(model), [model]);
  const box = useRef(null);
  const [idx, setIdx] = useState(null);

  useEffect(() => {
    const el = box.current;
    if (!el || !model.hasData) return;
    const { labels, series, n, unit } = model;
    const css = getComputedStyle(el);
    const axisColor = css.color;
    const gridColor = css.borderTopColor;
    const font = `12px ${css.fontFamily}`;
    // Tick spacing from a typical label; each label is cut to the room its tick has.
    const lengths = labels.map((l) => Math.min(l.length, 16)).sort((a, b) => a - b);
    const typical = lengths.length ? lengths[Math.floor(lengths.length / 2)] : 2;
    const xLabel = (v, room) => (Number.isInteger(v) && v >= 0 && v < n ? ellipsize(labels[v] ?? String(v + 1), room) : "");
    const size = () => ({ width: Math.max(el.clientWidth, 50), height: Math.max(el.clientHeight, 80) });
    const single = n === 1;
    const opts = {
      ...size(),
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      scales: {
        x: { time: false, range: bars || single ? [-0.5, n - 0.5] : [0, n - 1] },
        y: {
          range: (u, lo, hi) => {
            if (lo == null || hi == null) return [0, 1];
            if (bars) { lo = Math.min(0, lo); hi = Math.max(0, hi); }
            return uPlot.rangeNum(lo, hi, 0.1, true);
          },
        },
      },
      axes: [
        {
          stroke: axisColor, font, gap: 4, size: 28,
          grid: { show: false },
          ticks: { stroke: gridColor, size: 4, width: 1 },
          incrs: [1, 2, 3, 4, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 1e5, 1e6],
          space: clamp(typical * 7 + 14, 28, 110),
          values: (u, splits, ai, space, step) => {
            const px = (u.bbox.width / uPlot.pxRatio / Math.max(1, bars || single ? n : n - 1)) * (step || 1);
            const room = clamp(Math.floor((px - 8) / 6.5), 3, 16);
            return splits.map((v) => xLabel(v, room));
          },
        },
        {
          stroke: axisColor, font, gap: 6,
          grid: { stroke: gridColor, width: 1 },
          ticks: { show: false },
          values: (u, splits, ai, space, step) => {
            const compact = Math.max(...splits.map(Math.abs)) >= 1e5;
            return splits.map((v) => formatNumber(v, unit, { step, compact }));
          },
          size: (u, values) => (values ? Math.ceil(Math.max(...values.map((v) => textWidth(v, font)))) + 14 : 40),
        },
      ],
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.name,
          stroke: s.color,
          width: bars ? 0 : 2,
          fill: bars ? s.color : series.length === 1 ? s.color + "1f" : undefined,
          paths: bars ? groupedBars(i, series.length) : undefined,
          points: { show: bars ? false : single || n <= 24, size: 5, fill: s.color },
          spanGaps: false,
        })),
      ],
      hooks: { setCursor: [(u) => setIdx(u.cursor.idx ?? null)] },
    };
    const xs = Array.from({ length: n }, (_, i) => i);
    const data = [xs, ...series.map((s) => xs.map((i) => s.points[i] ?? null))];
    const plot = new uPlot(opts, data, el);
    let frame = 0;
    const ro = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => plot.setSize(size()));
    });
    ro.observe(el);
    return () => {
      cancelAnimationFrame(frame);
      ro.disconnect();
      plot.destroy();
      setIdx(null);
    };
  }, [key, bars]);

  const { labels, series, n, hasData, unit } = model;
  const hovering = idx != null && idx < n;
  return html`<${Frame} kind=${kind} title=${view.title}>
    ${hasData ? html`
      <div class="chart-box" ref=${box} role="img"
        aria-label=${`${bars ? "Bar" : "Line"} chart, ${series.length} series over ${n} labels; the data is in the table below`}></div>
      <div class="chart-legend">
        ${hovering && html`<span class="chart-legend-x" title=${labels[idx] ?? ""}>${labels[idx] ?? String(idx + 1)}</span>`}
        <ul>
          ${series.map((s) => html`<li>
            <span class="swatch" style=${{ backgroundColor: s.color }}></span>
            <span class="chart-legend-name" title=${s.name}>${s.name}</span>
            ${hovering && html`<span class="chart-legend-value">${formatNumber(s.points[idx] ?? null, unit)}</span>`}
          </li>`)}
        </ul>
      </div>
      <${ChartData} model=${model} />`
    : html`<${NoData} />`}
  <//>`;
}

/** The chart's numbers as a table, for keyboards, screen readers and copying. */
function ChartData({ model }) {
  const [open, setOpen] = useState(false);
  const { labels, series, n, unit } = model;
  return html`<details class="chart-data" onToggle=${(e) => setOpen(e.currentTarget.open)}>
    <summary>Data</summary>
    ${open && html`<div class="table-scroll" tabindex="0" role="region" aria-label="Chart data">
      <table class="data-table">
        <thead><tr><th scope="col">Label</th>${series.map((s) => html`<th scope="col" class="num">${s.name}</th>`)}</tr></thead>
        <tbody>${Array.from({ length: n }, (_, i) => html`<tr>
          <th scope="row">${labels[i] ?? String(i + 1)}</th>
          ${series.map((s) => html`<td class="num">${formatNumber(s.points[i] ?? null, unit)}</td>`)}
        </tr>`)}</tbody>
      </table>
    </div>`}
  </details>`;
}

// ---- Pie chart ------------------------------------------------------------------------

function point(r, a) {
  return `${(r * Math.cos(a)).toFixed(5)} ${(r * Math.sin(a)).toFixed(5)}`;
}
/** A donut segment between angles a0 and a1 (radians, clockwise from the top). */
function segment(a0, a1, R, r) {
  const large = a1 - a0 > Math.PI ? 1 : 0;
  return `M ${point(R, a0)} A ${R} ${R} 0 ${large} 1 ${point(R, a1)} L ${point(r, a1)} A ${r} ${r} 0 ${large} 0 ${point(r, a0)} Z`;
}

function PieChart({ view }) {
  const slices = arr(view.slices).map((s, i) => ({ label: str(s?.label), value: num(s?.value), color: color(i) }));
  const total = slices.reduce((t, s) => t + (s.value > 0 ? s.value : 0), 0);
  if (!(total > 0) || !Number.isFinite(total)) {
    return html`<${Frame} kind="pie_chart" title=${view.title}><${NoData} /><//>`;
  }
  const R = 1, r = 0.62;
  let a = -Math.PI / 2;
  const arcs = [];
  for (const s of slices) {
    if (!(s.value > 0)) continue;
    const share = s.value / total;
    const tip = `${s.label}: ${formatNumber(s.value)} (${formatShare(share)})`;
    if (share >= 0.99999) {
      arcs.push(html`<circle class="pie-slice" r=${(R + r) / 2} fill="none" stroke=${s.color} stroke-width=${R - r}><title>${tip}</title></circle>`);
    } else if (share > 0) {
      const a1 = a + share * 2 * Math.PI;
      arcs.push(html`<path class="pie-slice" d=${segment(a, a1, R, r)} fill=${s.color}><title>${tip}</title></path>`);
      a = a1;
    }
  }
  const totalText = formatNumber(total);
  return html`<${Frame} kind="pie_chart" title=${view.title}>
    <div class="pie-body">
      <svg class="pie-svg" viewBox="-1.05 -1.05 2.1 2.1" role="img" aria-label=${`Pie chart, ${slices.length} slices, total ${totalText}`}>
        ${arcs}
        <text class="pie-total" x="0" y="0.02" text-anchor="middle" dominant-baseline="middle"
          font-size=${totalText.length > 6 ? 0.22 : 0.3}>${totalText}</text>
        <text class="pie-total-label" x="0" y="0.27" text-anchor="middle" dominant-baseline="middle" font-size="0.14">total</text>
      </svg>
      <ul class="pie-legend">
        ${slices.map((s) => html`<li>
          <span class="swatch" style=${{ backgroundColor: s.value > 0 ? s.color : "transparent" }}></span>
          <span class="pie-label" title=${s.label}>${s.label || "—"}</span>
          <span class="pie-value">${formatNumber(s.value)}</span>
          <span class="pie-share">${s.value > 0 ? formatShare(s.value / total) : "—"}</span>
        </li>`)}
      </ul>
    </div>
  <//>`;
}

// ---- Sparkline ------------------------------------------------------------------------

function Sparkline({ view }) {
  const points = arr(view.points).map(num).filter((p) => p != null);
  if (!points.length) return html`<${Frame} kind="sparkline" title=${view.title}><${NoData} /><//>`;
  const lo = Math.min(...points), hi = Math.max(...points);
  const W = 100, H = 30, pad = 2;
  const y = (v) => (hi === lo ? H / 2 : pad + (1 - (v - lo) / (hi - lo)) * (H - 2 * pad));
  const x = (i) => (points.length === 1 ? W : (i / (points.length - 1)) * W);
  const coords = points.length === 1 ? [[0, y(points[0])], [W, y(points[0])]] : points.map((p, i) => [x(i), y(p)]);
  const line = coords.map(([a, b]) => `${a.toFixed(2)},${b.toFixed(2)}`).join(" ");
  const area = `0,${H} ${line} ${W},${H}`;
  const last = points[points.length - 1];
  return html`<${Frame} kind="sparkline" title=${view.title}>
    <p class="metric-value sparkline-value"><${Amount} value=${last} /></p>
    <svg class="sparkline-svg" viewBox=${`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img"
      aria-label=${`Trend of ${points.length} points from ${formatNumber(points[0])} to ${formatNumber(last)}, lowest ${formatNumber(lo)}, highest ${formatNumber(hi)}`}>
      <polygon class="sparkline-area" points=${area} />
      <polyline class="sparkline-line" points=${line} fill="none" vector-effect="non-scaling-stroke" />
    </svg>
    <p class="sparkline-range"><span>min ${formatNumber(lo)}</span><span>max ${formatNumber(hi)}</span></p>
  <//>`;
}

// ---- Table ----------------------------------------------------------------------------

const PAGE = 10;
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const isBlob = (c) => c != null && typeof c === "object" && !Array.isArray(c) && typeof c.base64 === "string";
function blobSize(b64) {
  const s = b64.replace(/\s/g, "");
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((s.length * 3) / 4) - pad);
}
/** Sort rank: numbers, text, blobs, anything else; missing values always last. */
function rank(c) {
  if (c == null) return 4;
  if (typeof c === "number") return 0;
  if (typeof c === "string") return 1;
  return isBlob(c) ? 2 : 3;
}
function compareCells(a, b) {
  const ra = rank(a), rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 0) return a - b;
  if (ra === 1) return collator.compare(a, b);
  if (ra === 2) return blobSize(a.base64) - blobSize(b.base64);
  return collator.compare(str(a), str(b));
}

function Cell({ value, numeric }) {
  if (value == null) return html`<td class=${"cell-null" + (numeric ? " num" : "")}><span aria-hidden="true">—</span><span class="view-sr">empty</span></td>`;
  if (typeof value === "number") {
    const text = formatCellNumber(value);
    return html`<td class="num" title=${text === String(value) ? undefined : String(value)}>${text}</td>`;
  }
  if (isBlob(value)) return html`<td class="cell-blob">(blob, ${formatCount(blobSize(value.base64))} bytes)</td>`;
  const text = str(value);
  return html`<td class="cell-text" title=${text.length > 24 ? text : undefined}>${text}</td>`;
}

function Table({ view }) {
  const columns = arr(view.columns).map((c, i) => {
    const key = str(c?.key);
    return { key, title: str(c?.title) || key || `Column ${i + 1}` };
  });
  const rows = arr(view.rows).map((r) => arr(r));
  const [sort, setSort] = useState({ col: null, dir: 1 });
  const [page, setPage] = useState(0);

  const numeric = useMemo(() => columns.map((_, ci) => {
    let seen = false;
    for (const r of rows) {
      const c = r[ci];
      if (c == null) continue;
      if (typeof c !== "number") return false;
      seen = true;
    }
    return seen;
  }), [view]);

  const order = useMemo(() => {
    const idx = rows.map((_, i) => i);
    if (sort.col == null) return idx;
    const c = sort.col, d = sort.dir;
    return idx.sort((i, j) => {
      const a = rows[i][c], b = rows[j][c];
      if (a == null || b == null) return a == null ? (b == null ? i - j : 1) : -1; // missing last
      return d * compareCells(a, b) || i - j;
    });
  }, [view, sort.col, sort.dir]);

  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  const p = Math.min(page, pages - 1);
  const first = p * PAGE;
  const shown = order.slice(first, first + PAGE);
  const total = num(view.total_rows);

  const toggle = (ci) => {
    setSort((s) => (s.col !== ci ? { col: ci, dir: 1 } : s.dir === 1 ? { col: ci, dir: -1 } : { col: null, dir: 1 }));
    setPage(0);
  };
  const title = str(view.title);

  if (!columns.length) return html`<${Frame} kind="table" title=${view.title}><${NoData}>No columns<//><//>`;
  return html`<${Frame} kind="table" title=${view.title}>
    <div class="table-scroll" tabindex="0" role="region" aria-label=${(title || "Table") + ", scrollable"}>
      <table class="data-table">
        <thead><tr>${columns.map((c, ci) => {
          const sorted = sort.col === ci;
          return html`<th scope="col" class=${numeric[ci] ? "num" : ""}
            aria-sort=${sorted ? (sort.dir === 1 ? "ascending" : "descending") : undefined}>
            <button type="button" class="sort-button" title=${c.title} onClick=${() => toggle(ci)}>
              <span class="sort-title">${c.title}</span>
              <span class=${"sort-icon" + (sorted ? " sorted" : "")} aria-hidden="true">${sorted ? (sort.dir === 1 ? "▲" : "▼") : "↕"}</span>
            </button>
          </th>`;
        })}</tr></thead>
        <tbody>
          ${shown.map((ri) => html`<tr key=${ri}>${columns.map((_, ci) => html`<${Cell} value=${rows[ri][ci]} numeric=${numeric[ci]} />`)}</tr>`)}
          ${!rows.length && html`<tr><td class="table-empty" colspan=${columns.length}>No rows</td></tr>`}
        </tbody>
      </table>
    </div>
    <div class="table-foot">
      <span class="table-count">
        ${rows.length ? `${formatCount(first + 1)}–${formatCount(first + shown.length)} of ${formatCount(rows.length)}` : "0 rows"}
        ${total != null && total > rows.length && html`<span class="table-total"> · showing ${formatCount(rows.length)} of ${formatCount(total)} rows</span>`}
      </span>
      ${pages > 1 && html`<span class="table-pager">
        <button type="button" disabled=${p === 0} onClick=${() => setPage(p - 1)}><span aria-hidden="true">‹ </span>Prev</button>
        <span class="table-page" aria-live="polite">${formatCount(p + 1)} / ${formatCount(pages)}</span>
        <button type="button" disabled=${p >= pages - 1} onClick=${() => setPage(p + 1)}>Next<span aria-hidden="true"> ›</span></button>
      </span>`}
    </div>
  <//>`;
}

// ---- Gauge ----------------------------------------------------------------------------

const GX = 100, GY = 100;
function gaugePoint(f, r) {
  const a = Math.PI * (1 - f);
  return `${(GX + r * Math.cos(a)).toFixed(3)} ${(GY - r * Math.sin(a)).toFixed(3)}`;
}
function gaugeArc(f0, f1, r) {
  return `M ${gaugePoint(f0, r)} A ${r} ${r} 0 0 1 ${gaugePoint(f1, r)}`;
}

function Gauge({ view }) {
  const value = num(view.value), min = num(view.min), max = num(view.max);
  const thresholds = arr(view.thresholds)
    .map((t) => ({ min: num(t?.min), status: status(t?.status) }))
    .filter((t) => t.min != null && t.status)
    .sort((a, b) => a.min - b.min);
  const current = value == null ? null : thresholds.filter((t) => t.min <= value).pop()?.status ?? null;
  const valid = min != null && max != null && max > min;
  const parts = formatParts(value, view.unit);
  const valueText = parts.map((p) => p.text).join("");
  if (!valid) {
    return html`<${Frame} kind="gauge" title=${view.title}>
      <p class="metric-value"><${Amount} value=${value} unit=${view.unit} /></p>
      <p class="view-note">Range ${formatNumber(min)} to ${formatNumber(max)} is not valid</p>
      <p class="gauge-status"><${StatusBadge} status=${current} /></p>
    <//>`;
  }
  const frac = (v) => clamp((v - min) / (max - min), 0, 1);
  const bands = thresholds.map((t, i) => {
    const from = frac(Math.max(t.min, min));
    const to = frac(i + 1 < thresholds.length ? thresholds[i + 1].min : max);
    return to > from ? html`<path class=${"gauge-band stroke-" + t.status} d=${gaugeArc(from, to, 88)} />` : null;
  });
  const f = value == null ? 0 : frac(value);
  const fontSize = valueText.length > 12 ? 17 : valueText.length > 8 ? 21 : 26;
  const label = `${valueText}, range ${formatNumber(min, view.unit)} to ${formatNumber(max, view.unit)}${current ? ", " + STATUS_TEXT[current] : ""}`;
  return html`<${Frame} kind="gauge" title=${view.title}>
    <svg class="gauge-svg" viewBox="0 0 200 122" role="img" aria-label=${label}>
      <path class="gauge-track" d=${gaugeArc(0, 1, 72)} />
      ${bands}
      ${f > 0 && html`<path class=${"gauge-fill stroke-" + (current || "none")} d=${gaugeArc(0, f, 72)} />`}
      <text class="gauge-value" x=${GX} y=${GY - 8} text-anchor="middle" font-size=${fontSize}>${parts.map((p) =>
        p.type === "unit" ? html`<tspan class="gauge-unit" font-size=${Math.round(fontSize * 0.6)}>${p.text}</tspan>` : p.text)}</text>
      <text class="gauge-limit" x=${GX - 72} y="118" text-anchor="middle" font-size="10">${formatNumber(min, view.unit)}</text>
      <text class="gauge-limit" x=${GX + 72} y="118" text-anchor="middle" font-size="10">${formatNumber(max, view.unit)}</text>
    </svg>
    ${current && html`<p class="gauge-status"><${StatusBadge} status=${current} /></p>`}
  <//>`;
}

// ---- Progress bar ---------------------------------------------------------------------

function ProgressBar({ view }) {
  const id = useId();
  const value = num(view.value), max = num(view.max);
  const label = str(view.label);
  const title = str(view.title);
  const ratio = value != null && max != null && max > 0 ? value / max : null;
  const share = ratio == null ? null : clamp(ratio, 0, 1);
  const shareText = ratio == null ? "—" : formatShare(ratio);
  return html`<${Frame} kind="progress_bar" title=${view.title}>
    <div class="progress-head">
      <span class="progress-label" id=${id} title=${label || undefined}>${label}</span>
      <span class="progress-share">${shareText}</span>
    </div>
    <div class="progress-track" role="progressbar" aria-labelledby=${label ? id : undefined}
      aria-label=${label ? undefined : title || "Progress"}
      aria-valuemin="0" aria-valuemax=${max != null && max > 0 ? max : 100}
      aria-valuenow=${value != null && max != null && max > 0 ? clamp(value, 0, max) : undefined}
      aria-valuetext=${share == null ? "unknown" : `${shareText} (${formatNumber(value)} of ${formatNumber(max)})`}>
      <div class="progress-fill" style=${{ width: (share ?? 0) * 100 + "%" }}></div>
    </div>
    <p class="progress-foot">${formatNumber(value)} / ${formatNumber(max)}</p>
  <//>`;
}

// ---- Heatmap --------------------------------------------------------------------------

// Viridis: perceptually even, readable by colour-blind people, printable in grey.
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
export function heatColor(t) {
  const x = clamp(t, 0, 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + (VIRIDIS[i + 1][k] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

function Heatmap({ view }) {
  const xl = arr(view.x_labels).map(str), yl = arr(view.y_labels).map(str);
  const values = arr(view.values).map((r) => arr(r).map(num));
  const nx = Math.max(xl.length, ...values.map((r) => r.length), 0);
  const ny = Math.max(yl.length, values.length);
  let lo = Infinity, hi = -Infinity;
  for (const r of values) for (const v of r) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const drawn = nx > 0 && ny > 0 && lo <= hi;
  const box = useRef(null);
  const { width } = useSize(box, [drawn]);
  if (!drawn) return html`<${Frame} kind="heatmap" title=${view.title}><${NoData} /><//>`;
  const t = (v) => (hi === lo ? 0.5 : (v - lo) / (hi - lo));
  const dense = ny > 24;
  const cellH = dense ? 14 : 24;
  // One x label per `every` columns, so that each label has about 44 px.
  const every = width ? Math.max(1, Math.ceil(nx / Math.max(1, Math.floor(width / 44)))) : 1;
  const xTicks = [];
  for (let x = 0; x < nx; x += every) xTicks.push([x, Math.min(every, nx - x)]);
  const cells = [];
  for (let y = 0; y < ny; y++) {
    for (let x = 0; x < nx; x++) {
      const v = values[y]?.[x] ?? null;
      const tip = `${yl[y] ?? y + 1} · ${xl[x] ?? x + 1}: ${v == null ? "no value" : formatNumber(v)}`;
      cells.push(html`<rect class=${v == null ? "heat-cell heat-empty" : "heat-cell"} x=${x} y=${y} width="1" height="1"
        fill=${v == null ? undefined : heatColor(t(v))}><title>${tip}</title></rect>`);
    }
  }
  return html`<${Frame} kind="heatmap" title=${view.title}>
    <div class=${"heat-grid" + (dense ? " heat-dense" : "")}>
      <div class="heat-ylabels" aria-hidden="true">
        ${Array.from({ length: ny }, (_, y) => html`<span title=${yl[y] ?? ""}>${yl[y] ?? ""}</span>`)}
      </div>
      <div class="heat-plot" ref=${box}>
        <svg class="heat-svg" viewBox=${`0 0 ${nx} ${ny}`} preserveAspectRatio="none" style=${{ height: ny * cellH + "px" }}
          role="img" aria-label=${`Heatmap, ${ny} rows by ${nx} columns, values from ${formatNumber(lo)} to ${formatNumber(hi)}`}>${cells}</svg>
      </div>
      <span></span>
      <div class="heat-xlabels" aria-hidden="true">
        ${xTicks.map(([x, span]) => html`<span title=${xl[x] ?? ""} style=${{ flexGrow: span }}>${xl[x] ?? ""}</span>`)}
      </div>
    </div>
    <div class="heat-legend">
      <span>${formatNumber(lo)}</span><span class="heat-legend-bar" aria-hidden="true"></span><span>${formatNumber(hi)}</span>
    </div>
  <//>`;
}

// ---- JSON tree (custom views, unknown kinds) -------------------------------------------

const MAX_CHILDREN = 200;
const MAX_DEPTH = 40;

function JsonLeaf({ value }) {
  if (value === null) return html`<span class="json-null">null</span>`;
  if (typeof value === "string") return html`<span class="json-string">${JSON.stringify(value)}</span>`;
  if (typeof value === "number") return html`<span class="json-number">${String(value)}</span>`;
  if (typeof value === "boolean") return html`<span class="json-boolean">${String(value)}</span>`;
  return html`<span class="json-null">${str(value)}</span>`;
}

function JsonNode({ name, value, depth }) {
  const key = name != null && html`<span class="json-key">${name}</span><span class="json-punct">: </span>`;
  if (value === null || typeof value !== "object") return html`<div class="json-row">${key}<${JsonLeaf} value=${value} /></div>`;
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  const brackets = isArray ? ["[", "]"] : ["{", "}"];
  const count = isArray ? `${entries.length} item${entries.length === 1 ? "" : "s"}` : `${entries.length} key${entries.length === 1 ? "" : "s"}`;
  if (!entries.length) return html`<div class="json-row">${key}<span class="json-punct">${brackets.join("")}</span></div>`;
  if (depth >= MAX_DEPTH) return html`<div class="json-row">${key}<span class="json-punct">${brackets[0]}…${brackets[1]}</span></div>`;
  return html`<details class="json-node" open=${depth < 2}>
    <summary>${key}<span class="json-punct">${brackets[0]}</span><span class="json-count">${count}</span><span class="json-punct">${brackets[1]}</span></summary>
    <div class="json-children">
      ${entries.slice(0, MAX_CHILDREN).map(([k, v]) => html`<${JsonNode} name=${k} value=${v} depth=${depth + 1} />`)}
      ${entries.length > MAX_CHILDREN && html`<div class="json-row json-more">… ${formatCount(entries.length - MAX_CHILDREN)} more</div>`}
    </div>
  </details>`;
}

/** Any JSON value as a collapsible tree, text only. */
export function JsonTree({ value }) {
  return html`<div class="json-tree"><${JsonNode} value=${value} depth=${0} /></div>`;
}

function Custom({ view }) {
  return html`<${Frame} kind="custom" title=${typeof view.title === "string" ? view.title : ""}>
    <${JsonTree} value=${view.data ?? null} />
  <//>`;
}

function Unsupported({ view, note }) {
  const kind = view && typeof view === "object" ? str(view.kind) : "";
  return html`<${Frame} kind="unknown" title=${view && typeof view.title === "string" ? view.title : ""}>
    <p class="view-note">${note || `Unsupported view kind “${kind || "(none)"}”`}</p>
    <${JsonTree} value=${view ?? null} />
  <//>`;
}

// ---- Dispatch -------------------------------------------------------------------------

const RENDERERS = {
  metric_card: MetricCard,
  kpi_card: KpiCard,
  line_chart: (p) => html`<${Chart} view=${p.view} bars=${false} />`,
  bar_chart: (p) => html`<${Chart} view=${p.view} bars=${true} />`,
  pie_chart: PieChart,
  sparkline: Sparkline,
  table: Table,
  gauge: Gauge,
  progress_bar: ProgressBar,
  heatmap: Heatmap,
  custom: Custom,
};

/** Keeps one broken view from taking the others down. */
class Boundary extends Component {
  constructor(props) {
    super(props);
    this.state = { error: null };
  }
  componentDidCatch(error) {
    this.setState({ error });
  }
  componentDidUpdate(prev) {
    if (prev.view !== this.props.view && this.state.error) this.setState({ error: null });
  }
  render({ view }, { error }) {
    if (error) {
      // Touches nothing of the view: reading it may be what failed.
      return html`<section class="view view-unknown"><p class="view-note">This view could not be drawn: ${str(error && error.message) || "error"}</p></section>`;
    }
    const kind = view && typeof view === "object" ? view.kind : undefined;
    const Renderer = typeof kind === "string" && Object.hasOwn(RENDERERS, kind) ? RENDERERS[kind] : Unsupported;
    return html`<${Renderer} view=${view} />`;
  }
}

/** One view: `{kind, …}` as the API returns it. */
export function View({ view }) {
  return html`<${Boundary} view=${view} />`;
}

/** A widget's views, laid out in a responsive grid. */
export function Views({ views }) {
  const list = arr(views);
  if (!list.length) return html`<div class="views"><p class="view-nodata">This widget returned no views.</p></div>`;
  // The frame is the container the grid's width rules measure.
  return html`<div class="views-frame"><div class="views">
    ${list.map((v, i) => html`<${View} key=${i + ":" + (v && typeof v === "object" ? str(v.kind) : "")} view=${v} />`)}
  </div></div>`;
}
