// A form generated from an extension's config schema (a JSON Schema, draft 2020-12
// subset): objects as fieldsets, strings, numbers, booleans, enums, lists of strings or
// numbers; anything else (and a schema without properties) as JSON text.
//
// The inputs carry what HTML attributes can say (required, min, max, maxlength) for
// assistive technology and input widgets, but not an extension's `pattern`: a browser
// runs it on every keystroke, and a pattern that backtracks badly would hang the tab.
// The forms that use this one
// are `novalidate`: the server validates the config and is the authority, and its
// messages (`errors`, `[{path, message}]` with JSON pointers) are shown at the field they
// name, the ones naming no field above the form.
import { html, useState, useEffect, useRef } from "./ui.js";

/** Text of a JSON field that does not parse (yet): kept in the value until submit. */
export class JsonText {
  constructor(text, error) {
    this.text = text;
    this.error = error;
  }
}

/**
 * The config to send from the form's value: `{value, errors}`; `errors` lists JSON
 * fields that do not parse (`[{path, message}]`, shown by `SchemaForm` at the field).
 * An empty JSON text is no value.
 */
export function readConfig(value) {
  const errors = [];
  const walk = (v, path) => {
    if (v instanceof JsonText) {
      if (v.text.trim() === "") return undefined;
      errors.push({ path, message: "not valid JSON: " + v.error });
      return undefined;
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, pointer(path, String(i))));
    if (isPlainObject(v)) {
      const out = {};
      for (const [k, item] of Object.entries(v)) {
        const w = walk(item, pointer(path, k));
        if (w !== undefined) out[k] = w;
      }
      return out;
    }
    return v;
  };
  const out = walk(value, "");
  return { value: out, errors };
}

/** `value` with the schema's `default`s filled in where nothing is set, and required
 *  booleans (a checkbox cannot be "unset") set to false. */
export function withDefaults(schema, value) {
  if (!isPlainObject(schema)) return value;
  if (value === undefined && "default" in schema) return clone(schema.default);
  if (kindOf(schema) !== "object") return value;
  if (value !== undefined && !isPlainObject(value)) return value;
  const required = Array.isArray(schema.required) ? schema.required : [];
  const out = { ...(value || {}) };
  for (const [key, sub] of Object.entries(schema.properties)) {
    let v = withDefaults(sub, out[key]);
    if (v === undefined && required.includes(key) && kindOf(sub) === "boolean") v = false;
    if (v === undefined && required.includes(key) && kindOf(sub) === "object") v = withDefaults(sub, {});
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/**
 * The form. `value` is the config (an object, or undefined), `onChange(value)` gets the
 * next one (JSON fields that do not parse are `JsonText`s in it: call `readConfig` on
 * submit). `errors` are the server's `[{path, message}]`. `idPrefix` keeps ids unique
 * when two forms are on a page.
 */
export function SchemaForm({ schema, value, onChange, errors = [], idPrefix = "config" }) {
  const root = isPlainObject(schema) ? schema : {};
  const container = useRef(null);
  // Defaults once per schema.
  useEffect(() => {
    if (kindOf(root) !== "object") return;
    const filled = withDefaults(root, value);
    if (!same(filled, value)) onChange(filled);
  }, [schema]);
  // Errors from the server: move to the first field they mark.
  useEffect(() => {
    if (!errors || errors.length === 0 || !container.current) return;
    const first = container.current.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  }, [JSON.stringify(errors || [])]);

  const paths = new Set();
  collectPaths(root, "", paths, true);
  const { byPath, unplaced } = placeErrors(errors || [], paths);
  const ctx = { idPrefix, byPath };

  const body =
    kindOf(root) === "object"
      ? html`<${ObjectFields} schema=${root} value=${value} onChange=${onChange} path="" ctx=${ctx} />`
      : html`<${JsonField}
          schema=${root}
          value=${value === undefined ? {} : value}
          onChange=${onChange}
          path=""
          label=${root.title || "Config (JSON)"}
          hint=${root.description || "The extension's schema describes no fields: enter the config as a JSON object."}
          required=${false}
          ctx=${ctx}
        />`;
  return html`<div class="sf" ref=${container}>
    ${unplaced.length > 0 &&
    html`<div class="sf-errors" role="alert">
      <p class="sf-errors-title">The server refused the config:</p>
      <ul>
        ${unplaced.map(
          (e, i) => html`<li key=${i}>${e.path ? html`<code>${e.path}</code> ` : null}${e.message}</li>`,
        )}
      </ul>
    </div>`}
    ${body}
  </div>`;
}

// ---- schema reading ----------------------------------------------------------------

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonText);
}

function clone(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

function same(a, b) {
  if (a instanceof JsonText || b instanceof JsonText) return a === b;
  return JSON.stringify(a) === JSON.stringify(b);
}

function typeOf(schema) {
  const t = schema.type;
  if (Array.isArray(t)) return t.find((x) => x !== "null");
  return t;
}

/** How a (sub)schema is shown: object, string, number, boolean, enum, lines, multi, json. */
function kindOf(schema) {
  if (!isPlainObject(schema)) return "json";
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return "enum";
  const type = typeOf(schema);
  const hasProps = isPlainObject(schema.properties) && Object.keys(schema.properties).length > 0;
  if (type === "object" || (type === undefined && hasProps)) return hasProps ? "object" : "json";
  if (type === "string") return "string";
  if (type === "number" || type === "integer") return "number";
  if (type === "boolean") return "boolean";
  if (type === "array" && isPlainObject(schema.items)) {
    if (Array.isArray(schema.items.enum) && schema.items.enum.length > 0) return "multi";
    const itemType = typeOf(schema.items);
    if (itemType === "string" || itemType === "number" || itemType === "integer") return "lines";
  }
  return "json";
}

/** A JSON pointer one step below `path`. */
function pointer(path, key) {
  return path + "/" + String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

/** Every path that has a field (nested objects are fieldsets, which count). */
function collectPaths(schema, path, paths, isRoot) {
  const kind = kindOf(schema);
  if (kind === "object") {
    if (!isRoot) paths.add(path);
    for (const [key, sub] of Object.entries(schema.properties)) collectPaths(sub, pointer(path, key), paths, false);
  } else {
    paths.add(path);
  }
}

/** The server's errors by the field they belong to; the rest (naming no field). */
function placeErrors(errors, paths) {
  const byPath = new Map();
  const unplaced = [];
  for (const error of errors) {
    let path = typeof error.path === "string" ? error.path : "";
    if (path === "/") path = "";
    let message = String(error.message ?? "");
    // `"target" is a required property` is reported at the object: show it at the field.
    const missing = /^"((?:[^"\\]|\\.)*)" is a required property/.exec(message);
    if (missing) {
      let name = missing[1];
      try {
        name = JSON.parse('"' + missing[1] + '"');
      } catch {}
      const field = pointer(path, name);
      if (paths.has(field)) {
        path = field;
        message = "Required.";
      }
    }
    let at = path;
    while (!paths.has(at) && at !== "") at = at.slice(0, at.lastIndexOf("/"));
    if (!paths.has(at)) {
      unplaced.push({ path, message });
      continue;
    }
    // An item of a list is shown at the list, naming the item.
    const rest = path.slice(at.length);
    const shown = rest ? `${describeRest(rest)}: ${message}` : message;
    if (!byPath.has(at)) byPath.set(at, []);
    byPath.get(at).push(shown);
  }
  return { byPath, unplaced };
}

function describeRest(rest) {
  const first = rest.split("/")[1];
  return /^\d+$/.test(first) ? `item ${Number(first) + 1}${rest.slice(first.length + 1)}` : rest;
}

/** Ids from a JSON pointer: letters and digits kept, anything else escaped. */
function idFor(ctx, path) {
  const safe = path.replace(/[^A-Za-z0-9]/g, (c) => "_" + c.charCodeAt(0).toString(16) + "_");
  return `${ctx.idPrefix}-f${safe}`;
}

// ---- fields ------------------------------------------------------------------------

/** A draft text for a field whose value is parsed from it: kept while the user types,
 *  taken from `value` again when the value changes from outside. */
function useDraft(value, format, parse, onChange) {
  const [text, setText] = useState(() => format(value));
  const emitted = useRef(value);
  useEffect(() => {
    if (!same(value, emitted.current)) {
      emitted.current = value;
      setText(format(value));
    }
  }, [value]);
  const input = (next) => {
    setText(next);
    const v = parse(next);
    emitted.current = v;
    onChange(v);
  };
  return [text, input];
}

function Label({ id, text, required }) {
  return html`<label for=${id}
    >${text}${required && html`<span class="sf-required" aria-hidden="true"> *</span>`}${required &&
    html`<span class="sf-sr"> (required)</span>`}</label
  >`;
}

/** The hint and error paragraphs of a field, and what its input's aria attributes are. */
function useNotes(ctx, path, hint) {
  const id = idFor(ctx, path);
  const messages = ctx.byPath.get(path) || [];
  const hintId = hint ? id + "-hint" : null;
  const errorId = messages.length > 0 ? id + "-error" : null;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ") || undefined;
  const notes = html`${hint && html`<p class="sf-hint" id=${hintId}>${hint}</p>`}${messages.length > 0 &&
    html`<p class="sf-error" id=${errorId}>${messages.join(" ")}</p>`}`;
  return { id, notes, invalid: messages.length > 0 ? "true" : undefined, describedBy };
}

function hintOf(schema, extra) {
  const parts = [];
  // Sentences: a description without its full stop gets one before the default.
  if (schema.description) parts.push(String(schema.description).replace(/([^.!?])$/, "$1."));
  if (extra) parts.push(extra);
  if ("default" in schema && schema.default !== undefined && typeof schema.default !== "object")
    parts.push(`Default: ${String(schema.default)}.`);
  return parts.join(" ") || null;
}

function ObjectFields({ schema, value, onChange, path, ctx }) {
  const object = isPlainObject(value) ? value : {};
  const required = Array.isArray(schema.required) ? schema.required : [];
  const set = (key) => (v) => {
    const next = { ...object };
    if (v === undefined) delete next[key];
    else next[key] = v;
    onChange(next);
  };
  return Object.entries(schema.properties).map(
    ([key, sub]) => html`<${Field}
      key=${key}
      name=${key}
      schema=${isPlainObject(sub) ? sub : {}}
      value=${object[key]}
      onChange=${set(key)}
      path=${pointer(path, key)}
      required=${required.includes(key)}
      ctx=${ctx}
    />`,
  );
}

function Field(props) {
  const { schema, name } = props;
  const label = schema.title || name;
  switch (kindOf(schema)) {
    case "object":
      return html`<${Group} ...${props} label=${label} />`;
    case "string":
      return html`<${StringField} ...${props} label=${label} />`;
    case "number":
      return html`<${NumberField} ...${props} label=${label} />`;
    case "boolean":
      return html`<${BooleanField} ...${props} label=${label} />`;
    case "enum":
      return html`<${EnumField} ...${props} label=${label} />`;
    case "lines":
      return html`<${LinesField} ...${props} label=${label} />`;
    case "multi":
      return html`<${MultiField} ...${props} label=${label} />`;
    default:
      return html`<${JsonField}
        ...${props}
        label=${label + " (JSON)"}
        hint=${hintOf(schema, "Enter a JSON value.")}
      />`;
  }
}

function Group({ schema, value, onChange, path, ctx, label, required }) {
  const { id, notes, describedBy } = useNotes(ctx, path, hintOf(schema));
  return html`<fieldset class="sf-group" id=${id} aria-describedby=${describedBy}>
    <legend>${label}${required && html`<span class="sf-required" aria-hidden="true"> *</span>`}</legend>
    ${notes}
    <${ObjectFields} schema=${schema} value=${value} onChange=${onChange} path=${path} ctx=${ctx} />
  </fieldset>`;
}

const INPUT_TYPES = { email: "email", uri: "url", "uri-reference": "text", date: "date", password: "password" };

function StringField({ schema, value, onChange, path, ctx, label, required }) {
  const extra = schema.format === "date-time" ? "A date and time, like 2025-01-31T12:00:00Z." : null;
  const { id, notes, invalid, describedBy } = useNotes(ctx, path, hintOf(schema, extra));
  const long = (schema.maxLength ?? 0) > 200 || schema.format === "textarea";
  const common = {
    id,
    name: path,
    required,
    maxlength: schema.maxLength,
    minlength: schema.minLength,
    "aria-invalid": invalid,
    "aria-describedby": describedBy,
    onInput: (e) => onChange(e.currentTarget.value === "" ? undefined : e.currentTarget.value),
  };
  const text = typeof value === "string" ? value : value == null ? "" : String(value);
  return html`<div class="sf-field">
    <${Label} id=${id} text=${label} required=${required} />
    ${long
      ? html`<textarea ...${common} rows="4" value=${text}></textarea>`
      : html`<input
          ...${common}
          type=${INPUT_TYPES[schema.format] || "text"}
          value=${text}
          autocomplete="off"
        />`}
    ${notes}
  </div>`;
}

function NumberField({ schema, value, onChange, path, ctx, label, required }) {
  const { id, notes, invalid, describedBy } = useNotes(ctx, path, hintOf(schema));
  const integer = typeOf(schema) === "integer";
  let min = schema.minimum;
  let max = schema.maximum;
  if (typeof schema.exclusiveMinimum === "number" && integer) min = Math.floor(schema.exclusiveMinimum) + 1;
  if (typeof schema.exclusiveMaximum === "number" && integer) max = Math.ceil(schema.exclusiveMaximum) - 1;
  const step = typeof schema.multipleOf === "number" ? schema.multipleOf : integer ? 1 : "any";
  const [text, input] = useDraft(
    value,
    (v) => (v == null ? "" : String(v)),
    (t) => (t.trim() === "" || !Number.isFinite(Number(t)) ? undefined : Number(t)),
    onChange,
  );
  return html`<div class="sf-field">
    <${Label} id=${id} text=${label} required=${required} />
    <input
      id=${id}
      name=${path}
      type="number"
      inputmode=${integer ? "numeric" : "decimal"}
      min=${min}
      max=${max}
      step=${step}
      required=${required}
      value=${text}
      aria-invalid=${invalid}
      aria-describedby=${describedBy}
      onInput=${(e) => input(e.currentTarget.value)}
    />
    ${notes}
  </div>`;
}

function BooleanField({ schema, value, onChange, path, ctx, label, required }) {
  const { id, notes, invalid, describedBy } = useNotes(ctx, path, hintOf(schema));
  return html`<div class="sf-field sf-check">
    <input
      id=${id}
      name=${path}
      type="checkbox"
      checked=${value === true}
      aria-invalid=${invalid}
      aria-describedby=${describedBy}
      onChange=${(e) => onChange(e.currentTarget.checked)}
    />
    <${Label} id=${id} text=${label} required=${required} />
    ${notes}
  </div>`;
}

function EnumField({ schema, value, onChange, path, ctx, label, required }) {
  const { id, notes, invalid, describedBy } = useNotes(ctx, path, hintOf(schema));
  const options = schema.enum;
  const index = options.findIndex((o) => same(o, value));
  return html`<div class="sf-field">
    <${Label} id=${id} text=${label} required=${required} />
    <select
      id=${id}
      name=${path}
      value=${index < 0 ? "" : String(index)}
      required=${required}
      aria-invalid=${invalid}
      aria-describedby=${describedBy}
      onChange=${(e) => {
        const i = e.currentTarget.value;
        onChange(i === "" ? undefined : clone(options[Number(i)]));
      }}
    >
      ${(index < 0 || !required) && html`<option value="">— choose —</option>`}
      ${options.map(
        (o, i) => html`<option key=${i} value=${String(i)}>${typeof o === "string" ? o : JSON.stringify(o)}</option>`,
      )}
    </select>
    ${notes}
  </div>`;
}

function LinesField({ schema, value, onChange, path, ctx, label, required }) {
  const numeric = typeOf(schema.items) !== "string";
  const { id, notes, invalid, describedBy } = useNotes(
    ctx,
    path,
    hintOf(schema, numeric ? "One number per line." : "One per line."),
  );
  const [text, input] = useDraft(
    value,
    (v) => (Array.isArray(v) ? v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join("\n") : ""),
    (t) => {
      const lines = t.split("\n").filter((line) => line.trim() !== "");
      if (lines.length === 0) return undefined;
      // A line that is not a number is sent as text: the server names it.
      return numeric ? lines.map((l) => (Number.isFinite(Number(l)) ? Number(l) : l.trim())) : lines;
    },
    onChange,
  );
  const rows = Math.min(12, Math.max(3, text.split("\n").length + 1));
  return html`<div class="sf-field">
    <${Label} id=${id} text=${label} required=${required} />
    <textarea
      id=${id}
      name=${path}
      rows=${rows}
      required=${required}
      spellcheck="false"
      value=${text}
      aria-invalid=${invalid}
      aria-describedby=${describedBy}
      onInput=${(e) => input(e.currentTarget.value)}
    ></textarea>
    ${notes}
  </div>`;
}

function MultiField({ schema, value, onChange, path, ctx, label, required }) {
  const { id, notes, describedBy } = useNotes(ctx, path, hintOf(schema));
  const chosen = Array.isArray(value) ? value : [];
  const options = schema.items.enum;
  const toggle = (option, on) => {
    const next = options.filter((o) => (same(o, option) ? on : chosen.some((c) => same(c, o))));
    onChange(next.length === 0 ? undefined : next);
  };
  return html`<fieldset class="sf-group sf-multi" id=${id} aria-describedby=${describedBy}>
    <legend>${label}${required && html`<span class="sf-required" aria-hidden="true"> *</span>`}</legend>
    ${notes}
    ${options.map(
      (o, i) => html`<div class="sf-check" key=${i}>
        <input
          id=${id + "-" + i}
          type="checkbox"
          checked=${chosen.some((c) => same(c, o))}
          onChange=${(e) => toggle(o, e.currentTarget.checked)}
        />
        <label for=${id + "-" + i}>${typeof o === "string" ? o : JSON.stringify(o)}</label>
      </div>`,
    )}
  </fieldset>`;
}

function JsonField({ value, onChange, path, ctx, label, hint, required }) {
  const { id, notes, invalid, describedBy } = useNotes(ctx, path, hint);
  const [text, input] = useDraft(
    value,
    (v) => (v instanceof JsonText ? v.text : v === undefined ? "" : JSON.stringify(v, null, 2)),
    (t) => {
      if (t.trim() === "") return path === "" ? new JsonText(t, "") : undefined;
      try {
        return JSON.parse(t);
      } catch (e) {
        return new JsonText(t, e.message);
      }
    },
    onChange,
  );
  const rows = Math.min(16, Math.max(4, text.split("\n").length + 1));
  return html`<div class="sf-field">
    <${Label} id=${id} text=${label} required=${required} />
    <textarea
      id=${id}
      name=${path || "config"}
      class="sf-json"
      rows=${rows}
      required=${required}
      spellcheck="false"
      autocapitalize="off"
      value=${text}
      aria-invalid=${invalid}
      aria-describedby=${describedBy}
      onInput=${(e) => input(e.currentTarget.value)}
    ></textarea>
    ${notes}
  </div>`;
}
