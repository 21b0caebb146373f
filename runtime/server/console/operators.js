// The operators' page (every tenant with its quota and live usage, creating and deleting
// tenants, setting quotas, the operator tokens) and a tenant's tokens (`TokensSection`,
// also the tenant-admin's own tokens page). Everything that comes from the API (names,
// labels, ids, messages) is rendered as text, never as HTML.
import { html, useState, useEffect, useRef, useMemo, ErrorNote, when, useLoad, ID_PATTERN } from "./ui.js";
import { api, tenantPath } from "./api.js";

const ROLE_NAMES = {
  operator: "Operator",
  "tenant-admin": "Administrator",
  viewer: "Viewer",
  publisher: "Publisher",
};

/** The roles a tenant's token may have (`POST /tenants/{t}/tokens`). */
const TENANT_ROLES = [
  { value: "viewer", hint: "Watches the tenant's dashboards; changes nothing." },
  { value: "tenant-admin", hint: "Uploads and installs extensions, edits dashboards, manages tokens." },
  { value: "publisher", hint: "Posts events only: the token the tenant's own application holds. It cannot sign in here." },
];

/** Token lifetimes offered, in seconds (`expires_in_s`); "" for none. */
const EXPIRIES = [
  { value: "", label: "Never (until revoked)" },
  { value: "3600", label: "1 hour" },
  { value: "86400", label: "1 day" },
  { value: "604800", label: "7 days" },
  { value: "2592000", label: "30 days" },
  { value: "7776000", label: "90 days" },
  { value: "31536000", label: "1 year" },
];

const ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const TENANTS_PER_PAGE = 20;
/** How often the tenants shown reload their live usage (while the tab is visible). */
const USAGE_EVERY_MS = 5000;

const counts = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

function count(n) {
  return typeof n === "number" && Number.isFinite(n) ? counts.format(n) : "—";
}

/** `n` and the noun, singular for one: `plural(2, "token")` is "2 tokens". */
function plural(n, noun) {
  return `${count(n)} ${n === 1 ? noun : noun + "s"}`;
}

/** Large numbers (fuel) short, with the full number in a tooltip. */
function Big({ n }) {
  if (typeof n !== "number" || !Number.isFinite(n)) return html`<span>—</span>`;
  return html`<span title=${counts.format(n)}>${compact.format(n)}</span>`;
}

function Time({ ms, empty = "—" }) {
  if (ms == null) return html`<span class="op-muted">${empty}</span>`;
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return html`<span>—</span>`;
  return html`<time datetime=${date.toISOString()}>${when(ms)}</time>`;
}

function roleName(role) {
  return ROLE_NAMES[role] || String(role ?? "—");
}

/** `ref`'s element is focused when `on` becomes true. */
function useFocusWhen(on, ref) {
  useEffect(() => {
    if (on && ref.current) ref.current.focus();
  }, [on]);
}

/** The API's field errors (`[{path, message}]`) under a form's error note. */
function FieldErrors({ error }) {
  const fields = error?.fields || [];
  if (!fields.length) return null;
  return html`<ul class="op-field-errors">
    ${fields.map((f) => html`<li><code>${f.path || "/"}</code> ${f.message}</li>`)}
  </ul>`;
}

function Status({ text }) {
  return html`<p class="op-status" role="status" aria-live="polite">${text || ""}</p>`;
}

// ---- the operators' page ----------------------------------------------------------

/** Tenants and operator tokens. Only operators reach it (app.js). */
export function OperatorsPage({ session, navigate }) {
  const go = navigate || ((hash) => (location.hash = hash));
  return html`
    <main id="main" class="page op">
      <h1>Operators</h1>
      <${TenantsSection} session=${session} navigate=${go} />
      <${OperatorTokensSection} session=${session} />
    </main>`;
}

function TenantsSection({ navigate }) {
  const [list, error, reload] = useLoad(() => api("GET", "/tenants"), []);
  const [filter, setFilter] = useState("");
  const [page, setPage] = useState(0);
  const [notice, setNotice] = useState("");
  const tenants = useMemo(() => {
    const all = (list?.tenants || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
    const f = filter.trim().toLowerCase();
    if (!f) return all;
    return all.filter((t) => String(t.id).includes(f) || String(t.name ?? "").toLowerCase().includes(f));
  }, [list, filter]);
  const pages = Math.max(1, Math.ceil(tenants.length / TENANTS_PER_PAGE));
  const current = Math.min(page, pages - 1);
  const shown = tenants.slice(current * TENANTS_PER_PAGE, (current + 1) * TENANTS_PER_PAGE);
  const changed = (message) => {
    setNotice(message);
    reload();
  };

  return html`
    <section class="op-section" aria-labelledby="op-tenants-title">
      <div class="op-head">
        <h2 id="op-tenants-title">Tenants</h2>
        <button type="button" class="button subtle" onClick=${reload}>Refresh</button>
      </div>
      <${CreateTenantForm} onCreated=${(t) => changed(`Tenant ${t.id} created.`)} navigate=${navigate} />
      <${Status} text=${notice} />
      <${ErrorNote} error=${error} />
      ${list &&
      html`
        <div class="op-toolbar">
          <label for="op-tenant-filter">Filter</label>
          <input id="op-tenant-filter" type="search" class="op-input" placeholder="id or name" autocomplete="off"
            spellcheck=${false} value=${filter} onInput=${(e) => { setFilter(e.currentTarget.value); setPage(0); }} />
          <span class="op-muted">${plural(tenants.length, "tenant")}</span>
        </div>
        <div class="op-table-wrap" role="region" aria-labelledby="op-tenants-caption" tabindex="0">
          <table class="op-table">
            <caption id="op-tenants-caption" class="visually-hidden">
              Tenants, their quota and live usage on this node (page ${current + 1} of ${pages})
            </caption>
            <thead>
              <tr>
                <th scope="col">Tenant</th>
                <th scope="col">Created</th>
                <th scope="col">Quota</th>
                <th scope="col">Running calls</th>
                <th scope="col">Fuel this minute</th>
                <th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              ${shown.length === 0 &&
              html`<tr><td colspan="6" class="op-empty">${filter ? "No tenant matches the filter." : "No tenants yet."}</td></tr>`}
              ${shown.map((t) => html`<${TenantRow} key=${t.id} tenant=${t} navigate=${navigate} onChanged=${changed} />`)}
            </tbody>
          </table>
        </div>
        ${pages > 1 &&
        html`<nav class="op-pager" aria-label="Tenant pages">
          <button type="button" class="button subtle" disabled=${current === 0} onClick=${() => setPage(current - 1)}>Previous</button>
          <span>Page ${current + 1} of ${pages}</span>
          <button type="button" class="button subtle" disabled=${current >= pages - 1} onClick=${() => setPage(current + 1)}>Next</button>
        </nav>`}
      `}
      ${!list && !error && html`<p class="op-muted">Loading tenants…</p>`}
    </section>`;
}

function CreateTenantForm({ onCreated, navigate }) {
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [created, setCreated] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const wanted = id.trim();
    if (!ID_RE.test(wanted)) {
      setError({ code: "INVALID_REQUEST", message: "the id is 1 to 63 of a-z, 0-9 and -, not starting with -" });
      return;
    }
    setBusy(true);
    setError(null);
    setCreated(null);
    try {
      const body = { id: wanted };
      if (name.trim()) body.name = name.trim();
      const tenant = await api("POST", "/tenants", body);
      setId("");
      setName("");
      setCreated(tenant);
      onCreated(tenant);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <form class="op-form" onSubmit=${submit} aria-labelledby="op-new-tenant-title">
      <h3 id="op-new-tenant-title">New tenant</h3>
      <div class="op-fields">
        <div class="op-field">
          <label for="op-new-tenant-id">Id</label>
          <input id="op-new-tenant-id" class="op-input" name="id" required maxlength="63" pattern=${ID_PATTERN}
            autocomplete="off" spellcheck=${false} aria-describedby="op-new-tenant-id-hint"
            value=${id} onInput=${(e) => setId(e.currentTarget.value)} />
          <span id="op-new-tenant-id-hint" class="op-hint">a-z, 0-9 and -; it names the tenant in URLs and cannot change.</span>
        </div>
        <div class="op-field">
          <label for="op-new-tenant-name">Name <span class="op-muted">(optional)</span></label>
          <input id="op-new-tenant-name" class="op-input" name="name" maxlength="200" autocomplete="off"
            aria-describedby="op-new-tenant-name-hint" value=${name} onInput=${(e) => setName(e.currentTarget.value)} />
          <span id="op-new-tenant-name-hint" class="op-hint">Shown in the console; the id when empty.</span>
        </div>
        <div class="op-field op-field-submit">
          <button type="submit" class="button" disabled=${busy}>${busy ? "Creating…" : "Create tenant"}</button>
        </div>
      </div>
      <${ErrorNote} error=${error} />
      <${FieldErrors} error=${error} />
      ${created &&
      html`<p class="op-done">
        Created ${created.id}.
        <a href=${`#/t/${encodeURIComponent(created.id)}/dashboards`}
          onClick=${(e) => { e.preventDefault(); navigate(`#/t/${encodeURIComponent(created.id)}/dashboards`); }}>Open it</a>
        or <a href=${`#/t/${encodeURIComponent(created.id)}/tokens`}>make its first token</a>.
      </p>`}
    </form>`;
}

/** A tenant's detail (`GET /tenants/{t}`: effective quota, own_quota, usage), reloaded
 *  every few seconds while the tab is visible. */
function useTenantDetail(tenant) {
  const [detail, error, reload] = useLoad(() => api("GET", tenantPath(tenant, "")), [tenant]);
  useEffect(() => {
    const timer = setInterval(() => {
      if (!document.hidden) reload();
    }, USAGE_EVERY_MS);
    return () => clearInterval(timer);
  }, [tenant]);
  return [detail, error, reload];
}

function TenantRow({ tenant, navigate, onChanged }) {
  const id = tenant.id;
  const [detail, error, reload] = useTenantDetail(id);
  const [panel, setPanel] = useState(null); // "quota" | "delete" | null
  const quotaButton = useRef(null);
  const deleteButton = useRef(null);
  const close = () => {
    const back = panel === "quota" ? quotaButton : deleteButton;
    setPanel(null);
    // After the panel is gone, focus goes back to the button that opened it.
    setTimeout(() => back.current && back.current.focus(), 0);
  };
  const quota = detail?.quota;
  const usage = detail?.usage;
  const dashboards = `#/t/${encodeURIComponent(id)}/dashboards`;
  const rowId = `op-tenant-${id}`;
  return html`
    <tr id=${rowId}>
      <th scope="row" class="op-tenant">
        <span class="op-tenant-name">${tenant.name || id}</span>
        <code class="op-id">${id}</code>
      </th>
      <td class="op-nowrap"><${Time} ms=${tenant.created_ms} /></td>
      <td>
        ${quota
          ? html`<span class="op-nowrap">${count(quota.concurrent_calls)} calls</span>
              <span class="op-nowrap">${quota.fuel_metering === false
                ? "fuel not counted"
                : quota.fuel_per_minute == null
                  ? "no fuel budget"
                  : html`<${Big} n=${quota.fuel_per_minute} /> fuel/min`}</span>
              <span class=${"badge " + (detail.own_quota ? "ok" : "muted")}>${detail.own_quota ? "own" : "default"}</span>`
          : error
            ? html`<span class="op-error-text" title=${error.message || ""}>${error.code || "error"}</span>`
            : html`<span class="op-muted">…</span>`}
      </td>
      <td class="op-num">
        ${usage && quota
          ? html`<span class="op-usage">
              <meter min="0" max=${Math.max(1, quota.concurrent_calls)} value=${usage.running_calls}
                low=${quota.concurrent_calls * 0.7} high=${quota.concurrent_calls * 0.9}
                optimum="0" aria-hidden="true"></meter>
              <span>${count(usage.running_calls)} of ${count(quota.concurrent_calls)}</span>
            </span>`
          : "—"}
      </td>
      <td class="op-num">
        ${usage
          ? quota?.fuel_per_minute != null
            ? html`<span class="op-usage">
                <meter min="0" max=${Math.max(1, quota.fuel_per_minute)} value=${usage.fuel_used_this_minute}
                  low=${quota.fuel_per_minute * 0.7} high=${quota.fuel_per_minute * 0.9}
                  optimum="0" aria-hidden="true"></meter>
                <span><${Big} n=${usage.fuel_used_this_minute} /> of <${Big} n=${quota.fuel_per_minute} /></span>
              </span>`
            : html`<${Big} n=${usage.fuel_used_this_minute} />`
          : "—"}
      </td>
      <td class="op-actions">
        <a class="button subtle" href=${dashboards} aria-label=${`Open ${id}`}
          onClick=${(e) => { e.preventDefault(); navigate(dashboards); }}>Open</a>
        <a class="button subtle" href=${`#/t/${encodeURIComponent(id)}/tokens`} aria-label=${`Tokens of ${id}`}>Tokens</a>
        <button type="button" class="button subtle" ref=${quotaButton} aria-expanded=${panel === "quota" ? "true" : "false"}
          aria-controls=${panel === "quota" ? rowId + "-panel" : undefined} aria-label=${`Set the quota of ${id}`}
          onClick=${() => setPanel(panel === "quota" ? null : "quota")}>Quota…</button>
        <button type="button" class="button danger" ref=${deleteButton} aria-expanded=${panel === "delete" ? "true" : "false"}
          aria-controls=${panel === "delete" ? rowId + "-panel" : undefined} aria-label=${`Delete ${id}`}
          onClick=${() => setPanel(panel === "delete" ? null : "delete")}>Delete…</button>
      </td>
    </tr>
    ${panel &&
    html`<tr class="op-panel-row">
      <td colspan="6" id=${rowId + "-panel"}>
        ${panel === "quota"
          ? html`<${QuotaEditor} tenant=${id} detail=${detail} onCancel=${close}
              onSaved=${(message) => { close(); reload(); onChanged(message); }} />`
          : html`<${DeleteTenant} tenant=${id} onCancel=${close}
              onDeleted=${(message) => { setPanel(null); onChanged(message); }} />`}
      </td>
    </tr>`}`;
}

function QuotaEditor({ tenant, detail, onSaved, onCancel }) {
  const quota = detail?.quota;
  const [calls, setCalls] = useState(String(quota?.concurrent_calls ?? 16));
  const [fuel, setFuel] = useState(quota?.fuel_per_minute == null ? "" : String(quota.fuel_per_minute));
  const [unlimited, setUnlimited] = useState(quota != null && quota.fuel_per_minute == null);
  const [metered, setMetered] = useState(quota?.fuel_metering !== false);
  const [installations, setInstallations] = useState(String(quota?.installations ?? 1000));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const first = useRef(null);
  useFocusWhen(true, first);
  const base = `op-quota-${tenant}`;
  const put = async (body, message) => {
    setBusy(true);
    setError(null);
    try {
      await api("PUT", tenantPath(tenant, "/quota"), body);
      onSaved(message);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const submit = (e) => {
    e.preventDefault();
    const n = Number(calls);
    if (!Number.isSafeInteger(n) || n < 1 || n > 1_000_000) {
      setError({ code: "INVALID_VALUE", message: "concurrent calls must be a whole number from 1 to 1,000,000" });
      return;
    }
    const m = Number(installations);
    if (!Number.isSafeInteger(m) || m < 1 || m > 1_000_000) {
      setError({ code: "INVALID_VALUE", message: "installations must be a whole number from 1 to 1,000,000" });
      return;
    }
    let f = null;
    if (metered && !unlimited) {
      f = Number(fuel);
      if (fuel.trim() === "" || !Number.isSafeInteger(f) || f < 1) {
        setError({ code: "INVALID_VALUE", message: "fuel per minute must be a whole number of at least 1, or tick “No fuel budget”" });
        return;
      }
    }
    put({ concurrent_calls: n, fuel_per_minute: f, fuel_metering: metered, installations: m },
      `The quota of ${tenant} is set.`);
  };
  return html`
    <form class="op-form op-inline-panel" onSubmit=${submit} onKeyDown=${(e) => e.key === "Escape" && onCancel()}>
      <fieldset>
        <legend>Quota of ${tenant}</legend>
        <p class="op-hint">
          ${detail?.own_quota ? "This tenant has its own quota. " : "This tenant has the server's default quota. "}
          Calls over the limit and fuel over the budget are refused with <code>QUOTA_EXCEEDED</code>; an
          installation past the tenant's number with <code>CONFLICT</code>.
        </p>
        <div class="op-fields">
          <div class="op-field">
            <label for=${base + "-calls"}>Concurrent calls</label>
            <input id=${base + "-calls"} ref=${first} class="op-input" type="number" inputmode="numeric" required
              min="1" max="1000000" step="1" value=${calls} onInput=${(e) => setCalls(e.currentTarget.value)} />
          </div>
          <div class="op-field">
            <label for=${base + "-installations"}>Installations</label>
            <input id=${base + "-installations"} class="op-input" type="number" inputmode="numeric" required
              min="1" max="1000000" step="1" value=${installations}
              onInput=${(e) => setInstallations(e.currentTarget.value)} />
          </div>
          <div class="op-field">
            <label for=${base + "-fuel"}>Fuel per minute</label>
            <input id=${base + "-fuel"} class="op-input" type="number" inputmode="numeric" min="1" step="1"
              disabled=${unlimited || !metered} required=${metered && !unlimited} value=${fuel}
              aria-describedby=${base + "-fuel-hint"}
              onInput=${(e) => setFuel(e.currentTarget.value)} />
            <span id=${base + "-fuel-hint"} class="op-hint">About 1,000,000,000 per second of one busy core.</span>
          </div>
          <div class="op-field op-check">
            <input id=${base + "-unlimited"} type="checkbox" checked=${unlimited || !metered} disabled=${!metered}
              onChange=${(e) => setUnlimited(e.currentTarget.checked)} />
            <label for=${base + "-unlimited"}>No fuel budget</label>
          </div>
          <div class="op-field op-check">
            <input id=${base + "-metered"} type="checkbox" checked=${metered} aria-describedby=${base + "-metered-hint"}
              onChange=${(e) => {
                const on = e.currentTarget.checked;
                setMetered(on);
                // Counting fuel again: offer the default budget rather than silently keep none.
                if (on && quota?.fuel_metering === false) {
                  setUnlimited(false);
                  if (fuel.trim() === "") setFuel("60000000000");
                }
              }} />
            <label for=${base + "-metered"}>Count fuel</label>
            <span id=${base + "-metered-hint"} class="op-hint">Off: faster CPU-bound code, no fuel limit or
              budget; the time limit still stops every call.</span>
          </div>
        </div>
        <div class="op-buttons">
          <button type="submit" class="button" disabled=${busy}>Save quota</button>
          <button type="button" class="button subtle" disabled=${busy}
            onClick=${() => put(null, `${tenant} now has the server's default quota.`)}>Use the server's default</button>
          <button type="button" class="button subtle" onClick=${onCancel}>Cancel</button>
        </div>
        <${ErrorNote} error=${error} />
        <${FieldErrors} error=${error} />
      </fieldset>
    </form>`;
}

function DeleteTenant({ tenant, onDeleted, onCancel }) {
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const input = useRef(null);
  useFocusWhen(true, input);
  const base = `op-delete-${tenant}`;
  const submit = async (e) => {
    e.preventDefault();
    if (typed !== tenant) return;
    setBusy(true);
    setError(null);
    try {
      const answer = await api("DELETE", tenantPath(tenant, ""));
      const r = answer?.removed || {};
      onDeleted(
        `Tenant ${tenant} deleted, with ${plural(r.tokens ?? 0, "token")}, ${plural(r.installations ?? 0, "installation")}, ` +
          `${plural(r.components ?? 0, "component")} and ${plural(r.dashboards ?? 0, "dashboard")}.`,
      );
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`
    <form class="op-form op-inline-panel op-danger-zone" onSubmit=${submit} onKeyDown=${(e) => e.key === "Escape" && onCancel()}
      aria-labelledby=${base + "-title"}>
      <h3 id=${base + "-title"}>Delete ${tenant}?</h3>
      <p id=${base + "-what"}>
        This removes the tenant and everything it has: its tokens, installations, components and dashboards, its
        database, cache keys, topics and log lines. It cannot be undone.
      </p>
      <div class="op-fields">
        <div class="op-field">
          <label for=${base + "-confirm"}>Type <code>${tenant}</code> to confirm</label>
          <input id=${base + "-confirm"} ref=${input} class="op-input" autocomplete="off" spellcheck=${false}
            aria-describedby=${base + "-what"} value=${typed} onInput=${(e) => setTyped(e.currentTarget.value)} />
        </div>
      </div>
      <div class="op-buttons">
        <button type="submit" class="button danger" disabled=${busy || typed !== tenant}>
          ${busy ? "Deleting…" : `Delete ${tenant}`}
        </button>
        <button type="button" class="button subtle" onClick=${onCancel}>Cancel</button>
      </div>
      <${ErrorNote} error=${error} />
    </form>`;
}

function OperatorTokensSection({ session }) {
  const [list, error, reload] = useLoad(() => api("GET", "/tokens"), []);
  const [notice, setNotice] = useState("");
  const revoke = async (token) => {
    await api("DELETE", `/tokens/${encodeURIComponent(token.id)}`);
    setNotice(`Token ${token.label || token.id} revoked.`);
    reload();
  };
  return html`
    <section class="op-section" aria-labelledby="op-operator-tokens-title">
      <div class="op-head">
        <h2 id="op-operator-tokens-title">Operator tokens</h2>
        <button type="button" class="button subtle" onClick=${reload}>Refresh</button>
      </div>
      <p class="op-hint">
        Operator tokens are made by <code>plinth serve</code> (kept in <code>data_dir/operator-token</code>); a node
        whose token no longer works makes a new one when it starts.
      </p>
      <${Status} text=${notice} />
      <${ErrorNote} error=${error} />
      ${list &&
      html`<${TokenTable} idPrefix="op-otok" caption="Operator tokens" tokens=${list.tokens || []}
        session=${session} onRevoke=${revoke} />`}
      ${!list && !error && html`<p class="op-muted">Loading tokens…</p>`}
    </section>`;
}

// ---- tokens ----------------------------------------------------------------------

/** Tokens as listed (never their secrets), each with a revoke button and its confirm
 *  step. `onRevoke(token)` returns a promise; its error is shown under the row. */
function TokenTable({ tokens, session, onRevoke, caption, idPrefix }) {
  const sorted = tokens.slice().sort((a, b) => (b.created_ms ?? 0) - (a.created_ms ?? 0));
  return html`
    <div class="op-table-wrap" role="region" aria-labelledby=${idPrefix + "-caption"} tabindex="0">
      <table class="op-table">
        <caption id=${idPrefix + "-caption"} class="visually-hidden">${caption}</caption>
        <thead>
          <tr>
            <th scope="col">Label</th>
            <th scope="col">Id</th>
            <th scope="col">Role</th>
            <th scope="col">Created</th>
            <th scope="col">Expires</th>
            <th scope="col">Last used</th>
            <th scope="col"><span class="visually-hidden">Actions</span></th>
          </tr>
        </thead>
        <tbody>
          ${sorted.length === 0 && html`<tr><td colspan="7" class="op-empty">No tokens.</td></tr>`}
          ${sorted.map((t) => html`<${TokenRow} key=${t.id} token=${t} session=${session} onRevoke=${onRevoke} idPrefix=${idPrefix} />`)}
        </tbody>
      </table>
    </div>`;
}

function TokenRow({ token, session, onRevoke, idPrefix }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const trigger = useRef(null);
  const cancel = useRef(null);
  useFocusWhen(confirming, cancel);
  const mine = token.id === session?.principal?.token_id;
  const expired = token.expires_ms != null && token.expires_ms <= Date.now();
  const panelId = `${idPrefix}-${token.id}-confirm`;
  const close = () => {
    setConfirming(false);
    setTimeout(() => trigger.current && trigger.current.focus(), 0);
  };
  const revoke = async () => {
    setBusy(true);
    setError(null);
    try {
      await onRevoke(token);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const name = token.label || token.id;
  return html`
    <tr>
      <th scope="row" class="op-token-label">
        ${token.label ? token.label : html`<span class="op-muted">(no label)</span>`}
        ${mine && html` <span class="badge ok">this session</span>`}
      </th>
      <td><code class="op-id">${token.id}</code></td>
      <td class="op-nowrap">${roleName(token.role)}</td>
      <td class="op-nowrap"><${Time} ms=${token.created_ms} /></td>
      <td class="op-nowrap">
        <${Time} ms=${token.expires_ms} empty="Never" />
        ${expired && html` <span class="badge critical">expired</span>`}
      </td>
      <td class="op-nowrap"><${Time} ms=${token.last_used_ms} empty="Never" /></td>
      <td class="op-actions">
        <button type="button" class="button danger" ref=${trigger} aria-expanded=${confirming ? "true" : "false"}
          aria-controls=${confirming ? panelId : undefined} aria-label=${`Revoke token ${name}`} disabled=${busy}
          onClick=${() => (confirming ? close() : setConfirming(true))}>Revoke…</button>
      </td>
    </tr>
    ${(confirming || error) &&
    html`<tr class="op-panel-row">
      <td colspan="7" id=${panelId}>
        ${confirming &&
        html`<div class="op-inline-panel op-danger-zone" role="group" aria-labelledby=${panelId + "-text"}
          onKeyDown=${(e) => e.key === "Escape" && close()}>
          <p id=${panelId + "-text"}>
            Revoke ${roleName(token.role).toLowerCase()} token “${name}” (<code>${token.id}</code>)? Whatever uses it stops
            working at once on this node and within 5 seconds on the others.
            ${mine && html` <strong>You are signed in with this token: revoking it signs you out.</strong>`}
          </p>
          <div class="op-buttons">
            <button type="button" class="button danger" disabled=${busy} onClick=${revoke}>
              ${busy ? "Revoking…" : "Revoke token"}
            </button>
            <button type="button" class="button subtle" ref=${cancel} onClick=${close}>Cancel</button>
          </div>
        </div>`}
        <${ErrorNote} error=${error} />
      </td>
    </tr>`}`;
}

/** A tenant's tokens: the list, a form to make one (its secret shown once) and revoking.
 *  Operators see it for any tenant, tenant-admins for their own. */
export function TokensSection({ session, tenant }) {
  const [list, error, reload] = useLoad(() => api("GET", tenantPath(tenant, "/tokens")), [tenant]);
  const [created, setCreated] = useState(null);
  const [notice, setNotice] = useState("");
  // The secret belongs to the tenant it was made for; it goes when the page shows another.
  useEffect(() => {
    setCreated(null);
    setNotice("");
  }, [tenant]);
  const revoke = async (token) => {
    await api("DELETE", tenantPath(tenant, `/tokens/${encodeURIComponent(token.id)}`));
    setNotice(`Token ${token.label || token.id} revoked.`);
    reload();
  };
  return html`
    <div class="op">
      <section class="op-section" aria-labelledby="op-new-token-title">
        <h2 id="op-new-token-title">New token</h2>
        ${created
          ? html`<${NewSecret} created=${created} tenant=${tenant} onDone=${() => setCreated(null)} />`
          : html`<${CreateTokenForm} tenant=${tenant} onCreated=${(answer) => { setCreated(answer); setNotice(""); reload(); }} />`}
      </section>
      <section class="op-section" aria-labelledby="op-tokens-title">
        <div class="op-head">
          <h2 id="op-tokens-title">Tokens</h2>
          <button type="button" class="button subtle" onClick=${reload}>Refresh</button>
        </div>
        <${Status} text=${notice} />
        <${ErrorNote} error=${error} />
        ${list &&
        html`<${TokenTable} idPrefix="op-ttok" caption=${`Tokens of ${tenant}`} tokens=${list.tokens || []}
          session=${session} onRevoke=${revoke} />`}
        ${!list && !error && html`<p class="op-muted">Loading tokens…</p>`}
      </section>
    </div>`;
}

function CreateTokenForm({ tenant, onCreated }) {
  const [role, setRole] = useState("viewer");
  const [label, setLabel] = useState("");
  const [expires, setExpires] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { role, label: label.trim() };
      if (expires) body.expires_in_s = Number(expires);
      const answer = await api("POST", tenantPath(tenant, "/tokens"), body);
      setLabel("");
      onCreated(answer);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const hint = TENANT_ROLES.find((r) => r.value === role)?.hint || "";
  return html`
    <form class="op-form" onSubmit=${submit}>
      <div class="op-fields">
        <div class="op-field">
          <label for="op-token-role">Role</label>
          <select id="op-token-role" class="op-input" value=${role} aria-describedby="op-token-role-hint"
            onChange=${(e) => setRole(e.currentTarget.value)}>
            ${TENANT_ROLES.map((r) => html`<option value=${r.value} selected=${r.value === role}>${roleName(r.value)}</option>`)}
          </select>
          <span id="op-token-role-hint" class="op-hint">${hint}</span>
        </div>
        <div class="op-field">
          <label for="op-token-label">Label</label>
          <input id="op-token-label" class="op-input" maxlength="200" autocomplete="off" placeholder="e.g. Wall display"
            aria-describedby="op-token-label-hint" value=${label} onInput=${(e) => setLabel(e.currentTarget.value)} />
          <span id="op-token-label-hint" class="op-hint">Who or what holds it; shown in this list.</span>
        </div>
        <div class="op-field">
          <label for="op-token-expires">Expires after</label>
          <select id="op-token-expires" class="op-input" value=${expires} onChange=${(e) => setExpires(e.currentTarget.value)}>
            ${EXPIRIES.map((x) => html`<option value=${x.value} selected=${x.value === expires}>${x.label}</option>`)}
          </select>
        </div>
        <div class="op-field op-field-submit">
          <button type="submit" class="button" disabled=${busy}>${busy ? "Creating…" : "Create token"}</button>
        </div>
      </div>
      <${ErrorNote} error=${error} />
      <${FieldErrors} error=${error} />
    </form>`;
}

/** The secret of a token just made, shown this once. */
function NewSecret({ created, tenant, onDone }) {
  const field = useRef(null);
  const [copyState, setCopyState] = useState("");
  useFocusWhen(true, field);
  const copy = async () => {
    try {
      if (!navigator.clipboard?.writeText) throw new Error("no clipboard");
      await navigator.clipboard.writeText(created.token);
      setCopyState("Copied to the clipboard.");
    } catch {
      if (field.current) {
        field.current.focus();
        field.current.select();
      }
      setCopyState("The browser did not allow copying: the secret is selected, press Ctrl+C (⌘C on a Mac).");
    }
  };
  const name = created.label || created.id;
  return html`
    <div class="op-secret" role="group" aria-labelledby="op-secret-title">
      <h3 id="op-secret-title">Token “${name}” created</h3>
      <p>
        ${roleName(created.role)} of ${tenant}${created.expires_ms != null ? html`, expires <${Time} ms=${created.expires_ms} />` : ", does not expire"}.
        Clients send it in the header <code>Authorization: Bearer</code> followed by the secret.
      </p>
      <label for="op-secret-value">Secret</label>
      <div class="op-secret-row">
        <input id="op-secret-value" ref=${field} class="op-input op-secret-input" type="text" readonly
          autocomplete="off" spellcheck=${false} aria-describedby="op-secret-warning" value=${created.token}
          onFocus=${(e) => e.currentTarget.select()} />
        <button type="button" class="button" onClick=${copy}>Copy</button>
      </div>
      <p id="op-secret-warning" class="op-warning">
        Copy it now: it is not shown again, and the server keeps only its hash. Anyone holding it acts as this token
        until it is revoked${created.expires_ms != null ? " or expires" : ""}.
      </p>
      <${Status} text=${copyState} />
      <button type="button" class="button subtle" onClick=${onDone}>Done</button>
    </div>`;
}
