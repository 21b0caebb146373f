// The console: sign in with a token, then the tenant's dashboards, its extensions, its
// tokens and (for operators) the tenants. Routes live in the URL's fragment
// (`#/t/demo/dashboards/sales`), which never holds a token.
import { html, render, useState, useEffect, useMemo, ErrorNote } from "./ui.js";
import { api, loadSession, saveSession, whenUnauthenticated } from "./api.js";
import { Live } from "./live.js";
import { DashboardsPage } from "./dashboard.js";
import { ExtensionsPage } from "./extensions.js";
import { OperatorsPage, TokensSection } from "./operators.js";

const ROLE_NAMES = { operator: "Operator", "tenant-admin": "Administrator", viewer: "Viewer" };

/** The route's segments; one that does not decode is dropped (the route falls back). */
function route() {
  return location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return "";
      }
    });
}

/** A tenant, installation or dashboard id as the server accepts it: nothing else from
 *  the fragment goes into an API path (`..` would name another route). */
const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** A segment after the section: ids, a component's hash, `upload`, `i`, `v`. */
const SEGMENT = /^[a-z0-9][a-z0-9-]*$/;

function App() {
  const [session, setSession] = useState(loadSession);
  const [notice, setNotice] = useState(null);
  const [parts, setParts] = useState(route);
  useEffect(() => {
    const changed = () => setParts(route());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  const signOut = (why) => {
    saveSession(null);
    setSession(null);
    setNotice(why || null);
  };
  useEffect(() => whenUnauthenticated(() => signOut("Your session ended: the token was revoked or has expired.")), []);
  if (!session) {
    return html`<${SignIn} notice=${notice} onSignedIn=${(s) => { saveSession(s); setSession(s); setNotice(null); }} />`;
  }
  return html`<${Console} session=${session} parts=${parts} signOut=${signOut} />`;
}

function SignIn({ notice, onSignedIn }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const principal = await api("GET", "/me", undefined, token.trim());
      if (principal.role === "publisher") {
        throw { code: "FORBIDDEN", message: "a publisher token posts events and cannot sign in to the console" };
      }
      onSignedIn({ token: token.trim(), principal });
      if (!location.hash || location.hash === "#") {
        location.hash = principal.role === "operator" ? "#/operators" : `#/t/${principal.tenant}/dashboards`;
      }
    } catch (err) {
      setError(err.code === "UNAUTHENTICATED" ? { code: err.code, message: "this token is unknown, revoked or expired" } : err);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <main id="main" class="sign-in">
      <form class="sign-in-card" onSubmit=${submit}>
        <h1><span class="brand-mark" aria-hidden="true">▦</span> Plinth console</h1>
        ${notice && html`<p class="notice" role="status">${notice}</p>`}
        <label for="token">Access token</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required
          placeholder="plt_…" value=${token} onInput=${(e) => setToken(e.currentTarget.value)} />
        <p class="hint">Your administrator gives you a token. It is kept in this browser tab only, until you sign out or close the tab.</p>
        <button class="button" type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
        <${ErrorNote} error=${error} />
      </form>
    </main>`;
}

/** The skip link moves focus without touching the fragment, which holds the route. */
function skipToContent(event) {
  event.preventDefault();
  const main = document.getElementById("main");
  if (!main) return;
  main.setAttribute("tabindex", "-1");
  main.focus();
}

function Console({ session, parts, signOut }) {
  const { principal } = session;
  const operator = principal.role === "operator";
  const live = useMemo(
    () =>
      new Live(
        session.token,
        () => signOut("Your session ended: the token was revoked or has expired."),
        // A refused upgrade looks like any failed connection: asking who the token is
        // tells a revoked or expired one (401 signs out) from a server that is away.
        () => api("GET", "/me").catch(() => {}),
      ),
    [session.token],
  );
  useEffect(() => () => live.close(), [live]);
  const [liveState, setLiveState] = useState(live.state);
  useEffect(() => live.watchState(setLiveState), [live]);
  const navigate = (hash) => { location.hash = hash; };

  // `#/t/<tenant>/<section>/…`; operators also `#/operators`.
  let tenant = principal.tenant;
  let section = parts[0] === "operators" ? "operators" : parts[2] || "dashboards";
  let rest = parts.slice(3).filter((part) => SEGMENT.test(part));
  if (parts[0] === "t" && ID.test(parts[1] || "")) {
    if (operator || parts[1] === principal.tenant) tenant = parts[1];
  }
  if (!tenant && section !== "operators") section = "operators";
  useEffect(() => {
    const names = { dashboards: "Dashboards", extensions: "Extensions", tokens: "Tokens", operators: "Operators" };
    document.title = `${names[section] || "Console"}${tenant ? " · " + tenant : ""} · Plinth`;
  }, [section, tenant]);

  const link = (name, label) => html`<a href=${`#/t/${tenant}/${name}`} aria-current=${section === name ? "page" : undefined}>${label}</a>`;
  let page;
  if (section === "operators" && operator) page = html`<${OperatorsPage} session=${session} navigate=${navigate} />`;
  else if (section === "extensions") page = html`<${ExtensionsPage} session=${session} tenant=${tenant} path=${rest} navigate=${navigate} />`;
  else if (section === "tokens" && principal.role !== "viewer") page = html`<main id="main" class="page"><h1>Tokens of ${tenant}</h1><${TokensSection} session=${session} tenant=${tenant} /></main>`;
  else page = html`<${DashboardsPage} session=${session} tenant=${tenant} path=${rest} navigate=${navigate} live=${live} />`;

  return html`
    <a class="skip-link" href="#main" onClick=${skipToContent}>Skip to content</a>
    <header class="top-bar">
      <a class="brand" href=${tenant ? `#/t/${tenant}/dashboards` : "#/operators"}><span class="brand-mark" aria-hidden="true">▦</span> Plinth</a>
      ${tenant && html`<span class="tenant-name" title="Tenant">${tenant}</span>`}
      <nav class="main-nav" aria-label="Sections">
        ${tenant && link("dashboards", "Dashboards")}
        ${tenant && link("extensions", "Extensions")}
        ${tenant && principal.role !== "viewer" && link("tokens", "Tokens")}
        ${operator && html`<a href="#/operators" aria-current=${section === "operators" ? "page" : undefined}>Operators</a>`}
      </nav>
      <span class=${"live-state " + liveState} role="status" aria-live="polite">
        <span class="dot" aria-hidden="true"></span>${{ live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Offline" }[liveState]}
      </span>
      <span class="who" title=${"Token " + principal.token_id}>${principal.label || "token"} · ${ROLE_NAMES[principal.role] || principal.role}</span>
      <button type="button" class="button subtle" onClick=${() => signOut(null)}>Sign out</button>
    </header>
    ${page}`;
}

const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
