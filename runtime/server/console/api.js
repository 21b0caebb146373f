// The API as the console uses it. The token is kept in this tab's sessionStorage
// (gone when the tab closes or on sign-out) and sent only in the Authorization header
// and, for the WebSocket, in its subprotocol list: never in a URL.
const KEY = "plinth.session";

/** `{token, principal: {role, tenant, label, token_id}, tenant}` or null. */
export function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(session) {
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
  else sessionStorage.removeItem(KEY);
}

/** An API error: `code` and `message` from the server's `{code, message}`, `fields`
 *  (`[{path, message}]`) where the server names the failing fields. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || (status === 0 ? "NETWORK" : "HTTP_" + status);
    this.fields = body?.fields || [];
  }
}

let onUnauthenticated = () => {};
/** Called when the server answers 401: the token was revoked or expired. */
export function whenUnauthenticated(callback) {
  onUnauthenticated = callback;
}

async function answer(response, sessionToken) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { code: "HTTP_" + response.status, message: text.slice(0, 200) };
  }
  if (!response.ok) {
    // Only the session's own token ending ends the session (not a token being tried
    // at sign-in).
    if (response.status === 401 && sessionToken) onUnauthenticated();
    throw new ApiError(response.status, body);
  }
  return body;
}

/** `api("GET", "/me")`: a call under /api/v1 with the session's token (or `token`). */
export async function api(method, path, body, token) {
  const sessionToken = token === undefined;
  if (sessionToken) token = loadSession()?.token;
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch("/api/v1" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, { code: "NETWORK", message: "the server could not be reached" });
  }
  return answer(response, sessionToken);
}

/** A path under the tenant: `tenantPath("demo", "/installations")`. */
export function tenantPath(tenant, path) {
  return `/tenants/${encodeURIComponent(tenant)}${path}`;
}

/** Uploads a component's bytes; `onProgress(fraction)` while they are sent. */
export function uploadComponent(tenant, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/v1" + tenantPath(tenant, "/components"));
    request.setRequestHeader("Authorization", "Bearer " + loadSession()?.token);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    request.onload = () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = { code: "HTTP_" + request.status, message: request.responseText.slice(0, 200) };
      }
      if (request.status >= 200 && request.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        if (request.status === 401) onUnauthenticated();
        reject(new ApiError(request.status, body));
      }
    };
    request.onerror = () => reject(new ApiError(0, { code: "NETWORK", message: "the upload did not reach the server" }));
    request.send(file);
  });
}
