// The console: the tenant's first dashboard, each tile rendered once, then updated
// live from the WebSocket (`widget/<installation>` after every tick).
const params = new URLSearchParams(location.hash.slice(1));
const $ = (id) => document.getElementById(id);
$("tenant").value = params.get("tenant") || "demo";
$("token").value = params.get("token") || "";
const text = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function view(v) {
  if (v.kind === "metric_card" || v.kind === "kpi_card" || v.kind === "gauge") {
    return `<h2>${text(v.title)}</h2><div class="metric">${text(v.value)} ${text(v.unit || "")}</div>`;
  }
  if (v.kind === "table") {
    const head = v.columns.map((c) => `<th>${text(c.title)}</th>`).join("");
    const rows = v.rows.slice(0, 20).map((r) => `<tr>${r.map((c) => `<td>${text(typeof c === "object" ? JSON.stringify(c) : c)}</td>`).join("")}</tr>`).join("");
    return `<h2>${text(v.title)}</h2><table><tr>${head}</tr>${rows}</table>`;
  }
  return `<h2>${text(v.title || v.kind)}</h2><pre>${text(JSON.stringify(v, null, 1))}</pre>`;
}

function show(id, views, error) {
  let tile = $("tile-" + id);
  if (!tile) {
    tile = document.createElement("section");
    tile.className = "tile";
    tile.id = "tile-" + id;
    $("tiles").appendChild(tile);
  }
  tile.innerHTML = error ? `<h2>${text(id)}</h2><div class="error">${text(error.code)}: ${text(error.message)}</div>`
                         : views.map(view).join("");
  tile.classList.remove("flash"); void tile.offsetWidth; tile.classList.add("flash");
}

async function api(path) {
  const response = await fetch(`/api/v1/tenants/${encodeURIComponent($("tenant").value)}${path}`,
    { headers: { Authorization: "Bearer " + $("token").value } });
  const body = await response.json();
  if (!response.ok) throw body;
  return body;
}

async function open() {
  $("tiles").innerHTML = "";
  try {
    const { dashboards } = await api("/dashboards");
    const tiles = dashboards.length ? dashboards[0].tiles : (await api("/installations")).installations.map((i) => ({ installation: i.id }));
    for (const t of tiles) {
      try { show(t.installation, (await api(`/installations/${t.installation}/data`)).views); }
      catch (e) { show(t.installation, null, e); }
    }
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws?token=${encodeURIComponent($("token").value)}`);
    ws.onopen = () => {
      $("status").textContent = "live";
      for (const t of tiles) ws.send(JSON.stringify({ type: "subscribe", topic: "widget/" + t.installation }));
    };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "message" && msg.payload.type === "views") show(msg.payload.installation, msg.payload.views);
      if (msg.type === "slow_consumer" || msg.type === "resync") setTimeout(open, 500);
    };
    ws.onclose = () => { $("status").textContent = "disconnected"; };
  } catch (e) {
    $("status").textContent = (e.code || "error") + ": " + (e.message || e);
  }
}
$("open").onclick = open;
if ($("token").value) open();
