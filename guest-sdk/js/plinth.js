// Plinth's JavaScript SDK: typed views, the capabilities and the error of the contract.
//
// The same shape as the Rust SDK: `cache`, `db`, `broadcast` and `log` wrap the host's
// capabilities, the view functions build what the console draws, and `defineExtension`
// turns one object into the exports the `extension` world needs. `plinth build` writes
// this file to `.plinth/plinth.js` in the project; types are in `plinth.d.ts`.

import * as rawCache from 'plinth:extension/cache@0.1.0';
import * as rawDb from 'plinth:extension/db@0.1.0';
import * as rawBroadcast from 'plinth:extension/broadcast@0.1.0';
import * as rawLog from 'plinth:extension/log@0.1.0';

// --- errors -------------------------------------------------------------------------------
//
// Throw one of these from an export to return the contract's `error`; the host maps each
// case to a stable code. Anything else thrown traps the call (GUEST_TRAP), as a Rust panic
// does.

const fail = (tag) => (message) => ({ tag, val: String(message) });
export const invalid = fail('invalid-input');
export const notFound = fail('not-found');
export const retry = fail('unavailable');
export const reject = fail('rejected');
export const internal = fail('internal');

// A capability's error arrives as a thrown value carrying the contract's error; rethrown
// unchanged it becomes this call's error, so `cache.incr(...)` needs no try/catch.
function call(f) {
  try {
    return f();
  } catch (e) {
    const error = e && e.payload !== undefined ? e.payload : e;
    throw error;
  }
}

// --- values -------------------------------------------------------------------------------

/** A JavaScript value as a contract `value`: null, integer, number, string, bytes. */
export function value(v) {
  if (v === null || v === undefined) return { tag: 'null' };
  if (typeof v === 'bigint') return { tag: 'integer', val: v };
  if (typeof v === 'boolean') return { tag: 'integer', val: v ? 1n : 0n };
  if (typeof v === 'number') {
    // Integers beyond 2^53 are not exact as numbers: they go as reals, as JSON would.
    return Number.isSafeInteger(v) ? { tag: 'integer', val: BigInt(v) } : { tag: 'real', val: v };
  }
  if (typeof v === 'string') return { tag: 'text', val: v };
  if (v instanceof Uint8Array) return { tag: 'blob', val: v };
  throw new TypeError(`no contract value for ${typeof v}`);
}

/** A contract `value` as a JavaScript value (integers as numbers when they fit). */
export function fromValue(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'integer':
      return Number.isSafeInteger(Number(v.val)) ? Number(v.val) : v.val;
    default:
      return v.val;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A non-negative integer for a u64 of the contract; anything else is the caller's error. */
function u64(what, v) {
  if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${what} must be a non-negative integer`);
  return BigInt(v);
}

/** JSON text of `document`; `undefined` and functions have none. */
function json(what, document) {
  const text = JSON.stringify(document);
  if (text === undefined) throw invalid(`${what} is not a JSON document`);
  return text;
}

const count = (v) => (Number.isSafeInteger(Number(v)) ? Number(v) : v);

// --- capabilities -------------------------------------------------------------------------

/** The tenant's cache (needs the `cache` grant). */
export const cache = {
  get: (key) => call(() => rawCache.get(key)),
  set: (key, data, ttlMs) =>
    call(() =>
      rawCache.set(
        key,
        typeof data === 'string' ? encoder.encode(data) : data,
        ttlMs === undefined ? undefined : u64('ttlMs', ttlMs),
      ),
    ),
  delete: (key) => call(() => rawCache.delete(key)),
  incr(key, delta = 1) {
    if (!Number.isSafeInteger(delta)) throw invalid('delta must be an integer');
    return count(call(() => rawCache.incr(key, BigInt(delta))));
  },
  invalidatePrefix: (prefix) => count(call(() => rawCache.invalidatePrefix(prefix))),
  /** Counts as numbers (bigints only beyond 2^53). */
  stats(top = 10) {
    const s = call(() => rawCache.stats(top));
    return {
      hits: count(s.hits),
      misses: count(s.misses),
      keys: count(s.keys),
      memoryBytes: count(s.memoryBytes),
      topKeys: s.topKeys.map((k) => ({
        key: k.key,
        sizeBytes: count(k.sizeBytes),
        hits: count(k.hits),
      })),
    };
  },
  getJson(key) {
    const data = cache.get(key);
    if (data === undefined) return undefined;
    try {
      return JSON.parse(decoder.decode(data));
    } catch (e) {
      throw internal(`the cache entry ${key} is not JSON: ${e.message}`);
    }
  },
  setJson: (key, document, ttlMs) => cache.set(key, json('the cached value', document), ttlMs),
};

/** A result set: `columns` and `rows` of JavaScript values. */
export class Rows {
  constructor(raw) {
    this.columns = raw.columns;
    this.rows = raw.rows.map((row) => row.map(fromValue));
  }
  column(name) {
    const i = this.columns.indexOf(name);
    return i < 0 ? undefined : i;
  }
  objects() {
    return this.rows.map((row) => Object.fromEntries(this.columns.map((c, i) => [c, row[i]])));
  }
}

/** The tenant's database (needs `db`; writes need `db:write`); `$1`, `$2`, ... bind `params`. */
export const db = {
  query: (sql, ...params) => new Rows(call(() => rawDb.query(sql, params.map(value)))),
  execute: (sql, ...params) => count(call(() => rawDb.execute(sql, params.map(value)))),
};

/** Pushes to every browser subscribed to a topic of the tenant (needs `broadcast`). */
export const broadcast = {
  publish: (topic, payload) =>
    call(() => rawBroadcast.publish(topic, json('the published payload', payload))),
};

/** The installation's log (needs `log`). */
export const log = {
  trace: (message) => rawLog.write('trace', String(message)),
  debug: (message) => rawLog.write('debug', String(message)),
  info: (message) => rawLog.write('info', String(message)),
  warn: (message) => rawLog.write('warn', String(message)),
  error: (message) => rawLog.write('error', String(message)),
};

// --- views --------------------------------------------------------------------------------

const num = (v) => Number(v);

/** One big number; `change` (percent) also sets the trend. */
export function metricCard(title, v, { unit, change, caption } = {}) {
  const trend = change === undefined ? undefined : change > 0 ? 'up' : change < 0 ? 'down' : 'flat';
  return {
    tag: 'metric-card',
    val: { title, value: num(v), unit, changePercent: change, trend, caption },
  };
}

export function kpiCard(title, v, target, { unit, status = 'ok' } = {}) {
  return { tag: 'kpi-card', val: { title, value: num(v), target: num(target), unit, status } };
}

function chart(title, labels, series, unit) {
  return {
    title,
    labels,
    series: Object.entries(series).map(([name, points]) => ({ name, points: points.map(num) })),
    unit,
  };
}

/** A line chart: `series` maps each series' name to one point per label. */
export const lineChart = (title, labels, series, { unit } = {}) => ({
  tag: 'line-chart',
  val: chart(title, labels, series, unit),
});
export const barChart = (title, labels, series, { unit } = {}) => ({
  tag: 'bar-chart',
  val: chart(title, labels, series, unit),
});
export const pieChart = (title, slices) => ({
  tag: 'pie-chart',
  val: { title, slices: slices.map(([label, v]) => ({ label, value: num(v) })) },
});
export const sparkline = (title, points) => ({
  tag: 'sparkline',
  val: { title, points: points.map(num) },
});

/** Rows of cells; `columns` are [key, title] pairs; cells are JavaScript values. */
export function table(title, columns, rows, { totalRows } = {}) {
  return {
    tag: 'table',
    val: {
      title,
      columns: columns.map(([key, header]) => ({ key, title: header })),
      rows: rows.map((row) => row.map(value)),
      totalRows: totalRows === undefined ? undefined : u64('totalRows', totalRows),
    },
  };
}

export function gauge(title, v, min, max, { unit, thresholds = [] } = {}) {
  return {
    tag: 'gauge',
    val: {
      title,
      value: num(v),
      min: num(min),
      max: num(max),
      unit,
      thresholds: thresholds.map(([from, status]) => ({ min: num(from), status })),
    },
  };
}

export const progressBar = (title, v, max, { label } = {}) => ({
  tag: 'progress-bar',
  val: { title, value: num(v), max: num(max), label },
});
export const heatmap = (title, xLabels, yLabels, values) => ({
  tag: 'heatmap',
  val: { title, xLabels, yLabels, values: values.map((row) => row.map(num)) },
});
/** Any JSON document, for a console plugin that knows how to draw it. */
export const custom = (document) => ({ tag: 'custom', val: json('a custom view', document) });

// --- requests -----------------------------------------------------------------------------

function parse(what, text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalid(`${what} is not JSON: ${e.message}`);
  }
}

function config(text) {
  const parsed = parse('the config', text);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalid('the config is not a JSON object');
  }
  return parsed;
}

/** What an action returns. */
export const response = {
  json: (document, filename) => ({
    contentType: 'application/json',
    body: encoder.encode(json('the response', document)),
    filename,
  }),
  text: (contentType, body, filename) => ({ contentType, body: encoder.encode(body), filename }),
};

// --- the extension ------------------------------------------------------------------------

/**
 * The exports of the `extension` world from one object. `describe` returns a plain
 * descriptor (`id` and `name` required); what is left out answers with an error:
 *
 *     export const { manifest, widgetExports, handler } = defineExtension({ describe, render });
 */
export function defineExtension(extension) {
  const missing = (what) => () => {
    throw notFound(what);
  };
  const render = extension.render ?? missing('this extension is not a widget');
  const onTick = extension.onTick ?? missing('this widget has no tick');
  const invoke = extension.invoke ?? ((request) => {
    throw notFound(`no action ${request.name}`);
  });
  const handle = extension.handle ?? missing('this extension handles no events');
  return {
    manifest: {
      describe() {
        const d = extension.describe();
        return {
          id: d.id,
          name: d.name,
          version: d.version ?? '0.1.0',
          description: d.description ?? '',
          category: d.category ?? 'custom',
          icon: d.icon ?? '',
          defaultSize: d.size ?? { width: 2, height: 1 },
          configSchema: json('configSchema', d.configSchema ?? {}),
          refreshIntervalMs: d.refreshEveryMs,
          capabilities: d.uses ?? [],
          eventPatterns: d.handles ?? [],
          actions: Object.entries(d.actions ?? {}).map(([name, description]) => ({
            name,
            description,
          })),
        };
      },
    },
    widgetExports: {
      render(request) {
        return render({
          config: config(request.config),
          params: Object.fromEntries(request.params),
        });
      },
      onTick(tick) {
        onTick({
          config: config(tick.config),
          sequence: Number(tick.sequence),
          scheduledAtMs: Number(tick.scheduledAtMs),
        });
      },
      invoke(request) {
        return invoke({
          name: request.name,
          config: config(request.config),
          body: parse("the action's body", request.body),
        });
      },
    },
    handler: {
      handle(event) {
        handle({
          id: event.id,
          name: event.name,
          payload: parse("the event's payload", event.payload),
          occurredAtMs: Number(event.occurredAtMs),
          attempt: event.attempt,
        });
      },
    },
  };
}
