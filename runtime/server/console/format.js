// Numbers as people read them, in the user's locale (Intl, `undefined` locale).
//
//   formatNumber(94.44444444444444)            → "94.4"
//   formatNumber(94.4, "%")                    → "94.4%" (en) / "94,4 %" (de)
//   formatNumber(0.0007867813110351562, "MiB") → "825 B"
//   formatNumber(1234, "ms")                   → "1.23 s"
//   formatNumber(1234567, "USD")               → "$1.23M"
//   formatNumber(12, "req/s")                  → "12 req/s"
//   formatPercentChange(12.34)                 → "+12.3%"
//
// Units: "%" (the value is already in percent), durations (ns, µs/us, ms, s, min, h,
// d), bytes (B/byte/bytes and KiB…PiB are shown in binary multiples, kB…PB in decimal
// ones), ISO 4217 currency codes (USD, EUR, …) and anything else appended as text.

const NBSP = "\u00a0";

const cache = new Map();
function nf(options) {
  const key = JSON.stringify(options);
  let f = cache.get(key);
  if (!f) {
    f = new Intl.NumberFormat(undefined, options);
    if (cache.size > 500) cache.clear();
    cache.set(key, f);
  }
  return f;
}

/** Digits that suit a magnitude: 1234 → 0, 94.44 → 1, 3.14159 → 2, 0.012345 → 3 significant. */
function digits(abs) {
  if (abs === 0 || abs >= 100) return { maximumFractionDigits: 0 };
  if (abs >= 10) return { maximumFractionDigits: 1 };
  if (abs >= 1) return { maximumFractionDigits: 2 };
  return { maximumSignificantDigits: 3 };
}

/** Decimal places `x` is written with: 0.25 → 2, 1e-7 → 7, 1200 → 0 (at most 12). */
function decimals(x) {
  const t = String(Math.abs(+x.toPrecision(12)));
  const [mantissa, exp] = t.split("e");
  const frac = (mantissa.split(".")[1] || "").length - (exp ? +exp : 0);
  return Math.min(12, Math.max(0, frac));
}

/**
 * Intl options for a plain number of magnitude `abs`.
 * `compact`: true, false, or "auto" (the default: compact from a million up).
 */
function numberOptions(abs, options = {}) {
  const compact = options.compact ?? "auto";
  const o = {};
  if (options.signDisplay) o.signDisplay = options.signDisplay;
  if (abs !== 0 && (abs >= 1e15 || abs < 1e-4)) {
    return { ...o, notation: "scientific", maximumFractionDigits: 2 };
  }
  if (compact === true ? abs >= 1000 : compact === "auto" && abs >= 1e6) {
    return { ...o, notation: "compact", maximumSignificantDigits: 3 };
  }
  if (options.maximumFractionDigits != null) {
    return { ...o, maximumFractionDigits: options.maximumFractionDigits };
  }
  if (typeof options.step === "number" && options.step > 0) {
    const d = decimals(options.step);
    return { ...o, minimumFractionDigits: d, maximumFractionDigits: d };
  }
  return { ...o, ...digits(abs) };
}

const BYTES = {
  b: [1, true], byte: [1, true], bytes: [1, true],
  kib: [2 ** 10, true], mib: [2 ** 20, true], gib: [2 ** 30, true], tib: [2 ** 40, true], pib: [2 ** 50, true],
  kb: [1e3, false], mb: [1e6, false], gb: [1e9, false], tb: [1e12, false], pb: [1e15, false],
};
const BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
const DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

// Milliseconds per unit.
const DURATIONS = {
  ns: 1e-6, "µs": 1e-3, "μs": 1e-3, us: 1e-3, ms: 1, s: 1e3, sec: 1e3, secs: 1e3,
  min: 60e3, mins: 60e3, h: 3600e3, hr: 3600e3, hrs: 3600e3, d: 86400e3, day: 86400e3, days: 86400e3,
};
// Largest first: [Intl unit, milliseconds].
const DURATION_STEPS = [
  ["day", 86400e3], ["hour", 3600e3], ["minute", 60e3], ["second", 1e3],
  ["millisecond", 1], ["microsecond", 1e-3], ["nanosecond", 1e-6],
];

let currencies = null;
/** Whether `unit` is an ISO 4217 currency code Intl formats as currency. */
export function isCurrency(unit) {
  if (typeof unit !== "string" || !/^[A-Z]{3}$/.test(unit)) return false;
  if (currencies === null) {
    try {
      currencies = new Set(Intl.supportedValuesOf("currency"));
    } catch {
      currencies = undefined; // older engine: any well-formed code Intl accepts
    }
  }
  if (currencies) return currencies.has(unit);
  try {
    new Intl.NumberFormat(undefined, { style: "currency", currency: unit });
    return true;
  } catch {
    return false;
  }
}

/** Intl parts → [{type: "number"|"unit", text}], neighbours of one type merged. */
function fromIntl(format, value) {
  const out = [];
  for (const p of format.formatToParts(value)) {
    const type = p.type === "currency" || p.type === "percentSign" || p.type === "unit" ? "unit" : "number";
    push(out, type, p.value);
  }
  // A space between number and unit belongs with the unit ("94,4 %", "12 ms").
  for (let i = 0; i + 1 < out.length; i++) {
    const m = out[i].type === "number" && out[i + 1].type === "unit" && /\s+$/u.exec(out[i].text);
    if (m && m[0].length < out[i].text.length) {
      out[i].text = out[i].text.slice(0, m.index);
      out[i + 1].text = m[0] + out[i + 1].text;
    }
  }
  return out;
}

function push(out, type, text) {
  if (!text) return;
  const last = out[out.length - 1];
  if (last && last.type === type) last.text += text;
  else out.push({ type, text });
}

function plainParts(value, unitText, options) {
  const out = fromIntl(nf(numberOptions(Math.abs(value), options)), value);
  if (unitText) push(out, "unit", NBSP + unitText);
  return out;
}

function bytesParts(value, [factor, binary], options) {
  let v = value * factor;
  const base = binary ? 1024 : 1000;
  const names = binary ? BINARY_UNITS : DECIMAL_UNITS;
  let i = 0;
  while (Math.abs(v) >= base && i < names.length - 1) {
    v /= base;
    i++;
  }
  // Fractions of a byte say nothing: whole bytes below one KiB.
  const o = i === 0 ? { ...options, maximumFractionDigits: 0 } : options;
  return plainParts(i === 0 ? Math.round(v) : v, names[i], { ...o, compact: false, step: undefined });
}

function durationParts(value, msPerUnit, options) {
  const ms = value * msPerUnit;
  const abs = Math.abs(ms);
  let step = DURATION_STEPS[DURATION_STEPS.length - 1];
  for (const s of DURATION_STEPS) {
    if (abs >= s[1]) {
      step = s;
      break;
    }
  }
  if (abs === 0) step = DURATION_STEPS.find((s) => s[1] === msPerUnit) || ["millisecond", 1];
  const v = ms / step[1];
  const o = numberOptions(Math.abs(v), { ...options, compact: false, step: undefined });
  return fromIntl(nf({ ...o, style: "unit", unit: step[0], unitDisplay: "short" }), v);
}

/**
 * `value` with `unit` as parts: `[{type: "number"|"unit", text}]`, so a view can draw
 * the unit smaller. Options: `compact` (true | false | "auto", the default: compact
 * notation from a million up), `maximumFractionDigits` (else chosen by magnitude),
 * `step` (axis ticks: as many decimals as the step between ticks has, for plain
 * numbers, percent and currency), `signDisplay` (Intl's). A missing or non-finite
 * value is "—".
 */
export function formatParts(value, unit, options = {}) {
  if (typeof value !== "number" || Number.isNaN(value)) return [{ type: "number", text: "—" }];
  if (!Number.isFinite(value)) return [{ type: "number", text: value > 0 ? "∞" : "−∞" }];
  const u = typeof unit === "string" ? unit.trim() : "";
  if (!u) return plainParts(value, "", options);
  if (u === "%") {
    const o = numberOptions(Math.abs(value), options);
    return fromIntl(nf({ ...o, style: "percent" }), value / 100);
  }
  const lower = u.toLowerCase();
  if (Object.hasOwn(BYTES, lower) && (u !== "b" && u !== "Mb" && u !== "Gb" && u !== "Kb")) {
    return bytesParts(value, BYTES[lower], options);
  }
  if (Object.hasOwn(DURATIONS, u)) return durationParts(value, DURATIONS[u], options);
  if (isCurrency(u)) {
    const abs = Math.abs(value);
    const o = { style: "currency", currency: u };
    if (options.signDisplay) o.signDisplay = options.signDisplay;
    const compact = options.compact ?? "auto";
    if (abs >= 1e15) Object.assign(o, { notation: "scientific", maximumFractionDigits: 2 });
    else if (compact === true ? abs >= 1000 : compact === "auto" && abs >= 1e6) {
      Object.assign(o, { notation: "compact", maximumSignificantDigits: 3 });
    } else if (options.maximumFractionDigits != null) {
      Object.assign(o, { minimumFractionDigits: 0, maximumFractionDigits: options.maximumFractionDigits });
    } else if (typeof options.step === "number" && options.step > 0) {
      const d = decimals(options.step);
      Object.assign(o, { minimumFractionDigits: d, maximumFractionDigits: d });
    } else if (abs >= 1000) {
      Object.assign(o, { minimumFractionDigits: 0, maximumFractionDigits: 0 });
    } else if (abs !== 0 && abs < 0.01) {
      Object.assign(o, { maximumSignificantDigits: 2 });
    }
    return fromIntl(nf(o), value);
  }
  return plainParts(value, u, options);
}

/** `value` with `unit` as one string; see `formatParts`. */
export function formatNumber(value, unit, options) {
  return formatParts(value, unit, options).map((p) => p.text).join("");
}

/** A change in percent with its sign: 12.34 → "+12.3%", -0.5 → "-0.5%", 0 → "0%". */
export function formatPercentChange(percent) {
  if (typeof percent !== "number" || !Number.isFinite(percent)) return "—";
  const abs = Math.abs(percent);
  const o = abs >= 1e6 ? { notation: "compact", maximumSignificantDigits: 3 }
    : { maximumFractionDigits: abs >= 100 || abs === 0 ? 0 : abs < 1 ? 2 : 1 };
  return nf({ ...o, style: "percent", signDisplay: "exceptZero" }).format(percent / 100);
}

/** A count in full with grouping: 12345 → "12,345". */
export function formatCount(n) {
  return typeof n === "number" && Number.isFinite(n) ? nf({ maximumFractionDigits: 0 }).format(n) : "—";
}

/** A share of a whole, `fraction` in 0..1: 0.4567 → "45.7%". */
export function formatShare(fraction) {
  if (typeof fraction !== "number" || !Number.isFinite(fraction)) return "—";
  const pct = Math.abs(fraction * 100);
  const o = pct === 0 || pct >= 0.1 ? { maximumFractionDigits: pct >= 100 ? 0 : 1 } : { maximumSignificantDigits: 1 };
  return nf({ ...o, style: "percent" }).format(fraction);
}

/** A number in a table cell, as written (up to 6 decimals), grouped from five digits. */
export function formatCellNumber(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return formatNumber(value);
  const abs = Math.abs(value);
  if (abs >= 1e21 || (abs !== 0 && abs < 1e-6)) return nf({ notation: "scientific", maximumFractionDigits: 3 }).format(value);
  return nf({ maximumFractionDigits: Math.min(6, decimals(value)), useGrouping: "min2" }).format(value);
}
