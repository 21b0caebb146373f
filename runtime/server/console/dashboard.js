// Dashboards: several per tenant, tiles laid out by their stored x/y/w/h on a
// 12-column grid (gridstack), moved and resized in edit mode and saved; each tile
// renders its installation and takes the views pushed after every tick.
import { html, useState, useEffect, useRef, ErrorNote, useLoad, ID_PATTERN } from "./ui.js";
import { api, tenantPath } from "./api.js";
import { Views } from "./views.js";

const CELL_HEIGHT = 64;

export function DashboardsPage({ session, tenant, path, navigate, live }) {
  const t = (p) => tenantPath(tenant, p);
  const canManage = session.principal.role !== "viewer";
  const [data, error, reload] = useLoad(async () => {
    const [{ dashboards }, { installations }, { components }] = await Promise.all([
      api("GET", t("/dashboards")),
      api("GET", t("/installations")),
      api("GET", t("/components")),
    ]);
    return { dashboards, installations, components };
  }, [tenant]);
  if (error) return html`<main id="main" class="page"><${ErrorNote} error=${error} /></main>`;
  if (!data) return html`<main id="main" class="page"><p class="muted">Loading dashboards…</p></main>`;

  const { dashboards, installations, components } = data;
  const name = path[0] ?? dashboards[0]?.name;
  const dashboard = dashboards.find((d) => d.name === name);
  const described = describe(installations, components);
  return html`
    <main id="main" class="page page-dashboards">
      <nav class="dashboard-list" aria-label="Dashboards">
        <h1 class="visually-hidden">Dashboards</h1>
        ${dashboards.map(
          (d) => html`<a href=${`#/t/${tenant}/dashboards/${d.name}`} class="tab"
            aria-current=${d.name === name ? "page" : undefined}>${d.name}</a>`,
        )}
        ${canManage && html`<${NewDashboard} tenant=${tenant} installations=${installations}
          onMade=${(made) => { reload(); navigate(`#/t/${tenant}/dashboards/${made}`); }} />`}
      </nav>
      ${dashboard
        ? html`<${Dashboard} key=${tenant + "/" + dashboard.name + "/" + dashboard.updated_ms}
            tenant=${tenant} session=${session} dashboard=${dashboard} described=${described}
            installations=${installations} live=${live} onSaved=${reload}
            onDeleted=${() => { reload(); navigate(`#/t/${tenant}/dashboards`); }} />`
        : html`<${NoDashboard} tenant=${tenant} name=${name} canManage=${canManage} />`}
    </main>`;
}

/** Installation id → {installation, descriptor} (descriptor of its component). */
function describe(installations, components) {
  const byHash = new Map(components.map((c) => [c.hash, c]));
  return new Map(installations.map((i) => [i.id, { installation: i, descriptor: byHash.get(i.component)?.descriptor }]));
}

function NoDashboard({ tenant, name, canManage }) {
  return html`<section class="empty">
    <h2>${name ? `No dashboard named “${name}”` : "No dashboards yet"}</h2>
    <p>${canManage
      ? html`Make one with “New dashboard”, or install a widget on the <a href=${`#/t/${tenant}/extensions`}>Extensions</a> page first.`
      : "An administrator of this tenant has not made one yet."}</p>
  </section>`;
}

function NewDashboard({ tenant, installations, onMade }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [error, setError] = useState(null);
  if (!open) return html`<button type="button" class="button subtle" onClick=${() => setOpen(true)}>New dashboard</button>`;
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    // Every widget of the tenant, two per row, to start from.
    const tiles = installations.map((i, n) => ({ installation: i.id, x: (n % 2) * 6, y: Math.floor(n / 2) * 5, w: 6, h: 5 }));
    try {
      await api("PUT", tenantPath(tenant, `/dashboards/${encodeURIComponent(name)}`), { tiles });
      setOpen(false);
      onMade(name);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="inline-form" onSubmit=${submit}>
    <label for="new-dashboard">Name</label>
    <input id="new-dashboard" required pattern=${ID_PATTERN} maxlength="63" value=${name}
      onInput=${(e) => setName(e.currentTarget.value)} />
    <button class="button" type="submit">Create</button>
    <button class="button subtle" type="button" onClick=${() => setOpen(false)}>Cancel</button>
    <${ErrorNote} error=${error} />
  </form>`;
}

function Dashboard({ tenant, session, dashboard, described, installations, live, onSaved, onDeleted }) {
  const canManage = session.principal.role !== "viewer";
  const operator = session.principal.role === "operator";
  const gridElement = useRef(null);
  const grid = useRef(null);
  const [editing, setEditing] = useState(false);
  const [tiles, setTiles] = useState(dashboard.tiles);
  // Bumped to lay the grid out again from `tiles` (a cancelled edit).
  const [round, setRound] = useState(0);
  const editingNow = useRef(false);
  const [error, setError] = useState(null);
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    // gridstack is a classic script (its ES modules do not load unbundled).
    grid.current = window.GridStack.init(
      {
        column: 12,
        cellHeight: CELL_HEIGHT,
        margin: 6,
        float: false,
        // Still editing after a tile was added or removed: the new grid stays movable.
        staticGrid: !editingNow.current,
        animate: false,
        // One column on a phone: tiles stack in their order.
        columnOpts: { breakpoints: [{ w: 760, c: 1 }] },
        handle: ".tile-header",
      },
      gridElement.current,
    );
    return () => grid.current?.destroy(false);
  }, [tiles, round]);

  // Another console saved this dashboard: show the new layout unless editing.
  useEffect(
    () => live.subscribe(`dashboard/${dashboard.name}`, operator ? tenant : null, () => !editing && onSaved()),
    [dashboard.name, editing],
  );

  const edit = (on) => {
    editingNow.current = on;
    setEditing(on);
    grid.current?.setStatic(!on);
  };
  const save = async () => {
    setSaving(true);
    setError(null);
    const laid = laidOut();
    try {
      await api("PUT", tenantPath(tenant, `/dashboards/${encodeURIComponent(dashboard.name)}`), { tiles: laid });
      edit(false);
      onSaved();
    } catch (err) {
      setError(err);
    } finally {
      setSaving(false);
    }
  };
  const remove = async () => {
    if (!confirm(`Delete the dashboard “${dashboard.name}”? Its widgets stay installed.`)) return;
    try {
      await api("DELETE", tenantPath(tenant, `/dashboards/${encodeURIComponent(dashboard.name)}`));
      onDeleted();
    } catch (err) {
      setError(err);
    }
  };
  const missing = installations.filter((i) => !tiles.some((t) => t.installation === i.id));
  // The layout as the grid has it now (gridstack leaves out sizes of 1 and places of 0).
  const laidOut = () =>
    grid.current.save(false).map((item) => ({ installation: item.id, x: item.x ?? 0, y: item.y ?? 0, w: item.w ?? 1, h: item.h ?? 1 }));
  const add = (id) => setTiles([...laidOut(), { installation: id, x: 0, y: 1000, w: 6, h: 5 }]);
  const drop = (id) => setTiles(laidOut().filter((t) => t.installation !== id));
  // Keyboard users place a tile with numbers instead of dragging it.
  const itemOf = (id) => [...gridElement.current.children].find((el) => el.gridstackNode?.id === id);
  const placeOf = (id) => {
    const node = itemOf(id)?.gridstackNode ?? {};
    return { x: node.x ?? 0, y: node.y ?? 0, w: node.w ?? 1, h: node.h ?? 1 };
  };
  const setPlace = (id, place) => {
    const item = itemOf(id);
    if (item) grid.current.update(item, place);
    return placeOf(id);
  };
  const cancel = () => {
    edit(false);
    setTiles(dashboard.tiles);
    setRound((r) => r + 1);
  };

  return html`
    <section class="dashboard" aria-labelledby="dashboard-title">
      <div class="dashboard-bar">
        <h2 id="dashboard-title">${dashboard.name}</h2>
        ${canManage && !editing && html`<button type="button" class="button subtle" onClick=${() => edit(true)}>Edit layout</button>`}
        ${editing && html`
          <span class="muted">Drag a tile by its title bar; resize from its corner.</span>
          ${missing.length > 0 && html`<label class="add-tile">Add widget
            <select onChange=${(e) => { if (e.currentTarget.value) add(e.currentTarget.value); e.currentTarget.value = ""; }}>
              <option value="">—</option>
              ${missing.map((i) => html`<option value=${i.id}>${i.id}</option>`)}
            </select></label>`}
          <button type="button" class="button" disabled=${saving} onClick=${save}>${saving ? "Saving…" : "Save layout"}</button>
          <button type="button" class="button subtle" onClick=${cancel}>Cancel</button>
          <button type="button" class="button danger" onClick=${remove}>Delete dashboard</button>`}
      </div>
      <${ErrorNote} error=${error} />
      <div class="grid-stack" ref=${gridElement} key=${round + ":" + tiles.map((t) => t.installation).join(",")}>
        ${tiles.map(
          (tile) => html`<div class="grid-stack-item" key=${tile.installation} gs-id=${tile.installation}
              gs-x=${tile.x} gs-y=${tile.y} gs-w=${Math.max(1, tile.w)} gs-h=${Math.max(1, tile.h)}>
            <div class="grid-stack-item-content">
              <${Tile} tenant=${tenant} id=${tile.installation} info=${described.get(tile.installation)}
                session=${session} live=${live} editing=${editing} onRemove=${() => drop(tile.installation)}
                place=${() => placeOf(tile.installation)} onPlace=${(p) => setPlace(tile.installation, p)} />
            </div>
          </div>`,
        )}
      </div>
    </section>`;
}

/** One widget: fetched once, then kept current by the views pushed after each tick. */
export function Tile({ tenant, id, info, session, live, editing, onRemove, place, onPlace }) {
  const [placing, setPlacing] = useState(false);
  const operator = session.principal.role === "operator";
  const canManage = session.principal.role !== "viewer";
  const [state, setState] = useState({ loading: true });
  const [parked, setParked] = useState(info?.installation?.parked ?? null);
  const [liveState, setLiveState] = useState(live.state);
  const [now, setNow] = useState(Date.now());
  const [exportError, setExportError] = useState(null);
  const descriptor = info?.descriptor;
  const title = descriptor?.name || id;
  const interval = info?.installation?.tick_interval_ms;

  const load = async () => {
    setState((s) => ({ ...s, loading: true }));
    try {
      const { views, receipt } = await api("GET", tenantPath(tenant, `/installations/${encodeURIComponent(id)}/data`));
      setState({ views, receipt, updated: Date.now() });
      setParked(null);
    } catch (error) {
      setState((s) => ({ ...s, loading: false, error }));
      if (error.code === "INSTALLATION_PARKED") setParked(error.message);
    }
  };
  useEffect(() => {
    if (!info) {
      setState({ error: { code: "NOT_FOUND", message: `no installation ${id}` } });
      return undefined;
    }
    load();
    const offViews = live.subscribe(`widget/${id}`, operator ? tenant : null, (payload) => {
      if (payload?.type === "views") {
        setState({ views: payload.views, updated: Date.now(), pushed: true });
        setParked(null);
      }
    });
    const offParked = live.subscribe(`installation/${id}`, operator ? tenant : null, (payload) => {
      if (payload?.type === "parked") setParked(payload.reason || "parked");
    });
    const offResync = live.onResync(() => load());
    const offState = live.watchState(setLiveState);
    const clock = setInterval(() => setNow(Date.now()), 5000);
    return () => { offViews(); offParked(); offResync(); offState(); clearInterval(clock); };
  }, [tenant, id]);

  // Stale: no update within three tick intervals, or the socket is down.
  const stale = state.views && ((interval && now - state.updated > 3 * interval + 2000) || liveState !== "live");
  const exportAs = async (format, event) => {
    event.currentTarget.closest("details").open = false;
    setExportError(null);
    try {
      if (canManage && descriptor?.actions?.some((a) => a.name === "export")) {
        const { response } = await api("POST", tenantPath(tenant, `/installations/${encodeURIComponent(id)}/actions/export`), { format });
        const bytes = response.body_base64 != null ? Uint8Array.from(atob(response.body_base64), (c) => c.charCodeAt(0)) : response.body ?? "";
        download(response.filename || `${id}.${format}`, response.content_type || "application/octet-stream", bytes);
      } else {
        const views = state.views || [];
        if (format === "json") download(`${id}.json`, "application/json", JSON.stringify(views, null, 2));
        else download(`${id}.csv`, "text/csv", viewsAsCsv(views));
      }
    } catch (error) {
      setExportError(error);
    }
  };

  return html`
    <article class=${"tile" + (stale ? " is-stale" : "") + (state.error ? " has-error" : "")} aria-labelledby=${"tile-" + id}
      data-updated=${state.updated} data-pushed=${state.pushed ? "true" : undefined}>
      <header class="tile-header">
        <h3 id=${"tile-" + id} class="tile-title" title=${title}>${title}</h3>
        ${parked != null && html`<span class="badge critical" title=${parked}>Parked</span>`}
        ${stale && html`<span class="badge warning" title="No update received recently">Stale</span>`}
        ${state.loading && html`<span class="badge muted">Loading…</span>`}
        <span class="tile-actions">
          ${editing
            ? html`
              <button type="button" class="icon-button" aria-label=${"Place " + title} aria-expanded=${placing ? "true" : "false"}
                title="Place with the keyboard" onClick=${() => setPlacing(!placing)}>⌖</button>
              <button type="button" class="icon-button" aria-label=${"Remove " + title + " from this dashboard"} onClick=${onRemove}>✕</button>`
            : html`
              <button type="button" class="icon-button" aria-label=${"Refresh " + title} title="Refresh" onClick=${load}>↻</button>
              <details class="menu" onKeyDown=${closeOnEscape}>
                <summary class="icon-button" aria-label=${"Export " + title} title="Export">⤓</summary>
                <div class="menu-items">
                  <button type="button" onClick=${(e) => exportAs("json", e)}>Export JSON</button>
                  <button type="button" onClick=${(e) => exportAs("csv", e)}>Export CSV</button>
                </div>
              </details>`}
        </span>
      </header>
      <div class="tile-body" tabindex="0" role="group" aria-labelledby=${"tile-" + id}>
        ${editing && placing && html`<${PlaceForm} id=${id} title=${title} place=${place} onPlace=${onPlace} onDone=${() => setPlacing(false)} />`}
        ${parked != null && html`<p class="tile-note critical" role="alert">Parked by the circuit breaker: ${parked}.
          ${canManage && html` <a href=${`#/t/${tenant}/extensions/i/${id}`}>Open the installation</a> to enable it again.`}</p>`}
        ${state.error && html`<div class="tile-error" role="alert">
          <p><code>${state.error.code}</code> ${state.error.message}</p>
          <button type="button" class="button subtle" onClick=${load}>Retry</button></div>`}
        <${ErrorNote} error=${exportError} />
        ${state.views && html`<${Views} views=${state.views} />`}
        ${!state.views && !state.error && html`<div class="skeleton" aria-hidden="true"></div>`}
      </div>
      <footer class="tile-footer muted">
        ${state.updated ? html`<span>Updated ${new Date(state.updated).toLocaleTimeString()}</span>` : html`<span>—</span>`}
        ${state.receipt && html`<span title="What the last render used">${state.receipt.wall_time_us != null ? `${(state.receipt.wall_time_us / 1000).toFixed(1)} ms` : ""}</span>`}
      </footer>
    </article>`;
}

/** A tile's column, row, width and height as numbers: the keyboard's way to move and
 *  resize it (dragging needs a pointer). */
function PlaceForm({ id, title, place, onPlace, onDone }) {
  const [value, setValue] = useState(place);
  const field = (key, label, min, max) => html`<label class="place-field">${label}
    <input type="number" min=${min} max=${max} value=${value[key]} id=${`place-${id}-${key}`}
      onInput=${(e) => setValue({ ...value, [key]: Number(e.currentTarget.value) })} /></label>`;
  const apply = (e) => {
    e.preventDefault();
    setValue(onPlace(value));
  };
  return html`<form class="tile-place" aria-label=${"Place " + title} onSubmit=${apply}
      onKeyDown=${(e) => e.key === "Escape" && onDone()}>
    ${field("x", "Column", 0, 11)} ${field("y", "Row", 0, 1000)} ${field("w", "Width", 1, 12)} ${field("h", "Height", 1, 60)}
    <button type="submit" class="button">Apply</button>
    <button type="button" class="button subtle" onClick=${onDone}>Close</button>
  </form>`;
}

/** Escape closes a `<details>` menu and gives the focus back to its summary. */
function closeOnEscape(event) {
  if (event.key !== "Escape" || !event.currentTarget.open) return;
  event.currentTarget.open = false;
  event.currentTarget.querySelector("summary")?.focus();
}

function download(name, type, content) {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** The tables of `views` as CSV; a widget without tables exports its numbers. */
export function viewsAsCsv(views) {
  const cell = (v) => {
    let text = v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    // A spreadsheet would run a text cell starting like a formula: it is kept as text.
    if (typeof v === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const tables = views.filter((v) => v.kind === "table");
  if (tables.length) {
    return tables.map((t) => [t.columns.map((c) => cell(c.key)).join(","), ...t.rows.map((r) => r.map(cell).join(","))].join("\n")).join("\n\n") + "\n";
  }
  const lines = ["title,kind,value"];
  for (const v of views) if (typeof v.value === "number") lines.push([v.title, v.kind, v.value].map(cell).join(","));
  return lines.join("\n") + "\n";
}
