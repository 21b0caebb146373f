// The console in headless chromium (run by tests/all/console.rs, which starts the
// server with the demo tenant and passes its address and tokens in the environment).
// Each step prints `step:`; any failed check throws, and the process exits non-zero.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const require = createRequire(join(process.env.NODE_PATH, "/"));
const { chromium } = require("playwright-core");
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const base = process.env.PLINTH_URL;
const tokens = { admin: process.env.ADMIN_TOKEN, viewer: process.env.VIEWER_TOKEN, operator: process.env.OPERATOR_TOKEN };
const shots = process.env.SCREENSHOTS;
const SLOW = 30_000;

function check(condition, message) {
  if (!condition) throw new Error("check failed: " + message);
}

/** Asks the test that runs this script to do something (a line on stdout) and waits
 *  for its answer (a line on stdin). */
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(what) {
  console.log("request: " + what);
  const answer = await answers.next();
  check(!answer.done, "an answer to " + what);
}

function step(name) {
  console.log("step: " + name);
}

/** Every console error, page error and failed request of a page, kept to be checked. */
function watch(page, problems) {
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("websocket", (socket) => {
    for (const token of Object.values(tokens)) {
      if (socket.url().includes(token)) problems.push("a token in a WebSocket URL: " + socket.url());
    }
  });
  page.on("requestfailed", (r) => {
    // A download the browser hands over, or a socket closed on purpose, is no failure.
    if (!r.url().startsWith("blob:")) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

/** The browser logs every 4xx answer as an error: takes the `count` a step caused on
 *  purpose off the list (and fails if they are not there), so only others are reported. */
function expected(problems, status, count) {
  for (let i = 0; i < count; i++) {
    const at = problems.findIndex((p) => p.includes(`status of ${status}`));
    check(at >= 0, `the browser saw the ${status} answer`);
    problems.splice(at, 1);
  }
}

/** Like `expected`, for a step that causes one such answer or more: takes them all off
 *  the list, and fails if there is none. */
function expectedSome(problems, status) {
  expected(problems, status, 1);
  for (let at; (at = problems.findIndex((p) => p.includes(`status of ${status}`))) >= 0; ) problems.splice(at, 1);
}

async function axe(page, what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }),
  );
  const violations = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`,
  );
  check(violations.length === 0, `axe on ${what}:\n  ${violations.join("\n  ")}`);
}

async function signIn(browser, token, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  // Every close of the console's sockets, with its code, for the checks below.
  await context.addInitScript(() => {
    const Original = window.WebSocket;
    window.__closes = [];
    window.WebSocket = class extends Original {
      constructor(...args) {
        super(...args);
        this.addEventListener("close", (e) => window.__closes.push(`${e.code} ${e.reason} @${Math.round(performance.now())}`));
      }
    };
  });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  await page.goto(base + "/");
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(".live-state.live").waitFor({ timeout: SLOW });
  check(!page.url().includes(token), "the token is not in the URL: " + page.url());
  const stored = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length }));
  check(stored.session === 1 && stored.local === 0, "the token is kept in the tab's session only: " + JSON.stringify(stored));
  return { context, page, problems };
}

async function apiCall(method, path, token, body) {
  const response = await fetch(base + "/api/v1" + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Waits until the tile titled `title` shows data newer than `after` (epoch ms), fetched
 *  or pushed; says what the tile shows if it does not. */
async function updatedAfter(page, title, after, { pushed = false, timeout = SLOW } = {}) {
  try {
    await page.waitForFunction(
      ([title, after, pushed]) => {
        const tile = [...document.querySelectorAll(".tile")].find((t) => t.querySelector(".tile-title")?.title === title);
        return Number(tile?.dataset.updated) > after && (!pushed || tile.dataset.pushed === "true");
      },
      [title, after, pushed],
      { timeout },
    );
  } catch (e) {
    const shown = await tile(page, title).innerText().catch(() => "(no tile)");
    throw new Error(`${title} was not updated after ${after}: ${e.message}\n${shown}`);
  }
}

const tile = (page, name) => page.locator(".tile", { has: page.locator(".tile-title", { hasText: name }) });

const VIEW_KINDS = [
  "metric_card", "kpi_card", "line_chart", "bar_chart", "pie_chart", "sparkline",
  "table", "gauge", "progress_bar", "heatmap", "custom",
];

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const allProblems = [];
try {
  // 1. Sign in, the overview dashboard with every view kind.
  step("an administrator signs in and sees the overview dashboard");
  const admin = await signIn(browser, tokens.admin);
  const { page } = admin;
  await page.waitForURL(/#\/t\/demo\/dashboards/);
  await page.getByRole("link", { name: "overview" }).click();
  const gallery = tile(page, "View gallery");
  for (const kind of VIEW_KINDS) {
    await gallery.locator(`.view-${kind}`).first().waitFor({ timeout: SLOW });
  }
  check(await gallery.locator(".view-line_chart canvas").count() > 0, "the line chart is drawn on a canvas");
  check(await gallery.locator(".view-bar_chart canvas").count() > 0, "the bar chart is drawn on a canvas");
  check(await gallery.locator(".view-pie_chart svg path, .view-pie_chart svg circle").count() > 0, "the pie chart is drawn");
  check(await gallery.locator(".view-gauge svg").count() > 0, "the gauge is drawn");
  const galleryText = await gallery.innerText();
  check(!/\d[.,]\d{5,}/.test(galleryText), "numbers are formatted, not raw: " + galleryText.match(/\d[.,]\d{5,}/)?.[0]);
  await axe(page, "the overview dashboard");
  await page.screenshot({ path: join(shots, "dashboard-desktop.png"), fullPage: true });
  // The table sorts and pages.
  const table = gallery.locator(".view-table").first();
  await table.getByRole("button", { name: "Next" }).click();
  check((await table.innerText()).includes("11–20 of "), "the table's second page: " + (await table.innerText()).slice(-80));
  await table.locator("th button").first().click();
  check(await table.locator("th[aria-sort]").count() > 0, "a sorted column says so");
  // A custom view is a collapsible tree.
  check(await gallery.locator(".view-custom details").count() > 0, "custom JSON is a collapsible tree");

  // 2. Live: a tick pushes new views, no reload.
  step("a tick updates a tile without reload");
  await page.evaluate(() => { window.__sameDocument = true; });
  // Pushed over the WebSocket after the widget's tick, not fetched.
  await updatedAfter(page, "View gallery", Number(await gallery.getAttribute("data-updated")), { pushed: true });
  check(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");

  // 3. A posted event updates the sales tile.
  step("a posted order.completed event updates the sales dashboard");
  await page.getByRole("link", { name: "sales" }).click();
  const sales = tile(page, "Sales");
  await sales.locator(".view-metric_card").first().waitFor({ timeout: SLOW });
  const cardsBefore = await sales.locator(".view-metric_card").allInnerTexts();
  const posted = await apiCall("POST", "/tenants/demo/events", tokens.admin, {
    id: "browser-order-1",
    name: "order.completed",
    payload: { order_id: 990001, customer_id: 3, staff_id: 2, total: 1234.5 },
  });
  check(posted.status === 202, "the event is accepted: " + JSON.stringify(posted));
  await page.waitForFunction(
    (before) => {
      const cards = [...document.querySelectorAll(".tile .view-metric_card")].map((e) => e.innerText);
      return cards.length > 0 && JSON.stringify(cards) !== JSON.stringify(before);
    },
    cardsBefore,
    { timeout: SLOW },
  );
  check(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");

  // 4. Layout: a drag that is cancelled leaves the layout; a tile removed and added
  //    again stays movable; a drag that is saved is on the server.
  step("tiles are dragged, removed, added and placed by keyboard in edit mode; cancel undoes, save keeps");
  await page.getByRole("link", { name: "overview" }).click();
  await tile(page, "Hello").waitFor({ timeout: SLOW });
  const layoutBefore = (await apiCall("GET", "/tenants/demo/dashboards/overview", tokens.admin)).body;
  const place = (layout) => JSON.stringify(layout.tiles.find((t) => t.installation === "hello-metric"));
  const item = page.locator('.grid-stack-item[gs-id="hello-metric"]');
  const at = async () => `${await item.getAttribute("gs-x")},${await item.getAttribute("gs-y")}`;
  const drag = async () => {
    const header = tile(page, "Hello").locator(".tile-header");
    await header.scrollIntoViewIfNeeded();
    const box = await header.boundingBox();
    await page.mouse.move(box.x + 20, box.y + box.height / 2);
    await page.mouse.down();
    // In small moves, as a hand does: gridstack follows the pointer move by move.
    for (let i = 1; i <= 30; i++) await page.mouse.move(box.x + 20 + i * 30, box.y + box.height / 2 + i);
    await page.mouse.up();
  };
  const start = await at();
  await page.getByRole("button", { name: "Edit layout" }).click();
  await drag();
  check((await at()) !== start, `the drag moved the tile (${start})`);
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("button", { name: "Edit layout" }).waitFor({ timeout: SLOW });
  check((await at()) === start, `cancel put the tile back: ${await at()} ≠ ${start}`);
  await page.getByRole("button", { name: "Edit layout" }).click();
  await page.getByRole("button", { name: "Remove Hello Metric from this dashboard" }).click();
  await item.waitFor({ state: "detached", timeout: SLOW });
  await page.getByLabel("Add widget").selectOption("hello-metric");
  await item.waitFor({ timeout: SLOW });
  const added = await at();
  await drag();
  check((await at()) !== added, `a tile added in edit mode can be dragged (${added})`);
  await page.getByRole("button", { name: "Save layout" }).click();
  await page.getByRole("button", { name: "Edit layout" }).waitFor({ timeout: SLOW });
  const layoutAfter = (await apiCall("GET", "/tenants/demo/dashboards/overview", tokens.admin)).body;
  check(place(layoutBefore) !== place(layoutAfter), `the tile moved: ${place(layoutBefore)} → ${place(layoutAfter)}`);
  check(layoutAfter.tiles.length === layoutBefore.tiles.length, "every tile is still there");
  // The same by keyboard: a tile placed with numbers, saved.
  await page.getByRole("button", { name: "Edit layout" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Place Hello Metric" }).focus();
  await page.keyboard.press("Enter");
  const placeForm = page.getByRole("form", { name: "Place Hello Metric" });
  await placeForm.getByLabel("Column").fill("6");
  await placeForm.getByLabel("Width").fill("4");
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Save layout" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Edit layout" }).waitFor({ timeout: SLOW });
  const placed = (await apiCall("GET", "/tenants/demo/dashboards/overview", tokens.admin)).body.tiles.find(
    (t) => t.installation === "hello-metric",
  );
  check(placed.x === 6 && placed.w === 4, "placed by keyboard: " + JSON.stringify(placed));

  // 5. Export a tile's data.
  step("a tile's data is exported as CSV and JSON");
  const cacheTile = tile(page, "Cache");
  await cacheTile.locator(".view").first().waitFor({ timeout: SLOW });
  for (const format of ["CSV", "JSON"]) {
    await cacheTile.getByLabel(/^Export /).click();
    const [download] = await Promise.all([
      page.waitForEvent("download", { timeout: SLOW }),
      cacheTile.getByRole("button", { name: `Export ${format}` }).click(),
    ]);
    check(download.suggestedFilename().endsWith("." + format.toLowerCase()), "export file " + download.suggestedFilename());
  }

  // 5b. A tile whose installation is disabled shows the code and message; Retry after
  //     enabling brings the views back.
  // Editing, cancelling and saving the layout re-renders tiles, which drop and take their
  // topics again: none of it may trip the socket's rate limit (4029) and cost a reconnect.
  const closes = await page.evaluate(() => window.__closes);
  check(!closes.some((c) => c.startsWith("4029")), "the console's socket was closed for its rate: " + closes.join(", "));
  step("a disabled widget's tile shows its error, and Retry after enabling recovers");
  const helloTile = tile(page, "Hello");
  // The socket may have reconnected after the steps before; its resync refetches every
  // tile, which would race the Refresh and the Retry below. Start once it is live.
  await page.locator(".live-state.live").waitFor({ timeout: SLOW });
  const disabled = await apiCall("POST", "/tenants/demo/installations/hello-metric/disable", tokens.admin);
  check(disabled.status === 200, "disabled: " + JSON.stringify(disabled));
  await helloTile.getByRole("button", { name: "Refresh Hello Metric" }).click();
  await helloTile.locator(".tile-error").waitFor({ timeout: SLOW });
  check((await helloTile.locator(".tile-error").innerText()).includes("INSTALLATION_DISABLED"), "the error code is shown");
  const enabled = await apiCall("POST", "/tenants/demo/installations/hello-metric/enable", tokens.admin);
  check(enabled.status === 200, "enabled: " + JSON.stringify(enabled));
  await helloTile.getByRole("button", { name: "Retry" }).click();
  await helloTile.locator(".tile-error").waitFor({ state: "detached", timeout: SLOW });
  await helloTile.locator(".view-metric_card").waitFor({ timeout: SLOW });
  // The Refresh's 409, and one more when the socket happened to resync while the
  // installation was disabled (the tile refetches on a resync): the only 409s there are.
  expectedSome(admin.problems, 409);

  // 6. Phone width.
  step("the dashboard at phone width");
  const phone = await signIn(browser, tokens.admin, { width: 390, height: 844 });
  await phone.page.goto(base + "/#/t/demo/dashboards/overview");
  await tile(phone.page, "View gallery").locator(".view-metric_card").waitFor({ timeout: SLOW });
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, "nothing is wider than the phone: " + overflow + " px");
  await axe(phone.page, "the dashboard at phone width");
  await phone.page.screenshot({ path: join(shots, "dashboard-phone.png") });
  allProblems.push(...phone.problems);
  await phone.context.close();

  // 7. Extensions: the list, an installation's page with its usage and deliveries.
  step("the extensions page and an event handler's installation page");
  await page.getByRole("link", { name: "Extensions", exact: true }).click();
  await page.getByRole("heading", { name: "Installations" }).waitFor({ timeout: SLOW });
  for (const id of ["sales-metrics", "view-gallery", "hello-metric"]) {
    await page.getByRole("link", { name: id, exact: true }).first().waitFor({ timeout: SLOW });
  }
  await axe(page, "the extensions page");
  await page.screenshot({ path: join(shots, "extensions.png") });
  await page.goto(base + "/#/t/demo/extensions/i/sales-metrics");
  await page.getByRole("heading", { name: "Usage" }).waitFor({ timeout: SLOW });
  await page.getByRole("heading", { name: "Deliveries" }).waitFor({ timeout: SLOW });
  await page.locator(".uplot canvas").first().waitFor({ timeout: SLOW });
  check(await page.getByRole("button", { name: "Disable" }).count() === 1, "an administrator may disable");
  await axe(page, "an installation's page");
  await page.screenshot({ path: join(shots, "installation.png"), fullPage: true });

  // 8. Upload → review → grant → configure (a bad value first) → install.
  step("a widget is uploaded, reviewed, configured and installed through the UI");
  await page.goto(base + "/#/t/demo/extensions");
  await page.getByRole("link", { name: "Upload extension" }).click();
  await page.locator("input[type=file]").setInputFiles(process.env.UPLOAD_WASM);
  // Every value the progress bar shows, however briefly.
  await page.evaluate(() => {
    window.__progress = [];
    const seen = () => document.querySelectorAll("progress").forEach((p) => window.__progress.push(Number(p.value)));
    new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["value"] });
  });
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.getByRole("heading", { name: "Grant and install" }).waitFor({ timeout: SLOW });
  const progress = await page.evaluate(() => window.__progress);
  check(progress.length > 0 && Math.max(...progress) === 100, "a progress bar followed the upload to 100 %: " + progress);
  const review = await page.locator("main").innerText();
  for (const shown of ["View gallery", "plinth:extension/cache", "export"]) {
    check(review.includes(shown), `the review shows ${shown}`);
  }
  await page.getByLabel("Installation id").fill("gallery-two");
  const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
  await page.getByLabel("Headline").fill(hostile);
  await page.getByLabel("Monthly target").fill("-5");
  await page.getByRole("button", { name: "Grant and install" }).click();
  const target = page.getByLabel("Monthly target");
  await page.waitForFunction(() => document.querySelector("[aria-invalid=true]") != null, null, { timeout: SLOW });
  check(await target.getAttribute("aria-invalid") === "true", "the bad field is marked");
  const described = (await target.getAttribute("aria-describedby")).split(" ");
  const messages = await Promise.all(described.map((id) => page.locator("#" + id).innerText()));
  check(messages.some((m) => /minimum/.test(m)), "the server's message is at the field: " + messages.join(" | "));
  expected(admin.problems, 422, 1);
  await page.setViewportSize({ width: 1280, height: 1000 });
  await target.evaluate((field) => field.scrollIntoView({ block: "center" }));
  await page.screenshot({ path: join(shots, "upload.png") });
  await page.setViewportSize({ width: 1280, height: 900 });
  await axe(page, "the upload flow with a field error");
  await target.fill("42000");
  await page.getByRole("button", { name: "Grant and install" }).click();
  await page.waitForURL(/extensions\/i\/gallery-two/, { timeout: SLOW });

  // 9. Hostile text from a widget is text.
  step("a widget's <img onerror> and <script> text is shown as text and nothing runs");
  const made = await apiCall("PUT", "/tenants/demo/dashboards/hostile", tokens.admin, {
    tiles: [{ installation: "gallery-two", x: 0, y: 0, w: 12, h: 10 }],
  });
  check(made.status === 200, "a dashboard for it: " + JSON.stringify(made));
  await page.goto(base + "/#/t/demo/dashboards/hostile");
  const two = tile(page, "View gallery");
  await two.locator(".view-metric_card").first().waitFor({ timeout: SLOW });
  check((await two.innerText()).includes(hostile), "the hostile headline is shown literally");
  const ran = await page.evaluate(() => ({
    pwned: window.__pwned ?? null,
    images: document.querySelectorAll("img").length,
    scripts: [...document.querySelectorAll("script")].filter((s) => !s.src).length,
  }));
  check(ran.pwned === null && ran.images === 0 && ran.scripts === 0, "nothing ran: " + JSON.stringify(ran));
  allProblems.push(...admin.problems);
  await admin.context.close();

  // 10. A viewer sees no management controls, and the API refuses them anyway.
  step("a viewer sees no upload or install controls and the API refuses them");
  const viewer = await signIn(browser, tokens.viewer);
  await viewer.page.goto(base + "/#/t/demo/extensions");
  await viewer.page.getByRole("heading", { name: "Installations" }).waitFor({ timeout: SLOW });
  check(await viewer.page.getByRole("link", { name: "Upload extension" }).count() === 0, "no upload link");
  await viewer.page.goto(base + "/#/t/demo/extensions/i/sales-metrics");
  await viewer.page.getByRole("heading", { name: "Usage" }).waitFor({ timeout: SLOW });
  for (const name of ["Disable", "Enable", "Uninstall", "Replay all", "Purge all"]) {
    check(await viewer.page.getByRole("button", { name }).count() === 0, `no ${name} button for a viewer`);
  }
  await viewer.page.goto(base + "/#/t/demo/dashboards/overview");
  await tile(viewer.page, "View gallery").locator(".view").first().waitFor({ timeout: SLOW });
  check(await viewer.page.getByRole("button", { name: "Edit layout" }).count() === 0, "no layout editing for a viewer");
  const refused = await viewer.page.evaluate(async (token) => {
    const headers = { Authorization: "Bearer " + token };
    const upload = await fetch("/api/v1/tenants/demo/components", { method: "POST", headers, body: new Uint8Array([0, 97, 115, 109]) });
    const install = await fetch("/api/v1/tenants/demo/installations", {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ id: "sneaky", component: "0".repeat(64) }),
    });
    return [upload.status, (await upload.json()).code, install.status, (await install.json()).code];
  }, tokens.viewer);
  check(JSON.stringify(refused) === JSON.stringify([403, "FORBIDDEN", 403, "FORBIDDEN"]), "the API refuses a viewer: " + refused);
  expected(viewer.problems, 403, 2);
  await axe(viewer.page, "a viewer's dashboard");
  allProblems.push(...viewer.problems);
  await viewer.context.close();

  // 11. Operators: tenants and tokens.
  step("an operator sees the tenants and operator tokens");
  const operator = await signIn(browser, tokens.operator);
  await operator.page.waitForURL(/#\/operators/);
  await operator.page.getByRole("heading", { name: "Tenants" }).waitFor({ timeout: SLOW });
  await operator.page.getByRole("heading", { name: "Operator tokens" }).waitFor({ timeout: SLOW });
  check((await operator.page.locator("main").innerText()).includes("demo"), "the demo tenant is listed");
  await axe(operator.page, "the operators page");
  await operator.page.screenshot({ path: join(shots, "operators.png") });
  // The demo tenant's fuel metering turned off in its quota editor, then its default back.
  const demoRow = operator.page.getByRole("row").filter({ has: operator.page.getByRole("rowheader", { name: /demo/ }) });
  await demoRow.getByRole("button", { name: "Set the quota of demo" }).click();
  await operator.page.getByLabel("Count fuel").uncheck();
  check(await operator.page.getByLabel("Fuel per minute").isDisabled(), "no fuel budget without fuel metering");
  await axe(operator.page, "the quota editor");
  await operator.page.getByRole("button", { name: "Save quota" }).click();
  await demoRow.getByText("fuel not counted").waitFor({ timeout: SLOW });
  const unmetered = await apiCall("GET", "/tenants/demo", tokens.operator);
  check(unmetered.body.quota.fuel_metering === false && unmetered.body.quota.fuel_per_minute === null,
    "the quota saved: " + JSON.stringify(unmetered.body.quota));
  await demoRow.getByRole("button", { name: "Set the quota of demo" }).click();
  await operator.page.getByRole("button", { name: "Use the server's default" }).click();
  await demoRow.getByText("fuel/min").waitFor({ timeout: SLOW });
  const restored = await apiCall("GET", "/tenants/demo", tokens.operator);
  check(restored.body.quota.fuel_metering === true && restored.body.own_quota === false,
    "the default quota again: " + JSON.stringify(restored.body));
  allProblems.push(...operator.problems);

  // 11b. A wrong token is refused at sign-in; a token revoked while it is signed in
  //      ends the session at once (its WebSocket is closed with 4401).
  step("a wrong token is refused at sign-in, a revoked one signs the console out");
  const door = await browser.newContext();
  const doorPage = await door.newPage();
  const doorProblems = [];
  watch(doorPage, doorProblems);
  await doorPage.goto(base + "/");
  await doorPage.getByLabel("Access token").fill("plt_not-a-token");
  await doorPage.getByRole("button", { name: "Sign in" }).click();
  await doorPage.getByRole("alert").waitFor({ timeout: SLOW });
  check((await doorPage.getByRole("alert").innerText()).includes("UNAUTHENTICATED"), "the refusal is shown");
  expected(doorProblems, 401, 1);
  const shortLived = await apiCall("POST", "/tenants/demo/tokens", tokens.admin, { role: "viewer", label: "to be revoked" });
  check(shortLived.status === 201, "a token to revoke: " + JSON.stringify(shortLived));
  await doorPage.getByLabel("Access token").fill(shortLived.body.token);
  await doorPage.getByRole("button", { name: "Sign in" }).click();
  await doorPage.locator(".live-state.live").waitFor({ timeout: SLOW });
  await doorPage.locator(".tile .view").first().waitFor({ timeout: SLOW });
  const beforeRevoking = doorProblems.length;
  const revoked = await apiCall("DELETE", `/tenants/demo/tokens/${shortLived.body.id}`, tokens.admin);
  check(revoked.status === 204, "revoked: " + revoked.status);
  await doorPage.getByText("Your session ended").waitFor({ timeout: SLOW });
  // A request the page had in flight when the token was revoked is answered 401: the
  // revocation's own doing.
  const afterRevoking = doorProblems.splice(beforeRevoking).filter((p) => !p.includes("status of 401"));
  doorProblems.push(...afterRevoking);
  check(await doorPage.evaluate(() => sessionStorage.length) === 0, "the revoked token is forgotten");
  allProblems.push(...doorProblems);
  await door.close();

  // 12. The server goes away and comes back: Reconnecting/Offline, then Live, and the
  //     tiles fetch their data again.
  step("the console reconnects after the server restarts");
  const watcher = await signIn(browser, tokens.admin);
  await watcher.page.goto(base + "/#/t/demo/dashboards/overview");
  const hello = tile(watcher.page, "Hello");
  await hello.locator(".view").first().waitFor({ timeout: SLOW });
  await watcher.page.evaluate(() => {
    window.__states = [];
    const indicator = document.querySelector(".live-state");
    new MutationObserver(() => window.__states.push(indicator.className)).observe(indicator, { attributes: true });
  });
  const helloBefore = Number(await hello.getAttribute("data-updated"));
  await ask("restart the server");
  await watcher.page.locator(".live-state.live").waitFor({ timeout: 2 * SLOW });
  const states = await watcher.page.evaluate(() => window.__states.join(" / "));
  check(/reconnecting|offline/.test(states), "the indicator showed the socket down: " + states);
  // The reconnect waits out its backoff (up to 30 s after a few failures).
  await updatedAfter(watcher.page, "Hello Metric", helloBefore, { timeout: 2 * SLOW });
  allProblems.push(...watcher.problems.filter((p) => !/ERR_CONNECTION_REFUSED|WebSocket/.test(p)));
  await watcher.context.close();

  // 13. Signing out forgets the token.
  step("signing out forgets the token");
  await operator.page.getByRole("button", { name: "Sign out" }).click();
  await operator.page.getByLabel("Access token").waitFor();
  check(await operator.page.evaluate(() => sessionStorage.length) === 0, "nothing kept after sign-out");
  await operator.context.close();
} finally {
  await browser.close();
}
if (allProblems.length) {
  console.log("problems:\n  " + allProblems.join("\n  "));
  process.exit(1);
}
console.log("ok: all steps");
// stdin stays open (the test may still answer): end here.
process.exit(0);
