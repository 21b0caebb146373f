// Extension management: the tenant's installations and uploaded versions, the upload →
// review → grant and install flow, upgrades with their permission diff, and one
// installation's page (descriptor, config, grants, limits, usage charts, logs, errors,
// deliveries and dead letters).
//
// A viewer gets the same pages without any control that changes something: the
// controls are not rendered at all. Everything shown comes from the API or from an
// extension and is rendered as text.
import { html, useState, useEffect, useRef, useMemo, ErrorNote, when, useLoad, ID_PATTERN } from "./ui.js";
import { api, tenantPath, uploadComponent } from "./api.js";
import { SchemaForm, readConfig, withDefaults } from "./schema-form.js";
import { formatNumber } from "./format.js";
import uPlot from "./vendor/uPlot.esm.js";

/** The grants an installation may be given, in the order the server writes them. */
const GRANTS = [
  { name: "cache", hint: "the tenant's cache" },
  { name: "db", hint: "read the tenant's database" },
  { name: "db:write", hint: "read and change the tenant's database" },
  { name: "broadcast", hint: "publish to WebSocket topics" },
  { name: "log", hint: "write log lines" },
];


/**
 * The extension pages of a tenant. `path` is the route below
 * `#/t/<tenant>/extensions`: `[]` (list), `["upload"]`, `["v", hash]` (an uploaded
 * version), `["i", id]` (an installation), `["i", id, "upgrade"]`.
 */
export function ExtensionsPage({ session, tenant, path = [], navigate }) {
  const role = session?.principal?.role;
  const canManage = role === "operator" || role === "tenant-admin";
  const base = `#/t/${encodeURIComponent(tenant)}/extensions`;
  const props = { tenant, base, canManage, navigate: navigate || ((hash) => (location.hash = hash)) };
  const [first, second, third] = path;
  let page;
  if (path.length === 0) page = html`<${ListPage} ...${props} />`;
  else if (first === "upload" && path.length === 1)
    page = canManage ? html`<${UploadPage} ...${props} />` : html`<${NotAllowed} base=${base} />`;
  else if (first === "v" && second && path.length === 2) page = html`<${VersionPage} ...${props} hash=${second} />`;
  else if (first === "i" && second && path.length === 2)
    page = html`<${InstallationPage} key=${second} ...${props} id=${second} />`;
  else if (first === "i" && second && third === "upgrade" && path.length === 3)
    page = canManage ? html`<${UpgradePage} key=${second} ...${props} id=${second} />` : html`<${NotAllowed} base=${base} />`;
  else page = html`<${NotFound} base=${base} />`;
  return html`<main id="main" class="page mg">${page}</main>`;
}

// ---- shared pieces ---------------------------------------------------------------

const integers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

function formatCount(n) {
  return typeof n === "number" && Number.isFinite(n) ? integers.format(n) : "—";
}

function formatBytes(n) {
  return n == null ? "—" : formatNumber(Number(n), "B");
}

function formatMs(ms) {
  return ms == null ? "—" : formatNumber(Number(ms), "ms");
}

function formatCompact(n) {
  return formatNumber(n, "", { compact: true });
}

function formatTick(ms) {
  if (ms == null || ms === 0) return "no ticks";
  return "every " + formatMs(ms);
}

function shortHash(hash) {
  return String(hash || "").slice(0, 12);
}

function grantList(grants) {
  if (Array.isArray(grants)) return grants;
  return String(grants || "")
    .split(",")
    .map((g) => g.trim())
    .filter((g) => g && g !== "none");
}

function sortGrants(set) {
  const known = GRANTS.map((g) => g.name);
  return [...set].sort((a, b) => known.indexOf(a) - known.indexOf(b));
}

/** Whether `grants` let a component import `capability`. */
function covers(grants, capability) {
  if (capability === "db") return grants.has("db") || grants.has("db:write");
  return grants.has(capability);
}

function statusOf(installation) {
  if (installation.status) return installation.status;
  if (installation.parked) return "parked";
  return installation.enabled ? "enabled" : "disabled";
}

/** The server's `fields` of an `INVALID_CONFIG` (`[{path, message}]`). */
function configFieldErrors(error) {
  if (!error || error.code !== "INVALID_CONFIG") return [];
  if (Array.isArray(error.fields) && error.fields.length > 0) return error.fields;
  return [{ path: "", message: error.message }];
}

function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => {
    if (ref.current) ref.current.focus({ preventScroll: true });
  }, []);
  return html`<h1 class="mg-title" tabindex="-1" ref=${ref}>${children}</h1>`;
}

function Crumbs({ base, items }) {
  return html`<nav class="mg-crumbs" aria-label="Breadcrumb">
    <ol>
      <li><a href=${base}>Extensions</a></li>
      ${items.map(
        (item, i) =>
          html`<li key=${i}>
            ${item.href ? html`<a href=${item.href}>${item.label}</a>` : html`<span aria-current="page">${item.label}</span>`}
          </li>`,
      )}
    </ol>
  </nav>`;
}

function StatusBadge({ status }) {
  const known = ["enabled", "disabled", "parked"].includes(status) ? status : "unknown";
  return html`<span class=${"mg-badge mg-badge--" + known}>${status || "unknown"}</span>`;
}

function Chips({ items, empty = "none" }) {
  if (!items || items.length === 0) return html`<span class="mg-muted">${empty}</span>`;
  return html`<ul class="mg-chips">
    ${items.map((item, i) => html`<li key=${i}><code>${item}</code></li>`)}
  </ul>`;
}

function Loading({ what }) {
  return html`<p class="mg-muted" role="status">Loading ${what}…</p>`;
}

function Notice({ text }) {
  return html`<p class="mg-notice" role="status">${text || ""}</p>`;
}

function NotAllowed({ base }) {
  return html`<${PageTitle}>Not allowed<//>
    <p>Your role may look at extensions but not change them.</p>
    <p><a href=${base}>Back to the extensions</a></p>`;
}

function NotFound({ base }) {
  return html`<${PageTitle}>Page not found<//>
    <p><a href=${base}>Back to the extensions</a></p>`;
}

/** The tenant's installations and component versions. */
function useTenantData(tenant) {
  return useLoad(
    () =>
      Promise.all([
        api("GET", tenantPath(tenant, "/installations")),
        api("GET", tenantPath(tenant, "/components")),
      ]).then(([i, c]) => ({
        installations: (i?.installations || []).slice().sort((a, b) => a.id.localeCompare(b.id)),
        components: (c?.components || []).slice().sort((a, b) => b.uploaded_ms - a.uploaded_ms),
      })),
    [tenant],
  );
}

// ---- list --------------------------------------------------------------------------

function ListPage({ tenant, base, canManage }) {
  const [data, error, reload] = useTenantData(tenant);
  const byHash = useMemo(() => new Map((data?.components || []).map((c) => [c.hash, c])), [data]);
  return html`
    <div class="mg-head">
      <${PageTitle}>Extensions<//>
      <div class="mg-actions">
        <button type="button" class="mg-button" onClick=${reload}>Refresh</button>
        ${canManage && html`<a class="mg-button mg-button--primary" href=${base + "/upload"}>Upload extension</a>`}
      </div>
    </div>
    <${ErrorNote} error=${error} />
    ${!data && !error && html`<${Loading} what="the extensions" />`}
    ${data &&
    html`
      <section class="mg-section">
        <h2 id="mg-installations">Installations</h2>
        ${data.installations.length === 0
          ? html`<p class="mg-muted">
              Nothing is installed yet.${canManage && " Upload an extension to install it."}
            </p>`
          : html`<div class="mg-scroll" tabindex="0" role="region" aria-labelledby="mg-installations">
              <table class="mg-table">
                <thead>
                  <tr>
                    <th scope="col">Installation</th>
                    <th scope="col">Extension</th>
                    <th scope="col">Status</th>
                    <th scope="col">Grants</th>
                    <th scope="col">Ticks</th>
                    <th scope="col">Updated</th>
                  </tr>
                </thead>
                <tbody>
                  ${data.installations.map((inst) => {
                    const version = byHash.get(inst.component);
                    return html`<tr key=${inst.id}>
                      <th scope="row"><a href=${`${base}/i/${encodeURIComponent(inst.id)}`}>${inst.id}</a></th>
                      <td>
                        ${version
                          ? html`${version.descriptor?.name || version.extension}
                              <span class="mg-muted"> ${version.version}</span>`
                          : html`<code title=${inst.component}>${shortHash(inst.component)}</code>`}
                      </td>
                      <td><${StatusBadge} status=${statusOf(inst)} /></td>
                      <td><${Chips} items=${grantList(inst.grants)} /></td>
                      <td>${formatTick(inst.tick_interval_ms)}</td>
                      <td>${when(inst.updated_ms)}</td>
                    </tr>`;
                  })}
                </tbody>
              </table>
            </div>`}
      </section>
      <section class="mg-section">
        <h2 id="mg-versions">Uploaded versions</h2>
        ${data.components.length === 0
          ? html`<p class="mg-muted">No component has been uploaded.</p>`
          : html`<div class="mg-scroll" tabindex="0" role="region" aria-labelledby="mg-versions">
              <table class="mg-table">
                <thead>
                  <tr>
                    <th scope="col">Extension</th>
                    <th scope="col">Version</th>
                    <th scope="col">World</th>
                    <th scope="col">Size</th>
                    <th scope="col">Uploaded</th>
                    <th scope="col">Hash</th>
                    <th scope="col">Installed as</th>
                  </tr>
                </thead>
                <tbody>
                  ${data.components.map((c) => {
                    const users = data.installations.filter((i) => i.component === c.hash);
                    return html`<tr key=${c.hash}>
                      <th scope="row">
                        <a href=${`${base}/v/${c.hash}`}>${c.descriptor?.name || c.extension}</a>
                        <span class="mg-muted mg-block">${c.extension}</span>
                      </th>
                      <td>${c.version}</td>
                      <td>${c.world}</td>
                      <td>${formatBytes(c.size)}</td>
                      <td>${when(c.uploaded_ms)}</td>
                      <td><code title=${c.hash}>${shortHash(c.hash)}</code></td>
                      <td>
                        ${users.length === 0
                          ? html`<span class="mg-muted">not installed</span>`
                          : html`<ul class="mg-inline-list">
                              ${users.map(
                                (u) =>
                                  html`<li key=${u.id}>
                                    <a href=${`${base}/i/${encodeURIComponent(u.id)}`}>${u.id}</a>
                                  </li>`,
                              )}
                            </ul>`}
                      </td>
                    </tr>`;
                  })}
                </tbody>
              </table>
            </div>`}
      </section>
    `}
  `;
}

// ---- upload ------------------------------------------------------------------------

function UploadPage({ tenant, base, navigate, canManage }) {
  const [uploaded, setUploaded] = useState(null);
  const [data, error, reload] = useTenantData(tenant);
  return html`
    <${Crumbs} base=${base} items=${[{ label: "Upload" }]} />
    <${PageTitle}>Upload extension<//>
    <${Uploader}
      tenant=${tenant}
      idPrefix="upload"
      onUploaded=${(u) => {
        setUploaded(u);
        reload();
      }}
    />
    <${ErrorNote} error=${error} />
    ${uploaded &&
    html`<${Review}
      key=${uploaded.hash}
      tenant=${tenant}
      base=${base}
      navigate=${navigate}
      canManage=${canManage}
      version=${uploaded}
      data=${data}
    />`}
  `;
}

/** A file picker and the upload with its progress. */
function Uploader({ tenant, onUploaded, idPrefix, label = "WebAssembly component (.wasm)" }) {
  const [file, setFile] = useState(null);
  const [progress, setProgress] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [phase, setPhase] = useState("");
  const submit = (e) => {
    e.preventDefault();
    if (!file || busy) return;
    setBusy(true);
    setError(null);
    setProgress(0);
    setPhase(`Uploading ${file.name} (${formatBytes(file.size)})…`);
    let compiling = false;
    uploadComponent(tenant, file, (fraction) => {
      setProgress(fraction);
      if (fraction >= 1 && !compiling) {
        compiling = true;
        setPhase("Sent. The server compiles and describes it…");
      }
    }).then(
      (uploaded) => {
        setBusy(false);
        setPhase(`Uploaded ${uploaded.descriptor?.name || uploaded.extension} ${uploaded.version}.`);
        onUploaded(uploaded);
      },
      (err) => {
        setBusy(false);
        setProgress(null);
        setPhase("");
        setError(err);
      },
    );
  };
  const pct = progress == null ? 0 : Math.round(progress * 100);
  return html`<form class="mg-panel mg-upload" onSubmit=${submit}>
    <div class="mg-field">
      <label for=${idPrefix + "-file"}>${label}</label>
      <input
        id=${idPrefix + "-file"}
        type="file"
        accept=".wasm,application/wasm"
        required
        aria-describedby=${idPrefix + "-file-hint"}
        onChange=${(e) => {
          setFile(e.currentTarget.files[0] || null);
          setError(null);
          setProgress(null);
          setPhase("");
        }}
      />
      <p class="mg-hint" id=${idPrefix + "-file-hint"}>
        The server compiles it and reads its descriptor. Nothing is granted and nothing runs for the tenant until you
        install it.
      </p>
    </div>
    <div class="mg-actions">
      <button type="submit" class="mg-button mg-button--primary" disabled=${busy || !file}>
        ${busy ? "Uploading…" : "Upload"}
      </button>
    </div>
    ${progress != null &&
    html`<div class="mg-progress">
      <progress id=${idPrefix + "-progress"} max="100" value=${pct} aria-label="Upload progress"></progress>
      <span class="mg-progress-pct" aria-hidden="true">${pct}%</span>
    </div>`}
    <p class="mg-muted" role="status">${phase}</p>
    <${ErrorNote} error=${error} />
  </form>`;
}

/** An uploaded version: what it is, what it asks for, and (managers) install or upgrade. */
function Review({ tenant, base, navigate, canManage, version, data }) {
  const d = version.descriptor || {};
  const installations = data?.installations || [];
  const byHash = new Map((data?.components || []).map((c) => [c.hash, c]));
  const same = installations.filter((i) => byHash.get(i.component)?.extension === version.extension);
  const [upgrading, setUpgrading] = useState(null);
  return html`
    <section class="mg-section">
      <h2 id="mg-review">${d.name || version.extension} <span class="mg-muted">${version.version}</span></h2>
      <${DescriptorSummary} version=${version} />
      <${CapabilityTable} version=${version} />
      ${Array.isArray(version.imports) &&
      html`<h3>Imports</h3>
        ${version.imports.length === 0
          ? html`<p class="mg-muted">It imports nothing.</p>`
          : html`<ul class="mg-code-list">
              ${version.imports.map((name, i) => html`<li key=${i}><code>${name}</code></li>`)}
            </ul>`}`}
      <${EventsAndActions} descriptor=${d} />
    </section>
    ${canManage &&
    same.length > 0 &&
    html`<section class="mg-section">
      <h2 id="mg-upgrade-existing">Upgrade an installation</h2>
      <p>${version.extension} is installed already. Upgrading keeps the installation's id, config and data.</p>
      <ul class="mg-plain-list">
        ${same.map(
          (inst) => html`<li key=${inst.id}>
            ${inst.component === version.hash
              ? html`<span><a href=${`${base}/i/${encodeURIComponent(inst.id)}`}>${inst.id}</a> runs this version.</span>`
              : html`<button
                  type="button"
                  class="mg-button"
                  aria-expanded=${upgrading === inst.id ? "true" : "false"}
                  onClick=${() => setUpgrading(upgrading === inst.id ? null : inst.id)}
                >
                  Upgrade ${inst.id} to this version
                </button>`}
            ${upgrading === inst.id &&
            html`<${UpgradePanel}
              tenant=${tenant}
              base=${base}
              navigate=${navigate}
              installation=${inst}
              current=${byHash.get(inst.component)}
              target=${version}
            />`}
          </li>`,
        )}
      </ul>
    </section>`}
    ${canManage &&
    html`<${InstallForm} tenant=${tenant} base=${base} navigate=${navigate} version=${version} installations=${installations} />`}
  `;
}

function DescriptorSummary({ version }) {
  const d = version.descriptor || {};
  return html`<dl class="mg-facts">
    <div><dt>Name</dt><dd>${d.name || "—"}</dd></div>
    <div><dt>Extension id</dt><dd><code>${version.extension}</code></dd></div>
    <div><dt>Version</dt><dd>${version.version}</dd></div>
    <div><dt>World</dt><dd>${version.world}</dd></div>
    ${d.description && html`<div class="mg-wide"><dt>Description</dt><dd>${d.description}</dd></div>`}
    ${d.category && html`<div><dt>Category</dt><dd>${d.category}</dd></div>`}
    ${d.default_size &&
    html`<div><dt>Default size</dt><dd>${d.default_size.width} × ${d.default_size.height} cells</dd></div>`}
    <div><dt>Refresh interval</dt><dd>${d.refresh_interval_ms ? formatMs(d.refresh_interval_ms) : "no ticks"}</dd></div>
    <div><dt>Size</dt><dd>${formatBytes(version.size)}</dd></div>
    <div><dt>Uploaded</dt><dd>${when(version.uploaded_ms)}</dd></div>
    ${version.compiled_ms != null && html`<div><dt>Compiled in</dt><dd>${formatMs(version.compiled_ms)}</dd></div>`}
    <div class="mg-wide"><dt>SHA-256</dt><dd><code class="mg-hash">${version.hash}</code></dd></div>
  </dl>`;
}

/** What the descriptor says it uses beside what the code imports. */
function CapabilityTable({ version }) {
  const declared = version.descriptor?.capabilities || [];
  const imported = Array.isArray(version.capabilities) ? version.capabilities : null;
  const names = [...new Set([...(imported || []), ...declared])].sort();
  return html`<h3 id="mg-caps">Capabilities it asks for</h3>
    ${names.length === 0
      ? html`<p class="mg-muted">None: it needs no grant.</p>`
      : html`<div class="mg-scroll" tabindex="0" role="region" aria-labelledby="mg-caps">
          <table class="mg-table mg-table--narrow">
            <thead>
              <tr>
                <th scope="col">Capability</th>
                <th scope="col">In its descriptor</th>
                <th scope="col">Imported by its code</th>
              </tr>
            </thead>
            <tbody>
              ${names.map(
                (name) => html`<tr key=${name}>
                  <th scope="row"><code>${name}</code></th>
                  <td>${declared.includes(name) ? "yes" : "no"}</td>
                  <td>${imported == null ? "not known" : imported.includes(name) ? "yes" : "no"}</td>
                </tr>`,
              )}
            </tbody>
          </table>
        </div>`}
    ${imported == null &&
    html`<p class="mg-hint">Upload the file again to see what its code imports: only an upload's answer lists it.</p>`}`;
}

function EventsAndActions({ descriptor }) {
  const patterns = descriptor.event_patterns || [];
  const actions = descriptor.actions || [];
  return html`
    <h3>Event patterns</h3>
    ${patterns.length === 0
      ? html`<p class="mg-muted">None: it handles no events.</p>`
      : html`<${Chips} items=${patterns} />`}
    <h3>Actions</h3>
    ${actions.length === 0
      ? html`<p class="mg-muted">None.</p>`
      : html`<dl class="mg-actions-list">
          ${actions.map(
            (a, i) => html`<div key=${i}>
              <dt><code>${a.name}</code></dt>
              <dd>${a.description || html`<span class="mg-muted">no description</span>`}</dd>
            </div>`,
          )}
        </dl>`}
  `;
}

/** Checkboxes for the grants; notes which ones the code imports. */
function GrantPicker({ idPrefix, grants, setGrants, imported, added, needed = imported, refusal, legend = "Grants" }) {
  const toggle = (name, on) => {
    const next = new Set(grants);
    if (on) next.add(name);
    else next.delete(name);
    setGrants(next);
  };
  const missing = (needed || []).filter((c) => !covers(grants, c));
  return html`<fieldset class="mg-fieldset">
    <legend>${legend}</legend>
    <p class="mg-hint">Nothing is granted unless checked here.</p>
    <ul class="mg-grants">
      ${GRANTS.map(({ name, hint }) => {
        const id = `${idPrefix}-grant-${name.replace(":", "-")}`;
        const tags = [];
        if ((imported || []).includes(name)) tags.push("imported");
        if ((added || []).includes(name)) tags.push("new in this version");
        return html`<li key=${name} class="mg-check">
          <input
            id=${id}
            type="checkbox"
            checked=${grants.has(name)}
            aria-describedby=${id + "-hint"}
            onChange=${(e) => toggle(name, e.currentTarget.checked)}
          />
          <label for=${id}><code>${name}</code></label>
          <span class="mg-hint" id=${id + "-hint"}>
            ${hint}${tags.map((t) => html`<span class="mg-tag" key=${t}>${t}</span>`)}
          </span>
        </li>`;
      })}
    </ul>
    ${missing.length > 0 &&
    html`<p class="mg-warning">
      Its code imports ${missing.join(", ")}, which ${missing.length > 1 ? "are" : "is"} not granted: the server will
      refuse it (${refusal}) unless you check ${missing.length > 1 ? "them" : "it"}.
    </p>`}
  </fieldset>`;
}

function suggestId(extension, installations) {
  const taken = new Set(installations.map((i) => i.id));
  const stem =
    String(extension || "extension")
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .replace(/^-+/, "")
      .slice(0, 56) || "extension";
  if (!taken.has(stem)) return stem;
  for (let n = 2; n < 1000; n += 1) if (!taken.has(`${stem}-${n}`)) return `${stem}-${n}`;
  return stem;
}

function InstallForm({ tenant, base, navigate, version, installations }) {
  const d = version.descriptor || {};
  const imported = Array.isArray(version.capabilities) ? version.capabilities : null;
  const [id, setId] = useState(() => suggestId(version.extension, installations));
  const [grants, setGrants] = useState(() => {
    const wanted = new Set();
    const known = GRANTS.map((g) => g.name);
    for (const c of imported || d.capabilities || []) if (known.includes(c)) wanted.add(c);
    if ((d.capabilities || []).includes("db:write") && (imported == null || imported.includes("db")))
      wanted.add("db:write");
    return wanted;
  });
  const [config, setConfig] = useState(undefined);
  const [tick, setTick] = useState("");
  const [fieldErrors, setFieldErrors] = useState([]);
  const [error, setError] = useState(null);
  const [idError, setIdError] = useState(null);
  const [busy, setBusy] = useState(false);
  const widget = version.world !== "event-handler";

  const submit = async (e) => {
    e.preventDefault();
    if (busy) return;
    setError(null);
    setIdError(null);
    const read = readConfig(config);
    if (read.errors.length > 0) {
      setFieldErrors(read.errors);
      return;
    }
    setFieldErrors([]);
    const body = { id: id.trim(), component: version.hash, grants: sortGrants(grants) };
    if (read.value !== undefined) body.config = read.value;
    if (widget && tick.trim() !== "") body.tick_interval_ms = Number(tick);
    setBusy(true);
    try {
      await api("POST", tenantPath(tenant, "/installations"), body);
      navigate(`${base}/i/${encodeURIComponent(body.id)}`);
    } catch (err) {
      setBusy(false);
      const fields = configFieldErrors(err);
      setFieldErrors(fields);
      if (err.code === "CONFLICT") setIdError(err.message);
      setError(
        fields.length > 0
          ? { code: err.code, message: "The config does not fit the extension's schema; see the marked fields." }
          : err,
      );
    }
  };

  return html`<section class="mg-section">
    <h2 id="mg-install">Grant and install</h2>
    <form class="mg-panel mg-form" noValidate onSubmit=${submit}>
      <div class="mg-field">
        <label for="install-id">Installation id</label>
        <input
          id="install-id"
          type="text"
          required
          maxlength="63"
          pattern=${ID_PATTERN}
          autocomplete="off"
          spellcheck="false"
          value=${id}
          aria-invalid=${idError ? "true" : undefined}
          aria-describedby=${"install-id-hint" + (idError ? " install-id-error" : "")}
          onInput=${(e) => setId(e.currentTarget.value)}
        />
        <p class="mg-hint" id="install-id-hint">
          Lowercase letters, digits and hyphens, starting with a letter or digit; at most 63 characters.
        </p>
        ${idError && html`<p class="sf-error" id="install-id-error">${idError}</p>`}
      </div>
      <${GrantPicker}
        idPrefix="install"
        grants=${grants}
        setGrants=${setGrants}
        imported=${imported}
        refusal="CAPABILITY_DENIED"
      />
      <fieldset class="mg-fieldset">
        <legend>Config</legend>
        <${SchemaForm}
          schema=${d.config_schema}
          value=${config}
          onChange=${setConfig}
          errors=${fieldErrors}
          idPrefix="install-config"
        />
      </fieldset>
      ${widget &&
      html`<div class="mg-field">
        <label for="install-tick">Tick interval (ms)</label>
        <input
          id="install-tick"
          type="number"
          min="0"
          max="86400000"
          step="1"
          inputmode="numeric"
          value=${tick}
          placeholder=${d.refresh_interval_ms ? String(d.refresh_interval_ms) : ""}
          aria-describedby="install-tick-hint"
          onInput=${(e) => setTick(e.currentTarget.value)}
        />
        <p class="mg-hint" id="install-tick-hint">
          Optional. Empty: the extension's own (${d.refresh_interval_ms ? formatMs(d.refresh_interval_ms) : "no ticks"}).
          0: no ticks. Otherwise at least 1000 ms and at most 24 hours.
        </p>
      </div>`}
      <${ErrorNote} error=${error} />
      <div class="mg-actions">
        <button type="submit" class="mg-button mg-button--primary" disabled=${busy}>
          ${busy ? "Installing…" : "Grant and install"}
        </button>
      </div>
    </form>
  </section>`;
}

// ---- upgrade -----------------------------------------------------------------------

/** A dry run first (the permission diff), then the upgrade once confirmed. */
function UpgradePanel({ tenant, base, navigate, installation, current, target }) {
  const [grants, setGrants] = useState(() => new Set(grantList(installation.grants)));
  const [config, setConfig] = useState(() =>
    withDefaults(target.descriptor?.config_schema, installation.config),
  );
  const [diff, setDiff] = useState(null);
  const [checkedKey, setCheckedKey] = useState(null);
  const [fieldErrors, setFieldErrors] = useState([]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(null);
  const prefix = `upgrade-${installation.id}`;
  // What the last dry run was asked about; a change after it needs another.
  const keyOf = (g, c) => JSON.stringify([g, c ?? null]);
  const key = keyOf(sortGrants(grants), readConfig(config).value);
  const stale = diff != null && checkedKey !== key;
  const url = tenantPath(tenant, `/installations/${encodeURIComponent(installation.id)}/upgrade`);

  const send = async (dryRun) => {
    const read = readConfig(config);
    if (read.errors.length > 0) {
      setFieldErrors(read.errors);
      return;
    }
    setFieldErrors([]);
    setError(null);
    setBusy(dryRun ? "check" : "upgrade");
    const body = { component: target.hash, grants: sortGrants(grants), dry_run: dryRun };
    if (read.value !== undefined) body.config = read.value;
    try {
      const answer = await api("POST", url, body);
      if (dryRun) {
        setDiff(answer.diff);
        setCheckedKey(keyOf(body.grants, body.config));
        setBusy(null);
      } else {
        navigate(`${base}/i/${encodeURIComponent(installation.id)}`);
      }
    } catch (err) {
      setBusy(null);
      const fields = configFieldErrors(err);
      setFieldErrors(fields);
      setError(
        fields.length > 0
          ? { code: err.code, message: "The config does not fit the new version's schema; see the marked fields." }
          : err,
      );
    }
  };
  useEffect(() => {
    send(true);
  }, [target.hash]);

  const added = diff?.added_capabilities || [];
  const removed = diff?.removed_capabilities || [];
  const name = (v) => (v ? `${v.descriptor?.name || v.extension} ${v.version}` : "");
  return html`<div class="mg-panel mg-upgrade" role="group" aria-labelledby=${prefix + "-title"}>
    <h3 id=${prefix + "-title"}>Upgrade ${installation.id}${current && html` from ${name(current)}`} to ${name(target)}</h3>
    ${busy === "check" && !diff && html`<${Loading} what="the permission changes" />`}
    ${diff &&
    html`<div class="mg-diff" aria-live="polite">
      <h4>Permission changes</h4>
      <dl class="mg-facts">
        <div>
          <dt>Capabilities added</dt>
          <dd>
            ${added.length === 0
              ? html`<span class="mg-muted">none</span>`
              : html`<ul class="mg-chips">
                  ${added.map((c) => html`<li key=${c} class="mg-chip--added"><code>+ ${c}</code></li>`)}
                </ul>`}
          </dd>
        </div>
        <div>
          <dt>Capabilities removed</dt>
          <dd>
            ${removed.length === 0
              ? html`<span class="mg-muted">none</span>`
              : html`<ul class="mg-chips">
                  ${removed.map((c) => html`<li key=${c} class="mg-chip--removed"><code>− ${c}</code></li>`)}
                </ul>`}
          </dd>
        </div>
        <div><dt>Grants after the upgrade</dt><dd><${Chips} items=${grantList(diff.grants)} /></dd></div>
      </dl>
    </div>`}
    <form
      class="mg-form"
      noValidate
      onSubmit=${(e) => {
        e.preventDefault();
        if (!busy) send(!(diff && !stale));
      }}
    >
      <${GrantPicker}
        idPrefix=${prefix}
        grants=${grants}
        setGrants=${setGrants}
        imported=${Array.isArray(target.capabilities) ? target.capabilities : null}
        needed=${Array.isArray(target.capabilities) ? target.capabilities : added}
        added=${added}
        refusal="GRANTS_REQUIRED"
        legend="Grants after the upgrade"
      />
      <fieldset class="mg-fieldset">
        <legend>Config for the new version</legend>
        <${SchemaForm}
          schema=${target.descriptor?.config_schema}
          value=${config}
          onChange=${setConfig}
          errors=${fieldErrors}
          idPrefix=${prefix + "-config"}
        />
      </fieldset>
      <${ErrorNote} error=${error} />
      ${stale && html`<p class="mg-warning">You changed the grants or the config: check the changes again before upgrading.</p>`}
      <div class="mg-actions">
        ${diff && !stale
          ? html`<button type="submit" class="mg-button mg-button--primary" disabled=${busy != null}>
              ${busy === "upgrade" ? "Upgrading…" : `Confirm: upgrade ${installation.id}`}
            </button>`
          : html`<button type="submit" class="mg-button mg-button--primary" disabled=${busy != null}>
              ${busy === "check" ? "Checking…" : "Check the changes"}
            </button>`}
      </div>
    </form>
  </div>`;
}

function UpgradePage({ tenant, base, navigate, canManage, id }) {
  const [data, error, reload] = useTenantData(tenant);
  const [target, setTarget] = useState(null);
  const installation = data?.installations.find((i) => i.id === id);
  const current = data?.components.find((c) => c.hash === installation?.component);
  const candidates = (data?.components || []).filter(
    (c) => current && c.extension === current.extension && c.hash !== current.hash,
  );
  const href = `${base}/i/${encodeURIComponent(id)}`;
  return html`
    <${Crumbs} base=${base} items=${[{ label: id, href }, { label: "Upgrade" }]} />
    <${PageTitle}>Upgrade ${id}<//>
    <${ErrorNote} error=${error} />
    ${!data && !error && html`<${Loading} what="the versions" />`}
    ${data && !installation && html`<p>There is no installation ${id}. <a href=${base}>Back to the extensions</a></p>`}
    ${installation &&
    html`
      <p>
        It runs ${current ? html`${current.descriptor?.name || current.extension} ${current.version}` : html`<code>${shortHash(installation.component)}</code>`}.
        Choose another version of ${current?.extension || "it"}, or upload one.
      </p>
      <section class="mg-section">
        <h2 id="mg-candidates">Uploaded versions</h2>
        ${candidates.length === 0
          ? html`<p class="mg-muted">No other version of ${current?.extension || "this extension"} is uploaded.</p>`
          : html`<div class="mg-scroll" tabindex="0" role="region" aria-labelledby="mg-candidates">
              <table class="mg-table">
                <thead>
                  <tr>
                    <th scope="col">Version</th>
                    <th scope="col">Uploaded</th>
                    <th scope="col">Hash</th>
                    <th scope="col"><span class="sf-sr">Choose</span></th>
                  </tr>
                </thead>
                <tbody>
                  ${candidates.map(
                    (c) => html`<tr key=${c.hash}>
                      <th scope="row">${c.version}</th>
                      <td>${when(c.uploaded_ms)}</td>
                      <td><code title=${c.hash}>${shortHash(c.hash)}</code></td>
                      <td>
                        <button
                          type="button"
                          class="mg-button"
                          aria-pressed=${target?.hash === c.hash ? "true" : "false"}
                          onClick=${() => setTarget(c)}
                        >
                          Choose ${c.version}
                        </button>
                      </td>
                    </tr>`,
                  )}
                </tbody>
              </table>
            </div>`}
      </section>
      <section class="mg-section">
        <h2 id="mg-upload-new">Upload a new version</h2>
        <${Uploader}
          tenant=${tenant}
          idPrefix="upgrade-upload"
          onUploaded=${(u) => {
            setTarget(u);
            reload();
          }}
        />
      </section>
      ${target &&
      html`<section class="mg-section">
        <h2 id="mg-review">${target.descriptor?.name || target.extension} <span class="mg-muted">${target.version}</span></h2>
        ${current &&
        target.extension !== current.extension &&
        html`<p class="mg-warning">
          This is ${target.extension}, not ${current.extension}: the installation would run another extension.
        </p>`}
        <${DescriptorSummary} version=${target} />
        <${CapabilityTable} version=${target} />
        <${UpgradePanel}
          key=${target.hash}
          tenant=${tenant}
          base=${base}
          navigate=${navigate}
          installation=${installation}
          current=${current}
          target=${target}
        />
      </section>`}
    `}
  `;
}

// ---- a version ---------------------------------------------------------------------

function VersionPage({ tenant, base, navigate, canManage, hash }) {
  const [version, error] = useLoad(() => api("GET", tenantPath(tenant, `/components/${encodeURIComponent(hash)}`)), [
    tenant,
    hash,
  ]);
  const [data] = useTenantData(tenant);
  return html`
    <${Crumbs} base=${base} items=${[{ label: version ? `${version.extension} ${version.version}` : shortHash(hash) }]} />
    <${PageTitle}>Uploaded version<//>
    <${ErrorNote} error=${error} />
    ${!version && !error && html`<${Loading} what="the version" />`}
    ${version &&
    html`<${Review} tenant=${tenant} base=${base} navigate=${navigate} canManage=${canManage} version=${version} data=${data} />`}
  `;
}

// ---- an installation ---------------------------------------------------------------

function InstallationPage({ tenant, base, navigate, canManage, id }) {
  const url = (rest = "") => tenantPath(tenant, `/installations/${encodeURIComponent(id)}${rest}`);
  const [inst, instError, reloadInst] = useLoad(() => api("GET", url()), [tenant, id]);
  const hash = inst?.component;
  const [version, versionError, reloadVersion] = useLoad(
    () => (hash ? api("GET", tenantPath(tenant, `/components/${encodeURIComponent(hash)}`)) : Promise.resolve(null)),
    [tenant, hash],
  );
  const [receipts, receiptsError, reloadReceipts] = useLoad(() => api("GET", url("/receipts")), [tenant, id]);
  const [logs, logsError, reloadLogs] = useLoad(() => api("GET", url("/logs")), [tenant, id]);
  const handler = (version?.descriptor?.event_patterns || []).length > 0;
  const [deliveries, deliveriesError, reloadDeliveries] = useLoad(
    () => (handler ? api("GET", url("/deliveries")) : Promise.resolve(null)),
    [tenant, id, handler],
  );
  const [letters, lettersError, reloadLetters] = useLoad(
    () =>
      handler
        ? api("GET", tenantPath(tenant, `/dead-letters?installation=${encodeURIComponent(id)}`))
        : Promise.resolve(null),
    [tenant, id, handler],
  );
  const [busy, setBusy] = useState(null);
  const [notice, setNotice] = useState("");
  const [actionError, setActionError] = useState(null);
  const [confirming, setConfirming] = useState(false);
  const cancelRef = useRef(null);
  const uninstallRef = useRef(null);

  const refresh = () => {
    reloadInst();
    reloadVersion();
    reloadReceipts();
    reloadLogs();
    reloadDeliveries();
    reloadLetters();
  };
  const act = async (what, run, done, reloads = [reloadInst]) => {
    if (busy) return;
    setBusy(what);
    setActionError(null);
    setNotice("");
    try {
      const answer = await run();
      setNotice(typeof done === "function" ? done(answer) : done);
      reloads.forEach((r) => r());
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(null);
    }
  };
  useEffect(() => {
    if (confirming && cancelRef.current) cancelRef.current.focus();
  }, [confirming]);

  const status = inst ? statusOf(inst) : null;
  const letterReloads = [reloadLetters, reloadDeliveries];
  const d = version?.descriptor || {};
  return html`
    <${Crumbs} base=${base} items=${[{ label: id }]} />
    <div class="mg-head">
      <${PageTitle}>${id} ${status && html`<${StatusBadge} status=${status} />`}<//>
      <div class="mg-actions">
        <button type="button" class="mg-button" onClick=${refresh}>Refresh</button>
        ${canManage &&
        inst &&
        html`
          ${status === "enabled"
            ? html`<button
                type="button"
                class="mg-button"
                disabled=${busy != null}
                onClick=${() => act("disable", () => api("POST", url("/disable")), `${id} is disabled.`)}
              >
                Disable
              </button>`
            : html`<button
                type="button"
                class="mg-button"
                disabled=${busy != null}
                onClick=${() => act("enable", () => api("POST", url("/enable")), `${id} is enabled.`)}
              >
                ${status === "parked" ? "Enable (unpark)" : "Enable"}
              </button>`}
          <a class="mg-button" href=${`${base}/i/${encodeURIComponent(id)}/upgrade`}>Upgrade</a>
          <button
            type="button"
            class="mg-button mg-button--danger"
            ref=${uninstallRef}
            aria-expanded=${confirming ? "true" : "false"}
            disabled=${busy != null}
            onClick=${() => setConfirming(true)}
          >
            Uninstall
          </button>
        `}
      </div>
    </div>
    ${confirming &&
    html`<div class="mg-confirm" role="group" aria-labelledby="mg-confirm-text">
      <p id="mg-confirm-text">
        Uninstall ${id}? Its calls and ticks stop, and what this node kept of them (receipts, logs, errors) is
        forgotten. The tenant's database and cache are not touched.
      </p>
      <div class="mg-actions">
        <button
          type="button"
          class="mg-button mg-button--danger"
          disabled=${busy != null}
          onClick=${async () => {
            setBusy("uninstall");
            setActionError(null);
            try {
              await api("DELETE", url());
              navigate(base);
            } catch (err) {
              setBusy(null);
              setActionError(err);
            }
          }}
        >
          ${busy === "uninstall" ? "Uninstalling…" : `Uninstall ${id}`}
        </button>
        <button
          type="button"
          class="mg-button"
          ref=${cancelRef}
          onClick=${() => {
            setConfirming(false);
            if (uninstallRef.current) uninstallRef.current.focus();
          }}
        >
          Cancel
        </button>
      </div>
    </div>`}
    <${Notice} text=${notice} />
    <${ErrorNote} error=${actionError} />
    <${ErrorNote} error=${instError} />
    ${instError?.status === 404 && html`<p><a href=${base}>Back to the extensions</a></p>`}
    ${!inst && !instError && html`<${Loading} what="the installation" />`}
    ${inst &&
    html`
      ${inst.parked &&
      html`<p class="mg-warning">
        Parked by the circuit breaker: ${inst.parked}. ${canManage ? "Enabling it again resumes it." : ""}
      </p>`}
      <section class="mg-section">
        <h2 id="mg-extension">Extension</h2>
        <${ErrorNote} error=${versionError} />
        ${version
          ? html`<${DescriptorSummary} version=${version} />
              <h3>Capabilities in its descriptor</h3>
              <${Chips} items=${d.capabilities || []} />
              <${EventsAndActions} descriptor=${d} />`
          : !versionError && html`<${Loading} what="the extension" />`}
      </section>
      <section class="mg-section">
        <h2 id="mg-settings">Installation</h2>
        <dl class="mg-facts">
          <div><dt>Grants</dt><dd><${Chips} items=${grantList(inst.grants)} /></dd></div>
          <div><dt>Ticks</dt><dd>${formatTick(inst.tick_interval_ms)}</dd></div>
          <div><dt>Installed</dt><dd>${when(inst.created_ms)}</dd></div>
          <div><dt>Updated</dt><dd>${when(inst.updated_ms)}</dd></div>
        </dl>
        <h3>Config</h3>
        <pre class="mg-json" tabindex="0" aria-label="Config as JSON">${JSON.stringify(inst.config, null, 2)}</pre>
        <h3 id="mg-limits">Limits</h3>
        <${LimitsTable} limits=${inst.limits} />
      </section>
      <section class="mg-section">
        <h2 id="mg-usage">Usage</h2>
        <${ErrorNote} error=${receiptsError} />
        ${receipts ? html`<${Usage} receipts=${receipts.receipts || []} />` : !receiptsError && html`<${Loading} what="the receipts" />`}
      </section>
      ${handler &&
      html`<section class="mg-section">
        <h2 id="mg-deliveries">Deliveries</h2>
        <${ErrorNote} error=${deliveriesError} />
        ${deliveries && html`<${DeliveryCounts} deliveries=${deliveries} />`}
        <h3 id="mg-dead-letters">Dead letters</h3>
        <${ErrorNote} error=${lettersError} />
        ${letters &&
        html`<${DeadLetters}
          letters=${letters.dead_letters || []}
          canManage=${canManage}
          busy=${busy}
          onReplay=${(letter) =>
            act(
              "replay-" + letter.id,
              () => api("POST", tenantPath(tenant, `/dead-letters/${encodeURIComponent(letter.id)}/replay`)),
              `Event ${letter.event?.id} is delivered again.`,
              letterReloads,
            )}
          onDelete=${(letter) => {
            if (!window.confirm(`Delete the dead letter of event ${letter.event?.id}? It cannot be replayed afterwards.`))
              return;
            act(
              "delete-" + letter.id,
              () => api("DELETE", tenantPath(tenant, `/dead-letters/${encodeURIComponent(letter.id)}`)),
              `The dead letter of event ${letter.event?.id} is deleted.`,
              letterReloads,
            );
          }}
          onReplayAll=${() =>
            act(
              "replay-all",
              () => api("POST", url("/dead-letters/replay")),
              (a) => `${formatCount(a?.replayed ?? 0)} dead letters are delivered again.`,
              letterReloads,
            )}
          onPurgeAll=${() => {
            if (!window.confirm(`Delete every dead letter of ${id}? They cannot be replayed afterwards.`)) return;
            act(
              "purge-all",
              () => api("DELETE", url("/dead-letters")),
              (a) => `${formatCount(a?.purged ?? 0)} dead letters are deleted.`,
              letterReloads,
            );
          }}
        />`}
      </section>`}
      <section class="mg-section">
        <h2 id="mg-logs">Logs</h2>
        <${ErrorNote} error=${logsError} />
        ${logs ? html`<${Logs} logs=${logs} />` : !logsError && html`<${Loading} what="the logs" />`}
      </section>
    `}
  `;
}

const LIMITS = {
  fuel: ["Fuel", "count"],
  memory_bytes: ["Memory", "bytes"],
  table_elements: ["Table elements", "count"],
  instances: ["Instances", "count"],
  tables: ["Tables", "count"],
  memories: ["Memories", "count"],
  timeout: ["Timeout", "ms"],
  host_calls: ["Host calls", "count"],
  capability_calls: ["Calls into one capability", "count"],
  output_bytes: ["Output", "bytes"],
  log_lines: ["Log lines", "count"],
  db_rows: ["Database rows", "count"],
  db_bytes: ["Database bytes", "bytes"],
  broadcast_messages: ["Broadcast messages", "count"],
  broadcast_bytes: ["Broadcast message size", "bytes"],
};

function LimitsTable({ limits }) {
  const entries = Object.entries(limits || {});
  if (entries.length === 0) return html`<p class="mg-muted">The server's defaults.</p>`;
  const show = (key, value) => {
    if (value == null) return key === "fuel" ? "off (no fuel metering)" : "—";
    if (typeof value !== "number") return typeof value === "string" ? value : JSON.stringify(value);
    const unit = LIMITS[key]?.[1];
    if (unit === "bytes") return formatBytes(value);
    if (unit === "ms") return formatMs(value);
    return formatCount(value);
  };
  return html`<div class="mg-scroll" tabindex="0" role="region" aria-labelledby="mg-limits">
    <table class="mg-table mg-table--narrow">
      <thead>
        <tr><th scope="col">Limit</th><th scope="col">Per call</th></tr>
      </thead>
      <tbody>
        ${entries.map(
          ([key, value]) => html`<tr key=${key}>
            <th scope="row">${LIMITS[key]?.[0] || key} <code class="mg-muted">${key}</code></th>
            <td class="mg-num">${show(key, value)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

// ---- usage charts ------------------------------------------------------------------

/** When the receipt's call ended (epoch ms). */
function receiptTime(r) {
  const t = r.at_ms;
  return typeof t === "number" ? t : null;
}

function Usage({ receipts: kept }) {
  // uPlot wants its x values in order; calls that ran at once end in any order.
  const receipts = useMemo(() => [...kept].sort((a, b) => (receiptTime(a) ?? 0) - (receiptTime(b) ?? 0)), [kept]);
  const series = useMemo(() => {
    const timed = receipts.length > 0 && receipts.every((r) => receiptTime(r) != null);
    const xs = receipts.map((r, i) => (timed ? receiptTime(r) / 1000 : i + 1));
    return {
      timed,
      xs,
      fuel: receipts.map((r) => (typeof r.fuel_used === "number" ? r.fuel_used : null)),
      memory: receipts.map((r) => (typeof r.peak_memory_bytes === "number" ? r.peak_memory_bytes : null)),
      wall: receipts.map((r) => (typeof r.wall_time_us === "number" ? r.wall_time_us / 1000 : null)),
    };
  }, [receipts]);
  if (receipts.length === 0) return html`<p class="mg-muted">No calls on this node yet.</p>`;
  const failed = receipts.filter((r) => r.outcome && r.outcome !== "OK").length;
  return html`
    <p class="mg-hint">
      The last ${formatCount(receipts.length)} calls on this node${series.timed ? "" : ", oldest first"}.
      ${failed > 0 ? ` ${formatCount(failed)} of them failed.` : ""}
    </p>
    <div class="mg-charts">
      <${Chart}
        id="chart-fuel"
        title="Fuel used"
        xs=${series.xs}
        ys=${series.fuel}
        timed=${series.timed}
        format=${formatCount}
        tick=${formatCompact}
      />
      <${Chart} id="chart-memory" title="Peak memory" xs=${series.xs} ys=${series.memory} timed=${series.timed} format=${formatBytes} />
      <${Chart}
        id="chart-wall"
        title="Wall time"
        xs=${series.xs}
        ys=${series.wall}
        timed=${series.timed}
        format=${formatMs}
      />
    </div>
    <details class="mg-details">
      <summary>The receipts as a table</summary>
      <${ReceiptTable} receipts=${receipts} />
    </details>
  `;
}

function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

function Chart({ id, title, xs, ys, timed, format, tick = format }) {
  const box = useRef(null);
  const values = ys.filter((v) => v != null);
  useEffect(() => {
    const el = box.current;
    if (!el || values.length === 0) return;
    const fg = cssVar(el, "--muted", "#4b5563");
    const grid = cssVar(el, "--border", "#d1d5db");
    const accent = cssVar(el, "--accent", "#1d4ed8");
    const size = () => ({ width: Math.max(200, el.clientWidth), height: 170 });
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const plot = new uPlot(
      {
        ...size(),
        scales: { x: { time: timed } },
        legend: { show: false },
        cursor: { points: { size: 6 } },
        axes: [
          { ...axis, label: timed ? undefined : "call", labelSize: 18 },
          { ...axis, size: 72, values: (u, splits) => splits.map((v) => tick(v)) },
        ],
        series: [
          {},
          { label: title, stroke: accent, width: 2, spanGaps: false, points: { show: xs.length <= 30 } },
        ],
      },
      [xs, ys],
      el,
    );
    const observer = new ResizeObserver(() => plot.setSize(size()));
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [xs, ys, timed]);
  const last = values.length > 0 ? values[values.length - 1] : null;
  const max = values.length > 0 ? Math.max(...values) : null;
  const mean = values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : null;
  const summary =
    values.length === 0
      ? "not measured"
      : `latest ${format(last)}, highest ${format(max)}, mean ${format(mean)}`;
  return html`<figure class="mg-chart">
    <figcaption id=${id + "-caption"}>
      <span class="mg-chart-title">${title}</span>
      <span class="mg-muted">${summary}</span>
    </figcaption>
    ${values.length > 0 &&
    html`<div class="mg-chart-plot" ref=${box} role="img" aria-labelledby=${id + "-caption"}></div>`}
  </figure>`;
}

function ReceiptTable({ receipts }) {
  const recent = receipts.slice(-50).reverse();
  return html`<div class="mg-scroll" tabindex="0" role="region" aria-label="Receipts, newest first">
    <table class="mg-table">
      <thead>
        <tr>
          <th scope="col">Call</th>
          ${recent.some((r) => receiptTime(r) != null) && html`<th scope="col">Time</th>`}
          <th scope="col">Outcome</th>
          <th scope="col">Fuel</th>
          <th scope="col">Peak memory</th>
          <th scope="col">Wall time</th>
          <th scope="col">Host calls</th>
          <th scope="col">Output</th>
        </tr>
      </thead>
      <tbody>
        ${recent.map((r, i) => {
          const hostCalls = Object.entries(r.host_calls || {});
          return html`<tr key=${i}>
            <th scope="row"><code>${r.call}</code></th>
            ${recent.some((x) => receiptTime(x) != null) && html`<td>${when(receiptTime(r))}</td>`}
            <td>${r.outcome === "OK" ? "OK" : html`<code class="mg-bad">${r.outcome}</code>`}</td>
            <td class="mg-num">${formatCount(r.fuel_used)}</td>
            <td class="mg-num">${formatBytes(r.peak_memory_bytes)}</td>
            <td class="mg-num">${formatMs((r.wall_time_us || 0) / 1000)}</td>
            <td>${hostCalls.length === 0 ? "none" : hostCalls.map(([k, v]) => `${k} ${formatCount(v)}`).join(", ")}</td>
            <td class="mg-num">${formatBytes(r.output_bytes)}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </div>`;
}

// ---- logs, deliveries, dead letters ------------------------------------------------

function Logs({ logs }) {
  const lines = (logs.lines || []).slice().reverse();
  const errors = (logs.errors || []).slice().reverse();
  return html`
    <h3 id="mg-log-lines">Recent log lines</h3>
    ${lines.length === 0
      ? html`<p class="mg-muted">Nothing logged recently.</p>`
      : html`<div class="mg-scroll mg-scroll--tall" tabindex="0" role="region" aria-labelledby="mg-log-lines">
          <table class="mg-table mg-log">
            <thead>
              <tr><th scope="col">Time</th><th scope="col">Level</th><th scope="col">Message</th></tr>
            </thead>
            <tbody>
              ${lines.map(
                (line, i) => html`<tr key=${i}>
                  <td class="mg-nowrap">${when(line.at_ms)}</td>
                  <td><span class=${"mg-level mg-level--" + levelClass(line.level)}>${line.level}</span></td>
                  <td class="mg-message">${line.message}</td>
                </tr>`,
              )}
            </tbody>
          </table>
        </div>`}
    <h3 id="mg-errors">Recent errors</h3>
    ${errors.length === 0
      ? html`<p class="mg-muted">No errors recently.</p>`
      : html`<div class="mg-scroll mg-scroll--tall" tabindex="0" role="region" aria-labelledby="mg-errors">
          <table class="mg-table mg-log">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Call</th>
                <th scope="col">Code</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              ${errors.map(
                (e, i) => html`<tr key=${i}>
                  <td class="mg-nowrap">${when(e.at_ms)}</td>
                  <td><code>${e.call}</code></td>
                  <td><code class="mg-bad">${e.code}</code></td>
                  <td class="mg-message">${e.message}</td>
                </tr>`,
              )}
            </tbody>
          </table>
        </div>`}
  `;
}

function levelClass(level) {
  const l = String(level || "").toLowerCase();
  return ["error", "warn", "info", "debug", "trace"].includes(l) ? l : "info";
}

function DeliveryCounts({ deliveries }) {
  const last = deliveries.last_error;
  return html`<dl class="mg-facts mg-counters">
    <div><dt>Delivered</dt><dd>${formatCount(deliveries.delivered)}</dd></div>
    <div><dt>Retried</dt><dd>${formatCount(deliveries.retried)}</dd></div>
    <div><dt>Dead-lettered</dt><dd>${formatCount(deliveries.dead_lettered)}</dd></div>
    <div><dt>Waited</dt><dd>${formatCount(deliveries.waited)}</dd></div>
    <div><dt>Dead letters kept</dt><dd>${formatCount(deliveries.dead_letters_kept)}</dd></div>
    ${last &&
    html`<div class="mg-wide">
      <dt>Last error</dt>
      <dd><code class="mg-bad">${last.code}</code> ${last.message} <span class="mg-muted">(${when(deliveries.last_error_ms)})</span></dd>
    </div>`}
  </dl>
  <p class="mg-hint">Counts on this node since it started; dead letters kept are over every node.</p>`;
}

function DeadLetters({ letters, canManage, busy, onReplay, onDelete, onReplayAll, onPurgeAll }) {
  return html`
    ${canManage &&
    letters.length > 0 &&
    html`<div class="mg-actions">
      <button type="button" class="mg-button" disabled=${busy != null} onClick=${onReplayAll}>Replay all</button>
      <button type="button" class="mg-button mg-button--danger" disabled=${busy != null} onClick=${onPurgeAll}>
        Purge all
      </button>
    </div>`}
    ${letters.length === 0
      ? html`<p class="mg-muted">No dead letters.</p>`
      : html`<div class="mg-scroll" tabindex="0" role="region" aria-labelledby="mg-dead-letters">
          <table class="mg-table">
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Name</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last error</th>
                <th scope="col">Dead since</th>
                ${canManage && html`<th scope="col"><span class="sf-sr">Actions</span></th>`}
              </tr>
            </thead>
            <tbody>
              ${letters.map(
                (l) => html`<tr key=${l.id}>
                  <th scope="row" class="mg-nowrap"><code>${l.event?.id}</code></th>
                  <td><code>${l.event?.name}</code></td>
                  <td class="mg-num">${formatCount(l.attempts)}</td>
                  <td class="mg-message">
                    <code class="mg-bad">${l.error?.code}</code> ${l.error?.message}
                  </td>
                  <td class="mg-nowrap">${when(l.dead_ms)}</td>
                  ${canManage &&
                  html`<td>
                    <div class="mg-row-actions">
                    <button
                      type="button"
                      class="mg-button mg-button--small"
                      disabled=${busy != null}
                      aria-label=${`Replay event ${l.event?.id}`}
                      onClick=${() => onReplay(l)}
                    >
                      Replay
                    </button>
                    <button
                      type="button"
                      class="mg-button mg-button--small mg-button--danger"
                      disabled=${busy != null}
                      aria-label=${`Delete dead letter of event ${l.event?.id}`}
                      onClick=${() => onDelete(l)}
                    >
                      Delete
                    </button>
                    </div>
                  </td>`}
                </tr>`,
              )}
            </tbody>
          </table>
        </div>`}
  `;
}
