// The view layer every page uses: Preact with htm (tagged templates, no build step).
// Text goes through Preact's text nodes only; nothing from the API or an extension is
// ever set as HTML.
import { h, render, Fragment } from "./vendor/preact.mjs";
import { useState, useEffect, useRef, useMemo, useCallback } from "./vendor/preact-hooks.mjs";
import htm from "./vendor/htm.mjs";

export const html = htm.bind(h);
export { h, render, Fragment, useState, useEffect, useRef, useMemo, useCallback };

/** What the server accepts as an id (tenants, installations, dashboards), as an HTML
 *  `pattern`. */
export const ID_PATTERN = "[a-z0-9][a-z0-9\\-]{0,62}";

/** An API error (`{code, message}`) as the user sees it. */
export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error-note" role="alert"><code>${error.code || "ERROR"}</code> ${error.message || String(error)}</p>`;
}

/** When an epoch-ms timestamp was, in the user's locale. */
export function when(ms) {
  if (ms == null) return "—";
  return new Date(ms).toLocaleString();
}

/** Loads `load()` when `deps` change; `[value, error, reload]`. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ value: undefined, error: null });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (value) => live && setState({ value, error: null }),
      (error) => live && setState({ value: undefined, error }),
    );
    return () => { live = false; };
  }, [...deps, round]);
  return [state.value, state.error, () => setRound((r) => r + 1)];
}
